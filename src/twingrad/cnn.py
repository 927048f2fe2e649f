"""The course's three-layer convolutional network twice: :class:`ThreeLayerConvNet`
(hand-derived backward passes, the fast layers) and :func:`twin_loss` (the same
loss as a pure function of a params dict, differentiated by autograd).

The architecture is::

    conv - relu - 2x2 max pool - affine - relu - affine - softmax

The convolution keeps the image size (stride 1, pad ``(filter_size - 1) / 2``);
the pooling halves it. Parameters are named as in CS231n: ``W1, b1`` (the
filters), ``W2, b2`` (hidden), ``W3, b3`` (scores).
"""

from __future__ import annotations

import numbers

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from . import _validate as check
from . import functional as F
from .layer_utils import affine_relu_backward, affine_relu_forward, conv_relu_pool_backward, conv_relu_pool_forward
from .layers import affine_backward, affine_forward, softmax_loss

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
POOL_PARAM = {"pool_height": 2, "pool_width": 2, "stride": 2}
WEIGHTS = ("W1", "W2", "W3")


def _positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _check_args(input_dim, num_filters, filter_size, hidden_dim, num_classes, weight_scale, reg, dtype, seed):
    """Validate the constructor's arguments; return ``(input_dim as a tuple, dtype)``."""
    f = "ThreeLayerConvNet"
    if not (isinstance(input_dim, (tuple, list)) and len(input_dim) == 3 and all(map(_positive_int, input_dim))):
        raise ValueError(f"{f}: input_dim must be (C, H, W), three positive ints, got {input_dim!r}")
    _, height, width = input_dim
    if height % 2 or width % 2:
        raise ValueError(f"{f}: the 2x2 max pool needs an even height and width, got input_dim = {tuple(input_dim)}")
    for name, value in (("num_filters", num_filters), ("hidden_dim", hidden_dim), ("num_classes", num_classes)):
        if not _positive_int(value):
            raise ValueError(f"{f}: {name} must be a positive int, got {value!r}")
    if not (_positive_int(filter_size) and filter_size % 2 == 1):
        raise ValueError(f"{f}: filter_size must be a positive odd int (the padding keeps the image size), "
                         f"got {filter_size!r}")
    for name, value in (("weight_scale", weight_scale), ("reg", reg)):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value) and value >= 0):
            raise ValueError(f"{f}: {name} must be a finite number >= 0, got {value!r}")
    if seed is not None and not (isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0):
        raise ValueError(f"{f}: seed must be None or an int >= 0, got {seed!r}")
    try:
        np_dtype = None if dtype is None else np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype not in DTYPES:
        raise ValueError(f"{f}: dtype must be np.float32 or np.float64, got {dtype!r}")
    return tuple(int(d) for d in input_dim), np_dtype


class ThreeLayerConvNet:
    """conv - relu - 2x2 max pool - affine - relu - affine - softmax, on images (N, C, H, W).

    Parameters
    ----------
    input_dim : (int, int, int)
        ``(C, H, W)`` of one image; H and W even.
    num_filters : int
    filter_size : int
        Odd: the convolution pads by ``(filter_size - 1) // 2`` and keeps H and W.
    hidden_dim : int
    num_classes : int
    weight_scale : float
        Standard deviation of the initial weights (biases start at 0).
    reg : float
        L2 strength: the loss gains ``0.5 * reg * sum(W**2)`` over W1, W2 and W3.
    dtype : {np.float32, np.float64}
    seed : int, optional
        Seeds the initial weights (``np.random.default_rng``, never the global state).

    Attributes
    ----------
    params : dict of str to ndarray
        ``W1`` (F, C, fs, fs), ``b1`` (F,), ``W2`` (F * H/2 * W/2, hidden), ``b2``,
        ``W3`` (hidden, classes), ``b3``.
    conv_param, pool_param : dict
    """

    def __init__(self, input_dim=(3, 32, 32), num_filters=32, filter_size=7, hidden_dim=100, num_classes=10,
                 weight_scale=1e-3, reg=0.0, dtype=np.float32, seed=None):
        input_dim, dtype = _check_args(input_dim, num_filters, filter_size, hidden_dim, num_classes, weight_scale,
                                       reg, dtype, seed)
        # Not named input_dim: Solver compares an ``input_dim`` attribute with the flattened feature count.
        self.input_shape = input_dim
        self.num_filters, self.filter_size = int(num_filters), int(filter_size)
        self.hidden_dim, self.num_classes = int(hidden_dim), int(num_classes)
        self.weight_scale, self.reg, self.dtype, self.seed = float(weight_scale), float(reg), dtype, seed
        self.conv_param = {"stride": 1, "pad": (filter_size - 1) // 2}
        self.pool_param = dict(POOL_PARAM)

        c, h, w = input_dim
        shapes = {"W1": (num_filters, c, filter_size, filter_size), "b1": (num_filters,),
                  "W2": (num_filters * (h // 2) * (w // 2), hidden_dim), "b2": (hidden_dim,),
                  "W3": (hidden_dim, num_classes), "b3": (num_classes,)}
        rng = np.random.default_rng(seed)
        # Drawn in float64 then cast, so a float32 and a float64 net with the same seed start alike.
        self.params = {name: (weight_scale * rng.standard_normal(shape) if name in WEIGHTS
                              else np.zeros(shape)).astype(dtype) for name, shape in shapes.items()}

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON-able values (checkpoints record them)."""
        return {"model": "cnn", "input_dim": list(self.input_shape), "num_filters": self.num_filters,
                "filter_size": self.filter_size, "hidden_dim": self.hidden_dim, "num_classes": self.num_classes,
                "weight_scale": self.weight_scale, "reg": self.reg, "dtype": self.dtype.name, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items() if k != "model")
        return f"ThreeLayerConvNet({args})"

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"ThreeLayerConvNet.loss: X must hold real numbers, got dtype {X.dtype}")
        if X.ndim != 4 or X.shape[1:] != self.input_shape:
            raise ValueError(f"ThreeLayerConvNet.loss: X must have shape (N, {', '.join(map(str, self.input_shape))}) "
                             f"for input_dim = {self.input_shape}, got shape {X.shape}")
        return X.astype(self.dtype, copy=False)

    def loss(self, X, y=None):
        """Scores, or the loss and its gradients.

        Parameters
        ----------
        X : ndarray, shape (N, C, H, W)
        y : ndarray of int, shape (N,), optional

        Returns
        -------
        scores : ndarray, shape (N, num_classes)
            When y is None.
        loss : scalar of dtype, grads : dict of str to ndarray
            When y is given; ``grads`` is keyed and shaped like ``params``.
        """
        X = self._check_X(X)
        p = self.params
        h1, cache1 = conv_relu_pool_forward(X, p["W1"], p["b1"], self.conv_param, self.pool_param)
        h2, cache2 = affine_relu_forward(h1, p["W2"], p["b2"])
        scores, cache3 = affine_forward(h2, p["W3"], p["b3"])
        if y is None:
            return scores
        if X.shape[0] == 0:
            raise ValueError("ThreeLayerConvNet.loss: the loss of an empty batch is undefined; X has 0 rows")
        y = check.labels("ThreeLayerConvNet.loss", y, X.shape[0], self.num_classes)

        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dh2, grads["W3"], grads["b3"] = affine_backward(dscores, cache3)
        dh1, grads["W2"], grads["b2"] = affine_relu_backward(dh2, cache2)
        # the images' own gradient is never needed: skip the convolution's most expensive product
        _, grads["W1"], grads["b1"] = conv_relu_pool_backward(dh1, cache1, input_grad=False)
        if self.reg:
            reg = self.dtype.type(self.reg)
            for name in WEIGHTS:
                W = p[name]
                loss += reg * self.dtype.type(0.5) * np.vdot(W, W)
                grads[name] += reg * W
        return self.dtype.type(loss), grads

    @property
    def twin_settings(self) -> dict:
        """Keyword arguments that make :func:`twin_loss` compute this net's loss."""
        return {"conv_param": self.conv_param, "pool_param": self.pool_param, "reg": self.reg}

    def twin_grads(self, X, y, params=None):
        """``(loss, grads)`` from autograd through :func:`twin_loss`: the second opinion on :meth:`loss`."""
        X = self._check_X(X)
        y = check.labels("ThreeLayerConvNet.twin_grads", y, X.shape[0], self.num_classes)
        params = self.params if params is None else params
        loss, grads = value_and_grad(lambda p: twin_loss(p, X, y, **self.twin_settings))(params)
        return self.dtype.type(loss), {k: np.asarray(g, dtype=self.dtype) for k, g in grads.items()}


def twin_forward(params, X, *, conv_param, pool_param=POOL_PARAM):
    """Scores of the net as a pure function of ``params``; also the ReLUs' pre-activations (its kinks).

    Returns
    -------
    scores : array, shape (N, C)
    pre_relu : list of arrays
        The convolution's output and the hidden affine's output.
    """
    conv = F.conv(X, params["W1"], params["b1"], conv_param["stride"], conv_param["pad"])
    pooled = F.max_pool(F.relu(conv), pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"])
    hidden = F.affine(pooled, params["W2"], params["b2"])
    return F.affine(F.relu(hidden), params["W3"], params["b3"]), [conv, hidden]


def twin_loss(params, X, y, *, conv_param, pool_param=POOL_PARAM, reg=0.0):
    """The loss of :meth:`ThreeLayerConvNet.loss` as a pure function of ``params``, for autograd.

    Built only from the layer twins in :mod:`twingrad.functional`.

    Returns
    -------
    loss : scalar
        Mean softmax cross-entropy plus ``0.5 * reg * sum(W**2)`` over W1, W2 and W3.
    """
    scores, _ = twin_forward(params, X, conv_param=conv_param, pool_param=pool_param)
    loss = F.softmax_loss(scores, y)
    if not reg:
        return loss
    return loss + 0.5 * reg * sum(anp.sum(params[name] * params[name]) for name in WEIGHTS)
