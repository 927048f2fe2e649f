"""Data loaders: the embedded digits and CIFAR-10 read from a tiny fake folder."""

import os
import pickle
import re
import sys

import numpy as np
import pytest

from twingrad import data

KEYS = {"X_train", "y_train", "X_val", "y_val", "X_test", "y_test"}

# ---------------------------------------------------------------- digits


def test_digits_splits_keys_shapes_dtypes():
    d = data.load_digits()
    assert set(d) == KEYS
    assert d["X_train"].shape == (1797 - 200 - 300, 64)
    assert d["X_val"].shape == (200, 64) and d["X_test"].shape == (300, 64)
    assert [d[k].shape for k in ("y_train", "y_val", "y_test")] == [(1297,), (200,), (300,)]
    assert all(d[k].dtype == np.float64 for k in ("X_train", "X_val", "X_test"))
    assert all(d[k].dtype == np.int64 for k in ("y_train", "y_val", "y_test"))
    assert set(np.unique(d["y_train"])) == set(range(10))

    d32 = data.load_digits(num_validation=10, num_test=20, dtype=np.float32)
    assert d32["X_train"].shape == (1767, 64) and d32["X_val"].dtype == np.float32


def test_digits_scaled_and_mean_subtracted_with_train_mean():
    raw = data.load_digits(subtract_mean=False)
    pixels = np.concatenate([raw["X_train"], raw["X_val"], raw["X_test"]]) * 16
    assert pixels.min() == 0 and pixels.max() == 16
    np.testing.assert_array_equal(pixels, np.round(pixels))  # /16 of integers 0..16

    d = data.load_digits()
    np.testing.assert_allclose(d["X_train"].mean(axis=0), 0.0, atol=1e-12)
    mean = raw["X_train"].mean(axis=0)
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(d[f"X_{split}"], raw[f"X_{split}"] - mean, atol=1e-12)
        np.testing.assert_array_equal(d[f"y_{split}"], raw[f"y_{split}"])


def test_digits_splits_partition_the_data_set():
    # every original (image, label) appears exactly once across the three splits
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    original = sklearn_datasets.load_digits()
    d = data.load_digits(subtract_mean=False)
    X = np.concatenate([d["X_train"], d["X_val"], d["X_test"]]) * 16
    y = np.concatenate([d["y_train"], d["y_val"], d["y_test"]])
    ours = np.column_stack([np.round(X), y]).astype(np.int64)
    theirs = np.column_stack([original.data, original.target]).astype(np.int64)
    ours, theirs = (a[np.lexsort(a.T[::-1])] for a in (ours, theirs))  # sort rows
    np.testing.assert_array_equal(ours, theirs)


def test_digits_deterministic_for_a_seed():
    a, b, c = data.load_digits(seed=3), data.load_digits(seed=3), data.load_digits(seed=4)
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["y_train"], c["y_train"])


@pytest.mark.parametrize("nv, nt", [(1000, 797), (1797, 0), (0, 2000)])
def test_digits_rejects_splits_that_leave_no_training_data(nv, nt):
    with pytest.raises(ValueError, match=r"no training images.*1797"):
        data.load_digits(num_validation=nv, num_test=nt)


def test_digits_rejects_negative_counts():
    with pytest.raises(ValueError, match="num_test must be a non-negative integer"):
        data.load_digits(num_test=-1)


def test_digits_without_sklearn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match="scikit-learn"):
        data.load_digits()


# ---------------------------------------------------------------- CIFAR-10

ROWS = 20  # images per training batch; the test batch holds TEST_ROWS
TEST_ROWS = 12


def pixel(i, c, r, k):
    """The value the fake files store for image i, channel c, row r, column k."""
    return (i + 3 * c + 5 * r + 7 * k) % 256


def fake_batch(first, n):
    """Images first..first+n-1 in the official layout: per row, 1024 R then G then B."""
    j = np.arange(3072)
    c, r, k = j // 1024, (j % 1024) // 32, j % 32
    i = np.arange(first, first + n)[:, None]
    rows = pixel(i, c, r, k).astype(np.uint8)
    labels = [x % 10 for x in range(first, first + n)]
    return {b"batch_label": b"fake", b"data": rows, b"labels": labels}


def write(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are Python 2 pickles


@pytest.fixture
def cifar_root(tmp_path):
    """tmp_path/cifar-10-batches-py with 5 x ROWS training images and TEST_ROWS test images."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(5):
        write(folder / f"data_batch_{b + 1}", fake_batch(b * ROWS, ROWS))
    write(folder / "test_batch", fake_batch(1000, TEST_ROWS))
    return folder


def expected_images(first, n):
    """(n, 32, 32, 3) built element by element from pixel(), independently of the loader."""
    i, r, k, c = np.indices((n, 32, 32, 3))
    return pixel(i + first, c, r, k).astype(np.float64)


def test_batch_round_trip_puts_pixels_at_row_col_channel(cifar_root):
    X, Y = data.load_CIFAR_batch(cifar_root / "data_batch_2")
    assert X.shape == (ROWS, 32, 32, 3) and X.dtype == np.float64 and Y.dtype == np.int64
    np.testing.assert_array_equal(X, expected_images(ROWS, ROWS))
    np.testing.assert_array_equal(Y, np.arange(ROWS, 2 * ROWS) % 10)
    # one pixel spelled out: image 0 of batch 2 is image 20; row 1, col 2, green
    assert X[0, 1, 2, 1] == 20 + 3 * 1 + 5 * 1 + 7 * 2


@pytest.mark.parametrize("inner", [True, False])
def test_load_cifar10_concatenates_batches_in_order(cifar_root, inner):
    root = cifar_root if inner else cifar_root.parent  # the folder itself or its parent
    Xtr, Ytr, Xte, Yte = data.load_CIFAR10(root)
    assert Xtr.shape == (5 * ROWS, 32, 32, 3) and Xte.shape == (TEST_ROWS, 32, 32, 3)
    np.testing.assert_array_equal(Xtr, expected_images(0, 5 * ROWS))
    np.testing.assert_array_equal(Ytr, np.arange(5 * ROWS) % 10)
    np.testing.assert_array_equal(Xte, expected_images(1000, TEST_ROWS))
    np.testing.assert_array_equal(Yte, np.arange(1000, 1000 + TEST_ROWS) % 10)


def test_get_cifar10_data_splits_channels_first(cifar_root):
    d = data.get_CIFAR10_data(cifar_root, num_training=70, num_validation=20, num_test=10,
                              subtract_mean=False)
    assert set(d) == KEYS
    assert d["X_train"].shape == (70, 3, 32, 32) and d["X_train"].dtype == np.float32
    assert d["X_val"].shape == (20, 3, 32, 32) and d["X_test"].shape == (10, 3, 32, 32)
    assert d["y_val"].dtype == np.int64
    channels_first = (0, 3, 1, 2)
    np.testing.assert_array_equal(d["X_train"], expected_images(0, 70).transpose(channels_first))
    # validation: the 20 training-file images right after the first 70
    np.testing.assert_array_equal(d["X_val"], expected_images(70, 20).transpose(channels_first))
    np.testing.assert_array_equal(d["X_test"], expected_images(1000, 10).transpose(channels_first))
    np.testing.assert_array_equal(d["y_val"], np.arange(70, 90) % 10)
    assert d["X_train"][0, 2, 3, 4] == pixel(0, 2, 3, 4)  # [image, channel, row, col]


def test_get_cifar10_data_subtracts_the_training_mean(cifar_root):
    kw = dict(num_training=70, num_validation=20, num_test=10)
    raw = data.get_CIFAR10_data(cifar_root, subtract_mean=False, dtype=np.float64, **kw)
    d = data.get_CIFAR10_data(cifar_root, **kw)
    np.testing.assert_allclose(d["X_train"].mean(axis=0), 0.0, atol=1e-4)
    mean = raw["X_train"].mean(axis=0)
    for split in ("train", "val", "test"):
        np.testing.assert_allclose(d[f"X_{split}"], raw[f"X_{split}"] - mean, atol=1e-4)


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    expected = r"cifar-10-batches-py.*" + re.escape(str(missing))
    with pytest.raises(FileNotFoundError, match=expected):
        data.load_CIFAR10(missing)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        data.get_CIFAR10_data(tmp_path)  # exists, but holds no CIFAR folder


def test_missing_batch_file(cifar_root):
    os.remove(cifar_root / "data_batch_3")
    with pytest.raises(FileNotFoundError, match=r"'data_batch_3'.*" + re.escape(str(cifar_root))):
        data.load_CIFAR10(cifar_root.parent)


def _corrupt(folder, name, payload):
    path = folder / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        write(path, payload)


def _half_file(folder):
    return (folder / "data_batch_1").read_bytes()[:5000]


@pytest.mark.parametrize("payload, message", [
    (None, r"data_batch_2.*could not be unpickled"),  # truncated copy of a real batch
    (b"this is not a pickle", r"data_batch_2.*could not be unpickled"),
    ({b"images": np.zeros((ROWS, 3072), np.uint8), b"labels": [0] * ROWS},
     r"data_batch_2 has no b'data' entry"),
    ({b"data": np.zeros((ROWS, 3072), np.uint8)}, r"data_batch_2 has no b'labels' entry"),
    ({b"data": np.zeros((ROWS, 3071), np.uint8), b"labels": [0] * ROWS},
     r"data_batch_2.*not a whole number of 3072-byte images"),
    ({b"data": np.zeros((ROWS, 3072), np.uint8), b"labels": [0] * (ROWS - 1)},
     rf"data_batch_2.*{ROWS - 1} labels for {ROWS} images"),
    ({b"data": np.zeros((ROWS, 3072), np.uint8), b"labels": [0] * (ROWS - 1) + [10]},
     r"data_batch_2.*labels outside 0\.\.9"),
    ([1, 2, 3], r"data_batch_2 holds a list, not a dict"),
])
def test_corrupt_batch_file(cifar_root, payload, message):
    _corrupt(cifar_root, "data_batch_2", _half_file(cifar_root) if payload is None else payload)
    with pytest.raises(ValueError, match=message):
        data.load_CIFAR10(cifar_root)


def test_too_many_requested(cifar_root):
    with pytest.raises(ValueError, match=r"= 110 but the training files hold only 100"):
        data.get_CIFAR10_data(cifar_root, num_training=90, num_validation=20, num_test=5)
    too_many_test = rf"num_test = 13 but the test file holds only {TEST_ROWS}"
    with pytest.raises(ValueError, match=too_many_test):
        data.get_CIFAR10_data(cifar_root, num_training=10, num_validation=5, num_test=13)
    with pytest.raises(ValueError, match="num_validation must be a non-negative integer"):
        data.get_CIFAR10_data(cifar_root, num_validation=-1)
