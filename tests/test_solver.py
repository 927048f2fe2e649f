"""Solver: training, the autograd backend, exact resume, atomic and validated checkpoints, errors."""

import io
import json
import os
import zipfile

import numpy as np
import pytest

import twingrad.checkpoint as checkpoint
from twingrad.data import load_digits
from twingrad.fc_net import FullyConnectedNet
from twingrad.solver import Solver


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def small_net(**kwargs):
    args = {"hidden_dims": [20, 20], "input_dim": 64, "normalization": "batchnorm", "dropout": 0.1, "seed": 1,
            "weight_scale": 0.1, "dtype": np.float32, **kwargs}
    return FullyConnectedNet(**args)


def quiet_solver(model, data, **kwargs):
    args = {"update_rule": "adam", "optim_config": {"learning_rate": 1e-3}, "num_epochs": 2, "batch_size": 200,
            "seed": 0, "verbose": False, "lr_decay": 0.95, **kwargs}
    return Solver(model, data, **args)


def state_of(solver):
    """Everything a run produces, as arrays, for bitwise comparison."""
    model = solver.model
    state = {f"param/{k}": v for k, v in model.params.items()}
    state.update({f"best/{k}": v for k, v in solver.best_params.items()})
    for i, bn in enumerate(model.bn_params):
        state.update({f"bn/{i}/{k}": v for k, v in bn.items() if isinstance(v, np.ndarray)})
    for name, config in solver.optim_configs.items():
        state.update({f"optim/{name}/{k}": np.asarray(v) for k, v in config.items()})
    state["loss"] = np.asarray(solver.loss_history)
    state["train_acc"] = np.asarray(solver.train_acc_history)
    state["val_acc"] = np.asarray(solver.val_acc_history)
    state["best_val_acc"] = np.asarray(solver.best_val_acc)
    return state


def assert_same_state(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert np.array_equal(a[key], b[key]), key


# -- training ---------------------------------------------------------------------------


def test_overfits_50_digits(digits):
    small = {"X_train": digits["X_train"][:50], "y_train": digits["y_train"][:50],
             "X_val": digits["X_val"], "y_val": digits["y_val"]}
    model = FullyConnectedNet([100], input_dim=64, weight_scale=0.1, seed=0, dtype=np.float64)
    solver = Solver(model, small, update_rule="adam", optim_config={"learning_rate": 1e-2}, num_epochs=20,
                    batch_size=25, seed=0, verbose=False)
    solver.train()
    assert solver.check_accuracy(small["X_train"], small["y_train"]) == 1.0
    assert len(solver.loss_history) == 40 and len(solver.val_acc_history) == 21  # after step 1, then per epoch


@pytest.mark.parametrize("normalization, rule", [
    (None, "adam"), ("batchnorm", "sgd_momentum"), ("batchnorm", "adam"), ("layernorm", "adam")])
def test_autograd_backend_takes_the_same_steps(digits, normalization, rule):
    """Five steps on hand gradients and on autograd's agree to rtol 1e-9 in float64.

    The two gradients differ by rounding only (~1e-16 relative; measured after five
    steps: <= 1e-14 relative on every weight). The exception is the bias before batch
    norm, whose gradient is mathematically zero: both backends return rounding noise
    there, and Adam divides it by its own tiny RMS, turning it into steps of about
    lr * noise / (noise + eps) ~ 1e-12 that differ between backends. atol=1e-10 covers
    that (measured 1.1e-11); the running mean, which includes that bias, inherits it.
    """
    runs = []
    for backend in ("hand", "autograd"):
        model = small_net(dtype=np.float64, normalization=normalization)
        solver = quiet_solver(model, digits, backend=backend, num_epochs=1, update_rule=rule)
        for _ in range(5):
            solver._step()
        runs.append((model, solver))
    (hand, hand_solver), (auto, auto_solver) = runs
    for name in hand.params:
        np.testing.assert_allclose(auto.params[name], hand.params[name], rtol=1e-9, atol=1e-10, err_msg=name)
    np.testing.assert_allclose(auto_solver.loss_history, hand_solver.loss_history, rtol=1e-12)
    for bn_auto, bn_hand in zip(auto.bn_params, hand.bn_params):
        assert sorted(bn_auto) == sorted(bn_hand)
        for key in set(bn_hand) & {"running_mean", "running_var"}:
            np.testing.assert_allclose(bn_auto[key], bn_hand[key], rtol=1e-9, atol=1e-10)


def test_dropout_masks_change_every_step_but_replay_from_the_seed(digits, monkeypatch):
    import twingrad.fc_net as fc_net

    masks = []
    real_dropout_forward = fc_net.dropout_forward

    def spy(x, param):
        out, cache = real_dropout_forward(x, param)
        masks.append(cache.mask)
        return out, cache

    monkeypatch.setattr(fc_net, "dropout_forward", spy)
    for _ in range(2):
        solver = quiet_solver(small_net(dropout=0.5), digits, num_epochs=1)
        for _ in range(2):
            solver._step()
    first_run, second_run = masks[:4], masks[4:]
    # Two hidden layers of width 20: the layers differ, and so do the steps.
    assert not np.array_equal(first_run[0], first_run[1])
    assert not np.array_equal(first_run[0], first_run[2])
    # The same solver seed replays the same masks.
    assert all(np.array_equal(a, b) for a, b in zip(first_run, second_run))


def test_best_params_include_batchnorm_running_stats(digits):
    model = small_net()
    solver = quiet_solver(model, digits, num_epochs=3)
    solver.train()
    assert solver.best_params and len(solver.best_bn_stats) == 2
    for bn, best in zip(model.bn_params, solver.best_bn_stats):
        assert sorted(best) == ["running_mean", "running_var"]
        for key in best:
            assert np.array_equal(bn[key], best[key]) and bn[key] is not best[key]
    # restore_best undoes later changes to params and statistics alike
    model.loss(digits["X_train"][:100], digits["y_train"][:100])
    model.params["W1"] = model.params["W1"] + 1
    solver.restore_best()
    assert np.array_equal(model.params["W1"], solver.best_params["W1"])
    assert np.array_equal(model.bn_params[0]["running_mean"], solver.best_bn_stats[0]["running_mean"])


def test_accuracy_checks_do_not_touch_the_minibatch_stream(digits):
    solver = quiet_solver(small_net(), digits)
    before = solver.rng.bit_generator.state
    solver.check_accuracy(digits["X_train"], digits["y_train"], num_samples=100)
    assert solver.rng.bit_generator.state == before


def test_callable_update_rule_and_per_param_configs(digits):
    seen = []

    def halve(w, dw, config=None):
        seen.append(id(config))
        return w - 0.5 * config["learning_rate"] * dw, config

    solver = quiet_solver(small_net(), digits, update_rule=halve, optim_config={"learning_rate": 0.1})
    solver._step()
    assert solver.update_rule_name == "halve"
    assert len(set(seen)) == len(solver.model.params)  # one config (deep copy) per parameter


def test_verbose_shows_progress_on_stderr(digits, capsys):
    quiet_solver(small_net(), digits, num_epochs=1, verbose=True).train()
    err = capsys.readouterr().err
    assert "train acc" in err and "val_acc" in err and "train: 100%" in err


# -- resume -------------------------------------------------------------------------------


@pytest.mark.parametrize("resume_at, learning_rate", [(1, 1e-3), (3, 1e-3), (2, np.float64(1e-3))])
def test_resume_equals_uninterrupted_run(digits, tmp_path, resume_at, learning_rate):
    """Bitwise. A np.float64 learning rate must come back as np.float64: times a float32
    array it computes in float64 (NumPy 2), where a Python float would compute in float32."""
    full = quiet_solver(small_net(), digits, num_epochs=4, checkpoint_name=tmp_path / "full",
                        optim_config={"learning_rate": learning_rate})
    full.train()
    assert sorted(os.listdir(tmp_path)) == [f"full_epoch_{e}.npz" for e in range(1, 5)]

    resumed = Solver.resume(tmp_path / f"full_epoch_{resume_at}.npz", small_net(seed=1), digits,
                            checkpoint_name=tmp_path / "resumed", verbose=False)
    assert resumed.epoch == resume_at and resumed.update_rule_name == "adam"
    assert type(resumed.optim_configs["W1"]["learning_rate"]) is type(full.optim_configs["W1"]["learning_rate"])
    resumed.train()
    assert_same_state(state_of(full), state_of(resumed))
    # The final checkpoints are the same state too.
    a, b = (checkpoint.Checkpoint.load(tmp_path / f"{p}_epoch_4.npz") for p in ("full", "resumed"))
    for key in ("params", "best_params"):
        assert all(np.array_equal(getattr(a, key)[k], getattr(b, key)[k]) for k in getattr(a, key))


def test_load_checkpoint_into_existing_solver(digits, tmp_path):
    first = quiet_solver(small_net(), digits, num_epochs=1, checkpoint_name=tmp_path / "run")
    first.train()
    solver = quiet_solver(small_net(seed=1), digits, num_epochs=3)
    solver.load_checkpoint(tmp_path / "run_epoch_1.npz")
    assert solver.epoch == 1 and len(solver.val_acc_history) == 2
    with pytest.raises(ValueError, match="update rule 'adam', this solver uses 'sgd'"):
        quiet_solver(small_net(), digits, update_rule="sgd").load_checkpoint(tmp_path / "run_epoch_1.npz")


# -- atomic writes ----------------------------------------------------------------------------


def _crash_in_savez(file, **arrays):
    file.write(b"PK\x03\x04 half a zip")  # a crash midway through writing
    raise OSError("disk full")


def _crash_in_replace(src, dst):
    raise OSError("power cut")


@pytest.mark.parametrize("where, crash", [("savez", _crash_in_savez), ("replace", _crash_in_replace)])
def test_crash_while_writing_keeps_previous_checkpoint(digits, tmp_path, monkeypatch, where, crash):
    solver = quiet_solver(small_net(), digits, num_epochs=1, checkpoint_name=tmp_path / "run")
    solver.train()
    path = tmp_path / "run_epoch_1.npz"
    before = path.read_bytes()
    solver.model.params["W1"] = solver.model.params["W1"] + 1  # a new state to (fail to) write
    monkeypatch.setattr(np, "savez", crash) if where == "savez" else monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        solver._save_checkpoint()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run_epoch_1.npz"]  # no temporary file left behind
    solver.load_checkpoint(path)  # still a valid checkpoint


# -- corrupt files ---------------------------------------------------------------------------


@pytest.fixture
def saved(digits, tmp_path):
    """A checkpoint on disk, and a fresh solver to load it into."""
    quiet_solver(small_net(), digits, num_epochs=1, checkpoint_name=tmp_path / "run").train()
    return tmp_path / "run_epoch_1.npz", quiet_solver(small_net(seed=1), digits)


def _rewrite(path, change):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _set_meta(**updates):
    def change(arrays):
        meta = json.loads(str(arrays["metadata"][()]))
        meta.update(updates)
        arrays["metadata"] = np.array(json.dumps(meta))
    return change


def _pickled_object_array(path):
    buffer = io.BytesIO()
    np.savez(buffer, metadata=np.array([{"evil": 1}], dtype=object))
    path.write_bytes(buffer.getvalue())


CORRUPTIONS = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable checkpoint"),
    "garbage": (lambda p: p.write_bytes(os.urandom(1000)), "not a readable checkpoint"),
    "empty": (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
    "flipped byte": (lambda p: p.write_bytes(p.read_bytes()[:200] + b"\xff" + p.read_bytes()[201:]),
                     "Bad CRC-32"),  # byte 200 lies inside the first array's data
    "missing array": (lambda p: _rewrite(p, lambda a: a.pop("param/W2")), r"missing \['param/W2'\]"),
    "no metadata": (lambda p: _rewrite(p, lambda a: a.pop("metadata")), "no 'metadata'"),
    "bad json": (lambda p: _rewrite(p, lambda a: a.update(metadata=np.array("{not json"))), "not valid JSON"),
    "future version": (lambda p: _rewrite(p, _set_meta(version=99)), "unknown checkpoint format version 99"),
    "bad epoch": (lambda p: _rewrite(p, _set_meta(epoch="one")), "epoch must be an int"),
    "bad rng": (lambda p: _rewrite(p, _set_meta(rng={"batch": {"bit_generator": "XYZ"}})), "unknown bit generator"),
    "wrong shape": (lambda p: _rewrite(p, lambda a: a.update({"param/W1": np.zeros((3, 3), np.float32)})),
                    r"param/W1 is float32 \(3, 3\), the model's float32 \(64, 20\)"),
    "wrong dtype": (lambda p: _rewrite(p, lambda a: a.update({"bn/0/running_var": np.zeros(20)})),
                    r"bn/0/running_var is float64"),
    "pickled object": (_pickled_object_array, r"not a readable checkpoint.*pickled objects are never loaded"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_checkpoint_is_rejected_and_model_untouched(saved, corruption):
    path, solver = saved
    corrupt, message = CORRUPTIONS[corruption]
    corrupt(path)
    model = solver.model
    params = {k: v.copy() for k, v in model.params.items()}
    ids = {k: id(v) for k, v in model.params.items()}
    bn = [dict(b) for b in model.bn_params]
    rng_state = solver.rng.bit_generator.state
    with pytest.raises(ValueError, match=message) as info:
        solver.load_checkpoint(path)
    assert str(path) in str(info.value)
    assert {k: id(v) for k, v in model.params.items()} == ids
    assert all(np.array_equal(model.params[k], v) for k, v in params.items())
    assert [dict(b) for b in model.bn_params] == bn and solver.epoch == 0 and solver.loss_history == []
    assert solver.rng.bit_generator.state == rng_state


def test_checkpoint_of_another_architecture_is_rejected(saved, digits):
    path, _ = saved
    other = quiet_solver(small_net(normalization="layernorm"), digits)
    with pytest.raises(ValueError, match="model normalization is 'layernorm' but the checkpoint's is 'batchnorm'"):
        other.load_checkpoint(path)


def test_checkpoint_members_load_without_pickle(saved):
    path, _ = saved
    with zipfile.ZipFile(path) as archive:
        names = {n[: -len(".npy")] for n in archive.namelist()}
    assert {"param/W1", "bn/0/running_mean", "best/bn/1/running_var", "optim/W1/m", "optim/W1/v",
            "history/loss", "history/train_acc", "history/val_acc", "metadata"} <= names
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["metadata"][()]))
    assert meta["epoch"] == 1 and meta["update_rule"] == "adam" and meta["model"]["hidden_dims"] == [20, 20]
    assert meta["optim"]["W1"]["scalars"]["t"] == 6 and meta["rng"]["batch"]["bit_generator"] == "PCG64"


# -- argument errors ---------------------------------------------------------------------------


def test_unknown_kwargs_are_listed(digits):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['epochs', 'lr'\]"):
        Solver(small_net(), digits, lr=1, epochs=3)


def test_unknown_update_rule(digits):
    with pytest.raises(ValueError, match="unknown update rule 'adagrad'; known rules: adam, rmsprop, sgd, sgd_momentum"):
        Solver(small_net(), digits, update_rule="adagrad")


def test_missing_data_keys(digits):
    with pytest.raises(KeyError, match=r"missing \['y_val'\]"):
        Solver(small_net(), {k: v for k, v in digits.items() if k != "y_val"})


@pytest.mark.parametrize("change, match", [
    ({"y_train": np.zeros(3, np.int64)}, r"data\['X_train'\] \(shape \(1297, 64\)\).*data\['y_train'\] \(shape \(3,\)\)"),
    ({"X_val": np.zeros((5, 64))}, r"data\['X_val'\] \(shape \(5, 64\)\).*data\['y_val'\] \(shape \(200,\)\)"),
    ({"X_train": np.zeros((1297, 63))}, r"data\['X_train'\] has shape \(1297, 63\), 63 features.*input_dim is 64"),
])
def test_mismatched_data_shapes(digits, change, match):
    with pytest.raises(ValueError, match=match):
        Solver(small_net(), {**digits, **change})


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "jax"}, "backend must be one of"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"lr_decay": 0}, "lr_decay must be a number > 0"),
    ({"seed": -3}, "seed"),
])
def test_bad_settings(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Solver(small_net(), digits, **kwargs)
