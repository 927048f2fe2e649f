"""What ``twingrad verify`` prints: the table of checks, the diagnoses, the summary of
many submissions, and the JSON document (schema in docs/verify.md).
"""

from __future__ import annotations

import json
from collections import Counter

from .. import __version__
from .._text import printable, table
from .results import STATUSES, SUBMISSION_STATUSES, Record, exit_code, worst_status

SCHEMA = "twingrad-verify/1"


def function_statuses(records: list[Record]) -> dict[str, str]:
    """Each function's status: the most severe of its records', in checking order."""
    statuses: dict[str, list] = {}
    for record in records:
        statuses.setdefault(record.function, []).append(record.status)
    return {function: worst_status(found) for function, found in statuses.items()}


def counts(statuses) -> dict[str, int]:
    found = Counter(statuses)
    return {status: found.get(status, 0) for status in STATUSES}


_EXIT_CODES = {"pass": 0, "incomplete": 1, "fail": 1, "internal_error": 1, "import_error": 2}
_VERDICTS = {"pass": "OK", "incomplete": "INCOMPLETE", "fail": "FAILED", "import_error": "IMPORT ERROR",
             "internal_error": "INTERNAL ERROR"}


def submission_status(submission) -> str:
    """pass, incomplete (nothing failed, something missing or nothing checked), fail, import_error, internal_error."""
    if submission.internal_error:
        return "internal_error"
    if submission.import_error:
        return "import_error"
    statuses = [r.status for r in submission.records]
    if exit_code(statuses):
        return "fail"
    if "missing" in statuses or not any(s in ("pass", "kink") for s in statuses):
        return "incomplete"
    return "pass"


def submission_code(submission) -> int:
    """0 pass; 1 anything failed, raised or is missing; 2 the submission cannot be imported."""
    return _EXIT_CODES[submission_status(submission)]


# -- text ---------------------------------------------------------------------------------


def _shapes_text(shapes) -> str:
    text = " ".join("x".join(map(str, s)) if s else "()" for s in shapes)
    return text if len(text) <= 28 else text[:25] + "..."


def _error_text(value) -> str:
    return "" if value is None else f"{value:.1e}"


REL_ERROR_FOOTER = ("max rel err is CS231n's |got - expected| / (|got| + |expected|): it nears 1 where both are "
                    "about 0 (a bias before batch norm has a gradient of 0). It decides nothing: a row passes when "
                    "|got - expected| <= atol + rtol * |expected| everywhere (docs/verify.md, Tolerances).")


def checks_table(records: list[Record]) -> str:
    """One row per checked quantity: function, gradient, shapes tried, max abs err, max rel err, status;
    with a footer on max rel err when a passing row shows a large one (it puzzles every newcomer)."""
    rows = [[_function_text(r), r.gradient or "-", _shapes_text(r.shapes), _error_text(r.max_abs_error),
             _error_text(r.max_rel_error), r.status] for r in records]
    text = table(["function", "gradient", "shapes tried", "max abs err", "max rel err", "status"], rows)
    if any(r.status in ("pass", "kink") and (r.max_rel_error or 0) > 1e-3 for r in records):
        text += "\n\n" + REL_ERROR_FOOTER
    return text


def _function_text(record: Record) -> str:
    return f"{record.function}[{record.configuration}]" if record.configuration else record.function


def details_text(records: list[Record]) -> str:
    """The diagnoses of failures, the messages of errors and kinks, and the missing functions."""
    parts = []
    failures = [r for r in records if r.status == "fail" and r.diagnosis]
    if failures:
        parts.append("Failures\n" + "\n".join(_indent(r.diagnosis["text"]) for r in failures))
    errors = [r for r in records if r.status == "error"]
    if errors:
        lines = []
        for r in errors:
            message = r.message or ""
            # most messages already start with the function ("affine_backward raised ..."): never twice
            lines.append(f"  {message}" if message.startswith(r.function) else f"  {_function_text(r)}: {message}")
            if r.diagnosis and r.diagnosis.get("reproduce"):
                lines.append(f"    reproduce: {r.diagnosis['reproduce']}")
        parts.append("Errors\n" + "\n".join(lines))
    kinks = [r for r in records if r.status == "kink"]
    if kinks:
        parts.append("Kinks (not failures)\n" + "\n".join(f"  {r.function} {r.gradient}: {r.message}" for r in kinks))
    noted = [r for r in records if r.status == "pass" and r.message]
    if noted:
        parts.append("Notes (passing, worth fixing)\n" + "\n".join(f"  {_function_text(r)}: {r.message}"
                                                                    for r in noted))
    missing = [r for r in records if r.status == "missing"]
    undefined = [r.function for r in missing if r.message and r.message.startswith("not defined")]
    lines = [f"  not defined: {', '.join(undefined)}"] if undefined else []
    lines += [f"  {_function_text(r)}: {r.message}" for r in missing if r.function not in undefined]
    if lines:
        parts.append("Missing\n" + "\n".join(lines))
    # Every message may quote the submission (its exceptions, its output): nothing in it reaches the
    # terminal as a control character, line by line.
    return "\n".join(printable(line) for line in "\n\n".join(parts).split("\n"))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def summary_line(submission, seconds: float | None = None) -> str:
    found = counts(function_statuses(submission.records).values())
    total = sum(found.values())
    shown = ", ".join(f"{n} {status}" for status, n in found.items() if n)
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    return (f"{submission.name}: {total} function{'s' if total != 1 else ''}{took}: {shown or 'nothing checked'}: "
            f"{_VERDICTS[submission_status(submission)]}")


def notes(submission) -> list[str]:
    """Lines a teacher must see besides the table: reuse of twingrad, a twingrad bug."""
    lines = []
    if submission.dropout_convention and submission.path is not None:
        meaning = "keeping" if submission.dropout_convention == "keep" else "dropping"
        lines.append(f"dropout: p is the probability of {meaning} a unit"
                     + (f" (detected: {submission.dropout_note})" if submission.dropout_note else ""))
    if submission.uses_twingrad:
        lines.append("note: this submission imports twingrad (its reference implementation may stand in for the "
                     "student's own code)")
    if submission.internal_error:
        last = submission.internal_error.strip().splitlines()[-1]
        lines.append(f"internal error: twingrad itself failed while judging this submission ({last}); the "
                     "traceback is in the JSON report: please report it")
    return lines


def submissions_table(submissions) -> str:
    """One row per submission: counts of functions per status, its status, and what fails."""
    rows = []
    for s in submissions:
        status = submission_status(s)
        if status in ("import_error", "internal_error"):
            text = s.import_error or s.internal_error.strip().splitlines()[-1]
            rows.append([s.name, "-", "-", "-", "-", "-", status.replace("_", " "), _first_sentence(text)])
            continue
        found = counts(function_statuses(s.records).values())
        failing = [f"{r.function} ({r.gradient})" if r.gradient else r.function
                   for r in s.records if r.status in ("fail", "error")]
        flag = " [imports twingrad]" if s.uses_twingrad else ""
        rows.append([s.name, *(str(found[k]) for k in ("pass", "fail", "error", "missing", "kink")), status + flag,
                     _shorten(", ".join(failing))])
    return table(["submission", "pass", "fail", "error", "missing", "kink", "status", "failing"], rows)


def _first_sentence(text: str) -> str:
    sentence = text.split(". ")[0]
    return _shorten(printable(sentence))


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# -- JSON -----------------------------------------------------------------------------------


def _submission_json(submission) -> dict:
    statuses = function_statuses(submission.records)
    return {
        "path": submission.path,
        "name": submission.name,
        "import_error": submission.import_error,
        "internal_error": submission.internal_error,
        "uses_twingrad": submission.uses_twingrad,
        "dropout_convention": submission.dropout_convention,
        "dropout_note": submission.dropout_note,
        "status": submission_status(submission),
        "exit_code": submission_code(submission),
        "summary": {"functions": counts(statuses.values()),
                    "checks": counts(r.status for r in submission.records)},
        "functions": statuses,
        "timings": dict(submission.timings),
        "checks": [r.to_json() for r in submission.records],
    }


def document(settings, *, submission=None, submissions=None) -> dict:
    """The JSON report: one submission (or twingrad itself) with ``checks``, or several with ``submissions``."""
    head = {"schema": SCHEMA, "twingrad_version": __version__, "settings": settings.public()}
    if submissions is None:
        return {**head, **_submission_json(submission)}
    items = [_submission_json(s) for s in submissions]
    return {**head, "exit_code": max((item["exit_code"] for item in items), default=0), "submissions": items}


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v))
