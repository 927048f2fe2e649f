"""Plain text: tables shared by ``twingrad verify`` and ``twingrad bench``, and text made safe to print."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in lines)


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\r``): text a submission controls (a file
    name, an exception's message or type) cannot move the cursor or recolour the terminal it is shown on."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
