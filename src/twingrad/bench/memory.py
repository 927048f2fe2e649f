"""Peak memory of one training step, hand-derived vs autograd twin, with :mod:`tracemalloc`.

NumPy reports its array buffers to tracemalloc, so the peak counts every
activation, cache and gradient that the step holds at once, above what was
allocated before it (the parameters and the batch). PyTorch and JAX allocate
outside Python's view and are not measured.
"""

from __future__ import annotations

import gc
import tracemalloc

from .step import NetConfig, hand_step, make_workload, twin_step


def peak_bytes(func) -> int:
    """Bytes allocated at the peak of one call of ``func``, above the level at its start."""
    func()  # once first: lazy imports and caches are not the step's memory
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = func()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        tracemalloc.stop()
    return peak - base


def run_memory(cfg: NetConfig) -> dict:
    """Peak bytes of a step for the hand pass and the twin, with the sizes that explain them."""
    model, X, y = make_workload(cfg)
    hand, _ = hand_step(model, X, y)
    twin, _ = twin_step(model, X, y)
    params = sum(p.nbytes for p in model.params.values())
    activations = X.dtype.itemsize * cfg.batch * cfg.hidden * cfg.depth
    return {"label": cfg.label, "hand_peak_bytes": peak_bytes(hand), "twin_peak_bytes": peak_bytes(twin),
            "params_bytes": params, "batch_bytes": X.nbytes, "one_activation_set_bytes": activations}
