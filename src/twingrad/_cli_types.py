"""argparse ``type=`` functions that check a value's range, so a bad option fails in the parser.

argparse turns an ``ArgumentTypeError`` into exit status 2 and one line,
``argument --epochs: got 0, allowed 1..1000000``, that names the option, the
value and the allowed range, before any work starts.
"""

from __future__ import annotations

import argparse
import math


def _fmt(x: float) -> str:
    return f"{x:g}"


def int_range(low: int, high: int):
    """Type function: an int in ``low..high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, allowed an integer in {low}..{high}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"got {value}, allowed {low}..{high}")
        return value

    parse.__name__ = "integer"  # what argparse calls the type in its own messages
    return parse


def float_range(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
    """Type function: a finite float in the interval ``[low, high]``; ``*_open`` excludes an end."""
    interval = f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open or math.isinf(high) else ']'}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, allowed a number in {interval}") from None
        inside = (math.isfinite(value) and (low < value if low_open else low <= value)
                  and (value < high if high_open else value <= high))
        if not inside:
            raise argparse.ArgumentTypeError(f"got {text}, allowed a finite number in {interval}")
        return value

    parse.__name__ = "number"
    return parse


def nonempty_path(what: str):
    """Type function: a non-empty path (an empty string would silently mean "none")."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"got {text!r}, allowed a non-empty {what}")
        return text

    parse.__name__ = what
    return parse


def empty_values(args: argparse.Namespace) -> list[str]:
    """Options that argparse left as ``[]``: ``--epochs=--`` swallows the value as the ``--`` separator."""
    return [f"--{name.replace('_', '-')}" for name, value in vars(args).items() if isinstance(value, list) and not value]
