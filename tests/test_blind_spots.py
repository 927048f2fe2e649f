"""What both sides of a comparison share, and regimes the fixed examples never reach.

Mutation testing (``scripts/mutate.py``) showed that the three-way tests kill
every sign, axis and dropped term, and that what survives is what a test
cannot see: the tolerance table the tests read their tolerance from, the
shared dropout helper both the net and its twin call, epsilons that only
matter for tiny gradients, defaults every other test overrides. Each test
here pins one of those from outside: literal numbers, values worked out by
hand, properties tested directly. Each was seen to fail on its planted bug.
"""

import itertools
import types

import numpy as np
import pytest

from twingrad import fc_net, layer_utils, layers, optim
from twingrad import functional as F
from twingrad.fc_net import FullyConnectedNet, twin_forward, twin_loss
from twingrad.gradcheck import (
    STEPS,
    TOLERANCES,
    Tolerance,
    check_layer,
    compare,
    compare_projection,
    eval_numerical_gradient,
    random_upstream,
    rel_error,
    tolerance,
)
from twingrad.layers import batchnorm_forward
from twingrad.testing import assert_gradients, assert_layer_matches
from twingrad.twins import REGISTRY

F64, F32 = np.dtype(np.float64), np.dtype(np.float32)


# -- the published tolerances -------------------------------------------------------------


def test_published_tolerances_and_steps_are_pinned():
    # Written out, not read from TOLERANCES: a test that reads the table cannot see it loosened.
    assert tolerance("exact", np.float64) == Tolerance(atol=1e-10, rtol=1e-7)
    assert tolerance("exact", np.float32) == Tolerance(atol=1e-5, rtol=1e-4)
    assert tolerance("numeric", np.float64) == Tolerance(atol=1e-7, rtol=1e-5)
    assert tolerance("numeric", np.float32) == Tolerance(atol=1e-2, rtol=1e-2)
    assert {kind: set(table) for kind, table in TOLERANCES.items()} == {"exact": {F64, F32}, "numeric": {F64, F32}}
    # and the central-difference steps: CS231n's 1e-5 in float64
    assert STEPS == {F64: 1e-5, F32: 1e-2}


# -- the tolerance rule at its boundary -----------------------------------------------------
# With a large rtol the bound taken from ``expected`` and one taken from ``actual``
# differ by a factor: these cases pass under one rule and fail under the other.

WIDE = Tolerance(atol=0.0, rtol=0.5)


def test_bound_is_atol_plus_rtol_times_abs_expected():
    tol = Tolerance(atol=0.25, rtol=0.5)
    np.testing.assert_array_equal(tol.bound(np.array([-4.0, 0.0, 2.0])), [2.25, 0.25, 1.25])


def test_compare_at_and_just_past_the_boundary():
    # expected 2, rtol 0.5: the bound is 1, so |actual - 2| may be 1 and no more.
    expected = np.array([2.0])
    assert compare(np.array([3.0]), expected, WIDE, "ref").passed  # error 1 = bound
    assert compare(np.array([1.0]), expected, WIDE, "ref").passed
    assert not compare(np.array([3.0 + 1e-9]), expected, WIDE, "ref").passed
    assert not compare(np.array([1.0 - 1e-9]), expected, WIDE, "ref").passed


def test_the_bound_comes_from_expected_not_from_actual():
    # actual 3 vs expected 2: error 1 = 0.5 * |2| passes (0.5 * |3| would be 1.5: also passes);
    # actual 1 vs expected 2: error 1 = 0.5 * |2| passes, but 0.5 * |1| = 0.5 would fail it.
    assert compare(np.array([1.0]), np.array([2.0]), WIDE, "ref").passed
    # actual 2 vs expected 1: error 1 > 0.5 * |1| fails, but 0.5 * |2| = 1 would pass it.
    assert not compare(np.array([2.0]), np.array([1.0]), WIDE, "ref").passed
    # and with a sign change: actual -1.5 vs expected -3 passes (bound 1.5), the swap does not.
    assert compare(np.array([-1.5]), np.array([-3.0]), WIDE, "ref").passed
    assert not compare(np.array([-3.0]), np.array([-1.5]), WIDE, "ref").passed


def test_compare_with_atol_and_rtol_both_at_the_boundary():
    tol = Tolerance(atol=1.0, rtol=0.5)
    expected = np.array([0.0, 4.0, -4.0])
    assert compare(np.array([1.0, 7.0, -7.0]), expected, tol, "ref").passed  # errors 1, 3, 3 = bounds
    result = compare(np.array([1.0, 7.0 + 1e-9, -7.0]), expected, tol, "ref")
    assert not result.passed and result.worst_index == (1,)
    assert not compare(np.array([1.0 + 1e-9, 7.0, -7.0]), expected, tol, "ref").passed



def test_compare_of_empty_arrays_passes_with_zero_errors():
    result = compare(np.zeros((0, 3)), np.zeros((0, 3)), Tolerance(atol=0.0, rtol=0.0), "ref")
    assert result.passed and result.ignored == 0 and result.worst_index == ()
    assert (result.max_abs_error, result.max_rel_error, result.expected, result.actual) == (0.0, 0.0, 0.0, 0.0)


def test_compare_reports_cs231n_relative_error_of_small_values_too():
    # |a - e| / (|a| + |e|) = 0.25 / 0.75 for the first element, 0 for the second (equal) and third (both 0)
    result = compare(np.array([0.5, 3.0, 0.0]), np.array([0.25, 3.0, 0.0]), Tolerance(atol=1.0, rtol=0.0), "ref")
    assert result.passed and result.max_abs_error == 0.25
    assert result.max_rel_error == pytest.approx(1 / 3, rel=1e-12)


def test_compare_projection_bound_and_its_zero_case():
    # bound = atol * sum|u| + rtol * sum|reference * u| = 0.5 * 3 + 0.25 * (2 + 4) = 3
    u, reference = np.array([1.0, -2.0]), np.array([2.0, 2.0])
    tol = Tolerance(atol=0.5, rtol=0.25)
    assert compare_projection(4.0, 1.0, reference, u, tol) == (1.0, 3.0)  # error 3: exactly at the bound
    assert compare_projection(1.0, 4.0 + 3e-9, reference, u, tol)[0] > 1.0
    # a zero bound (u = 0) passes only an exact match
    assert compare_projection(0.0, 0.0, reference, np.zeros(2), tol) == (0.0, 0.0)
    assert compare_projection(1e-300, 0.0, reference, np.zeros(2), tol) == (np.inf, 0.0)


def test_ignored_elements_are_neither_the_worst_nor_counted_in_the_errors():
    # excess (|a - e| / 0.5): 8 for the ignored element, 0.2 for the kept one
    result = compare(np.array([5.0, 1.1]), np.array([1.0, 1.0]), Tolerance(atol=0.5, rtol=0.0), "ref",
                     ignore=np.array([True, False]))
    assert result.passed and result.ignored == 1 and result.worst_index == (1,)
    assert result.max_abs_error == pytest.approx(0.1, rel=1e-9) and result.actual == 1.1

# -- the optimizers' epsilon, where it matters ----------------------------------------------
# At the usual gradient sizes eps = 1e-8 changes a step by ~1e-10 relative, so the
# CS231n examples cannot tell sqrt(cache) + eps from sqrt(cache + eps). For a
# gradient of 1e-6 from a zero state, eps is a tenth of the denominator.


def test_rmsprop_epsilon_with_a_tiny_gradient_from_a_zero_cache():
    w, dw = np.array([1.0]), np.array([1e-6])
    next_w, config = optim.rmsprop(w, dw)  # learning_rate 1e-2, decay_rate 0.99, epsilon 1e-8
    # cache = 0.99 * 0 + 0.01 * (1e-6)^2 = 1e-14, sqrt(cache) = 1e-7
    # step = 1e-2 * 1e-6 / (1e-7 + 1e-8) = 1e-8 / 1.1e-7 = 1 / 11 = 0.0909...
    # (with sqrt(cache + eps) it would be 1e-8 / sqrt(1.00000001e-8) ~= 1e-4)
    np.testing.assert_allclose(config["cache"], [1e-14], rtol=1e-12)
    np.testing.assert_allclose(next_w, [1.0 - 1.0 / 11.0], rtol=1e-12)


def test_adam_epsilon_with_a_tiny_gradient_from_a_zero_state():
    w, dw = np.array([1.0]), np.array([1e-6])
    next_w, config = optim.adam(w, dw)  # learning_rate 1e-3, beta1 0.9, beta2 0.999, epsilon 1e-8
    # t = 1: m = 0.1 * 1e-6 = 1e-7, v = 0.001 * 1e-12 = 1e-15,
    # m_hat = 1e-7 / 0.1 = 1e-6, v_hat = 1e-15 / 0.001 = 1e-12, sqrt(v_hat) = 1e-6
    # step = 1e-3 * 1e-6 / (1e-6 + 1e-8) = 1e-3 / 1.01
    # (with sqrt(v_hat + eps) it would be 1e-9 / sqrt(1.0001e-8) ~= 1e-5)
    np.testing.assert_allclose(config["m"], [1e-7], rtol=1e-12)
    np.testing.assert_allclose(config["v"], [1e-15], rtol=1e-12)
    np.testing.assert_allclose(next_w, [1.0 - 1e-3 / 1.01], rtol=1e-12)


def test_adam_epsilon_dominates_a_gradient_far_below_it():
    # dw = 1e-10: sqrt(v_hat) = 1e-10 << eps, so step = 1e-3 * 1e-10 / (1e-10 + 1e-8) = 1e-3 / 101.
    next_w, _ = optim.adam(np.array([0.0]), np.array([1e-10]))
    np.testing.assert_allclose(next_w, [-1e-3 / 101], rtol=1e-10)


def test_rmsprop_epsilon_from_config_is_used():
    # A given epsilon replaces the default: 1e-2 * 1e-6 / (1e-7 + 1e-7) = 0.05.
    next_w, _ = optim.rmsprop(np.array([0.0]), np.array([1e-6]), {"epsilon": 1e-7})
    np.testing.assert_allclose(next_w, [-0.05], rtol=1e-12)


# -- batch norm's epsilon in the twin -------------------------------------------------------
# The only other test-mode twin test uses eps = 0; a twin that ignored eps there would pass.


def test_batchnorm_twin_test_mode_uses_eps():
    x = np.array([[1.0, 2.0, -1.0], [3.0, 0.0, 5.0]])
    gamma, beta = np.array([1.0, 2.0, -1.0]), np.array([0.0, 1.0, 0.5])
    running_mean, running_var = np.array([1.0, -1.0, 1.0]), np.array([0.15, 0.9, 3.9])
    eps = 0.1  # running_var + eps = 0.25, 1, 4: standard deviations 0.5, 1, 2
    expected = np.array([[1.0 * (1 - 1) / 0.5 + 0.0, 2.0 * (2 + 1) / 1 + 1.0, -1.0 * (-1 - 1) / 2 + 0.5],
                         [1.0 * (3 - 1) / 0.5 + 0.0, 2.0 * (0 + 1) / 1 + 1.0, -1.0 * (5 - 1) / 2 + 0.5]])
    twin = F.batchnorm(x, gamma, beta, eps, running_mean=running_mean, running_var=running_var)
    np.testing.assert_allclose(twin, expected, rtol=1e-12, atol=1e-12)
    # and the hand pass, on the same numbers
    param = {"mode": "test", "eps": eps, "running_mean": running_mean, "running_var": running_var}
    np.testing.assert_allclose(batchnorm_forward(x, gamma, beta, param)[0], expected, rtol=1e-12, atol=1e-12)


def test_batchnorm_and_layernorm_twins_use_eps_in_train_mode():
    # A column [1, 3] has mean 2 and biased variance 1; with eps = 3 the std is 2, so x_hat = -0.5, 0.5.
    x = np.array([[1.0, 10.0], [3.0, 10.0]])
    gamma, beta = np.ones(2), np.zeros(2)
    np.testing.assert_allclose(F.batchnorm(x, gamma, beta, 3.0), [[-0.5, 0.0], [0.5, 0.0]], atol=1e-12)
    # A row [1, 3] likewise, over its features.
    np.testing.assert_allclose(F.layernorm(x.T[:1], gamma, beta, 3.0), [[-0.5, 0.5]], atol=1e-12)



def test_default_eps_is_1e_minus_5_in_every_normalization_hand_and_twin():
    # The registry always passes eps explicitly, so no three-way test reaches a default.
    # A feature of variance 1e-6 next to eps = 1e-5: x_hat = +-1e-3 / sqrt(1.1e-5) = +-0.30151...
    x = np.array([[0.0, 1.0], [2e-3, 1.0]])
    x_hat = 1e-3 / np.sqrt(1.1e-5)
    expected = np.array([[-x_hat, 0.0], [x_hat, 0.0]])
    gamma, beta = np.ones(2), np.zeros(2)
    np.testing.assert_allclose(F.batchnorm(x, gamma, beta), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batchnorm_forward(x, gamma, beta, {"mode": "train"})[0], expected, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(F.layernorm(x.T, gamma, beta), expected.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(layers.layernorm_forward(x.T, gamma, beta)[0], expected.T, rtol=1e-9, atol=1e-12)
    # the sandwiches, through an identity affine layer: relu keeps the positive half
    w, b = np.eye(2), np.zeros(2)
    relu_expected = np.maximum(expected, 0.0)
    np.testing.assert_allclose(F.affine_bn_relu(x, w, b, gamma, beta), relu_expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(F.affine_ln_relu(x.T, w, b, gamma, beta), relu_expected.T, rtol=1e-9, atol=1e-12)
    hand_bn = layer_utils.affine_bn_relu_forward(x, w, b, gamma, beta, {"mode": "train"})[0]
    np.testing.assert_allclose(hand_bn, relu_expected, rtol=1e-9, atol=1e-12)
    hand_ln = layer_utils.affine_ln_relu_forward(x.T, w, b, gamma, beta, {})[0]
    np.testing.assert_allclose(hand_ln, relu_expected.T, rtol=1e-9, atol=1e-12)


# -- dropout masks of a network's layers ------------------------------------------------------
# The net and its twin take their masks from the same helper, so hand-vs-twin tests
# cannot see every layer drawing the same mask: test the property itself.


def test_equally_wide_layers_of_the_hand_net_draw_different_masks(monkeypatch):
    masks = []

    def recording_dropout_forward(x, dropout_param):
        out, cache = layers.dropout_forward(x, dropout_param)
        masks.append(cache.mask)
        return out, cache

    monkeypatch.setattr(fc_net, "dropout_forward", recording_dropout_forward)
    model = FullyConnectedNet([30, 30, 30], input_dim=4, num_classes=3, dropout=0.5, seed=11, dtype=np.float64)
    rng = np.random.default_rng(0)
    model.loss(rng.normal(size=(6, 4)), rng.integers(0, 3, size=6))
    assert len(masks) == 3 and all(m.shape == (6, 30) for m in masks)
    for mask in masks:
        assert set(np.unique(mask)) == {0.0, 2.0}  # drops some units, keeps others scaled by 1 / (1 - p)
    for a, b in itertools.combinations(masks, 2):
        assert not np.array_equal(a, b)  # 180 units each: equal by chance with probability 2**-180


def test_equally_wide_layers_of_the_twin_draw_different_masks():
    # Weights that make the masks readable off the twin's outputs: every unit of the
    # first layer is 4 before dropout, and the next layers are identities.
    n, width, p = 5, 40, 0.5
    params = {"W1": np.ones((3, width)), "b1": np.ones(width),
              "W2": np.eye(width), "b2": np.zeros(width),
              "W3": np.eye(width), "b3": np.zeros(width)}
    scores, trace = twin_forward(params, np.ones((n, 3)), dropout=p, seed=11)
    np.testing.assert_array_equal(trace.pre_relu[0], 4.0)
    first = trace.pre_relu[1] / 4.0  # the first layer's mask: 4 * mask, through the identity
    kept = first > 0
    second = np.asarray(scores)[kept] / trace.pre_relu[1][kept]  # the second's, where the first kept the unit
    assert set(np.unique(first)) == {0.0, 2.0} and set(np.unique(second)) <= {0.0, 2.0}
    assert np.any(second == 0.0)  # the same mask would keep every unit the first one kept


# -- a backward wrong by one part in a million ------------------------------------------------
# Central differences cannot see an error of 1e-6 relative (their tolerance is 1e-5);
# the exact comparison with autograd (rtol 1e-7) must.

RELATIVE_ERROR = 1e-6


def _affine_backward_slightly_off(dout, cache):
    dx, dw, db = layers.affine_backward(dout, cache)
    return dx, dw * (1 + RELATIVE_ERROR), db


def _batchnorm_backward_slightly_off(dout, cache):
    dx, dgamma, dbeta = layers.batchnorm_backward(dout, cache)
    return dx * (1 + RELATIVE_ERROR), dgamma, dbeta


def _softmax_loss_slightly_off(x, y):
    loss, dx = layers.softmax_loss(x, y)
    return loss, dx * (1 + RELATIVE_ERROR)


@pytest.mark.parametrize("spec_name, overrides, broken", [
    ("affine", {"affine_backward": _affine_backward_slightly_off}, "dw"),
    ("batchnorm", {"batchnorm_backward": _batchnorm_backward_slightly_off}, "dx"),
    ("softmax_loss", {"softmax_loss": _softmax_loss_slightly_off}, "dx"),
])
def test_check_layer_fails_a_backward_off_by_one_part_in_a_million(spec_name, overrides, broken):
    spec = REGISTRY[spec_name]
    inputs = spec.sample(np.random.default_rng(5), (4, 3), 1.0, np.float64)
    assert check_layer(spec, inputs, np.random.default_rng(6)).passed  # the real one passes here
    module = types.SimpleNamespace(**{**vars(layers), **vars(layer_utils), **overrides})
    result = check_layer(spec, inputs, np.random.default_rng(6), module=module)
    checks = {g.gradient: g for g in result.gradients}
    assert result.status == "fail" and checks[broken].status == "fail"
    assert not checks[broken].vs_autograd.passed
    assert checks[broken].vs_numeric.passed  # only the exact comparison can see it
    # CS231n's relative error |a - e| / (|a| + |e|) of a factor 1 + 1e-6 is 1e-6 / (2 + 1e-6)
    assert checks[broken].vs_autograd.max_rel_error == pytest.approx(RELATIVE_ERROR / 2, rel=1e-3)


def _affine_twin(x, w, b):
    return F.affine(x, w, b)


def test_assert_layer_matches_fails_a_backward_off_by_one_part_in_a_million():
    rng = np.random.default_rng(7)
    inputs = {"x": rng.normal(size=(4, 3)), "w": rng.normal(size=(3, 5)), "b": rng.normal(size=5)}
    wrt = ["x", "w", "b"]
    assert_layer_matches(layers.affine_forward, layers.affine_backward, twin=_affine_twin, inputs=inputs, wrt=wrt)
    with pytest.raises(AssertionError, match="dw"):
        assert_layer_matches(layers.affine_forward, _affine_backward_slightly_off, twin=_affine_twin,
                             inputs=inputs, wrt=wrt)


def test_assert_gradients_fails_a_backward_off_by_one_part_in_a_million(tmp_path):
    submission = tmp_path / "my_layers.py"
    submission.write_text(
        "from twingrad.layers import *  # a student's layers.py, right but for one gradient\n"
        "from twingrad import layers as _layers\n\n\n"
        "def batchnorm_backward_alt(dout, cache):\n"
        "    dx, dgamma, dbeta = _layers.batchnorm_backward_alt(dout, cache)\n"
        f"    return dx, dgamma * (1 + {RELATIVE_ERROR!r}), dbeta\n"
    )
    assert_gradients("batchnorm_backward", str(submission), cases=2)  # the untouched one passes
    with pytest.raises(AssertionError, match="batchnorm_backward_alt: dgamma"):
        assert_gradients("batchnorm_backward_alt", str(submission), cases=2)


# -- defaults no test passes through -------------------------------------------------------------


def test_fully_connected_net_defaults_are_the_cs231n_ones():
    # Every other test names input_dim and num_classes; CS231n's notebooks rely on the defaults.
    model = FullyConnectedNet([10], seed=0)
    assert model.config == {"hidden_dims": [10], "input_dim": 3072, "num_classes": 10, "dropout": 0.0,
                            "normalization": None, "reg": 0.0, "weight_scale": 1e-2, "dtype": "float32", "seed": 0}
    assert model.params["W1"].shape == (3072, 10) and model.params["W2"].shape == (10, 10)
    assert model.params["W1"].dtype == np.float32
    assert 0.0097 < float(model.params["W1"].std()) < 0.0103  # 30720 draws of N(0, 1e-2 ** 2)
    assert model.dropout_param == {} and model.bn_params == []


def test_twin_loss_defaults_are_the_plain_net():
    # no normalization, no dropout, no regularization: the hand loss of a default net
    model = FullyConnectedNet([4], input_dim=3, num_classes=2, weight_scale=1.0, dtype=np.float64, seed=2)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(5, 3)), rng.integers(0, 2, size=5)
    hand_loss, _ = model.loss(X, y)
    np.testing.assert_allclose(twin_loss(model.params, X, y), hand_loss, rtol=1e-12)


def test_twin_forward_defaults_are_the_plain_net():
    model = FullyConnectedNet([4, 4], input_dim=3, num_classes=2, weight_scale=1.0, dtype=np.float64, seed=3)
    X = np.random.default_rng(2).normal(size=(5, 3))
    scores, trace = twin_forward(model.params, X)
    np.testing.assert_allclose(scores, model.loss(X), rtol=1e-12)  # test-mode scores: no dropout, no norm
    assert trace.pre_norm == [] and len(trace.pre_relu) == 2


def test_a_scalar_upstream_gradient_takes_both_signs_and_stays_of_order_one():
    # The upstream gradient of a loss: either sign, magnitude in [0.5, 2] (so never 1, never 0, never huge).
    rng = np.random.default_rng(0)
    values = np.array([random_upstream(rng, 1.0) for _ in range(200)])
    assert values.min() < 0 < values.max()
    assert np.all((np.abs(values) >= 0.5) & (np.abs(values) <= 2.0))


def test_eval_numerical_gradient_is_verbose_by_default_as_in_cs231n(capsys):
    eval_numerical_gradient(lambda v: float(np.sum(v)), np.zeros(2))
    assert capsys.readouterr().out.splitlines() == ["(0,) 1.0", "(1,) 1.0"]


def test_rel_error_floor_is_1e_minus_8():
    # max |x - y| / max(1e-8, |x| + |y|): the floor decides for values below 1e-8
    assert rel_error(np.array([0.0]), np.array([1e-8])) == 1.0
    assert rel_error(np.array([1e-9]), np.array([0.0])) == pytest.approx(0.1, rel=1e-12)
    assert rel_error(np.array([0.0]), np.array([0.0])) == 0.0
