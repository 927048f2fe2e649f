"""Gradescope's ``results.json`` for one submission.

The format is Gradescope's autograder specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): a top-level
``score``, ``output``, ``visibility`` and ``stdout_visibility``, and a ``tests``
list with one entry per rubric item: ``name``, ``score``, ``max_score``,
``status`` (``passed``/``failed``: a kink passes), ``output`` (the diagnosis a
student reads) and ``visibility``.
"""

from __future__ import annotations

from .scoring import Gradebook, SubmissionGrade, points_text


def results(book: Gradebook) -> dict:
    """The ``results.json`` document; ``book`` must hold exactly one submission."""
    if len(book.submissions) != 1:
        raise ValueError(f"--gradescope writes the results of one submission; this run checked "
                         f"{len(book.submissions)} (Gradescope grades each submission on its own)")
    sub = book.submissions[0]
    tests = [{"name": item.key, "score": item.points, "max_score": item.max_points,
              "status": "passed" if item.passed else "failed", "output": item.text,
              "visibility": item.visibility} for item in sub.items]
    extra = {"twingrad_version": book.version, "status": sub.status, "uses_twingrad": sub.uses_twingrad}
    if sub.status == "internal_error" and sub.failure:
        extra["internal_error"] = sub.failure  # for the staff: extra_data is stored, never shown to students
    return {
        "score": sub.points,
        "execution_time": round(sum(item.seconds for item in sub.items)),
        "output": _summary(book, sub),
        "visibility": book.rubric.visibility,
        "stdout_visibility": book.rubric.stdout_visibility,
        "extra_data": extra,
        "tests": tests,
    }


def _summary(book: Gradebook, sub: SubmissionGrade) -> str:
    passed = sum(item.passed for item in sub.items)
    head = (f"twingrad {book.version} verify: {sub.status}; {passed} of {len(sub.items)} graded items pass; "
            f"{points_text(sub.points)} of {points_text(sub.max_points)} points.")
    if sub.status == "import_error" and sub.failure:
        return f"{head}\n\n{sub.failure}"
    if sub.status == "internal_error":
        return (f"{head}\n\ntwingrad failed while judging this submission (a bug in twingrad, not in your "
                "code); please tell the course staff.")
    return head
