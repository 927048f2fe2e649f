"""Diagnoses a student can act on: the hint fits the kind of check, shapes and values are told apart,
an untouched template is missing, and no message repeats itself.

Each submission is ``good_layers.py`` with one line changed, as students change it.
"""

import contextlib
import io
import json
from pathlib import Path

import pytest

from twingrad.cli import main

GOOD = (Path(__file__).parent / "verify_fixtures" / "good_layers.py").read_text()


def _verify(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *argv])
    return code, out.getvalue(), err.getvalue()


def _graded(tmp_path, name, old, new, only, *extra):
    assert GOOD.count(old) == 1, old
    path = tmp_path / f"{name}.py"
    path.write_text(GOOD.replace(old, new))
    code, out, err = _verify("--impl", str(path), "--json", "-k", "3", "--only", only, "--sandbox", "none", *extra)
    return json.loads(out)


@pytest.mark.parametrize("old, new, hint", [
    ("        inv_std = 1.0 / np.sqrt(var + eps)\n", "        inv_std = 1.0 / (np.sqrt(var) + eps)\n",
     "eps is outside the square root"),
    ("        var = np.var(x, axis=0)\n", "        var = np.var(x, axis=0, ddof=1)\n", "unbiased variance (ddof=1)"),
])
def test_a_wrong_forward_gets_a_forward_hint_never_a_backward_one(tmp_path, old, new, hint):
    doc = _graded(tmp_path, "bn", old, new, "batchnorm_forward")
    out = next(c for c in doc["checks"] if c["gradient"] == "out")
    assert out["status"] == "fail"
    hints = out["diagnosis"]["hints"]
    assert any(hint in h for h in hints), hints
    assert not any("path through" in h for h in hints), hints  # the backward's mean/variance paths


def test_a_running_mean_of_the_wrong_shape_says_whether_its_values_are_right(tmp_path):
    old = "        running_mean = momentum * running_mean + (1 - momentum) * mu\n"
    column = old.replace("* mu\n", "* mu).reshape(-1, 1)\n").replace("= momentum", "= (momentum")
    right = _graded(tmp_path, "shape", old, column, "batchnorm_forward")
    message = next(c["message"] for c in right["checks"] if c["status"] == "error")
    assert "right values, shape (" in message and ", 1) instead of (" in message
    wrong = _graded(tmp_path, "both", old, column.replace("* mu)", "* 2 * mu)"), "batchnorm_forward")
    message = next(c["message"] for c in wrong["checks"] if c["status"] == "error")
    assert "the values are wrong too" in message


def test_a_gradient_of_the_wrong_shape_with_right_values_is_told_so(tmp_path):
    doc = _graded(tmp_path, "db", "    db = np.sum(dout, axis=0)\n", "    db = np.sum(dout, axis=0).reshape(-1, 1)\n",
                  "affine_forward,affine_backward")
    message = next(c["message"] for c in doc["checks"] if c["status"] == "error")
    assert "right values, shape (" in message and ", 1) instead of (" in message


@pytest.mark.parametrize("old, new, only, quantity", [
    ("    db = np.sum(dout, axis=0)\n", "    db = np.sum(dout, axis=0, keepdims=True)\n",
     "affine_forward,affine_backward", "db"),
    ("        running_mean = momentum * running_mean + (1 - momentum) * mu\n",
     "        running_mean = momentum * running_mean + (1 - momentum) * mu[None, :]\n",
     "batchnorm_forward", "running_mean"),
])
def test_a_leading_axis_of_length_1_is_checked_by_its_values_and_noted(tmp_path, old, new, only, quantity):
    # (1, D) for (D,): numpy, and the course's rel_error, pair each element with its own; the values decide.
    doc = _graded(tmp_path, "keepdims", old, new, only)
    record = next(c for c in doc["checks"] if c["gradient"] == quantity)
    assert record["status"] == "pass" and "extra leading axis of length 1" in record["message"]
    # The same shape with wrong values is a failure of its values, not an error of its shape.
    wrong = _graded(tmp_path, "keepdims_wrong", old, new.replace("= np.sum(", "= 2 * np.sum(")
                    .replace("* mu[None", "* 2 * mu[None"), only)
    record = next(c for c in wrong["checks"] if c["gradient"] == quantity)
    assert record["status"] == "fail", record


def test_an_error_message_does_not_repeat_its_function(tmp_path):
    path = tmp_path / "db.py"
    path.write_text(GOOD.replace("    db = np.sum(dout, axis=0)\n", "    db = np.sum(dout, axis=0).reshape(-1, 1)\n"))
    code, out, _ = _verify("--impl", str(path), "-k", "2", "--only", "affine_forward,affine_backward",
                           "--sandbox", "none")
    assert code == 1 and "affine_backward: affine_backward:" not in out
    assert "  affine_backward: db has shape" in out


TEMPLATE_2016 = '''import numpy as np


def affine_forward(x, w, b):
  out = None
  #############################################################################
  # TODO: Implement the affine forward pass. Store the result in out. You     #
  # will need to reshape the input into rows.                                 #
  #############################################################################
  pass
  #############################################################################
  #                             END OF YOUR CODE                              #
  #############################################################################
  out = out.astype(x.dtype)
  cache = (x, w, b)
  return out, cache


def affine_backward(dout, cache):
  x, w, b = cache
  dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)
  #############################################################################
  # TODO: Implement the affine backward pass.                                 #
  #############################################################################
  pass
  #############################################################################
  #                             END OF YOUR CODE                              #
  #############################################################################
  return dx, dw, db


def relu_forward(x):
    out = None
    ###########################################################################
    # TODO: Implement the ReLU forward pass.                                  #
    ###########################################################################
    # *****START OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****

    out = np.maximum(0, x)

    # *****END OF YOUR CODE (DO NOT DELETE/MODIFY THIS LINE)*****
    ###########################################################################
    #                             END OF YOUR CODE                            #
    ###########################################################################
    cache = x
    return out, cache
'''


def test_an_untouched_template_is_missing_even_when_its_own_lines_raise(tmp_path):
    path = tmp_path / "template.py"
    path.write_text(TEMPLATE_2016)
    code, out, _ = _verify("--impl", str(path), "--json", "-k", "2", "--only",
                           "affine_forward,affine_backward,relu_forward", "--sandbox", "none")
    doc = json.loads(out)
    assert doc["functions"] == {"affine_forward": "missing", "affine_backward": "missing", "relu_forward": "pass"}
    messages = {c["function"]: c["message"] for c in doc["checks"] if c["status"] == "missing"}
    assert "TODO blocks are empty" in messages["affine_forward"]
    assert doc["status"] == "incomplete"


CONV = (Path(__file__).parent / "verify_fixtures" / "conv_layers.py").read_text()


@pytest.mark.parametrize("functions, old, new, gradient, hint", [
    ("conv_forward_naive", "out[:, f, i, j] = np.sum(window * w[f], axis=(1, 2, 3)) + b[f]",
     "out[:, f, i, j] = np.sum(window * w[f, :, ::-1, ::-1], axis=(1, 2, 3)) + b[f]", "out", "kernel is flipped"),
    ("conv_forward_naive,conv_backward_naive", "            hs, ws = i * stride, j * stride\n",
     "            hs, ws = i, j\n", "dx", "stride is ignored in the backward pass"),
    ("max_pool_forward_naive,max_pool_backward_naive",
     "                    dx[n, c, i * stride + k, j * stride + l] += dout[n, c, i, j]\n",
     "                    dx[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw] += dout[n, c, i, j]\n",
     "dx", "every element of the window"),
    ("spatial_batchnorm_forward", "    mu, var = flat.mean(axis=0), flat.var(axis=0)\n    x_hat = (flat - mu) / np.sqrt(var + eps)\n",
     "    mu, var = flat.mean(axis=0), flat.var(axis=0)\n    x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)\n"
     "    x_hat = x_hat.transpose(0, 2, 3, 1).reshape(-1, C)\n", "out", "over the batch only"),
    ("spatial_groupnorm_forward", "    groups = x.reshape(N, G, C // G, H, W)\n",
     "    groups = x.reshape(N, C // G, G, H, W)\n", "out", "groups are split on the wrong axis"),
])
def test_the_classic_convolutional_mistakes_are_named(tmp_path, functions, old, new, gradient, hint):
    assert CONV.count(old) == 1, old
    path = tmp_path / "conv.py"
    path.write_text(CONV.replace(old, new))
    code, out, _ = _verify("--impl", str(path), "--json", "-k", "5", "--only", functions, "--sandbox", "none",
                           "--seed", "3")
    doc = json.loads(out)
    failing = [c for c in doc["checks"] if c["status"] == "fail" and c["gradient"] == gradient]
    assert failing, doc["functions"]
    hints = " ".join(h for c in failing for h in c["diagnosis"]["hints"])
    assert hint in hints, hints


def test_a_students_three_layer_convnet_is_checked_three_ways(tmp_path):
    path = tmp_path / "layers.py"
    path.write_text(GOOD + "\n" + CONV.split('import numpy as np\n', 1)[1])
    code, out, _ = _verify("--impl", str(path), "--json", "-k", "2", "--only", "ThreeLayerConvNet.loss",
                           "--sandbox", "none")
    doc = json.loads(out)
    assert doc["functions"] == {"ThreeLayerConvNet.loss": "pass"}
    assert {c["gradient"] for c in doc["checks"]} == {"loss", "scores_test", "W", "b"}
    wrong_test = tmp_path / "wrong_test.py"  # test mode (no labels) must return the scores themselves
    wrong_test.write_text(path.read_text().replace("        if y is None:\n            return scores\n",
                                                   "        if y is None:\n            return scores * 0\n"))
    doc = json.loads(_verify("--impl", str(wrong_test), "--json", "-k", "2", "--only", "ThreeLayerConvNet.loss",
                             "--sandbox", "none")[1])
    assert {c["gradient"]: c["status"] for c in doc["checks"]}["scores_test"] == "fail"
    broken = tmp_path / "broken.py"
    broken.write_text(path.read_text().replace("grads['W%d' % i] += self.reg * self.params['W%d' % i]",
                                               "grads['W%d' % i] += 2 * self.reg * self.params['W%d' % i]"))
    doc = json.loads(_verify("--impl", str(broken), "--json", "-k", "3", "--only", "ThreeLayerConvNet.loss",
                             "--sandbox", "none")[1])
    assert {c["gradient"]: c["status"] for c in doc["checks"]}["W"] == "fail"


def test_an_empty_slice_at_pad_zero_is_named(tmp_path):
    path = tmp_path / "conv.py"
    path.write_text(CONV.replace("    dx = dx_pad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]\n",
                                 "    dx = dx_pad[:, :, pad:-pad, pad:-pad]\n"))
    code, out, _ = _verify("--impl", str(path), "--json", "-k", "5", "--only", "conv_forward_naive,conv_backward_naive",
                           "--sandbox", "none")
    message = next(c["message"] for c in json.loads(out)["checks"] if c["status"] == "error")
    assert "an empty slice" in message and "pad = 0" in message


@pytest.mark.parametrize("convention, formula", [("drop", "= 1/p with p = "), ("keep", "= 1/(1 - p) with p = ")])
def test_the_other_conventions_scale_is_named_with_the_p_the_code_was_given(tmp_path, convention, formula):
    # A mask written for the other convention keeps the wrong fraction and scales by 1 / p_drop.
    old = "        mask = (np.random.rand(*x.shape) >= p) / (1 - p)\n"
    # good_layers.py treats p as the drop probability: checked in the keep convention, it is the other one.
    new = "        mask = (np.random.rand(*x.shape) < p) / p\n" if convention == "drop" else old
    doc = _graded(tmp_path, f"other_{convention}", old, new, "dropout_forward", "--dropout-convention", convention)
    hints = [h for c in doc["checks"] if c["diagnosis"] for h in c["diagnosis"]["hints"]]
    assert any(formula in h and "probability" in h for h in hints), hints


def test_the_diagnosis_shows_the_case_furthest_outside_its_tolerance_and_names_the_nan_ones():
    import numpy as np

    from twingrad.gradcheck import compare, tolerance
    from twingrad.verify.results import Collector, Outcome
    from twingrad.verify.settings import Settings

    tol = tolerance("exact", np.float64)
    collector = Collector("rmsprop", Settings(cases=4))
    expected = np.array([0.5, -0.25, 2.0])
    # case 0: slightly off and the largest input; case 1: far off; case 2: NaN
    for case, got, size in [(0, expected * (1 + 1e-3), 9), (1, expected * -30, 3), (2, expected * np.nan, 3)]:
        collector.add("next_w", "state", Outcome("fail", {"expected": compare(got, expected, tol, "expected")}, case,
                                                 {"w": (size,)}, details={"got": got, "expected": expected}))
    (record,) = collector.records()
    assert record.diagnosis["case"] == 1, record.diagnosis["text"]
    assert "case 2 gave NaN or inf" in record.diagnosis["text"]


@pytest.mark.parametrize("new, hint", [
    ("    dx = np.reshape(dout.dot(w.T), newshape=x.shape)\n", "NumPy 2 removed reshape's newshape="),
    ("    dx = dout.dot(w.T).reshape(x.shape).astype(np.float_)\n", "np.float_ was removed in NumPy 2: use np.float64"),
    ("    dx = dout.dot(w.T).reshape(x.shape) * np.asscalar(np.ones(1))\n", "use a.item()"),
])
def test_code_written_for_numpy_1_is_told_what_numpy_2_removed(tmp_path, new, hint):
    doc = _graded(tmp_path, "numpy1", "    dx = dout.dot(w.T).reshape(x.shape)\n", new,
                  "affine_forward,affine_backward")
    message = next(c["message"] for c in doc["checks"] if c["status"] == "error")
    assert hint in message, message


def test_a_diagnosis_shows_the_cases_arguments_that_are_not_arrays(tmp_path):
    # dropout's p decides what is expected: the case line says which p it was (never the seed, a detail)
    old = "        mask = (np.random.rand(*x.shape) >= p) / (1 - p)\n"
    doc = _graded(tmp_path, "unscaled", old, "        mask = (np.random.rand(*x.shape) >= p) * 1.0\n", "dropout_forward")
    text = next(c["diagnosis"]["text"] for c in doc["checks"] if c["gradient"] == "out")
    assert "dropout_param {'p': 0." in text and "'seed'" not in text, text


def test_an_assignment_into_an_empty_pad_slice_is_explained():
    from twingrad.verify.calling import describe_error

    info = {"type": "ValueError", "message": "could not broadcast input array from shape (3,3,4,2) into shape "
            "(3,3,0,0)", "frames": [["layers.py", 9, "x_padded[:, :, pad:-pad, pad:-pad] = x"]]}
    assert "a[p:-p] is empty when p = 0" in describe_error("conv_forward_naive", info)
    info["frames"] = [["layers.py", 9, "out[:, :, 0:2] = x"]]
    assert "empty" not in describe_error("conv_forward_naive", info)


def test_a_mask_that_ignores_the_seed_fails_the_seed_check(tmp_path):
    # The same units dropped whatever the seed: a mask, but not a random one.
    old = "        mask = (np.random.rand(*x.shape) >= p) / (1 - p)\n"
    new = "        mask = (np.random.RandomState(7).rand(*x.shape) >= p) / (1 - p)\n"
    doc = _graded(tmp_path, "fixed", old, new, "dropout_forward")
    seed = next(c for c in doc["checks"] if c["gradient"] == "seed")
    assert seed["status"] == "fail" and "gave the same mask" in seed["diagnosis"]["text"]
