"""What one verification run does: seed, cases, mode, dtype, conventions.

Every random draw of a check comes from ``default_rng([seed, function, case,
attempt])``: a case depends on nothing but its own coordinates, so
``--only FUNCTION --case I`` replays exactly what the full run saw, whatever
else ran before it, in this process or in a grading worker.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import zlib
from dataclasses import dataclass

import numpy as np

MODES = ("auto", "full", "fast")
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Settings:
    """The options of ``twingrad verify`` that change what is checked and how.

    Attributes
    ----------
    seed : int
        Root of every random draw.
    cases : int
        Random cases (shapes and inputs) per function: ``-k``.
    case : int or None
        Check only this case index (``--case``), to replay one diagnosis.
    mode : {'auto', 'full', 'fast'}
        Finite differences per element ('full'), along random directions ('fast'),
        or 'fast' only for inputs with more than ``fast_threshold`` elements.
    dtype : {'float64', 'float32'}
        The dtype the checked code receives.
    keep_prob : bool
        Dropout's ``p`` is the keep probability (later CS231n years) rather than the drop probability:
        the convention a submission is checked in.
    dropout_convention : {'drop', 'keep', 'auto'}
        The convention asked for; 'auto' decides per submission from its own dropout_forward.
    only : tuple of str
        Check only these CS231n functions (all when empty).
    fast_threshold : int
        Element count above which 'auto' projects.
    directions : int
        Random directions per input in the fast mode.
    redraws : int
        How often a case whose finite differences straddle a kink is drawn anew.
    impl : str or None
        The checked file, as the reproduce command should name it.
    sandbox : str or None
        The sandbox submissions ran in (``--impl``): "bwrap" or "none".
    """

    seed: int = 0
    cases: int = 5
    case: int | None = None
    mode: str = "auto"
    dtype: str = "float64"
    keep_prob: bool = False
    dropout_convention: str = "drop"
    only: tuple = ()
    fast_threshold: int = 2000
    directions: int = 3
    redraws: int = 3
    impl: str | None = None
    sandbox: str | None = None  #: "bwrap" or "none" when grading submissions

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.cases < 1:
            raise ValueError(f"cases (-k) must be at least 1, got {self.cases}")
        if self.dropout_convention not in ("drop", "keep", "auto"):
            raise ValueError(f"dropout_convention must be drop, keep or auto, got {self.dropout_convention!r}")
        if self.case is not None and self.case < 0:
            raise ValueError(f"--case must be >= 0, got {self.case}")

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def case_indices(self) -> list[int]:
        return [self.case] if self.case is not None else list(range(self.cases))

    def rng(self, function: str, case: int, attempt: int = 0) -> np.random.Generator:
        """The generator of one attempt at one case of one function."""
        # crc32, not hash(): str hashes change between processes (PYTHONHASHSEED).
        return np.random.default_rng([self.seed, zlib.crc32(function.encode()), case, attempt])

    def selects(self, function: str) -> bool:
        return not self.only or function in self.only

    def reproduce(self, function: str, case: int) -> str:
        """The command line that replays one case of one function."""
        words = ["twingrad", "verify"]
        if self.impl:
            words += ["--impl", self.impl]
        words += ["--only", function, "--seed", str(self.seed), "--case", str(case)]
        if self.mode != "auto":
            words += ["--mode", self.mode]
        if self.dtype != "float64":
            words += ["--dtype", self.dtype]
        if self.dropout_convention != "auto" and self.impl:
            words += ["--dropout-convention", self.dropout_convention]
        return shlex.join(words)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        data = json.loads(text)
        data["only"] = tuple(data.get("only", ()))
        return cls(**data)

    def public(self) -> dict:
        """The settings as the JSON report states them."""
        return {"seed": self.seed, "cases": self.cases, "case": self.case, "mode": self.mode,
                "dtype": self.dtype, "keep_prob": self.keep_prob, "dropout_convention": self.dropout_convention,
                "only": list(self.only),
                "fast_threshold": self.fast_threshold, "directions": self.directions, "redraws": self.redraws,
                "sandbox": self.sandbox}
