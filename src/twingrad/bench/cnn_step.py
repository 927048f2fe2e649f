"""One training step of :class:`~twingrad.cnn.ThreeLayerConvNet` (loss and every
gradient), side by side: the hand-derived pass on the fast (im2col) layers, the
same on the naive (loop) layers, the autograd twin, PyTorch eager, JAX jit, and
the matrix-product floor.

The default is the course's CIFAR-sized configuration: batch 50 of 3x32x32,
32 filters 7x7 (pad 3), 2x2 max pool, hidden 100, 10 classes, float32. The
floor is the products no implementation can skip: the convolution as one
(F, C*HH*WW) by (C*HH*WW, N*H*W) product and its ``dW``, the two affine layers'
forward products and their ``dW`` and ``dX`` (no ``dX`` for the convolution:
the images need no gradient). :func:`time_split` says where the fast step's
time goes, layer by layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .frameworks import torch_step_and_result
from .step import _as_numpy, agreement
from .timing import Candidate, interleaved


@dataclass(frozen=True)
class CnnConfig:
    batch: int = 50
    channels: int = 3
    size: int = 32
    filters: int = 32
    filter_size: int = 7
    hidden: int = 100
    classes: int = 10
    dtype: str = "float32"
    seed: int = 0

    @property
    def label(self) -> str:
        return (f"ThreeLayerConvNet, batch {self.batch} of {self.channels}x{self.size}x{self.size}, "
                f"{self.filters} {self.filter_size}x{self.filter_size} filters, hidden {self.hidden}, {self.dtype}")


def make_workload(cfg: CnnConfig):
    """``(model, X, y)``: a seeded net and a random batch."""
    from ..cnn import ThreeLayerConvNet

    model = ThreeLayerConvNet(input_dim=(cfg.channels, cfg.size, cfg.size), num_filters=cfg.filters,
                              filter_size=cfg.filter_size, hidden_dim=cfg.hidden, num_classes=cfg.classes,
                              weight_scale=1e-2, dtype=np.dtype(cfg.dtype), seed=cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])
    X = rng.standard_normal((cfg.batch, cfg.channels, cfg.size, cfg.size)).astype(cfg.dtype)
    return model, X, rng.integers(0, cfg.classes, size=cfg.batch)


def naive_step(model, X, y):
    """The net's step with the naive (loop) convolution and pooling, as a student first writes it."""
    from .. import layers as L

    p = model.params

    def step():
        a, conv_cache = L.conv_forward_naive(X, p["W1"], p["b1"], model.conv_param)
        r, relu1 = L.relu_forward(a)
        pooled, pool_cache = L.max_pool_forward_naive(r, model.pool_param)
        h, fc1 = L.affine_forward(pooled, p["W2"], p["b2"])
        hr, relu2 = L.relu_forward(h)
        scores, fc2 = L.affine_forward(hr, p["W3"], p["b3"])
        loss, dscores = L.softmax_loss(scores, y)
        grads = {}
        dhr, grads["W3"], grads["b3"] = L.affine_backward(dscores, fc2)
        dpooled, grads["W2"], grads["b2"] = L.affine_backward(L.relu_backward(dhr, relu2), fc1)
        dr = L.max_pool_backward_naive(dpooled, pool_cache)
        _, grads["W1"], grads["b1"] = L.conv_backward_naive(L.relu_backward(dr, relu1), conv_cache)
        return loss, grads

    return step, lambda: _as_numpy(step())


def twin_step(model, X, y):
    from autograd import value_and_grad

    from ..cnn import twin_loss

    grad_fn = value_and_grad(lambda params: twin_loss(params, X, y, **model.twin_settings))
    step = lambda: grad_fn(model.params)
    return step, lambda: _as_numpy(step())


def matmul_floor(model, X):
    """The step's bare matrix products (see the module docstring), on inputs drawn once."""
    rng = np.random.default_rng(1)
    w1 = model.params["W1"].reshape(model.params["W1"].shape[0], -1)
    n, dtype = X.shape[0], X.dtype
    cols = rng.standard_normal((w1.shape[1], n * X.shape[2] * X.shape[3])).astype(dtype)
    g1 = rng.standard_normal((w1.shape[0], cols.shape[1])).astype(dtype)
    W2, W3 = model.params["W2"], model.params["W3"]
    a2 = rng.standard_normal((n, W2.shape[0])).astype(dtype)
    a3, g2 = rng.standard_normal((n, W3.shape[0])).astype(dtype), rng.standard_normal((n, W2.shape[1])).astype(dtype)
    g3 = rng.standard_normal((n, W3.shape[1])).astype(dtype)

    def step():
        w1 @ cols
        g1 @ cols.T
        a2 @ W2
        a3 @ W3
        a2.T @ g2
        g2 @ W2.T
        a3.T @ g3
        g3 @ W3.T

    return step


def torch_step(model, X, y, threads=None):
    """The same step in PyTorch eager: conv2d, relu, max_pool2d, linear, cross_entropy."""
    import torch
    import torch.nn.functional as tF

    if threads:
        torch.set_num_threads(threads)
    names = list(model.params)
    t = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in model.params.items()}
    Xt, yt = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(y.astype(np.int64))
    pad = model.conv_param["pad"]

    def loss_fn():
        h = tF.max_pool2d(torch.relu(tF.conv2d(Xt, t["W1"], t["b1"], padding=pad)), 2)
        h = torch.relu(torch.addmm(t["b2"], h.reshape(h.shape[0], -1), t["W2"]))
        return tF.cross_entropy(torch.addmm(t["b3"], h, t["W3"]), yt)

    return torch_step_and_result(torch, loss_fn, t, names)


def jax_step(model, X, y):
    """The same step under ``jax.jit(jax.value_and_grad(...))``."""
    import jax
    import jax.numpy as jnp

    pad = model.conv_param["pad"]

    def loss_fn(p, X, y):
        a = jax.lax.conv_general_dilated(X, p["W1"], (1, 1), [(pad, pad), (pad, pad)]) + p["b1"][None, :, None, None]
        r = jax.nn.relu(a)
        pooled = jax.lax.reduce_window(r, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        h = jax.nn.relu(pooled.reshape(pooled.shape[0], -1) @ p["W2"] + p["b2"])
        log_probs = jax.nn.log_softmax(h @ p["W3"] + p["b3"], axis=1)
        return -jnp.take_along_axis(log_probs, y[:, None], axis=1).mean()

    grad_fn = jax.jit(jax.value_and_grad(loss_fn))
    p = {k: jax.device_put(np.asarray(v)) for k, v in model.params.items()}
    Xj, yj = jax.device_put(X), jax.device_put(y.astype(np.int32))

    def step():
        return jax.block_until_ready(grad_fn(p, Xj, yj))

    def result():
        loss, grads = step()
        return float(loss), {k: np.asarray(g) for k, g in grads.items()}

    return step, result


def time_split(model, X, y, rounds: int = 5) -> dict:
    """Median milliseconds of each part of the fast hand step, timed alone (in step order)."""
    from .. import fast_layers as FL
    from .. import layers as L

    p = model.params
    a, conv_cache = FL.conv_forward_fast(X, p["W1"], p["b1"], model.conv_param)
    r, relu_cache = L.relu_forward(a)
    pooled, pool_cache = FL.max_pool_forward_fast(r, model.pool_param)
    from ..layer_utils import affine_relu_backward, affine_relu_forward

    h, fc1 = affine_relu_forward(pooled, p["W2"], p["b2"])
    scores, fc2 = L.affine_forward(h, p["W3"], p["b3"])
    _, dscores = L.softmax_loss(scores, y)
    dh, _, _ = L.affine_backward(dscores, fc2)
    dpooled, _, _ = affine_relu_backward(dh, fc1)
    dr = FL.max_pool_backward_fast(dpooled, pool_cache)
    da = L.relu_backward(dr, relu_cache)
    parts = {
        "conv forward (im2col, product, to NCHW)": lambda: FL.conv_forward_fast(X, p["W1"], p["b1"], model.conv_param),
        "relu forward": lambda: L.relu_forward(a),
        "max pool forward": lambda: FL.max_pool_forward_fast(r, model.pool_param),
        "affine layers + softmax, both ways": lambda: (affine_relu_forward(pooled, p["W2"], p["b2"]),
                                                       L.affine_forward(h, p["W3"], p["b3"]), L.softmax_loss(scores, y),
                                                       L.affine_backward(dscores, fc2), affine_relu_backward(dh, fc1)),
        "max pool backward": lambda: FL.max_pool_backward_fast(dpooled, pool_cache),
        "relu backward": lambda: L.relu_backward(dr, relu_cache),
        "conv backward (dW, db; no dX)": lambda: FL.conv_backward_fast(da, conv_cache, input_grad=False),
    }
    timings = interleaved(parts, rounds, block=3, warm=1, settle=0.0)
    return {name: t.median * 1e3 for name, t in timings.items()}


LIBRARY = {"pytorch": "torch", "jax": "jax"}


def run_cnn_step(cfg: CnnConfig, repeats: int, *, torch=None, jax=None, threads: int = 1, naive: bool = True,
                 settle: float = 0.15) -> dict:
    """Time the step. Returns ``{'config', 'label', 'timings', 'agreement', 'split'}``."""
    model, X, y = make_workload(cfg)
    fast = lambda: model.loss(X, y)
    candidates = {"hand (fast layers)": (fast, lambda: _as_numpy(fast())),
                  "autograd twin": twin_step(model, X, y)}
    if naive:
        candidates["hand (naive layers)"] = naive_step(model, X, y)
    if torch is not None:
        candidates["pytorch eager"] = torch_step(model, X, y, threads=threads)
    if jax is not None:
        candidates["jax jit"] = jax_step(model, X, y)
    candidates["matmul floor"] = (matmul_floor(model, X), None)
    agrees = agreement(candidates, reference="hand (fast layers)")
    # The twin and the naive layers take about a second per call: each runs a few single calls on its own,
    # after the interleaved rounds of the others.
    slow = ("autograd twin", "hand (naive layers)")
    timed = {k: Candidate(v[0], LIBRARY.get(k.split(" ")[0], "numpy")) for k, v in candidates.items() if k not in slow}
    timings = interleaved(timed, repeats, block=3, warm=2, settle=settle)
    for name in slow:
        if name in candidates:
            timings[name] = interleaved({name: candidates[name][0]}, max(2, repeats // 4), block=1, warm=1,
                                        settle=0.0)[name]
    if torch is not None:
        torch.set_num_threads(threads)
    return {"config": asdict(cfg), "label": cfg.label, "timings": timings, "agreement": agrees,
            "split": time_split(model, X, y, rounds=max(2, repeats // 2))}
