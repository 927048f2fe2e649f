"""``twingrad verify``: hand-derived gradients checked against autograd twins and central differences.

Without ``--impl``, checks twingrad itself: every function of the registry
and FullyConnectedNet over a sweep of architectures. With ``--impl``, checks
students' CS231n-style files, each in its own worker process (see
:mod:`.grading`). The modules of this package:

========== ===========================================================
settings   the options that decide what is checked, and the seeding
engine     the three-way check of one problem, full or fast (projections)
functions  per CS231n function: samples, forward and backward checks
stateful   batch norm's running averages and test mode; dropout's statistics
network    FullyConnectedNet: the default sweep and ``--net``
hints      pattern hints for a wrong gradient
diagnosis  the text a student reads on a failure
calling    calling checked code: exceptions and odd return values
loading    importing a student's file (Python 2 detection, no bytecode)
checking   a whole module, function by function
grading    worker processes, time and memory limits, ``-j``
report     tables and the JSON document
========== ===========================================================
"""

from __future__ import annotations

import argparse
import sys
import time

from . import report
from .calling import Caller
from .checking import add_dependency_notes, check_module, function_names
from .functions import reference_module
from .settings import MODES, Settings

DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 2048


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", nargs="+", metavar="PATH",
                        help="check these CS231n-style files (a folder: every *.py in it) instead of twingrad itself")
    parser.add_argument("-k", "--cases", type=int, default=5,
                        help="random cases (shapes, inputs) per function (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument("--case", type=int, help="check only this case index (to replay a diagnosis)")
    parser.add_argument("--only", action="append", metavar="FUNCTION",
                        help="check only this CS231n function (repeat, or separate with commas)")
    parser.add_argument("--mode", choices=MODES, default="auto",
                        help="finite differences per element (full), along random projections (fast), or fast "
                             "only for inputs over 2000 elements (auto, the default)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype given to the checked code (default float64; float32 checks are coarse)")
    parser.add_argument("--keep-prob", action="store_true",
                        help="dropout's p is the probability of keeping a unit (later course years), not of dropping")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds each function (and the import) may take per submission "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--memory-limit", type=int, default=DEFAULT_MEMORY_MB, metavar="MB",
                        help=f"address-space limit of each worker process, 0 for none (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="submissions checked in parallel (default 1)")
    parser.add_argument("--net", metavar="ARCH",
                        help="check one FullyConnectedNet, e.g. 3072-100x5-10 or "
                             "3072-100x5-10,batchnorm,dropout=0.25,batch=50")


def _only(args) -> list[str]:
    return [name.strip() for value in (args.only or []) for name in value.split(",") if name.strip()]


def run(args: argparse.Namespace) -> int:
    """Run ``twingrad verify``; returns the exit code (0 pass, 1 fail or error, 2 unusable input)."""
    known = function_names()
    unknown = [name for name in _only(args) if name not in known]
    if unknown:
        print(f"twingrad verify: unknown function {unknown[0]!r} for --only; choose from: {', '.join(known)}",
              file=sys.stderr)
        return 2
    if args.impl and args.net:
        print("twingrad verify: --net checks twingrad's own FullyConnectedNet and cannot be combined with --impl",
              file=sys.stderr)
        return 2
    if args.keep_prob and not args.impl:
        print("twingrad verify: --keep-prob is for students' code (--impl); twingrad's own dropout takes the drop "
              "probability", file=sys.stderr)
        return 2
    try:
        settings = Settings(seed=args.seed, cases=args.cases, case=args.case, mode=args.mode, dtype=args.dtype,
                            keep_prob=args.keep_prob, only=tuple(_only(args)))
    except ValueError as exc:
        print(f"twingrad verify: {exc}", file=sys.stderr)
        return 2
    if args.dtype == "float32":
        print("twingrad verify: float32 checks are coarse: the checked code rounds to ~1e-7, so gradients are "
              "compared with float32 tolerances (vs autograd: atol 1e-5 + rtol 1e-4; vs central differences, "
              "taken in float64: atol 1e-2 + rtol 1e-2). Only gross errors are caught; check in float64 first.",
              file=sys.stderr)
    start = time.perf_counter()
    if args.impl:
        return _run_impl(args, settings, start)
    if args.net:
        from . import network

        try:
            arch = network.parse_architecture(args.net)
        except ValueError as exc:
            print(f"twingrad verify: {exc}", file=sys.stderr)
            return 2
        records = network.check_network(arch, settings)
        label = f"FullyConnectedNet {arch}"
    else:
        records = check_module(Caller(reference_module()), settings, network_sweep=True)
        label = "twingrad"
    return _finish(args, settings, records, None, label, time.perf_counter() - start)


def _run_impl(args, settings, start) -> int:
    from .grading import find_submissions, grade

    paths = find_submissions(args.impl)
    if not paths:
        print(f"twingrad verify: no .py files in {' '.join(args.impl)}", file=sys.stderr)
        return 2
    progress = None
    if len(paths) > 1 and not args.json and sys.stderr.isatty():
        def progress(submission):
            print(f"checked {submission.path}", file=sys.stderr)
    submissions = grade(paths, settings, timeout=args.timeout, memory_limit=args.memory_limit, jobs=args.jobs,
                        progress=progress)
    for s in submissions:
        add_dependency_notes(s.records)
    if len(submissions) == 1:
        s = submissions[0]
        return _finish(args, settings, s.records, s.import_error, s.path, time.perf_counter() - start, path=s.path)
    if args.json:
        doc = report.document(settings, submissions=submissions)
        print(report.dumps(doc))
        return doc["exit_code"]
    print(report.submissions_table(submissions))
    codes = [report.submission_code(s.records, s.import_error) for s in submissions]
    print(f"\n{len(submissions)} submissions in {time.perf_counter() - start:.1f} s: "
          f"{codes.count(0)} pass, {codes.count(1)} fail, {codes.count(2)} could not be imported")
    return max(codes)


def _finish(args, settings, records, import_error, label, seconds, path=None) -> int:
    if args.json:
        doc = report.document(settings, path=path, records=records, import_error=import_error)
        print(report.dumps(doc))
        return doc["exit_code"]
    if import_error:
        print(import_error, file=sys.stderr)
        return 2
    print(report.checks_table(records))
    details = report.details_text(records)
    if details:
        print("\n" + details)
    print("\n" + report.summary_line(label, records, seconds))
    return report.submission_code(records, None)
