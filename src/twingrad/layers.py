"""Hand-derived layers: each ``*_forward`` returns ``(out, cache)``, each
``*_backward`` turns the upstream gradient and that cache into gradients.

Names and signatures follow the CS231n assignments, so a student's code and
twingrad's are interchangeable. The pure, autograd-differentiated versions of
the same functions live in :mod:`twingrad.functional` under the same name root
(``affine_forward`` <-> ``functional.affine``). Batch and layer normalization
live in :mod:`twingrad.normalization`, the naive convolution and max pooling in
:mod:`twingrad.conv`, spatial batch and group normalization in
:mod:`twingrad.spatial_norm`; all are re-exported here.

Rules every layer here follows (checked in :mod:`twingrad._validate`):

- **dtypes**: float arrays must be float32 or float64 (float16 and longdouble
  are refused: no twin, tolerance or fast path is written for them). Mixed
  float32/float64 inputs are promoted as numpy promotes them
  (``np.result_type``, so float64 wins): the output, the cache and every
  gradient have the promoted dtype, and a backward converts ``dout`` to it.
- **caches**: each forward returns a named cache (:class:`AffineCache`,
  :class:`ReluCache`, :class:`DropoutCache`, ``BatchNormCache``,
  ``LayerNormCache``); each backward checks it got its own forward's cache
  and otherwise names the cache it expected and the forward that made the
  one it got. (``relu_backward`` also takes a bare ``x``, CS231n's ReLU cache.)
- **empty batches**: the losses are means over the batch and refuse N = 0;
  layers that treat each sample on its own pass an empty batch through.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _fast
from . import _validate as check
from .conv import (  # noqa: F401  (re-exported: the CS231n namespace)
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from .normalization import (  # noqa: F401  (re-exported: the CS231n namespace)
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
)
from .spatial_norm import (  # noqa: F401  (re-exported: the CS231n namespace)
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)


class AffineCache(NamedTuple):
    """What :func:`affine_forward` keeps for :func:`affine_backward`."""

    x: np.ndarray  #: input (in the promoted dtype), shape (N, d_1, ..., d_k)
    w: np.ndarray  #: weights, shape (D, M)
    b: np.ndarray  #: bias, shape (M,)

    made_by = "affine_forward"  # named in the error when another backward is given this cache


class ReluCache(NamedTuple):
    """What :func:`relu_forward` keeps for :func:`relu_backward`: its input."""

    x: np.ndarray

    made_by = "relu_forward"


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, AffineCache]:
    """Fully-connected layer: ``out = x.reshape(N, D) @ w + b``.

    Parameters
    ----------
    x : ndarray, shape (N, d_1, ..., d_k)
        Input; each sample is flattened to ``D = d_1 * ... * d_k`` features.
    w : ndarray, shape (D, M)
    b : ndarray, shape (M,)

    Returns
    -------
    out : ndarray, shape (N, M)
    cache : AffineCache
    """
    f = "affine_forward"
    check.float_array(f, "x", x, min_ndim=1)
    check.float_array(f, "w", w, ndim=2)
    check.float_array(f, "b", b, ndim=1)
    num_features = math.prod(x.shape[1:])  # not np.prod: 0.5 us instead of 5 us on a shape tuple
    if w.shape[0] != num_features:
        raise ValueError(
            f"{f}: w must have shape (D, M) with D = {num_features}, the product of x.shape[1:] = "
            f"{x.shape[1:]}; got w.shape = {w.shape}"
        )
    check.shape(f, "b", b, (w.shape[1],), "w.shape[1] outputs")
    x, w, b = check.promote(x, w, b)
    out = x.reshape(x.shape[0], num_features) @ w
    out += b  # in place: out is a fresh array, so no caller's data is touched
    return out, AffineCache(x, w, b)


def affine_backward(dout: np.ndarray, cache: AffineCache, *, input_grad: bool = True):
    """Gradients of the affine layer.

    Parameters
    ----------
    dout : ndarray, shape (N, M)
    cache : AffineCache
    input_grad : bool, default True
        When False, ``dx`` is not computed and returned as None: a network's
        first layer never needs it, and it costs one of the step's largest products.

    Returns
    -------
    dx : ndarray, shape (N, d_1, ..., d_k), or None
    dw : ndarray, shape (D, M)
    db : ndarray, shape (M,)

    Notes
    -----
    With :math:`X` the flattened input, :math:`Y = XW + b` gives
    :math:`\\partial L/\\partial X = G W^\\top`, :math:`\\partial L/\\partial W = X^\\top G`
    and :math:`\\partial L/\\partial b = \\sum_n G_n`, where :math:`G = \\partial L/\\partial Y`.
    """
    x, w, _ = check.cache("affine_backward", cache, AffineCache, "affine_forward")
    dout = check.upstream("affine_backward", dout, (x.shape[0], w.shape[1]), x.dtype)
    x2d = x.reshape(x.shape[0], w.shape[0])
    dw = x2d.T @ dout
    db = _fast.sum_rows(dout)  # b was broadcast over the batch: sum it back
    dx = (dout @ w.T).reshape(x.shape) if input_grad else None
    return dx, dw, db


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, ReluCache]:
    """Rectified linear unit, ``max(x, 0)`` elementwise; any shape. The cache holds ``x``."""
    check.float_array("relu_forward", "x", x)
    return _fast.relu(x), ReluCache(x)


def relu_backward(dout: np.ndarray, cache: ReluCache | np.ndarray) -> np.ndarray:
    """Gradient of ReLU: ``dout`` where ``x > 0``, else 0.

    ``cache`` is the :class:`ReluCache` of :func:`relu_forward`, or the input
    ``x`` itself (CS231n's ReLU cache). At exactly ``x == 0`` the subgradient
    is 0, as in PyTorch; the twin agrees.
    """
    if isinstance(cache, ReluCache):
        x = cache.x
    elif isinstance(cache, np.ndarray):
        x = check.float_array("relu_backward", "cache", cache)
    else:
        check.cache("relu_backward", cache, ReluCache, "relu_forward", " (or its input x)")
    dout = check.upstream("relu_backward", dout, x.shape, x.dtype)
    # Multiplying by the mask avoids the copy-then-boolean-assign of dx[x <= 0] = 0.
    return dout * (x > 0)


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.floating, np.ndarray]:
    """Multiclass SVM (hinge) loss with margin 1, averaged over the batch.

    Parameters
    ----------
    x : ndarray, shape (N, C)
        Class scores.
    y : ndarray of int, shape (N,)
        Labels in ``[0, C)``.

    Returns
    -------
    loss : scalar of x's dtype
    dx : ndarray, shape (N, C)

    Notes
    -----
    :math:`L = \\frac1N \\sum_n \\sum_{j \\ne y_n} \\max(0, x_{nj} - x_{n y_n} + 1)`.
    Each positive margin adds :math:`1/N` to :math:`x_{nj}` and subtracts it from
    :math:`x_{n y_n}`. The hinge has a kink at margin 0, where the gradient taken is 0.
    """
    f = "svm_loss"
    check.float_array(f, "x", x, ndim=2)
    check.nonempty_batch(f, "x", x)
    num_samples, num_classes = x.shape
    y = check.labels(f, y, num_samples, num_classes)
    rows = np.arange(num_samples)
    margins = x - x[rows, y][:, None]
    margins += 1
    margins[rows, y] = 0
    np.maximum(margins, 0, out=margins)
    loss = margins.sum() / num_samples
    dx = (margins > 0).astype(x.dtype)
    dx[rows, y] = -dx.sum(axis=1)
    dx /= num_samples
    return loss, dx


def softmax_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.floating, np.ndarray]:
    """Softmax cross-entropy loss, averaged over the batch.

    Parameters
    ----------
    x : ndarray, shape (N, C)
        Class scores (logits).
    y : ndarray of int, shape (N,)
        Labels in ``[0, C)``.

    Returns
    -------
    loss : scalar of x's dtype
    dx : ndarray, shape (N, C)

    Notes
    -----
    With :math:`\\log p_{nj} = x_{nj} - \\log\\sum_k e^{x_{nk}}` (the maximum is
    subtracted first so no exponential overflows),
    :math:`L = -\\frac1N \\sum_n \\log p_{n y_n}` and
    :math:`\\partial L/\\partial x_{nj} = (p_{nj} - [j = y_n]) / N`.
    """
    f = "softmax_loss"
    check.float_array(f, "x", x, ndim=2)
    check.nonempty_batch(f, "x", x)
    num_samples, num_classes = x.shape
    y = check.labels(f, y, num_samples, num_classes)
    rows = np.arange(num_samples)
    shifted = x - _fast.max_cols(x)[:, None]
    exp = np.exp(shifted)  # the one exponential: the gradient reuses it
    sums = _fast.sum_cols(exp)
    # -log p_{n y_n} = log(sum_k e^{x_nk}) - x_{n y_n}: only the labels' log-probabilities are needed
    loss = (np.log(sums).sum() - shifted[rows, y].sum()) / num_samples
    dx = np.multiply(exp, (1.0 / (sums * num_samples))[:, None], out=exp)  # p / N, in exp's buffer
    dx[rows, y] -= 1.0 / num_samples
    return loss, dx


class DropoutCache(NamedTuple):
    """What :func:`dropout_forward` keeps for :func:`dropout_backward`."""

    mode: str
    mask: np.ndarray | None  #: kept units scaled by 1/(1-p); None in test mode

    made_by = "dropout_forward"


def dropout_mask(shape: tuple, p: float, seed, dtype) -> np.ndarray:
    """The inverted-dropout mask: 0 with probability ``p``, else ``1 / (1 - p)``.

    Drawn from ``np.random.default_rng(seed)``, so the same seed gives the same
    mask here and in :func:`twingrad.functional.dropout`, and the global
    ``np.random`` state is never touched.
    """
    dtype = np.dtype(dtype)
    keep = np.random.default_rng(seed).random(shape) >= p
    return np.where(keep, dtype.type(1.0 / (1.0 - p)), dtype.type(0.0))


def check_dropout_param(func: str, dropout_param) -> tuple[str, float]:
    """Return ``(mode, p)`` from ``dropout_param``, validated (``seed`` too, if present)."""
    mode = check.mode(func, "dropout_param", dropout_param)
    if "p" not in dropout_param:
        raise KeyError(f"{func}: dropout_param must contain 'p', the probability of dropping a unit")
    p = check.fraction(func, "dropout_param['p']", dropout_param["p"], "the probability of dropping a unit",
                       upper_open=True)
    check.seed(func, "dropout_param['seed']", dropout_param.get("seed"))
    return mode, p


def dropout_forward(x: np.ndarray, dropout_param: dict) -> tuple[np.ndarray, DropoutCache]:
    """Inverted dropout.

    Parameters
    ----------
    x : ndarray, any shape
    dropout_param : dict
        ``p``: probability of **dropping** a unit, in [0, 1);
        ``mode``: 'train' (drop and rescale) or 'test' (identity);
        ``seed`` (optional): makes the mask deterministic, for gradient checks.

    Returns
    -------
    out : ndarray, same shape and dtype as x
    cache : DropoutCache

    Notes
    -----
    Kept units are scaled by :math:`1/(1-p)` during training, so the expected
    activation is unchanged and test mode needs no rescaling.
    """
    f = "dropout_forward"
    check.float_array(f, "x", x)
    mode, p = check_dropout_param(f, dropout_param)
    if mode == "test":
        return x, DropoutCache(mode, None)
    mask = dropout_mask(x.shape, p, dropout_param.get("seed"), x.dtype)
    return x * mask, DropoutCache(mode, mask)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """Gradient of inverted dropout: the upstream gradient times the same mask."""
    check.cache("dropout_backward", cache, DropoutCache, "dropout_forward")
    if cache.mode == "test":
        return check.float_array("dropout_backward", "dout", dout)
    dout = check.upstream("dropout_backward", dout, cache.mask.shape, cache.mask.dtype)
    return dout * cache.mask
