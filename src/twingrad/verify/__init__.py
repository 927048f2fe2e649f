"""``twingrad verify``: hand-derived gradients checked against autograd twins and central differences.

Without ``--impl``, checks twingrad itself in this process: every function of
the registry and FullyConnectedNet over a sweep of architectures. With
``--impl``, grades students' submissions: each runs in its own untrusted
runner process (in a sandbox where the system has one) and twingrad, the
judge, decides every verdict. The modules of this package, by side:

=============== ===========================================================
**judge**: a submission's path, in the order it is taken
settings        the options that decide what is checked, and the seeding
submissions     finding submissions, a private snapshot of each, untouched templates
judge           one runner per submission, deadlines, restarts, ``-j``
sandbox         bubblewrap, or a process group with orphan reaping
remote          the judge's end of the channel: calling a submission
functions       the functions in order; per layer: samples, forward and backward checks
engine          the three-way check of one case, full or fast (projections)
calling         what the checked code returned or raised, in words; in-process calls and imports
results         statuses, records from a function's cases, the diagnosis of a failing one
hints           the patterns that explain a wrong value, general and per layer
report          tables and the JSON document (``schema``: its JSON Schema)
**judge**: other kinds of function
stateful        batch norm's running averages and test mode; dropout's statistics
network         FullyConnectedNet: the default sweep, ``--net``, a student's class
architecture    a network to check, as ``--net`` writes it
dropout_net     a student's FullyConnectedNet with dropout on (no twin: its own loss)
cnn_check       ThreeLayerConvNet.loss
update_rules    sgd, sgd_momentum, rmsprop, adam
**both sides**
wire            the framed message format (stdlib and numpy only)
**runner**
runner          imports one submission, calls it, sends back raw values
=============== ===========================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from .. import grades
from . import report
from .calling import Caller
from .functions import add_dependency_notes, check_all, function_names, reference_module
from .settings import MODES, Settings
from .submissions import Submission

DEFAULT_TIMEOUT = 60.0
DEFAULT_BUDGET = 600.0
DEFAULT_MEMORY_MB = 2048
MIN_MEMORY_MB = 256


def _positive(kind, name: str, low: float, high: float | None = None, inclusive_low: bool = False):
    """An argparse type: a ``kind`` number in range, else one line naming the option, the value and the range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        below = value < low if inclusive_low else value <= low
        if below or (high is not None and value > high) or value != value:
            show = str if kind is int else "{:g}".format  # 4294967295, not 4.29497e+09
            bound = f">= {show(low)}" if inclusive_low else f"> {show(low)}"
            allowed = bound + (f" and <= {show(high)}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{name} must be {allowed}, got {text}")
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", nargs="+", metavar="PATH",
                        help="grade these submissions instead of checking twingrad itself: a .py file, a folder "
                             "or .zip holding a layers.py (the course package), or a class folder of those")
    parser.add_argument("-k", "--cases", type=_positive(int, "--cases", 1, 1000, True), default=5,
                        help="random cases (shapes, inputs) per function (default 5)")
    parser.add_argument("--seed", type=_positive(int, "--seed", 0, 2**32 - 1, True), default=0,
                        help="seed of every random draw (default 0)")
    parser.add_argument("--case", type=_positive(int, "--case", 0, None, True),
                        help="check only this case index (to replay a diagnosis)")
    parser.add_argument("--only", action="append", metavar="FUNCTION",
                        help="check only this CS231n function (repeat, or separate with commas)")
    parser.add_argument("--mode", choices=MODES, default="auto",
                        help="finite differences per element (full), along random projections (fast), or fast "
                             "only for inputs over 2000 elements (auto, the default)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype given to the checked code (default float64; float32 checks are coarse)")
    parser.add_argument("--dropout-convention", choices=("auto", "drop", "keep"), default=None,
                        help="what dropout's p means in the submissions: the probability of dropping a unit "
                             "(2016-17 starters, twingrad, PyTorch), of keeping it (2018 on), or decided per "
                             "submission from its own dropout_forward (auto, the default with --impl)")
    parser.add_argument("--keep-prob", action="store_true", help="the same as --dropout-convention keep")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--timeout", type=_positive(float, "--timeout", 0, 3600), default=DEFAULT_TIMEOUT,
                        help="seconds each function (and the import) of a submission may take "
                             f"(default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--budget", type=_positive(float, "--budget", 0, 86400), default=DEFAULT_BUDGET,
                        help=f"seconds one submission may take in all (default {DEFAULT_BUDGET:g})")
    parser.add_argument("--memory-limit", type=_memory_limit, default=DEFAULT_MEMORY_MB, metavar="MB",
                        help=f"address-space limit of each runner process in MB, 0 for none (default "
                             f"{DEFAULT_MEMORY_MB}; at least {MIN_MEMORY_MB})")
    parser.add_argument("-j", "--jobs", type=_positive(int, "--jobs", 1, 64, True), default=1,
                        help="submissions checked in parallel (default 1)")
    parser.add_argument("--sandbox", choices=sandbox_modes(), default="auto",
                        help="run each submission under bubblewrap (bwrap), without (none), or bwrap where it "
                             "works (auto, the default)")
    parser.add_argument("--net", metavar="ARCH",
                        help="check one FullyConnectedNet, e.g. 3072-100x5-10 or "
                             "3072-100x5-10,batchnorm,dropout=0.25,batch=50")
    grades.add_arguments(parser)


def _memory_limit(text: str) -> int:
    value = _positive(int, "--memory-limit", 0, 2**20, True)(text)
    if 0 < value < MIN_MEMORY_MB:
        raise argparse.ArgumentTypeError(f"--memory-limit must be 0 (no limit) or at least {MIN_MEMORY_MB} MB "
                                         f"(numpy alone needs about that much address space), got {value}")
    return value


def sandbox_modes() -> tuple:
    from .sandbox import MODES as modes

    return modes


def _only(args) -> list[str]:
    return [name.strip() for value in (args.only or []) for name in value.split(",") if name.strip()]


def run(args: argparse.Namespace) -> int:
    """Run ``twingrad verify``; returns the exit code (0 pass, 1 fail or error, 2 unusable input)."""
    known = function_names()
    if args.only is not None and not _only(args):
        print(f"twingrad verify: --only was given no function name (got {' '.join(args.only)!r}); choose from: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    unknown = [name for name in _only(args) if name not in known]
    if unknown:
        print(f"twingrad verify: unknown function {unknown[0]!r} for --only; choose from: {', '.join(known)}",
              file=sys.stderr)
        return 2
    if args.impl and args.net:
        print("twingrad verify: --net checks twingrad's own FullyConnectedNet and cannot be combined with --impl",
              file=sys.stderr)
        return 2
    if args.keep_prob and args.dropout_convention not in (None, "keep"):
        print(f"twingrad verify: --keep-prob means --dropout-convention keep, not {args.dropout_convention}",
              file=sys.stderr)
        return 2
    convention = "keep" if args.keep_prob else args.dropout_convention
    if convention and not args.impl:
        print("twingrad verify: --dropout-convention and --keep-prob are for students' code (--impl); twingrad's "
              "own dropout takes the drop probability", file=sys.stderr)
        return 2
    convention = convention or ("auto" if args.impl else "drop")
    try:
        args.grade_outputs = grades.validate_arguments(args, known)
        settings = Settings(seed=args.seed, cases=args.cases, case=args.case, mode=args.mode, dtype=args.dtype,
                            keep_prob=convention == "keep", dropout_convention=convention,
                            only=tuple(_only(args)))
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
        from .architecture import parse_architecture

        try:
            arch = parse_architecture(args.net)
        except ValueError as exc:
            print(f"twingrad verify: {exc}", file=sys.stderr)
            return 2
        itself = Submission(f"FullyConnectedNet {arch}", None, records=network.check_network(arch, settings))
    else:
        itself = Submission("twingrad", None,
                            records=check_all(Caller(reference_module()), settings, network_sweep=True))
    return _finish(args, settings, itself, time.perf_counter() - start)


def _run_impl(args, settings, start) -> int:
    import tempfile

    from . import sandbox
    from .judge import Limits, grade
    from .submissions import SubmissionError, discover

    try:
        box = sandbox.choose(args.sandbox)
    except sandbox.SandboxError as exc:
        print(f"twingrad verify: --sandbox bwrap: {exc}", file=sys.stderr)
        return 2
    if box.note:
        print(f"twingrad verify: {box.note}", file=sys.stderr)
    settings = dataclasses.replace(settings, sandbox=box.name)
    with tempfile.TemporaryDirectory(prefix="twingrad-snapshots-") as workdir:
        try:
            submissions = discover(args.impl, workdir)
            args.grade_outputs.check_count(len(submissions))
        except (SubmissionError, ValueError) as exc:
            print(f"twingrad verify: {exc}", file=sys.stderr)
            return 2
        progress = None
        if len(submissions) > 1 and not args.json and sys.stderr.isatty():
            def progress(submission):
                print(f"checked {submission.name}", file=sys.stderr)
        limits = Limits(timeout=args.timeout, budget=args.budget, memory_mb=args.memory_limit)
        grade(submissions, settings, limits, box, jobs=args.jobs, progress=progress)
    for s in submissions:
        add_dependency_notes(s.records)
    if len(submissions) == 1:
        return _finish(args, settings, submissions[0], time.perf_counter() - start)
    doc = report.document(settings, submissions=submissions)
    book = _write_grades(args, doc)
    if book is False:
        return 2
    if args.json:
        print(report.dumps(doc))
        return doc["exit_code"]
    print(report.submissions_table(submissions))
    statuses = [report.submission_status(s) for s in submissions]
    counted = ", ".join(f"{statuses.count(k)} {k.replace('_', ' ')}" for k in report.SUBMISSION_STATUSES
                        if statuses.count(k))
    print(f"\n{len(submissions)} submissions in {time.perf_counter() - start:.1f} s: {counted}")
    if book:
        print("\n" + grades.points_summary(book))
    return max(report.submission_code(s) for s in submissions)


def _write_grades(args, doc):
    """Write the grade files asked for, adding the points to ``doc``: the grade book, None, or False on failure."""
    try:
        return args.grade_outputs.write(doc)
    except ValueError as exc:
        print(f"twingrad verify: {exc}", file=sys.stderr)
        return False


def _finish(args, settings, submission, seconds) -> int:
    doc = report.document(settings, submission=submission)
    book = _write_grades(args, doc)
    if book is False:
        return 2
    if args.json:
        print(report.dumps(doc))
        return doc["exit_code"]
    if submission.import_error:
        print(submission.import_error, file=sys.stderr)
        return 2
    print(report.checks_table(submission.records))
    details = report.details_text(submission.records)
    if details:
        print("\n" + details)
    for line in report.notes(submission):
        print("\n" + line)
    print("\n" + report.summary_line(submission, seconds))
    if book:
        print("\n" + grades.points_summary(book))
    return report.submission_code(submission)
