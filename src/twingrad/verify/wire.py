"""The judge/runner wire format: framed messages of a small JSON header plus ``.npy`` payloads.

Shared by both sides, so it imports only the standard library and numpy: the
runner loads this file by path and never imports the ``twingrad`` package.

A message on the wire::

    b"TGW1" | body length (8 bytes, big-endian) | header length (4 bytes) | header JSON | array bytes

The header's ``"blobs"`` describes each array that follows as ``[dtype, shape,
nbytes]`` (numeric dtypes only, as ``numpy.dtype.str`` spells them). A value
inside the header is JSON, with tagged objects for what JSON lacks:

================== ==============================================================
``{"$a": k}``      the k-th array (``"s": true``: a numpy scalar, such as ``np.float64``)
``{"$f": "nan"}``  a float JSON cannot hold (``nan``, ``inf``, ``-inf``)
``{"$dt": "<f8"}`` a numeric dtype (``"type": true``: the scalar type, such as ``np.float64``)
``{"$t": [...]}``  a tuple; ``{"$l": [...]}`` a list; ``{"$d": [[key, value], ...]}`` a dict with str keys
``{"$o": T, "r": path}`` an object of type ``T`` that stays in the runner; ``path`` refers to it
``{"$r": path}``   (judge -> runner) that object, or a part of an earlier result, passed back by reference
================== ==============================================================

Reading never trusts the sender: lengths are capped before anything is
allocated, an array is rebuilt from raw bytes only after its dtype (numbers
only: no objects, so nothing to unpickle) and its shape are checked against
its length, nesting and element counts are bounded. Whatever
breaks a rule raises :class:`Malformed`.
"""

from __future__ import annotations

import json
import math
import re
import struct

import numpy as np

MAGIC = b"TGW1"
MAX_MESSAGE = 64 * 2**20  #: bytes in one message: the judge never holds more from a runner
MAX_HEADER = 2**20
MAX_DEPTH = 24
MAX_ITEMS = 100_000
MAX_TEXT = 20_000  #: characters of a string value (exception messages are cut, not refused)
_PREFIX = struct.Struct(">4sQ")
_HEADER_LENGTH = struct.Struct(">I")
_NUMERIC_KINDS = "biufc"
_DTYPE = re.compile(r"[<>|=]?[biufc](1|2|4|8|16)")


class Malformed(Exception):
    """A message that breaks the format: the sender's fault, never the reader's crash."""


# -- encoding ---------------------------------------------------------------------------


class Encoder:
    """Turns a value into JSON plus arrays; ``objects(value, path)`` decides what stays behind."""

    def __init__(self, keep_object=None):
        self.arrays: list[np.ndarray] = []
        self.keep_object = keep_object  # (value, path) -> placeholder dict, for what cannot travel

    def encode(self, value, path: tuple = (), depth: int = 0):
        if depth > MAX_DEPTH:
            return self._object(value, path)
        if value is None or isinstance(value, (bool, str)):
            return value[:MAX_TEXT] if isinstance(value, str) else value
        # Exact types only: a subclass of int or float may redefine abs() or float() (it stays behind).
        if type(value) is int:
            if abs(value) < 2**63:
                return value
            try:
                value = float(value)  # JSON integers stay below 2**63: a larger one travels as a float
            except OverflowError:
                value = math.inf if value > 0 else -math.inf
        if type(value) is float or type(value) is np.float64:
            value = float(value)
            return value if math.isfinite(value) else {"$f": repr(value)}
        if isinstance(value, (np.ndarray, np.generic)):
            array = np.asarray(value)
            if array.dtype.kind in _NUMERIC_KINDS:
                # not np.ascontiguousarray: it turns a 0-d array (a float32 loss) into shape (1,)
                self.arrays.append(array if array.flags.c_contiguous else array.copy(order="C"))
                tag = {"$a": len(self.arrays) - 1}
                if not isinstance(value, np.ndarray):
                    tag["s"] = True
                return tag
            return self._object(value, path)
        if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
            dtype = np.dtype(value)
            if _DTYPE.fullmatch(dtype.str):
                return {"$dt": dtype.str, "type": not isinstance(value, np.dtype)}
            return self._object(value, path)
        if type(value) in (tuple, list):
            key = "$t" if type(value) is tuple else "$l"
            if len(value) > MAX_ITEMS:
                return self._object(value, path)
            return {key: [self.encode(v, path + (i,), depth + 1) for i, v in enumerate(value)]}
        if type(value) is dict and all(type(k) is str for k in value) and len(value) <= MAX_ITEMS:
            return {"$d": [[k, self.encode(v, path + (k,), depth + 1)] for k, v in value.items()]}
        return self._object(value, path)

    def _object(self, value, path):
        if self.keep_object is None:
            raise TypeError(f"cannot send a {type(value).__name__}")
        return self.keep_object(value, path)


def pack(header: dict, arrays: list[np.ndarray]) -> bytes:
    """One framed message."""
    described = [[a.dtype.str, list(a.shape), a.nbytes] for a in arrays]
    head = json.dumps({**header, "blobs": described}, allow_nan=False).encode()
    body = b"".join([_HEADER_LENGTH.pack(len(head)), head, *(a.tobytes() for a in arrays)])
    return _PREFIX.pack(MAGIC, len(body)) + body


# -- decoding -----------------------------------------------------------------------------


def parse_prefix(prefix: bytes, limit: int = MAX_MESSAGE) -> int:
    """The body length announced by a message's first 12 bytes."""
    magic, length = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise Malformed(f"a message must start with {MAGIC!r}, not {magic!r}")
    if length > limit:
        raise Malformed(f"a message of {length} bytes is over the limit of {limit}")
    return length


PREFIX_SIZE = _PREFIX.size


def unpack(body: bytes) -> tuple[dict, list[np.ndarray]]:
    """The header and the arrays of a message body (after its prefix)."""
    if len(body) < _HEADER_LENGTH.size:
        raise Malformed("a message body shorter than its header length")
    (length,) = _HEADER_LENGTH.unpack_from(body)
    if length > MAX_HEADER or _HEADER_LENGTH.size + length > len(body):
        raise Malformed(f"a header of {length} bytes does not fit")
    try:
        header = json.loads(body[_HEADER_LENGTH.size:_HEADER_LENGTH.size + length])
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"the header is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), list):
        raise Malformed("the header is not an object with a 'blobs' list")
    offset, arrays = _HEADER_LENGTH.size + length, []
    for blob in header["blobs"]:
        array, size = _read_array(blob, body, offset)
        arrays.append(array)
        offset += size
    if offset != len(body):
        raise Malformed("bytes left over after the last array")
    return header, arrays


def _read_array(blob, body: bytes, offset: int) -> tuple[np.ndarray, int]:
    """The array a blob description ``[dtype, shape, nbytes]`` announces at ``offset``, and its size."""
    if not (isinstance(blob, list) and len(blob) == 3 and isinstance(blob[0], str) and isinstance(blob[1], list)
            and isinstance(blob[2], int)):
        raise Malformed("an array description is not [dtype, shape, nbytes]")
    text, shape, size = blob
    if not _DTYPE.fullmatch(text) or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n for n in shape):
        raise Malformed(f"an array of dtype {text[:20]!r} or shape {str(shape)[:40]} (only numbers travel)")
    dtype = np.dtype(text)
    if len(shape) > 32 or math.prod(shape) * dtype.itemsize != size or offset + size > len(body):
        raise Malformed("an array's size does not match its shape, or does not fit in the message")
    return np.frombuffer(body, dtype, math.prod(shape), offset).reshape(shape).copy(), size


def decode(value, arrays: list[np.ndarray], make_object=None, make_container=None, path: tuple = ()):
    """The value a header holds, with arrays put back; tagged objects through the given factories.

    ``make_object(type_name, path)`` builds what stands for an object left in
    the runner (``type_name`` None: a reference sent back); ``make_container(value, path)``
    may wrap a decoded tuple, list or dict (the judge attaches its path, to pass it back).
    ``path`` is where ``value`` sits in the runner's table of results.
    """
    if len(path) > MAX_DEPTH + 3:
        raise Malformed("nesting too deep")
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise Malformed("a string over the length limit")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise Malformed("an integer out of range (an encoder sends those as floats)")
        return value
    if isinstance(value, list):
        raise Malformed("a bare JSON list (lists and tuples are tagged)")
    if not isinstance(value, dict) or len(value) not in (1, 2):
        raise Malformed(f"an untagged {type(value).__name__}")
    if "$a" in value:
        index = value["$a"]
        if not isinstance(index, int) or not 0 <= index < len(arrays):
            raise Malformed("an array reference out of range")
        array = arrays[index]
        return array[()] if value.get("s") is True and array.ndim == 0 else array
    if "$dt" in value:
        if not isinstance(value["$dt"], str) or not _DTYPE.fullmatch(value["$dt"]):
            raise Malformed("a dtype that is not a number's")
        dtype = np.dtype(value["$dt"])
        return dtype.type if value.get("type") is True else dtype
    if "$f" in value:
        if value["$f"] not in ("nan", "inf", "-inf"):
            raise Malformed(f"an unknown float {value['$f']!r}")
        return float(value["$f"])
    if "$o" in value:
        path = value.get("r")
        if not isinstance(value["$o"], str) or not _valid_path(path):
            raise Malformed("an object placeholder without a type name and a path")
        if make_object is None:
            raise Malformed("an object placeholder where none may be")
        return make_object(value["$o"][:200], tuple(path))
    if "$r" in value:
        if not _valid_path(value["$r"]) or make_object is None:
            raise Malformed("a reference where none may be")
        return make_object(None, tuple(value["$r"]))
    for key, kind in (("$t", tuple), ("$l", list)):
        if key in value:
            items = value[key]
            if not isinstance(items, list) or len(items) > MAX_ITEMS:
                raise Malformed(f"a malformed {kind.__name__}")
            return _wrap(kind(decode(v, arrays, make_object, make_container, path + (i,))
                              for i, v in enumerate(items)), make_container, path)
    if "$d" in value:
        items = value["$d"]
        if not isinstance(items, list) or len(items) > MAX_ITEMS or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in items):
            raise Malformed("a malformed dict")
        return _wrap({k: decode(v, arrays, make_object, make_container, path + (k,)) for k, v in items},
                     make_container, path)
    raise Malformed(f"an unknown tag {sorted(value)}")


def _wrap(value, make_container, path):
    return make_container(value, path) if make_container else value


def _valid_path(path) -> bool:
    return (isinstance(path, list) and 0 < len(path) <= MAX_DEPTH + 2
            and all(isinstance(p, (int, str)) and not isinstance(p, bool) for p in path))
