"""Checks of a checkpoint's metadata and arrays: a file from elsewhere is untrusted.

Each function raises ``ValueError`` with a message that names the entry, what it
must be and what the file holds; :mod:`twingrad.checkpoint` prefixes the path.
Nothing here reads more than the caller already holds in memory.
"""

from __future__ import annotations

import json
import math
import numbers

import numpy as np

MAX_EPOCHS = 1_000_000
MAX_BATCH_SIZE = 1 << 24
MAX_HISTORY = 1 << 23  #: entries of one history array (64 MiB of float64)
MAX_METADATA_CHARS = 1 << 20  #: the JSON of a 100-layer net is ~50,000 characters
MAX_MEMBER_BYTES = 1 << 28  #: any one array, when no model says what it needs
_SCALAR_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                  "float16", "float32", "float64"}
BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM, "Philox": np.random.Philox,
                  "SFC64": np.random.SFC64, "MT19937": np.random.MT19937}


def short(value, width: int = 60) -> str:
    """``repr(value)`` cut to ``width`` characters: an int of 4000 digits must not fill the screen."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} (JSON has none; a checkpoint holds finite numbers only)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} overflows a float")
    return value


def parse_json(text: str) -> dict:
    """The metadata JSON, refusing NaN, Infinity, floats that overflow and absurd nesting."""
    if len(text) > MAX_METADATA_CHARS:
        raise ValueError(f"metadata is {len(text)} characters, more than the {MAX_METADATA_CHARS} a checkpoint needs")
    try:
        meta = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("checkpoint metadata is not valid JSON: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and our own refusals above
        raise ValueError(f"checkpoint metadata is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"checkpoint metadata must be a JSON object, got {type(meta).__name__}")
    return meta


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def int_in(what: str, value, low: int, high: int, optional: bool = False):
    if optional and value is None:
        return None
    if not is_int(value) or not low <= value <= high:
        none = " or null" if optional else ""
        raise ValueError(f"{what} must be an int in {low}..{high}{none}, got {short(value)}")
    return value


def number_in(what: str, value, low: float, high: float, low_open: bool = False):
    if not is_number(value) or value < low or value > high or (low_open and value == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{what} must be a finite number in {bracket}{low}, {high}], got {short(value)}")
    return value


# -- the solver's settings and the optimizer's scalars ---------------------------------------------


def check_settings(settings) -> None:
    """The solver settings a checkpoint records (checkpoint_name, if present, is ignored)."""
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be an object, got {short(settings)}")
    s = settings
    if "num_epochs" in s:
        int_in("settings.num_epochs", s["num_epochs"], 0, MAX_EPOCHS)
    if "batch_size" in s:
        int_in("settings.batch_size", s["batch_size"], 1, MAX_BATCH_SIZE)
    for key in ("num_train_samples", "num_val_samples"):
        if key in s:
            int_in(f"settings.{key}", s[key], 1, 2**63 - 1, optional=True)
    if "print_every" in s:
        int_in("settings.print_every", s["print_every"], 1, 2**63 - 1)
    if "seed" in s:
        int_in("settings.seed", s["seed"], 0, 2**128 - 1, optional=True)
    if "lr_decay" in s:
        number_in("settings.lr_decay", s["lr_decay"], 0, 1e6, low_open=True)
    if "backend" in s and s["backend"] not in ("hand", "autograd"):
        raise ValueError(f"settings.backend must be 'hand' or 'autograd', got {short(s['backend'])}")


_UNIT = ("momentum", "decay_rate", "beta1", "beta2")


def check_optim_scalars(where: str, scalars) -> None:
    """Scalars of one optimizer config: known hyperparameters must be numbers in their range."""
    if not isinstance(scalars, dict):
        raise ValueError(f"{where} must be an object, got {short(scalars)}")
    for key, stored in scalars.items():
        value = stored
        if isinstance(stored, dict):  # {"numpy": dtype name, "value": v}: a NumPy scalar
            if set(stored) != {"numpy", "value"} or stored["numpy"] not in _SCALAR_DTYPES:
                raise ValueError(f"{where}.{key}: a NumPy scalar must be {{numpy: one of {sorted(_SCALAR_DTYPES)}, "
                                 f"value}}, got {short(stored)}")
            value = stored["value"]
            if not (is_number(value) or isinstance(value, bool)):
                raise ValueError(f"{where}.{key} must hold a finite number, got {short(value)}")
        elif not (value is None or isinstance(value, (bool, str)) or is_number(value)):
            raise ValueError(f"{where}.{key} must be a finite number, a string, a bool or null, got {short(value)}")
        what = f"{where}.{key}"
        if key == "learning_rate":
            number_in(what, value, 0, 1e6)
        elif key in _UNIT:
            number_in(what, value, 0, 1)
        elif key == "epsilon":
            number_in(what, value, 0, 1, low_open=True)
        elif key == "t":
            int_in(what, value, 0, 2**53)


def check_config_meta(where: str, meta) -> None:
    """``{"scalars": {...}, "arrays": [names]}`` as `checkpoint._split_config` writes it."""
    if not isinstance(meta, dict) or set(meta) != {"scalars", "arrays"}:
        raise ValueError(f"{where} must be an object with 'scalars' and 'arrays', got {short(meta)}")
    check_optim_scalars(f"{where}.scalars", meta["scalars"])
    if not isinstance(meta["arrays"], list) or not all(isinstance(n, str) for n in meta["arrays"]):
        raise ValueError(f"{where}.arrays must be a list of names, got {short(meta['arrays'])}")


# -- random generators --------------------------------------------------------------------------


def make_generator(state) -> np.random.Generator:
    """A ``np.random.Generator`` restored from a ``bit_generator.state`` dict, which must survive the round trip."""
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {short(name)}; known: {sorted(BIT_GENERATORS)}")
    for key, high in (("has_uint32", 1), ("uinteger", 2**32 - 1)):
        if key in state:  # numpy stores these as given, and would then hand out a made-up number
            int_in(key, state[key], 0, high)
    bit_generator = BIT_GENERATORS[name]()
    try:
        bit_generator.state = state
        restored = bit_generator.state
    except (TypeError, ValueError, KeyError, OverflowError) as err:
        raise ValueError(f"not a valid {name} state ({type(err).__name__}: {err})") from None
    if not _same_state(restored, state):  # numpy silently truncates some fields (has_uint32 to 0/1 ...)
        raise ValueError(f"not a valid {name} state: it does not restore as stored ({short(state, 120)})")
    return np.random.Generator(bit_generator)


def _same_state(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, (list, np.ndarray)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return type(a) is type(b) and a == b


# -- arrays -------------------------------------------------------------------------------------


def check_arrays(arrays: dict) -> None:
    """Every array finite; accuracies in [0, 1]; histories 1-D floats."""
    bad = [f"{name} has {int(np.count_nonzero(~np.isfinite(a)))} NaN or infinite values"
           for name, a in sorted(arrays.items())
           if name != "metadata" and a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise ValueError("; ".join(bad[:5]) + (f" (and {len(bad) - 5} more arrays)" if len(bad) > 5 else ""))
    for name in ("history/loss", "history/train_acc", "history/val_acc"):
        a = arrays.get(name)
        if a is None:
            continue
        if a.ndim != 1 or a.dtype.kind != "f":
            raise ValueError(f"{name} must be a 1-D float array, got {a.dtype} {a.shape}")
        if name != "history/loss" and a.size and (a.min() < 0 or a.max() > 1):
            raise ValueError(f"{name} holds accuracies outside [0, 1]: [{a.min()}, {a.max()}]")
