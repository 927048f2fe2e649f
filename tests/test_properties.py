"""Every registered layer, three ways: hand-derived, autograd twin, central differences.

The registry drives this file: a layer added to ``twingrad.twins.REGISTRY`` is
checked here without further code.
"""

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from twingrad.gradcheck import check_layer, tolerance
from twingrad.strategies import layer_cases
from twingrad.twins import REGISTRY, run_hand, run_twin

SPECS = list(REGISTRY.values())


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@given(data=st.data())
def test_hand_twin_and_numeric_agree(spec, data):
    case = data.draw(layer_cases(spec), label="case")
    result = check_layer(spec, case.inputs(), case.rng())
    event(f"status: {result.status}")
    assert result.forward.passed, f"{case}: forward differs from the twin: {result.forward}"
    for grad in result.gradients:
        assert grad.vs_autograd.passed, f"{case}: {grad.gradient} vs autograd: {grad.vs_autograd}"
        # 'kink' means central differences straddled a non-differentiable point and
        # everything else agreed; a genuine mismatch anywhere else is a 'fail'.
        assert grad.status in ("pass", "kink"), f"{case}: {grad.gradient} vs numeric: {grad.vs_numeric}"


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@given(data=st.data())
def test_hand_backward_is_the_autograd_vjp(spec, data):
    """Directly with numpy.testing, so a bug in the checker cannot hide a mismatch."""
    case = data.draw(layer_cases(spec), label="case")
    inputs = case.inputs()
    rng = case.rng()
    twin_out = spec.twin_function(inputs)(*(inputs[a] for a in spec.wrt))
    dout = rng.uniform(0.5, 2.0) if spec.is_loss else rng.normal(size=np.shape(twin_out))
    hand_out, hand_grads = run_hand(spec, inputs, dout)
    auto_out, auto_grads = run_twin(spec, inputs, dout)
    tol = tolerance("exact", np.float64)
    np.testing.assert_allclose(hand_out, auto_out, rtol=tol.rtol, atol=tol.atol)
    for name in spec.gradient_names:
        np.testing.assert_allclose(hand_grads[name], auto_grads[name], rtol=tol.rtol, atol=tol.atol, err_msg=f"{case} {name}")
