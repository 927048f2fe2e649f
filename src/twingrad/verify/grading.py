"""Grading submissions: each in its own worker process, with a time and a memory limit.

The worker (:mod:`._worker`) announces each function before checking it and
streams its records. ``--timeout`` is a budget per function (and for the
import): when a function exceeds it, or the worker dies inside it (a crash,
the kernel's OOM killer), that function alone is recorded as an ``error``,
the worker's process group is killed, and a fresh worker resumes with the
functions not yet done. An endless loop in ``batchnorm_backward`` therefore
costs one timeout, and every other function is still checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .results import Record, function_record

# Workers run single-threaded BLAS: with -j N, N workers share the cores instead
# of each spawning a thread per core, and a worker's address space stays small.
_WORKER_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class Submission:
    """What grading one file produced."""

    path: str
    records: list[Record] = field(default_factory=list)
    import_error: str | None = None


@dataclass
class _Run:
    records: list = field(default_factory=list)
    done: list = field(default_factory=list)
    import_error: str | None = None
    finished: bool = False
    stuck: str | None = None  #: the function a timeout or crash happened in
    problem: str | None = None  #: what happened to it


def find_submissions(paths: list[str]) -> list[str]:
    """Files as given; a folder stands for the ``*.py`` files directly inside it, sorted."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found += sorted(os.path.join(path, name) for name in os.listdir(path)
                            if name.endswith(".py") and name != "__init__.py")
        else:
            found.append(path)
    return found


def grade(paths: list[str], settings, *, timeout: float = 60.0, memory_limit: int = 2048, jobs: int = 1,
          progress=None) -> list[Submission]:
    """Check every submission in its own worker, ``jobs`` at a time; results in the order of ``paths``."""

    def one(path: str) -> Submission:
        submission = grade_one(path, settings, timeout=timeout, memory_limit=memory_limit)
        if progress:
            progress(submission)
        return submission

    if jobs <= 1 or len(paths) <= 1:
        return [one(path) for path in paths]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, paths))


def grade_one(path: str, settings, *, timeout: float = 60.0, memory_limit: int = 2048) -> Submission:
    """Check one submission, restarting the worker past any function that hangs or crashes it."""
    settings = dataclasses.replace(settings, impl=path)  # its reproduce commands name its file
    submission = Submission(path)
    done: list[str] = []
    hung: list[str] = []
    while True:
        run = _run_worker(path, settings, timeout, memory_limit, done, hung)
        submission.records += run.records
        done += run.done
        if run.import_error:
            # The worker was given the absolute path; show the one the grader typed.
            submission.import_error = run.import_error.replace(os.path.abspath(path), path)
            return submission
        if run.finished:
            return submission
        if run.stuck is None:
            # Died between functions, or before saying anything: nothing to resume from.
            submission.import_error = run.problem
            return submission
        submission.records.append(function_record(run.stuck, "error", run.problem, settings))
        done.append(run.stuck)
        hung.append(run.stuck)


def _worker_command(path, settings, memory_limit, done, hung) -> list[str]:
    return [sys.executable, "-m", "twingrad.verify._worker", "--impl", os.path.abspath(path),
            "--settings", settings.to_json(), "--skip", ",".join(done), "--hung", ",".join(hung),
            "--memory-limit", str(memory_limit)]


def _run_worker(path, settings, timeout, memory_limit, done, hung) -> _Run:
    run = _Run()
    # The worker runs in an empty temporary folder: files a submission writes with
    # relative paths land there, never next to the student's code.
    with tempfile.TemporaryDirectory(prefix="twingrad-verify-") as cwd, tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            _worker_command(path, settings, memory_limit, done, hung), stdout=subprocess.PIPE, stderr=errors,
            stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, **_WORKER_ENV}, start_new_session=True)
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
        reader.start()
        current, deadline, phase = None, time.monotonic() + timeout, "importing it"
        try:
            while True:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    _kill(process)
                    if current is None:
                        why = " (an endless loop at import time?)" if phase == "importing it" else ""
                        run.problem = (f"Cannot check {path}: the worker did not finish {phase} within "
                                       f"{timeout:g} s{why}. Nothing was checked.")
                    run.stuck = current
                    run.problem = run.problem or f"did not finish within {timeout:g} s (an endless loop?)"
                    return run
                if line is None:  # the worker closed its stream: finished, or died
                    code = process.wait()
                    if not run.finished and not run.import_error:
                        run.stuck = current
                        why = _death(code, errors)
                        run.problem = (f"the worker process died while checking it ({why})" if current else
                                       f"Cannot check {path}: the worker process died before checking anything "
                                       f"({why}). Nothing was checked.")
                    return run
                event = json.loads(line)
                kind = event["event"]
                deadline = time.monotonic() + timeout
                if kind == "start":
                    current, phase = event["function"], "checking"
                elif kind == "end":
                    run.done.append(event["function"])
                    current = None
                elif kind == "record":
                    run.records.append(Record.from_json(event["record"]))
                elif kind == "import_error":
                    run.import_error = event["message"]
                elif kind == "finished":
                    run.finished = True
                elif kind == "loaded":
                    phase = "checking"
                # "ready" only restarts the clock: twingrad's own start-up is not the student's time
        finally:
            _kill(process)
            process.stdout.close()


def _read_lines(stream, lines: queue.Queue) -> None:
    for raw in stream:
        text = raw.decode("utf-8", "replace").strip()
        if text:
            lines.put(text)
    lines.put(None)


def _kill(process: subprocess.Popen) -> None:
    """Kill the worker and anything it started (its own session), then reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the worker leads its own session (start_new_session)
        except (AttributeError, ProcessLookupError, PermissionError):  # AttributeError: no killpg on Windows
            process.kill()
    process.wait()


def _death(code: int, errors) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"killed by {name}"
        why += {"SIGKILL": ", perhaps out of memory",
                "SIGXFSZ": ", it wrote more output than the worker allows"}.get(name, "")
    else:
        why = f"exit code {code}"
    errors.seek(0)
    tail = [line for line in errors.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return why + (f"; last output: {tail[-1].strip()[:200]}" if tail else "")
