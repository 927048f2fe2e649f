"""Solver checkpoints: one ``.npz`` per epoch, written atomically, loaded only after full validation.

Layout (every member loads with ``np.load(path, allow_pickle=False)``):

``param/<name>``, ``best/param/<name>``
    the model's parameters now and at the best validation accuracy;
``bn/<layer>/<key>``, ``best/bn/<layer>/<key>``
    batch-norm running statistics (``running_mean``, ``running_var``);
``optim/<param>/<key>``
    array state of each parameter's update rule (``m``, ``v``, ``velocity``, ...);
``history/loss``, ``history/train_acc``, ``history/val_acc``;
``metadata``
    a 0-d unicode array holding JSON: format and version, epoch, update rule,
    model config, solver settings, best validation accuracy, the scalar entries
    of every optimizer config (``t``, ``learning_rate``, ...), the states of the
    solver's random generators, and the list of every array above.

Scalars keep their Python or NumPy type through the round trip (a ``np.float64``
learning rate times a float32 array gives float64 under NumPy 2, a Python float
gives float32), which an exact resume needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

FORMAT = "twingrad.solver.checkpoint"
VERSION = 1
_BIT_GENERATORS = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM, "Philox": np.random.Philox,
                   "SFC64": np.random.SFC64, "MT19937": np.random.MT19937}


@dataclass
class Checkpoint:
    """Everything a :class:`twingrad.solver.Solver` needs to continue a run exactly."""

    epoch: int
    update_rule: str
    settings: dict  #: solver settings (batch_size, num_epochs, lr_decay, ..., optim_config)
    model_config: dict | None
    params: dict
    bn_stats: list  #: one dict of running statistics per bn_params entry
    best_params: dict
    best_bn_stats: list
    best_val_acc: float
    optim_configs: dict  #: param name -> config dict (arrays and scalars)
    loss_history: np.ndarray
    train_acc_history: np.ndarray
    val_acc_history: np.ndarray
    rng_states: dict = field(default_factory=dict)  #: name -> bit_generator.state

    def save(self, path) -> None:
        """Write to ``path`` atomically: a crash leaves the old file or the new one, never half of one."""
        arrays, optim_meta = {}, {}
        arrays.update({f"param/{k}": v for k, v in self.params.items()})
        arrays.update({f"best/param/{k}": v for k, v in self.best_params.items()})
        for prefix, stats in (("bn", self.bn_stats), ("best/bn", self.best_bn_stats)):
            for i, layer in enumerate(stats):
                arrays.update({f"{prefix}/{i}/{k}": v for k, v in layer.items()})
        for name, config in self.optim_configs.items():
            optim_meta[name] = _split_config(config, f"optim/{name}", arrays)
        settings = dict(self.settings)
        settings["optim_config"] = _split_config(settings.get("optim_config") or {}, "settings/optim_config", arrays)
        arrays["history/loss"] = np.asarray(self.loss_history)
        arrays["history/train_acc"] = np.asarray(self.train_acc_history, dtype=np.float64)
        arrays["history/val_acc"] = np.asarray(self.val_acc_history, dtype=np.float64)
        meta = {
            "format": FORMAT, "version": VERSION, "epoch": int(self.epoch), "update_rule": self.update_rule,
            "model": self.model_config, "settings": settings, "best_val_acc": float(self.best_val_acc),
            "num_bn_layers": [len(self.bn_stats), len(self.best_bn_stats)], "optim": optim_meta,
            "rng": self.rng_states, "arrays": sorted(arrays),
        }
        arrays["metadata"] = np.array(json.dumps(meta))
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path) -> "Checkpoint":
        """Read and validate the structure of a checkpoint; raise ValueError naming ``path`` on any defect."""
        arrays = _read_npz(path)
        meta = _read_metadata(path, arrays)
        try:
            return cls._from_parts(meta, arrays)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"{path}: malformed checkpoint metadata ({type(err).__name__}: {err})") from err

    @classmethod
    def _from_parts(cls, meta: dict, arrays: dict) -> "Checkpoint":
        def group(prefix):
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}

        num_bn, num_best_bn = meta["num_bn_layers"]
        settings = dict(meta["settings"])
        settings["optim_config"] = _join_config(settings["optim_config"], "settings/optim_config", arrays)
        for name in ("history/loss", "history/train_acc", "history/val_acc"):
            if arrays[name].ndim != 1 or arrays[name].dtype.kind != "f":
                raise ValueError(f"{name} must be a 1-D float array, got {arrays[name].dtype} {arrays[name].shape}")
        rng_states = meta["rng"]
        for name, state in rng_states.items():
            make_generator(state)  # raises on a state that cannot be restored
        epoch = meta["epoch"]
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        return cls(
            epoch=epoch, update_rule=str(meta["update_rule"]), settings=settings, model_config=meta["model"],
            params=group("param/"), best_params=group("best/param/"),
            bn_stats=[group(f"bn/{i}/") for i in range(num_bn)],
            best_bn_stats=[group(f"best/bn/{i}/") for i in range(num_best_bn)],
            best_val_acc=float(meta["best_val_acc"]),
            optim_configs={p: _join_config(c, f"optim/{p}", arrays) for p, c in meta["optim"].items()},
            loss_history=arrays["history/loss"], train_acc_history=arrays["history/train_acc"],
            val_acc_history=arrays["history/val_acc"], rng_states=rng_states,
        )

    def check_against(self, model, path) -> None:
        """Raise ValueError (naming ``path``) unless this checkpoint fits ``model`` exactly."""
        problems = []
        config = getattr(model, "config", None)
        if isinstance(config, dict) and self.model_config is not None:
            # weight_scale only shaped the initial weights, which the checkpoint overwrites.
            diff = {k: (self.model_config.get(k), v) for k, v in config.items()
                    if k != "weight_scale" and self.model_config.get(k) != v}
            problems += [f"model {k} is {new!r} but the checkpoint's is {old!r}" for k, (old, new) in diff.items()]
        for what, params in (("param", self.params), ("best/param", self.best_params)):
            if what == "best/param" and not params:
                continue  # no accuracy checked yet
            problems += _compare_arrays(what, params, model.params)
        for name, config in self.optim_configs.items():
            for key, value in config.items():
                if isinstance(value, np.ndarray) and name in model.params and value.shape != model.params[name].shape:
                    problems.append(f"optim/{name}/{key} has shape {value.shape}, the parameter {model.params[name].shape}")
        if set(self.optim_configs) != set(model.params):
            problems.append(f"optimizer configs are for {sorted(self.optim_configs)}, the model has {sorted(model.params)}")
        bn_params = getattr(model, "bn_params", [])
        for what, stats in (("bn", self.bn_stats), ("best/bn", self.best_bn_stats)):
            if what == "best/bn" and not self.best_params:
                continue
            if len(stats) != len(bn_params):
                problems.append(f"{what}: {len(stats)} normalization layers, the model has {len(bn_params)}")
                continue
            for i, layer in enumerate(stats):
                width = model.params.get(f"gamma{i + 1}")
                for key, value in layer.items():
                    if width is not None and (value.shape != width.shape or value.dtype != width.dtype):
                        problems.append(f"{what}/{i}/{key} is {value.dtype} {value.shape}, "
                                        f"the layer needs {width.dtype} {width.shape}")
        if problems:
            raise ValueError(f"{path}: checkpoint does not fit the model: " + "; ".join(problems))


def make_generator(state: dict) -> np.random.Generator:
    """A ``np.random.Generator`` restored from a ``bit_generator.state`` dict."""
    name = state["bit_generator"]
    if name not in _BIT_GENERATORS:
        raise ValueError(f"unknown bit generator {name!r}")
    bit_generator = _BIT_GENERATORS[name]()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def atomic_savez(path, arrays: dict) -> None:
    """``np.savez(path, **arrays)`` made atomic.

    Writes a temporary file in the target's directory (same file system, so the
    rename is atomic), flushes and fsyncs it, then ``os.replace``-s it onto
    ``path``. On any error the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename lives in the directory: sync it too, or a power cut may forget it (POSIX only).
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# -- private helpers -----------------------------------------------------------------


def _encode_scalar(key: str, value):
    # np.generic first: np.float64 is also a Python float, but must come back as np.float64.
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"numpy": value.dtype.name, "value": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store optimizer config entry {key!r} of type {type(value).__name__} in a checkpoint")


def _decode_scalar(value):
    if isinstance(value, dict):
        return np.dtype(value["numpy"]).type(value["value"])
    return value


def _split_config(config: dict, prefix: str, arrays: dict) -> dict:
    """Arrays of ``config`` go into ``arrays`` under ``prefix``; the scalars are returned for the JSON."""
    scalars, names = {}, []
    for key, value in config.items():
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}/{key}"] = value
            names.append(key)
        else:
            scalars[key] = _encode_scalar(key, value)
    return {"scalars": scalars, "arrays": names}


def _join_config(meta: dict, prefix: str, arrays: dict) -> dict:
    config = {key: _decode_scalar(value) for key, value in meta["scalars"].items()}
    config.update({key: arrays[f"{prefix}/{key}"] for key in meta["arrays"]})
    return config


def _read_npz(path) -> dict:
    """Every member of the archive, read eagerly so a truncated file fails here, not later."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except AttributeError as err:  # np.load gave a bare array (a .npy file), which has no context manager
        raise ValueError(f"{path}: not a checkpoint: a .npy array, not an .npz archive") from err
    except Exception as err:  # zipfile, zlib, npy-header and pickle refusals all mean: unusable file
        raise ValueError(f"{path}: not a readable checkpoint archive (truncated or corrupt?): "
                         f"{type(err).__name__}: {err}") from err


def _read_metadata(path, arrays: dict) -> dict:
    raw = arrays.get("metadata")
    if raw is None or raw.ndim != 0 or raw.dtype.kind != "U":
        raise ValueError(f"{path}: not a twingrad checkpoint: no 'metadata' string (members: {sorted(arrays)[:8]})")
    try:
        meta = json.loads(str(raw[()]))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: checkpoint metadata is not valid JSON: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a twingrad solver checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: unknown checkpoint format version {meta.get('version')!r}; "
                         f"this twingrad reads version {VERSION}")
    listed = meta.get("arrays")
    if not isinstance(listed, list):
        raise ValueError(f"{path}: checkpoint metadata lacks the list of arrays")
    missing = sorted(set(listed) - set(arrays))
    unexpected = sorted(set(arrays) - set(listed) - {"metadata"})
    if missing or unexpected:
        raise ValueError(f"{path}: checkpoint arrays do not match its metadata: missing {missing}, unexpected {unexpected}")
    bad = [k for k, v in arrays.items() if k != "metadata" and v.dtype.kind not in "biuf"]
    if bad:
        raise ValueError(f"{path}: checkpoint arrays must be numeric: {bad}")
    return meta


def _compare_arrays(what: str, stored: dict, current: dict) -> list:
    problems = []
    if set(stored) != set(current):
        problems.append(f"{what}: the checkpoint has {sorted(stored)}, the model {sorted(current)}")
    for name in sorted(set(stored) & set(current)):
        a, b = stored[name], current[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{what}/{name} is {a.dtype} {a.shape}, the model's {b.dtype} {b.shape}")
    return problems
