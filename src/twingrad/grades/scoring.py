"""Points from the JSON report: each submission's status per rubric item, computed once for every format.

Works from the document ``twingrad verify --json`` prints (a dict), never from
twingrad's internal records, so the grade book is a pure function of what the
teacher can read, saved or fresh. Fields that older reports lack are
optional: a submission's ``name`` (default: the basename of ``path``),
``timings`` (function -> seconds, default 0), ``internal_error`` (a traceback),
``uses_twingrad``, a check's ``configuration`` (none: every configuration of
the function has the function's status).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .rubric import Rubric, default_rubric

# A function's status is the most severe of its checks' (as twingrad's own report decides it).
_SEVERITY = {"error": 4, "fail": 3, "missing": 2, "kink": 1, "pass": 0}
PASSING = ("pass", "kink")
#: Submission statuses under which nothing (or not everything) could be judged.
BROKEN = ("import_error", "internal_error")


@dataclass
class ItemGrade:
    """One rubric item of one submission: what the files call a test."""

    key: str
    function: str
    status: str  #: pass, fail, missing, error, kink, or the submission's import_error / internal_error
    points: float
    max_points: float
    visibility: str
    text: str  #: what a student reads: the diagnosis, the error, or what passed
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status in PASSING


@dataclass
class SubmissionGrade:
    name: str
    path: str | None
    status: str
    points: float
    max_points: float
    items: list[ItemGrade]
    failure: str | None = None  #: the import error paragraph or the internal error's traceback
    uses_twingrad: bool = False  #: the submission imports twingrad (reported; the points do not change)


@dataclass
class Gradebook:
    rubric: Rubric
    submissions: list[SubmissionGrade] = field(default_factory=list)
    version: str = ""

    @property
    def keys(self) -> list[str]:
        return [item.key for item in self.rubric.items]


def submissions_of(doc: dict) -> list[dict]:
    """The submission objects of a report: its ``submissions`` list, or the document itself."""
    return list(doc["submissions"]) if "submissions" in doc else [doc]


def checked_functions(doc: dict, known_functions=None) -> list[str]:
    """The functions this run graded, in order: ``--only``'s; else every function checked, except, in a
    class of two or more, one that no submission has as its own code (not defined anywhere, or only the
    course's ready-made code: not part of this assignment's year, ``affine_bn_relu_forward`` where students
    name their own); else ``known_functions``. One submission alone cannot tell what was not asked from
    what it left out: all count."""
    only = list((doc.get("settings") or {}).get("only") or [])
    if only:
        return only
    subs = submissions_of(doc)
    found: list[str] = []
    for sub in subs:
        found += [name for name in (sub.get("functions") or {}) if name not in found]
    if len(subs) > 1:
        found = [name for name in found if any(_has(sub, name) for sub in subs)]
    return found or list(known_functions or [])


def _has(sub: dict, function: str) -> bool:
    """Whether ``sub`` has the function, as its own code (not 'not defined', not the course's 'not checked')."""
    checks = [c for c in sub.get("checks") or [] if c.get("function") == function]
    return any(c.get("status") != "missing" or not str(c.get("message") or "").startswith(("not defined", "not checked"))
               for c in checks)


def grade_document(doc: dict, rubric: Rubric | None = None, known_functions=None) -> Gradebook:
    """Every submission's points under ``rubric`` (default: one point per checked function)."""
    rubric = rubric or default_rubric(checked_functions(doc, known_functions))
    subs = submissions_of(doc)
    names = _names(subs)
    book = Gradebook(rubric, version=str(doc.get("twingrad_version", "")))
    for sub, name in zip(subs, names):
        book.submissions.append(_grade_submission(sub, name, rubric))
    return book


def _status(sub: dict) -> str:
    if sub.get("status"):
        return sub["status"]
    if sub.get("internal_error"):
        return "internal_error"
    if sub.get("import_error"):
        return "import_error"
    return "fail" if sub.get("exit_code") else "pass"


def _grade_submission(sub: dict, name: str, rubric: Rubric) -> SubmissionGrade:
    status = _status(sub)
    functions = sub.get("functions") or {}
    checks = sub.get("checks") or []
    timings = dict(sub.get("timings") or {})
    items = []
    for item in rubric.items:
        if item.configuration is None:
            relevant = [c for c in checks if c.get("function") == item.function]
            found = functions.get(item.function)
        else:
            # A check without a configuration is about the whole function (missing, an error) and so
            # about each of its configurations; a configuration never checked is missing.
            relevant = [c for c in checks if c.get("function") == item.function
                        and c.get("configuration") in (None, item.configuration)]
            found = _worst(c.get("status", "error") for c in relevant) if relevant else (
                "missing" if item.function in functions else None)
        if found is None:
            found = status if status in BROKEN else "missing"
        credit = rubric.credit_for(found)
        items.append(ItemGrade(
            key=item.key, function=item.function, status=found, points=_round(item.points * credit),
            max_points=item.points, visibility=item.visibility or rubric.visibility,
            text=_text(item.key, found, relevant, sub, status),
            # a function's time counts once, on its first item
            seconds=float(timings.pop(item.function, 0.0) or 0.0)))
    failure = sub.get("internal_error") if status == "internal_error" else sub.get("import_error")
    return SubmissionGrade(name=name, path=sub.get("path"), status=status,
                           points=_round(sum(i.points for i in items)),
                           max_points=_round(sum(i.max_points for i in items)), items=items, failure=failure,
                           uses_twingrad=bool(sub.get("uses_twingrad")))


def _worst(statuses) -> str:
    return max(statuses, key=lambda s: _SEVERITY.get(s, 4), default="pass")


def _round(value: float) -> float:
    # Sums of fractional credits: 0.1 + 0.2 must print as 0.3 in every file.
    return round(float(value), 6) + 0.0


def points_text(value: float) -> str:
    """Points as every file writes them: 2, 1.5, 0.333333 (no exponent, no trailing zeros)."""
    return format(value, ".6f").rstrip("0").rstrip(".")


def _text(key: str, status: str, checks: list[dict], sub: dict, sub_status: str) -> str:
    if status == "import_error":
        return f"{key}: not checked: the submission could not be imported.\n{sub.get('import_error') or ''}".strip()
    if status == "internal_error":
        return (f"{key}: not checked: twingrad failed while judging this submission (a bug in twingrad, "
                "not in your code); please tell the course staff.")
    if status in PASSING and not [c for c in checks if c.get("status") != "pass"]:
        shown = [c.get("gradient") for c in checks if c.get("gradient")]
        what = f" ({', '.join(shown)})" if shown else ""
        return f"{key}: pass{what}"
    lines = [f"{key}: {status}"]
    for c in checks:
        if c.get("status") == "pass":
            continue
        diagnosis = c.get("diagnosis") or {}
        if diagnosis.get("text"):
            lines.append(diagnosis["text"])
        else:
            label = " ".join(part for part in (c.get("function"), c.get("gradient")) if part)
            lines.append(f"{label}: {c.get('status')}: {c.get('message') or ''}".rstrip(": "))
            if diagnosis.get("reproduce"):
                lines.append(f"  reproduce: {diagnosis['reproduce']}")
    if len(lines) == 1 and status == "missing":
        lines.append("not checked in this run" if sub_status not in BROKEN else "")
    return "\n".join(line for line in lines if line)


def _names(subs: list[dict]) -> list[str]:
    """Each submission's name: its ``name``, else its file's name; paths tell apart files of the same name."""
    names = [s.get("name") or (os.path.basename(s["path"]) if s.get("path") else "twingrad") for s in subs]
    clashes = {n for n in names if names.count(n) > 1}
    paths = [s["path"] for s, n in zip(subs, names) if n in clashes and s.get("path")]
    if paths:
        # submissions/alice/layers.py and submissions/bob/layers.py: alice/layers.py, bob/layers.py
        root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
        names = [os.path.relpath(os.path.abspath(s["path"]), root) if n in clashes and s.get("path") else n
                 for s, n in zip(subs, names)]
    seen: dict[str, int] = {}
    unique = []
    for n in names:  # the same file given twice
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return unique
