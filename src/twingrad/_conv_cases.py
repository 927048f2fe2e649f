"""Random valid inputs, twin settings and kink locators for the convolutional layers of the registry.

Every sampler takes the image shape ``(N, C, H, W)`` it is given and draws the
rest so that the call is valid: a stride of 1 or 2, a pad of 0 to 2 and
kernels of 1 to 3 whose windows tile the padded image, a group count that
divides C. Sizes stay small on purpose (:data:`MAX_SHAPE`): finite differences
cost four evaluations per input element, and ``twingrad verify`` checks every
layer in a few seconds.
"""

from __future__ import annotations

import numpy as np

from . import functional as F

#: Largest (N, C, H, W) drawn for a convolutional layer: odd and even sizes up to 5.
MAX_SHAPE = (3, 3, 5, 5)
MAX_FILTERS = 3
MAX_KERNEL = 3


def _normal(rng, shape, scale, dtype):
    return (rng.normal(size=shape) * scale).astype(dtype)


def _window(rng, size: int, stride: int, pad: int = 0) -> int:
    """A window length in 1..MAX_KERNEL that fits ``size + 2 pad`` and whose positions tile it at ``stride``."""
    span = size + 2 * pad
    fits = [k for k in range(1, min(MAX_KERNEL, span) + 1) if (span - k) % stride == 0]
    return int(rng.choice(fits))


def _geometry(rng, height: int, width: int, pad_choices=(0, 1, 2)) -> tuple:
    """``(stride, pad, HH, WW)`` valid for an image of ``height`` x ``width``."""
    stride, pad = int(rng.choice([1, 2])), int(rng.choice(pad_choices))
    return stride, pad, _window(rng, height, stride, pad), _window(rng, width, stride, pad)


def sample_conv(rng, shape, scale, dtype) -> dict:
    """x (N, C, H, W), w (F, C, HH, WW) scaled by 1/sqrt(fan-in), b (F,), conv_param."""
    n, c, h, w = shape
    stride, pad, hh, ww = _geometry(rng, h, w)
    num_filters = int(rng.integers(1, MAX_FILTERS + 1))
    return {
        "x": _normal(rng, shape, scale, dtype),
        "w": _normal(rng, (num_filters, c, hh, ww), 1.0 / np.sqrt(c * hh * ww), dtype),
        "b": _normal(rng, (num_filters,), 1.0, dtype),
        "conv_param": {"stride": stride, "pad": pad},
    }


def _pool_param(rng, height: int, width: int) -> dict:
    stride = int(rng.choice([1, 2]))
    return {"pool_height": _window(rng, height, stride), "pool_width": _window(rng, width, stride), "stride": stride}


def _with_ties(rng, x: np.ndarray) -> np.ndarray:
    """In about a third of the cases, copy some pixels onto their right neighbour: windows with tied maxima."""
    if x.shape[3] < 2 or rng.random() >= 1 / 3:
        return x
    x = x.copy()
    tie = rng.random(x[..., 1:].shape) < 0.3
    x[..., 1:] = np.where(tie, x[..., :-1], x[..., 1:])
    return x


def sample_pool(rng, shape, scale, dtype) -> dict:
    """x (N, C, H, W), sometimes with exact ties, and a pool_param whose windows tile it."""
    x = _with_ties(rng, _normal(rng, shape, scale, dtype))
    return {"x": x, "pool_param": _pool_param(rng, shape[2], shape[3])}


def sample_conv_relu_pool(rng, shape, scale, dtype) -> dict:
    """As :func:`sample_conv`, plus a pool_param that tiles the convolution's output."""
    inputs = sample_conv(rng, shape, scale, dtype)
    stride, pad = inputs["conv_param"]["stride"], inputs["conv_param"]["pad"]
    hh, ww = inputs["w"].shape[2:]
    out_h = 1 + (shape[2] + 2 * pad - hh) // stride
    out_w = 1 + (shape[3] + 2 * pad - ww) // stride
    inputs["pool_param"] = _pool_param(rng, out_h, out_w)
    return inputs


def _spatial_x(rng, shape, scale, dtype):
    # an offset per channel, so the mean subtraction has something to do
    return _normal(rng, shape, scale, dtype) + _normal(rng, (1, shape[1], 1, 1), scale, dtype)


def sample_spatial_batchnorm(rng, shape, scale, dtype) -> dict:
    """x (N, C, H, W), gamma and beta (C,), a train-mode bn_param."""
    c = shape[1]
    return {"x": _spatial_x(rng, shape, scale, dtype), "gamma": _normal(rng, (c,), 1.0, dtype) + 1,
            "beta": _normal(rng, (c,), 1.0, dtype), "bn_param": {"mode": "train", "eps": 1e-5}}


def sample_spatial_groupnorm(rng, shape, scale, dtype) -> dict:
    """x (N, C, H, W), gamma and beta (1, C, 1, 1), G a divisor of C, gn_param."""
    c = shape[1]
    groups = int(rng.choice([g for g in range(1, c + 1) if c % g == 0]))
    return {"x": _spatial_x(rng, shape, scale, dtype), "gamma": _normal(rng, (1, c, 1, 1), 1.0, dtype) + 1,
            "beta": _normal(rng, (1, c, 1, 1), 1.0, dtype), "G": groups, "gn_param": {"eps": 1e-5}}


# --- the twins' keyword arguments -------------------------------------------------------


def conv_static(inputs) -> dict:
    return dict(inputs["conv_param"])


def pool_static(inputs) -> dict:
    return dict(inputs["pool_param"])


def conv_relu_pool_static(inputs) -> dict:
    pool = inputs["pool_param"]
    return {**inputs["conv_param"], "pool_height": pool["pool_height"], "pool_width": pool["pool_width"],
            "pool_stride": pool["stride"]}


def spatial_batchnorm_static(inputs) -> dict:
    return {"eps": inputs["bn_param"]["eps"]}


def spatial_groupnorm_static(inputs) -> dict:
    return {"G": inputs["G"], "eps": inputs["gn_param"]["eps"]}


# --- kink locators: quantities whose sign change is a non-differentiable point ----------


def _selected(x, pool_height: int, pool_width: int, stride: int) -> np.ndarray:
    """+1 at each window's first maximum, -1 elsewhere, one entry per (window, offset).

    The sign flips exactly where the winner of a window changes, which is where
    max pooling has its kinks (a tie is one).
    """
    first = F.first_max_offsets(x, pool_height, pool_width, stride)
    offsets = np.arange(pool_height * pool_width).reshape(-1, *([1] * first.ndim))
    return np.where(first[None] == offsets, 1.0, -1.0)


def pool_kinks(inputs) -> np.ndarray:
    param = inputs["pool_param"]
    return _selected(inputs["x"], param["pool_height"], param["pool_width"], param["stride"])


def conv_relu_kinks(inputs) -> np.ndarray:
    """The ReLU's pre-activations."""
    return F.conv(inputs["x"], inputs["w"], inputs["b"], **conv_static(inputs))


def conv_relu_pool_kinks(inputs) -> np.ndarray:
    """The ReLU's pre-activations, then the pooling's winners among the ReLU's outputs."""
    pre = conv_relu_kinks(inputs)
    pool = inputs["pool_param"]
    winners = _selected(F.relu(pre), pool["pool_height"], pool["pool_width"], pool["stride"])
    return np.concatenate([np.ravel(pre), np.ravel(winners)])
