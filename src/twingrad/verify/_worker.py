"""The grading worker: checks one submission in a child process and streams what it finds.

Run by :mod:`twingrad.verify.grading` as
``python -m twingrad.verify._worker --impl PATH --settings JSON [...]``.
Each event is one line of JSON on the worker's original stdout:

- ``{"event": "ready"}`` once twingrad is imported (the import budget starts),
- ``{"event": "loaded"}`` once the submission imported,
- ``{"event": "import_error", "message": ...}`` when it could not,
- ``{"event": "start", "function": F}`` before each function,
- ``{"event": "record", "record": {...}}`` for each record of that function,
- ``{"event": "end", "function": F}`` after it,
- ``{"event": "finished"}`` at the end.

Because every function announces itself before it runs, the parent knows
which one an endless loop or a crash is in: it kills the worker, records
that function as an error, and starts a new worker that skips what is done.
The student's own output (print, or C code writing to file descriptor 1)
is moved to stderr so it can never corrupt the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _json_default(value):
    # numpy scalars (np.bool_, np.int64) are not JSON; every other value is already plain.
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# The student's output goes to a temporary file: an endless print loop must not fill the disk.
OUTPUT_LIMIT_MB = 64


def _limit_resources(megabytes: int) -> None:
    """Cap the address space (a huge allocation raises MemoryError) and the size of files written.

    Only where the OS has ``resource`` (not on Windows). Past the file-size cap
    the kernel stops the worker with SIGXFSZ, which the parent reports.
    """
    try:
        import resource
    except ImportError:
        return
    limits = [(resource.RLIMIT_FSIZE, OUTPUT_LIMIT_MB * 2**20)]
    if megabytes > 0:
        limits.append((resource.RLIMIT_AS, megabytes * 2**20))
    for kind, limit in limits:
        _, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(kind, (limit, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twingrad.verify._worker")
    parser.add_argument("--impl", required=True)
    parser.add_argument("--settings", required=True)
    parser.add_argument("--skip", default="")
    parser.add_argument("--hung", default="")
    parser.add_argument("--memory-limit", type=int, default=0)
    args = parser.parse_args(argv)

    sys.dont_write_bytecode = True
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**event) -> None:
        stream.write(json.dumps(event, default=_json_default) + "\n")
        stream.flush()

    from .calling import Caller
    from .checking import check_module
    from .loading import ImportProblem, load
    from .settings import Settings

    settings = Settings.from_json(args.settings)
    _limit_resources(args.memory_limit)  # after twingrad's imports: the limits are for the student's code
    emit(event="ready")  # the student's time starts now
    try:
        module = load(args.impl)
    except ImportProblem as problem:
        emit(event="import_error", message=str(problem))
        return 0
    except MemoryError:
        emit(event="import_error", message=f"Cannot import {args.impl}: it ran out of memory while importing "
                                           f"(the limit is {args.memory_limit} MB: raise it with --memory-limit). "
                                           "Nothing was checked.")
        return 0
    emit(event="loaded")
    caller = Caller(module, args.impl, args.memory_limit or None)
    current = []

    def on_start(function):
        if current:
            emit(event="end", function=current.pop())
        current.append(function)
        emit(event="start", function=function)

    check_module(caller, settings, skip=set(filter(None, args.skip.split(","))),
                 hung=set(filter(None, args.hung.split(","))), on_start=on_start,
                 on_record=lambda record: emit(event="record", record=record.to_json()))
    if current:
        emit(event="end", function=current.pop())
    emit(event="finished")
    return 0


if __name__ == "__main__":
    sys.exit(main())
