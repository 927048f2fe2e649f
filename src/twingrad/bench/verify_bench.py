"""The verification suite's own cost: the three-way check of a CIFAR-sized
network in fast (projection) mode, and full per-element mode.

Full mode on 3072-[100]x5-10 takes central differences for each of its ~360k
parameters: far too long to run here, so it is measured on a small network and
estimated for the big one from the time of one loss evaluation. The check
itself comes from :mod:`twingrad.verify` (``engine.check_case`` on
``network.net_case``): the same engine ``twingrad verify`` runs.
"""

from __future__ import annotations

import time

import numpy as np

from ..verify.engine import check_case
from ..verify.architecture import parse_architecture
from ..verify.network import Builder, net_case

#: evaluations of the loss per parameter in full mode: the five-point central difference
EVALS_PER_ELEMENT = 4


def time_check(arch_text: str, mode: str, seed: int = 0) -> dict:
    """Seconds for one three-way check of the architecture in ``mode``, and its verdict."""
    arch = parse_architecture(arch_text)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    model, X, y = Builder()(arch, rng, np.float64)
    case = net_case(arch, model, X, y)[0]
    _, outcomes = check_case(case, rng, np.float64, mode=mode)
    seconds = time.perf_counter() - start
    statuses = {o.status for o in outcomes}
    return {"status": "fail" if "fail" in statuses else "pass", "seconds": seconds,
            "elements": int(sum(np.size(a) for a in case.arrays.values())), "mode": mode}


def estimate_full(arch_text: str, seed: int = 0, evaluations: int = 5) -> dict:
    """Full mode's time on ``arch_text`` estimated as elements x evaluations per element x one loss evaluation."""
    arch = parse_architecture(arch_text)
    model, X, y = Builder()(arch, np.random.default_rng(seed), np.float64)
    case = net_case(arch, model, X, y)[0]
    arrays = [np.asarray(a, dtype=np.float64) for a in case.arrays.values()]
    evaluate = case.traced or case.twin
    evaluate(*arrays)
    start = time.perf_counter()
    for _ in range(evaluations):
        evaluate(*arrays)
    per_eval = (time.perf_counter() - start) / evaluations
    elements = int(sum(a.size for a in arrays))
    return {"status": "estimated", "seconds": elements * EVALS_PER_ELEMENT * per_eval, "elements": elements,
            "seconds_per_evaluation": per_eval, "mode": "full"}


def run_verify(big: str = "3072-100x5-10,batch=200", small: str = "64-16x2-10,batch=20", *,
               full_big: bool = False) -> dict:
    """Fast vs full on ``small`` (both measured) and on ``big`` (fast measured, full estimated
    unless ``full_big``)."""
    result = {"small": {"arch": small, "fast": time_check(small, "fast"), "full": time_check(small, "full")},
              "big": {"arch": big, "fast": time_check(big, "fast")}}
    result["big"]["full"] = time_check(big, "full") if full_big else estimate_full(big)
    return result
