"""Calling and importing checked code: its exceptions and odd return values become clear messages.

Whatever a student's function does (raise, return None, return a list, the
wrong number of gradients, Python 2 names), the check of that function ends
with a message that says what happened and where in their file, and the
other functions are still checked; a module that cannot be imported is one
paragraph, never a traceback.

:class:`UserError` is the one value for "the checked code went wrong",
whether it ran here (:class:`Caller`, for trusted code) or in a grading
runner (:class:`~.remote.RemoteCaller`, which reports through the same
functions).
"""

from __future__ import annotations

import errno
import importlib.util
import inspect
import os
import re
import sys
import tokenize
import traceback
from types import ModuleType

import numpy as np

from .._text import printable

# Names and methods that exist in Python 2 only, and what replaces them.
PYTHON2_NAMES = {"xrange": "range", "unicode": "str", "raw_input": "input", "basestring": "str",
                 "long": "int", "unichr": "chr", "reduce": "functools.reduce", "file": "open"}
PYTHON2_METHODS = {"iteritems": "items", "itervalues": "values", "iterkeys": "keys", "has_key": "the in operator"}

# What NumPy 2 removed that old solutions use, and what replaces it (NumPy's own message often
# says so on a second line, which a one-line report would drop).
NUMPY2_REMOVED = {"float": "float", "int": "int", "bool": "bool", "object": "object", "complex": "complex",
                  "str": "str", "long": "int", "unicode": "str", "asscalar": "a.item()", "product": "np.prod",
                  "cumproduct": "np.cumprod", "in1d": "np.isin", "trapz": "np.trapezoid", "msort": "np.sort(a, axis=0)",
                  "NaN": "np.nan", "Inf": "np.inf", "NINF": "-np.inf", "PINF": "np.inf", "infty": "np.inf",
                  "float_": "np.float64", "complex_": "np.complex128", "alltrue": "np.all", "sometrue": "np.any",
                  "round_": "np.round", "pad": "np.pad", "mat": "np.asmatrix", "find_common_type": "np.result_type"}
_NUMPY_ATTRIBUTE = re.compile(r"module '(numpy(?:\.\w+)*)' has no attribute '(\w+)'|`(np)\.(\w+)` was removed")
_NEWSHAPE = "unexpected keyword argument 'newshape'"
_INTO_SHAPE = re.compile(r"into shape \(([^)]*)\)")

# Constructs that are Python 2 only; a SyntaxError plus one of these reads as Python 2 code.
_PYTHON2_PATTERNS = [
    (re.compile(r"^\s*print\s+[^\s(=.,)\[]"), "a print statement"),
    (re.compile(r"^\s*print\s*$"), "a print statement"),
    (re.compile(r"^\s*except\s+[\w.]+\s*,\s*\w+\s*:"), "'except E, e:'"),
    (re.compile(r"^\s*raise\s+\w+\s*,"), "'raise E, message'"),
    (re.compile(r"^\s*exec\s+['\"\w]"), "an exec statement"),
    (re.compile(r"\bur['\"]"), "a ur'' string"),
    (re.compile(r"<>"), "the <> operator"),
]
_PYTHON2_CALLS = [(re.compile(rf"\b{name}\s*\("), name) for name in PYTHON2_NAMES if name not in ("file", "reduce")]
_PYTHON2_CALLS += [(re.compile(rf"\.{name}\s*\("), f".{name}()") for name in PYTHON2_METHODS]


class UserError(Exception):
    """The one value for "the checked code went wrong", whatever the check: ``status`` is 'error' (it raised,
    returned something unusable, of the wrong type or shape), 'missing' (not implemented yet: it returns
    None, raises NotImplementedError) or 'import_error' (the module cannot be imported); ``message`` says
    what, in one line (a paragraph for an import); ``shapes`` the case's inputs."""

    def __init__(self, message: str, status: str = "error", shapes: dict | None = None):
        super().__init__(message)
        self.message, self.status, self.shapes = message, status, shapes


def stub(message: str) -> UserError:
    """The error of a function not implemented yet (status 'missing')."""
    return UserError(message, "missing")


def python2_hint(exc: BaseException) -> str:
    """' (xrange is Python 2: use range)' when ``exc`` comes from a Python 2 name or method, else ''."""
    return python2_hint_for(type(exc).__name__, getattr(exc, "name", None))


def python2_hint_for(type_name: str, name) -> str:
    if type_name == "NameError" and name in PYTHON2_NAMES:
        return f" ({name} is Python 2: use {PYTHON2_NAMES[name]})"
    if type_name == "AttributeError" and name in PYTHON2_METHODS:
        return f" (.{name}() is Python 2: use {PYTHON2_METHODS[name]})"
    return ""


def numpy2_hint(type_name: str, message: str) -> str:
    """' (np.float was removed in NumPy 2: use float)' when ``message`` is about such a name, else ''."""
    if type_name == "AttributeError":
        found = _NUMPY_ATTRIBUTE.search(message)
        if found:
            module, name = (found.group(1), found.group(2)) if found.group(1) else (found.group(3), found.group(4))
            if name in NUMPY2_REMOVED:
                qualified = f"{module.replace('numpy', 'np', 1)}.{name}"
                return f" ({qualified} was removed in NumPy 2: use {NUMPY2_REMOVED[name]})"
    if type_name == "TypeError" and _NEWSHAPE in message:
        return " (NumPy 2 removed reshape's newshape=: pass the shape positionally)"
    return ""


def empty_slice_hint(type_name: str, message: str, code: str) -> str:
    """' (an empty slice: ...)' when an assignment into a slice like ``a[p:-p]`` failed at p = 0, else ''."""
    target = _INTO_SHAPE.search(message) if type_name == "ValueError" else None
    if target and re.search(r"\b0\b", target.group(1)) and re.search(r":\s*-\s*\w", code):
        return " (an empty slice: a[p:-p] is empty when p = 0, as with pad = 0; slice a[p:p + H])"
    return ""


def exception_info(exc: BaseException, path: str | None) -> dict:
    """What the runner reports of an exception, from an exception raised in this process."""
    target = os.path.realpath(path) if path else None
    frames = [[os.path.basename(path), f.lineno, (f.line or "").strip()]
              for f in traceback.extract_tb(exc.__traceback__) if target and os.path.realpath(f.filename) == target]
    info = {"type": type(exc).__name__, "message": str(exc), "frames": frames,
            "not_implemented": isinstance(exc, NotImplementedError)}
    if isinstance(getattr(exc, "name", None), str):
        info["name"] = exc.name
    if isinstance(getattr(exc, "errno", None), int):
        info["errno"] = exc.errno
    return info


def describe_error(function: str, info: dict, memory_limit_mb: int | None = None) -> str:
    """'affine_backward raised ValueError: ... at layers.py line 42: dx = ...', from an exception's report."""
    type_name = str(info.get("type", "Exception"))[:100]
    message = str(info.get("message", "")).strip()
    text = message.splitlines()[0][:300] if message else ""
    result = f"{function} raised {type_name}{': ' + text if text else ''}"
    result += python2_hint_for(type_name, info.get("name")) + numpy2_hint(type_name, message)
    frames = info.get("frames")
    if isinstance(frames, list) and frames and isinstance(frames[-1], list) and len(frames[-1]) == 3:
        file, line, code = frames[-1]
        result += empty_slice_hint(type_name, message, str(code or ""))
        result += f" at {os.path.basename(str(file))} line {line}{': ' + str(code) if code else ''}"
    if type_name == "MemoryError" and memory_limit_mb:
        result += f" (the memory limit is {memory_limit_mb} MB)"
    if info.get("errno") == errno.EFBIG:
        result += " (the output it printed or the files it wrote grew past the runner's limit)"
    return printable(result)


def describe_exception(function: str, exc: BaseException, path: str | None, memory_limit_mb: int | None = None) -> str:
    return describe_error(function, exception_info(exc, path), memory_limit_mb)


class Caller:
    """Calls functions of one checked module by name and turns failures into :class:`UserError`.

    The in-process caller, for code that is trusted (twingrad itself, a
    user's own test suite); a graded submission is called through
    :class:`~.remote.RemoteCaller`, which has the same methods.
    """

    def __init__(self, module, path: str | None = None, memory_limit_mb: int | None = None):
        self.module = module
        self.path = path
        self.memory_limit_mb = memory_limit_mb

    def has(self, name: str) -> bool:
        return callable(getattr(self.module, name, None))

    def kind(self, name: str) -> str | None:
        value = getattr(self.module, name, None)
        return None if not callable(value) else "class" if isinstance(value, type) else "function"

    def method(self, name: str, obj, attr: str, *args, **kwargs):
        """``obj.attr(*args, **kwargs)``; ``attr`` may be dotted (``"params.update"``)."""
        target = obj
        for part in attr.split("."):
            target = getattr(target, part)
        return self.invoke(name, target, *args, **kwargs)

    def get(self, name: str, obj, attr: str, default=None):
        return getattr(obj, attr, default)

    def signature(self, name: str) -> set:
        try:
            return set(inspect.signature(getattr(self.module, name)).parameters)
        except (TypeError, ValueError):
            return set()

    def defaults(self, name: str) -> dict:
        """The parameters of ``name`` whose default is a plain number or bool, with it."""
        try:
            parameters = inspect.signature(getattr(self.module, name)).parameters
        except (TypeError, ValueError):
            return {}
        return {n: p.default for n, p in parameters.items() if type(p.default) in (int, float, bool)}

    def seed_global(self, seed: int) -> None:
        np.random.seed(seed)

    def prefetch(self, calls: list) -> None:
        pass  # calls in this process cost nothing to make one by one

    def reset(self) -> None:
        pass

    def __call__(self, name: str, *args, **kwargs):
        return self.invoke(name, getattr(self.module, name), *args, **kwargs)

    def invoke(self, name: str, function, *args, **kwargs):
        """Call ``function`` (``name`` in messages): NotImplementedError is a stub, anything else an error."""
        if isinstance(function, str):
            function = getattr(self.module, function)
        try:
            return function(*args, **kwargs)
        except NotImplementedError:
            raise stub(f"{name} raises NotImplementedError: not implemented yet") from None
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
        raise stub(f"{function} returned None: not implemented yet?")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise UserError(f"{function} returned {describe_value(result)}; expected the pair {names}")
    return tuple(result)


def array(function: str, name: str, value, shape: tuple, expected=None, notes: list | None = None) -> np.ndarray:
    """``value`` as a real array of ``shape``, or the error that says what it is instead.

    With the ``expected`` values, a result of the wrong shape is also judged by
    its values: "right values, shape (1, 5) instead of (5,)", or wrong in both.
    With a ``notes`` list, a result that has only extra leading axes of length 1
    is accepted, as numpy broadcasts it (see :func:`keepdims_note`).
    """
    if value is None:
        raise stub(f"{function} returned {name} = None: not implemented yet?")
    try:
        result = np.asarray(value)
    except Exception:  # noqa: BLE001
        raise UserError(f"{function}: {name} is {describe_value(value)}, not an array") from None
    if not (np.issubdtype(result.dtype, np.floating) or np.issubdtype(result.dtype, np.integer)):
        raise UserError(f"{function}: {name} has dtype {result.dtype}; expected real numbers")
    if result.shape != tuple(shape):
        note = keepdims_note(name, result.shape, shape) if notes is not None else None
        if note is None:
            raise UserError(f"{function}: {name} has shape {result.shape}; expected {tuple(shape)}"
                            + shape_note(result, shape, expected))
        notes.append(note)
        result = result.reshape(shape)
    return result


def keepdims_note(name: str, got: tuple, shape: tuple, of: str = "") -> str | None:
    """The note on a result shaped like ``shape`` with extra leading axes of length 1, else None.

    ``(1, D)`` for ``(D,)`` (``np.sum(..., axis=0, keepdims=True)``) pairs every
    element with its own when numpy broadcasts the two, as the course's
    ``rel_error`` does: its values are checked, and the record says what the
    shape will break. ``(D, 1)`` or ``(C,)`` for ``(1, C, 1, 1)`` broadcast to
    a larger array and stay errors.
    """
    got, shape = tuple(got), tuple(shape)
    extra = len(got) - len(shape)
    if extra <= 0 or got[extra:] != shape or any(d != 1 for d in got[:extra]):
        return None
    axes = "an extra leading axis" if extra == 1 else f"{extra} extra leading axes"
    # Said the same way at every shape: a record shows one note for all its cases.
    text = f"{name} has {axes} of length 1 (keepdims=True?): its values were checked as numpy broadcasts them"
    if of:
        return f"{text}, but an update in place ({of} -= lr * {name}) raises on it: give it the shape of {of}"
    return f"{text}: give it the expected shape"


def shape_note(result: np.ndarray, shape: tuple, expected) -> str:
    """What the values of a wrongly shaped result are worth, when the right ones are known."""
    if expected is None or result.size != int(np.prod(shape)):
        return ""
    got, want = result.astype(np.float64).reshape(shape), np.asarray(expected, np.float64)
    if np.all(np.abs(got - want) <= 1e-10 + 1e-7 * np.abs(want)):
        return f" (right values, shape {result.shape} instead of {tuple(shape)})"
    return f" (and the values are wrong too, read in shape {tuple(shape)})"


def scaled(grads: dict, dout) -> dict:
    """A loss's ``grads`` pulled back by ``dout``: each real array times it, anything else as it is, for the
    check to name (never an exception here, whatever the submission put in the dict)."""
    pulled = {}
    for name, value in grads.items():
        try:
            array = np.asarray(value)
        except Exception:  # noqa: BLE001  (an object whose conversion raises: the check says what it is)
            array = None
        numeric = array is not None and array.dtype.kind in "biuf"
        pulled[name] = array * dout if numeric else value
    return pulled


def gradients(function: str, result, names: tuple) -> dict:
    """The backward's return value as ``{gradient name: value}``, in the order of ``names``."""
    if result is None:
        raise stub(f"{function} returned None: not implemented yet?")
    if len(names) == 1 and not isinstance(result, (tuple, list)):
        result = (result,)
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise UserError(f"{function} returned {describe_value(result)}; expected {len(names)}: "
                        f"({', '.join(names)})")
    if all(g is None for g in result):
        raise stub(f"{function} returned only None: not implemented yet?")
    return dict(zip(names, result))


# -- importing --------------------------------------------------------------------------


def python2_evidence(source: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` descriptions like "a print statement (line 12)" of Python 2 constructs in ``source``."""
    found = []
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#", 1)[0]
        for pattern, what in _PYTHON2_PATTERNS + _PYTHON2_CALLS:
            if pattern.search(code):
                found.append(f"{what} (line {number})")
                break
        if len(found) >= limit:
            break
    return found


def _read(path: str) -> str:
    try:
        with tokenize.open(path) as handle:  # honours a coding: cookie, as import does
            return handle.read()
    except (OSError, SyntaxError, UnicodeDecodeError):
        with open(path, encoding="latin-1") as handle:
            return handle.read()


def _search_path(path: str) -> list[str]:
    """Where the submission's own imports are found: its folder, and above a package's top."""
    folder = os.path.dirname(os.path.abspath(path))
    entries = [folder]
    while os.path.exists(os.path.join(folder, "__init__.py")):
        # cs231n/layers.py importing "from cs231n.fast_layers import ..." needs the folder above cs231n.
        folder = os.path.dirname(folder)
        entries.append(folder)
    return entries


def load(path: str) -> ModuleType:
    """Import the file at ``path`` as a module, writing nothing to disk.

    Raises
    ------
    UserError
        With status 'import_error' and one paragraph that says what went wrong (and whether the file
        looks like Python 2), never a traceback.
    """
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file. Nothing was checked.", "import_error")
    for entry in reversed(_search_path(path)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else "twingrad_submission"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path} is not a Python source file. Nothing was checked.", "import_error")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so its own "import layers" finds this module, not a second copy
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ next to the file
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise UserError(_syntax_message(path, exc), "import_error") from None
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise UserError(_import_message(path, exc), "import_error") from None
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module


def _python2_sentence(source: str) -> str:
    evidence = python2_evidence(source)
    if not evidence:
        return ""
    return (f" The file looks like Python 2 code ({'; '.join(evidence)}); twingrad runs Python 3: write "
            "print(...) as a function, range for xrange, .items() for .iteritems(), 'except E as e:'.")


def import_paragraph(path: str, info: dict, source: str = "") -> str:
    """The paragraph shown when the module at ``path`` cannot be imported, from the exception's report.

    ``info`` is what :func:`exception_info` (or the runner) reports; ``source``
    the module's text, searched for Python 2 constructs.
    """
    type_name = str(info.get("type", "Exception"))[:100]
    if type_name in ("SyntaxError", "IndentationError", "TabError"):
        line = info.get("lineno")
        where = f" at line {line}" if isinstance(line, int) else ""
        text = str(info.get("text") or "").strip()
        code = f": {text}" if text else ""
        return printable(f"Cannot import {path}: {type_name}{where}{code} ({info.get('msg') or info.get('message')})."
                         f"{_python2_sentence(source)} Nothing was checked.")
    frames = info.get("frames") or []
    where = f" at line {frames[-1][1]}" if frames and isinstance(frames[-1], list) and len(frames[-1]) == 3 else ""
    message = str(info.get("message", "")).strip()
    text = message.splitlines()[0][:300] if message else ""
    result = (f"Cannot import {path}: {type_name}{where}{': ' + text if text else ''}"
              f"{python2_hint_for(type_name, info.get('name'))}{numpy2_hint(type_name, message)}.")
    if type_name == "ModuleNotFoundError" and info.get("name"):
        result += (f" The module {info['name']!r} is not installed here: install it, or remove the import if the "
                   "checked functions do not need it.")
    if type_name in ("NameError", "AttributeError"):
        result += _python2_sentence(source)
    return printable(result + " Nothing was checked.")


def _syntax_message(path: str, exc: SyntaxError) -> str:
    info = {"type": type(exc).__name__, "lineno": exc.lineno, "text": exc.text, "msg": exc.msg}
    return import_paragraph(path, info, _read(path))


def _import_message(path: str, exc: BaseException) -> str:
    return import_paragraph(path, exception_info(exc, path), _read(path))
