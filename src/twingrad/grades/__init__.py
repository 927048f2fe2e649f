"""Grade books from ``twingrad verify``'s JSON report: a rubric, Gradescope, JUnit XML, a class CSV.

Everything here works from the JSON document (a dict), computes the points
once (:mod:`.scoring`) and renders them in each format, so every file agrees
with the others and with ``--json``. The modules:

=========== ==========================================================
rubric      the TOML rubric: points per item, credit per status, visibilities
scoring     each submission's status and points per rubric item
gradescope  Gradescope's ``results.json`` (one submission)
junit       JUnit XML (a ``<testsuite>`` per submission)
csv_report  the class CSV (a row per submission)
=========== ==========================================================

The command line's side: :func:`add_arguments` adds the options,
:func:`validate_arguments` reads the rubric and checks the paths before
anything is graded, :meth:`GradeOutputs.write` writes the files after.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import dataclass

from . import csv_report, gradescope, junit
from .rubric import Rubric, RubricError, load_rubric
from .scoring import Gradebook, grade_document, points_text, submissions_of

__all__ = ["GradeOutputs", "Gradebook", "Rubric", "RubricError", "add_arguments", "grade_document",
           "load_rubric", "points_summary", "validate_arguments", "write_outputs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--rubric``, ``--gradescope``, ``--junit-xml``, ``--csv``."""
    group = parser.add_argument_group("grade books (see docs/grading.md)")
    group.add_argument("--rubric", metavar="FILE",
                       help="points per function, credit per status, visibilities (TOML); default: one point per "
                            "checked function")
    group.add_argument("--gradescope", metavar="PATH",
                       help="write Gradescope's results.json here (exactly one submission)")
    group.add_argument("--junit-xml", metavar="PATH", help="write JUnit XML here: a test suite per submission")
    group.add_argument("--csv", metavar="PATH", help="write the class CSV here: a row per submission")


@dataclass(frozen=True)
class GradeOutputs:
    """What to write, decided before grading; :meth:`write` writes it after."""

    rubric: Rubric | None = None
    gradescope: str | None = None
    junit_xml: str | None = None
    csv: str | None = None
    known_functions: tuple = ()

    @property
    def active(self) -> bool:
        """True when a rubric or any grade file was asked for (the JSON report then carries ``grade``)."""
        return any((self.rubric, self.gradescope, self.junit_xml, self.csv))

    def check_count(self, submissions: int) -> None:
        """Gradescope grades one submission at a time: refuse several before grading them."""
        if self.gradescope and submissions != 1:
            raise ValueError(f"--gradescope writes the results of one submission; --impl names {submissions} "
                             "(use --junit-xml or --csv for a class)")

    def grade(self, doc: dict) -> Gradebook:
        return grade_document(doc, self.rubric, self.known_functions)

    def write(self, doc: dict) -> Gradebook | None:
        """Compute the points, add them to ``doc`` (a ``grade`` object per submission), write every file.

        Every file is rendered before the first is written, and each is written
        atomically, so a failure leaves no half-written file behind.
        """
        if not self.active:
            return None
        book = self.grade(doc)
        files = {}
        if self.gradescope:
            files[self.gradescope] = (json.dumps(gradescope.results(book), indent=2) + "\n").encode()
        if self.junit_xml:
            files[self.junit_xml] = junit.render(book)
        if self.csv:
            files[self.csv] = csv_report.render(book).encode()
        for path, data in files.items():
            try:
                write_atomic(path, data)
            except OSError as exc:
                raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None
        annotate(doc, book)
        return book


def points_summary(book: Gradebook) -> str:
    """A few lines for the terminal: each submission's points, and where the rubric came from."""
    source = book.rubric.source or "one point per checked function"
    width = max(len(sub.name) for sub in book.submissions) if book.submissions else 0
    lines = [f"Points ({source})"]
    lines += [f"  {sub.name.ljust(width)}  {points_text(sub.points)} / {points_text(sub.max_points)}"
              for sub in book.submissions]
    return "\n".join(lines)


def validate_arguments(args: argparse.Namespace, known_functions) -> GradeOutputs:
    """Read the rubric and check the output paths before any grading.

    Raises
    ------
    ValueError
        (a :class:`RubricError` for the rubric) with a one-line message naming the
        file and line or the option: the caller prints it and exits with 2.
    """
    known = tuple(known_functions)
    rubric = load_rubric(args.rubric, known) if getattr(args, "rubric", None) else None
    only = [name.strip() for value in (getattr(args, "only", None) or []) for name in value.split(",") if name.strip()]
    if rubric and only:
        unchecked = [item.key for item in rubric.items if item.function not in only]
        if unchecked:
            raise ValueError(f"rubric {args.rubric}: {unchecked[0]!r} is graded but --only leaves "
                             f"{unchecked[0].split('[')[0]} unchecked (it would score 0)")
    outputs = {option: getattr(args, attr, None) for option, attr in
               (("--gradescope", "gradescope"), ("--junit-xml", "junit_xml"), ("--csv", "csv"))}
    inputs = {os.path.realpath(p) for p in (getattr(args, "impl", None) or []) + ([args.rubric] if rubric else [])}
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if not path:
            continue
        real = os.path.realpath(path)
        folder = os.path.dirname(real)
        if os.path.isdir(real):
            raise ValueError(f"{option} {path}: is a folder; give the file to write")
        if not os.path.isdir(folder):
            raise ValueError(f"{option} {path}: the folder {os.path.dirname(path) or '.'} does not exist")
        if real in inputs:
            raise ValueError(f"{option} {path}: is one of the input files; it would be overwritten")
        if real in seen:
            raise ValueError(f"{option} {path}: the same file as {seen[real]}")
        seen[real] = option
    return GradeOutputs(rubric=rubric, gradescope=outputs["--gradescope"], junit_xml=outputs["--junit-xml"],
                        csv=outputs["--csv"], known_functions=known)


def write_outputs(doc: dict, *, rubric_path: str | None = None, gradescope: str | None = None,
                  junit_xml: str | None = None, csv: str | None = None, known_functions=None) -> Gradebook:
    """Grade a JSON report and write the requested files (for scripts; the CLI uses :class:`GradeOutputs`).

    ``known_functions`` checks the rubric's function names; without it any name is taken.
    """
    rubric = load_rubric(rubric_path, known_functions) if rubric_path else None
    outputs = GradeOutputs(rubric, gradescope, junit_xml, csv, tuple(known_functions or ()))
    return outputs.write(doc) if outputs.active else outputs.grade(doc)


def annotate(doc: dict, book: Gradebook) -> None:
    """Add each submission's ``grade`` (points, max_points, rubric, items) to the report, as the files have it."""
    for sub, grade in zip(submissions_of(doc), book.submissions):
        sub["grade"] = {
            "name": grade.name, "points": grade.points, "max_points": grade.max_points,
            "rubric": book.rubric.source,
            "items": [{"key": i.key, "status": i.status, "points": i.points, "max_points": i.max_points}
                      for i in grade.items],
        }


def write_atomic(path: str, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file in the same folder, then ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it: mkstemp's 0600 hides it from the staff
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
