"""Hand-derived batch and layer normalization (re-exported by :mod:`twingrad.layers`).

Both normalize ``x`` to zero mean and unit variance, then scale by ``gamma`` and
shift by ``beta``. Batch norm takes the statistics of each feature over the
batch (axis 0); layer norm takes those of each sample over its features (axis 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from . import _fast
from . import _validate as check


class NormCache(NamedTuple):
    """What the backward passes need, named after the nodes of the forward graph."""

    x_centered: np.ndarray  #: x - mean, shape (N, D)
    var: np.ndarray  #: biased variance over the normalized axis
    inv_std: np.ndarray  #: 1 / sqrt(var + eps)
    x_hat: np.ndarray  #: x_centered * inv_std, shape (N, D)
    gamma: np.ndarray  #: scale, shape (D,)
    eps: float


class BatchNormCache(NormCache):
    """The cache of a train-mode :func:`batchnorm_forward` (statistics over the batch, axis 0)."""

    __slots__ = ()
    made_by = "batchnorm_forward"  # named in the error when another backward is given this cache


class LayerNormCache(NormCache):
    """The cache of :func:`layernorm_forward` (statistics over each sample's features, axis 1)."""

    __slots__ = ()
    made_by = "layernorm_forward"


def _check_affine_params(func: str, x, gamma, beta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three arrays checked and converted to their common dtype."""
    check.float_array(func, "x", x, ndim=2)
    check.float_array(func, "gamma", gamma, ndim=1)
    check.float_array(func, "beta", beta, ndim=1)
    check.shape(func, "gamma", gamma, (x.shape[1],), "one scale per feature of x")
    check.shape(func, "beta", beta, (x.shape[1],), "one shift per feature of x")
    return check.promote(x, gamma, beta)


def _eps(func: str, param_name: str, param) -> float:
    eps = param.get("eps", 1e-5)
    if type(eps) is float and 0.0 < eps < math.inf:  # the usual case, without the general check
        return eps
    return check.positive(func, f"{param_name}['eps']", eps)


def _normalize(x, gamma, beta, axis: int, eps: float, kind: type) -> tuple[np.ndarray, NormCache, np.ndarray]:
    """Normalize over ``axis`` (0: batch norm, 1: layer norm); returns ``(out, cache of type kind, mean)``."""
    n = x.shape[axis]
    # sum_rows / sum_cols: sums as BLAS matrix-vector products (see twingrad._fast)
    if axis == 0:
        mean = _fast.sum_rows(x)[None, :] / n
        x_centered = x - mean
        var = _fast.sum_rows(np.square(x_centered))[None, :] / n  # biased, as in the paper
    else:
        mean = _fast.sum_cols(x)[:, None] / n
        x_centered = x - mean
        var = _fast.sum_cols(np.square(x_centered))[:, None] / n
    inv_std = (var + eps) ** -0.5
    x_hat = x_centered * inv_std
    out = x_hat * gamma
    out += beta
    return out, kind(x_centered, var, inv_std, x_hat, gamma, eps), mean


def batchnorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, bn_param: dict):
    """Batch normalization over the batch axis.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    gamma, beta : ndarray, shape (D,)
    bn_param : dict
        ``mode`` ('train' or 'test', required); ``eps`` (a number > 0, default
        1e-5); ``momentum`` (in [0, 1], default 0.9); ``running_mean``,
        ``running_var`` (float arrays of shape (D,), start at zeros). Updated
        in place in train mode; the running averages are kept in the layer's
        dtype (that of x, gamma and beta, promoted).

    Returns
    -------
    out : ndarray, shape (N, D)
    cache : BatchNormCache, or None in test mode

    Notes
    -----
    Train mode normalizes with the batch mean :math:`\\mu` and the biased batch
    variance :math:`\\sigma^2`, and updates
    ``running = momentum * running + (1 - momentum) * batch`` for both.
    Test mode normalizes with the running averages instead.
    """
    f = "batchnorm_forward"
    x, gamma, beta = _check_affine_params(f, x, gamma, beta)
    mode = check.mode(f, "bn_param", bn_param)
    eps = _eps(f, "bn_param", bn_param)
    momentum = bn_param.get("momentum", 0.9)
    if not (type(momentum) is float and 0.0 <= momentum <= 1.0):  # the checked call only off the usual path
        momentum = check.fraction(f, "bn_param['momentum']", momentum, "the weight kept by the running averages")
    num_features = x.shape[1]
    running = []
    for key in ("running_mean", "running_var"):
        value = bn_param.get(key)
        if value is None:
            value = np.zeros(num_features, x.dtype)
        else:
            check.float_array(f, f"bn_param[{key!r}]", value)
            check.shape(f, f"bn_param[{key!r}]", value, (num_features,), "one per feature of x")
            value = value.astype(x.dtype, copy=False)
        running.append(value)
    running_mean, running_var = running

    if mode == "test":
        scale = gamma / np.sqrt(running_var + eps)
        out = x * scale
        out += beta - running_mean * scale
        return out, None

    if x.shape[0] < 2:
        # One sample has no batch variance: every output would be beta (as PyTorch, refuse).
        raise ValueError(f"{f}: train mode needs at least 2 samples per batch, got x.shape = {x.shape}")
    out, cache, batch_mean = _normalize(x, gamma, beta, axis=0, eps=eps, kind=BatchNormCache)
    bn_param["running_mean"] = momentum * running_mean + (1 - momentum) * batch_mean[0]
    bn_param["running_var"] = momentum * running_var + (1 - momentum) * cache.var[0]
    return out, cache


def _require_train_cache(func: str, cache) -> BatchNormCache:
    if cache is None:
        raise ValueError(f"{func}: the cache is None, which batchnorm_forward returns in test mode; "
                         "backward needs a train-mode cache")
    return check.cache(func, cache, BatchNormCache, "batchnorm_forward", " in train mode")


def batchnorm_backward(dout: np.ndarray, cache: NormCache):
    """Batch-norm gradients, staged node by node back through the forward graph.

    Parameters
    ----------
    dout : ndarray, shape (N, D)
    cache : BatchNormCache from a train-mode :func:`batchnorm_forward`

    Returns
    -------
    dx : ndarray, shape (N, D)
    dgamma, dbeta : ndarray, shape (D,)

    Notes
    -----
    The forward graph is :math:`\\mu = \\frac1N\\sum_n x_n`, :math:`c = x - \\mu`,
    :math:`v = \\frac1N\\sum_n c_n^2`, :math:`s = (v + \\epsilon)^{-1/2}`,
    :math:`\\hat x = c\\,s`, :math:`y = \\gamma \\hat x + \\beta`. Walking it
    backwards, one node per line below, each node's gradient is the sum over
    the paths that leave it. :func:`batchnorm_backward_alt` collapses the same
    chain into one expression.
    """
    c, var, inv_std, x_hat, gamma, _ = _require_train_cache("batchnorm_backward", cache)
    dout = check.upstream("batchnorm_backward", dout, x_hat.shape, x_hat.dtype)
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)  # y = gamma * x_hat + beta
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    d_inv_std = np.sum(dx_hat * c, axis=0)  # x_hat = c * s
    dc = dx_hat * inv_std
    dvar = d_inv_std * -0.5 * inv_std**3  # s = (v + eps)^(-1/2)
    dc += (2.0 / n) * c * dvar  # v = mean(c^2)
    dmean = -dc.sum(axis=0)  # c = x - mu
    dx = dc + dmean / n  # mu = mean(x)
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout: np.ndarray, cache: NormCache):
    """Batch-norm gradients in the simplified closed form: same inputs and outputs
    as :func:`batchnorm_backward`, fewer passes over the data.

    Notes
    -----
    Collapsing the staged chain gives, per feature,

    .. math::

        \\frac{\\partial L}{\\partial x} = \\frac{\\gamma s}{N}
        \\left(N g - \\sum_n g_n - \\hat x \\sum_n g_n \\hat x_n\\right)
        = \\gamma s \\left(g - \\frac{\\partial L/\\partial\\beta}{N}
          - \\hat x \\frac{\\partial L/\\partial\\gamma}{N}\\right)

    with :math:`g` the upstream gradient: the input gradient is the upstream one
    with its mean and its projection on :math:`\\hat x` removed.
    """
    _, _, inv_std, x_hat, gamma, _ = _require_train_cache("batchnorm_backward_alt", cache)
    dout = check.upstream("batchnorm_backward_alt", dout, x_hat.shape, x_hat.dtype)
    n = dout.shape[0]
    dbeta = _fast.sum_rows(dout)
    dgamma = _fast.sum_rows(dout * x_hat)  # a product then a BLAS sum: faster than einsum here
    # One (N, D) allocation, then in-place passes.
    dx = x_hat * (dgamma / n)
    dx += dbeta / n
    np.subtract(dout, dx, out=dx)
    dx *= gamma * inv_std[0]
    return dx, dgamma, dbeta


def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, ln_param: dict | None = None):
    """Layer normalization: each sample normalized over its own features.

    Parameters
    ----------
    x : ndarray, shape (N, D)
    gamma, beta : ndarray, shape (D,)
    ln_param : dict, optional
        ``eps`` (a number > 0, default 1e-5). Same in train and test mode: no
        running averages.

    Returns
    -------
    out : ndarray, shape (N, D)
    cache : LayerNormCache
    """
    f = "layernorm_forward"
    x, gamma, beta = _check_affine_params(f, x, gamma, beta)
    if x.shape[1] == 0:
        raise ValueError(f"{f}: x must have at least one feature to normalize over, got shape {x.shape}")
    if ln_param is None:
        eps = 1e-5
    elif isinstance(ln_param, Mapping):
        eps = _eps(f, "ln_param", ln_param)
    else:
        raise TypeError(f"{f}: ln_param must be a dict or None, got {type(ln_param).__name__}")
    return _normalize(x, gamma, beta, axis=1, eps=eps, kind=LayerNormCache)[:2]


def layernorm_backward(dout: np.ndarray, cache: NormCache):
    """Layer-norm gradients.

    Parameters
    ----------
    dout : ndarray, shape (N, D)
    cache : LayerNormCache from :func:`layernorm_forward`

    Returns
    -------
    dx : ndarray, shape (N, D)
    dgamma, dbeta : ndarray, shape (D,)

    Notes
    -----
    The batch-norm closed form with the roles of the axes exchanged: with
    :math:`h = \\gamma g` the gradient reaching :math:`\\hat x`, each row gets
    :math:`\\partial L/\\partial x = s\\,(h - \\bar h - \\hat x\\,\\overline{h \\hat x})`,
    bars being means over the D features. ``gamma`` and ``beta`` still act
    per feature, so their gradients are sums over the batch.
    """
    _, _, inv_std, x_hat, gamma, _ = check.cache("layernorm_backward", cache, LayerNormCache, "layernorm_forward")
    dout = check.upstream("layernorm_backward", dout, x_hat.shape, x_hat.dtype)
    n = dout.shape[1]
    dbeta = _fast.sum_rows(dout)
    dgamma = _fast.sum_rows(dout * x_hat)
    dx_hat = dout * gamma
    proj = _fast.sum_cols(dx_hat * x_hat)[:, None] / n
    dx = dx_hat - _fast.sum_cols(dx_hat)[:, None] / n
    dx -= x_hat * proj
    dx *= inv_std
    return dx, dgamma, dbeta
