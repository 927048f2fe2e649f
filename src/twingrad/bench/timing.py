"""Interleaved timing: every implementation runs in every round, in turn.

Timing A for a while and then B lets machine noise (another process, frequency
scaling) land on one of them only. Here each round runs every candidate once,
as a short block of calls, and the order rotates from round to round, so noise
falls on all alike.

Libraries share the cores, and their worker threads do not go to sleep at
once: OpenBLAS's (numpy's BLAS) spin for about 100 ms after each product,
taking a whole core from whoever runs next. So before a block whose library
differs from the previous block's, the next library runs untimed for
``settle`` seconds, while the previous one's threads wind down. It used to
sleep instead, and a pause is not neutral: after one, JAX's step stayed about
1.4x slower for the next 100-250 ms whenever numpy or PyTorch had run before
the pause (measured: 3.1-3.6 ms against 2.4 ms, recovering only after about
100 calls), and JAX and PyTorch, each alone in its library's group, followed
a pause in every round; the harness timed JAX 1.3-1.5x slower than a fresh
process running nothing else did. Every block then starts with untimed calls
for ``warm_seconds`` more, and the timed calls run as they would in a
training loop, back to back. :mod:`.fairness` checks the result against each
implementation timed alone.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One implementation: a zero-argument callable doing the whole unit of work
    (JAX results must be waited for inside it), and the library whose threads it uses."""

    func: Callable[[], object]
    library: str = "numpy"


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one implementation: one sample per timed block call."""

    samples: tuple[float, ...]
    calls_per_sample: int = 1
    block: int = 1  #: consecutive samples taken in one round

    def round_medians(self) -> np.ndarray:
        """The median of each round's block, in round order."""
        rounds = len(self.samples) // self.block
        return np.median(np.reshape(self.samples[:rounds * self.block], (rounds, self.block)), axis=1)

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def min(self) -> float:
        return float(np.min(self.samples))

    @property
    def max(self) -> float:
        return float(np.max(self.samples))

    def to_dict(self) -> dict:
        """Summary in milliseconds, plus the raw samples, for ``--json``."""
        ms = lambda s: round(s * 1e3, 5)
        return {"median_ms": ms(self.median), "q1_ms": ms(self.q1), "q3_ms": ms(self.q3),
                "min_ms": ms(self.min), "max_ms": ms(self.max), "samples": len(self.samples),
                "calls_per_sample": self.calls_per_sample, "block": self.block,
                "samples_ms": [ms(s) for s in self.samples]}


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of ``a``'s time over ``b``'s in the same round.

    Both ran within the same second of each round, so a burst of load from
    elsewhere that slows one round slows both: the ratio of each round's pair
    is steadier than the ratio of the overall medians.
    """
    ra, rb = a.round_medians(), b.round_medians()
    n = min(len(ra), len(rb))
    if n == 0:
        return a.median / b.median
    return float(np.median(ra[:n] / rb[:n]))


def _calls_for(func: Callable[[], object], min_sample: float) -> int:
    """How many back-to-back calls make one sample last at least ``min_sample`` seconds."""
    func()  # the first call may compile or allocate: calibrate on the second
    start = time.perf_counter()
    func()
    once = time.perf_counter() - start
    return max(1, int(np.ceil(min_sample / max(once, 1e-9))))


def _round_order(names: list[str], libraries: dict[str, str], round_index: int) -> list[str]:
    """The candidates grouped by library (fewest switches), both levels rotated by the round."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(libraries[name], []).append(name)
    order = list(groups.values())
    shift = round_index % len(order)
    order = order[shift:] + order[:shift]
    return [group[(round_index + k) % len(group)] for group in order for k in range(len(group))]


def _warm_up(func: Callable[[], object], calls: int, seconds: float) -> None:
    """Untimed calls: at least ``calls`` of them, and for at least ``seconds``."""
    start = time.perf_counter()
    done = 0
    while done < calls or time.perf_counter() - start < seconds:
        func()
        done += 1


def interleaved(candidates: dict[str, Candidate | Callable[[], object]], rounds: int, *, block: int = 3,
                warm: int = 1, settle: float = 0.15, min_sample: float = 0.0,
                warm_seconds: float = 0.0) -> dict[str, Timing]:
    """Time each candidate in ``rounds`` rounds of ``block`` timed calls.

    Parameters
    ----------
    candidates : dict of str to Candidate (or a bare callable, taken as numpy)
    rounds : int
        Rounds; each runs every candidate's block once, in a rotating order.
    block : int
        Timed samples per candidate per round.
    warm : int
        Untimed calls before each block. PyTorch's first two steps after a pause
        are measurably slower than its steady state, so the step uses two.
    settle : float
        Seconds of untimed calls when the library changes between blocks, while
        the previous library's threads stop spinning (see the module docstring).
    warm_seconds : float
        The untimed calls before every block go on for at least this long (and
        at least ``warm`` calls), on top of ``settle`` after a library change.
    min_sample : float
        Seconds: a candidate faster than this is called several times per sample
        (the count fixed once, before the first round), so the timer's resolution
        and its own overhead do not dominate.

    Returns
    -------
    dict of str to Timing
        In the order of ``candidates``; seconds per single call.
    """
    cands = {k: v if isinstance(v, Candidate) else Candidate(v) for k, v in candidates.items()}
    names = list(cands)
    libraries = {k: c.library for k, c in cands.items()}
    calls = {k: _calls_for(c.func, min_sample) if min_sample else 1 for k, c in cands.items()}
    samples: dict[str, list[float]] = {name: [] for name in names}
    previous_library = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one candidate's sample is noise (timeit does the same)
    try:
        for r in range(rounds):
            for name in _round_order(names, libraries, r):
                func, n = cands[name].func, calls[name]
                switched = previous_library not in (None, cands[name].library)
                previous_library = cands[name].library
                # untimed: outlasts the previous library's spinning threads, wakes this one's, warms its caches
                _warm_up(func, warm, warm_seconds + (settle if switched else 0.0))
                for _ in range(block):
                    start = time.perf_counter()
                    for _ in range(n):
                        func()
                    samples[name].append((time.perf_counter() - start) / n)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: Timing(tuple(samples[name]), calls[name], block) for name in names}
