"""Each registered layer in PyTorch and in JAX: forward, then the VJP of a given upstream gradient.

Same maths as the twins in :mod:`twingrad.functional`, written in each
framework's own idiom (``torch.nn.functional`` where it has the layer), so a
layer's row in the table compares like with like. A layer missing here is
skipped for that framework with a note.
"""

from __future__ import annotations

import numpy as np


def _torch_layers(torch):
    tF = torch.nn.functional

    def affine(x, w, b):
        return torch.addmm(b, x.reshape(x.shape[0], -1), w)

    def svm_loss(x, y):
        correct = x.gather(1, y[:, None])
        others = torch.ones_like(x).scatter_(1, y[:, None], 0.0)
        return (torch.relu(x - correct + 1.0) * others).sum() / x.shape[0]

    def batchnorm(x, gamma, beta, eps):
        return tF.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)

    def layernorm(x, gamma, beta, eps):
        return tF.layer_norm(x, x.shape[1:], gamma, beta, eps=eps)

    return {
        "affine": lambda s: affine(s["x"], s["w"], s["b"]),
        "relu": lambda s: torch.relu(s["x"]),
        "svm_loss": lambda s: svm_loss(s["x"], s["y"]),
        "softmax_loss": lambda s: tF.cross_entropy(s["x"], s["y"]),
        "batchnorm": lambda s: batchnorm(s["x"], s["gamma"], s["beta"], s["eps"]),
        "batchnorm_alt": lambda s: batchnorm(s["x"], s["gamma"], s["beta"], s["eps"]),
        "layernorm": lambda s: layernorm(s["x"], s["gamma"], s["beta"], s["eps"]),
        "dropout": lambda s: tF.dropout(s["x"], s["p"], training=True),
        "affine_relu": lambda s: torch.relu(affine(s["x"], s["w"], s["b"])),
        "affine_bn_relu": lambda s: torch.relu(batchnorm(affine(s["x"], s["w"], s["b"]), s["gamma"], s["beta"],
                                                         s["eps"])),
        "affine_ln_relu": lambda s: torch.relu(layernorm(affine(s["x"], s["w"], s["b"]), s["gamma"], s["beta"],
                                                         s["eps"])),
    }


def _jax_layers(jax):
    jnp = jax.numpy

    def affine(x, w, b):
        return x.reshape(x.shape[0], -1) @ w + b

    def norm(x, gamma, beta, eps, axis):
        mean = x.mean(axis=axis, keepdims=True)
        var = jnp.square(x - mean).mean(axis=axis, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + eps) * gamma + beta

    def svm_loss(x, y):
        correct = jnp.take_along_axis(x, y[:, None], axis=1)
        others = 1.0 - jax.nn.one_hot(y, x.shape[1], dtype=x.dtype)
        return jnp.sum(jax.nn.relu(x - correct + 1.0) * others) / x.shape[0]

    def softmax_loss(x, y):
        return -jnp.take_along_axis(jax.nn.log_softmax(x, axis=1), y[:, None], axis=1).mean()

    def dropout(x, p, key):
        keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
        return jnp.where(keep, x / (1.0 - p), 0.0)

    return {
        "affine": lambda s: affine(s["x"], s["w"], s["b"]),
        "relu": lambda s: jax.nn.relu(s["x"]),
        "svm_loss": lambda s: svm_loss(s["x"], s["y"]),
        "softmax_loss": lambda s: softmax_loss(s["x"], s["y"]),
        "batchnorm": lambda s: norm(s["x"], s["gamma"], s["beta"], s["eps"], 0),
        "batchnorm_alt": lambda s: norm(s["x"], s["gamma"], s["beta"], s["eps"], 0),
        "layernorm": lambda s: norm(s["x"], s["gamma"], s["beta"], s["eps"], 1),
        "dropout": lambda s: dropout(s["x"], s["p"], s["key"]),
        "affine_relu": lambda s: jax.nn.relu(affine(s["x"], s["w"], s["b"])),
        "affine_bn_relu": lambda s: jax.nn.relu(norm(affine(s["x"], s["w"], s["b"]), s["gamma"], s["beta"],
                                                     s["eps"], 0)),
        "affine_ln_relu": lambda s: jax.nn.relu(norm(affine(s["x"], s["w"], s["b"]), s["gamma"], s["beta"],
                                                     s["eps"], 1)),
    }


def _static(spec, inputs) -> dict:
    """The layer's non-differentiable settings: labels, eps, dropout probability."""
    static = {}
    if "y" in inputs:
        static["y"] = inputs["y"]
    for key in ("bn_param", "ln_param"):
        if key in inputs:
            static["eps"] = inputs[key].get("eps", 1e-5)
    if "dropout_param" in inputs:
        static["p"] = inputs["dropout_param"]["p"]
    return static


def torch_layer(torch, spec, inputs, dout):
    """``step() -> gradients`` for ``spec`` in PyTorch eager mode, or None if it has no such layer."""
    fn = _torch_layers(torch).get(spec.name)
    if fn is None:
        return None
    arrays = {k: torch.tensor(np.asarray(inputs[k]), requires_grad=True) for k in spec.wrt}
    static = _static(spec, inputs)
    if "y" in static:
        static["y"] = torch.from_numpy(np.asarray(static["y"], dtype=np.int64))
    upstream = torch.tensor(np.asarray(dout, dtype=inputs[spec.wrt[0]].dtype))
    wrt = [arrays[k] for k in spec.wrt]

    def step():
        out = fn({**arrays, **static})
        return torch.autograd.grad(out, wrt, upstream)

    return step


def jax_layer(jax, spec, inputs, dout):
    """``step() -> gradients`` for ``spec`` under ``jax.jit`` (waited for), or None if it has no such layer."""
    fn = _jax_layers(jax).get(spec.name)
    if fn is None:
        return None
    static = _static(spec, inputs)
    if "y" in static:
        static["y"] = jax.device_put(np.asarray(static["y"], dtype=np.int32))
    if spec.name == "dropout":
        static["key"] = jax.random.PRNGKey(0)
    names = list(spec.wrt)

    def vjp(arrays, upstream):
        out, pullback = jax.vjp(lambda *a: fn({**dict(zip(names, a)), **static}), *arrays)
        return out, pullback(upstream)

    compiled = jax.jit(vjp)
    arrays = tuple(jax.device_put(np.asarray(inputs[k])) for k in names)
    upstream = jax.device_put(np.asarray(dout, dtype=inputs[names[0]].dtype))

    def step():
        return jax.block_until_ready(compiled(arrays, upstream))

    return step
