"""A correct student's convolutional layers (CS231n assignment 2), loops as the notes write them.

The tests break one line of it at a time (each replaced line is unique).
"""

import numpy as np


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param['stride'], conv_param['pad']
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            window = x_pad[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            for f in range(F):
                out[:, f, i, j] = np.sum(window * w[f], axis=(1, 2, 3)) + b[f]
    cache = (x, w, b, conv_param)
    return out, cache


def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param['stride'], conv_param['pad']
    F, _, HH, WW = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.sum(dout, axis=(0, 2, 3))
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            hs, ws = i * stride, j * stride
            for f in range(F):
                g = dout[:, f, i, j][:, None, None, None]
                dw[f] += np.sum(x_pad[:, :, hs:hs + HH, ws:ws + WW] * g, axis=0)
                dx_pad[:, :, hs:hs + HH, ws:ws + WW] += w[f] * g
    dx = dx_pad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    ph, pw, stride = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    N, C, H, W = x.shape
    H_out, W_out = 1 + (H - ph) // stride, 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = np.max(x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw], axis=(2, 3))
    cache = (x, pool_param)
    return out, cache


def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, stride = pool_param['pool_height'], pool_param['pool_width'], pool_param['stride']
    N, C = x.shape[:2]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw].reshape(N, C, -1)
            first = np.argmax(window, axis=2)
            for n in range(N):
                for c in range(C):
                    k, l = divmod(first[n, c], pw)
                    dx[n, c, i * stride + k, j * stride + l] += dout[n, c, i, j]
    return dx


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    eps = bn_param.get('eps', 1e-5)
    flat = x.transpose(0, 2, 3, 1).reshape(-1, C)
    mu, var = flat.mean(axis=0), flat.var(axis=0)
    x_hat = (flat - mu) / np.sqrt(var + eps)
    out = (gamma * x_hat + beta).reshape(N, H, W, C).transpose(0, 3, 1, 2)
    cache = (x_hat, gamma, np.sqrt(var + eps), (N, C, H, W))
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    x_hat, gamma, std, (N, C, H, W) = cache
    d = dout.transpose(0, 2, 3, 1).reshape(-1, C)
    dbeta = d.sum(axis=0)
    dgamma = (d * x_hat).sum(axis=0)
    dx_hat = d * gamma
    dflat = (dx_hat - dx_hat.mean(axis=0) - x_hat * (dx_hat * x_hat).mean(axis=0)) / std
    dx = dflat.reshape(N, H, W, C).transpose(0, 3, 1, 2)
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    eps = gn_param.get('eps', 1e-5)
    N, C, H, W = x.shape
    groups = x.reshape(N, G, C // G, H, W)
    mu = groups.mean(axis=(2, 3, 4), keepdims=True)
    std = np.sqrt(groups.var(axis=(2, 3, 4), keepdims=True) + eps)
    x_hat = ((groups - mu) / std).reshape(N, C, H, W)
    out = gamma * x_hat + beta
    cache = (x_hat, gamma, std, G)
    return out, cache


def spatial_groupnorm_backward(dout, cache):
    x_hat, gamma, std, G = cache
    N, C, H, W = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3), keepdims=True)
    dx_hat = (dout * gamma).reshape(N, G, C // G, H, W)
    xh = x_hat.reshape(N, G, C // G, H, W)
    axes = (2, 3, 4)
    dx = (dx_hat - dx_hat.mean(axis=axes, keepdims=True) - xh * (dx_hat * xh).mean(axis=axes, keepdims=True)) / std
    return dx.reshape(N, C, H, W), dgamma, dbeta



# The network of classifiers/cnn.py (it needs the affine, ReLU and softmax layers of good_layers.py).
class ThreeLayerConvNet(object):
    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32):
        self.params = {}
        self.reg = reg
        self.dtype = dtype
        C, H, W = input_dim
        self.params['W1'] = weight_scale * np.random.randn(num_filters, C, filter_size, filter_size)
        self.params['b1'] = np.zeros(num_filters)
        self.params['W2'] = weight_scale * np.random.randn(num_filters * (H // 2) * (W // 2), hidden_dim)
        self.params['b2'] = np.zeros(hidden_dim)
        self.params['W3'] = weight_scale * np.random.randn(hidden_dim, num_classes)
        self.params['b3'] = np.zeros(num_classes)
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        W1, b1 = self.params['W1'], self.params['b1']
        W2, b2 = self.params['W2'], self.params['b2']
        W3, b3 = self.params['W3'], self.params['b3']
        conv_param = {'stride': 1, 'pad': (W1.shape[2] - 1) // 2}
        pool_param = {'pool_height': 2, 'pool_width': 2, 'stride': 2}
        a, conv_cache = conv_forward_naive(X, W1, b1, conv_param)
        r, relu1_cache = relu_forward(a)
        p, pool_cache = max_pool_forward_naive(r, pool_param)
        h, fc1_cache = affine_forward(p, W2, b2)
        hr, relu2_cache = relu_forward(h)
        scores, fc2_cache = affine_forward(hr, W3, b3)
        if y is None:
            return scores
        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2) + np.sum(W3 * W3))
        grads = {}
        dhr, grads['W3'], grads['b3'] = affine_backward(dscores, fc2_cache)
        dp, grads['W2'], grads['b2'] = affine_backward(relu_backward(dhr, relu2_cache), fc1_cache)
        da = relu_backward(max_pool_backward_naive(dp, pool_cache), relu1_cache)
        dX, grads['W1'], grads['b1'] = conv_backward_naive(da, conv_cache)
        for i in (1, 2, 3):
            grads['W%d' % i] += self.reg * self.params['W%d' % i]
        return loss, grads
