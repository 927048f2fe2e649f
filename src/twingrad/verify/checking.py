"""Checking a whole module, function by function, with a callback per finished function.

The callbacks are what a grading worker streams to its parent; the in-process
runs (``twingrad verify`` on twingrad itself, :mod:`twingrad.testing`) simply
collect the records.
"""

from __future__ import annotations

from typing import Callable

from . import network
from .calling import Caller
from .functions import FUNCTIONS, check_function
from .results import Record, function_record

# The sandwich layers call these; a failure there usually explains one here.
_PARTS = {
    "affine_relu": ("affine", "relu"),
    "affine_bn_relu": ("affine", "batchnorm", "relu"),
    "affine_ln_relu": ("affine", "layernorm", "relu"),
}


def function_names(include_network: bool = True) -> list[str]:
    """Every CS231n function name ``--only`` accepts, in checking order."""
    return [*FUNCTIONS, network.FUNCTION] if include_network else list(FUNCTIONS)


def check_module(caller: Caller, settings, *, skip=(), hung=(), on_start: Callable | None = None,
                 on_record: Callable | None = None, network_sweep: bool = False) -> list[Record]:
    """Check every selected CS231n function that ``caller``'s module defines (absent ones: 'missing').

    Parameters
    ----------
    caller : Caller
        The module under check.
    settings : Settings
    skip : iterable of str
        Functions already reported (by an earlier worker).
    hung : iterable of str
        Functions that timed out or crashed earlier: a backward that needs one
        of them as its forward is reported as an error without running.
    on_start, on_record : callable, optional
        ``on_start(function)`` before a function is checked, ``on_record(record)``
        for each of its records.
    network_sweep : bool
        Check twingrad's FullyConnectedNet over the default sweep of architectures
        rather than the module's own FullyConnectedNet class (if any).
    """
    records = []
    for name, fn in FUNCTIONS.items():
        if not settings.selects(name) or name in skip:
            continue
        if on_start:
            on_start(name)
        if fn.role == "backward" and fn.forward in hung:
            found = [function_record(name, "error", f"not checked: {fn.forward}, which produces its cache, "
                                     "did not finish", settings)]
        else:
            found = check_function(fn, caller, settings)
        for record in found:
            if on_record:
                on_record(record)
        records += found
    if settings.selects(network.FUNCTION) and network.FUNCTION not in skip:
        if on_start:
            on_start(network.FUNCTION)
        found = network.check_sweep(settings) if network_sweep else network.check_student_network(caller, settings)
        for record in found:
            if on_record:
                on_record(record)
        records += found
    return records


def add_dependency_notes(records: list[Record]) -> None:
    """Tell a failing sandwich layer that a layer it is built from fails too (fix that first)."""
    bad = {r.function for r in records if r.status in ("fail", "error")}
    for record in records:
        if record.status not in ("fail", "error"):
            continue
        for root, parts in _PARTS.items():
            suffix = record.function[len(root):]
            if record.function.startswith(root + "_") and suffix in ("_forward", "_backward"):
                culprits = [f"{part}{suffix}" for part in parts if f"{part}{suffix}" in bad]
                if culprits:
                    one = len(culprits) == 1
                    note = (f"{record.function} is usually built from {', '.join(culprits)}, which "
                            f"{'fails' if one else 'fail'} too: fix {'it' if one else 'them'} first")
                    if record.diagnosis is not None:
                        record.diagnosis.setdefault("hints", []).append(note)
                        record.diagnosis["text"] += f"\n  hint: {note}"
                    else:
                        record.message = f"{record.message}; {note}" if record.message else note
