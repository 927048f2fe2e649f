"""Hand-written examples per layer: CS231n's published values and the behaviour
property tests cannot see (running averages, test mode, dropout statistics)."""

import numpy as np
import pytest

from twingrad import functional as F
from twingrad import layers as L


def test_affine_forward_cs231n_values():
    num_inputs, input_shape, output_dim = 2, (4, 5, 6), 3
    input_size, weight_size = num_inputs * np.prod(input_shape), output_dim * np.prod(input_shape)
    x = np.linspace(-0.1, 0.5, num=input_size).reshape(num_inputs, *input_shape)
    w = np.linspace(-0.2, 0.3, num=weight_size).reshape(np.prod(input_shape), output_dim)
    b = np.linspace(-0.3, 0.1, num=output_dim)
    out, _ = L.affine_forward(x, w, b)
    published = np.array([[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]])
    # Published with 8 decimals: within 5e-9 of the truth.
    np.testing.assert_allclose(out, published, rtol=0, atol=5e-9)


def test_affine_backward_small_example():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    w = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.5]])
    dout = np.array([[1.0, -1.0, 2.0], [0.5, 0.0, -1.0]])
    dx, dw, db = L.affine_backward(dout, L.affine_forward(x, w, np.zeros(3))[1])
    np.testing.assert_array_equal(dx, [[-1.0, 2.0], [1.5, 0.5]])
    np.testing.assert_array_equal(dw, [[2.5, -1.0, -1.0], [4.0, -2.0, 0.0]])
    np.testing.assert_array_equal(db, [1.5, -1.0, 1.0])


def test_affine_backward_can_skip_input_gradient():
    x, w, b = np.ones((3, 2, 2)), np.ones((4, 5)), np.zeros(5)
    dx, dw, db = L.affine_backward(np.ones((3, 5)), L.affine_forward(x, w, b)[1], input_grad=False)
    assert dx is None and dw.shape == (4, 5) and db.shape == (5,)


def test_relu_forward_cs231n_values():
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    out, _ = L.relu_forward(x)
    published = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.04545455, 0.13636364],
                          [0.22727273, 0.31818182, 0.40909091, 0.5]])
    np.testing.assert_allclose(out, published, rtol=0, atol=5e-9)


def test_relu_subgradient_at_zero_is_zero_in_hand_and_twin():
    from autograd import grad

    x = np.array([-1.0, 0.0, 2.0])
    hand = L.relu_backward(np.ones(3), L.relu_forward(x)[1])
    twin = grad(lambda v: np.sum(F.relu(v)))(x)
    np.testing.assert_array_equal(hand, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(twin, [0.0, 0.0, 1.0])


@pytest.fixture
def cs231n_scores():
    np.random.seed(231)
    x = 0.001 * np.random.randn(50, 10)
    y = np.random.randint(10, size=50)
    return x, y


def test_svm_and_softmax_loss_cs231n_values(cs231n_scores):
    x, y = cs231n_scores
    # Published: 8.999602749096233 and 2.302545844500738 (about C - 1 = 9 and log(10) for near-zero scores).
    assert L.svm_loss(x, y)[0] == pytest.approx(8.999602749096233, rel=1e-12)
    assert L.softmax_loss(x, y)[0] == pytest.approx(2.302545844500738, rel=1e-12)


def test_svm_gradient_small_example():
    x = np.array([[1.0, 0.5, 3.0], [0.0, 2.0, -4.0]])
    y = np.array([0, 1])
    loss, dx = L.svm_loss(x, y)
    # Row 0: margins 0.5 (class 1) and 3 (class 2); row 1: margins -1 and -5, none positive.
    assert loss == pytest.approx(3.5 / 2)
    np.testing.assert_array_equal(dx, [[-1.0, 0.5, 0.5], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    "magnitude, expected",
    [
        # Row 0: the label sits 2e4 below the top logit; row 1: the label is on top by 1e4.
        (1e4, (2e4 + 0.0) / 2),
        # Row 0: the label is on top; row 1: log(e^0 + e^1) - (-1e4) = 1e4 + 1 + log(1 + e^-1).
        (-1e4, (0.0 + 1e4 + 1 + np.log1p(np.exp(-1))) / 2),
    ],
)
def test_softmax_stays_finite_for_huge_logits(magnitude, expected):
    x = np.array([[magnitude, 0.0, -magnitude], [0.0, magnitude, 1.0]])
    y = np.array([2, 1])
    loss, dx = L.softmax_loss(x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    assert loss == pytest.approx(expected, rel=1e-12)
    assert F.softmax_loss(x, y) == pytest.approx(expected, rel=1e-12)


def _bn_inputs(rng, n=64, d=5):
    x = rng.normal(loc=3.0, scale=2.0, size=(n, d))
    return x, rng.normal(size=d), rng.normal(size=d)


def test_batchnorm_train_output_is_normalized():
    x, _, _ = _bn_inputs(np.random.default_rng(0))
    out, _ = L.batchnorm_forward(x, np.ones(5), np.zeros(5), {"mode": "train"})
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), 1, rtol=1e-5)  # eps=1e-5 shrinks the std by ~1e-6


def test_batchnorm_running_averages_follow_momentum_with_biased_variance():
    rng = np.random.default_rng(1)
    param = {"mode": "train", "momentum": 0.8}
    running_mean, running_var = np.zeros(5), np.zeros(5)
    for _ in range(3):
        x, gamma, beta = _bn_inputs(rng)
        L.batchnorm_forward(x, gamma, beta, param)
        running_mean = 0.8 * running_mean + 0.2 * x.mean(axis=0)
        running_var = 0.8 * running_var + 0.2 * x.var(axis=0, ddof=0)
    np.testing.assert_allclose(param["running_mean"], running_mean, rtol=1e-12)
    np.testing.assert_allclose(param["running_var"], running_var, rtol=1e-12)


def test_batchnorm_test_mode_uses_running_averages():
    x, gamma, beta = _bn_inputs(np.random.default_rng(2), n=4)
    # eps must be > 0; 4 - eps makes the denominator exactly sqrt(4) = 2
    param = {"mode": "test", "running_mean": np.arange(5.0), "running_var": np.full(5, 4.0 - 2**-20), "eps": 2.0**-20}
    out, _ = L.batchnorm_forward(x, gamma, beta, param)
    np.testing.assert_allclose(out, gamma * (x - np.arange(5.0)) / 2.0 + beta, rtol=1e-12)
    np.testing.assert_array_equal(param["running_mean"], np.arange(5.0))  # test mode never updates them
    twin = F.batchnorm(x, gamma, beta, eps=2.0**-20, running_mean=param["running_mean"], running_var=param["running_var"])
    np.testing.assert_allclose(twin, out, rtol=1e-12)


def test_batchnorm_test_mode_after_training_matches_statistics():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(50, 6))
    param = {"mode": "train"}
    for _ in range(200):
        L.batchnorm_forward(rng.normal(size=(200, 50)) @ w + 2.0, np.ones(6), np.zeros(6), param)
    param["mode"] = "test"
    out, _ = L.batchnorm_forward(rng.normal(size=(2000, 50)) @ w + 2.0, np.ones(6), np.zeros(6), param)
    # Fresh data through the running averages: mean ~0 and std ~1 within sampling error (~5%).
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=0.15)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=0.1)


def test_batchnorm_backward_and_alt_agree():
    rng = np.random.default_rng(4)
    x, gamma, beta = _bn_inputs(rng, n=7)
    _, cache = L.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dout = rng.normal(size=x.shape)
    for staged, closed in zip(L.batchnorm_backward(dout, cache), L.batchnorm_backward_alt(dout, cache)):
        np.testing.assert_allclose(staged, closed, rtol=1e-10, atol=1e-12)


def test_layernorm_normalizes_each_sample():
    x = np.random.default_rng(5).normal(loc=-2, scale=3, size=(1, 40))  # batch size 1 is fine
    out, _ = L.layernorm_forward(x, np.ones(40), np.zeros(40), {})
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=1), 1, rtol=1e-5)


def test_dropout_same_seed_same_mask_in_hand_and_twin():
    x = np.random.default_rng(6).normal(size=(20, 30))
    param = {"mode": "train", "p": 0.4, "seed": 123}
    out1, _ = L.dropout_forward(x, param)
    out2, _ = L.dropout_forward(x, param)
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(out1, F.dropout(x, 0.4, seed=123))
    assert not np.array_equal(out1, L.dropout_forward(x, {**param, "seed": 124})[0])


def test_dropout_does_not_touch_global_random_state():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    L.dropout_forward(np.ones((5, 5)), {"mode": "train", "p": 0.5, "seed": 1})
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_dropout_test_mode_is_identity():
    x = np.random.default_rng(7).normal(size=(4, 5))
    out, cache = L.dropout_forward(x, {"mode": "test", "p": 0.9})
    np.testing.assert_array_equal(out, x)
    np.testing.assert_array_equal(L.dropout_backward(np.ones_like(x), cache), np.ones_like(x))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_statistics(p):
    x = np.full((500, 400), 2.0)
    out, _ = L.dropout_forward(x, {"mode": "train", "p": p, "seed": 8})
    n = x.size
    # Fraction dropped ~ Binomial(n, p) / n: allow 5 standard deviations.
    sd = np.sqrt(p * (1 - p) / n)
    assert abs(np.mean(out == 0) - p) < 5 * sd
    # Inverted dropout keeps the mean: E[out] = 2; kept values are exactly 2 / (1 - p).
    assert abs(out.mean() - 2.0) < 5 * 2.0 * np.sqrt(p / (1 - p) / n)
    np.testing.assert_allclose(np.unique(out[out != 0]), [2.0 / (1 - p)])


def test_dropout_backward_uses_the_scaled_mask():
    x = np.ones((10, 10))
    out, cache = L.dropout_forward(x, {"mode": "train", "p": 0.5, "seed": 9})
    np.testing.assert_array_equal(L.dropout_backward(np.ones_like(x), cache), out)  # d(x*m)/dx = m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layers_keep_float32_and_float64(dtype):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(4, 3)).astype(dtype)
    g, b = np.ones(3, dtype), np.zeros(3, dtype)
    outs = [
        L.affine_forward(x, np.ones((3, 2), dtype), np.zeros(2, dtype))[0],
        L.relu_forward(x)[0],
        L.batchnorm_forward(x, g, b, {"mode": "train"})[0],
        L.layernorm_forward(x, g, b)[0],
        L.dropout_forward(x, {"mode": "train", "p": 0.3, "seed": 0})[0],
        L.softmax_loss(x, np.array([0, 1, 2, 0]))[1],
        L.svm_loss(x, np.array([0, 1, 2, 0]))[1],
    ]
    assert [o.dtype for o in outs] == [np.dtype(dtype)] * len(outs)
    _, cache = L.batchnorm_forward(x, g, b, {"mode": "train"})
    assert all(grad.dtype == dtype for grad in L.batchnorm_backward_alt(np.ones_like(x), cache))
