"""The classic mistakes of the convolutional layers, each computed and shown only when it reproduces what
the student's code returned: the flipped kernel, the stride ignored in the backward pass, the pooling
gradient sent to the whole window, spatial batch norm over the wrong axes, group norm's groups split on
the wrong axis.

A registry entry names the sets that apply to it (``LayerSpec.diagnoses``); :func:`forward_hints` and
:func:`backward_hints` look them up here. Plain numpy loops: the checked sizes are small.
"""

from __future__ import annotations

import numpy as np


def _pad(x, pad: int):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def _conv(x, w, b, stride: int, pad: int, step: int | None = None):
    """Cross-correlation as the course defines it; ``step`` places the windows (the stride by default)."""
    step = stride if step is None else step
    xp = _pad(x, pad)
    n, _, h, wd = xp.shape
    f, _, hh, ww = w.shape
    out_h, out_w = 1 + (h - hh) // stride, 1 + (wd - ww) // stride
    out = np.zeros((n, f, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, :, i * step:i * step + hh, j * step:j * step + ww]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def _conv_backward(x, w, dout, stride: int, pad: int, step: int):
    """dx and dw of the course's convolution, the windows placed ``step`` apart (a wrong step: a mistake)."""
    xp = _pad(x, pad)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    hh, ww = w.shape[2:]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(i * step, i * step + hh), slice(j * step, j * step + ww))
            if xp[window].shape[2:] != (hh, ww):
                return None, None
            dxp[window] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
            dw += np.tensordot(dout[:, :, i, j], xp[window], axes=([0], [0]))
    h, wd = x.shape[2:]
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw


def _conv_forward(inputs, got, tol):
    x, w, b, param = inputs["x"], inputs["w"], inputs["b"], inputs["conv_param"]
    flipped = _conv(x, w[:, :, ::-1, ::-1], b, param["stride"], param["pad"])
    if w.shape[2] * w.shape[3] > 1 and tol.fits(got, flipped):
        return ["the kernel is flipped: the course's 'convolution' is a cross-correlation, out[i, j] = "
                "sum(x_window * w) without reversing w"]
    return []


def _conv_backward_hints(inputs, dout, gradient, got, tol):
    x, w, param = inputs["x"], inputs["w"], inputs["conv_param"]
    stride, pad = param["stride"], param["pad"]
    if stride == 1 or gradient not in ("dx", "dw"):
        return []
    dx, dw = _conv_backward(x, w, dout, stride, pad, step=1)
    model = dx if gradient == "dx" else dw
    if model is not None and tol.fits(got, model):
        return [f"the stride is ignored in the backward pass: the windows are placed 1 apart, not "
                f"stride = {stride} (x_pad[:, :, i * stride:i * stride + HH, ...])"]
    return []


def _pool_backward_hints(inputs, dout, gradient, got, tol):
    x, param = inputs["x"], inputs["pool_param"]
    ph, pw, stride = param["pool_height"], param["pool_width"], param["stride"]
    every, ties = np.zeros_like(x), np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(i * stride, i * stride + ph), slice(j * stride, j * stride + pw))
            g = dout[:, :, i, j][:, :, None, None]
            every[window] += g
            ties[window] += g * (x[window] == x[window].max(axis=(2, 3), keepdims=True))
    if tol.fits(got, every):
        return ["the gradient goes to every element of the window; max pooling sends it to the maximum only"]
    if tol.fits(got, ties):
        return ["the gradient goes to every tied maximum of a window; the course sends it to the first one"]
    return []


def _normalized(x, axes, eps):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def _spatial_batchnorm_forward(inputs, got, tol):
    x, eps = inputs["x"], inputs["bn_param"].get("eps", 1e-5)
    gamma, beta = inputs["gamma"].reshape(1, -1, 1, 1), inputs["beta"].reshape(1, -1, 1, 1)
    wrong = {(0,): "over the batch only, per pixel (N): the course's spatial batch norm takes every N, H, W "
                   "of a channel (axes 0, 2, 3)",
             (2, 3): "per image and channel (H, W: instance norm); spatial batch norm takes axes 0, 2, 3",
             (1, 2, 3): "per image (C, H, W: layer norm); spatial batch norm takes axes 0, 2, 3"}
    return [f"the statistics are taken {text}" for axes, text in wrong.items()
            if tol.fits(got, gamma * _normalized(x, axes, eps) + beta)][:1]


def _spatial_groupnorm_forward(inputs, got, tol):
    x, G, eps = inputs["x"], inputs["G"], inputs["gn_param"].get("eps", 1e-5)
    n, c, h, w = x.shape
    swapped = x.reshape(n, c // G, G, h, w)
    right = "group g holds the consecutive channels g * C/G ... (g + 1) * C/G - 1: x.reshape(N, G, C // G, H, W)"
    wrong = [((1, 3, 4), "x.reshape(N, C // G, G, H, W) with statistics over axes 1, 3, 4 groups every G-th "
                         f"channel; {right}"),
             ((2, 3, 4), f"x.reshape(N, C // G, G, H, W) makes C/G groups of G channels; {right}")]
    for axes, text in wrong:
        if tol.fits(got, inputs["gamma"] * _normalized(swapped, axes, eps).reshape(x.shape) + inputs["beta"]):
            return [f"the groups are split on the wrong axis: {text}"]
    return []


FORWARD = {"conv": _conv_forward, "spatial_batchnorm": _spatial_batchnorm_forward,
           "spatial_groupnorm": _spatial_groupnorm_forward}
BACKWARD = {"conv": _conv_backward_hints, "max_pool": _pool_backward_hints}


def forward_hints(names, inputs64: dict, got, tol) -> list[str]:
    """The hints of the sets ``names`` that reproduce a wrong forward output ``got``."""
    got = np.asarray(got, np.float64)
    return [hint for name in names if name in FORWARD for hint in FORWARD[name](inputs64, got, tol)][:1]


def backward_hints(names, inputs64: dict, dout, gradient: str, got, tol) -> list[str]:
    """The hints of the sets ``names`` that reproduce a wrong gradient ``got``."""
    got, dout = np.asarray(got, np.float64), np.asarray(dout, np.float64)
    return [hint for name in names if name in BACKWARD
            for hint in BACKWARD[name](inputs64, dout, gradient, got, tol)][:1]
