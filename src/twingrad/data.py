"""Data sets: the embedded 8x8 digits and the CIFAR-10 loader of CS231n.

Every ``load_digits`` / ``get_CIFAR10_data`` call returns the dict a ``Solver``
takes: ``X_train, y_train, X_val, y_val, X_test, y_test``, labels as int64.
"""

from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ._batch_pickle import BatchFormatError, load_batch_pickle

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"
_CIFAR_ROW = 3 * 32 * 32  # one image: 1024 red, then 1024 green, then 1024 blue bytes
_MAX_BATCH_BYTES = 2**30  # 5x the whole official training set in one file


def _check_count(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is a non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _splits(X_train, y_train, X_val, y_val, X_test, y_test, subtract_mean, dtype) -> Dict:
    """Subtract the training mean image (if asked), cast, and pack the Solver dict."""
    Xs = [np.asarray(X, dtype=np.float64) for X in (X_train, X_val, X_test)]
    if subtract_mean:
        # the mean comes from the training split only, so val/test stay unseen
        mean_image = Xs[0].mean(axis=0)
        Xs = [X - mean_image for X in Xs]
    Xs = [np.ascontiguousarray(X, dtype=dtype) for X in Xs]
    ys = [np.asarray(y, dtype=np.int64) for y in (y_train, y_val, y_test)]
    return {"X_train": Xs[0], "y_train": ys[0], "X_val": Xs[1], "y_val": ys[1],
            "X_test": Xs[2], "y_test": ys[2]}


def load_digits(num_validation: int = 200, num_test: int = 300, subtract_mean: bool = True,
                seed: int = 0, dtype: DTypeLike = np.float64) -> Dict[str, NDArray]:
    """Load scikit-learn's bundled 8x8 handwritten digits (1797 images, no download).

    Parameters
    ----------
    num_validation, num_test : int
        Sizes of the validation and test splits; the remaining images train.
        ``num_validation + num_test`` must be below 1797.
    subtract_mean : bool
        Subtract the mean training image from all three splits.
    seed : int
        Seed of the ``np.random.default_rng`` permutation that shuffles the
        images before splitting; the same seed gives the same splits.
    dtype : numpy dtype
        dtype of the ``X`` arrays.

    Returns
    -------
    dict
        ``X_train`` (N_train, 64), ``y_train`` (N_train,), ``X_val``
        (num_validation, 64), ``y_val``, ``X_test`` (num_test, 64), ``y_test``.
        Pixels are scaled from 0..16 to [0, 1] before the mean subtraction;
        labels are int64 in 0..9.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as err:
        raise ImportError("load_digits needs scikit-learn for its bundled digits data: "
                          "pip install scikit-learn") from err
    _check_count("num_validation", num_validation)
    _check_count("num_test", num_test)
    digits = _sk_load_digits()
    X = digits.data.reshape(len(digits.data), -1) / 16.0  # pixels are integers 0..16
    y = digits.target
    n = len(X)
    if num_validation + num_test >= n:
        raise ValueError(f"num_validation + num_test = {num_validation + num_test} leaves no "
                         f"training images: the digits data set has only {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = n - num_validation - num_test
    tr, va, te = np.split(order, [n_train, n_train + num_validation])
    return _splits(X[tr], y[tr], X[va], y[va], X[te], y[te], subtract_mean, dtype)


def _batch_field(batch: dict, key: str, filename: str):
    """Return ``batch[b'key']`` (official Python 2 pickle) or ``batch['key']``."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"CIFAR-10 batch {filename} has no {key.encode()!r} entry "
                     f"(keys found: {sorted(map(repr, batch))})")


def load_CIFAR_batch(filename: str | os.PathLike) -> Tuple[NDArray, NDArray]:
    """Load one batch file of the official ``cifar-10-batches-py`` folder.

    The official format is a Python 2 pickle. It is read with a restricted
    unpickler (`twingrad._batch_pickle`) that admits only what the official files
    contain (dicts, lists, bytes, str, ints and numpy's array recipe), so a crafted
    file is refused instead of running code.

    Parameters
    ----------
    filename : str or path
        A pickled dict with ``b'data'``, uint8 of shape (N, 3072) with the
        red, green and blue planes of each 32x32 image row-major one after
        the other, and ``b'labels'``, N ints in 0..9.

    Returns
    -------
    X : ndarray of float64, shape (N, 32, 32, 3)
        Images, channels last.
    Y : ndarray of int64, shape (N,)

    Raises
    ------
    FileNotFoundError
        If the file does not exist (the message names the file and its folder).
    ValueError
        If the file is not a CIFAR-10 batch: not a pickle, a pickle naming anything
        beyond numpy's array recipe, missing keys, a data size that is not a multiple
        of 3072, pixels that are NaN, infinite or outside 0..255, labels that are not
        integers, do not match the number of images or fall outside 0..9.
    """
    filename = os.fspath(filename)
    folder, name = os.path.split(os.path.abspath(filename))
    try:
        size = os.path.getsize(filename)
        if size > _MAX_BATCH_BYTES:
            raise ValueError(f"CIFAR-10 batch {filename} is {size} bytes; an official batch is about "
                             f"31 MB and this loader reads at most {_MAX_BATCH_BYTES} bytes per file")
        with open(filename, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"CIFAR-10 batch file {name!r} not found in folder {folder}") from None
    except IsADirectoryError:
        raise ValueError(f"CIFAR-10 batch {filename} is a directory, not a batch file") from None
    try:
        batch = load_batch_pickle(raw)
    except BatchFormatError as err:
        raise ValueError(f"CIFAR-10 batch {filename} refused: {err}") from None
    except MemoryError:
        raise
    except Exception as err:  # a damaged pickle can fail in many ways; all mean "corrupt"
        raise ValueError(f"CIFAR-10 batch {filename} could not be unpickled (truncated or "
                         f"corrupt?): {type(err).__name__}: {err}") from None
    if not isinstance(batch, dict):
        raise ValueError(f"CIFAR-10 batch {filename} holds a {type(batch).__name__}, not a dict")
    data = _batch_field(batch, "data", filename)
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "uif" or data.size % _CIFAR_ROW:
        what = f"of size {data.size} and dtype {data.dtype}" if isinstance(data, np.ndarray) else \
            f"of type {type(data).__name__}"
        raise ValueError(f"CIFAR-10 batch {filename}: data {what} is not a whole number of "
                         f"{_CIFAR_ROW}-byte images")
    n = data.size // _CIFAR_ROW
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"CIFAR-10 batch {filename}: {int(np.count_nonzero(~np.isfinite(data)))} pixels "
                         "are NaN or infinite")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise ValueError(f"CIFAR-10 batch {filename}: pixels must lie in 0..255, "
                         f"got values in [{data.min()}, {data.max()}]")
    Y = _labels(_batch_field(batch, "labels", filename), filename)
    if Y.shape != (n,):
        raise ValueError(f"CIFAR-10 batch {filename}: {Y.size} labels for {n} images")
    if n and (Y.min() < 0 or Y.max() > 9):
        raise ValueError(f"CIFAR-10 batch {filename}: labels outside 0..9 "
                         f"(min {Y.min()}, max {Y.max()})")
    # stored as (N, channel, row, col); CS231n works channels last
    X = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float64)
    return X, Y


def _labels(labels, filename) -> NDArray:
    """The labels as int64, refusing floats, bools, strings and anything else that is not an integer."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1:
        return labels.astype(np.int64)
    if isinstance(labels, list):
        odd = [v for v in labels if type(v) is not int]
        if not odd:
            return np.array(labels, dtype=np.int64) if labels else np.zeros(0, np.int64)
        raise ValueError(f"CIFAR-10 batch {filename}: labels must be integers, got {len(odd)} that are not, "
                         f"the first {odd[0]!r} ({type(odd[0]).__name__})")
    raise ValueError(f"CIFAR-10 batch {filename}: labels must be a list of integers, got {type(labels).__name__}")


def _cifar_folder(root: str | os.PathLike) -> str:
    """Return the ``cifar-10-batches-py`` folder: ``root`` itself or inside it."""
    root = os.fspath(root)
    inner = os.path.join(root, CIFAR_FOLDER)
    if os.path.isdir(inner):
        return inner
    names = (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)
    if os.path.isdir(root) and (os.path.basename(os.path.normpath(root)) == CIFAR_FOLDER
                                or any(os.path.exists(os.path.join(root, n)) for n in names)):
        return root
    raise FileNotFoundError(
        f"CIFAR-10 folder {CIFAR_FOLDER!r} not found: checked {os.path.abspath(root)} and "
        f"{os.path.abspath(inner)}. Download and extract "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")


def load_CIFAR10(root: str | os.PathLike) -> Tuple[NDArray, NDArray, NDArray, NDArray]:
    """Load all of CIFAR-10 from the official ``cifar-10-batches-py`` folder.

    ``root`` is that folder (as in CS231n) or the folder that contains it.
    The files are pickles, read without running code (see `load_CIFAR_batch`).

    Returns
    -------
    Xtr : ndarray of float64, shape (N_train, 32, 32, 3)
        ``data_batch_1`` .. ``data_batch_5`` in order (50000 images officially).
    Ytr : ndarray of int64, shape (N_train,)
    Xte : ndarray of float64, shape (N_test, 32, 32, 3)
        ``test_batch`` (10000 images officially).
    Yte : ndarray of int64, shape (N_test,)

    Raises
    ------
    FileNotFoundError
        If the folder or one of its six batch files is missing.
    ValueError
        If a batch file is corrupt (see `load_CIFAR_batch`).
    """
    folder = _cifar_folder(root)
    train = [load_CIFAR_batch(os.path.join(folder, name)) for name in CIFAR_TRAIN_FILES]
    Xte, Yte = load_CIFAR_batch(os.path.join(folder, CIFAR_TEST_FILE))
    Xtr = np.concatenate([X for X, _ in train])
    Ytr = np.concatenate([Y for _, Y in train])
    return Xtr, Ytr, Xte, Yte


def get_CIFAR10_data(root: str | os.PathLike, num_training: int = 49000,
                     num_validation: int = 1000, num_test: int = 1000,
                     subtract_mean: bool = True, dtype: DTypeLike = np.float32
                     ) -> Dict[str, NDArray]:
    """Load CIFAR-10 and split it as CS231n does, channels first.

    Parameters
    ----------
    root : str or path
        The ``cifar-10-batches-py`` folder or its parent (see `load_CIFAR10`).
    num_training, num_validation : int
        Training images are the first ``num_training`` of the training files;
        validation images the next ``num_validation``.
    num_test : int
        The first ``num_test`` images of ``test_batch``.
    subtract_mean : bool
        Subtract the mean training image from all three splits.
    dtype : numpy dtype
        dtype of the ``X`` arrays.

    Returns
    -------
    dict
        ``X_train`` (num_training, 3, 32, 32), ``y_train`` (num_training,),
        ``X_val`` (num_validation, 3, 32, 32), ``y_val``, ``X_test``
        (num_test, 3, 32, 32), ``y_test``; labels int64.

    Raises
    ------
    ValueError
        If more images are asked for than the files hold, or a count is negative.
    """
    for name, value in [("num_training", num_training), ("num_validation", num_validation),
                        ("num_test", num_test)]:
        _check_count(name, value)
    Xtr, Ytr, Xte, Yte = load_CIFAR10(root)
    if num_training + num_validation > len(Xtr):
        raise ValueError(f"num_training + num_validation = {num_training + num_validation} "
                         f"but the training files hold only {len(Xtr)} images")
    if num_test > len(Xte):
        raise ValueError(f"num_test = {num_test} but the test file holds only {len(Xte)} images")
    if subtract_mean and num_training == 0:
        raise ValueError("subtract_mean needs at least one training image (num_training=0)")
    val = slice(num_training, num_training + num_validation)
    # (N, 32, 32, 3) -> (N, 3, 32, 32): the layout the networks take
    cf = [X.transpose(0, 3, 1, 2) for X in (Xtr[:num_training], Xtr[val], Xte[:num_test])]
    return _splits(cf[0], Ytr[:num_training], cf[1], Ytr[val], cf[2], Yte[:num_test],
                   subtract_mean, dtype)
