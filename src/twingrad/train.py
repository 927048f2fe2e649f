"""``twingrad train``: train a :class:`~twingrad.fc_net.FullyConnectedNet` (or, with
``--model cnn``, a :class:`~twingrad.cnn.ThreeLayerConvNet`) with the :class:`~twingrad.solver.Solver`.

The defaults train a 64-100-100-10 net with Adam on the embedded 8x8 digits and
reach about 97% test accuracy in well under a second; ``--model cnn`` trains
conv(16 3x3) - relu - pool - 100 - 10 there to 97.7% test accuracy in a few seconds. ``--resume FILE``
continues a run from one of its ``--checkpoint`` files: architecture and
settings come from the checkpoint, and options given explicitly override them
(``--epochs 50`` trains further). ``--seed`` seeds the weights, the dropout
masks and the minibatches; the digits split is fixed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import numpy as np

from . import optim
from ._checkpoint_checks import MAX_EPOCHS
from ._cli_types import empty_values, float_range, int_range, nonempty_path
from .checkpoint import Checkpoint, remove_stale_temporaries
from .cnn import ThreeLayerConvNet
from .fc_net import FullyConnectedNet

# Defaults live here, not in argparse, so that on --resume "not given" (None) can be
# told apart from "given the default value": only the latter overrides the checkpoint.
DEFAULTS = {
    "hidden": [100, 100], "normalization": "none", "dropout": 0.0, "reg": 0.0, "weight_scale": 0.1,
    "update_rule": "adam", "learning_rate": 2e-3, "lr_decay": 0.95, "epochs": 30, "batch_size": 100,
    "seed": 0, "backend": "hand", "dtype": "float32",
}
# ThreeLayerConvNet: what differs from DEFAULTS. Its filters and initial scale depend on the data: 16 3x3 on
# the 8x8 digits; on CIFAR-10 the course's configuration, 32 7x7 filters and weights of std 1e-3.
CNN_DEFAULTS = {"reg": 1e-2, "batch_size": 50}
CNN_SHAPES = {"digits": {"num_filters": 16, "filter_size": 3, "weight_scale": 0.1},
              "cifar10": {"num_filters": 32, "filter_size": 7, "weight_scale": 1e-3}}
PLOT_HINT = "--plot needs matplotlib: pip install twingrad[plot]"
MAX_WIDTH = 65_536
MAX_LAYERS = 1_000
MAX_BATCH = 65_536  # a batch of CIFAR-10 images this large is 0.8 GB in float32
MAX_PARAMETERS = 10**8  # 0.4 GB of float32 weights, and as much again for each optimizer state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to ``parser``."""
    d = DEFAULTS
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=["digits", "cifar10"], default="digits",
                      help="digits: scikit-learn's bundled 8x8 digits (default); cifar10 needs --data-dir")
    data.add_argument("--data-dir", metavar="DIR", type=nonempty_path("folder"),
                      help="folder holding cifar-10-batches-py (only with --dataset cifar10)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", choices=["fc", "cnn"], default="fc",
                       help="fc: FullyConnectedNet (default); cnn: ThreeLayerConvNet, conv-relu-pool-affine-relu-"
                            "affine with 16 3x3 filters on digits, 32 7x7 on CIFAR-10, and the first --hidden "
                            "width (--normalization and --dropout do not apply)")
    model.add_argument("--hidden", type=int_range(1, MAX_WIDTH), nargs="+", metavar="H", help=f"hidden layer widths (default: {d['hidden']})")
    model.add_argument("--normalization", choices=["none", "batchnorm", "layernorm"], help="default: none")
    model.add_argument("--dropout", type=float_range(0, 1, high_open=True), metavar="P",
                       help="probability of dropping a unit, in [0, 1) (default: 0); masks are fresh each step, "
                       "drawn from --seed")
    model.add_argument("--reg", type=float_range(0), help="L2 regularization strength, >= 0 (default: 0)")
    model.add_argument("--weight-scale", type=float_range(0, low_open=True),
                       help=f"std of the initial weights, > 0 (default: {d['weight_scale']})")
    model.add_argument("--dtype", choices=["float32", "float64"], help="default: float32")
    training = parser.add_argument_group("training")
    training.add_argument("--update-rule", choices=sorted(optim.UPDATE_RULES), help="default: adam")
    training.add_argument("--learning-rate", type=float_range(0, low_open=True), help=f"> 0 (default: {d['learning_rate']})")
    training.add_argument("--lr-decay", type=float_range(0, 1, low_open=True),
                          help=f"learning-rate factor per epoch, in (0, 1] (default: {d['lr_decay']})")
    training.add_argument("--epochs", type=int_range(1, MAX_EPOCHS),
                          help=f"1..{MAX_EPOCHS}; with --resume, the total to reach (default: {d['epochs']})")
    training.add_argument("--batch-size", type=int_range(1, MAX_BATCH), help=f"1..{MAX_BATCH} (default: {d['batch_size']})")
    training.add_argument("--seed", type=int_range(0, 2**63 - 1),
                          help="seeds weights, dropout masks and minibatches, >= 0 (default: 0)")
    training.add_argument("--backend", choices=["hand", "autograd"],
                          help="gradients from the hand-derived layers or from autograd through the twins (default: hand)")
    output = parser.add_argument_group("output")
    output.add_argument("--checkpoint", metavar="PREFIX", type=nonempty_path("prefix"),
                        help="write PREFIX_epoch_N.npz after every epoch (missing folders are created); "
                        "with --resume, default: the prefix of the resumed file")
    output.add_argument("--resume", metavar="FILE", type=nonempty_path("file name"),
                        help="continue the run saved in this checkpoint")
    output.add_argument("--plot", metavar="FILE", type=nonempty_path("file name"),
                        help="save loss and accuracy curves as a PNG (missing folders are created)")
    output.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def _given(args, name):
    return getattr(args, name, None)


def _setting(args, name, fallback):
    """The option if given on the command line, else ``fallback``."""
    value = _given(args, name)
    return fallback if value is None else value


def _load_data(args, dtype):
    if args.dataset == "digits":
        from .data import load_digits

        return load_digits(dtype=dtype)
    if not args.data_dir:
        raise ValueError("--dataset cifar10 needs --data-dir DIR, the folder that holds cifar-10-batches-py")
    from .data import get_CIFAR10_data

    return get_CIFAR10_data(args.data_dir, dtype=dtype)


def _model_config(args, stored: dict | None) -> dict:
    """The model's settings: options given on the command line, else the checkpoint's, else the defaults."""
    stored = stored if isinstance(stored, dict) else {}  # a malformed one is reported by the full load
    norm = _setting(args, "normalization", stored.get("normalization") or DEFAULTS["normalization"])
    config = {
        "hidden_dims": _setting(args, "hidden", stored.get("hidden_dims", DEFAULTS["hidden"])),
        "normalization": None if norm == "none" else norm,
        "dropout": _setting(args, "dropout", stored.get("dropout", DEFAULTS["dropout"])),
        "reg": _setting(args, "reg", stored.get("reg", DEFAULTS["reg"])),
        "weight_scale": _setting(args, "weight_scale", stored.get("weight_scale", DEFAULTS["weight_scale"])),
        "dtype": _setting(args, "dtype", stored.get("dtype", DEFAULTS["dtype"])),
        "seed": _setting(args, "seed", stored.get("seed", DEFAULTS["seed"])),
    }
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"the checkpoint's dtype is {config['dtype']!r}; twingrad trains float32 or float64")
    return config


def _check_size(hidden_dims, input_dim: int) -> None:
    """Refuse a network too large to build, before numpy tries (a checkpoint's config is untrusted too)."""
    if (not isinstance(hidden_dims, list) or len(hidden_dims) > MAX_LAYERS
            or not all(type(h) is int and 1 <= h <= MAX_WIDTH for h in hidden_dims)):
        raise ValueError(f"hidden layer widths must be a list of at most {MAX_LAYERS} ints in 1..{MAX_WIDTH}, "
                         f"got {str(hidden_dims)[:80]}")
    dims = [input_dim, *hidden_dims, 10]
    count = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    if count > MAX_PARAMETERS:
        raise ValueError(f"a {'-'.join(map(str, dims))} network has {count:,} parameters; "
                         f"twingrad train builds at most {MAX_PARAMETERS:,}")


def _cnn_model(args, stored: dict | None, data) -> ThreeLayerConvNet:
    """A ThreeLayerConvNet for ``data``, whose images are reshaped in place to (N, C, H, W) if flat."""
    stored = stored if isinstance(stored, dict) else {}
    for key in [k for k in data if k.startswith("X_") and data[k].ndim == 2]:
        side = int(round(data[key].shape[1] ** 0.5))  # the digits: 64 pixels, one channel
        data[key] = data[key].reshape(-1, 1, side, side)
    shape = CNN_SHAPES[args.dataset]
    hidden = _given(args, "hidden")
    c, h, w = data["X_train"].shape[1:]
    filters, size = stored.get("num_filters", shape["num_filters"]), stored.get("filter_size", shape["filter_size"])
    hidden_dim = hidden[0] if hidden else stored.get("hidden_dim", DEFAULTS["hidden"][0])
    if all(type(v) is int for v in (filters, size, hidden_dim)):  # else the constructor names the bad value
        count = filters * (c * size * size + 1) + (filters * (h // 2) * (w // 2) + 1) * hidden_dim + hidden_dim * 11
        if count > MAX_PARAMETERS:
            raise ValueError(f"a ThreeLayerConvNet with {filters} {size}x{size} filters and {hidden_dim} hidden units "
                             f"has {count:,} parameters; twingrad train builds at most {MAX_PARAMETERS:,}")
    return ThreeLayerConvNet(
        input_dim=(c, h, w), num_filters=filters, filter_size=size, hidden_dim=hidden_dim, num_classes=10,
        weight_scale=_setting(args, "weight_scale", stored.get("weight_scale", shape["weight_scale"])),
        reg=_setting(args, "reg", stored.get("reg", CNN_DEFAULTS["reg"])),
        dtype=_setting(args, "dtype", stored.get("dtype", DEFAULTS["dtype"])),
        seed=_setting(args, "seed", stored.get("seed", DEFAULTS["seed"])))


def _prepare_output(option: str, path: str, what: str) -> None:
    """Create the folder that will hold ``path``, or refuse now, before any training."""
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise ValueError(f"{option} {path}: is a folder; give {what}")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{option} {path}: cannot create the folder {folder}: {err.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable")


def _resume_prefix(args) -> str | None:
    """Where a resumed run writes: --checkpoint if given, else the prefix of the file the user named."""
    if args.checkpoint:
        return args.checkpoint
    match = re.fullmatch(r"(.+)_epoch_\d+\.npz", args.resume)
    return match.group(1) if match else None


def _solver_settings(args, resuming: bool) -> dict:
    """Solver keyword arguments: all options when starting, only the given ones when resuming."""
    names = {"update_rule": "update_rule", "lr_decay": "lr_decay", "epochs": "num_epochs",
             "batch_size": "batch_size", "backend": "backend", "seed": "seed"}
    settings = {}
    for option, kwarg in names.items():
        value = _given(args, option)
        if value is not None or not resuming:
            default = CNN_DEFAULTS.get(option, DEFAULTS[option]) if args.model == "cnn" else DEFAULTS[option]
            settings[kwarg] = default if value is None else value
    if not resuming:
        settings["optim_config"] = {"learning_rate": _setting(args, "learning_rate", DEFAULTS["learning_rate"])}
    prefix = _resume_prefix(args) if resuming else args.checkpoint
    if prefix:
        settings["checkpoint_name"] = prefix
    return settings


def _plot(path, solver) -> None:
    # The object-oriented API with the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(np.asarray(solver.loss_history, dtype=float), lw=0.8)
    loss_ax.set(title="training loss", xlabel="iteration", ylabel="loss")
    epochs = np.arange(len(solver.train_acc_history))
    acc_ax.plot(epochs, solver.train_acc_history, "o-", label="train")
    acc_ax.plot(epochs, solver.val_acc_history, "o-", label="val")
    acc_ax.set(title="accuracy", xlabel="epoch", ylabel="accuracy")
    acc_ax.legend()
    fig.tight_layout()
    # Atomic, as every user file: a crash leaves the old picture or the new one, never half of one.
    folder, name = os.path.split(os.path.abspath(path))
    remove_stale_temporaries(folder, re.escape(f".{name}.") + r"\d+\.tmp")  # left by a run killed mid-write
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _message(err: BaseException) -> str:
    """One line (or one per difference) for the user: no quotes eaten, no exception class names."""
    if isinstance(err, KeyError) and err.args and isinstance(err.args[0], str):
        return err.args[0]  # str(KeyError) wraps the message in quotes
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    if isinstance(err, MemoryError):
        return "out of memory building the network or the data; try smaller --hidden or --batch-size"
    return str(err)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _check_options(args) -> None:
    """Combinations the parser cannot see; raise ValueError before loading anything."""
    for option in empty_values(args):
        raise ValueError(f"argument {option}: got no value ('--' ends the options, it is not a value)")
    if args.data_dir and args.dataset != "cifar10":
        raise ValueError(f"--data-dir is only read with --dataset cifar10 (the {args.dataset} data set is "
                         "bundled); add --dataset cifar10 or drop --data-dir")
    if args.checkpoint:
        _prepare_output("--checkpoint", args.checkpoint, "a file prefix such as runs/a (writes runs/a_epoch_1.npz ...)")
    if args.plot:
        _prepare_output("--plot", args.plot, "a file name such as curves.png")


def _check_resume(args, meta: dict) -> None:
    epoch = meta.get("epoch")
    planned = (meta.get("settings") or {}).get("num_epochs")
    if args.epochs is not None and isinstance(epoch, int) and args.epochs <= epoch:
        raise ValueError(f"--epochs {args.epochs}: the checkpoint {args.resume} has already trained "
                         f"{_plural(epoch, 'epoch')}; give a total above {epoch} to train further")
    if args.epochs is None and isinstance(epoch, int) and isinstance(planned, int) and epoch >= planned:
        raise ValueError(f"the checkpoint {args.resume} finished its run ({epoch} of {_plural(planned, 'epoch')}); "
                         f"give --epochs N with N > {epoch} to train further")


def run(args: argparse.Namespace) -> int:
    """Train as ``args`` say, print the final accuracies and the time taken; return the exit code."""
    from .solver import Solver

    started = time.perf_counter()

    def fail(message: str) -> int:
        print(f"twingrad train: error: {message}", file=sys.stderr)
        return 2

    if args.plot:
        try:
            import matplotlib  # noqa: F401  (checked before training, not after)
        except ImportError:
            return fail(PLOT_HINT)
    try:
        _check_options(args)
        meta = Checkpoint.load_metadata(args.resume) if args.resume else None
        config = _model_config(args, meta.get("model") if meta else None)
        data = _load_data(args, np.dtype(config["dtype"]))
        if args.model == "cnn":
            model = _cnn_model(args, meta.get("model") if meta else None, data)
        else:
            input_dim = int(np.prod(data["X_train"].shape[1:]))
            _check_size(config["hidden_dims"], input_dim)
            model = FullyConnectedNet(config.pop("hidden_dims"), input_dim=input_dim, num_classes=10, **config)
        settings = _solver_settings(args, resuming=meta is not None)
        settings.update(verbose=not args.quiet, print_every=10**9)  # per-epoch lines only
        if meta is not None:
            if args.learning_rate is not None:
                print("note: --learning-rate is ignored with --resume: the checkpoint's optimizer state continues",
                      file=sys.stderr)
            if "checkpoint_name" not in settings:
                print(f"note: no checkpoints will be written ({args.resume} is not named PREFIX_epoch_N.npz); "
                      "add --checkpoint PREFIX to write them", file=sys.stderr)
            solver = Solver.resume(args.resume, model, data, **settings)
            _check_resume(args, meta)
        else:
            solver = Solver(model, data, **settings)
    except (ValueError, KeyError, TypeError, OSError, MemoryError) as err:
        return fail(_message(err))

    start = time.perf_counter()
    try:
        solver.train()
    except (OSError, MemoryError) as err:  # a checkpoint that cannot be written, a full disk
        return fail(_message(err))
    elapsed = time.perf_counter() - start
    for split in ("train", "val", "test"):
        if f"X_{split}" in data:
            accuracy = solver.check_accuracy(data[f"X_{split}"], data[f"y_{split}"])
            print(f"{split + ' accuracy:':16s}{accuracy:.4f}")
    total = time.perf_counter() - started
    print(f"{'elapsed:':16s}{elapsed:.2f} s training, {total:.2f} s in all ({_plural(solver.epoch, 'epoch')}, "
          f"backend {solver.backend})")
    if args.plot:
        try:
            _plot(args.plot, solver)
        except OSError as err:
            return fail(_message(err))
        print(f"{'plot:':16s}{args.plot}")
    return 0
