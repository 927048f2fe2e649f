"""CIFAR-10 batch files are untrusted: the loader admits only what the official Python 2 pickles contain.

The batches here are written opcode by opcode in the official format (Python 2
``cPickle``, protocol 2: ``str`` as SHORT_BINSTRING/BINSTRING, numpy's array as
``numpy.core.multiarray._reconstruct`` + BUILD), not by Python 3's pickler.
"""

import os
import pickle
import shlex
import struct
import warnings

import numpy as np
import pytest

from twingrad import data


def _str(b: bytes) -> bytes:
    """A Python 2 ``str``: what ``pickle.load(..., encoding='bytes')`` turns into bytes."""
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b


def _int(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    return b"J" + struct.pack("<i", i)


def _array(a: np.ndarray) -> bytes:
    order = {"<": b"<", ">": b">", "|": b"|", "=": b"<"}[a.dtype.byteorder]
    code = f"{a.dtype.kind}{a.dtype.itemsize}".encode()
    dtype = (b"cnumpy\ndtype\n" + _str(code) + _int(0) + _int(1) + b"\x87R"
             + b"(" + _int(3) + _str(order) + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff" + _int(0) + b"tb")
    shape = b"(" + b"".join(_int(n) for n in a.shape) + b"t"
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _int(0) + b"\x85" + _str(b"b") + b"\x87R"
            + b"(" + _int(1) + shape + dtype + b"\x89" + _str(a.tobytes()) + b"tb")


def _value(v) -> bytes:
    if isinstance(v, bytes) and v.startswith(b"\x80\x02") and v.endswith(b"."):
        return v[2:-1]  # an already pickled object, spliced in
    if isinstance(v, np.ndarray):
        return _array(v)
    if isinstance(v, bytes):
        return _str(v)
    if isinstance(v, list):
        return b"](" + b"".join(_value(x) for x in v) + b"e"
    if type(v) is int:
        return _int(v)
    if isinstance(v, float):
        return b"G" + struct.pack(">d", v)
    raise TypeError(type(v))


def py2_batch(batch: dict) -> bytes:
    """``cPickle.dumps(batch, 2)`` as Python 2 wrote the official files."""
    items = b"".join(_str(k) + _value(v) for k, v in batch.items())
    return b"\x80\x02}(" + items + b"u."


def official(changes=None, n=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    batch.update(changes or {})
    return batch


def test_the_official_python2_format_loads(tmp_path):
    batch = official()
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(batch))
    with warnings.catch_warnings():  # numpy 2 warns about the numpy.core name the old files use
        warnings.simplefilter("ignore", DeprecationWarning)
        plain = pickle.loads(path.read_bytes(), encoding="bytes")  # the writer is faithful: plain pickle agrees
    np.testing.assert_array_equal(plain[b"data"], batch[b"data"])
    X, Y = data.load_CIFAR_batch(path)
    # image 1, row 2, column 3, blue: plane 2 of row 1 of the stored (N, 3072) layout
    assert X[1, 2, 3, 2] == batch[b"data"][1, 2 * 1024 + 2 * 32 + 3]
    np.testing.assert_array_equal(Y, batch[b"labels"])


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Evaluates:
    def __reduce__(self):
        return eval, ("__import__('os').getcwd()",)


def _huge_reconstruct():
    # _reconstruct(ndarray, (10**10,), 'b'): numpy would allocate 10 GB before any check
    return b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\xe4\x0bT\x85U\x01b\x87R."


def _object_dtype():
    return b"\x80\x02cnumpy\ndtype\nU\x02O8K\x00K\x01\x87R."


@pytest.mark.parametrize("make, refused", [
    (lambda marker: pickle.dumps(_RunsCommand(f"echo pwned > {shlex.quote(str(marker))}"), protocol=2),
     r"refusing to load posix\.system"),
    (lambda marker: pickle.dumps(_Evaluates(), protocol=2), r"refusing to load (__builtin__|builtins)\.eval"),
    (lambda marker: _huge_reconstruct(), r"unexpected array recipe"),
    (lambda marker: _object_dtype(), r"dtype b'O8'.*not a plain numeric dtype"),
])
def test_a_batch_that_names_code_is_refused_and_nothing_runs(tmp_path, make, refused):
    marker = tmp_path / "marker"
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(official({b"data": make(marker)})))
    with pytest.raises(ValueError, match=r"data_batch_1 refused: " + refused):
        data.load_CIFAR_batch(path)
    assert not marker.exists()


@pytest.mark.parametrize("pixels, message", [
    (np.nan, r"1 pixels are NaN or infinite"),
    (np.inf, r"1 pixels are NaN or infinite"),
    (256.0, r"pixels must lie in 0\.\.255, got values in \[.*, 256\.0\]"),
    (-1.0, r"pixels must lie in 0\.\.255, got values in \[-1\.0, "),
])
def test_pixels_that_are_not_0_to_255_are_errors(tmp_path, pixels, message):
    images = np.full((4, 3072), 7.0)
    images[2, 100] = pixels
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(official({b"data": images})))
    with pytest.raises(ValueError, match=r"data_batch_1: " + message):
        data.load_CIFAR_batch(path)


@pytest.mark.parametrize("labels, message", [
    ([1, 2, 3.5, 4], r"labels must be integers, got 1 that are not, the first 3\.5 \(float\)"),
    ([1, 2, b"3", 4], r"the first b'3' \(bytes\)"),
    (b"1234", r"labels must be a list of integers, got bytes"),
])
def test_labels_that_are_not_integers_are_errors(tmp_path, labels, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_batch(official({b"labels": labels})))
    with pytest.raises(ValueError, match=message):
        data.load_CIFAR_batch(path)
