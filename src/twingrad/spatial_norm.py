"""Hand-derived spatial batch normalization and spatial group normalization
(re-exported by :mod:`twingrad.layers`).

Both act on images ``(N, C, H, W)`` and reuse the 2-D algebra of
:mod:`twingrad.normalization`: spatial batch norm is batch norm of the
``(N * H * W, C)`` matrix of pixels (one feature per channel); group norm is
layer norm of each sample's ``C / G`` channels of one group, then a scale and
shift per channel.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import _validate as check
from .normalization import BatchNormCache, NormCache, batchnorm_backward_alt, batchnorm_forward


def _channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N * H * W, C): every pixel a row, every channel a feature."""
    n, c, h, w = x.shape
    return x.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def _channels_first(a: np.ndarray, shape: tuple) -> np.ndarray:
    """Inverse of :func:`_channels_last` for images of ``shape``."""
    n, c, h, w = shape
    return a.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def spatial_batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict):
    """Batch normalization of images: one mean and variance per channel, over N, H and W.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    gamma, beta : ndarray, shape (C,)
    bn_param : dict
        As :func:`twingrad.layers.batchnorm_forward`: ``mode`` (required), ``eps``,
        ``momentum``, ``running_mean`` and ``running_var`` of shape (C,).

    Returns
    -------
    out : ndarray, shape (N, C, H, W)
    cache : NormCache of the batch norm of the (N*H*W, C) matrix, or None in test mode

    Notes
    -----
    A convolution's channel is one feature seen at every position, so its
    statistics pool the :math:`NHW` values of that channel.
    """
    f = "spatial_batchnorm_forward"
    check.float_array(f, "x", x, ndim=4)
    check.float_array(f, "gamma", gamma, ndim=1)
    check.float_array(f, "beta", beta, ndim=1)
    check.shape(f, "gamma", gamma, (x.shape[1],), "one scale per channel of x")
    check.shape(f, "beta", beta, (x.shape[1],), "one shift per channel of x")
    if check.mode(f, "bn_param", bn_param) == "train" and x.shape[0] * x.shape[2] * x.shape[3] < 2:
        raise ValueError(f"{f}: train mode needs at least 2 values per channel (N * H * W >= 2), "
                         f"got x.shape = {x.shape}")
    out, cache = batchnorm_forward(_channels_last(x), gamma, beta, bn_param)
    return _channels_first(out, x.shape), cache


def spatial_batchnorm_backward(dout: np.ndarray, cache: NormCache):
    """Gradients of :func:`spatial_batchnorm_forward`: ``dx`` (N, C, H, W), ``dgamma``, ``dbeta`` (C,).

    The 2-D batch-norm gradient of the ``(N*H*W, C)`` pixel matrix, reshaped back.
    """
    cache = check.cache("spatial_batchnorm_backward", cache, BatchNormCache, "spatial_batchnorm_forward",
                        " in train mode")
    rows, channels = cache.x_hat.shape
    if not (isinstance(dout, np.ndarray) and dout.ndim == 4 and dout.shape[1] == channels
            and dout.shape[0] * dout.shape[2] * dout.shape[3] == rows):
        raise ValueError(f"spatial_batchnorm_backward: dout must have the shape of the forward output, "
                         f"(N, {channels}, H, W) with N*H*W = {rows}; got {np.shape(dout)}")
    dx, dgamma, dbeta = batchnorm_backward_alt(_channels_last(dout), cache)
    return _channels_first(dx, dout.shape), dgamma, dbeta


class GroupNormCache(NamedTuple):
    x_hat: np.ndarray  #: normalized input, shape (N, C, H, W)
    inv_std: np.ndarray  #: 1 / sqrt(var + eps) per sample and group, shape (N, G, 1)
    gamma: np.ndarray  #: scale, shape (1, C, 1, 1)
    groups: int

    made_by = "spatial_groupnorm_forward"  # named in the error when another backward is given this cache


def _check_groups(func: str, x, gamma, beta, G) -> int:
    check.float_array(func, "x", x, ndim=4)
    channels = x.shape[1]
    if isinstance(G, bool) or not isinstance(G, numbers.Integral) or G < 1 or channels % G:
        raise ValueError(f"{func}: G must be a positive int that divides the {channels} channels of x "
                         f"(x.shape = {x.shape}), got G = {G!r}")
    for name, a in (("gamma", gamma), ("beta", beta)):
        check.float_array(func, name, a, ndim=4)
        check.shape(func, name, a, (1, channels, 1, 1), "one per channel, as in the course")
    return int(G)


def spatial_groupnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, G: int, gn_param: dict):
    """Group normalization: each sample's channels split into ``G`` groups, each normalized on its own.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    gamma, beta : ndarray, shape (1, C, 1, 1)
        Per-channel scale and shift (the course's shape).
    G : int
        Number of groups; must divide C. ``G = 1`` is layer norm over (C, H, W);
        ``G = C`` is instance norm.
    gn_param : dict
        ``eps`` (default 1e-5). No running averages: train and test are the same.

    Returns
    -------
    out : ndarray, shape (N, C, H, W)
    cache : GroupNormCache

    Notes
    -----
    Sample :math:`n`'s group :math:`g` holds channels :math:`gC/G, \\dots, (g+1)C/G - 1`
    (consecutive channels, as Wu and He, 2018), at all positions: :math:`M = HWC/G`
    values with mean :math:`\\mu_{ng}` and biased variance :math:`\\sigma^2_{ng}`.
    """
    f = "spatial_groupnorm_forward"
    groups = _check_groups(f, x, gamma, beta, G)
    if gn_param is not None and not isinstance(gn_param, Mapping):
        raise TypeError(f"{f}: gn_param must be a dict, got {type(gn_param).__name__}")
    eps = (gn_param or {}).get("eps", 1e-5)
    x, gamma, beta = check.promote(x, gamma, beta)
    n = x.shape[0]
    xg = x.reshape(n, groups, -1)  # consecutive channels form a group: a reshape, no copy
    mean = xg.mean(axis=2, keepdims=True)
    centered = xg - mean
    var = np.mean(np.square(centered), axis=2, keepdims=True)  # biased, as layer norm
    inv_std = (var + eps) ** -0.5
    x_hat = (centered * inv_std).reshape(x.shape)
    out = x_hat * gamma
    out += beta
    return out, GroupNormCache(x_hat, inv_std, gamma, groups)


def spatial_groupnorm_backward(dout: np.ndarray, cache: GroupNormCache):
    """Gradients of :func:`spatial_groupnorm_forward`: ``dx`` (N, C, H, W), ``dgamma``, ``dbeta`` (1, C, 1, 1).

    Notes
    -----
    Per sample and group, the layer-norm closed form: with :math:`h = \\gamma g`
    the gradient reaching :math:`\\hat x`,
    :math:`\\partial L/\\partial x = s\\,(h - \\bar h - \\hat x\\,\\overline{h \\hat x})`,
    bars being means over the group's :math:`M` values. ``gamma`` and ``beta`` act
    per channel, so their gradients sum over N, H and W.
    """
    f = "spatial_groupnorm_backward"
    x_hat, inv_std, gamma, groups = check.cache(f, cache, GroupNormCache, "spatial_groupnorm_forward")
    dout = check.upstream(f, dout, x_hat.shape, x_hat.dtype)
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = np.sum(dout * x_hat, axis=(0, 2, 3), keepdims=True)
    n = dout.shape[0]
    h = (dout * gamma).reshape(n, groups, -1)
    xh = x_hat.reshape(n, groups, -1)
    dx = h - h.mean(axis=2, keepdims=True)
    dx -= xh * np.mean(h * xh, axis=2, keepdims=True)
    dx *= inv_std
    return dx.reshape(dout.shape), dgamma, dbeta
