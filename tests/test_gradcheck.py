"""The checker itself: numeric helpers, the tolerance rule, and that it fails
when a backward pass is wrong (a checker that cannot fail proves nothing)."""

import re
import types

import numpy as np
import pytest

from twingrad import layer_utils, layers
from twingrad.gradcheck import (
    Tolerance,
    check_layer,
    compare,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)
from twingrad.twins import REGISTRY


def test_eval_numerical_gradient_of_a_cubic():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    grad = eval_numerical_gradient(lambda v: np.sum(v**3), x, verbose=False)
    # Central differences are exact up to h^2 * f''' / 6 = 1e-10 for a cubic.
    np.testing.assert_allclose(grad, 3 * x**2, rtol=0, atol=1e-8)


def test_eval_numerical_gradient_array_is_a_vjp():
    x = np.array([0.3, -1.2, 2.0])
    df = np.array([1.0, -2.0, 0.5])
    grad = eval_numerical_gradient_array(np.sin, x, df)
    np.testing.assert_allclose(grad, df * np.cos(x), rtol=1e-8, atol=1e-10)


def test_numeric_helpers_leave_the_callers_array_unchanged():
    x = np.random.default_rng(0).normal(size=(3, 4))
    original = x.copy()
    eval_numerical_gradient(lambda v: np.sum(v**2), x, verbose=False)
    eval_numerical_gradient_array(lambda v: v * 2, x, np.ones_like(x))
    np.testing.assert_array_equal(x, original)


def test_numeric_helper_restores_the_array_when_f_raises():
    x = np.zeros(3)
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return v.sum()

    with pytest.raises(RuntimeError):
        eval_numerical_gradient(f, x, verbose=False)
    np.testing.assert_array_equal(x, np.zeros(3))


def test_eval_numerical_gradient_verbose_prints_indices(capsys):
    eval_numerical_gradient(lambda v: v.sum(), np.zeros(2), verbose=True)
    assert "(0,)" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_input_is_rejected_with_the_index(bad):
    x = np.zeros((2, 2))
    x[1, 0] = bad
    with pytest.raises(ValueError, match=r"x must be finite.*\[1, 0\]"):
        eval_numerical_gradient(lambda v: v.sum(), x, verbose=False)


def test_check_layer_rejects_nan_inputs():
    spec = REGISTRY["affine"]
    inputs = spec.sample(np.random.default_rng(0), (2, 3), 1.0, np.float64)
    inputs["w"][0, 0] = np.nan
    with pytest.raises(ValueError, match="w must be finite"):
        check_layer(spec, inputs, np.random.default_rng(0))


def test_rel_error():
    assert rel_error(np.array([1.0]), np.array([1.0])) == 0.0
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 3.0])) == pytest.approx(1 / 5)


def test_tolerance_rule_is_absolute_plus_relative():
    tol = Tolerance(atol=1e-3, rtol=1e-2)
    expected = np.array([0.0, 10.0])
    assert compare(np.array([0.9e-3, 10.1]), expected, tol, "ref").passed  # 0.1 <= 1e-3 + 0.1
    assert not compare(np.array([1.1e-3, 10.0]), expected, tol, "ref").passed  # zero expects atol only
    result = compare(np.array([0.0, 10.2]), expected, tol, "ref")
    assert not result.passed and result.worst_index == (1,)
    assert result.max_abs_error == pytest.approx(0.2) and result.expected == 10.0


def test_compare_never_passes_nan():
    assert not compare(np.array([np.nan]), np.array([1.0]), Tolerance(1.0, 1.0), "ref").passed


def _module_with(**overrides):
    """twingrad's hand functions with some replaced: a stand-in for a student's layers.py."""
    namespace = {**vars(layers), **vars(layer_utils), **overrides}
    return types.SimpleNamespace(**namespace)


def _affine_backward_off_by_a_thousandth(dout, cache):
    dx, dw, db = layers.affine_backward(dout, cache)
    dw = dw.copy()
    dw[1, 0] *= 1.001  # 0.1% on one element
    return dx, dw, db


def _batchnorm_backward_without_the_mean_term(dout, cache):
    # dx = gamma * s * (g - mean(g) - x_hat * mean(g * x_hat)), with the mean(g) term forgotten
    _, _, inv_std, x_hat, gamma, _ = cache
    n = dout.shape[0]
    dgamma = np.sum(dout * x_hat, axis=0)
    dx = gamma * inv_std * (dout - x_hat * dgamma / n)
    return dx, dgamma, dout.sum(axis=0)


def _svm_loss_with_flipped_sign(x, y):
    loss, dx = layers.svm_loss(x, y)
    return loss, -dx


@pytest.mark.parametrize(
    "spec_name, overrides, broken",
    [
        ("affine", {"affine_backward": _affine_backward_off_by_a_thousandth}, "dw"),
        ("batchnorm", {"batchnorm_backward": _batchnorm_backward_without_the_mean_term}, "dx"),
        ("svm_loss", {"svm_loss": _svm_loss_with_flipped_sign}, "dx"),
    ],
)
def test_checker_rejects_a_deliberately_broken_backward(spec_name, overrides, broken):
    spec = REGISTRY[spec_name]
    inputs = spec.sample(np.random.default_rng(1), (4, 3), 1.0, np.float64)
    assert check_layer(spec, inputs, np.random.default_rng(2)).passed  # the real one passes here
    result = check_layer(spec, inputs, np.random.default_rng(2), module=_module_with(**overrides))
    assert result.status == "fail"
    statuses = {g.gradient: g.status for g in result.gradients}
    assert statuses.pop(broken) == "fail"
    assert set(statuses.values()) <= {"pass"}  # and only the broken gradient is blamed
    failing = next(g for g in result.gradients if g.gradient == broken)
    assert not failing.vs_autograd.passed and not failing.vs_numeric.passed
    if spec_name == "affine":
        assert failing.vs_autograd.worst_index == (1, 0)


def test_a_stencil_across_the_relu_kink_is_reported_as_kink_not_fail():
    spec = REGISTRY["relu"]
    x = np.array([[0.5, -1.0, 3e-6]])  # 3e-6 is within h = 1e-5 of the kink
    result = check_layer(spec, {"x": x}, np.random.default_rng(0))
    (grad,) = result.gradients
    assert grad.vs_autograd.passed  # hand and twin take the same subgradient
    assert grad.status == "kink" and grad.vs_numeric.ignored == 1
    assert result.status == "kink"


def test_a_wrong_gradient_next_to_a_kink_is_still_a_fail():
    spec = REGISTRY["relu"]
    x = np.array([[0.5, -1.0, 3e-6]])

    def relu_backward_doubled(dout, cache):
        return 2 * layers.relu_backward(dout, cache)

    result = check_layer(spec, {"x": x}, np.random.default_rng(0), module=_module_with(relu_backward=relu_backward_doubled))
    assert result.status == "fail"


def test_check_layer_leaves_inputs_and_params_unchanged():
    spec = REGISTRY["batchnorm"]
    inputs = spec.sample(np.random.default_rng(3), (5, 4), 1.0, np.float64)
    x_before = inputs["x"].copy()
    check_layer(spec, inputs, np.random.default_rng(3))
    np.testing.assert_array_equal(inputs["x"], x_before)
    assert "running_mean" not in inputs["bn_param"]


def test_a_backward_returning_a_wrong_shape_is_named():
    spec = REGISTRY["affine"]
    inputs = spec.sample(np.random.default_rng(4), (4, 3), 1.0, np.float64)

    def affine_backward_transposed_dw(dout, cache):
        dx, dw, db = layers.affine_backward(dout, cache)
        return dx, dw.T, db

    module = _module_with(affine_backward=affine_backward_transposed_dw)
    expected_w = inputs["w"].shape
    message = re.escape(f"affine_backward returned dw of shape {expected_w[::-1]}, expected {expected_w}")
    with pytest.raises(ValueError, match=message):
        check_layer(spec, inputs, np.random.default_rng(4), module=module)
