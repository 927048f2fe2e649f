#!/usr/bin/env python3
"""Mutation testing for twingrad's core: plant one small bug at a time and see whether the fast tests notice.

Each mutant changes one token or one operand of one of the core modules
(an operator swapped, a constant changed, an axis moved, a term or factor
dropped, two returned gradients swapped). The script copies the repository to
a temporary directory, writes one mutant at a time into the copy, runs the
fast tests against it (``pytest -x``), and restores the file. The working tree
is never written to.

A mutant is *killed* when the tests fail (or time out), *survived* when they
pass. A survivor is either a blind spot of the tests or an *equivalent* mutant
that computes the same thing; only a reader can tell which, so every survivor
is printed with its diff. Score = killed / (all - equivalent).

Usage::

    python scripts/mutate.py                        # every mutant of the six core modules (slow)
    python scripts/mutate.py --limit 80             # a fixed sample of 80 (same sample for the same source)
    python scripts/mutate.py --modules optim,layers --limit 20
    python scripts/mutate.py --list                 # print the mutants, run nothing

Needs only the standard library and pytest (and twingrad's own test
dependencies). Not run by CI: every mutant costs a run of the fast tests, and there are several hundred.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("layers", "normalization", "functional", "optim", "fc_net", "gradcheck")
# The fast tests: tests/conftest.py marks the modules that start kernels, workers or training runs as slow.
FAST_TESTS = ["tests", "-m", "not slow"]


@dataclass
class Mutant:
    module: str
    line: int
    kind: str  #: operator, constant, axis, drop, swap, compare, name
    before: str  #: the text replaced
    after: str  #: its replacement
    source: str  #: the whole mutated module

    def label(self) -> str:
        return f"{self.module}.py:{self.line} {self.kind}: {self.before!s} -> {self.after!s}"


# -- generating mutants ---------------------------------------------------------------

BINOP_SWAPS = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
               ast.Pow: ("**", "*"), ast.FloorDiv: ("//", "/")}
AUG_SWAPS = {ast.Add: ("+=", "-="), ast.Sub: ("-=", "+="), ast.Mult: ("*=", "/="), ast.Div: ("/=", "*=")}
COMPARE_SWAPS = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
                 ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"),
                 ast.IsNot: ("is not", "is")}
NAME_SWAPS = {"sum": "mean", "mean": "sum", "max": "min", "min": "max", "maximum": "minimum",
              "minimum": "maximum", "sum_rows": "sum_cols", "sum_cols": "sum_rows"}


class _Generator(ast.NodeVisitor):
    """Collect ``(start, end, replacement, kind, line)`` byte-range edits of one module."""

    def __init__(self, data: bytes):
        self.data = data
        self.starts = [0]
        for i, byte in enumerate(data):
            if byte == ord("\n"):
                self.starts.append(i + 1)
        self.edits: list[tuple[int, int, str, str, int]] = []

    # positions are (line, UTF-8 byte column): work in bytes throughout
    def _span(self, node) -> tuple[int, int]:
        return (self.starts[node.lineno - 1] + node.col_offset,
                self.starts[node.end_lineno - 1] + node.end_col_offset)

    def _text(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def _edit(self, start: int, end: int, text: str, kind: str, line: int) -> None:
        self.edits.append((start, end, text, kind, line))

    def _operator_between(self, left, right, symbol: str) -> tuple[int, int] | None:
        """Byte range of ``symbol`` between two operand nodes, when it is there exactly once."""
        start, end = self._span(left)[1], self._span(right)[0]
        gap = self._text(start, end)
        if "#" in gap or gap.count(symbol) != 1:
            return None
        at = start + len(gap[: gap.index(symbol)].encode())
        return at, at + len(symbol.encode())

    # parts of the code that are not computation: messages, annotations, docstrings
    def visit_Raise(self, node):
        pass

    def visit_Assert(self, node):
        pass

    def visit_JoinedStr(self, node):
        pass

    def visit_arg(self, node):
        pass  # annotations

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_FunctionDef(self, node):
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        for statement in node.body:
            self.visit(statement)

    def visit_BinOp(self, node):
        op = type(node.op)
        if op in BINOP_SWAPS:
            symbol, other = BINOP_SWAPS[op]
            where = self._operator_between(node.left, node.right, symbol)
            if where:
                self._edit(*where, other, "operator", node.lineno)
        if op in (ast.Add, ast.Sub, ast.Mult, ast.Div):
            # dropped term (a + b -> a) or dropped factor (a * b -> a)
            start, end = self._span(node)
            left = self._span(node.left)
            self._edit(start, end, self._text(*left), "drop", node.lineno)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        op = type(node.op)
        if op in AUG_SWAPS:
            symbol, other = AUG_SWAPS[op]
            where = self._operator_between(node.target, node.value, symbol)
            if where:
                self._edit(*where, other, "operator", node.lineno)
                self._edit(*self._span(node), "pass", "drop", node.lineno)
        self.visit(node.value)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.USub, ast.Not)):
            self._edit(*self._span(node), self._text(*self._span(node.operand)), "drop", node.lineno)
        self.generic_visit(node)

    def visit_Compare(self, node):
        if len(node.ops) == 1 and type(node.ops[0]) in COMPARE_SWAPS:
            symbol, other = COMPARE_SWAPS[type(node.ops[0])]
            where = self._operator_between(node.left, node.comparators[0], symbol)
            if where:
                self._edit(*where, other, "compare", node.lineno)
        self.generic_visit(node)

    def visit_keyword(self, node):
        value = node.value
        if node.arg == "axis" and isinstance(value, ast.Constant) and type(value.value) is int:
            new = {0: "1", 1: "0", -1: "0"}.get(value.value)
            if new is not None:
                self._edit(*self._span(value), new, "axis", node.value.lineno)
            return
        self.generic_visit(node)

    def visit_Constant(self, node):
        value = node.value
        if isinstance(value, bool):
            self._edit(*self._span(node), str(not value), "constant", node.lineno)
        elif isinstance(value, int):
            self._edit(*self._span(node), {0: "1", 1: "2"}.get(value, str(value + 1)), "constant", node.lineno)
        elif isinstance(value, float):
            self._edit(*self._span(node), repr(value * 10) if value else "1.0", "constant", node.lineno)

    def visit_Attribute(self, node):
        if node.attr in NAME_SWAPS:
            end = self._span(node)[1]
            start = end - len(node.attr.encode())
            self._edit(start, end, NAME_SWAPS[node.attr], "name", node.lineno)
        elif node.attr == "T":
            self._edit(*self._span(node), self._text(*self._span(node.value)), "drop", node.lineno)
        self.generic_visit(node)

    def visit_Subscript(self, node):
        index = node.slice
        if isinstance(index, ast.Tuple) and len(index.elts) == 2:
            a, b = index.elts
            is_none = lambda e: isinstance(e, ast.Constant) and e.value is None  # noqa: E731
            if is_none(a) != is_none(b) and any(isinstance(e, ast.Slice) for e in (a, b)):
                # x[:, None] <-> x[None, :]: the new axis on the other side
                (sa, ea), (sb, eb) = self._span(a), self._span(b)
                swapped = self._text(sb, eb) + self._text(ea, sb) + self._text(sa, ea)
                self._edit(sa, eb, swapped, "axis", node.lineno)
        self.generic_visit(node)

    def visit_Return(self, node):
        value = node.value
        if isinstance(value, ast.Tuple):
            names = value.elts
            for a, b in zip(names, names[1:]):
                if isinstance(a, ast.Name) and isinstance(b, ast.Name):
                    (sa, ea), (sb, eb) = self._span(a), self._span(b)
                    swapped = self._text(sb, eb) + self._text(ea, sb) + self._text(sa, ea)
                    self._edit(sa, eb, swapped, "swap", node.lineno)
        self.generic_visit(node)


def mutants_of(module: str, path: Path) -> list[Mutant]:
    """Every mutant of one module, in source order, without duplicates or syntax errors."""
    text = path.read_text()
    data = text.encode()
    generator = _Generator(data)
    generator.visit(ast.parse(text))
    seen, mutants = set(), []
    for start, end, replacement, kind, line in sorted(generator.edits, key=lambda e: (e[0], e[1], e[2])):
        before = data[start:end].decode()
        if before == replacement:
            continue
        source = (data[:start] + replacement.encode() + data[end:]).decode()
        if source in seen:
            continue
        try:
            ast.parse(source)
        except SyntaxError:
            continue
        seen.add(source)
        mutants.append(Mutant(module, line, kind, _short(before), _short(replacement), source))
    return mutants


def _short(text: str, width: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


# -- running -------------------------------------------------------------------------------


def _copy_tree(root: Path, into: Path) -> Path:
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".hypothesis", ".pytest_cache",
                                    "build", "dist", "*.npz", ".ipynb_checkpoints", ".venv", "venv")
    tree = into / "tree"
    shutil.copytree(root, tree, ignore=ignore)
    return tree


def _run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Run the tests in the copy: ``('passed' | 'failed' | 'timeout', seconds)``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1",
           "HYPOTHESIS_PROFILE": "ci"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o",
               "addopts=", *tests]
    started = time.perf_counter()
    log = tree.parent / "pytest.log"  # the last run's output: shown when the unmutated run fails
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own group: a timeout ends its children too
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return "timeout", time.perf_counter() - started
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave no test run behind
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    finally:
        # hypothesis' example database would replay one mutant's failure against the next
        shutil.rmtree(tree / ".hypothesis", ignore_errors=True)
    return ("passed" if code == 0 else "failed"), time.perf_counter() - started


def _diff(original: str, mutant: Mutant) -> str:
    lines = difflib.unified_diff(original.splitlines(keepends=True), mutant.source.splitlines(keepends=True),
                                 f"a/src/twingrad/{mutant.module}.py", f"b/src/twingrad/{mutant.module}.py", n=1)
    return "".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(CORE),
                        help=f"comma-separated modules of src/twingrad to mutate (default: {','.join(CORE)})")
    parser.add_argument("--limit", type=int, default=None,
                        help="run a fixed random sample of this many mutants (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    parser.add_argument("--tests", nargs="+", default=None,
                        help="test files to run, relative to the repository (default: the fast tests, "
                             "pytest -m 'not slow')")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to copy (default: this one)")
    parser.add_argument("--ids", default=None,
                        help="comma-separated numbers (as --list prints them) of the mutants to run, e.g. to rerun "
                             "survivors or timeouts")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    args = parser.parse_args(argv)

    # SIGTERM unwinds like Ctrl-C, so the running tests are stopped and the copy is removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    root = args.root.resolve()
    modules = [m.strip().removesuffix(".py") for m in args.modules.split(",") if m.strip()]
    package = root / "src" / "twingrad"
    unknown = [m for m in modules if not (package / f"{m}.py").is_file()]
    if unknown:
        parser.error(f"--modules: no {', '.join(unknown)} in {package}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive integer, got {args.limit}")

    mutants = [m for module in modules for m in mutants_of(module, package / f"{module}.py")]
    total = len(mutants)
    if args.limit is not None and args.limit < total:
        order = {id(m): i for i, m in enumerate(mutants)}
        mutants = sorted(random.Random(args.seed).sample(mutants, args.limit), key=lambda m: order[id(m)])
    numbered = list(enumerate(mutants, 1))
    if args.ids:
        try:
            wanted = {int(i) for i in args.ids.split(",") if i.strip()}
        except ValueError:
            parser.error(f"--ids must be comma-separated integers, got {args.ids!r}")
        numbered = [(i, m) for i, m in numbered if i in wanted]
        if not numbered or len(numbered) < len(wanted):
            parser.error(f"--ids: there are mutants 1 to {len(mutants)} in this selection, got {args.ids!r}")
    if args.list:
        for i, m in numbered:
            print(f"{i:4d} {m.label()}")
        print(f"{len(numbered)} of {total} mutants")
        return 0

    with tempfile.TemporaryDirectory(prefix="twingrad-mutate-") as tmp:
        tree = _copy_tree(root, Path(tmp))
        tests = args.tests or FAST_TESTS
        status, baseline = _run_tests(tree, tests, timeout=3600)
        if status != "passed":
            tail = (Path(tmp) / "pytest.log").read_text(errors="replace").splitlines()[-30:]
            print("\n".join(tail), file=sys.stderr)
            print(f"the tests fail without any mutant ({status}): fix them first", file=sys.stderr)
            return 2
        # Generous: on a shared machine a surviving mutant's run can take five times the
        # unmutated one, and a survivor cut short would be miscounted as a timeout.
        timeout = max(600.0, 20 * baseline)
        print(f"{len(numbered)} of {total} mutants of {', '.join(modules)}; tests: {' '.join(tests)}")
        print(f"unmutated run: {baseline:.1f} s; timeout per mutant {timeout:.0f} s\n", flush=True)

        originals = {m: (tree / "src" / "twingrad" / f"{m}.py").read_text() for m in modules}
        survivors, killed, timeouts, started = [], 0, 0, time.perf_counter()
        for i, mutant in numbered:
            path = tree / "src" / "twingrad" / f"{mutant.module}.py"
            path.write_text(mutant.source)
            try:
                status, seconds = _run_tests(tree, tests, timeout)
            finally:
                path.write_text(originals[mutant.module])
            verdict = "SURVIVED" if status == "passed" else ("killed (timeout)" if status == "timeout" else "killed")
            print(f"[{i:3d}/{len(mutants)}] {verdict:<16} {seconds:5.1f} s  {mutant.label()}", flush=True)
            if status == "passed":
                survivors.append((i, mutant))
            else:
                killed += 1
                timeouts += status == "timeout"

    elapsed = time.perf_counter() - started
    print(f"\nkilled {killed} / {len(numbered)} ({timeouts} by timeout), survived {len(survivors)} "
          f"({elapsed / 60:.1f} min)")
    if survivors:
        print(f"survivors: --ids {','.join(str(i) for i, _ in survivors)}")
        print("\nSurvivors (equivalent, or a blind spot of the tests?):\n")
        for i, mutant in survivors:
            print(f"# [{i}] {mutant.label()}")
            print(_diff(originals[mutant.module], mutant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
