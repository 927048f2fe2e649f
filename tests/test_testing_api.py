"""twingrad.testing and twingrad.strategies, used the way a student uses them in their own pytest suite:
property tests of their own layers.py, and one assertion over the whole module."""

import importlib.util
from pathlib import Path

import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twingrad import strategies as tst
from twingrad.testing import assert_gradients, assert_layer_matches, check_module

FIXTURE = Path(__file__).parent / "verify_fixtures" / "good_layers.py"


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


my = _import(FIXTURE, "my_layers")  # a student's "import my_layers"


# -- the student's twins, in autograd.numpy -------------------------------------------


def relu_twin(x):
    return anp.where(x > 0, x, 0.0)


def affine_twin(x, w, b):
    return anp.dot(anp.reshape(x, (x.shape[0], -1)), w) + b


def softmax_twin(x, y):
    shifted = x - anp.max(x, axis=1, keepdims=True)
    log_probs = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
    return -anp.mean(log_probs[np.arange(len(y)), y])


def batchnorm_twin(x, gamma, beta, bn_param):
    mean = anp.mean(x, axis=0)
    var = anp.mean((x - mean) ** 2, axis=0)
    return gamma * (x - mean) / anp.sqrt(var + 1e-5) + beta


# -- property tests, as in a student's test_layers.py -----------------------------------


@given(x=tst.arrays(tst.batch_shapes(max_ndim=4)), seed=tst.seeds())
def test_my_relu(x, seed):
    assert_layer_matches(my.relu_forward, my.relu_backward, twin=relu_twin, inputs={"x": x}, wrt=["x"],
                         kinks=lambda x: x, seed=seed)


@given(shape=tst.batch_shapes(min_ndim=2, max_ndim=4), outputs=st.integers(1, 5), seed=tst.seeds())
def test_my_affine(shape, outputs, seed):
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.normal(size=shape), "w": rng.normal(size=(int(np.prod(shape[1:])), outputs)),
              "b": rng.normal(size=outputs)}
    assert_layer_matches(my.affine_forward, my.affine_backward, twin=affine_twin, inputs=inputs,
                         wrt=["x", "w", "b"], seed=seed)


@given(scores=tst.scores_and_labels())
def test_my_softmax_loss(scores):
    x, y = scores
    assert_layer_matches(my.softmax_loss, None, twin=softmax_twin, inputs={"x": x, "y": y}, wrt=["x"])


@given(inputs=tst.normalization_inputs(min_batch=3), seed=tst.seeds())
def test_my_batchnorm(inputs, seed):
    x, gamma, beta = inputs
    assert_layer_matches(my.batchnorm_forward, my.batchnorm_backward_alt, twin=batchnorm_twin,
                         inputs={"x": x, "gamma": gamma, "beta": beta, "bn_param": {"mode": "train"}},
                         wrt=["x", "gamma", "beta"], seed=seed)


@given(x=tst.arrays_away_from_kinks(tst.batch_shapes(max_ndim=3)), param=tst.dropout_params())
def test_my_dropout_against_its_own_forward(x, param):
    # No twin: the student's mask comes from their generator, so the backward is
    # checked against central differences of their own (seeded) forward.
    assert_layer_matches(my.dropout_forward, my.dropout_backward, inputs={"x": x, "dropout_param": param}, wrt=["x"])


@given(y=tst.labels(5, 3), x=tst.away_from_kinks((2, 3)))
def test_the_small_strategies(y, x):
    assert y.shape == (5,) and y.min() >= 0 and y.max() < 3
    assert np.all(np.abs(x) >= 0.05)


@given(drop=tst.dropout_params(probabilities=(0.25,)), keep=tst.dropout_params(probabilities=(0.25,), keep_prob=True))
def test_dropout_params_in_both_conventions(drop, keep):
    assert drop["p"] == 0.25 and keep["p"] == 0.75 and drop["mode"] == "train" and "seed" in drop


# -- the whole module in one assertion ---------------------------------------------------------


def test_assert_gradients_passes_the_whole_module():
    assert_gradients(None, my, cases=2)
    assert_gradients("batchnorm_backward", str(FIXTURE), cases=2)  # a path works too


def test_a_broken_layer_fails_with_the_diagnosis_of_the_command_line(tmp_path):
    broken = tmp_path / "broken_layers.py"
    broken.write_text(FIXTURE.read_text().replace("    dx = dx1 + dx2 + dx3\n", "    dx = dx1 + dx2\n"))
    with pytest.raises(AssertionError) as failure:
        assert_gradients(["batchnorm_backward", "batchnorm_backward_alt"], str(broken), cases=2)
    message = str(failure.value)
    assert message.startswith("batchnorm_backward: dx is wrong")
    assert "path through the mean" in message and "batchnorm_backward_alt" not in message
    assert f"twingrad verify --impl {broken} --only batchnorm_backward --seed 0 --case" in message
    records = check_module(str(broken), "batchnorm_backward", cases=2)
    assert [r.diagnosis["text"] for r in records if r.status == "fail"] == [message]


def test_assert_layer_matches_names_the_wrong_gradient_and_the_pattern():
    rng = np.random.default_rng(0)
    inputs = {"x": rng.normal(size=(4, 3)), "w": rng.normal(size=(3, 2)), "b": rng.normal(size=2)}

    def backward_with_mean(dout, cache):
        dx, dw, _ = my.affine_backward(dout, cache)
        return dx, dw, dout.mean(axis=0)

    for twin in (affine_twin, None):
        with pytest.raises(AssertionError, match=r"(?s)db is wrong.*1/N with N = 4"):
            assert_layer_matches(my.affine_forward, backward_with_mean, twin=twin, inputs=inputs, wrt=["x", "w", "b"])


def test_assert_layer_matches_reports_a_wrong_return_value():
    inputs = {"x": np.ones((2, 2)), "w": np.ones((2, 2)), "b": np.ones(2)}
    with pytest.raises(AssertionError, match=r"returned a tuple of 2 values; expected 3: \(dx, dw, db\)"):
        assert_layer_matches(my.affine_forward, lambda dout, cache: (dout, dout), twin=affine_twin, inputs=inputs,
                             wrt=["x", "w", "b"])
