"""Convolution, max pooling, spatial batch and group norm: hand-written examples.

- the course's published forward values (ConvolutionalNetworks notebook), as published;
- the first-maximum rule of max pooling on a tie, by hand;
- bad ``conv_param``/``pool_param``/``G`` give one-line errors naming the argument and values;
- a broken variant of each layer (the classic mistakes) is rejected by ``check_layer``.
"""

import types

import numpy as np
import pytest

from twingrad import fast_layers, layer_utils, layers
from twingrad import functional as F
from twingrad.gradcheck import check_layer
from twingrad.twins import REGISTRY

CONV_NAMES = [("conv_forward_naive", layers.conv_forward_naive), ("conv_forward_fast", fast_layers.conv_forward_fast)]
POOL_NAMES = [("max_pool_forward_naive", layers.max_pool_forward_naive),
              ("max_pool_forward_fast", fast_layers.max_pool_forward_fast)]

# --- the course's published values ------------------------------------------------------------

# CS231n assignment 2, ConvolutionalNetworks.ipynb, "Convolution: Naive forward pass":
# x = linspace(-0.1, 0.5) over (2, 3, 4, 4), w = linspace(-0.2, 0.3) over (3, 3, 4, 4),
# b = linspace(-0.1, 0.2, 3), stride 2, pad 1. Printed to 8 decimals.
CONV_CORRECT_OUT = np.array([[[[-0.08759809, -0.10987781],
                               [-0.18387192, -0.2109216]],
                              [[0.21027089, 0.21661097],
                               [0.22847626, 0.23004637]],
                              [[0.50813986, 0.54309974],
                               [0.64082444, 0.67101435]]],
                             [[[-0.98053589, -1.03143541],
                               [-1.19128892, -1.24695841]],
                              [[0.69108355, 0.66880383],
                               [0.59480972, 0.56776003]],
                              [[2.36270298, 2.36904306],
                               [2.38090835, 2.38247847]]]])

# "Max-Pooling: Naive forward": x = linspace(-0.3, 0.4) over (2, 3, 4, 4), 2x2 windows, stride 2.
POOL_CORRECT_OUT = np.array([[[[-0.26315789, -0.24842105],
                               [-0.20421053, -0.18947368]],
                              [[-0.14526316, -0.13052632],
                               [-0.08631579, -0.07157895]],
                              [[-0.02736842, -0.01263158],
                               [0.03157895, 0.04631579]]],
                             [[[0.09052632, 0.10526316],
                               [0.14947368, 0.16421053]],
                              [[0.20842105, 0.22315789],
                               [0.26736842, 0.28210526]],
                              [[0.32631579, 0.34105263],
                               [0.38526316, 0.4]]]])
PRINTED = 1e-8  # the published values are rounded to 8 decimals: half a unit of the last digit, plus rounding


def _linspace(low, high, shape):
    return np.linspace(low, high, num=int(np.prod(shape))).reshape(shape)


@pytest.mark.parametrize("name, forward", CONV_NAMES + [("functional.conv", None)])
def test_conv_forward_matches_the_course(name, forward):
    x, w = _linspace(-0.1, 0.5, (2, 3, 4, 4)), _linspace(-0.2, 0.3, (3, 3, 4, 4))
    b = np.linspace(-0.1, 0.2, num=3)
    out = F.conv(x, w, b, stride=2, pad=1) if forward is None else forward(x, w, b, {"stride": 2, "pad": 1})[0]
    np.testing.assert_allclose(out, CONV_CORRECT_OUT, rtol=0, atol=PRINTED, err_msg=name)


@pytest.mark.parametrize("name, forward", POOL_NAMES + [("functional.max_pool", None)])
def test_max_pool_forward_matches_the_course(name, forward):
    x = _linspace(-0.3, 0.4, (2, 3, 4, 4))
    param = {"pool_width": 2, "pool_height": 2, "stride": 2}
    out = F.max_pool(x, 2, 2, 2) if forward is None else forward(x, param)[0]
    np.testing.assert_allclose(out, POOL_CORRECT_OUT, rtol=0, atol=PRINTED, err_msg=name)


def test_conv_by_hand_one_pixel():
    """A 2x2 image, one 2x2 filter, pad 1, stride 1: each output sees the overlapping corner."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    w = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    out, _ = layers.conv_forward_naive(x, w, np.array([0.5]), {"stride": 1, "pad": 1})
    # top-left output: only x[0, 0] = 1 lies under w[1, 1] = 1000
    expected = np.array([[[[1000 * 1, 100 * 1 + 1000 * 2, 100 * 2],
                           [10 * 1 + 1000 * 3, 1 * 1 + 10 * 2 + 100 * 3 + 1000 * 4, 1 * 2 + 100 * 4],
                           [10 * 3, 1 * 3 + 10 * 4, 1 * 4]]]]) + 0.5
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("backward", [layers.max_pool_backward_naive, fast_layers.max_pool_backward_fast])
def test_max_pool_routes_a_tie_to_the_first_maximum(backward):
    forward = layers.max_pool_forward_naive if backward is layers.max_pool_backward_naive \
        else fast_layers.max_pool_forward_fast
    # One 2x2 window, stride 1 over a 2x3 image: the two windows share the middle column.
    x = np.array([[[[5.0, 7.0, 7.0], [7.0, 1.0, 2.0]]]])
    out, cache = forward(x, {"pool_height": 2, "pool_width": 2, "stride": 1})
    np.testing.assert_array_equal(out, [[[[7.0, 7.0]]]])
    dx = backward(np.array([[[[10.0, 100.0]]]]), cache)
    # window 1 ties at (0, 1) and (1, 0): the first in row-major order, (0, 1), wins;
    # window 2 ties at (0, 1) and (0, 2): (0, 1) again, so it collects both gradients.
    np.testing.assert_array_equal(dx, [[[[0.0, 110.0, 0.0], [0.0, 0.0, 0.0]]]])


def test_group_norm_groups_are_consecutive_channels():
    """G = 2 over 4 channels: channels {0, 1} and {2, 3}, each normalized over its 2*H*W values."""
    x = np.zeros((1, 4, 1, 2))
    x[0, :, 0, :] = [[0.0, 2.0], [4.0, 6.0], [0.0, 0.0], [1.0, 3.0]]
    ones, zeros = np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1))
    out, _ = layers.spatial_groupnorm_forward(x, ones, zeros, 2, {"eps": 0.0})
    # group 1: values 0, 2, 4, 6 (mean 3, std sqrt(5)); group 2: 0, 0, 1, 3 (mean 1, std sqrt(1.5))
    g1 = (np.array([0.0, 2.0, 4.0, 6.0]) - 3) / np.sqrt(5)
    g2 = (np.array([0.0, 0.0, 1.0, 3.0]) - 1) / np.sqrt(1.5)
    np.testing.assert_allclose(out.ravel(), np.concatenate([g1, g2]), rtol=1e-12)


# --- bad arguments ------------------------------------------------------------------------------


def _conv_args(x_shape=(2, 3, 5, 5), w_shape=(4, 3, 3, 3), b_shape=(4,)):
    return np.zeros(x_shape), np.zeros(w_shape), np.zeros(b_shape)


@pytest.mark.parametrize("name, forward", CONV_NAMES)
@pytest.mark.parametrize("args, conv_param, message", [
    (_conv_args(x_shape=(2, 3, 6, 6)), {"stride": 2, "pad": 0},
     r"conv_param does not tile x: \(H \+ 2 \* pad = 6\) - HH 3 = 3 is not a multiple of stride 2"),
    (_conv_args(), {"stride": 1, "pad": -1}, r"conv_param\['pad'\] must be an int >= 0, got -1"),
    (_conv_args(), {"stride": 0, "pad": 1}, r"conv_param\['stride'\] must be an int >= 1, got 0"),
    (_conv_args(), {"stride": 1.5, "pad": 1}, r"conv_param\['stride'\] must be an int >= 1, got 1.5"),
    (_conv_args(), {"pad": 1}, r"conv_param must contain 'stride'"),
    (_conv_args(w_shape=(4, 2, 3, 3)), {"stride": 1, "pad": 1}, r"C = 3 channels as x .* got w.shape = \(4, 2, 3, 3\)"),
    (_conv_args(b_shape=(3,)), {"stride": 1, "pad": 1}, r"b must have shape \(4,\) .*got \(3,\)"),
    (_conv_args(x_shape=(2, 3, 5)), {"stride": 1, "pad": 1}, r"x must be 4-D, got shape \(2, 3, 5\)"),
    (_conv_args(w_shape=(4, 3, 9, 3)), {"stride": 1, "pad": 1}, r"HH = 9 does not fit in H \+ 2 \* pad = 7"),
])
def test_bad_conv_arguments_are_named(name, forward, args, conv_param, message):
    with pytest.raises((ValueError, KeyError, TypeError), match=message) as info:
        forward(*args, conv_param)
    text = str(info.value).strip("'\"")  # str(KeyError) quotes its message
    assert text.startswith(f"{name}: "), text
    assert "\n" not in text


@pytest.mark.parametrize("name, forward", POOL_NAMES)
@pytest.mark.parametrize("pool_param, message", [
    ({"pool_height": 2, "pool_width": 2, "stride": 2}, r"pool_param does not tile x: \(H = 5\) - pool_height 2 = 3 "
                                                       r"is not a multiple of stride 2"),
    ({"pool_height": 6, "pool_width": 2, "stride": 1}, r"pool_height = 6 does not fit in H = 5"),
    ({"pool_height": 0, "pool_width": 2, "stride": 1}, r"pool_param\['pool_height'\] must be an int >= 1, got 0"),
    ({"pool_height": 2, "stride": 1}, r"pool_param must contain 'pool_width'"),
    ([2, 2, 2], r"pool_param must be a dict, got list"),
])
def test_bad_pool_arguments_are_named(name, forward, pool_param, message):
    with pytest.raises((ValueError, KeyError, TypeError), match=message) as info:
        forward(np.zeros((1, 2, 5, 4)), pool_param)
    assert name in str(info.value)


@pytest.mark.parametrize("G, gamma_shape, message", [
    (3, (1, 4, 1, 1), r"G must be a positive int that divides the 4 channels of x .* got G = 3"),
    (0, (1, 4, 1, 1), r"got G = 0"),
    (2, (4,), r"gamma must be 4-D, got shape \(4,\)"),
    (2, (1, 2, 1, 1), r"gamma must have shape \(1, 4, 1, 1\)"),
])
def test_bad_group_norm_arguments_are_named(G, gamma_shape, message):
    with pytest.raises(ValueError, match=message):
        layers.spatial_groupnorm_forward(np.zeros((2, 4, 3, 3)), np.ones(gamma_shape), np.zeros((1, 4, 1, 1)), G, {})


def test_spatial_batchnorm_names_a_wrong_gamma():
    with pytest.raises(ValueError, match=r"spatial_batchnorm_forward: gamma must have shape \(3,\) \(one scale per "
                                         r"channel of x\), got \(4,\)"):
        layers.spatial_batchnorm_forward(np.zeros((2, 3, 2, 2)), np.ones(4), np.zeros(3), {"mode": "train"})


# --- broken variants are rejected ---------------------------------------------------------------


def _conv_backward_stride_ignored(dout, cache):
    """The backward walks the windows at stride 1 whatever the forward's stride."""
    x, w, _, conv_param = cache
    pad = conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    hh, ww = w.shape[2:]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            g = dout[:, :, i, j]
            dw += np.tensordot(g, xp[:, :, i:i + hh, j:j + ww], axes=([0], [0]))
            dxp[:, :, i:i + hh, j:j + ww] += np.tensordot(g, w, axes=([1], [0]))
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, dout.sum(axis=(0, 2, 3))


def _conv_backward_flipped_kernel(dout, cache):
    """dx computed with the kernel rotated by 180 degrees (convolution instead of correlation)."""
    x, w, b, conv_param = cache
    dx, _, _ = layers.conv_backward_naive(dout, cache._replace(w=w[:, :, ::-1, ::-1]))
    _, dw, db = layers.conv_backward_naive(dout, cache)
    return dx, dw, db


def _conv_fast_backward_no_bias_sum(dout, cache):
    dx, dw, _ = fast_layers.conv_backward_fast(dout, cache)
    return dx, dw, dout.sum(axis=0)[:, 0, 0] * np.ones(dout.shape[1])


def _pool_backward_whole_window(dout, cache):
    """The gradient sent to every element of the window, not to its maximum."""
    x, param = cache
    ph, pw, s = param["pool_height"], param["pool_width"], param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += dout[:, :, i:i + 1, j:j + 1]
    return dx


def _pool_backward_every_tied_maximum(dout, cache):
    """The gradient sent to every element equal to the maximum: wrong only at a tie."""
    x, out, param = cache
    ph, pw, s = param["pool_height"], param["pool_width"], param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * s:i * s + ph, j * s:j * s + pw]
            dx[:, :, i * s:i * s + ph, j * s:j * s + pw] += (window == out[:, :, i:i + 1, j:j + 1]) * \
                dout[:, :, i:i + 1, j:j + 1]
    return dx


def _spatial_batchnorm_wrong_axes(x, gamma, beta, bn_param):
    """Statistics per (C, H, W) over the batch only: the 2-D batch norm of flattened images."""
    n, c, h, w = x.shape
    out, cache = layers.batchnorm_forward(x.reshape(n, -1), np.repeat(gamma, h * w), np.repeat(beta, h * w), bn_param)
    return out.reshape(x.shape), (cache, x.shape)


def _spatial_batchnorm_wrong_axes_backward(dout, cache):
    cache, (n, c, h, w) = cache
    dx, dgamma, dbeta = layers.batchnorm_backward_alt(dout.reshape(n, -1), cache)
    return dx.reshape(dout.shape), dgamma.reshape(c, -1).sum(axis=1), dbeta.reshape(c, -1).sum(axis=1)


def _groupnorm_groups_on_wrong_axis(x, gamma, beta, G, gn_param):
    """Channels c, c + G, c + 2G, ... grouped together (reshape (N, C/G, G, ...) instead of (N, G, C/G, ...))."""
    n, c, h, w = x.shape
    swapped = x.reshape(n, c // G, G, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    out, cache = layers.spatial_groupnorm_forward(swapped, np.ones_like(gamma), np.zeros_like(beta), G, gn_param)
    out = out.reshape(n, G, c // G, h, w).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    return out * gamma + beta, cache


def _groupnorm_backward_no_mean_path(dout, cache):
    x_hat, inv_std, gamma, groups = cache
    dx, dgamma, dbeta = layers.spatial_groupnorm_backward(dout, cache)
    return (dout * gamma * inv_std.mean()), dgamma, dbeta


def _conv_relu_backward_no_mask(dout, cache):
    conv_cache, _ = cache
    return fast_layers.conv_backward_fast(dout, conv_cache)


def _conv_relu_pool_backward_whole_window(dout, cache):
    conv_cache, relu_cache, pool_cache = cache
    ds = _pool_backward_whole_window(dout, (pool_cache.x, pool_cache.pool_param))
    return fast_layers.conv_backward_fast(layers.relu_backward(ds, relu_cache), conv_cache)


def _conv_inputs(rng, shape=(2, 2, 5, 5), stride=2, pad=1, kernel=3):
    return {"x": rng.normal(size=shape), "w": rng.normal(size=(3, shape[1], kernel, kernel)) / 3,
            "b": rng.normal(size=3), "conv_param": {"stride": stride, "pad": pad}}


def _pool_inputs(rng, ties=False):
    x = rng.normal(size=(2, 2, 5, 5))
    if ties:
        x = np.round(x)
    return {"x": x, "pool_param": {"pool_height": 3, "pool_width": 3, "stride": 2}}


def _norm_inputs(rng, groups=None):
    shape = (2, 4, 3, 3)
    x = rng.normal(size=shape) + rng.normal(size=(1, 4, 1, 1))
    if groups is None:
        return {"x": x, "gamma": rng.normal(size=4) + 1, "beta": rng.normal(size=4),
                "bn_param": {"mode": "train", "eps": 1e-5}}
    return {"x": x, "gamma": rng.normal(size=(1, 4, 1, 1)) + 1, "beta": rng.normal(size=(1, 4, 1, 1)),
            "G": groups, "gn_param": {"eps": 1e-5}}


BROKEN = [
    # (registry name, the broken function's CS231n name, the broken function, inputs)
    ("conv_naive", "conv_backward_naive", _conv_backward_stride_ignored, _conv_inputs),
    ("conv_naive", "conv_backward_naive", _conv_backward_flipped_kernel, lambda rng: _conv_inputs(rng, stride=1)),
    ("conv_fast", "conv_backward_fast", _conv_fast_backward_no_bias_sum, _conv_inputs),
    ("max_pool_naive", "max_pool_backward_naive", _pool_backward_whole_window, _pool_inputs),
    ("max_pool_fast", "max_pool_backward_fast", _pool_backward_every_tied_maximum,
     lambda rng: _pool_inputs(rng, ties=True)),
    ("spatial_batchnorm", ("spatial_batchnorm_forward", "spatial_batchnorm_backward"),
     (_spatial_batchnorm_wrong_axes, _spatial_batchnorm_wrong_axes_backward), _norm_inputs),
    ("spatial_groupnorm", "spatial_groupnorm_forward", _groupnorm_groups_on_wrong_axis,
     lambda rng: _norm_inputs(rng, groups=2)),
    ("spatial_groupnorm", "spatial_groupnorm_backward", _groupnorm_backward_no_mean_path,
     lambda rng: _norm_inputs(rng, groups=2)),
    ("conv_relu", "conv_relu_backward", _conv_relu_backward_no_mask, _conv_inputs),
    ("conv_relu_pool", "conv_relu_pool_backward", _conv_relu_pool_backward_whole_window,
     lambda rng: {**_conv_inputs(rng, shape=(2, 2, 6, 6), stride=1),
                  "pool_param": {"pool_height": 2, "pool_width": 2, "stride": 2}}),
]


@pytest.mark.parametrize("spec_name, function, broken, make_inputs", BROKEN,
                         ids=[f"{b[0]}-{getattr(b[2], '__name__', 'pair').strip('_')}" for b in BROKEN])
def test_check_layer_rejects_a_broken_variant(spec_name, function, broken, make_inputs):
    spec = REGISTRY[spec_name]
    inputs = make_inputs(np.random.default_rng(0))
    own = spec.hand_module()
    # The correct layer passes at these very inputs: the failure below is the mistake's.
    assert check_layer(spec, inputs, np.random.default_rng(1)).status in ("pass", "kink")
    replaced = dict(zip(function, broken)) if isinstance(function, tuple) else {function: broken}
    module = types.SimpleNamespace(**{spec.forward: getattr(own, spec.forward),
                                      spec.backward: getattr(own, spec.backward), **replaced})
    result = check_layer(spec, inputs, np.random.default_rng(1), module=module)
    assert result.status == "fail", result


def test_the_sandwiches_use_the_fast_layers():
    """As in the course: conv_relu_forward's cache is the fast layer's (im2col columns kept)."""
    rng = np.random.default_rng(0)
    inputs = _conv_inputs(rng)
    _, (conv_cache, _) = layer_utils.conv_relu_forward(inputs["x"], inputs["w"], inputs["b"], inputs["conv_param"])
    assert isinstance(conv_cache, fast_layers.FastConvCache)


def test_a_backward_names_a_cache_from_another_forward():
    x, w, b = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), np.zeros(1)
    out, fast_cache = fast_layers.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
    with pytest.raises(TypeError, match=r"conv_backward_naive: cache must be the ConvCache that conv_forward_naive "
                                        r"returns; got a FastConvCache \(the cache conv_forward_fast returns\)"):
        layers.conv_backward_naive(np.ones_like(out), fast_cache)


@pytest.mark.parametrize("forward, backward", [(layers.conv_forward_naive, layers.conv_backward_naive),
                                               (fast_layers.conv_forward_fast, fast_layers.conv_backward_fast)])
def test_mixed_dtypes_are_promoted_as_numpy_does(forward, backward):
    """float32 images with float64 filters: output, cache and every gradient in float64 (the layers' rule)."""
    x, w, b = np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 3, 3)), np.zeros(1, np.float32)
    out, cache = forward(x, w, b, {"stride": 1, "pad": 1})
    grads = backward(np.ones(out.shape, np.float32), cache)
    assert out.dtype == np.float64 and [g.dtype for g in grads] == [np.float64] * 3
