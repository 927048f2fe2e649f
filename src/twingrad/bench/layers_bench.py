"""Every registered layer, forward and backward: hand-derived vs the autograd twin
(the VJP of the same forward) vs PyTorch and JAX; and the speedup of
``batchnorm_backward_alt`` over the staged ``batchnorm_backward``.

Shapes are those of the network step's hidden layers: an (N, H) activation
for ReLU, dropout and the normalizations, an (N, D) input mapped to H units for
the affine layers, (N, C) scores for the losses.
"""

from __future__ import annotations

import importlib

import numpy as np
from autograd import make_vjp

from ..twins import REGISTRY
from . import framework_layers
from .timing import Candidate, interleaved


def layer_inputs(spec, rng, *, batch: int, input_dim: int, hidden: int, classes: int, dtype) -> tuple:
    """``(inputs, dout)`` for ``spec`` at the bench shapes, drawn with the registry's own sampler."""
    if spec.name.startswith("affine"):
        inputs = spec.sample(rng, (batch, input_dim), 1.0, dtype)
        # The sampler draws a handful of outputs (right for gradient checks): give the layer H of them.
        inputs["w"] = (rng.standard_normal((input_dim, hidden)) / np.sqrt(input_dim)).astype(dtype)
        inputs["b"] = rng.standard_normal(hidden).astype(dtype)
        for key in ("gamma", "beta"):
            if key in inputs:
                inputs[key] = (rng.standard_normal(hidden) * 0.1 + (key == "gamma")).astype(dtype)
    elif spec.is_loss:
        inputs = spec.sample(rng, (batch, classes), 1.0, dtype)
    else:
        inputs = spec.sample(rng, (batch, hidden), 1.0, dtype)
    dtype = np.dtype(dtype)
    if spec.is_loss:
        return inputs, dtype.type(1.0)  # a loss is a scalar: its upstream gradient is 1
    return inputs, rng.standard_normal((batch, hidden)).astype(dtype)


def hand_call(spec, inputs, dout):
    """``step()``: the hand forward then backward, as a training loop calls them."""
    module = importlib.import_module(f"twingrad.{spec.module}")
    forward = getattr(module, spec.forward)
    args = [inputs[a] for a in spec.args]
    if spec.is_loss:
        return lambda: forward(*args)
    backward = getattr(module, spec.backward)

    def step():
        _, cache = forward(*args)
        return backward(dout, cache)

    return step


def twin_call(spec, inputs, dout):
    """``step()``: autograd's forward trace of the twin and the VJP of ``dout``."""
    twin = spec.twin_function(inputs)
    arrays = [inputs[a] for a in spec.wrt]
    argnums = tuple(range(len(arrays)))

    def step():
        vjp, _ = make_vjp(twin, argnums)(*arrays)
        return vjp(dout)

    return step


def run_layers(rounds: int, *, batch=200, input_dim=3072, hidden=100, classes=10, dtype=np.float32,
               torch=None, jax=None, settle=0.15, names=None, min_sample=0.002) -> list[dict]:
    """Time every layer (or those in ``names``). Returns one row per layer:
    ``{'layer', 'shape', 'timings': {implementation: Timing}, 'notes'}``."""
    dtype = np.dtype(dtype)
    rows = []
    for spec in REGISTRY.values():
        if names and spec.name not in names:
            continue
        if spec.ndim[0] == 4:
            continue  # image layers: timed inside the convolutional step (the cnn section)
        rng = np.random.default_rng(0)
        inputs, dout = layer_inputs(spec, rng, batch=batch, input_dim=input_dim, hidden=hidden, classes=classes,
                                    dtype=dtype)
        candidates = {"hand": Candidate(hand_call(spec, inputs, dout)),
                      "autograd twin": Candidate(twin_call(spec, inputs, dout))}
        notes = []
        for label, module, builder in (("pytorch eager", torch, framework_layers.torch_layer),
                                       ("jax jit", jax, framework_layers.jax_layer)):
            if module is None:
                continue
            step = builder(module, spec, inputs, dout)
            if step is None:
                notes.append(f"no {label} version")
            else:
                candidates[label] = Candidate(step, label.split()[0].replace("pytorch", "torch"))
        timings = interleaved(candidates, rounds, settle=settle, min_sample=min_sample)
        shape = "x".join(map(str, inputs[spec.args[0]].shape))
        rows.append({"layer": spec.name, "shape": shape, "timings": timings, "notes": notes})
    return rows


def run_batchnorm_alt(rounds: int, shapes=((200, 100), (100, 500), (1000, 1000)), dtype=np.float32,
                      min_sample=0.002) -> list[dict]:
    """``batchnorm_backward`` (staged) vs ``batchnorm_backward_alt`` (closed form) on one shared cache."""
    from .. import layers as L

    rows = []
    for n, d in shapes:
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((n, d)) * 2 + 1).astype(dtype)
        gamma, beta = np.ones(d, dtype), np.zeros(d, dtype)
        _, cache = L.batchnorm_forward(x, gamma, beta, {"mode": "train"})
        dout = rng.standard_normal((n, d)).astype(dtype)
        timings = interleaved({"batchnorm_backward": lambda d=dout, c=cache: L.batchnorm_backward(d, c),
                               "batchnorm_backward_alt": lambda d=dout, c=cache: L.batchnorm_backward_alt(d, c)},
                              rounds, min_sample=min_sample)
        staged, alt = timings["batchnorm_backward"], timings["batchnorm_backward_alt"]
        rows.append({"shape": f"{n}x{d}", "timings": timings, "speedup": staged.median / alt.median})
    return rows
