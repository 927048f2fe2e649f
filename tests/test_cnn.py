"""ThreeLayerConvNet: hand gradients vs its autograd twin vs central differences; Solver; twingrad train."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from twingrad.cnn import ThreeLayerConvNet, twin_loss
from twingrad.gradcheck import eval_numerical_gradient, tolerance
from twingrad.solver import Solver

SRC = Path(__file__).resolve().parent.parent / "src"
EXACT, NUMERIC = tolerance("exact", np.float64), tolerance("numeric", np.float64)


def _small_net(reg=0.0, seed=0, **kwargs):
    options = dict(input_dim=(2, 6, 4), num_filters=3, filter_size=3, hidden_dim=5, num_classes=4,
                   weight_scale=0.5, reg=reg, dtype=np.float64, seed=seed)
    options.update(kwargs)
    return ThreeLayerConvNet(**options)


def _batch(net, n=3, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, *net.input_shape))
    return X, rng.integers(0, net.num_classes, size=n)


def test_parameter_shapes_follow_the_course():
    net = ThreeLayerConvNet(seed=0)
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {"W1": (32, 3, 7, 7), "b1": (32,), "W2": (32 * 16 * 16, 100), "b2": (100,),
                      "W3": (100, 10), "b3": (10,)}
    assert all(v.dtype == np.float32 for v in net.params.values())
    assert net.conv_param == {"stride": 1, "pad": 3}


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_hand_gradients_match_the_twin_and_central_differences(reg):
    net = _small_net(reg=reg)
    X, y = _batch(net)
    loss, grads = net.loss(X, y)
    twin_value, twin_grads = net.twin_grads(X, y)
    np.testing.assert_allclose(loss, twin_value, rtol=EXACT.rtol, atol=EXACT.atol)
    for name, param in net.params.items():
        np.testing.assert_allclose(grads[name], twin_grads[name], rtol=EXACT.rtol, atol=EXACT.atol, err_msg=name)

        def f(_):
            return net.loss(X, y)[0]

        numeric = eval_numerical_gradient(f, param, verbose=False)
        np.testing.assert_allclose(grads[name], numeric, rtol=NUMERIC.rtol, atol=NUMERIC.atol, err_msg=name)


def test_regularization_adds_half_reg_times_squared_weights():
    X, y = _batch(_small_net())
    plain, regularized = _small_net(reg=0.0), _small_net(reg=0.3)
    expected = plain.loss(X, y)[0] + 0.15 * sum(np.sum(plain.params[k] ** 2) for k in ("W1", "W2", "W3"))
    np.testing.assert_allclose(regularized.loss(X, y)[0], expected, rtol=1e-12)
    np.testing.assert_allclose(twin_loss(regularized.params, X, y, **regularized.twin_settings), expected, rtol=1e-12)


def test_scores_without_labels():
    net = _small_net()
    X, _ = _batch(net, n=4)
    scores = net.loss(X)
    assert scores.shape == (4, 4)
    X[2] += 1.0  # each sample's scores depend on that sample only: no batch statistics
    np.testing.assert_array_equal(net.loss(X)[[0, 1, 3]], scores[[0, 1, 3]])


def test_solver_overfits_a_small_batch():
    """The course's sanity check: 20 samples learned to 100% training accuracy."""
    net = ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=8, filter_size=3, hidden_dim=30, weight_scale=0.1,
                            seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, size=20)
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    solver = Solver(net, data, update_rule="adam", optim_config={"learning_rate": 1e-2}, num_epochs=40,
                    batch_size=10, seed=0, verbose=False)
    solver.train()
    assert solver.loss_history[-1] < 0.1 * solver.loss_history[0]
    assert solver.check_accuracy(X, y) == 1.0


def test_autograd_backend_trains_the_same_net():
    """Solver(backend='autograd') takes the twin's gradients: the same first step as the hand pass."""
    net_hand, net_twin = _small_net(seed=3), _small_net(seed=3)
    X, y = _batch(net_hand, n=4)
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    for net, backend in ((net_hand, "hand"), (net_twin, "autograd")):
        Solver(net, data, update_rule="sgd", optim_config={"learning_rate": 0.1}, num_epochs=1, batch_size=4,
               seed=0, verbose=False, backend=backend).train()
    for name in net_hand.params:
        np.testing.assert_allclose(net_hand.params[name], net_twin.params[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"input_dim": (3, 7, 8)}, r"the 2x2 max pool needs an even height and width, got input_dim = \(3, 7, 8\)"),
    ({"input_dim": (3, 8)}, r"input_dim must be \(C, H, W\)"),
    ({"filter_size": 4}, r"filter_size must be a positive odd int .* got 4"),
    ({"num_filters": 0}, r"num_filters must be a positive int, got 0"),
    ({"reg": -1.0}, r"reg must be a finite number >= 0, got -1.0"),
    ({"dtype": np.int32}, r"dtype must be np.float32 or np.float64"),
])
def test_bad_constructor_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"ThreeLayerConvNet: {message}"):
        ThreeLayerConvNet(**kwargs)


def test_wrong_image_shape_is_named():
    net = _small_net()
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2, 6, 4\) for input_dim = \(2, 6, 4\), "
                                         r"got shape \(3, 48\)"):
        net.loss(np.zeros((3, 48)))


def _run_train(*args, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "twingrad", "train", "--model", "cnn", "--quiet", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_train_cnn_on_digits_reaches_97_percent():
    result = _run_train()
    assert result.returncode == 0, result.stderr
    accuracy = {line.split(":")[0]: line.split()[-1] for line in result.stdout.splitlines() if "accuracy" in line}
    assert float(accuracy["test accuracy"]) >= 0.97, result.stdout


def test_train_cnn_resumes_from_its_checkpoint(tmp_path):
    prefix = tmp_path / "cnn"
    first = _run_train("--epochs", "1", "--checkpoint", str(prefix))
    assert first.returncode == 0, first.stderr
    resumed = _run_train("--resume", f"{prefix}_epoch_1.npz", "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "(2 epochs" in resumed.stdout


def test_the_cifar_configuration_is_the_courses():
    """``--model cnn --dataset cifar10``: 32 filters 7x7 (pad 3), hidden 100, weights of std 1e-3."""
    import argparse

    from twingrad import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    args = parser.parse_args(["--model", "cnn", "--dataset", "cifar10", "--data-dir", "unused"])
    data = {"X_train": np.zeros((2, 3, 32, 32), np.float32)}
    net = train._cnn_model(args, None, data)
    assert net.params["W1"].shape == (32, 3, 7, 7) and net.conv_param == {"stride": 1, "pad": 3}
    assert net.params["W2"].shape == (32 * 16 * 16, 100)
    assert 0.5e-3 < float(np.std(net.params["W2"])) < 2e-3
