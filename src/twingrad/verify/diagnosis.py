"""The diagnosis of a failing check: what is wrong, where, how to replay it, and a hint.

The same text is printed by ``twingrad verify`` under its table, stored in
the JSON report (``diagnosis.text``), and raised as the message of
:func:`twingrad.testing.assert_layer_matches`' AssertionError.
"""

from __future__ import annotations

import numpy as np

from .hints import hints
from .results import Outcome

# Which comparison a diagnosis shows: the exact reference first, as it has no
# finite-difference noise; central differences only when they alone disagree.
_PREFERENCE = ("autograd", "twin", "expected", "numeric")


def _index_text(name: str, index: tuple) -> str:
    return f"{name}[{', '.join(str(i) for i in index)}]" if index else name


def _number(value: float) -> str:
    return f"{value:.7g}"


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def diagnose(function: str, gradient: str, outcome: Outcome, settings) -> dict:
    """The diagnosis of one failing outcome, as a JSON-able dict whose ``text`` a student reads.

    Parameters
    ----------
    function, gradient : str
        What failed (``"batchnorm_backward"``, ``"dx"``).
    outcome : Outcome
        The failing case; its ``details`` may hold ``got`` and the reference
        arrays, a ``context`` for the hints, ``extra_hints`` and a ``note``.
    settings : Settings
        For the seed and the reproduce command.
    """
    gradient = outcome.details.get("name", gradient)  # a family row ("W") names its member ("W2")
    failing = [name for name in _PREFERENCE if name in outcome.comparisons and not outcome.comparisons[name].passed]
    reference = failing[0] if failing else next(iter(outcome.comparisons))
    comparison = outcome.comparisons[reference]
    details = outcome.details
    got, expected = details.get("got"), details.get(reference)
    # The hints of the specific check (running averages, dropout's scale, ...) know more than the patterns.
    found = list(details.get("extra_hints", []))
    if got is not None and expected is not None and np.shape(got) == np.shape(expected):
        found += [h for h in hints(got, expected, comparison.tolerance, details.get("context"), outcome.kind)
                  if h not in found]
    projection = outcome.mode == "fast" and reference == "numeric" and "numeric" not in details
    where = (f"along random direction {comparison.worst_index[0]}" if projection and comparison.worst_index
             else f"worst element {_index_text(gradient, comparison.worst_index)}")
    shape = np.shape(got) if got is not None else ()
    reproduce = settings.reproduce(function, outcome.case)
    inputs = ", ".join(f"{name} {_shape_text(s)}" for name, s in outcome.shapes.items())
    lines = [
        f"{function}: {gradient} is wrong (compared with {details.get('reference_text', _REFERENCE_TEXT[reference])})",
        f"  {gradient} has shape {_shape_text(shape)}; {where}: expected {_number(comparison.expected)}, "
        f"got {_number(comparison.actual)} (tolerance {comparison.tolerance.atol:g} + "
        f"{comparison.tolerance.rtol:g} x |expected|)",
        f"  case {outcome.case}: {inputs}; seed {settings.seed}, {settings.dtype}",
    ]
    if details.get("note"):
        lines.append(f"  {details['note']}")
    lines += [f"  hint: {h}" for h in found]
    lines.append(f"  reproduce: {reproduce}")
    summary = f"{gradient} differs from {reference}"
    if found:
        summary += f": {found[0]}"
    return {
        "gradient": gradient,
        "shape": list(shape),
        "reference": reference,
        "worst_index": [int(i) for i in comparison.worst_index],
        "expected": _json_float(comparison.expected),
        "got": _json_float(comparison.actual),
        "case": outcome.case,
        "seed": settings.seed,
        "input_shapes": {name: list(s) for name, s in outcome.shapes.items()},
        "hints": found,
        "reproduce": reproduce,
        "summary": summary,
        "text": "\n".join(lines),
    }


_REFERENCE_TEXT = {
    "autograd": "the autograd twin's gradient",
    "numeric": "central differences of the twin",
    "twin": "the twin's forward value",
    "expected": "the value the definition gives",
}


def _json_float(value: float):
    return float(value) if np.isfinite(value) else None
