"""One training step of :class:`~twingrad.fc_net.FullyConnectedNet` (loss and every
gradient), side by side: the hand-derived pass, the autograd twin, PyTorch eager,
JAX jit, and the matrix-product floor.

The floor is the time of the matrix products no implementation can skip: the
forward ``X @ W`` of every layer, ``dW = A.T @ dZ`` of every layer and
``dX = dZ @ W.T`` of every layer but the first, in the step's dtype, with
nothing else around them. A step's ratio to the floor is what its
elementwise work, allocations and Python overhead cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np

from . import frameworks
from .timing import Candidate, Timing, interleaved


@dataclass(frozen=True)
class NetConfig:
    """A network and batch to time. The default is the issue's CIFAR-sized configuration."""

    batch: int = 200
    input_dim: int = 3072
    hidden: int = 100
    depth: int = 5
    classes: int = 10
    normalization: str | None = None
    dtype: str = "float32"
    reg: float = 0.0
    weight_scale: float = 2e-2  # CS231n's batch-norm notebook uses 2e-2 for this net
    seed: int = 0

    @property
    def label(self) -> str:
        norm = self.normalization or "no norm"
        return (f"{self.input_dim}-[{self.hidden}]x{self.depth}-{self.classes}, batch {self.batch}, "
                f"{self.dtype}, {norm}")

    def with_(self, **changes) -> NetConfig:
        return replace(self, **changes)


def make_workload(cfg: NetConfig):
    """``(model, X, y)``: a seeded :class:`FullyConnectedNet` and a random batch for ``cfg``."""
    from ..fc_net import FullyConnectedNet

    model = FullyConnectedNet([cfg.hidden] * cfg.depth, input_dim=cfg.input_dim, num_classes=cfg.classes,
                              normalization=cfg.normalization, reg=cfg.reg, weight_scale=cfg.weight_scale,
                              dtype=np.dtype(cfg.dtype), seed=cfg.seed)
    rng = np.random.default_rng([cfg.seed, 1])
    X = rng.standard_normal((cfg.batch, cfg.input_dim)).astype(cfg.dtype)
    y = rng.integers(0, cfg.classes, size=cfg.batch)
    return model, X, y


def matmul_floor(model, X: np.ndarray) -> Callable[[], None]:
    """The step's bare matrix products, on inputs drawn once (see the module docstring)."""
    rng = np.random.default_rng(1)
    weights = [model.params[f"W{i}"] for i in range(1, model.num_layers + 1)]
    inputs = [X] + [rng.standard_normal((X.shape[0], W.shape[0])).astype(X.dtype) for W in weights[1:]]
    upstream = [rng.standard_normal((X.shape[0], W.shape[1])).astype(X.dtype) for W in weights]

    def step():
        h = X
        for W in weights:
            h = h @ W
        for i, (A, W, dZ) in enumerate(zip(inputs, weights, upstream)):
            A.T @ dZ
            if i:
                dZ @ W.T

    return step


def hand_step(model, X, y):
    """``model.loss(X, y)`` as the timed unit, and its result."""
    step = lambda: model.loss(X, y)
    return step, lambda: _as_numpy(step())


def twin_step(model, X, y):
    """autograd's ``value_and_grad`` of :func:`twingrad.fc_net.twin_loss` at the model's params."""
    from autograd import value_and_grad

    from ..fc_net import twin_loss

    settings = model.twin_settings
    grad_fn = value_and_grad(lambda p: twin_loss(p, X, y, **settings))
    step = lambda: grad_fn(model.params)
    return step, lambda: _as_numpy(step())


def _as_numpy(result):
    loss, grads = result
    return float(loss), {k: np.asarray(v) for k, v in grads.items()}


def build_candidates(cfg: NetConfig, model, X, y, *, torch=None, jax=None, threads: int = 1,
                     torch_default_threads: int | None = None, floor: bool = True) -> dict:
    """Name -> ``(step, result)`` for every implementation available; ``result`` is None for the floor."""
    candidates = {"hand": hand_step(model, X, y), "autograd twin": twin_step(model, X, y)}
    settings = {"normalization": cfg.normalization, "reg": cfg.reg}
    if torch is not None:
        candidates["pytorch eager"] = frameworks.torch_net_step(model.params, X, y, threads=threads, **settings)
        if torch_default_threads and torch_default_threads != threads:
            # torch's own default differs from numpy's thread count: time that too (threads are set per call).
            matched, result = candidates["pytorch eager"]
            candidates["pytorch eager"] = (_with_torch_threads(torch, threads, matched), result)
            default_step, _ = frameworks.torch_net_step(model.params, X, y, **settings)
            candidates[f"pytorch eager ({torch_default_threads} thr)"] = (
                _with_torch_threads(torch, torch_default_threads, default_step), None)
    if jax is not None:
        candidates["jax jit"] = frameworks.jax_net_step(model.params, X, y, **settings)
    if floor:
        candidates["matmul floor"] = (matmul_floor(model, X), None)
    return candidates


def _with_torch_threads(torch, threads, step):
    def run():
        torch.set_num_threads(threads)
        return step()
    return run


def agreement(candidates: dict, reference: str = "hand") -> dict:
    """Largest gradient difference of each implementation from ``reference``: a check that
    all of them compute the same step.

    Each gradient's difference is relative to its largest entry, but to no less than
    1e-3 of the largest entry of any gradient: the biases before batch norm have
    gradients that are mathematically zero, and their rounding noise is no mismatch.
    """
    ref_loss, ref_grads = candidates[reference][1]()
    overall = max(float(np.max(np.abs(g))) for g in ref_grads.values())
    report = {}
    for name, (_, result) in candidates.items():
        if result is None or name == reference:
            continue
        loss, grads = result()
        worst = max(float(np.max(np.abs(grads[k] - g))) / max(float(np.max(np.abs(g))), 1e-3 * overall, 1e-30)
                    for k, g in ref_grads.items())
        report[name] = {"loss_diff": abs(loss - ref_loss), "max_grad_rel_diff": worst}
    return report


WARM_SECONDS = 0.05  # untimed warm-up before each block, beyond the two calls (see timing.interleaved)
LIBRARY = {"pytorch": "torch", "jax": "jax"}  # by the first word of a candidate's name; the rest is numpy


def run_step(cfg: NetConfig, repeats: int, *, torch=None, jax=None, threads: int = 1,
             torch_default_threads: int | None = None, block: int = 3, settle: float = 0.15,
             check: bool = True, warm_seconds: float = WARM_SECONDS) -> dict:
    """Time one configuration. Returns ``{'config', 'timings', 'agreement'}``; timings are
    :class:`Timing` objects, keyed by implementation name."""
    model, X, y = make_workload(cfg)
    candidates = build_candidates(cfg, model, X, y, torch=torch, jax=jax, threads=threads,
                                  torch_default_threads=torch_default_threads)
    agrees = agreement(candidates) if check else {}
    timings: dict[str, Timing] = interleaved(
        {k: Candidate(v[0], LIBRARY.get(k.split(" ")[0], "numpy")) for k, v in candidates.items()},
        repeats, block=block, warm=2, settle=settle, warm_seconds=warm_seconds)
    if torch is not None:
        torch.set_num_threads(threads)
    return {"config": asdict(cfg), "label": cfg.label, "timings": timings, "agreement": agrees}
