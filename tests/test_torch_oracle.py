"""twingrad's hand-derived layers against PyTorch in float64: an oracle written by other people.

Each layer's output and every gradient, pulled back from one random upstream
gradient, must agree with ``torch.nn.functional`` and ``torch.autograd`` to
float64 rounding (atol + rtol * |expected|). Skipped without torch (the
``bench`` extra); CI does not need it.
"""

import numpy as np
import pytest

from twingrad import layers
from twingrad.fast_layers import conv_backward_fast, conv_forward_fast, max_pool_backward_fast, max_pool_forward_fast

torch = pytest.importorskip("torch")
nnf = torch.nn.functional

ATOL, RTOL = 1e-12, 1e-9


def _close(got, expected, what):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} vs torch {expected.shape}"
    bad = np.abs(got - expected) > ATOL + RTOL * np.abs(expected)
    assert not bad.any(), f"{what}: max abs diff {np.abs(got - expected).max():.3g} vs torch"


def _torch_pass(function, inputs: dict, dout: np.ndarray):
    """``function`` of torch leaves made from ``inputs``: its output and the gradients of <out, dout>."""
    leaves = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    out = function(**leaves)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), {k: leaf.grad.numpy() for k, leaf in leaves.items()}


@pytest.fixture(params=[0, 1, 2])
def rng(request):
    return np.random.default_rng(request.param)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_affine_and_relu_agree_with_torch(rng, scale):
    x, w, b = rng.normal(size=(4, 3, 5)) * scale, rng.normal(size=(15, 6)), rng.normal(size=6)
    out, cache = layers.affine_forward(x, w, b)
    dout = rng.normal(size=out.shape)
    dx, dw, db = layers.affine_backward(dout, cache)
    t_out, t = _torch_pass(lambda x, w, b: x.reshape(4, -1) @ w + b, {"x": x, "w": w, "b": b}, dout)
    for name, got, expected in [("out", out, t_out), ("dx", dx, t["x"]), ("dw", dw, t["w"]), ("db", db, t["b"])]:
        _close(got, expected, f"affine {name}")
    r_out, r_cache = layers.relu_forward(x)
    r_dout = rng.normal(size=x.shape)
    t_out, t = _torch_pass(lambda x: torch.relu(x), {"x": x}, r_dout)
    _close(r_out, t_out, "relu out")
    _close(layers.relu_backward(r_dout, r_cache), t["x"], "relu dx")


@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_losses_agree_with_torch(rng, scale):
    x, y = rng.normal(size=(7, 5)) * scale, rng.integers(0, 5, size=7)
    loss, dx = layers.softmax_loss(x, y)
    leaf = torch.tensor(x, requires_grad=True)
    t_loss = nnf.cross_entropy(leaf, torch.tensor(y))
    t_loss.backward()
    _close(loss, t_loss.item(), "softmax loss")
    _close(dx, leaf.grad.numpy(), "softmax dx")
    loss, dx = layers.svm_loss(x, y)
    leaf = torch.tensor(x, requires_grad=True)
    # CS231n's hinge sums the margins over the wrong classes; torch's multi_margin_loss divides by C.
    t_loss = nnf.multi_margin_loss(leaf, torch.tensor(y), margin=1.0, reduction="sum") * 5 / 7
    t_loss.backward()
    _close(loss, t_loss.item(), "svm loss")
    _close(dx, leaf.grad.numpy(), "svm dx")


def test_batch_and_layer_norm_agree_with_torch(rng):
    x, gamma, beta = rng.normal(size=(8, 5)) * 3 + 1, rng.normal(size=5), rng.normal(size=5)
    dout = rng.normal(size=x.shape)
    bn_param = {"mode": "train", "eps": 1e-5, "momentum": 0.9}
    out, cache = layers.batchnorm_forward(x, gamma, beta, bn_param)
    t_out, t = _torch_pass(lambda x, gamma, beta: nnf.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5),
                           {"x": x, "gamma": gamma, "beta": beta}, dout)
    _close(out, t_out, "batchnorm out")
    for backward in (layers.batchnorm_backward, layers.batchnorm_backward_alt):
        for name, got in zip(("x", "gamma", "beta"), backward(dout, cache)):
            _close(got, t[name], f"{backward.__name__} d{name}")
    # The running mean is torch's; CS231n keeps the biased variance (torch the unbiased one).
    _close(bn_param["running_mean"], 0.1 * x.mean(axis=0), "running_mean")
    _close(bn_param["running_var"], 0.1 * x.var(axis=0), "running_var")
    out, cache = layers.layernorm_forward(x, gamma, beta, {"eps": 1e-5})
    t_out, t = _torch_pass(lambda x, gamma, beta: nnf.layer_norm(x, (5,), gamma, beta, eps=1e-5),
                           {"x": x, "gamma": gamma, "beta": beta}, dout)
    _close(out, t_out, "layernorm out")
    for name, got in zip(("x", "gamma", "beta"), layers.layernorm_backward(dout, cache)):
        _close(got, t[name], f"layernorm d{name}")


# Image sizes the 3x3 filter tiles at each stride and padding, as CS231n's convolution requires.
@pytest.mark.parametrize("stride, pad, size", [(1, 0, (7, 8)), (1, 1, (7, 8)), (2, 1, (9, 7)), (3, 2, (8, 11))])
def test_convolution_agrees_with_torch(rng, stride, pad, size):
    x, w, b = rng.normal(size=(2, 3, *size)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=4)
    conv_param = {"stride": stride, "pad": pad}
    for forward, backward in ((layers.conv_forward_naive, layers.conv_backward_naive),
                              (conv_forward_fast, conv_backward_fast)):
        out, cache = forward(x, w, b, conv_param)
        dout = rng.normal(size=out.shape)
        t_out, t = _torch_pass(lambda x, w, b: nnf.conv2d(x, w, b, stride=stride, padding=pad),
                               {"x": x, "w": w, "b": b}, dout)
        _close(out, t_out, f"{forward.__name__} out")
        for name, got in zip(("x", "w", "b"), backward(dout, cache)):
            _close(got, t[name], f"{backward.__name__} d{name}")


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("size, stride", [(2, 2), (3, 1), (2, 1)])
def test_max_pooling_agrees_with_torch(rng, size, stride, ties):
    # With ties (small integers), the gradient goes to the first maximum of a window, as in torch.
    x = rng.integers(0, 3, size=(2, 3, 6, 6)).astype(np.float64) if ties else rng.normal(size=(2, 3, 6, 6))
    pool_param = {"pool_height": size, "pool_width": size, "stride": stride}
    for forward, backward in ((layers.max_pool_forward_naive, layers.max_pool_backward_naive),
                              (max_pool_forward_fast, max_pool_backward_fast)):
        out, cache = forward(x, pool_param)
        dout = rng.normal(size=out.shape)
        t_out, t = _torch_pass(lambda x: nnf.max_pool2d(x, size, stride), {"x": x}, dout)
        _close(out, t_out, f"{forward.__name__} out")
        _close(backward(dout, cache), t["x"], f"{backward.__name__} dx")


def test_spatial_norms_agree_with_torch(rng):
    x = rng.normal(size=(3, 4, 5, 2)) * 2 - 1
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    dout = rng.normal(size=x.shape)
    out, cache = layers.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train", "eps": 1e-5})
    t_out, t = _torch_pass(lambda x, gamma, beta: nnf.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5),
                           {"x": x, "gamma": gamma, "beta": beta}, dout)
    _close(out, t_out, "spatial batchnorm out")
    for name, got in zip(("x", "gamma", "beta"), layers.spatial_batchnorm_backward(dout, cache)):
        _close(got, t[name], f"spatial batchnorm d{name}")
    G = 2
    out, cache = layers.spatial_groupnorm_forward(x, gamma.reshape(1, 4, 1, 1), beta.reshape(1, 4, 1, 1), G,
                                                  {"eps": 1e-5})
    t_out, t = _torch_pass(lambda x, gamma, beta: nnf.group_norm(x, G, gamma, beta, eps=1e-5),
                           {"x": x, "gamma": gamma, "beta": beta}, dout)
    _close(out, t_out, "groupnorm out")
    for name, got in zip(("x", "gamma", "beta"), layers.spatial_groupnorm_backward(dout, cache)):
        expected = t[name] if name == "x" else t[name].reshape(1, 4, 1, 1)
        _close(got, expected, f"groupnorm d{name}")


@pytest.mark.parametrize("rule, make", [
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.05)),
    ("sgd_momentum", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8)),
    ("adam", lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
])
def test_update_rules_agree_with_torch_over_several_steps(rng, rule, make):
    from twingrad import optim

    w = rng.normal(size=(4, 3))
    config = {"learning_rate": 0.01 if rule in ("rmsprop", "adam") else 0.05}
    leaf = torch.tensor(w.copy(), requires_grad=True)
    optimizer = make([leaf])
    for _ in range(5):
        dw = rng.normal(size=w.shape) * rng.choice([1e-6, 1.0, 1e3])  # epsilon's place matters at 1e-6
        w, config = getattr(optim, rule)(w, dw, config)
        leaf.grad = torch.tensor(dw)
        optimizer.step()
        _close(w, leaf.detach().numpy(), f"{rule} w")
