"""Checkpoints from elsewhere are untrusted: sizes, values and paths in the file are checked, never obeyed."""

import json
import os
import re
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest

from twingrad.checkpoint import Checkpoint
from twingrad.data import load_digits
from twingrad.fc_net import FullyConnectedNet
from twingrad.solver import Solver

GiB = 1 << 30


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def net():
    return FullyConnectedNet([20], input_dim=64, normalization="batchnorm", seed=1, weight_scale=0.1)


def solver(data, **kwargs):
    args = {"update_rule": "adam", "optim_config": {"learning_rate": 1e-3}, "num_epochs": 1, "batch_size": 200,
            "seed": 0, "verbose": False, **kwargs}
    return Solver(net(), data, **args)


@pytest.fixture
def saved(digits, tmp_path):
    solver(digits, checkpoint_name=tmp_path / "run").train()
    return tmp_path / "run_epoch_1.npz"


def members(path) -> dict:
    """The archive's members as raw bytes, in order."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def zip_bytes(entries: list) -> bytes:
    """A zip written by hand: entries are (name, method, crc, stored bytes, declared uncompressed size)."""
    local, central = b"", b""
    for name, method, crc, stored, size in entries:
        name = name.encode()
        offset = len(local)
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(stored), size,
                             len(name), 0) + name + stored
        central += struct.pack("<4s6H3I5HII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(stored), size,
                               len(name), 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    return local + central + end


def deflated_zeros(header: bytes, zeros: int):
    """(crc, raw deflate stream) of ``header + bytes(zeros)``, built without compressing ``zeros`` bytes.

    After a full flush deflate starts afresh, so every 16 MiB block of zeros compresses to the same bytes.
    """
    block = 1 << 24
    assert zeros % block == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = compressor.compress(header) + compressor.flush(zlib.Z_FULL_FLUSH)
    zero_block = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = head + zero_block * (zeros // block) + compressor.flush()
    crc = zlib.crc32(header)
    chunk = bytes(block)
    for _ in range(zeros // block):
        crc = zlib.crc32(chunk, crc)
    return crc, stream


def npy_header(shape, descr="<f8") -> bytes:
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def with_bomb(path, member: str, declared: str) -> None:
    """Replace ``member`` of the checkpoint by 1 GiB of zeros: declared by the zip header, or only by the npy header."""
    entries = []
    for name, raw in members(path).items():
        if name == member + ".npy":
            header = npy_header((GiB // 8,))
            if declared == "zip":
                crc, stream = deflated_zeros(header, GiB)
                entries.append((name, 8, crc, stream, len(header) + GiB))
                continue
            raw = header + bytes(64)  # an honest zip size, but the npy header claims 1 GiB
        entries.append((name, 0, zlib.crc32(raw), raw, len(raw)))
    path.write_bytes(zip_bytes(entries))


# Loaded in a child whose address space is capped at 600 MiB: an implementation that reads first
# and checks later dies there of MemoryError (and fails the test) instead of taking the machine's RAM.
_LOAD_CAPPED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (600 << 20, 600 << 20))
from twingrad.fc_net import FullyConnectedNet
from twingrad.checkpoint import Checkpoint
model = FullyConnectedNet([20], input_dim=64, normalization="batchnorm", seed=1, weight_scale=0.1)
try:
    Checkpoint.load(sys.argv[1], model=model)
except ValueError as err:
    print(err)
"""


@pytest.mark.parametrize("member, declared", [("history/loss", "zip"), ("param/W1", "zip"), ("optim/W1/m", "npy")])
def test_a_member_larger_than_the_model_needs_is_refused_before_reading(saved, member, declared):
    with_bomb(saved, member, declared)
    assert saved.stat().st_size < 2_000_000  # the 1.3 MB archive of the issue: 1 GiB of zeros inside
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, "-c", _LOAD_CAPPED, str(saved)], capture_output=True, text=True,
                           env=env, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert re.search(rf"run_epoch_1\.npz: not a readable checkpoint: member '{member}' "
                     r"declares .* more than the \d+ it can need", child.stdout), child.stdout


def rewrite(path, arrays=None, **meta_changes):
    """Rewrite the checkpoint with some arrays replaced and metadata entries changed (a dotted path each)."""
    with np.load(path, allow_pickle=False) as npz:
        stored = {k: npz[k] for k in npz.files}
    stored.update(arrays or {})
    meta = json.loads(str(stored["metadata"][()]))
    for dotted, value in meta_changes.items():
        *parents, last = dotted.split("__")
        target = meta
        for key in parents:
            target = target[key]
        target[last] = value
    stored["metadata"] = np.array(json.dumps(meta) if "raw_json" not in meta else meta["raw_json"])
    with open(path, "wb") as f:
        np.savez(f, **stored)


def _nan_array(path, name):
    with np.load(path) as npz:
        a = npz[name].copy()
    a.flat[0] = np.nan
    return {name: a}


@pytest.mark.parametrize("name", ["param/W1", "best/param/b2", "optim/W1/v", "bn/0/running_var", "history/loss",
                                  "history/val_acc"])
def test_nan_or_infinite_arrays_are_refused(digits, saved, name):
    rewrite(saved, _nan_array(saved, name))
    with pytest.raises(ValueError, match=rf"run_epoch_1\.npz: malformed checkpoint: {name} has 1 NaN or infinite"):
        solver(digits).load_checkpoint(saved)


def _deep(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("changes, message", [
    ({"epoch": 10**30}, r"epoch must be an int in 0\.\.1000000, got 1000000000000000000000000000000"),
    ({"settings__num_epochs": 10**30}, r"settings\.num_epochs must be an int in 0\.\.1000000"),
    ({"best_val_acc": 1e308 * 10}, r"non-finite number Infinity|overflows"),
    ({"best_val_acc": 2.5}, r"best_val_acc must be a finite number in \[0, 1\], got 2\.5"),
    ({"rng__batch__state__state": 2**200}, r"rng state 'batch': not a valid PCG64 state \(OverflowError"),
    ({"rng__batch__has_uint32": 7}, r"rng state 'batch': has_uint32 must be an int in 0\.\.1, got 7"),
    ({"optim__W1__scalars__learning_rate": "0.01"},
     r"optim\.W1\.scalars\.learning_rate must be a finite number in \[0, 1000000\.0\], got '0\.01'"),
    ({"optim__W1__scalars__t": -1}, r"optim\.W1\.scalars\.t must be an int in 0\.\."),
    ({"optim__W1__scalars__beta1": {"numpy": "object", "value": 1}}, r"a NumPy scalar must be"),
    ({"num_bn_layers": [10**30, 0]}, r"num_bn_layers must be an int in 0\.\."),
    ({"raw_json": '{"format": ' + _deep(100_000) + "}"}, r"not valid JSON: nested too deeply"),
    ({"raw_json": '{"best_val_acc": NaN}'}, r"not valid JSON: non-finite number NaN"),
])
def test_out_of_range_metadata_is_refused(digits, saved, changes, message):
    rewrite(saved, **changes)
    with pytest.raises(ValueError, match=r"run_epoch_1\.npz: .*" + message):
        solver(digits).load_checkpoint(saved)


def test_a_stored_checkpoint_name_never_decides_where_the_resumed_run_writes(digits, saved, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rewrite(saved, settings__checkpoint_name=str(elsewhere / "planted"))  # as older checkpoints stored it
    resumed = Solver.resume(saved, net(), digits, num_epochs=2, verbose=False)
    resumed.train()
    assert resumed.epoch == 2 and os.listdir(elsewhere) == []
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "run_epoch_1.npz"]


def test_a_killed_write_leaves_a_temporary_file_that_the_next_write_removes(digits, tmp_path):
    leftover = tmp_path / ".run_epoch_3.npz.k1ll3d_x.tmp"  # what mkstemp named it before the process died
    leftover.write_bytes(b"PK\x03\x04 half")
    unrelated = tmp_path / ".notes.tmp"
    unrelated.write_bytes(b"mine")
    solver(digits, checkpoint_name=tmp_path / "run").train()
    assert sorted(os.listdir(tmp_path)) == [".notes.tmp", "run_epoch_1.npz"]


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "w.npy", np.zeros(3)) or p / "w.npy", r"w\.npy: not a readable checkpoint: a single "
                                                                 r"\.npy array, not an \.npz archive"),
    (lambda p: (p / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100)) and p / "c.png",
     r"c\.png: not a readable checkpoint: a PNG image, not an \.npz archive"),
    (lambda p: p, r": is a directory; --resume takes a checkpoint file"),
])
def test_a_file_that_is_not_a_checkpoint_gets_a_clear_error(digits, tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        solver(digits).load_checkpoint(path)
    assert "allow_pickle" not in str(info.value)
