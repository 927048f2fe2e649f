"""Convolution and max pooling three ways over the geometries students get wrong.

Beyond the registry's property tests (tests/test_properties.py), these draw the
geometry themselves: batch 1, strides 1 and 2, pads 0 to 2, odd and even sizes
up to 7, kernels 1 to 3; and check that the naive loops, the fast (im2col)
version and the autograd twin agree with each other, and with central
differences, in float64.
"""

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from twingrad import fast_layers, layers
from twingrad.gradcheck import check_layer, tolerance
from twingrad.twins import REGISTRY, run_hand, run_twin

EXACT = tolerance("exact", np.float64)


@st.composite
def conv_cases(draw):
    """``(inputs, seed)`` for a convolution: any tiling geometry within the small bounds."""
    stride, pad = draw(st.sampled_from([1, 2])), draw(st.integers(0, 2))
    n, c, f = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sizes, kernels = [], []
    for _ in range(2):
        size = draw(st.integers(1, 7))
        span = size + 2 * pad
        kernel = draw(st.sampled_from([k for k in (1, 2, 3) if k <= span and (span - k) % stride == 0]))
        sizes.append(size)
        kernels.append(kernel)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=(n, c, *sizes)),
              "w": rng.normal(size=(f, c, *kernels)) / np.sqrt(c * kernels[0] * kernels[1]),
              "b": rng.normal(size=f), "conv_param": {"stride": stride, "pad": pad}}
    return inputs, seed


@st.composite
def pool_cases(draw):
    """``(inputs, seed)`` for a max pooling: tiling windows, sometimes with exact ties."""
    stride = draw(st.sampled_from([1, 2]))
    param, sizes = {"stride": stride}, []
    for axis in ("height", "width"):
        window = draw(st.integers(1, 3))
        size = window + stride * draw(st.integers(0, 3))
        param[f"pool_{axis}"] = window
        sizes.append(size)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *sizes)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if draw(st.booleans()):
        x = np.round(x * 2) / 2  # a coarse grid: many windows tie for the maximum
    return {"x": x, "pool_param": param}, seed


def _single_conv_case(stride, pad, n, c, h, w, f, hh, ww, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=(n, c, h, w)), "w": rng.normal(size=(f, c, hh, ww)) / 3,
              "b": rng.normal(size=f), "conv_param": {"stride": stride, "pad": pad}}
    return inputs, seed


def _assert_all_agree(names, inputs, seed):
    """Every named registry entry: hand vs twin elementwise, and three ways with check_layer."""
    rng = np.random.default_rng([seed, 1])
    specs = [REGISTRY[name] for name in names]
    twin_out = specs[0].twin_function(inputs)(*(inputs[a] for a in specs[0].wrt))
    dout = rng.normal(size=np.shape(twin_out))
    _, auto = run_twin(specs[0], inputs, dout)
    for spec in specs:
        out, grads = run_hand(spec, inputs, dout)
        np.testing.assert_allclose(out, twin_out, rtol=EXACT.rtol, atol=EXACT.atol, err_msg=f"{spec.forward}")
        for name in spec.gradient_names:
            np.testing.assert_allclose(grads[name], auto[name], rtol=EXACT.rtol, atol=EXACT.atol,
                                       err_msg=f"{spec.backward} {name}")
        result = check_layer(spec, inputs, np.random.default_rng(seed))
        event(f"{spec.name}: {result.status}")
        assert result.status in ("pass", "kink"), result


@given(conv_cases())
@example(_single_conv_case(stride=2, pad=2, n=1, c=1, h=7, w=5, f=1, hh=3, ww=1))
@example(_single_conv_case(stride=1, pad=0, n=1, c=3, h=1, w=1, f=2, hh=1, ww=1))
@example(_single_conv_case(stride=2, pad=1, n=1, c=2, h=4, w=6, f=3, hh=2, ww=2))
def test_conv_naive_fast_and_twin_agree(case):
    inputs, seed = case
    event(f"stride {inputs['conv_param']['stride']}, pad {inputs['conv_param']['pad']}")
    _assert_all_agree(["conv_naive", "conv_fast"], inputs, seed)


@given(pool_cases())
@example(({"x": np.array([[[[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]]),  # every window ties
           "pool_param": {"pool_height": 2, "pool_width": 2, "stride": 1}}, 0))
def test_max_pool_naive_fast_and_twin_agree(case):
    inputs, seed = case
    _assert_all_agree(["max_pool_naive", "max_pool_fast"], inputs, seed)


@given(conv_cases(), st.sampled_from([(1, 1, 1), (2, 2, 2), (2, 1, 1), (3, 2, 1)]))
def test_conv_relu_pool_three_ways(case, pool):
    inputs, seed = case
    out_h = 1 + (inputs["x"].shape[2] + 2 * inputs["conv_param"]["pad"] - inputs["w"].shape[2]) // \
        inputs["conv_param"]["stride"]
    out_w = 1 + (inputs["x"].shape[3] + 2 * inputs["conv_param"]["pad"] - inputs["w"].shape[3]) // \
        inputs["conv_param"]["stride"]
    height, width, stride = pool
    if (out_h - height) % stride or (out_w - width) % stride or height > out_h or width > out_w:
        height, width, stride = 1, 1, 1
    inputs["pool_param"] = {"pool_height": height, "pool_width": width, "stride": stride}
    _assert_all_agree(["conv_relu_pool"], inputs, seed)


@pytest.mark.parametrize("shape", [(1, 1, 3, 5), (2, 3, 2, 2)])
@pytest.mark.parametrize("mode", ["pool", "conv"])
def test_fast_layers_keep_float32(shape, mode):
    """The fast layers compute in the input's dtype: a float32 network stays float32."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    if mode == "conv":
        w, b = rng.normal(size=(2, shape[1], 1, 1)).astype(np.float32), np.zeros(2, np.float32)
        out, cache = fast_layers.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
        grads = fast_layers.conv_backward_fast(np.ones_like(out), cache)
        naive = layers.conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})[0]
    else:
        out, cache = fast_layers.max_pool_forward_fast(x, {"pool_height": 1, "pool_width": 1, "stride": 1})
        grads = (fast_layers.max_pool_backward_fast(np.ones_like(out), cache),)
        naive = x
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    np.testing.assert_allclose(out, naive, rtol=1e-6, atol=1e-6)
