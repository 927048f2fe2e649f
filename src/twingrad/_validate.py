"""Input checks shared by the layers: clear errors instead of numpy tracebacks.

Every message names the function, the argument, what was expected and what
arrived, so a student can fix the call without reading twingrad's source.

The rules every hand layer follows (and :mod:`twingrad.layers` documents):

- float arrays are float32 or float64; float16 and longdouble are refused,
  since no twin, tolerance or BLAS path of twingrad is written for them;
- inputs of mixed float32/float64 are promoted as numpy promotes them
  (``np.result_type``): the output, the cache and every gradient of the
  backward have the promoted dtype, and the upstream gradient is converted
  to it;
- a backward checks that its cache is the named cache type its own forward
  returns, and says which forward made the cache it was given instead;
- scalars in the parameter dicts (``eps``, ``momentum``, ``p``, ``seed``) are
  checked for type and range, NaN included;
- a loss (a mean over the batch) refuses an empty batch; layers that map each
  sample on its own pass an empty batch through, as numpy would.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

FLOAT_DTYPES = "float32 or float64"


def float_array(func: str, name: str, a, ndim: int | None = None, min_ndim: int = 0) -> np.ndarray:
    """Return ``a`` if it is a float32 or float64 ndarray, else raise naming ``func`` and ``name``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{func}: {name} must be a numpy array, got {type(a).__name__}")
    # dtype.char is 'f' for float32 and 'd' for float64 (either byte order): 0.1 us, against
    # 1.1 us for np.issubdtype, and it refuses float16 ('e') and longdouble ('g') as the message says.
    if a.dtype.char not in "fd":
        raise TypeError(f"{func}: {name} must have a floating dtype ({FLOAT_DTYPES}), got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{func}: {name} must be {ndim}-D, got shape {a.shape}")
    if a.ndim < min_ndim:
        raise ValueError(f"{func}: {name} must have at least {min_ndim} dimensions, got shape {a.shape}")
    return a


def promote(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The arrays converted to their common dtype (numpy's promotion); unchanged when they share one."""
    first = arrays[0].dtype
    for a in arrays:  # a loop, not all(generator): this runs in every forward
        if a.dtype != first:
            break
    else:
        return arrays  # the usual case: no call to result_type (1 us)
    common = np.result_type(*arrays)
    return tuple(a.astype(common, copy=False) for a in arrays)


def shape(func: str, name: str, a: np.ndarray, expected: tuple, why: str = "") -> None:
    """Raise unless ``a.shape == expected``."""
    if a.shape != tuple(expected):
        hint = f" ({why})" if why else ""
        raise ValueError(f"{func}: {name} must have shape {tuple(expected)}{hint}, got {a.shape}")


def nonempty_batch(func: str, name: str, a: np.ndarray) -> None:
    """Raise unless ``a`` holds at least one sample: a mean over an empty batch has no value."""
    if a.shape[0] == 0:
        raise ValueError(f"{func}: {name} must hold at least one sample (the loss is a mean over the batch), "
                         f"got shape {a.shape}")


def labels(func: str, y, num_samples: int, num_classes: int) -> np.ndarray:
    """Return ``y`` checked as integer class labels of shape (N,) in [0, C)."""
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{func}: y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (num_samples,):
        raise ValueError(f"{func}: y must have shape ({num_samples},) to match x, got {y.shape}")
    if num_samples and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{func}: y must lie in [0, {num_classes}) for x with {num_classes} classes, "
            f"got values in [{y.min()}, {y.max()}]"
        )
    return y


def mode(func: str, param_name: str, param: Mapping) -> str:
    """Return ``param['mode']``, which must be 'train' or 'test'."""
    if not isinstance(param, Mapping):
        raise TypeError(f"{func}: {param_name} must be a dict, got {type(param).__name__}")
    if "mode" not in param:
        raise KeyError(f"{func}: {param_name} must contain 'mode' ('train' or 'test'); it has keys {sorted(param)}")
    value = param["mode"]
    if value not in ("train", "test"):
        raise ValueError(f"{func}: {param_name}['mode'] must be 'train' or 'test', got {value!r}")
    return value


def _real(value) -> bool:
    """A real number, bools excluded (``True`` as an eps is a slip, not a choice)."""
    if type(value) is float:  # the usual case, without the ABC check (0.3 us)
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def positive(func: str, name: str, value) -> float:
    """Return ``value`` as a float if it is a finite number > 0 (an ``eps``)."""
    if not (_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{func}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def fraction(func: str, name: str, value, what: str, upper_open: bool = False) -> float:
    """Return ``value`` as a float if it lies in [0, 1] (or [0, 1) with ``upper_open``); NaN is refused."""
    inside = _real(value) and 0.0 <= value and (value < 1.0 if upper_open else value <= 1.0)
    if not inside:  # NaN fails every comparison, so it lands here too
        interval = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{func}: {name} is {what} and must lie in {interval}, got {value!r}")
    return float(value)


def _natural(value) -> bool:
    if type(value) is int:  # the usual case, without the ABC check
        return value >= 0
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)) and value >= 0


def seed(func: str, name: str, value):
    """Return ``value`` if ``np.random.default_rng`` takes it as entropy: None, an integer >= 0,
    or a list or tuple of them (the net gives each layer ``[seed, layer]``)."""
    if value is None or _natural(value):
        return value
    if isinstance(value, (list, tuple)) and value and all(_natural(v) for v in value):
        return value
    raise ValueError(f"{func}: {name} must be None, an integer >= 0 or a list of them, got {value!r}")


def cache(func: str, value, expected: type, forward: str, when: str = ""):
    """Return ``value`` if it is an ``expected`` cache, else raise naming the cache that was expected
    and, for a cache of another layer, the forward that made it."""
    if isinstance(value, expected):
        return value
    made_by = getattr(type(value), "made_by", None)
    if value is None:
        got = "None"
    elif made_by:
        got = f"a {type(value).__name__} (the cache {made_by} returns)"
    else:
        got = f"a {type(value).__name__}"
    raise TypeError(f"{func}: cache must be the {expected.__name__} that {forward} returns{when}; got {got}")


def upstream(func: str, dout, expected_shape: tuple, dtype: np.dtype | None = None) -> np.ndarray:
    """Return the upstream gradient ``dout`` checked against the forward output's shape,
    converted to ``dtype`` (the forward's) when given and different."""
    dout = float_array(func, "dout", dout)
    shape(func, "dout", dout, expected_shape, "the shape of the forward output")
    if dtype is not None and dout.dtype != dtype:
        dout = dout.astype(dtype)
    return dout
