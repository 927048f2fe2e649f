"""Bad input gets an error that names the argument, the expected and the actual value."""

import numpy as np
import pytest

from twingrad import layers as L

X = np.ones((4, 3))
GAMMA = np.ones(3)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: L.affine_forward(np.ones((4, 2, 3)), np.ones((5, 2)), np.ones(2)), ValueError,
         r"w must have shape \(D, M\) with D = 6.*x.shape\[1:\] = \(2, 3\).*got w.shape = \(5, 2\)"),
        (lambda: L.affine_forward(X, np.ones((3, 2)), np.ones(3)), ValueError, r"b must have shape \(2,\).*got \(3,\)"),
        (lambda: L.affine_forward([[1.0]], np.ones((1, 1)), np.ones(1)), TypeError, "x must be a numpy array, got list"),
        (lambda: L.affine_forward(np.ones((2, 1), int), np.ones((1, 1)), np.ones(1)), TypeError, "floating dtype.*int"),
        (lambda: L.relu_backward(np.ones((4, 2)), X), ValueError, r"dout must have shape \(4, 3\).*got \(4, 2\)"),
        (lambda: L.affine_backward(np.ones((4, 3)), L.affine_forward(X, np.ones((3, 2)), np.ones(2))[1]), ValueError,
         r"affine_backward: dout must have shape \(4, 2\)"),
        (lambda: L.batchnorm_forward(X, np.ones(2), np.ones(3), {"mode": "train"}), ValueError,
         r"gamma must have shape \(3,\).*got \(2,\)"),
        (lambda: L.batchnorm_forward(X, GAMMA, GAMMA, {}), KeyError, "bn_param must contain 'mode'"),
        (lambda: L.batchnorm_forward(X, GAMMA, GAMMA, {"mode": "eval"}), ValueError,
         r"bn_param\['mode'\] must be 'train' or 'test', got 'eval'"),
        (lambda: L.batchnorm_forward(np.ones((1, 3)), GAMMA, GAMMA, {"mode": "train"}), ValueError, "at least 2 samples"),
        (lambda: L.batchnorm_backward(X, None), ValueError, "train-mode cache"),
        (lambda: L.layernorm_forward(X, GAMMA, np.ones(4)), ValueError, r"beta must have shape \(3,\).*got \(4,\)"),
        (lambda: L.svm_loss(X, np.array([0, 1, 2, 3])), ValueError, r"y must lie in \[0, 3\).*\[0, 3\]"),
        (lambda: L.softmax_loss(X, np.array([0, -1, 2, 0])), ValueError, r"y must lie in \[0, 3\).*\[-1, 2\]"),
        (lambda: L.softmax_loss(X, np.array([0.0, 1.0, 2.0, 0.0])), TypeError, "integer class labels, got dtype float64"),
        (lambda: L.softmax_loss(X, np.array([0, 1])), ValueError, r"y must have shape \(4,\).*got \(2,\)"),
        (lambda: L.dropout_forward(X, {"mode": "train", "p": 1.0}), ValueError, r"p.*must lie in \[0, 1\), got 1.0"),
        (lambda: L.dropout_forward(X, {"mode": "train", "p": -0.1}), ValueError, r"must lie in \[0, 1\), got -0.1"),
        (lambda: L.dropout_forward(X, {"mode": "train"}), KeyError, "dropout_param must contain 'p'"),
        (lambda: L.dropout_forward(X, {"p": 0.5}), KeyError, "dropout_param must contain 'mode'"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
