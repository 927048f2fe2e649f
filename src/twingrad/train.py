"""``twingrad train``: train a :class:`~twingrad.fc_net.FullyConnectedNet` with the :class:`~twingrad.solver.Solver`.

The defaults train a 64-100-100-10 net with Adam on the embedded 8x8 digits and
reach about 97% test accuracy in well under a second. ``--resume FILE``
continues a run from one of its ``--checkpoint`` files: architecture and
settings come from the checkpoint, and options given explicitly override them
(``--epochs 50`` trains further). ``--seed`` seeds the weights, the dropout
masks and the minibatches; the digits split is fixed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import optim
from .checkpoint import Checkpoint
from .fc_net import FullyConnectedNet

# Defaults live here, not in argparse, so that on --resume "not given" (None) can be
# told apart from "given the default value": only the latter overrides the checkpoint.
DEFAULTS = {
    "hidden": [100, 100], "normalization": "none", "dropout": 0.0, "reg": 0.0, "weight_scale": 0.1,
    "update_rule": "adam", "learning_rate": 2e-3, "lr_decay": 0.95, "epochs": 30, "batch_size": 100,
    "seed": 0, "backend": "hand", "dtype": "float32",
}
PLOT_HINT = "--plot needs matplotlib: pip install twingrad[plot]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to ``parser``."""
    d = DEFAULTS
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=["digits", "cifar10"], default="digits",
                      help="digits: scikit-learn's bundled 8x8 digits (default); cifar10 needs --data-dir")
    data.add_argument("--data-dir", metavar="DIR", help="folder holding cifar-10-batches-py (for --dataset cifar10)")
    model = parser.add_argument_group("model")
    model.add_argument("--hidden", type=int, nargs="+", metavar="H", help=f"hidden layer widths (default: {d['hidden']})")
    model.add_argument("--normalization", choices=["none", "batchnorm", "layernorm"], help="default: none")
    model.add_argument("--dropout", type=float, metavar="P", help="probability of dropping a unit (default: 0); masks are fresh each step, "
                       "drawn from --seed")
    model.add_argument("--reg", type=float, help="L2 regularization strength (default: 0)")
    model.add_argument("--weight-scale", type=float, help=f"std of the initial weights (default: {d['weight_scale']})")
    model.add_argument("--dtype", choices=["float32", "float64"], help="default: float32")
    training = parser.add_argument_group("training")
    training.add_argument("--update-rule", choices=sorted(optim.UPDATE_RULES), help="default: adam")
    training.add_argument("--learning-rate", type=float, help=f"default: {d['learning_rate']}")
    training.add_argument("--lr-decay", type=float, help=f"learning-rate factor per epoch (default: {d['lr_decay']})")
    training.add_argument("--epochs", type=int, help=f"default: {d['epochs']}")
    training.add_argument("--batch-size", type=int, help=f"default: {d['batch_size']}")
    training.add_argument("--seed", type=int, help="seeds weights, dropout masks and minibatches (default: 0)")
    training.add_argument("--backend", choices=["hand", "autograd"],
                          help="gradients from the hand-derived layers or from autograd through the twins (default: hand)")
    output = parser.add_argument_group("output")
    output.add_argument("--checkpoint", metavar="PREFIX", help="write PREFIX_epoch_N.npz after every epoch")
    output.add_argument("--resume", metavar="FILE", help="continue the run saved in this checkpoint")
    output.add_argument("--plot", metavar="FILE", help="save loss and accuracy curves as a PNG")
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


def _model_config(args, checkpoint: Checkpoint | None) -> dict:
    stored = dict(checkpoint.model_config or {}) if checkpoint else {}
    norm = _setting(args, "normalization", stored.get("normalization") or DEFAULTS["normalization"])
    return {
        "hidden_dims": _setting(args, "hidden", stored.get("hidden_dims", DEFAULTS["hidden"])),
        "normalization": None if norm == "none" else norm,
        "dropout": _setting(args, "dropout", stored.get("dropout", DEFAULTS["dropout"])),
        "reg": _setting(args, "reg", stored.get("reg", DEFAULTS["reg"])),
        "weight_scale": _setting(args, "weight_scale", stored.get("weight_scale", DEFAULTS["weight_scale"])),
        "dtype": _setting(args, "dtype", stored.get("dtype", DEFAULTS["dtype"])),
        "seed": _setting(args, "seed", stored.get("seed", DEFAULTS["seed"])),
    }


def _solver_settings(args, resuming: bool) -> dict:
    """Solver keyword arguments: all options when starting, only the given ones when resuming."""
    names = {"update_rule": "update_rule", "lr_decay": "lr_decay", "epochs": "num_epochs",
             "batch_size": "batch_size", "backend": "backend", "seed": "seed"}
    settings = {}
    for option, kwarg in names.items():
        value = _given(args, option)
        if value is not None or not resuming:
            settings[kwarg] = DEFAULTS[option] if value is None else value
    if not resuming:
        settings["optim_config"] = {"learning_rate": _setting(args, "learning_rate", DEFAULTS["learning_rate"])}
    if args.checkpoint:
        settings["checkpoint_name"] = args.checkpoint
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
    fig.savefig(path, format="png", dpi=100)


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
        checkpoint = Checkpoint.load(args.resume) if args.resume else None
        config = _model_config(args, checkpoint)
        data = _load_data(args, np.dtype(config["dtype"]))
        model = FullyConnectedNet(config.pop("hidden_dims"), input_dim=int(np.prod(data["X_train"].shape[1:])),
                                  num_classes=10, **config)
        settings = _solver_settings(args, resuming=checkpoint is not None)
        settings.update(verbose=not args.quiet, print_every=10**9)  # per-epoch lines only
        if checkpoint is not None:
            if args.learning_rate is not None:
                print("note: --learning-rate is ignored with --resume: the checkpoint's optimizer state continues",
                      file=sys.stderr)
            solver = Solver.resume(args.resume, model, data, **settings)
        else:
            solver = Solver(model, data, **settings)
    except (ValueError, KeyError, TypeError, OSError) as err:
        return fail(str(err).strip("'\""))

    start = time.perf_counter()
    solver.train()
    elapsed = time.perf_counter() - start
    for split in ("train", "val", "test"):
        if f"X_{split}" in data:
            accuracy = solver.check_accuracy(data[f"X_{split}"], data[f"y_{split}"])
            print(f"{split + ' accuracy:':16s}{accuracy:.4f}")
    total = time.perf_counter() - started
    print(f"{'elapsed:':16s}{elapsed:.2f} s training, {total:.2f} s in all ({solver.epoch} epochs, "
          f"backend {solver.backend})")
    if args.plot:
        _plot(args.plot, solver)
        print(f"{'plot:':16s}{args.plot}")
    return 0
