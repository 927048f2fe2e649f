"""Read the pickles of CIFAR-10's python batches without running the code a pickle can name.

The official batches were written by Python 2's ``cPickle`` (protocol 2) and hold
a dict with ``str`` keys, lists of ``int`` and ``str`` and one numpy array. Read
with ``encoding='bytes'``, a Python 2 ``str`` arrives as ``bytes``. Their pickled
array is the old numpy recipe, which names only three globals::

    numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')  # an empty array ...
        .__setstate__((1, shape, dtype, is_fortran, raw_bytes))    # ... filled by BUILD
    numpy.dtype(b'u1', 0, 1).__setstate__((3, b'|', None, None, None, -1, -1, 0))

``find_class`` admits exactly those names (and ``numpy._core.multiarray``, where
NumPy 2 writes ``_reconstruct``, and ``_codecs.encode(text, 'latin1')``, which is
how Python 3 writes ``bytes`` at protocol 2, for batches re-saved by Python 3), and hands out inert recipe objects instead of
numpy's callables: numpy never sees a value from the file before it is checked,
so a crafted file cannot allocate a huge array, build an object array or call
anything else. Everything else a pickle can name is refused.
"""

from __future__ import annotations

import io
import pickle

import numpy as np

#: Numeric dtypes a batch's array may have (the official files use uint8).
_DTYPES = {"u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8", "f4", "f8"}
_BYTE_ORDERS = {"|", "<", ">", "="}
_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


class BatchFormatError(ValueError):
    """A batch pickle holds something the official CIFAR-10 files never do."""


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin1")
    return value if isinstance(value, str) else None


class _NdarrayName:
    """Stands for ``numpy.ndarray`` inside the pickle: only `_ArrayRecipe` accepts it."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayName()


class _DtypeRecipe:
    """``numpy.dtype(spec, align, copy)`` plus its BUILD state, checked before numpy is asked."""

    name = None  # stays None when a NEWOBJ opcode skips __init__

    def __init__(self, spec=None, align=0, copy=1, *rest):
        name = _text(spec)
        if name not in _DTYPES or rest or align not in (0, False) or copy not in (1, True):
            raise BatchFormatError(f"dtype {spec!r} (align={align!r}) is not a plain numeric dtype")
        self.name, self.order = name, "|"

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) < 8 or state[0] not in (3, 4):
            raise BatchFormatError(f"unexpected dtype state {state!r:.80}")
        order = _text(state[1])
        if order not in _BYTE_ORDERS or any(part is not None for part in state[2:5]):
            raise BatchFormatError(f"dtype state {state!r:.80} describes a structured or sub-array dtype")
        self.order = order

    def dtype(self) -> np.dtype:
        if self.name is None:
            raise BatchFormatError("a dtype was created without its type code")
        order = "=" if self.order == "|" else self.order
        return np.dtype(order + self.name)


class _ArrayRecipe:
    """``_reconstruct(ndarray, (0,), b'b')`` plus its BUILD state: an array made only from checked bytes."""

    array = None

    def __init__(self, subtype=None, shape=None, tag=None, *rest):
        if subtype is not _NDARRAY or shape != (0,) or _text(tag) != "b" or rest:
            raise BatchFormatError(f"unexpected array recipe _reconstruct({subtype!r}, {shape!r}, {tag!r})")

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise BatchFormatError(f"unexpected array state (version {state[0] if isinstance(state, tuple) and state else None!r})")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise BatchFormatError(f"array shape {shape!r:.80} is not a tuple of sizes")
        if not isinstance(dtype, _DtypeRecipe) or fortran not in (0, 1) or not isinstance(raw, bytes):
            raise BatchFormatError("array state is not (version, shape, dtype, is_fortran, raw bytes)")
        dt = dtype.dtype()
        expected = int(np.prod(shape, dtype=object)) * dt.itemsize
        if len(raw) != expected:
            raise BatchFormatError(f"array of shape {shape} and dtype {dt} needs {expected} bytes, the file has {len(raw)}")
        self.array = np.frombuffer(raw, dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _latin1(text=None, encoding=None, *rest) -> bytes:
    """``_codecs.encode`` restricted to what Python 3's protocol-2 ``bytes`` need."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
        raise BatchFormatError(f"_codecs.encode is admitted only as (str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if (module, name) in _RECONSTRUCT:
            return _ArrayRecipe
        if (module, name) == ("numpy", "ndarray"):
            return _NDARRAY
        if (module, name) == ("numpy", "dtype"):
            return _DtypeRecipe
        raise BatchFormatError(f"refusing to load {module}.{name}: CIFAR-10 batches contain only numpy arrays, "
                               "dicts, lists, bytes, str and ints")

    def persistent_load(self, pid):
        raise BatchFormatError("refusing a persistent id: CIFAR-10 batches have none")


def _finish(value, depth: int = 0):
    """Replace array recipes by their arrays; refuse anything outside the batch vocabulary."""
    if isinstance(value, _ArrayRecipe):
        if value.array is None:
            raise BatchFormatError("an array recipe was never given its data")
        return value.array
    if isinstance(value, (bytes, str, int, float)) and not isinstance(value, bool) or value is None:
        return value
    if depth < 2 and isinstance(value, dict):
        if not all(type(k) in (bytes, str) for k in value):
            raise BatchFormatError("dict keys must be bytes or str")
        return {k: _finish(v, depth + 1) for k, v in value.items()}
    if depth < 2 and isinstance(value, list):
        return [v if type(v) in (int, bytes, str) else _finish(v, depth + 1) for v in value]
    raise BatchFormatError(f"unexpected {type(value).__name__} at nesting level {depth}")


def load_batch_pickle(raw: bytes):
    """Unpickle the bytes of one batch file with the restricted vocabulary above.

    Raises
    ------
    BatchFormatError
        If the pickle names anything but numpy's array and dtype recipes, or holds
        anything but dicts, lists, bytes, str, ints, floats and None.
    pickle.UnpicklingError, EOFError, ...
        If the bytes are not a well-formed pickle at all.
    """
    # From memory, not the file: a pickle that declares a huge string then fails as
    # truncated instead of asking the file object for that many bytes.
    return _finish(_Unpickler(io.BytesIO(raw), encoding="bytes").load())
