"""The records a verification produces, and how cases add up to them.

A *case* is one random draw of inputs for one function. Each case yields an
:class:`Outcome` per checked quantity (``out``, ``dx``, ``running_mean``, ...);
:class:`Collector` merges the outcomes of all cases of a function into one
:class:`Record` per quantity: one row of the table, one object of the JSON
``checks`` list. A failing record carries its diagnosis (:func:`diagnose`):
what is wrong, where, how to replay it, and a hint; the same text is
printed under ``twingrad verify``'s table, stored in the JSON report
(``diagnosis.text``), and raised by :mod:`twingrad.testing`'s assertions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .hints import hints


STATUSES = ("pass", "fail", "missing", "error", "kink")
SUBMISSION_STATUSES = ("pass", "incomplete", "fail", "import_error", "internal_error")
# A function's status is the most severe of its records'.
_SEVERITY = {"error": 4, "fail": 3, "missing": 2, "kink": 1, "pass": 0}
KINDS = ("forward", "gradient", "state", "statistics", "function")


def worst_status(statuses) -> str:
    """The most severe status: error > fail > missing > kink > pass ('pass' for none)."""
    return max(statuses, key=_SEVERITY.__getitem__, default="pass")


def exit_code(statuses) -> int:
    """1 when anything failed or raised, else 0: a kink or a missing function is no failure."""
    return 1 if {"fail", "error"} & set(statuses) else 0


@dataclass
class Outcome:
    """One quantity of one case.

    ``comparisons`` maps a reference ("autograd", "numeric", "twin", "expected")
    to its :class:`~twingrad.gradcheck.Comparison`; ``details`` carries what a
    diagnosis needs (the arrays compared, the inputs' context), never serialized.
    """

    status: str
    comparisons: dict
    case: int
    shapes: dict  #: input name -> shape
    mode: str | None = None
    redraws: int = 0
    details: dict = field(default_factory=dict)
    kind: str = "gradient"  #: set by :meth:`Collector.add`: which hints may explain a failure


@dataclass
class Record:
    """One checked quantity of one CS231n function, over all cases: the JSON ``checks`` entry."""

    function: str
    gradient: str | None
    kind: str
    status: str
    seed: int
    dtype: str
    mode: str | None = None
    cases: int = 0
    shapes: list = field(default_factory=list)
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    tolerance: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)
    kinks: int = 0
    redraws: int = 0
    message: str | None = None
    diagnosis: dict | None = None
    configuration: str | None = None  #: a student's FullyConnectedNet: plain, batchnorm, layernorm or dropout

    def to_json(self) -> dict:
        return {
            "function": self.function, "configuration": self.configuration, "gradient": self.gradient,
            "kind": self.kind, "status": self.status,
            "message": self.message, "seed": self.seed, "dtype": self.dtype, "mode": self.mode,
            "cases": self.cases, "shapes": [list(s) for s in self.shapes],
            "max_abs_error": _finite_or_none(self.max_abs_error), "max_rel_error": _finite_or_none(self.max_rel_error),
            "tolerance": self.tolerance, "references": self.references, "kinks": self.kinks,
            "redraws": self.redraws, "diagnosis": self.diagnosis,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        fields = dict(data)
        fields["shapes"] = [tuple(s) for s in fields.get("shapes", [])]
        return cls(**fields)


def _finite_or_none(value):
    # JSON has no inf or NaN: a NaN gradient gets null, and its status says fail.
    return None if value is None or not np.isfinite(value) else float(value)


def function_record(function: str, status: str, message: str, settings, *, case: int | None = None,
                    shapes: dict | None = None) -> Record:
    """A record about a whole function: missing, or an error that stopped its check."""
    record = Record(function, None, "function", status, settings.seed, settings.dtype, message=message)
    if case is not None:
        record.cases = 1
        record.shapes = [tuple(next(iter(shapes.values())))] if shapes else []
        record.diagnosis = {"case": case, "seed": settings.seed,
                            "input_shapes": {k: list(v) for k, v in (shapes or {}).items()},
                            "reproduce": settings.reproduce(function, case)}
    return record


def failure_record(function: str, err, settings, case: int | None = None, shapes: dict | None = None) -> Record:
    """The record of a function whose check a :class:`~.calling.UserError` stopped: missing, or an error in a case."""
    if err.status == "missing":
        return function_record(function, "missing", err.message, settings)
    return function_record(function, "error", err.message, settings, case=case, shapes=err.shapes or shapes)


class Collector:
    """Merges the per-case outcomes of one function into records, quantity by quantity, in first-seen order."""

    def __init__(self, function: str, settings, first_input: str = "x"):
        self.function = function
        self.settings = settings
        self.first_input = first_input
        self.outcomes: dict[tuple, list[Outcome]] = {}

    def add(self, gradient: str, kind: str, outcome: Outcome) -> None:
        outcome.kind = kind
        self.outcomes.setdefault((gradient, kind), []).append(outcome)

    def records(self) -> list[Record]:
        """One record per quantity; a failing one diagnosed on its largest failing case."""
        return [self._record(gradient, kind, outcomes) for (gradient, kind), outcomes in self.outcomes.items()]

    def _record(self, gradient, kind, outcomes) -> Record:
        status = worst_status(o.status for o in outcomes)
        shapes = sorted({tuple(o.shapes.get(self.first_input, next(iter(o.shapes.values()), ())))
                         for o in outcomes})
        comparisons = [c for o in outcomes for c in o.comparisons.values()]
        references: dict = {}
        for o in outcomes:
            for name, c in o.comparisons.items():
                ref = references.setdefault(name, {"max_abs_error": 0.0, "max_rel_error": 0.0, "passed": True})
                ref["max_abs_error"] = max(ref["max_abs_error"], _finite_or_inf(c.max_abs_error))
                ref["max_rel_error"] = max(ref["max_rel_error"], _finite_or_inf(c.max_rel_error))
                ref["passed"] = ref["passed"] and c.passed
        for ref in references.values():
            ref["max_abs_error"] = _finite_or_none(ref["max_abs_error"])
            ref["max_rel_error"] = _finite_or_none(ref["max_rel_error"])
        tolerance: dict = {}
        for o in outcomes:  # the widest over the cases (float32 widens by the measured rounding noise)
            for name, c in o.comparisons.items():
                tol = tolerance.setdefault(name, {"atol": 0.0, "rtol": 0.0})
                tol["atol"], tol["rtol"] = max(tol["atol"], c.tolerance.atol), max(tol["rtol"], c.tolerance.rtol)
        modes = sorted({o.mode for o in outcomes if o.mode})
        record = Record(
            function=self.function, gradient=gradient, kind=kind, status=status, seed=self.settings.seed,
            dtype=self.settings.dtype, mode="+".join(modes) if modes else None, cases=len(outcomes),
            shapes=shapes,
            max_abs_error=max((_finite_or_inf(c.max_abs_error) for c in comparisons), default=None),
            max_rel_error=max((_finite_or_inf(c.max_rel_error) for c in comparisons), default=None),
            tolerance=tolerance, references=references,
            kinks=sum(c.ignored for c in comparisons), redraws=sum(o.redraws for o in outcomes),
        )
        failing = [o for o in outcomes if o.status == "fail"]
        if failing:
            # The case furthest outside its tolerance, among those with finite values (a NaN case has no
            # pattern to hint at); but the largest case when only it has the data for a hint.
            worst = max(failing, key=lambda o: (_finite(o), _excess(o), _size(o.shapes), -o.case))
            largest = max(failing, key=lambda o: (_finite(o), _size(o.shapes), -o.case))
            shown, record.diagnosis = worst, diagnose(self.function, gradient, worst, self.settings)
            if largest is not worst and not record.diagnosis["hints"]:
                other = diagnose(self.function, gradient, largest, self.settings)
                if other["hints"]:
                    shown, record.diagnosis = largest, other
            record.message = record.diagnosis.get("summary")
            non_finite = [o.case for o in failing if not _finite(o)]
            if non_finite and _finite(shown):
                line = (f"case{'s' if len(non_finite) > 1 else ''} {', '.join(map(str, non_finite))} "
                        f"gave NaN or inf")
                record.diagnosis["text"] += f"\n  {line}"
                record.diagnosis["hints"].append(line)
        elif status == "kink":
            record.message = (f"finite differences straddled a non-differentiable point ({record.redraws} "
                              f"redraw{'s' if record.redraws != 1 else ''}); the analytic gradients agreed")
        # What a record says whatever its status (a result numpy broadcasts to the right shape).
        notes = list(dict.fromkeys(note for o in outcomes for note in o.details.get("notes", ())))
        if notes:
            record.message = "; ".join(filter(None, [record.message, *notes]))
        return record


def _finite_or_inf(value: float) -> float:
    return float(value) if np.isfinite(value) else float("inf")


def _failing_comparison(outcome: Outcome):
    return next((c for c in outcome.comparisons.values() if not c.passed), next(iter(outcome.comparisons.values())))


def _excess(outcome: Outcome) -> float:
    """How many times its tolerance the worst element of a failing outcome is off (inf for NaN)."""
    c = _failing_comparison(outcome)
    error = abs(c.actual - c.expected)
    return float(error / c.tolerance.bound(c.expected)) if np.isfinite(error) else np.inf


def _finite(outcome: Outcome) -> bool:
    got = outcome.details.get("got")
    values = got if got is not None else _failing_comparison(outcome).actual
    return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))


def _size(shapes: dict) -> int:
    return sum(int(np.prod(s)) for s in shapes.values())


def arguments_text(inputs: dict) -> str:
    """The case's arguments that are not arrays, as a diagnosis shows them: ``pool_param {...}, G 2``."""
    shown = []
    for name, value in inputs.items():
        if isinstance(value, dict):
            plain = {k: v for k, v in value.items() if isinstance(v, (int, float, str)) and k != "seed"}
            if plain:
                shown.append(f"{name} {plain}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown.append(f"{name} {value}")
    return ", ".join(shown)


# -- the diagnosis of a failing record ----------------------------------------------------

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
        # a check that is not a comparison of values (dropout never applied) says what it saw instead
        details.get("finding") or
        f"  {gradient} has shape {_shape_text(shape)}; {where}: expected {_number(comparison.expected)}, "
        f"got {_number(comparison.actual)} (tolerance {comparison.tolerance.atol:g} + "
        f"{comparison.tolerance.rtol:g} x |expected|)",
        f"  case {outcome.case}: {'; '.join(filter(None, [inputs, details.get('arguments')]))}; "
        f"seed {settings.seed}, {settings.dtype}",
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
