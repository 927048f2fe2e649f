"""Update rules against the check values published in the CS231n notebook.

The expected arrays below are copied from CS231n assignment 2
(FullyConnectedNets.ipynb, "SGD+Momentum", "RMSProp and Adam" cells). numpy
printed them with 8 digits after the decimal point (trailing zeros trimmed:
``0.0722929`` is ``0.07229290``), so each one is within 5e-9 of the exact
value. The tolerance is therefore absolute, ``atol=1e-8`` (twice that rounding
bound, to leave room for float64 rounding in the update), with ``rtol=0``: a
relative term such as 1e-6 would accept errors 100x larger than the published
precision on the entries near 1.4.
"""

import numpy as np
import pytest

from twingrad import optim

PUBLISHED = dict(rtol=0.0, atol=1e-8)
N, D = 4, 5


def _grid(start, stop):
    return np.linspace(start, stop, num=N * D).reshape(N, D)


@pytest.fixture
def w():
    return _grid(-0.4, 0.6)


@pytest.fixture
def dw():
    return _grid(-0.6, 0.4)


def test_sgd_momentum_matches_cs231n(w, dw):
    config = {"learning_rate": 1e-3, "velocity": _grid(0.6, 0.9)}
    next_w, config = optim.sgd_momentum(w, dw, config=config)
    expected_next_w = [
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]]
    expected_velocity = [
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]]
    np.testing.assert_allclose(next_w, expected_next_w, **PUBLISHED)
    np.testing.assert_allclose(config["velocity"], expected_velocity, **PUBLISHED)


def test_rmsprop_matches_cs231n(w, dw):
    config = {"learning_rate": 1e-2, "cache": _grid(0.6, 0.9)}
    next_w, config = optim.rmsprop(w, dw, config=config)
    expected_next_w = [
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]]
    expected_cache = [
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]]
    np.testing.assert_allclose(next_w, expected_next_w, **PUBLISHED)
    np.testing.assert_allclose(config["cache"], expected_cache, **PUBLISHED)


# Published Adam next_w. Rows 3-4 and the last entry of row 2 are as printed in
# the CS231n notebook (e.g. 0.1248705, 0.59801459); a copy circulated with
# different values there (0.12487072 ... 0.59803321) matches no Adam variant
# and is not the published array.
ADAM_NEXT_W = [
    [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
    [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
    [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
    [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]]


def _adam_check(w, dw):
    config = {"learning_rate": 1e-2, "m": _grid(0.6, 0.9), "v": _grid(0.7, 0.5), "t": 5}
    return optim.adam(w, dw, config=config)


def test_adam_matches_cs231n(w, dw):
    next_w, config = _adam_check(w, dw)
    expected_v = [
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]]
    expected_m = [
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]]
    np.testing.assert_allclose(next_w, ADAM_NEXT_W, **PUBLISHED)
    np.testing.assert_allclose(config["v"], expected_v, **PUBLISHED)
    np.testing.assert_allclose(config["m"], expected_m, **PUBLISHED)
    assert config["t"] == 6


def test_published_tolerance_rejects_a_small_error(w, dw):
    # the check must be able to fail: an error of 5e-8 on one entry is caught
    next_w, _ = _adam_check(w, dw)
    wrong = np.array(ADAM_NEXT_W)
    wrong[3, 4] += 5e-8
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(next_w, wrong, **PUBLISHED)


def test_sgd_law_and_default_learning_rate():
    w = np.array([1.0, -2.0, 0.5])
    dw = np.array([0.5, 0.25, -4.0])
    next_w, config = optim.sgd(w, dw, {"learning_rate": 0.1})
    np.testing.assert_allclose(next_w, [0.95, -2.025, 0.9], rtol=1e-15)
    next_w, config = optim.sgd(w, dw)
    assert config == {"learning_rate": 1e-2}
    np.testing.assert_allclose(next_w, [0.995, -2.0025, 0.54], rtol=1e-15)


def test_defaults_are_the_cs231n_ones():
    w, dw = np.ones((2, 3)), np.ones((2, 3))
    _, c = optim.sgd_momentum(w, dw)
    assert (c["learning_rate"], c["momentum"]) == (1e-2, 0.9)
    _, c = optim.rmsprop(w, dw)
    assert (c["learning_rate"], c["decay_rate"], c["epsilon"]) == (1e-2, 0.99, 1e-8)
    _, c = optim.adam(w, dw)
    assert (c["learning_rate"], c["beta1"], c["beta2"], c["epsilon"]) == (1e-3, 0.9, 0.999, 1e-8)


def test_state_lives_in_the_callers_dict_and_inputs_are_not_mutated():
    w = np.array([1.0, 2.0])
    dw = np.array([1.0, -1.0])
    velocity = np.zeros(2)
    config = {"learning_rate": 0.1, "velocity": velocity}
    w1, out = optim.sgd_momentum(w, dw, config)
    assert out is config and config["momentum"] == 0.9
    w2, _ = optim.sgd_momentum(w1, dw, config)
    # v1 = -0.1*dw; v2 = 0.9*v1 - 0.1*dw = -0.19*dw; w2 = w + v1 + v2 = w - 0.29*dw
    np.testing.assert_allclose(config["velocity"], [-0.19, 0.19], rtol=1e-14)
    np.testing.assert_allclose(w2, [0.71, 2.29], rtol=1e-14)
    np.testing.assert_array_equal(velocity, [0.0, 0.0])
    np.testing.assert_array_equal(w, [1.0, 2.0])


def test_adam_increments_t_before_bias_correction():
    # from zero state the corrected moments of step 1 are m_hat = dw and
    # v_hat = dw**2, so the step is lr * dw / (|dw| + eps): lr in the sign of dw.
    w = np.array([0.5, -0.5, 2.0])
    dw = np.array([3.0, -0.7, 1.2])
    config = {"learning_rate": 0.1}
    next_w, config = optim.adam(w, dw, config)
    assert config["t"] == 1
    np.testing.assert_allclose(next_w, [0.4, -0.4, 1.9], rtol=1e-7)
    _, config = optim.adam(next_w, dw, config)
    assert config["t"] == 2


@pytest.mark.parametrize("name", sorted(optim.UPDATE_RULES))
@pytest.mark.parametrize("lr", [1e-2, np.float64(1e-2)])
def test_float32_weights_stay_float32(name, lr):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    dw = rng.standard_normal((3, 4)).astype(np.float32)
    config = {"learning_rate": lr}
    rule = optim.get_update_rule(name)
    for _ in range(2):
        w, config = rule(w, dw, config)
        assert w.dtype == np.float32


@pytest.mark.parametrize("name", sorted(optim.UPDATE_RULES))
def test_gradient_shape_must_match(name):
    rule = optim.UPDATE_RULES[name]
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        rule(np.zeros((3, 2)), np.zeros((2, 3)))


def test_get_update_rule():
    assert optim.get_update_rule("adam") is optim.adam
    assert optim.get_update_rule("sgd_momentum") is optim.sgd_momentum
    with pytest.raises(ValueError, match=r"'adagrad'.*adam, rmsprop, sgd, sgd_momentum"):
        optim.get_update_rule("adagrad")
