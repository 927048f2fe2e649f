"""The class CSV: one row per submission (name, status, points, max_points, then each item's status)."""

from __future__ import annotations

import csv
import io

from .scoring import Gradebook, points_text

# A cell starting with one of these is a formula to a spreadsheet; a submission's name is not trusted.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA) else text


def render(book: Gradebook) -> str:
    """The CSV text (RFC 4180: comma separated, quoted where needed, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "status", "points", "max_points", *book.keys])
    for sub in book.submissions:
        writer.writerow([_cell(sub.name), sub.status, points_text(sub.points), points_text(sub.max_points),
                         *(item.status for item in sub.items)])
    return out.getvalue()
