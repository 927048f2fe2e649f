"""A network to check, as ``--net`` writes it: ``3072-100x5-10,batchnorm,dropout=0.25,reg=0.1,batch=50``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..fc_net import NORMALIZERS


@dataclass(frozen=True)
class Architecture:
    """One network to check: layer sizes, normalization, dropout, L2 strength and batch size."""

    input_dim: int
    hidden_dims: tuple
    num_classes: int
    normalization: str | None = None
    dropout: float = 0.0
    reg: float = 0.0
    batch: int = 20

    def __str__(self) -> str:
        text = f"{self.input_dim}-{list(self.hidden_dims)}-{self.num_classes}".replace(" ", "")
        extras = [self.normalization or "", f"dropout={self.dropout:g}" if self.dropout else "",
                  f"reg={self.reg:g}" if self.reg else "", f"batch={self.batch}"]
        return ", ".join([text] + [e for e in extras if e])


def parse_architecture(text: str) -> Architecture:
    """``"3072-100x5-10"`` or ``"3072-100x5-10,batchnorm,dropout=0.25,reg=0.1,batch=50"``.

    Layer sizes are separated by ``-``; ``100x5`` is five layers of 100.
    """
    head, *options = [part.strip() for part in text.split(",")]
    sizes = []
    for part in head.split("-"):
        match = re.fullmatch(r"(\d+)(?:x(\d+))?", part)
        if not match:
            raise ValueError(f"cannot read the layer sizes {head!r}: write e.g. 3072-100x5-10")
        sizes += [int(match.group(1))] * int(match.group(2) or 1)
    if len(sizes) < 2:
        raise ValueError(f"an architecture needs at least an input size and a class count, got {head!r}")
    if min(sizes) < 1 or sizes[-1] < 2:
        raise ValueError(f"layer sizes must be >= 1 and the class count >= 2, got {head!r}")
    if sum(a * b for a, b in zip(sizes, sizes[1:])) > 50_000_000:
        raise ValueError(f"{head!r} has over 50 million weights: too large to check here")
    fields: dict = {}
    for option in options:
        key, _, value = option.partition("=")
        if option in NORMALIZERS and option is not None:
            fields["normalization"] = option
        elif key in _RANGES and value:
            kind, low, high, allowed = _RANGES[key]
            try:
                number = kind(value)
            except ValueError:
                number = None
            if number is None or not low <= number <= high or (key == "dropout" and number == 1):
                raise ValueError(f"network option {key} must be {allowed}, got {value!r}")
            fields[key] = number
        else:
            raise ValueError(f"unknown network option {option!r}: use batchnorm, layernorm, dropout=P, reg=R, batch=N")
    return Architecture(sizes[0], tuple(sizes[1:-1]), sizes[-1], **fields)


# option -> (type, low, high, the allowed range in words)
_RANGES = {"dropout": (float, 0.0, 1.0, "a drop probability in [0, 1)"),
           "reg": (float, 0.0, 1e6, "a number in [0, 1e6]"),
           "batch": (int, 2, 100_000, "an integer in [2, 100000] (batch norm needs 2)")}
