"""The rubric: how many points each checked function is worth, read from a TOML file.

The file's shape (documented with an example in docs/grading.md)::

    [points]                                   # required: item -> points (>= 0)
    affine_forward = 1
    affine_backward = { points = 2, visibility = "after_due_date" }
    "FullyConnectedNet.loss[batchnorm]" = 3    # one configuration of a function

    [credit]                                   # optional: fraction of an item's points per status
    kink = 1.0                                 # default 1 (a kink is a pass)
    fail = 0.0                                 # default 0
    error = 0.0                                # default 0

    [gradescope]                               # optional: results.json's top-level visibilities
    visibility = "visible"
    stdout_visibility = "hidden"

``pass`` always earns the item's points and ``missing`` (like a submission that
could not be imported or judged) always earns none. Every mistake in the file is
a :class:`RubricError` whose message names the file and the line.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from difflib import get_close_matches

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the backport
    import tomli as tomllib

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
CREDIT_STATUSES = ("kink", "fail", "error")
DEFAULT_CREDIT = {"pass": 1.0, "kink": 1.0, "fail": 0.0, "error": 0.0, "missing": 0.0}
# The item key: a function name, optionally one configuration of it in brackets.
_ITEM = re.compile(r"^(?P<function>[^\[\]]+?)(?:\[(?P<configuration>[A-Za-z0-9_.+=-]+)\])?$")
_TOP_LEVEL = ("points", "credit", "gradescope")


class RubricError(ValueError):
    """A rubric that cannot be used; the message says which file, which line and why."""


@dataclass(frozen=True)
class Item:
    """One graded line: a function (or one configuration of it) and its points."""

    key: str  #: as written in the rubric: ``affine_backward``, ``FullyConnectedNet.loss[batchnorm]``
    function: str
    configuration: str | None
    points: float
    visibility: str | None = None


@dataclass(frozen=True)
class Rubric:
    """Items in file order, credit per status, and Gradescope's top-level visibilities."""

    items: tuple[Item, ...]
    credit: dict = field(default_factory=lambda: dict(DEFAULT_CREDIT))
    visibility: str = "visible"
    stdout_visibility: str = "hidden"
    source: str | None = None  #: the file it was read from; None for the default rubric

    def credit_for(self, status: str) -> float:
        """The fraction of an item's points a status earns (0 for anything but pass, kink, fail, error)."""
        return self.credit.get(status, 0.0)


def default_rubric(functions) -> Rubric:
    """One point per checked function, full credit for pass and kink, nothing else."""
    return Rubric(items=tuple(Item(name, name, None, 1.0) for name in functions))


def load_rubric(path: str, known_functions=None) -> Rubric:
    """Read and check a rubric file.

    Parameters
    ----------
    path : str
        The TOML file.
    known_functions : iterable of str, optional
        Every function name twingrad checks; an item naming anything else is an
        error. None: any name is taken.

    Raises
    ------
    RubricError
        Unreadable file, bad TOML, unknown table, key, function, status or
        visibility, negative or non-finite points, credit outside [0, 1].
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise RubricError(f"rubric {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RubricError(f"rubric {path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f", line {found.group(1)}" if found else ""
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise RubricError(f"rubric {path}{where}: not valid TOML: {reason}") from None
    return _Reader(path, text, None if known_functions is None else list(known_functions)).rubric(data)


class _Reader:
    """Checks the parsed TOML, with the text at hand to name the line of each mistake."""

    def __init__(self, path: str, text: str, known: list[str] | None):
        self.path = path
        self.lines = _key_lines(text)
        self.known = known

    def fail(self, where: tuple, message: str):
        # a key the locator did not find (written in a way it does not follow): the nearest enclosing one
        line = next((self.lines[where[:n]] for n in range(len(where), 0, -1) if where[:n] in self.lines), None)
        at = f", line {line}" if line else ""
        raise RubricError(f"rubric {self.path}{at}: {message}")

    def rubric(self, data: dict) -> Rubric:
        for key in data:
            if key not in _TOP_LEVEL:
                self.fail((key,), f"unknown key {key!r}; a rubric has the tables {', '.join(_TOP_LEVEL)}")
        if not isinstance(data.get("points"), dict) or not data["points"]:
            where = ("points",) if "points" in data else ()
            what = "an empty [points] table" if data.get("points") == {} else "no [points] table"
            self.fail(where, f"{what}: list each graded function with its points, e.g. affine_backward = 2")
        items = tuple(self.item(key, value) for key, value in data["points"].items())
        credit = dict(DEFAULT_CREDIT)
        for status, value in self.table(data, "credit").items():
            if status not in CREDIT_STATUSES:
                why = (" (pass always earns all of an item's points, missing none)" if status in ("pass", "missing")
                       else "")
                self.fail(("credit", status), f"unknown status {status!r} in [credit]; expected one of "
                                              f"{', '.join(CREDIT_STATUSES)}{why}")
            credit[status] = self.number(("credit", status), value, f"credit for {status}", upper=1.0)
        gradescope = self.table(data, "gradescope")
        for key, value in gradescope.items():
            if key not in ("visibility", "stdout_visibility"):
                self.fail(("gradescope", key), f"unknown key {key!r} in [gradescope]; expected visibility or "
                                               "stdout_visibility")
            self.visibility(("gradescope", key), value)
        return Rubric(items=items, credit=credit, visibility=gradescope.get("visibility", "visible"),
                      stdout_visibility=gradescope.get("stdout_visibility", "hidden"), source=self.path)

    def table(self, data: dict, name: str) -> dict:
        value = data.get(name, {})
        if not isinstance(value, dict):
            self.fail((name,), f"{name} must be a table ([{name}]), got {type(value).__name__} {value!r}")
        return value

    def item(self, key: str, value) -> Item:
        where = ("points", key)
        found = _ITEM.match(key)
        if found is None:
            self.fail(where, f"bad item {key!r}: expected a function name, or one configuration of it as "
                             "'FullyConnectedNet.loss[batchnorm]'")
        function = found.group("function")
        if self.known is not None and function not in self.known:
            close = get_close_matches(function, self.known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(self.known)}"
            self.fail(where, f"unknown function {function!r} in [points]{hint}")
        visibility = None
        if isinstance(value, dict):
            for name in value:
                if name not in ("points", "visibility"):
                    self.fail(where + (name,), f"unknown key {name!r} for {key!r}; expected points and visibility")
            if "points" not in value:
                self.fail(where, f"{key!r} has no points: write {{ points = 2, ... }}")
            visibility = None if "visibility" not in value else self.visibility(where + ("visibility",),
                                                                                 value["visibility"])
            value = value["points"]
        points = self.number(where, value, f"points of {key!r}")
        return Item(key, function, found.group("configuration"), points, visibility)

    def number(self, where: tuple, value, what: str, upper: float | None = None) -> float:
        # bool is an int in Python; TOML's inf and nan parse as floats
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(where, f"{what} must be a number, got {value!r}")
        if value < 0 or (upper is not None and value > upper):
            bound = f"between 0 and {upper:g}" if upper is not None else ">= 0"
            self.fail(where, f"{what} must be {bound}, got {value!r}")
        return float(value)

    def visibility(self, where: tuple, value) -> str:
        if value not in VISIBILITIES:
            self.fail(where, f"visibility must be one of {', '.join(VISIBILITIES)}, got {value!r}")
        return value


# -- where each key is written -----------------------------------------------------------------

_KEY_PART = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)"""
_DOTTED_KEY = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
_HEADER = re.compile(rf"^\s*\[\[?\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*\]\]?")


def _key_lines(text: str) -> dict[tuple, int]:
    """The line (from 1) where each table header and each ``key =`` is first written, by key path.

    Only used to point at a mistake in an already valid TOML file, so keys are
    decoded by TOML itself; lines inside multi-line strings may be misread, which
    only costs precision of the line shown.
    """
    found: dict[tuple, int] = {}
    table: tuple = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _decode(header.group(1))
            found.setdefault(table, number)
            continue
        key = _DOTTED_KEY.match(line)
        if key:
            path = table + _decode(key.group(1))
            for depth in range(len(table) + 1, len(path) + 1):
                found.setdefault(path[:depth], number)
    return found


def _decode(dotted: str) -> tuple:
    try:
        node = tomllib.loads(f"{dotted} = 0")
    except tomllib.TOMLDecodeError:
        return ()
    path = []
    while isinstance(node, dict) and len(node) == 1:
        (name, node), = node.items()
        path.append(name)
    return tuple(path)
