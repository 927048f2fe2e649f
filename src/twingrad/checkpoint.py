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

Loading treats the file as untrusted (see :meth:`Checkpoint.load`): sizes are
checked before reading, every value is checked before use, and no setting in the
file decides where anything is written.

Scalars keep their Python or NumPy type through the round trip (a ``np.float64``
learning rate times a float32 array gives float64 under NumPy 2, a Python float
gives float32), which an exact resume needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

from . import _npz
from ._checkpoint_checks import (MAX_EPOCHS, MAX_HISTORY, MAX_MEMBER_BYTES, MAX_METADATA_CHARS, check_arrays,
                                 check_config_meta, check_settings, int_in, make_generator, number_in,
                                 parse_json, short)

FORMAT = "twingrad.solver.checkpoint"
VERSION = 1


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

    def save(self, path, stale: str | None = None) -> None:
        """Write to ``path`` atomically: a crash leaves the old file or the new one, never half of one.

        ``stale``: regex of leftover temporary files to remove first (see `atomic_savez`).
        """
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
        atomic_savez(path, arrays, stale)

    @classmethod
    def load(cls, path, model=None) -> "Checkpoint":
        """Read and validate a checkpoint; raise ValueError naming ``path`` on any defect.

        The file is untrusted. Every member's size, as its zip and npy headers
        declare it, is checked before the member is read: against what ``model``
        needs when a model is given (then the stored model configuration must
        also match ``model.config``, one line per difference), else against
        generous fixed limits. Pickled objects are never read. NaN or infinite
        arrays, out-of-range settings, optimizer scalars and generator states are
        refused.
        """
        meta_holder = {}

        def check_metadata(raw, sizes):
            try:
                meta = _metadata(raw)
                _check_listing(meta, sizes)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
            if model is not None:
                differences = config_differences(meta.get("model"), getattr(model, "config", None))
                if differences:
                    raise ValueError(_lines(f"{path}: checkpoint does not fit the model:", differences))
            meta_holder["meta"] = meta

        arrays = _read(path, _member_limits(model), check_metadata)
        if "meta" not in meta_holder:
            raise ValueError(f"{path}: not a twingrad checkpoint: no 'metadata' string (members: {sorted(arrays)[:8]})")
        try:
            check_arrays(arrays)
            return cls._from_parts(meta_holder["meta"], arrays)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            detail = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ValueError(f"{path}: malformed checkpoint: {type(err).__name__ + ': ' if not isinstance(err, ValueError) else ''}"
                             f"{detail}") from None

    @staticmethod
    def load_metadata(path) -> dict:
        """Only the metadata (model config, settings, epoch ...), checked; reads no array but that one."""
        meta = _read(path, lambda name: MAX_METADATA_CHARS * 4, None, only="metadata").get("metadata")
        if meta is None:
            raise ValueError(f"{path}: not a twingrad checkpoint: no 'metadata' string")
        try:
            return _metadata(meta)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def _from_parts(cls, meta: dict, arrays: dict) -> "Checkpoint":
        def group(prefix):
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and "/" not in k[len(prefix):]}

        layers = meta["num_bn_layers"]
        if not (isinstance(layers, list) and len(layers) == 2):
            raise ValueError(f"num_bn_layers must be two ints, got {short(layers)}")
        num_bn, num_best_bn = (int_in("num_bn_layers", n, 0, len(arrays)) for n in layers)
        check_settings(meta["settings"])
        settings = {k: v for k, v in meta["settings"].items() if k != "checkpoint_name"}  # never decides a path
        check_config_meta("settings.optim_config", settings["optim_config"])
        settings["optim_config"] = _join_config(settings["optim_config"], "settings/optim_config", arrays)
        if not isinstance(meta["optim"], dict):
            raise ValueError(f"optim must be an object, got {short(meta['optim'])}")
        for name, config in meta["optim"].items():
            check_config_meta(f"optim.{name}", config)
        rng_states = meta["rng"]
        if not isinstance(rng_states, dict):
            raise ValueError(f"rng must be an object, got {short(rng_states)}")
        for name, state in rng_states.items():
            try:
                make_generator(state)
            except ValueError as err:
                raise ValueError(f"rng state {name!r}: {err}") from None
        epoch = int_in("epoch", meta["epoch"], 0, MAX_EPOCHS)
        if not isinstance(meta["update_rule"], str):
            raise ValueError(f"update_rule must be a string, got {short(meta['update_rule'])}")
        if meta["model"] is not None and not isinstance(meta["model"], dict):
            raise ValueError(f"model must be an object or null, got {short(meta['model'])}")
        best_val_acc = number_in("best_val_acc", meta["best_val_acc"], 0, 1)
        return cls(
            epoch=epoch, update_rule=meta["update_rule"], settings=settings, model_config=meta["model"],
            params=group("param/"), best_params=group("best/param/"),
            bn_stats=[group(f"bn/{i}/") for i in range(num_bn)],
            best_bn_stats=[group(f"best/bn/{i}/") for i in range(num_best_bn)],
            best_val_acc=float(best_val_acc),
            optim_configs={p: _join_config(c, f"optim/{p}", arrays) for p, c in meta["optim"].items()},
            loss_history=arrays["history/loss"], train_acc_history=arrays["history/train_acc"],
            val_acc_history=arrays["history/val_acc"], rng_states=rng_states,
        )

    def check_against(self, model, path) -> None:
        """Raise ValueError (naming ``path``) unless this checkpoint fits ``model`` exactly."""
        problems = config_differences(self.model_config, getattr(model, "config", None))
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
            raise ValueError(_lines(f"{path}: checkpoint does not fit the model:", problems))


def config_differences(stored, current) -> list[str]:
    """One line per setting in which a model's ``config`` differs from the checkpoint's."""
    if not isinstance(stored, dict) or not isinstance(current, dict):
        return []
    # weight_scale only shaped the initial weights, which the checkpoint overwrites.
    return [f"model {k} is {short(v)} but the checkpoint's is {short(stored.get(k))}"
            for k, v in current.items() if k != "weight_scale" and stored.get(k) != v]


_TMP_SUFFIX = r"\.[a-z0-9_]{8}\.tmp"  # what tempfile.mkstemp adds between our prefix and suffix


def stale_pattern(prefix: str) -> str:
    """Regex of the temporary files that writes of ``PREFIX_epoch_N.npz`` leave when killed."""
    return re.escape(f".{os.path.basename(prefix)}_epoch_") + r"\d+\.npz" + _TMP_SUFFIX


def remove_stale_temporaries(directory: str, pattern: str) -> list[str]:
    """Delete the files in ``directory`` whose whole name matches ``pattern``; return their names."""
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            if re.fullmatch(pattern, name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
                    removed.append(name)
    return removed


def atomic_savez(path, arrays: dict, stale: str | None = None) -> None:
    """``np.savez(path, **arrays)`` made atomic.

    Writes a temporary file in the target's directory (same file system, so the
    rename is atomic), flushes and fsyncs it, then ``os.replace``-s it onto
    ``path``. On any error the temporary file is removed and ``path`` is untouched.
    A process killed mid-write cannot remove its temporary file: the next write
    does, for the same ``path`` and for names matching the regex ``stale``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    own = re.escape(f".{os.path.basename(path)}") + _TMP_SUFFIX
    remove_stale_temporaries(directory, own if stale is None else f"(?:{own})|(?:{stale})")
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


def _lines(head: str, problems: list[str]) -> str:
    return head + "".join(f"\n  - {p}" for p in problems)


def _member_limits(model):
    """name -> the most data bytes that member may hold: what ``model`` needs, or fixed caps without one."""
    sizes = {k: v.size * 8 for k, v in getattr(model, "params", {}).items()}  # float64 at most
    largest = max(sizes.values(), default=0)

    def limit(name: str) -> int:
        parts = name.split("/")
        if name == "metadata":
            return MAX_METADATA_CHARS * 4  # UCS-4
        if parts[0] == "history":
            return MAX_HISTORY * 8
        if model is None:
            return MAX_MEMBER_BYTES
        if parts[0] in ("param", "optim") and len(parts) >= 2:
            return sizes.get(parts[1], 0)
        if parts[:2] == ["best", "param"] and len(parts) == 3:
            return sizes.get(parts[2], 0)
        return largest  # running statistics and optim_config arrays: never larger than a parameter

    return limit


def _read(path, limit_of, check_metadata, only: str | None = None) -> dict:
    """The archive's arrays (or just member ``only``), refusing anything malformed with a message naming ``path``."""
    try:
        if only is not None:
            return _npz.read_one(path, only, limit_of(only), kinds="U")
        return _npz.read_archive(path, limit_of, first="metadata", check_first=check_metadata)
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory; --resume takes a checkpoint file, "
                         "such as PREFIX_epoch_3.npz") from None
    except _npz.ArchiveError as err:
        raise ValueError(f"{path}: not a readable checkpoint: {err}") from None


def _metadata(raw) -> dict:
    if raw.ndim != 0 or raw.dtype.kind != "U":
        raise ValueError(f"not a twingrad checkpoint: 'metadata' is a {raw.dtype} array of shape {raw.shape}")
    meta = parse_json(str(raw[()]))
    if meta.get("format") != FORMAT:
        raise ValueError(f"not a twingrad solver checkpoint (format {short(meta.get('format'))})")
    if meta.get("version") != VERSION:
        raise ValueError(f"unknown checkpoint format version {short(meta.get('version'))}; "
                         f"this twingrad reads version {VERSION}")
    return meta


def _check_listing(meta: dict, sizes: dict) -> None:
    listed = meta.get("arrays")
    if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
        raise ValueError("checkpoint metadata lacks the list of arrays")
    missing = sorted(set(listed) - set(sizes))
    unexpected = sorted(set(sizes) - set(listed) - {"metadata"})
    if missing or unexpected:
        raise ValueError(f"checkpoint arrays do not match its metadata: missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")


def _compare_arrays(what: str, stored: dict, current: dict) -> list:
    problems = []
    if set(stored) != set(current):
        problems.append(f"{what}: the checkpoint has {sorted(stored)}, the model {sorted(current)}")
    for name in sorted(set(stored) & set(current)):
        a, b = stored[name], current[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{what}/{name} is {a.dtype} {a.shape}, the model's {b.dtype} {b.shape}")
    return problems
