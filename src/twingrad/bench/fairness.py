"""Is the interleaved harness fair to every implementation?

The step table times every implementation in one process, interleaved (see
:mod:`.timing`). That is fair only if each implementation runs there as fast
as it runs on its own. This module checks it: each implementation's step is
timed again in a fresh Python process of its own, with nothing else loaded
or run, in the same rounds and blocks, and the two medians are compared. A
ratio outside ``1 +- TOLERANCE`` means the harness misreports that
implementation (another library's threads in its way, its own thread pool
parked, ...), and its row in the step table is not to be trusted.

``python -m twingrad.bench.fairness REQUEST_JSON`` is the fresh process's
side: it builds the one implementation named in the request, times it, and
prints the samples as JSON on its last line of stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

from . import frameworks, machine
from .step import LIBRARY, WARM_SECONDS, NetConfig, build_candidates, make_workload, run_step
from .timing import Candidate, Timing, interleaved

TOLERANCE = 0.20  #: in-harness median / alone median must lie within 1 +- this
CHILD_TIMEOUT = 600.0  #: seconds for one fresh process (imports, JIT compilation, timing)


def _library(name: str) -> str:
    return LIBRARY.get(name.split(" ")[0], "numpy")


def request(cfg: NetConfig, name: str, rounds: int, *, block: int = 3, warm: int = 2,
            warm_seconds: float = WARM_SECONDS, threads: int = 1, torch_default_threads: int | None = None) -> dict:
    """What the fresh process needs to rebuild and time implementation ``name`` (JSON-able)."""
    return {"config": asdict(cfg), "name": name, "rounds": rounds, "block": block, "warm": warm,
            "warm_seconds": warm_seconds, "threads": threads, "torch_default_threads": torch_default_threads}


def time_in_this_process(req: dict) -> Timing:
    """Build the implementation ``req['name']`` alone (only its own framework imported) and time it."""
    cfg = NetConfig(**req["config"])
    library = _library(req["name"])
    torch = jax = None
    if library == "torch":
        torch, note = frameworks.load("torch")
        if torch is None:
            raise RuntimeError(note)
        torch.set_num_threads(req["threads"])
    elif library == "jax":
        jax, note = frameworks.load("jax")
        if jax is None:
            raise RuntimeError(note)
    model, X, y = make_workload(cfg)
    candidates = build_candidates(cfg, model, X, y, torch=torch, jax=jax, threads=req["threads"],
                                  torch_default_threads=req["torch_default_threads"])
    if req["name"] not in candidates:
        raise KeyError(f"no implementation {req['name']!r} here; built {sorted(candidates)}")
    step = candidates[req["name"]][0]
    timings = interleaved({req["name"]: Candidate(step, library)}, req["rounds"], block=req["block"],
                          warm=req["warm"], warm_seconds=req["warm_seconds"], settle=0.0)
    return timings[req["name"]]


def time_alone(req: dict, python: str = sys.executable, timeout: float = CHILD_TIMEOUT) -> Timing:
    """Time ``req['name']`` in a fresh process (same interpreter, environment and thread settings)."""
    run = subprocess.run([python, "-m", "twingrad.bench.fairness", json.dumps(req)], capture_output=True,
                         text=True, timeout=timeout, env=os.environ.copy())
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the fresh process timing {req['name']!r} failed: {last}")
    doc = json.loads(lines[-1])
    return Timing(tuple(doc["samples"]), doc["calls_per_sample"], doc["block"])


def compare(harness: dict[str, Timing], alone: dict[str, Timing | str]) -> list[dict]:
    """One row per implementation: both medians, their ratio, and whether it lies within the tolerance.

    ``alone`` maps a name to its Timing, or to the text of why it could not be timed.
    """
    rows = []
    for name, t in harness.items():
        other = alone.get(name, "not run")
        if not isinstance(other, Timing):
            rows.append({"implementation": name, "harness": t, "alone": None, "ratio": None, "fair": None,
                         "note": str(other)})
            continue
        ratio = t.median / other.median
        rows.append({"implementation": name, "harness": t, "alone": other, "ratio": ratio,
                     "fair": abs(ratio - 1.0) <= TOLERANCE, "note": ""})
    return rows


def run_fairness(cfg: NetConfig, rounds: int, *, torch=None, jax=None, threads: int = 1,
                 torch_default_threads: int | None = None, settle: float = 0.15, block: int = 3,
                 warm: int = 2, warm_seconds: float = WARM_SECONDS, say=None) -> dict:
    """The step of ``cfg`` timed in the harness, then each implementation alone in a fresh process.

    Returns ``{'config', 'label', 'rows', 'tolerance'}``; see :func:`compare` for the rows.
    """
    result = run_step(cfg, rounds, torch=torch, jax=jax, threads=threads,
                      torch_default_threads=torch_default_threads, settle=settle, check=False,
                      warm_seconds=warm_seconds)
    harness = result["timings"]
    alone: dict[str, Timing | str] = {}
    for name in harness:
        if say:
            say(f"  timing {name} alone in a fresh process ...")
        req = request(cfg, name, rounds, block=block, warm=warm, warm_seconds=warm_seconds, threads=threads,
                      torch_default_threads=torch_default_threads)
        try:
            alone[name] = time_alone(req)
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            alone[name] = f"not timed alone: {exc}"
    return {"config": asdict(cfg), "label": cfg.label, "rows": compare(harness, alone), "tolerance": TOLERANCE}


def _main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m twingrad.bench.fairness REQUEST_JSON", file=sys.stderr)
        return 2
    machine.steady_heap()  # the allocator as in the harness (see machine.steady_heap)
    timing = time_in_this_process(json.loads(argv[0]))
    print(json.dumps({"samples": list(timing.samples), "calls_per_sample": timing.calls_per_sample,
                      "block": timing.block}))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
