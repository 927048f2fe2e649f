"""PyTorch and JAX, when installed: the same network step and layers in each.

Both are optional (the ``bench`` extra); :func:`load` returns None and a note
when one is missing or broken, and every caller skips it. Each builder takes
numpy float arrays, copies them into the framework once, and returns a
zero-argument callable that does one full unit of work (forward and every
gradient), plus a ``result()`` that returns the loss and gradients as numpy for
the agreement check.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

Step = Callable[[], object]


def load(name: str):
    """``(module, note)``: the framework, or None and why it is skipped."""
    try:
        if name == "jax":
            module = importlib.import_module("jax")
            importlib.import_module("jax.numpy")
            module.config.update("jax_platforms", "cpu")  # the comparison is on the CPU, as numpy
        else:
            module = importlib.import_module(name)
    except Exception as exc:  # ImportError, or a broken install that fails on import
        return None, f"{name} not installed ({type(exc).__name__}: {exc}); pip install 'twingrad[bench]'"
    return module, f"{name} {module.__version__}"


# -- PyTorch (eager) ---------------------------------------------------------------


def torch_net_step(params: dict, X: np.ndarray, y: np.ndarray, *, normalization=None, reg=0.0, eps=1e-5,
                   threads: int | None = None):
    """One training step of the fully-connected net in PyTorch eager mode.

    ``params`` holds ``W1, b1, [gamma1, beta1,] ..., WL, bL`` as in
    :class:`twingrad.fc_net.FullyConnectedNet`; ``threads`` sets
    ``torch.set_num_threads`` (match numpy's BLAS for a fair race).

    Returns
    -------
    step : callable
        ``step() -> gradients`` (tensors), the timed unit.
    result : callable
        ``result() -> (loss, {name: ndarray})``.
    """
    import torch
    import torch.nn.functional as tF

    if threads:
        torch.set_num_threads(threads)
    names = list(params)
    tensors = {k: torch.tensor(np.asarray(v), requires_grad=True) for k, v in params.items()}
    Xt, yt = torch.from_numpy(np.ascontiguousarray(X.reshape(X.shape[0], -1))), torch.from_numpy(y.astype(np.int64))
    num_layers = sum(1 for k in params if k.startswith("W"))
    running = [(torch.zeros(params[f"b{i}"].shape, dtype=Xt.dtype), torch.ones(params[f"b{i}"].shape, dtype=Xt.dtype))
               for i in range(1, num_layers)]

    def loss_fn():
        p, h = tensors, Xt
        for i in range(1, num_layers):
            a = torch.addmm(p[f"b{i}"], h, p[f"W{i}"])
            if normalization == "batchnorm":
                mean, var = running[i - 1]
                a = tF.batch_norm(a, mean, var, p[f"gamma{i}"], p[f"beta{i}"], training=True, eps=eps)
            elif normalization == "layernorm":
                a = tF.layer_norm(a, a.shape[1:], p[f"gamma{i}"], p[f"beta{i}"], eps=eps)
            h = torch.relu(a)
        loss = tF.cross_entropy(torch.addmm(p[f"b{num_layers}"], h, p[f"W{num_layers}"]), yt)
        if reg:
            loss = loss + 0.5 * reg * sum((p[f"W{i}"] ** 2).sum() for i in range(1, num_layers + 1))
        return loss

    return torch_step_and_result(torch, loss_fn, tensors, names)


def torch_step_and_result(torch, loss_fn: Callable, tensors: dict, names: list) -> tuple[Callable, Callable]:
    """``step()``: the gradients of ``loss_fn()`` in ``tensors[names]``; ``result()``: the loss and those
    gradients as numpy, to compare with the hand step."""

    def step():
        return torch.autograd.grad(loss_fn(), [tensors[k] for k in names])

    def result():
        loss = loss_fn()
        grads = torch.autograd.grad(loss, [tensors[k] for k in names])
        return float(loss.detach()), {k: g.numpy() for k, g in zip(names, grads)}

    return step, result


# -- JAX (jit) ---------------------------------------------------------------------


def _jax_loss(normalization, reg, eps):
    import jax
    import jax.numpy as jnp

    def loss_fn(p, X, y):
        num_layers = sum(1 for k in p if k.startswith("W"))
        h = X
        for i in range(1, num_layers):
            a = h @ p[f"W{i}"] + p[f"b{i}"]
            if normalization in ("batchnorm", "layernorm"):
                axis = 0 if normalization == "batchnorm" else 1
                mean = a.mean(axis=axis, keepdims=True)
                var = jnp.square(a - mean).mean(axis=axis, keepdims=True)
                a = (a - mean) * jax.lax.rsqrt(var + eps) * p[f"gamma{i}"] + p[f"beta{i}"]
            h = jax.nn.relu(a)
        scores = h @ p[f"W{num_layers}"] + p[f"b{num_layers}"]
        log_probs = jax.nn.log_softmax(scores, axis=1)
        loss = -jnp.take_along_axis(log_probs, y[:, None], axis=1).mean()
        if reg:
            loss = loss + 0.5 * reg * sum(jnp.sum(p[f"W{i}"] ** 2) for i in range(1, num_layers + 1))
        return loss

    return loss_fn


def jax_net_step(params: dict, X: np.ndarray, y: np.ndarray, *, normalization=None, reg=0.0, eps=1e-5):
    """One training step of the fully-connected net under ``jax.jit(jax.value_and_grad(...))``.

    Inputs are put on the device once; each call waits for the result
    (``block_until_ready``), so the time is the work and not its dispatch.
    Same returns as :func:`torch_net_step`.
    """
    import jax

    grad_fn = jax.jit(jax.value_and_grad(_jax_loss(normalization, reg, eps)))
    p = {k: jax.device_put(np.asarray(v)) for k, v in params.items()}
    Xj, yj = jax.device_put(X.reshape(X.shape[0], -1)), jax.device_put(y.astype(np.int32))

    def step():
        return jax.block_until_ready(grad_fn(p, Xj, yj))

    def result():
        loss, grads = step()
        return float(loss), {k: np.asarray(g) for k, g in grads.items()}

    return step, result
