"""Hand-derived convolution and max pooling, the naive (readable) versions.

Each loops over the output positions, so the code reads next to the course
notes: one output pixel is the dot product of one input window with one
filter. The vectorised versions that a network trains with are in
:mod:`twingrad.fast_layers`; the pure twins in :mod:`twingrad.functional`
(``conv``, ``max_pool``). The checks of ``conv_param`` and ``pool_param``
live here and are shared by all three.

Layout is the course's: images ``(N, C, H, W)``, filters ``(F, C, HH, WW)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import _validate as check


class ConvGeometry(NamedTuple):
    stride: int
    pad: int
    out_height: int
    out_width: int


class PoolGeometry(NamedTuple):
    pool_height: int
    pool_width: int
    stride: int
    out_height: int
    out_width: int


def _param_int(func: str, param_name: str, param, key: str, minimum: int) -> int:
    """``param[key]`` as an int >= ``minimum``, or an error naming the key and the value."""
    if not isinstance(param, Mapping):
        raise TypeError(f"{func}: {param_name} must be a dict, got {type(param).__name__}")
    if key not in param:
        raise KeyError(f"{func}: {param_name} must contain {key!r}; it has keys {sorted(param)}")
    value = param[key]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{func}: {param_name}[{key!r}] must be an int >= {minimum}, got {value!r}")
    return int(value)


def _tiles(func: str, param_name: str, span_label: str, span: int, window_label: str, window: int,
           stride: int) -> int:
    """Output length along one axis; an error naming the sizes when the windows do not tile ``span``."""
    if window > span:
        raise ValueError(f"{func}: the window does not fit: {window_label} = {window} does not fit in "
                         f"{span_label} = {span}")
    if (span - window) % stride:
        raise ValueError(f"{func}: {param_name} does not tile x: ({span_label} = {span}) - {window_label} {window} "
                         f"= {span - window} is not a multiple of stride {stride}")
    return 1 + (span - window) // stride


def conv_geometry(func: str, x, w, b, conv_param) -> ConvGeometry:
    """Check the arguments of a convolution; return stride, pad and the output size.

    Raises a one-line error naming the argument for a wrong rank or dtype, a
    channel count of ``w`` that is not ``x``'s, a bias that is not ``(F,)``,
    a stride below 1, a negative pad, and windows that do not tile the padded input.
    """
    check.float_array(func, "x", x, ndim=4)
    check.float_array(func, "w", w, ndim=4)
    check.float_array(func, "b", b, ndim=1)
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"{func}: w must have shape (F, C, HH, WW) with C = {x.shape[1]} channels as x "
                         f"(x.shape = {x.shape}); got w.shape = {w.shape}")
    check.shape(func, "b", b, (w.shape[0],), "one bias per filter")
    stride = _param_int(func, "conv_param", conv_param, "stride", 1)
    pad = _param_int(func, "conv_param", conv_param, "pad", 0)
    out_h = _tiles(func, "conv_param", "H + 2 * pad", x.shape[2] + 2 * pad, "HH", w.shape[2], stride)
    out_w = _tiles(func, "conv_param", "W + 2 * pad", x.shape[3] + 2 * pad, "WW", w.shape[3], stride)
    return ConvGeometry(stride, pad, out_h, out_w)


def pool_geometry(func: str, x, pool_param) -> PoolGeometry:
    """Check the arguments of a max pooling; return the window, stride and output size."""
    check.float_array(func, "x", x, ndim=4)
    ph = _param_int(func, "pool_param", pool_param, "pool_height", 1)
    pw = _param_int(func, "pool_param", pool_param, "pool_width", 1)
    stride = _param_int(func, "pool_param", pool_param, "stride", 1)
    out_h = _tiles(func, "pool_param", "H", x.shape[2], "pool_height", ph, stride)
    out_w = _tiles(func, "pool_param", "W", x.shape[3], "pool_width", pw, stride)
    return PoolGeometry(ph, pw, stride, out_h, out_w)


def pad_images(x: np.ndarray, pad: int) -> np.ndarray:
    """Zero-pad the two spatial axes of ``x`` (N, C, H, W) by ``pad`` on every side."""
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


class ConvCache(NamedTuple):
    x: np.ndarray  #: input, shape (N, C, H, W)
    w: np.ndarray  #: filters, shape (F, C, HH, WW)
    b: np.ndarray  #: biases, shape (F,)
    conv_param: dict  #: {'stride', 'pad'}, as given

    made_by = "conv_forward_naive"  # named in the error when another backward is given this cache


def conv_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict):
    """Convolutional layer (a cross-correlation, as in every framework), by loops.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, HH, WW)
    b : ndarray, shape (F,)
    conv_param : dict
        ``stride`` (int >= 1) and ``pad`` (int >= 0, zeros on every side).
        The windows must tile the padded input: ``(H + 2 pad - HH) % stride == 0``, same for W.

    Returns
    -------
    out : ndarray, shape (N, F, H', W')
        ``H' = 1 + (H + 2 pad - HH) / stride``, ``W' = 1 + (W + 2 pad - WW) / stride``.
    cache : ConvCache

    Notes
    -----
    With :math:`\\tilde x` the padded input and :math:`s` the stride,

    .. math:: y_{nfij} = b_f + \\sum_{c,k,l} \\tilde x_{n,c,si+k,sj+l}\\, w_{fckl}.
    """
    stride, pad, out_h, out_w = conv_geometry("conv_forward_naive", x, w, b, conv_param)
    x, w, b = check.promote(x, w, b)
    num_filters, _, hh, ww = w.shape
    xp = pad_images(x, pad)
    out = np.empty((x.shape[0], num_filters, out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = xp[:, :, i * stride:i * stride + hh, j * stride:j * stride + ww]  # (N, C, HH, WW)
            # every sample's window against every filter: a (N, C*HH*WW) by (C*HH*WW, F) product
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, ConvCache(x, w, b, conv_param)


def conv_backward_naive(dout: np.ndarray, cache: ConvCache):
    """Gradients of :func:`conv_forward_naive`: ``(dx, dw, db)``, by loops.

    Parameters
    ----------
    dout : ndarray, shape (N, F, H', W')
    cache : ConvCache

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
    dw : ndarray, shape (F, C, HH, WW)
    db : ndarray, shape (F,)

    Notes
    -----
    Every output pixel :math:`y_{nfij}` used one window of the padded input and
    filter :math:`f`, so its gradient :math:`g_{nfij}` flows back along both:

    .. math::

        \\frac{\\partial L}{\\partial w_{fckl}} = \\sum_{n,i,j} g_{nfij}\\, \\tilde x_{n,c,si+k,sj+l},
        \\qquad
        \\frac{\\partial L}{\\partial \\tilde x_{n,c,si+k,sj+l}} \\mathrel{+}= \\sum_f g_{nfij}\\, w_{fckl},

    and :math:`\\partial L/\\partial b_f = \\sum_{n,i,j} g_{nfij}`. The first is a
    correlation of the input with ``dout``; the second, summed over the windows
    that overlap a pixel, is a full convolution of ``dout`` (dilated by the
    stride) with the kernel flipped. The padding's gradient is dropped.
    """
    f = "conv_backward_naive"
    x, w, _, conv_param = check.cache(f, cache, ConvCache, "conv_forward_naive")
    stride, pad = conv_param["stride"], conv_param["pad"]
    num_filters, _, hh, ww = w.shape
    out_h = 1 + (x.shape[2] + 2 * pad - hh) // stride
    out_w = 1 + (x.shape[3] + 2 * pad - ww) // stride
    dout = check.upstream(f, dout, (x.shape[0], num_filters, out_h, out_w), x.dtype)
    xp = pad_images(x, pad)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for i in range(out_h):
        for j in range(out_w):
            rows, cols = slice(i * stride, i * stride + hh), slice(j * stride, j * stride + ww)
            g = dout[:, :, i, j]  # (N, F): this output pixel's gradient, for every sample and filter
            dw += np.tensordot(g, xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(g, w, axes=([1], [0]))
    db = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return np.ascontiguousarray(dx), dw, db


class PoolCache(NamedTuple):
    x: np.ndarray  #: input, shape (N, C, H, W)
    pool_param: dict  #: {'pool_height', 'pool_width', 'stride'}, as given

    made_by = "max_pool_forward_naive"


def max_pool_forward_naive(x: np.ndarray, pool_param: dict):
    """Max pooling, by loops.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    pool_param : dict
        ``pool_height``, ``pool_width``, ``stride`` (ints >= 1). No padding; the
        windows must tile: ``(H - pool_height) % stride == 0``, same for W.

    Returns
    -------
    out : ndarray, shape (N, C, H', W')
        ``H' = 1 + (H - pool_height) / stride``, ``W' = 1 + (W - pool_width) / stride``.
    cache : PoolCache
    """
    ph, pw, stride, out_h, out_w = pool_geometry("max_pool_forward_naive", x, pool_param)
    out = np.empty((*x.shape[:2], out_h, out_w), dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw]
            out[:, :, i, j] = window.max(axis=(2, 3))
    return out, PoolCache(x, pool_param)


def max_pool_backward_naive(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_naive`: ``dx`` of shape (N, C, H, W).

    Notes
    -----
    A window's output is one of its inputs, so the whole gradient goes to that
    input and none to the others. When several inputs tie for the maximum, it
    goes to the **first** in row-major order (as the course's reference and
    ``argmax``); a tie is a kink, where no derivative exists.
    """
    f = "max_pool_backward_naive"
    x, pool_param = check.cache(f, cache, PoolCache, "max_pool_forward_naive")
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    out_h = 1 + (x.shape[2] - ph) // stride
    out_w = 1 + (x.shape[3] - pw) // stride
    dout = check.upstream(f, dout, (*x.shape[:2], out_h, out_w), x.dtype)
    n, c = x.shape[:2]
    dx = np.zeros_like(x)
    batch, channel = np.ix_(np.arange(n), np.arange(c))
    for i in range(out_h):
        for j in range(out_w):
            window = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw].reshape(n, c, ph * pw)
            first = window.argmax(axis=2)  # argmax returns the first maximum: the tie rule
            k, l = np.divmod(first, pw)
            dx[batch, channel, i * stride + k, j * stride + l] += dout[:, :, i, j]
    return dx
