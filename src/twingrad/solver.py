"""The CS231n ``Solver``: minibatch training, accuracy histories, best-model tracking,
and checkpoints that resume a run bit for bit.

Usage::

    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                    num_epochs=10, batch_size=100, seed=0, checkpoint_name="run")
    solver.train()
    # later, or after a crash:
    solver = Solver.resume("run_epoch_4.npz", model, data)
    solver.train()

Reproducibility: with ``seed`` set, minibatches and accuracy subsamples come from
two ``np.random.Generator`` streams spawned from it, and both streams' states go
into every checkpoint. A resumed run then ends identical to an uninterrupted one,
including dropout: before every step the solver gives the model's
``dropout_param`` a fresh seed drawn from the minibatch stream.
"""

from __future__ import annotations

import copy
import numbers
import os
import sys

import numpy as np
from tqdm import tqdm  # the text bar: tqdm.auto wants ipywidgets in Jupyter

from . import optim
from ._checkpoint_checks import MAX_BATCH_SIZE, MAX_EPOCHS
from .checkpoint import Checkpoint, make_generator, stale_pattern

DEFAULTS = {
    "update_rule": "sgd", "optim_config": None, "lr_decay": 1.0, "batch_size": 100, "num_epochs": 10,
    "num_train_samples": 1000, "num_val_samples": None, "checkpoint_name": None, "print_every": 10,
    "verbose": True, "seed": None, "backend": "hand", "progress": True,
}
# Settings a checkpoint records, and Solver.resume reuses unless overridden. Not checkpoint_name:
# where a run writes is the caller's decision, never a file's.
RESUMED = ("lr_decay", "batch_size", "num_epochs", "num_train_samples", "num_val_samples",
           "print_every", "seed", "backend")
BACKENDS = ("hand", "autograd")


def _count(name, value, minimum=1, optional=False, maximum=None):
    if optional and value is None:
        return None
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum
            or (maximum is not None and value > maximum)):
        allowed = f">= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        raise ValueError(f"Solver: {name} must be an int {allowed}{' or None' if optional else ''}, got {value!r}")
    return int(value)


class Solver:
    """Train a classification model with minibatch gradient descent.

    Parameters
    ----------
    model : object
        Has ``params`` (dict of arrays) and ``loss(X, y=None)`` returning scores,
        or ``(loss, grads)`` with y; optionally ``bn_params`` (batch-norm state,
        saved with the best params and in checkpoints), ``input_dim`` (checked
        against the data), ``config`` (checked on resume) and ``twin_grads(X, y)``
        (for ``backend='autograd'``).
    data : dict
        ``X_train, y_train, X_val, y_val`` (required), rows being samples.
    update_rule : str or callable, default 'sgd'
        A name in :data:`twingrad.optim.UPDATE_RULES`, or ``rule(w, dw, config) -> (next_w, config)``.
    optim_config : dict, optional
        Hyperparameters for the rule; each parameter gets its own deep copy.
    lr_decay : float, default 1.0
        Multiplies every learning rate at the end of each epoch.
    batch_size : int, default 100
    num_epochs : int, default 10
    num_train_samples : int or None, default 1000
        Training samples on which train accuracy is measured (None: all).
    num_val_samples : int or None, default None
        Likewise for validation accuracy.
    checkpoint_name : str, optional
        Write ``f"{checkpoint_name}_epoch_{epoch}.npz"`` at the end of each epoch; the
        folder must exist. Temporary files left by a killed write are removed at the next.
    print_every : int, default 10
        Log the loss every this many iterations (when verbose).
    verbose : bool, default True
    seed : int, optional
        Seeds minibatch sampling and accuracy subsampling; None draws fresh entropy.
    backend : {'hand', 'autograd'}, default 'hand'
        Gradients from ``model.loss`` or from autograd through ``model.twin_grads``.
    progress : bool, default True
        Show a tqdm progress bar on stderr when verbose.
    """

    def __init__(self, model, data, **kwargs):
        unknown = sorted(set(kwargs) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"Solver got unexpected keyword argument(s) {unknown}; accepted: {sorted(DEFAULTS)}")
        opts = {**DEFAULTS, **kwargs}
        self.model = model
        self._set_data(data)
        self.update_rule, self.update_rule_name = self._resolve_rule(opts["update_rule"])
        self.optim_config = dict(opts["optim_config"] or {})
        lr_decay = opts["lr_decay"]
        if not isinstance(lr_decay, numbers.Real) or not lr_decay > 0:
            raise ValueError(f"Solver: lr_decay must be a number > 0, got {lr_decay!r}")
        # A Python float: a np.float64 learning rate would promote float32 updates to float64.
        self.lr_decay = float(lr_decay)
        self.batch_size = _count("batch_size", opts["batch_size"], maximum=MAX_BATCH_SIZE)
        self.num_epochs = _count("num_epochs", opts["num_epochs"], minimum=0, maximum=MAX_EPOCHS)
        self.num_train_samples = _count("num_train_samples", opts["num_train_samples"], optional=True)
        self.num_val_samples = _count("num_val_samples", opts["num_val_samples"], optional=True)
        self.print_every = _count("print_every", opts["print_every"])
        name = opts["checkpoint_name"]
        self.checkpoint_name = None if name is None else os.fspath(name)
        self.verbose, self.progress = bool(opts["verbose"]), bool(opts["progress"])
        self.seed = _count("seed", opts["seed"], minimum=0, optional=True)
        if opts["backend"] not in BACKENDS:
            raise ValueError(f"Solver: backend must be one of {BACKENDS}, got {opts['backend']!r}")
        if opts["backend"] == "autograd" and not callable(getattr(model, "twin_grads", None)):
            raise ValueError(f"Solver: backend='autograd' needs model.twin_grads(X, y); {type(model).__name__} has none")
        self.backend = opts["backend"]
        # Two independent streams, so evaluating accuracy never shifts the minibatch sequence.
        batch_seed, eval_seed = np.random.SeedSequence(self.seed).spawn(2)
        self.rng, self.eval_rng = np.random.default_rng(batch_seed), np.random.default_rng(eval_seed)
        self._reset()

    def _set_data(self, data) -> None:
        required = ("X_train", "y_train", "X_val", "y_val")
        missing = [k for k in required if k not in data]
        if missing:
            raise KeyError(f"Solver: data is missing {missing}; it needs {list(required)}, has {sorted(data)}")
        arrays = {k: np.asarray(data[k]) for k in required}
        input_dim = getattr(self.model, "input_dim", None)
        for split in ("train", "val"):
            X, y = arrays[f"X_{split}"], arrays[f"y_{split}"]
            if X.ndim < 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
                raise ValueError(f"Solver: data['X_{split}'] (shape {X.shape}) must have one row per label in "
                                 f"data['y_{split}'] (shape {y.shape}), and at least one")
            if input_dim is not None and int(np.prod(X.shape[1:])) != input_dim:
                raise ValueError(f"Solver: data['X_{split}'] has shape {X.shape}, {int(np.prod(X.shape[1:]))} "
                                 f"features per sample, but the model's input_dim is {input_dim}")
        self.X_train, self.y_train = arrays["X_train"], arrays["y_train"]
        self.X_val, self.y_val = arrays["X_val"], arrays["y_val"]

    @staticmethod
    def _resolve_rule(rule):
        if callable(rule):
            return rule, getattr(rule, "__name__", repr(rule))
        return optim.get_update_rule(rule), rule  # ValueError naming it and the known rules

    def _reset(self) -> None:
        self.epoch = 0
        self.best_val_acc = 0.0
        self.best_params, self.best_bn_stats = {}, []
        self.loss_history, self.train_acc_history, self.val_acc_history = [], [], []
        self.optim_configs = {p: copy.deepcopy(self.optim_config) for p in self.model.params}

    # -- training ---------------------------------------------------------------------

    def _loss_and_grads(self, X, y):
        if self.backend == "autograd":
            return self.model.twin_grads(X, y)
        return self.model.loss(X, y)

    def _step(self) -> None:
        """One update: sample a minibatch (with replacement, as CS231n), take the gradient, update every param."""
        batch = self.rng.choice(self.X_train.shape[0], self.batch_size)
        if getattr(self.model, "dropout_param", None):
            # A seeded net would otherwise reuse one mask every step; a seed drawn from
            # our generator gives fresh masks that a resumed run redraws identically.
            self.model.dropout_param["seed"] = int(self.rng.integers(2**63))
        loss, grads = self._loss_and_grads(self.X_train[batch], self.y_train[batch])
        self.loss_history.append(loss)
        for name, w in self.model.params.items():
            next_w, self.optim_configs[name] = self.update_rule(w, grads[name], self.optim_configs[name])
            self.model.params[name] = next_w

    def check_accuracy(self, X, y, num_samples=None, batch_size=100):
        """Fraction of ``X`` classified as ``y``, on a random subsample of ``num_samples`` rows if given.

        The subsample comes from the solver's own evaluation stream, never from the
        minibatch stream, so measuring accuracy does not change which batches train.
        """
        N = X.shape[0]
        if num_samples is not None and N > num_samples:
            rows = self.eval_rng.choice(N, num_samples, replace=False)
            X, y, N = X[rows], y[rows], num_samples
        predictions = [np.argmax(self.model.loss(X[i:i + batch_size]), axis=1) for i in range(0, N, batch_size)]
        return np.mean(np.concatenate(predictions) == y)

    def _bn_stats(self) -> list:
        return [{k: v.copy() for k, v in bn.items() if isinstance(v, np.ndarray)}
                for bn in getattr(self.model, "bn_params", [])]

    def _set_bn_stats(self, stats: list) -> None:
        for bn, layer in zip(getattr(self.model, "bn_params", []), stats):
            for key in [k for k, v in bn.items() if isinstance(v, np.ndarray)]:
                del bn[key]
            bn.update({k: v.copy() for k, v in layer.items()})

    def restore_best(self) -> None:
        """Write the best params and their batch-norm running statistics back into the model (copies)."""
        if self.best_params:
            self.model.params = {k: v.copy() for k, v in self.best_params.items()}
            self._set_bn_stats(self.best_bn_stats)

    def train(self) -> None:
        """Run (or continue, after a resume) the optimization up to ``num_epochs``, then restore the best model."""
        num_train = self.X_train.shape[0]
        iterations_per_epoch = max(num_train // self.batch_size, 1)
        num_iterations = self.num_epochs * iterations_per_epoch
        start = self.epoch * iterations_per_epoch
        bar = None
        if self.verbose and self.progress:
            bar = tqdm(total=num_iterations, initial=min(start, num_iterations), file=sys.stderr,
                       desc="train", unit="it", dynamic_ncols=True)
        try:
            for t in range(start, num_iterations):
                self._step()
                if bar is not None:
                    bar.update()
                if self.verbose and t % self.print_every == 0:
                    self._log(bar, f"(Iteration {t + 1} / {num_iterations}) loss: {self.loss_history[-1]:f}")
                epoch_end = (t + 1) % iterations_per_epoch == 0
                if epoch_end:
                    self.epoch += 1
                    for config in self.optim_configs.values():
                        if "learning_rate" in config:
                            config["learning_rate"] *= self.lr_decay
                if t == 0 or t == num_iterations - 1 or epoch_end:
                    self._evaluate(bar, num_iterations)
                    if epoch_end:
                        self._save_checkpoint(bar)  # after the best model is updated: the file is the whole state
        finally:
            if bar is not None:
                bar.close()
        self.restore_best()

    def _evaluate(self, bar, num_iterations) -> None:
        train_acc = self.check_accuracy(self.X_train, self.y_train, num_samples=self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, num_samples=self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if self.verbose:
            self._log(bar, f"(Epoch {self.epoch} / {self.num_epochs}) train acc: {train_acc:f}; val_acc: {val_acc:f}")
            if bar is not None:
                bar.set_postfix(epoch=self.epoch, loss=f"{self.loss_history[-1]:.4f}",
                                train_acc=f"{train_acc:.3f}", val_acc=f"{val_acc:.3f}")
        # `not self.best_params`: an accuracy of 0 must still leave a best model to restore.
        if val_acc > self.best_val_acc or not self.best_params:
            self.best_val_acc = val_acc
            self.best_params = {k: v.copy() for k, v in self.model.params.items()}
            self.best_bn_stats = self._bn_stats()

    @staticmethod
    def _log(bar, message: str) -> None:
        if bar is not None:
            bar.write(message, file=sys.stderr)  # above the bar, which a print would break
        else:
            print(message)

    # -- checkpoints ------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The solver's and the model's complete state, as a :class:`Checkpoint`."""
        settings = {k: getattr(self, k) for k in RESUMED}
        settings["optim_config"] = self.optim_config
        config = getattr(self.model, "config", None)
        return Checkpoint(
            epoch=self.epoch, update_rule=self.update_rule_name, settings=settings,
            model_config=config if isinstance(config, dict) else None,
            params=self.model.params, bn_stats=self._bn_stats(),
            best_params=self.best_params, best_bn_stats=self.best_bn_stats, best_val_acc=self.best_val_acc,
            optim_configs=self.optim_configs, loss_history=np.asarray(self.loss_history),
            train_acc_history=np.asarray(self.train_acc_history, dtype=np.float64),
            val_acc_history=np.asarray(self.val_acc_history, dtype=np.float64),
            rng_states={"batch": self.rng.bit_generator.state, "eval": self.eval_rng.bit_generator.state},
        )

    def _save_checkpoint(self, bar=None) -> None:
        if self.checkpoint_name is None:
            return
        path = f"{self.checkpoint_name}_epoch_{self.epoch}.npz"
        self.checkpoint().save(path, stale=stale_pattern(self.checkpoint_name))
        if self.verbose:
            self._log(bar, f"Saved checkpoint to {path}")

    def load_checkpoint(self, path) -> None:
        """Restore the model and this solver from ``path``, written by a run with the same model.

        Everything is validated before anything changes: a truncated or corrupt
        file, or one that does not fit the model or this solver's update rule,
        raises ValueError naming the file and leaves model and solver untouched.
        """
        self._apply(Checkpoint.load(path, model=self.model), path)

    def _apply(self, ckpt: Checkpoint, path) -> None:
        ckpt.check_against(self.model, path)
        if ckpt.update_rule != self.update_rule_name:
            raise ValueError(f"{path}: checkpoint was written with update rule {ckpt.update_rule!r}, "
                             f"this solver uses {self.update_rule_name!r}")
        if set(ckpt.rng_states) != {"batch", "eval"}:
            raise ValueError(f"{path}: checkpoint must hold the 'batch' and 'eval' generator states, "
                             f"has {sorted(ckpt.rng_states)}")
        # Validated: from here on nothing can fail halfway.
        self.rng = make_generator(ckpt.rng_states["batch"])
        self.eval_rng = make_generator(ckpt.rng_states["eval"])
        self.model.params = {k: v.copy() for k, v in ckpt.params.items()}
        self._set_bn_stats(ckpt.bn_stats)
        self.epoch = ckpt.epoch
        self.best_val_acc = ckpt.best_val_acc
        self.best_params = {k: v.copy() for k, v in ckpt.best_params.items()}
        self.best_bn_stats = [dict(layer) for layer in ckpt.best_bn_stats]
        self.optim_configs = copy.deepcopy(ckpt.optim_configs)
        self.loss_history = list(ckpt.loss_history)
        self.train_acc_history = list(ckpt.train_acc_history)
        self.val_acc_history = list(ckpt.val_acc_history)

    @classmethod
    def resume(cls, path, model, data, **kwargs) -> "Solver":
        """A solver that continues the run saved in ``path``.

        Settings (update rule, optim_config, batch size, number of epochs, lr decay, ...)
        come from the checkpoint; ``kwargs`` override them (e.g. ``num_epochs`` to train
        longer, ``verbose``; a custom callable ``update_rule`` must be passed again).
        ``checkpoint_name`` is never taken from the file: pass it to go on writing checkpoints.
        ``model`` must be built like the checkpointed one; its state is overwritten.
        """
        ckpt = Checkpoint.load(path, model=model)
        settings = {k: ckpt.settings[k] for k in RESUMED if k in ckpt.settings}
        settings.update(update_rule=ckpt.update_rule, optim_config=ckpt.settings.get("optim_config"))
        settings.update(kwargs)
        solver = cls(model, data, **settings)
        solver._apply(ckpt, path)
        return solver
