"""Checking a whole module, function by function: the order, and which module holds what.

In process for trusted code (``twingrad verify`` on twingrad itself,
:mod:`twingrad.testing`); the judge (:mod:`.judge`) walks the same list for a
submission, one function at a time, each under its own deadline.
"""

from __future__ import annotations

from . import cnn_check, network, update_rules
from .calling import Caller
from .functions import FUNCTIONS, check_function
from .results import Record

# The sandwich layers call these; a failure there usually explains one here.
_PARTS = {
    "affine_relu": ("affine", "relu"),
    "affine_bn_relu": ("affine", "batchnorm", "relu"),
    "affine_ln_relu": ("affine", "layernorm", "relu"),
}


def function_names() -> list[str]:
    """Every CS231n function name ``--only`` accepts, in checking order."""
    return [*FUNCTIONS, network.FUNCTION, cnn_check.FUNCTION, *update_rules.RULES]


def role_of(name: str) -> str:
    """The module of the course package a function is written in: its registry entry's, fc_net, optim."""
    if name == network.FUNCTION:
        return "fc_net"
    if name == cnn_check.FUNCTION:
        return "cnn"
    if name in update_rules.RULES:
        return "optim"
    return FUNCTIONS[name].spec.module if name in FUNCTIONS else "layers"


def selected_functions(settings) -> list[str]:
    """The functions a run checks, in checking order."""
    return [name for name in function_names() if settings.selects(name)]


def check_one(name: str, caller, settings, *, network_sweep: bool = False) -> list[Record]:
    """Every record of one CS231n function (a layer, the network, an update rule)."""
    if name == network.FUNCTION:
        return network.check_sweep(settings) if network_sweep else network.check_student_network(caller, settings)
    if name in update_rules.RULES:
        return update_rules.check_update_rule(name, caller, settings)
    if name == cnn_check.FUNCTION:
        return cnn_check.check_student_cnn(caller, settings)
    return check_function(FUNCTIONS[name], caller, settings)


def check_all(caller: Caller, settings, *, network_sweep: bool = False) -> list[Record]:
    """Check every selected CS231n function that ``caller``'s module defines (absent ones: 'missing').

    ``network_sweep`` checks twingrad's own FullyConnectedNet over the default
    sweep of architectures rather than the module's FullyConnectedNet class.
    """
    return [record for name in selected_functions(settings)
            for record in check_one(name, caller, settings, network_sweep=network_sweep)]


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
                    if record.diagnosis is not None and "text" in record.diagnosis:  # a failure's diagnosis
                        record.diagnosis.setdefault("hints", []).append(note)
                        record.diagnosis["text"] += f"\n  hint: {note}"
                    else:
                        record.message = f"{record.message}; {note}" if record.message else note
