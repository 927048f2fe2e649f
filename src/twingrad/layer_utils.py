"""Sandwich layers: common stacks of hand-derived layers with one forward and one backward.

``affine_relu`` is affine -> ReLU; ``affine_bn_relu`` and ``affine_ln_relu`` put
batch or layer normalization between the two; ``conv_relu`` is convolution ->
ReLU and ``conv_relu_pool`` adds a max pooling, both with the fast (im2col)
layers, as in the course. Their twins are the compositions of the layer twins
in :mod:`twingrad.functional`.
"""

from __future__ import annotations

import numpy as np

from .fast_layers import (  # noqa: F401  (the course's layer_utils exposes the fast layers too)
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from .layers import affine_backward, affine_forward, relu_backward, relu_forward
from .normalization import batchnorm_backward_alt, batchnorm_forward, layernorm_backward, layernorm_forward


def affine_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """Affine then ReLU. ``x`` (N, d_1, ..., d_k), ``w`` (D, M), ``b`` (M,) -> out (N, M), cache."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout: np.ndarray, cache, *, input_grad: bool = True):
    """Gradients of :func:`affine_relu_forward`: ``(dx, dw, db)``; ``dx`` is None without ``input_grad``."""
    fc_cache, relu_cache = cache
    return affine_backward(relu_backward(dout, relu_cache), fc_cache, input_grad=input_grad)


def affine_bn_relu_forward(x, w, b, gamma, beta, bn_param: dict):
    """Affine, batch normalization, ReLU. Shapes as :func:`affine_relu_forward`; gamma, beta (M,)."""
    a, fc_cache = affine_forward(x, w, b)
    normed, bn_cache = batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(normed)
    return out, (fc_cache, bn_cache, relu_cache)


def affine_bn_relu_backward(dout: np.ndarray, cache, *, input_grad: bool = True):
    """Gradients of :func:`affine_bn_relu_forward`: ``(dx, dw, db, dgamma, dbeta)``."""
    fc_cache, bn_cache, relu_cache = cache
    dnormed = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = batchnorm_backward_alt(dnormed, bn_cache)
    dx, dw, db = affine_backward(da, fc_cache, input_grad=input_grad)
    return dx, dw, db, dgamma, dbeta


def affine_ln_relu_forward(x, w, b, gamma, beta, ln_param: dict | None = None):
    """Affine, layer normalization, ReLU. Shapes as :func:`affine_bn_relu_forward`."""
    a, fc_cache = affine_forward(x, w, b)
    normed, ln_cache = layernorm_forward(a, gamma, beta, ln_param)
    out, relu_cache = relu_forward(normed)
    return out, (fc_cache, ln_cache, relu_cache)


def affine_ln_relu_backward(dout: np.ndarray, cache, *, input_grad: bool = True):
    """Gradients of :func:`affine_ln_relu_forward`: ``(dx, dw, db, dgamma, dbeta)``."""
    fc_cache, ln_cache, relu_cache = cache
    dnormed = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = layernorm_backward(dnormed, ln_cache)
    dx, dw, db = affine_backward(da, fc_cache, input_grad=input_grad)
    return dx, dw, db, dgamma, dbeta


def conv_relu_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict):
    """Convolution then ReLU. ``x`` (N, C, H, W), ``w`` (F, C, HH, WW), ``b`` (F,) -> out (N, F, H', W'), cache."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout: np.ndarray, cache, *, input_grad: bool = True):
    """Gradients of :func:`conv_relu_forward`: ``(dx, dw, db)``; ``dx`` is None without ``input_grad``."""
    conv_cache, relu_cache = cache
    return conv_backward_fast(relu_backward(dout, relu_cache), conv_cache, input_grad=input_grad)


def conv_relu_pool_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv_param: dict, pool_param: dict):
    """Convolution, ReLU, max pooling. Shapes as :func:`conv_relu_forward`; out (N, F, H'', W'') after pooling."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout: np.ndarray, cache, *, input_grad: bool = True):
    """Gradients of :func:`conv_relu_pool_forward`: ``(dx, dw, db)``; ``dx`` is None without ``input_grad``."""
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    return conv_backward_fast(relu_backward(ds, relu_cache), conv_cache, input_grad=input_grad)
