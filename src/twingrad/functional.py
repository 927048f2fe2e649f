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
