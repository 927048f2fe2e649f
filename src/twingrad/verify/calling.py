"""Calling checked code: its exceptions and odd return values become clear messages.

Whatever a student's function does (raise, return None, return a list, the
wrong number of gradients, Python 2 names), the check of that function ends
with a message that says what happened and where in their file, and the
other functions are still checked.
"""

from __future__ import annotations

import errno
import os
import traceback

import numpy as np

# Names and methods that exist in Python 2 only, and what replaces them.
PYTHON2_NAMES = {"xrange": "range", "unicode": "str", "raw_input": "input", "basestring": "str",
                 "long": "int", "unichr": "chr", "reduce": "functools.reduce", "file": "open"}
PYTHON2_METHODS = {"iteritems": "items", "itervalues": "values", "iterkeys": "keys", "has_key": "the in operator"}


class UserError(Exception):
    """The checked function raised or returned something unusable: status 'error'."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Stub(Exception):
    """The function is not implemented yet (returns None, raises NotImplementedError): status 'missing'."""


def python2_hint(exc: BaseException) -> str:
    """' (xrange is Python 2: use range)' when ``exc`` comes from a Python 2 name or method, else ''."""
    name = getattr(exc, "name", None)
    if isinstance(exc, NameError) and name in PYTHON2_NAMES:
        return f" ({name} is Python 2: use {PYTHON2_NAMES[name]})"
    if isinstance(exc, AttributeError) and name in PYTHON2_METHODS:
        return f" (.{name}() is Python 2: use {PYTHON2_METHODS[name]})"
    return ""


def _location(exc: BaseException, path: str | None) -> str:
    """' at layers.py line 42: dx[x < 0] = 0', the innermost frame in the checked file."""
    if not path:
        return ""
    target = os.path.realpath(path)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if os.path.realpath(f.filename) == target]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f" at {os.path.basename(path)} line {frame.lineno}{code}"


def describe_exception(function: str, exc: BaseException, path: str | None, memory_limit_mb: int | None = None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    message = f"{function} raised {type(exc).__name__}{': ' + text if text else ''}"
    message += python2_hint(exc) + _location(exc, path)
    if isinstance(exc, MemoryError) and memory_limit_mb:
        message += f" (the memory limit is {memory_limit_mb} MB)"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        message += " (the output it printed or the files it wrote grew past the worker's limit)"
    return message


class Caller:
    """Calls functions of one checked module by name and turns failures into :class:`UserError`."""

    def __init__(self, module, path: str | None = None, memory_limit_mb: int | None = None):
        self.module = module
        self.path = path
        self.memory_limit_mb = memory_limit_mb

    def has(self, name: str) -> bool:
        return callable(getattr(self.module, name, None))

    def __call__(self, name: str, *args, **kwargs):
        return self.invoke(name, getattr(self.module, name), *args, **kwargs)

    def invoke(self, name: str, function, *args, **kwargs):
        """Call ``function`` (``name`` in messages): NotImplementedError is a stub, anything else an error."""
        try:
            return function(*args, **kwargs)
        except NotImplementedError:
            raise Stub(f"{name} raises NotImplementedError: not implemented yet") from None
        except (Exception, SystemExit) as exc:  # SystemExit: a stray exit() must not end the check
            raise UserError(describe_exception(name, exc, self.path, self.memory_limit_mb)) from None


def describe_value(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} values"
    return f"a {type(value).__name__}"


def pair(function: str, result, names: str) -> tuple:
    """``result`` unpacked as the pair ``names`` (e.g. '(out, cache)')."""
    if result is None:
        raise Stub(f"{function} returned None: not implemented yet?")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise UserError(f"{function} returned {describe_value(result)}; expected the pair {names}")
    return tuple(result)


def array(function: str, name: str, value, shape: tuple) -> np.ndarray:
    """``value`` as a real array of ``shape``, or the error that says what it is instead."""
    if value is None:
        raise Stub(f"{function} returned {name} = None: not implemented yet?")
    try:
        result = np.asarray(value)
    except Exception:  # noqa: BLE001
        raise UserError(f"{function}: {name} is {describe_value(value)}, not an array") from None
    if not (np.issubdtype(result.dtype, np.floating) or np.issubdtype(result.dtype, np.integer)):
        raise UserError(f"{function}: {name} has dtype {result.dtype}; expected real numbers")
    if result.shape != tuple(shape):
        raise UserError(f"{function}: {name} has shape {result.shape}; expected {tuple(shape)}")
    return result


def gradients(function: str, result, names: tuple) -> dict:
    """The backward's return value as ``{gradient name: value}``, in the order of ``names``."""
    if result is None:
        raise Stub(f"{function} returned None: not implemented yet?")
    if len(names) == 1 and not isinstance(result, (tuple, list)):
        result = (result,)
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise UserError(f"{function} returned {describe_value(result)}; expected {len(names)}: "
                        f"({', '.join(names)})")
    if all(g is None for g in result):
        raise Stub(f"{function} returned only None: not implemented yet?")
    return dict(zip(names, result))
