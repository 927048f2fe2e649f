"""A layer added to the registry is checked everywhere with no other change.

The test registers a layer twingrad does not have, ``scale`` (``out = x * w``
with one weight per feature), from a module of its own, and runs the three
checkers on it as they are: ``twingrad verify``, the property tests, and
``twingrad.testing``; then a broken backward of it, which each must reject.
"""

import contextlib
import io
import json
import sys
import types

import numpy as np
import pytest

import test_properties as properties
from twingrad.cli import main
from twingrad.testing import check_module
from twingrad.twins import REGISTRY, LayerSpec


def scale_forward(x, w):
    return x * w, (x, w)


def scale_backward(dout, cache):
    x, w = cache
    return dout * w, np.sum(dout * x, axis=0)


def scale_backward_broken(dout, cache):
    x, w = cache
    return dout * w, np.mean(dout * x, axis=0)


def _sample(rng, shape, scale, dtype):
    return {"x": (rng.normal(size=shape) * scale).astype(dtype), "w": rng.normal(size=shape[1:]).astype(dtype)}


@pytest.fixture
def scale_layer(monkeypatch):
    module = types.ModuleType("twingrad.scale_layer")
    module.scale_forward, module.scale_backward = scale_forward, scale_backward
    monkeypatch.setitem(sys.modules, "twingrad.scale_layer", module)
    spec = LayerSpec(name="scale", forward="scale_forward", backward="scale_backward", module="scale_layer",
                     twin=lambda x, w: x * w, args=("x", "w"), wrt=("x", "w"), sample=_sample)
    monkeypatch.setitem(REGISTRY, "scale", spec)
    return module, spec


def _verify(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["verify", *argv])
    return code, out.getvalue()


def test_verify_checks_a_new_layer(scale_layer):
    code, out = _verify("--only", "scale_forward,scale_backward", "--json", "-k", "3")
    doc = json.loads(out)
    assert code == 0 and doc["functions"] == {"scale_forward": "pass", "scale_backward": "pass"}
    assert {c["gradient"] for c in doc["checks"]} == {"out", "dx", "dw"}


def test_the_property_tests_check_a_new_layer(scale_layer):
    _, spec = scale_layer
    properties.test_hand_twin_and_numeric_agree(spec)  # the hypothesis test itself, on the new entry


def test_the_testing_api_checks_a_new_layer_and_rejects_its_broken_backward(scale_layer):
    module, _ = scale_layer
    records = check_module(module, ["scale_forward", "scale_backward"], cases=2)
    assert {r.status for r in records} == {"pass"}
    broken = types.SimpleNamespace(scale_forward=scale_forward, scale_backward=scale_backward_broken)
    records = {r.gradient: r.status for r in check_module(broken, ["scale_backward"], cases=2)}
    assert records == {"dx": "pass", "dw": "fail"}


def test_the_property_tests_reject_its_broken_backward(scale_layer, monkeypatch):
    module, spec = scale_layer
    monkeypatch.setattr(module, "scale_backward", scale_backward_broken)
    with pytest.raises(AssertionError, match="dw vs autograd"):
        properties.test_hand_twin_and_numeric_agree(spec)
