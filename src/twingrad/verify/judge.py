"""The trusted side of grading: each submission checked through its own runner process.

The judge owns everything that decides a grade: the cases, the twins'
references, the comparisons, the statuses, the diagnoses and the report. A
runner (:mod:`.runner`, started inside :mod:`.sandbox`) only imports its
submission's snapshot and calls what it is asked to call.

Budgets never wait on a pipe closing: each function has ``timeout`` seconds
of wall clock (the import too), each submission ``budget`` seconds in all.
When a function's time runs out, or its runner dies or breaks the protocol,
that function alone is an ``error``, the runner's whole tree is killed, and a
fresh runner carries on with the next function. A twingrad bug while judging
one submission is that submission's ``internal_error``; the others are
still graded.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

from . import network, sandbox
from .calling import import_paragraph
from .functions import FUNCTIONS, check_one, role_of, selected_functions
from .remote import Channel, RemoteCaller, RunnerLost
from .results import function_record
from .stateful import DROPOUT_FORWARD, detect_dropout_convention
from .submissions import Submission, printable, untouched

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")
# Runners use one BLAS thread: with -j N, N runners share the cores instead of each
# spawning a thread per core, and a runner's address space stays small.
_RUNNER_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long and how large a submission may run."""

    timeout: float = 60.0  #: seconds per function, and for the import
    budget: float = 600.0  #: seconds per submission, in all
    memory_mb: int = 2048  #: address space of a runner, 0 for none


def grade(submissions: list[Submission], settings, limits: Limits, box: sandbox.Sandbox, *, jobs: int = 1,
          progress=None) -> list[Submission]:
    """Grade every submission, ``jobs`` at a time; the list is filled in place and returned."""

    def one(submission: Submission) -> Submission:
        try:
            grade_one(submission, settings, limits, box)
        except Exception:  # noqa: BLE001  (a twingrad bug: this submission's, never the batch's)
            submission.internal_error = traceback.format_exc()
        finally:
            sandbox.reap_orphans()
        if progress:
            progress(submission)
        return submission

    if jobs <= 1 or len(submissions) <= 1:
        return [one(s) for s in submissions]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, submissions))


class _Session:
    """One submission's runner, started again after a function that loses it."""

    def __init__(self, submission: Submission, limits: Limits, box: sandbox.Sandbox):
        self.submission, self.limits, self.box = submission, limits, box
        self.runner = None
        self.errors = None
        self.caller: RemoteCaller | None = None
        self.role_errors: dict = {}

    def start(self, deadline: float) -> RemoteCaller | None:
        """A runner with the submission imported, or None (``submission.import_error`` says why)."""
        s = self.submission
        self.errors = tempfile.TemporaryFile()
        argv = [sys.executable, "-I", RUNNER, "{submission}", "--memory-limit", str(self.limits.memory_mb)]
        self.runner = sandbox.launch(self.box, argv, submission=s.root, env=dict(_RUNNER_ENV), stderr=self.errors)
        caller = RemoteCaller(Channel(self.runner), role_of, self.limits.memory_mb or None)
        caller.deadline = min(time.monotonic() + self.limits.timeout, deadline)
        try:
            answers = caller.load(s.modules, s.paths)
        except RunnerLost as lost:
            why = (f"did not finish importing it within {self.limits.timeout:g} s (an endless loop at import time?)"
                   if lost.message == "timeout" else self.explain(lost))
            s.import_error = f"Cannot check {s.name}: the submission's process {why}. Nothing was checked."
            self.stop()
            return None
        s.uses_twingrad = s.uses_twingrad or caller.uses_twingrad
        self.role_errors = {role: self.paragraph(role, answer["error"]) for role, answer in answers.items()
                            if not answer.get("ok")}
        if "layers" in self.role_errors:
            s.import_error = self.role_errors["layers"]
            self.stop()
            return None
        self.caller = caller
        return caller

    def paragraph(self, role: str, error: dict) -> str:
        s = self.submission
        relative = s.files.get(role, "")
        if error.get("type") == "SyntaxError" and error.get("file"):
            relative = error["file"]
        shown = s.name if relative == os.path.basename(relative) and s.path.endswith(".py") else (
            f"{s.name} ({relative})")
        try:
            with open(os.path.join(s.root, relative), encoding="utf-8", errors="replace") as handle:
                source = handle.read()
        except OSError:
            source = ""
        return import_paragraph(shown, error, source)

    def explain(self, lost: RunnerLost) -> str:
        """What happened to a lost runner, in the words of a message."""
        if lost.message != "died":
            return lost.message
        code = self.runner.poll() if self.runner else None
        if code is None:
            try:
                code = self.runner.process.wait(timeout=1.0)
            except Exception:  # noqa: BLE001
                code = None
        if code is not None and code > 128 and self.box.name == "bwrap":
            code = 128 - code  # bwrap reports its child's death by signal N as exit code 128 + N
        if code is None:
            why = "closed its channel"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"was killed by {name}" + {"SIGKILL": ", perhaps out of memory",
                                             "SIGXFSZ": ", having written more output than a runner may"}.get(name, "")
        else:
            why = f"exited with code {code}"
        return f"died while being checked ({why}{self.last_output()})"

    def last_output(self) -> str:
        try:
            self.errors.seek(0, os.SEEK_END)
            size = self.errors.tell()
            self.errors.seek(max(0, size - 4096))
            tail = [line for line in self.errors.read().decode("utf-8", "replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return f"; its last output: {printable(tail[-1].strip()[:200])}" if tail else ""

    def stop(self) -> None:
        if self.runner is not None:
            sandbox.kill_tree(self.runner)
            self.runner = None
        if self.errors is not None:
            self.errors.close()
            self.errors = None
        self.caller = None


def grade_one(submission: Submission, settings, limits: Limits, box: sandbox.Sandbox) -> Submission:
    """Check every selected function of one submission (already snapshot), in its own runners."""
    if submission.import_error:
        return submission
    settings = dataclasses.replace(settings, impl=printable(submission.path))  # its reproduce commands name it
    deadline = time.monotonic() + limits.budget
    session = _Session(submission, limits, box)
    hung: set = set()
    try:
        if session.start(deadline) is None:
            return submission
        settings = _dropout_convention(submission, session, settings, limits, deadline)
        for name in selected_functions(settings):
            started = time.monotonic()
            submission.records += _check(name, session, settings, limits, deadline, hung)
            submission.timings[name] = round(time.monotonic() - started, 4)
            if session.caller is not None:
                submission.uses_twingrad = submission.uses_twingrad or session.caller.uses_twingrad
    finally:
        session.stop()
    return submission


# Files the course hands out ready-made (fast_layers.py needs its compiled extension, and the starter's
# max_pool_forward_im2col calls an im2col it never imports): an error raised in them is not the student's.
STARTER_ROLES = {"fast_layers"}
STARTER_FILES = ("fast_layers.py", "im2col.py")
_RAISED_IN_STARTER = re.compile(rf" at ({'|'.join(re.escape(f) for f in STARTER_FILES)}) line \d+")


def _starter_code(name: str, records: list, settings) -> list:
    """Errors of the course's own code reported as not checked: every error of a function it defines, and
    any other function's error raised inside one of its files (a conv_relu_forward calling the fast layers)."""
    errors = [r for r in records if r.status == "error"]
    if not errors:
        return records
    if role_of(name) in STARTER_ROLES:
        return [function_record(name, "missing", _not_checked(errors[0].message, "fast_layers.py"), settings)]
    for record in errors:
        raised_in = _RAISED_IN_STARTER.search(record.message or "")
        if raised_in:
            record.status, record.message = "missing", _not_checked(record.message, raised_in.group(1))
    return records


def _not_checked(message: str, file: str) -> str:
    return (f"not checked: {message} ({file} is the course's ready-made code, not the student's; its compiled "
            "extension is probably not built here)")


def _untouched_is_missing(name: str, records: list, submission: Submission, settings) -> list:
    """A function that fails or raises while its TODO blocks (or its forward's) are empty is missing."""
    if not any(r.status in ("fail", "error") for r in records):
        return records
    fn = FUNCTIONS.get(name)
    files = list(submission.files.values())
    for candidate in (name, fn.forward if fn is not None else None):
        if candidate and untouched(submission.root, files, candidate):
            why = "its TODO blocks are empty" if candidate == name else f"the TODO blocks of {candidate} are empty"
            return [function_record(name, "missing", f"not implemented yet: {why}", settings)]
    return records


def _untouched_dropout(records: list, submission: Submission) -> list:
    """A net's dropout configuration that errs while the module's dropout_forward is still the template:
    missing, as that function is."""
    files = list(submission.files.values())
    for record in records:
        if (record.configuration == "dropout" and record.status == "error"
                and untouched(submission.root, files, DROPOUT_FORWARD)):
            record.status = "missing"
            record.message = (f"not checked with dropout: {DROPOUT_FORWARD} is not implemented yet (its TODO "
                              "blocks are empty)")
    return records


def _dropout_convention(submission: Submission, session: _Session, settings, limits: Limits, deadline: float):
    """The settings with the submission's dropout convention: as asked, or (auto) as its dropout_forward behaves."""
    if settings.dropout_convention != "auto":
        submission.dropout_convention = settings.dropout_convention
        return settings
    # the functions of the layers whose registry entry draws a random mask, and the net that uses them
    dropout = {name for name, fn in FUNCTIONS.items() if "dropout_mask" in fn.spec.diagnoses}
    if not (dropout | {network.FUNCTION}) & set(selected_functions(settings)):
        return settings  # nothing checked depends on it
    caller = session.caller
    found, seen = None, "no dropout_forward"
    if caller.has(DROPOUT_FORWARD):
        caller.deadline = min(time.monotonic() + limits.timeout, deadline)
        found, seen = detect_dropout_convention(caller)
        if caller.lost is not None:  # it hangs or crashes: its own check will say so
            session.stop()
            session.start(deadline)
    if found is None and session.caller and session.caller.has("FullyConnectedNet"):
        # the net's signature tells the year: dropout_keep_ratio=1 (2020 on), dropout=1 (2018-19: keep
        # ratio 1, no dropout), dropout=0 (2016-17: drop probability 0)
        parameters = session.caller.signature("FullyConnectedNet")
        default = session.caller.defaults("FullyConnectedNet").get("dropout")
        if "dropout_keep_ratio" in parameters:
            found, seen = "keep", f"{seen}; its FullyConnectedNet takes dropout_keep_ratio"
        elif default in (0, 1) and type(default) is not bool:
            found = "keep" if default == 1 else "drop"
            seen = f"{seen}; its FullyConnectedNet's dropout defaults to {default:g}"
    submission.dropout_convention = found or "drop"
    submission.dropout_note = seen if found else f"{seen}: checked as the drop probability"
    return dataclasses.replace(settings, keep_prob=submission.dropout_convention == "keep")


def _check(name, session: _Session, settings, limits: Limits, deadline: float, hung: set) -> list:
    if time.monotonic() >= deadline:
        return [function_record(name, "error", f"not checked: the submission's time budget of {limits.budget:g} s "
                                "ran out", settings)]
    fn = FUNCTIONS.get(name)
    if fn is not None and fn.role == "backward" and fn.forward in hung:
        return [function_record(name, "error", f"not checked: {fn.forward}, which produces its cache, did not "
                                "finish", settings)]
    if session.caller is None and session.start(deadline) is None:
        # It imported before; now it does not (it rewrote its own snapshot?): nothing more is checked.
        message, session.submission.import_error = session.submission.import_error, None
        return [function_record(name, "error", message, settings)]
    caller = session.caller
    role = role_of(name)
    if not caller.has(name) and role in session.role_errors:
        return [function_record(name, "error", session.role_errors[role], settings)]
    caller.deadline = min(time.monotonic() + limits.timeout, deadline)
    try:
        caller.reset()
        records = check_one(name, caller, settings)
    except RunnerLost:
        records = []
    if caller.lost is None:
        records = _untouched_is_missing(name, records, session.submission, settings)
        return _starter_code(name, _untouched_dropout(records, session.submission), settings)
    if caller.lost.message == "timeout":
        hung.add(name)
        ran_out = caller.deadline >= deadline
        message = (f"not finished when the submission's time budget of {limits.budget:g} s ran out" if ran_out
                   else f"did not finish within {limits.timeout:g} s (an endless loop?)")
    else:
        message = f"the submission's process {session.explain(caller.lost)}"
        if "died" in message:
            hung.add(name)
    session.submission.uses_twingrad |= caller.uses_twingrad
    session.stop()
    return [function_record(name, "error", message, settings)]
