"""Input checks shared by the layers: clear errors instead of numpy tracebacks.

Every message names the function, the argument, what was expected and what
arrived, so a student can fix the call without reading twingrad's source.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def float_array(func: str, name: str, a, ndim: int | None = None, min_ndim: int = 0) -> np.ndarray:
    """Return ``a`` as a floating-point ndarray, or raise naming ``func`` and ``name``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{func}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype.kind != "f":  # what np.issubdtype(a.dtype, np.floating) says, in 0.2 us instead of 1.1 us
        raise TypeError(f"{func}: {name} must have a floating dtype (float32 or float64), got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{func}: {name} must be {ndim}-D, got shape {a.shape}")
    if a.ndim < min_ndim:
        raise ValueError(f"{func}: {name} must have at least {min_ndim} dimensions, got shape {a.shape}")
    return a


def shape(func: str, name: str, a: np.ndarray, expected: tuple, why: str = "") -> None:
    """Raise unless ``a.shape == expected``."""
    if a.shape != tuple(expected):
        hint = f" ({why})" if why else ""
        raise ValueError(f"{func}: {name} must have shape {tuple(expected)}{hint}, got {a.shape}")


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


def upstream(func: str, dout, expected_shape: tuple) -> np.ndarray:
    """Return the upstream gradient ``dout`` checked against the forward output's shape."""
    dout = float_array(func, "dout", dout)
    shape(func, "dout", dout, expected_shape, "the shape of the forward output")
    return dout
