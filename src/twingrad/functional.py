"""Twins: pure, forward-only versions of every layer, written in ``autograd.numpy``.

Each function here computes exactly what the hand-derived forward of the same
name root computes (``affine`` <-> ``layers.affine_forward``), with no cache and
no in-place writes, so that HIPS autograd can differentiate it. The gradients
autograd derives from these are the exact second opinion on the hand-derived
backward passes.
"""

from __future__ import annotations

import autograd.numpy as anp
from autograd.tracer import getval

from .layers import dropout_mask


def affine(x, w, b):
    """``x.reshape(N, D) @ w + b``; x (N, d_1, ..., d_k), w (D, M), b (M,) -> (N, M)."""
    return anp.dot(anp.reshape(x, (x.shape[0], -1)), w) + b


def relu(x):
    """``max(x, 0)`` with derivative 0 at exactly 0.

    ``anp.maximum`` would split the derivative at a tie (0.5 each way); the hand
    pass and PyTorch both use 0, so select instead.
    """
    return anp.where(x > 0, x, 0.0)


def _one_hot(y, num_classes: int, dtype):
    return (anp.arange(num_classes) == y[:, None]).astype(dtype)


def svm_loss(x, y):
    """Mean multiclass hinge loss of scores x (N, C) for labels y (N,)."""
    num_samples, num_classes = x.shape
    correct = anp.sum(x * _one_hot(y, num_classes, x.dtype), axis=1, keepdims=True)
    margins = x - correct + 1.0
    # The label's own margin is always 1: mask it out; relu keeps the kink's derivative at 0.
    others = 1.0 - _one_hot(y, num_classes, x.dtype)
    return anp.sum(relu(margins) * others) / num_samples


def _logsumexp_rows(x):
    """``log(sum(exp(x), axis=1))`` without overflow: shifted by each row's maximum.

    The shift is taken off the traced value as a constant, since the result does
    not depend on it. (autograd.scipy's logsumexp would import all of SciPy,
    about a second of every start-up.)
    """
    shift = getval(x).max(axis=1, keepdims=True)
    return shift + anp.log(anp.sum(anp.exp(x - shift), axis=1, keepdims=True))


def softmax_loss(x, y):
    """Mean cross-entropy of softmax(x) for scores x (N, C) and labels y (N,), via log-sum-exp."""
    num_samples, num_classes = x.shape
    log_probs = x - _logsumexp_rows(x)
    return -anp.sum(log_probs * _one_hot(y, num_classes, x.dtype)) / num_samples


def _normalize(x, gamma, beta, axis: int, eps: float):
    mean = anp.mean(x, axis=axis, keepdims=True)
    var = anp.mean((x - mean) ** 2, axis=axis, keepdims=True)
    return gamma * (x - mean) / anp.sqrt(var + eps) + beta


def batchnorm(x, gamma, beta, eps: float = 1e-5, running_mean=None, running_var=None):
    """Batch normalization of x (N, D); gamma, beta (D,).

    With ``running_mean`` and ``running_var`` given this is test mode: those
    constants replace the batch statistics. Otherwise train mode (batch mean,
    biased batch variance). Running averages are state, which a pure function
    does not keep: :func:`twingrad.layers.batchnorm_forward` updates them.
    """
    if running_mean is None:
        return _normalize(x, gamma, beta, axis=0, eps=eps)
    return gamma * (x - running_mean) / anp.sqrt(running_var + eps) + beta


def layernorm(x, gamma, beta, eps: float = 1e-5):
    """Layer normalization of each row of x (N, D); gamma, beta (D,)."""
    return _normalize(x, gamma, beta, axis=1, eps=eps)


def dropout(x, p: float, seed=None, train: bool = True):
    """Inverted dropout with drop probability ``p``; the same mask as the hand pass for the same seed."""
    if not train:
        return x
    return x * dropout_mask(x.shape, p, seed, x.dtype)


def affine_relu(x, w, b):
    """Twin of :func:`twingrad.layer_utils.affine_relu_forward`."""
    return relu(affine(x, w, b))


def affine_bn_relu(x, w, b, gamma, beta, eps: float = 1e-5):
    """Twin of :func:`twingrad.layer_utils.affine_bn_relu_forward` in train mode."""
    return relu(batchnorm(affine(x, w, b), gamma, beta, eps))


def affine_ln_relu(x, w, b, gamma, beta, eps: float = 1e-5):
    """Twin of :func:`twingrad.layer_utils.affine_ln_relu_forward`."""
    return relu(layernorm(affine(x, w, b), gamma, beta, eps))


# --- convolutional layers ---------------------------------------------------------


def _windows(x, hh: int, ww: int, stride: int, out_h: int, out_w: int):
    """Yield ``((k, l), x[:, :, k::stride, l::stride])`` cut to (N, C, H', W'): each kernel offset's pixels.

    Strided slices are differentiable in autograd (their VJP scatters back), so
    sums over these views are the convolution and the pooling without any loop
    over output pixels.
    """
    for k in range(hh):
        for l in range(ww):
            yield (k, l), x[:, :, k:k + stride * out_h:stride, l:l + stride * out_w:stride]


def conv(x, w, b, stride: int = 1, pad: int = 0):
    """Convolution (cross-correlation) of x (N, C, H, W) with w (F, C, HH, WW), plus b (F,) -> (N, F, H', W').

    One ``tensordot`` per kernel offset ``(k, l)``: that offset's input pixels
    under every window, against the filters' weights at ``(k, l)``.
    """
    num_filters, _, hh, ww = w.shape
    if pad:
        x = anp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    out_h = 1 + (x.shape[2] - hh) // stride
    out_w = 1 + (x.shape[3] - ww) // stride
    out = 0.0
    for (k, l), pixels in _windows(x, hh, ww, stride, out_h, out_w):
        out = out + anp.tensordot(pixels, w[:, :, k, l], axes=([1], [1]))  # (N, H', W', F)
    return anp.transpose(out + b, (0, 3, 1, 2))


def first_max_offsets(x, pool_height: int, pool_width: int, stride: int):
    """Row-major index of the first maximum of every pooling window, shape (N, C, H', W').

    Plain numpy on the traced value: which input wins is a constant of the
    derivative, as a ReLU's mask.
    """
    x = getval(x)
    out_h = 1 + (x.shape[2] - pool_height) // stride
    out_w = 1 + (x.shape[3] - pool_width) // stride
    best = None
    first = None
    for (k, l), pixels in _windows(x, pool_height, pool_width, stride, out_h, out_w):
        if best is None:
            best, first = pixels, anp.zeros(pixels.shape, dtype=int)
            continue
        better = pixels > best  # strictly: a tie keeps the earlier offset
        best = anp.where(better, pixels, best)
        first = anp.where(better, k * pool_width + l, first)
    return first


def max_pool(x, pool_height: int = 2, pool_width: int = 2, stride: int = 2):
    """Max pooling of x (N, C, H, W), the gradient going to each window's first maximum.

    ``anp.max`` would share the gradient among tied maxima; the hand passes (and
    the course) give it all to the first, so the twin selects that one input
    per window and sums: the same value, and the same derivative at a tie.
    """
    first = first_max_offsets(x, pool_height, pool_width, stride)
    out_h, out_w = first.shape[2:]
    out = 0.0
    for (k, l), pixels in _windows(x, pool_height, pool_width, stride, out_h, out_w):
        out = out + pixels * (first == k * pool_width + l)
    return out


def _channels_last(x):
    n, c, h, w = x.shape
    return anp.reshape(anp.transpose(x, (0, 2, 3, 1)), (n * h * w, c))


def spatial_batchnorm(x, gamma, beta, eps: float = 1e-5, running_mean=None, running_var=None):
    """Batch norm of x (N, C, H, W) per channel over N, H, W; gamma, beta (C,). Through :func:`batchnorm`."""
    n, c, h, w = x.shape
    out = batchnorm(_channels_last(x), gamma, beta, eps, running_mean, running_var)
    return anp.transpose(anp.reshape(out, (n, h, w, c)), (0, 3, 1, 2))


def spatial_groupnorm(x, gamma, beta, G: int, eps: float = 1e-5):
    """Group norm of x (N, C, H, W): G groups of consecutive channels; gamma, beta (1, C, 1, 1).

    Each sample's group is one row of an (N*G, C/G*H*W) matrix: layer norm of
    that row (scale 1, shift 0), then the per-channel scale and shift.
    """
    n = x.shape[0]
    rows = anp.reshape(x, (n * G, -1))
    ones = anp.ones(rows.shape[1])
    x_hat = anp.reshape(layernorm(rows, ones, 0.0 * ones, eps), x.shape)
    return gamma * x_hat + beta


def conv_relu(x, w, b, stride: int = 1, pad: int = 0):
    """Twin of :func:`twingrad.layer_utils.conv_relu_forward`."""
    return relu(conv(x, w, b, stride, pad))


def conv_relu_pool(x, w, b, stride: int = 1, pad: int = 0, pool_height: int = 2, pool_width: int = 2,
                   pool_stride: int = 2):
    """Twin of :func:`twingrad.layer_utils.conv_relu_pool_forward`."""
    return max_pool(conv_relu(x, w, b, stride, pad), pool_height, pool_width, pool_stride)
