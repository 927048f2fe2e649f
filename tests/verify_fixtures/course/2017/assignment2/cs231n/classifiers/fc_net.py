import numpy as np

from cs231n.layers import *
from cs231n.layer_utils import *


class FullyConnectedNet(object):
    """A fully-connected network: {affine - [norm] - relu - [dropout]} x (L - 1) - affine - softmax."""

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0, use_batchnorm=False,
                 reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        normalization = 'batchnorm' if use_batchnorm else None
        self.normalization = normalization
        self.use_dropout = dropout > 0
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.dtype = dtype
        self.params = {}
        dims = [input_dim] + list(hidden_dims) + [num_classes]
        for i in range(self.num_layers):
            self.params['W%d' % (i + 1)] = weight_scale * np.random.randn(dims[i], dims[i + 1])
            self.params['b%d' % (i + 1)] = np.zeros(dims[i + 1])
            if normalization is not None and i < self.num_layers - 1:
                self.params['gamma%d' % (i + 1)] = np.ones(dims[i + 1])
                self.params['beta%d' % (i + 1)] = np.zeros(dims[i + 1])
        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {'mode': 'train', 'p': dropout}
            if seed is not None:
                self.dropout_param['seed'] = seed
        self.bn_params = []
        if self.normalization == 'batchnorm':
            self.bn_params = [{'mode': 'train'} for i in range(self.num_layers - 1)]
        if self.normalization == 'layernorm':
            self.bn_params = [{} for i in range(self.num_layers - 1)]
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        X = X.astype(self.dtype)
        mode = 'test' if y is None else 'train'
        if self.use_dropout:
            self.dropout_param['mode'] = mode
        if self.normalization == 'batchnorm':
            for bn_param in self.bn_params:
                bn_param['mode'] = mode
        caches = []
        out = X
        for i in range(1, self.num_layers):
            W, b = self.params['W%d' % i], self.params['b%d' % i]
            if self.normalization == 'batchnorm':
                out, cache = affine_bn_relu_forward(out, W, b, self.params['gamma%d' % i],
                                                    self.params['beta%d' % i], self.bn_params[i - 1])
            elif self.normalization == 'layernorm':
                out, cache = affine_ln_relu_forward(out, W, b, self.params['gamma%d' % i],
                                                    self.params['beta%d' % i], self.bn_params[i - 1])
            else:
                out, cache = affine_relu_forward(out, W, b)
            drop_cache = None
            if self.use_dropout:
                out, drop_cache = dropout_forward(out, self.dropout_param)
            caches.append((cache, drop_cache))
        L = self.num_layers
        scores, last_cache = affine_forward(out, self.params['W%d' % L], self.params['b%d' % L])
        if mode == 'test':
            return scores

        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dout, grads['W%d' % L], grads['b%d' % L] = affine_backward(dscores, last_cache)
        for i in range(L - 1, 0, -1):
            cache, drop_cache = caches[i - 1]
            if self.use_dropout:
                dout = dropout_backward(dout, drop_cache)
            if self.normalization == 'batchnorm':
                dout, dW, db, dgamma, dbeta = affine_bn_relu_backward(dout, cache)
            elif self.normalization == 'layernorm':
                dout, dW, db, dgamma, dbeta = affine_ln_relu_backward(dout, cache)
            else:
                dout, dW, db = affine_relu_backward(dout, cache)
            grads['W%d' % i], grads['b%d' % i] = dW, db
            if self.normalization is not None:
                grads['gamma%d' % i], grads['beta%d' % i] = dgamma, dbeta
        for i in range(1, L + 1):
            W = self.params['W%d' % i]
            loss += 0.5 * self.reg * np.sum(W * W)
            grads['W%d' % i] += self.reg * W
        return loss, grads
