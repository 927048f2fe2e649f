"""Vectorised convolution and max pooling: what :class:`~twingrad.cnn.ThreeLayerConvNet` trains with.

Same names, signatures and results as the course's ``fast_layers`` (there
Cython, here numpy only):

- convolution as **im2col**: the padded input's windows, viewed without a
  copy by ``sliding_window_view``, are gathered once into a matrix with one
  column per output pixel; the forward is then one matrix product with the
  filters, ``dw`` another, and ``dx`` one more followed by a scatter of the
  columns back onto the (overlapping) windows, one kernel offset at a time;
- max pooling by a **reshape** when the windows tile the input exactly
  (stride = window), else by a strided windows view; the backward sends
  each window's gradient to its first maximum, as the naive version.

The naive, loop-by-loop versions are in :mod:`twingrad.conv`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _validate as check
from .conv import conv_geometry, pad_images, pool_geometry


class FastConvCache(NamedTuple):
    x_shape: tuple  #: (N, C, H, W)
    w: np.ndarray  #: filters, shape (F, C, HH, WW)
    cols: np.ndarray  #: im2col matrix, shape (C*HH*WW, N*H'*W')
    conv_param: dict

    made_by = "conv_forward_fast"  # named in the error when another backward is given this cache


def im2col(xp: np.ndarray, hh: int, ww: int, stride: int) -> np.ndarray:
    """The windows of the padded images ``xp`` (N, C, Hp, Wp) as columns: shape (C*HH*WW, N*H'*W').

    Rows run over (channel, kernel row, kernel column), as ``w.reshape(F, -1)``;
    columns over (sample, output row, output column). The row-major order keeps
    the copy's innermost loop along output columns, contiguous in memory at stride 1.
    """
    windows = sliding_window_view(xp, (hh, ww), axis=(2, 3))[:, :, ::stride, ::stride]  # (N, C, H', W', HH, WW)
    c = xp.shape[1]
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * hh * ww, -1)


def col2im(dcols: np.ndarray, x_shape: tuple, hh: int, ww: int, stride: int, pad: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every column back onto its window, then drop the padding.

    One strided slice per kernel offset (HH*WW of them), each a vectorised add
    over all samples, channels and output pixels: overlapping windows add up.
    """
    n, c, h, w = x_shape
    out_h = 1 + (h + 2 * pad - hh) // stride
    out_w = 1 + (w + 2 * pad - ww) // stride
    d = dcols.reshape(c, hh, ww, n, out_h, out_w)
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dcols.dtype)
    dxp_t = dxp.transpose(1, 0, 2, 3)  # a view in d's (C, N, ...) order
    for k in range(hh):
        for l in range(ww):
            dxp_t[:, :, k:k + stride * out_h:stride, l:l + stride * out_w:stride] += d[:, k, l]
    return dxp[:, :, pad:pad + h, pad:pad + w]


def conv_forward_fast(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict):
    """Convolutional layer by im2col and one matrix product; as :func:`twingrad.layers.conv_forward_naive`.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, HH, WW)
    b : ndarray, shape (F,)
    conv_param : dict
        ``stride`` and ``pad``; the windows must tile the padded input.

    Returns
    -------
    out : ndarray, shape (N, F, H', W')
    cache : FastConvCache
        Holds the im2col matrix, so the backward gathers nothing again.
    """
    stride, pad, out_h, out_w = conv_geometry("conv_forward_fast", x, w, b, conv_param)
    x, w, b = check.promote(x, w, b)
    num_filters, _, hh, ww = w.shape
    cols = im2col(pad_images(x, pad), hh, ww, stride)
    out = w.reshape(num_filters, -1) @ cols  # (F, N*H'*W')
    out += b[:, None]
    # One copy into (N, F, H', W') order: the ReLU and the pooling after it then run on contiguous memory.
    out = np.ascontiguousarray(out.reshape(num_filters, x.shape[0], out_h, out_w).transpose(1, 0, 2, 3))
    return out, FastConvCache(x.shape, w, cols, conv_param)


def conv_backward_fast(dout: np.ndarray, cache: FastConvCache, *, input_grad: bool = True):
    """Gradients of :func:`conv_forward_fast`: ``(dx, dw, db)``.

    Parameters
    ----------
    dout : ndarray, shape (N, F, H', W')
    cache : FastConvCache
    input_grad : bool, default True
        When False, ``dx`` is returned as None: a network's first layer never
        needs it, and its scatter is the backward's most expensive part.

    Notes
    -----
    With :math:`X` the im2col matrix and :math:`G` ``dout`` as an (F, N H' W')
    matrix, :math:`Y = WX + b` gives :math:`\\partial L/\\partial W = G X^\\top`,
    :math:`\\partial L/\\partial b = G \\mathbf 1`, and the columns' gradient
    :math:`W^\\top G`, which ``col2im`` adds back onto the windows.
    """
    f = "conv_backward_fast"
    x_shape, w, cols, conv_param = check.cache(f, cache, FastConvCache, "conv_forward_fast")
    num_filters, _, hh, ww = w.shape
    out_h = 1 + (x_shape[2] + 2 * conv_param["pad"] - hh) // conv_param["stride"]
    out_w = 1 + (x_shape[3] + 2 * conv_param["pad"] - ww) // conv_param["stride"]
    dout = check.upstream(f, dout, (x_shape[0], num_filters, out_h, out_w), cols.dtype)
    g = dout.transpose(1, 0, 2, 3).reshape(num_filters, -1)  # (F, N*H'*W'), the columns' order
    dw = (g @ cols.T).reshape(w.shape)
    db = g.sum(axis=1)
    dx = None
    if input_grad:
        dcols = w.reshape(num_filters, -1).T @ g
        dx = col2im(dcols, x_shape, hh, ww, conv_param["stride"], conv_param["pad"])
    return dx, dw, db


class FastPoolCache(NamedTuple):
    x: np.ndarray  #: input, shape (N, C, H, W)
    out: np.ndarray  #: the pooled maxima, shape (N, C, H', W')
    pool_param: dict

    made_by = "max_pool_forward_fast"


def _tiles_exactly(x_shape: tuple, ph: int, pw: int, stride: int) -> bool:
    return stride == ph == pw and x_shape[2] % ph == 0 and x_shape[3] % pw == 0


def _offset_views(x: np.ndarray, ph: int, pw: int, stride: int):
    """Yield, for each window offset ``(k, l)`` in row-major order, the (N, C, H', W') view of the
    pixels at that offset of every window.

    When the windows tile ``x`` exactly, these are slices of the reshape
    ``(N, C, H', ph, W', pw)``; otherwise of a ``sliding_window_view``. Either
    way no data is copied, and the maximum over a window becomes ``ph * pw - 1``
    elementwise ``np.maximum`` calls over whole arrays: much faster than a
    reduction along window axes only 2 or 3 long.
    """
    n, c, h, w = x.shape
    if _tiles_exactly(x.shape, ph, pw, stride):
        tiles = x.reshape(n, c, h // ph, ph, w // pw, pw)
        for k in range(ph):
            for l in range(pw):
                yield tiles[:, :, :, k, :, l]
    else:
        windows = sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::stride, ::stride]
        for k in range(ph):
            for l in range(pw):
                yield windows[:, :, :, :, k, l]


def max_pool_forward_fast(x: np.ndarray, pool_param: dict):
    """Max pooling, vectorised; as :func:`twingrad.layers.max_pool_forward_naive`.

    When the windows tile the input exactly (``stride == pool_height == pool_width``
    dividing H and W, the 2x2 stride-2 case), the window offsets are read from
    the reshape ``(N, C, H', ph, W', pw)``, otherwise from a ``sliding_window_view``;
    the maximum is taken offset by offset (see :func:`_offset_views`).
    """
    ph, pw, stride, _, _ = pool_geometry("max_pool_forward_fast", x, pool_param)
    if _tiles_exactly(x.shape, ph, pw, stride) and not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)  # a reshape of a strided array would copy at every view
    views = _offset_views(x, ph, pw, stride)
    out = np.array(next(views))
    for view in views:
        np.maximum(out, view, out=out)
    return out, FastPoolCache(x, out, pool_param)


def max_pool_backward_fast(dout: np.ndarray, cache: FastPoolCache) -> np.ndarray:
    """Gradient of :func:`max_pool_forward_fast`: ``dx`` (N, C, H, W), each window's to its first maximum.

    One pass per window offset ``(k, l)`` in row-major order, over all windows
    at once: an offset receives the gradient where it equals the window's
    maximum and no earlier offset already did. Ties thus go to the first
    maximum, as :func:`~twingrad.layers.max_pool_backward_naive` and ``argmax``.
    """
    f = "max_pool_backward_fast"
    x, out, pool_param = check.cache(f, cache, FastPoolCache, "max_pool_forward_fast")
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dout = check.upstream(f, dout, out.shape, x.dtype)
    dx = np.zeros(x.shape, dtype=x.dtype)
    overlap = not _tiles_exactly(x.shape, ph, pw, stride)
    taken = np.zeros(out.shape, dtype=bool)
    hit = np.empty(out.shape, dtype=bool)
    # The same views of x and of dx: writing through a view of dx fills dx.
    for view, dview in zip(_offset_views(x, ph, pw, stride), _writable_views(dx, ph, pw, stride)):
        np.equal(view, out, out=hit)
        np.greater(hit, taken, out=hit)  # hit and not taken: an earlier offset won the tie
        taken |= hit
        if overlap:
            dview += dout * hit  # overlapping windows can route to the same input twice
        else:
            np.multiply(dout, hit, out=dview)  # each input in one window: write straight into dx
    return dx


def _writable_views(dx: np.ndarray, ph: int, pw: int, stride: int):
    """:func:`_offset_views` of ``dx``, writable: a reshape (tiling) or strided slices (overlap)."""
    n, c, h, w = dx.shape
    if _tiles_exactly(dx.shape, ph, pw, stride):
        tiles = dx.reshape(n, c, h // ph, ph, w // pw, pw)
        for k in range(ph):
            for l in range(pw):
                yield tiles[:, :, :, k, :, l]
    else:
        out_h, out_w = 1 + (h - ph) // stride, 1 + (w - pw) // stride
        for k in range(ph):
            for l in range(pw):
                yield dx[:, :, k:k + stride * out_h:stride, l:l + stride * out_w:stride]
