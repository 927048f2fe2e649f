"""A fully-connected network twice: :class:`FullyConnectedNet` (hand-derived
backward passes) and :func:`twin_loss` (the same loss as a pure function of a
params dict, differentiated by autograd).

The architecture, for ``L = len(hidden_dims) + 1`` layers, is::

    {affine - [batchnorm | layernorm] - relu - [dropout]} x (L - 1) - affine - softmax

Parameters are named as in CS231n: ``W1, b1, gamma1, beta1, ..., WL, bL``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import autograd.numpy as anp
import numpy as np
from autograd import value_and_grad

from . import _validate as check
from . import functional as F
from .layer_utils import (
    affine_bn_relu_backward,
    affine_bn_relu_forward,
    affine_ln_relu_backward,
    affine_ln_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from .layers import affine_backward, affine_forward, dropout_backward, dropout_forward, softmax_loss

class Normalization(NamedTuple):
    """What a hidden layer with one normalization (or none) is made of: the sandwich pair, its twin, its state."""

    forward: Callable  #: (h, W, b[, gamma, beta, param]) -> (out, cache)
    backward: Callable  #: (dout, cache, input_grad) -> (dx, dW, db[, dgamma, dbeta])
    twin: Callable | None  #: (a, gamma, beta, eps) -> normalized a; None: no normalization
    param: Callable | None  #: a fresh bn_param / ln_param
    axis: int | None = None  #: the axis its statistics are taken over: 0 over the batch, 1 over the features


# The one place a normalization is chosen, for the hand net and its twin alike. The sandwiches are looked
# up when called, so that this module's names stay the ones the net uses (a test may watch them).
NORMALIZERS = {
    None: Normalization(lambda *a: affine_relu_forward(*a), lambda *a, **k: affine_relu_backward(*a, **k), None, None),
    "batchnorm": Normalization(lambda *a: affine_bn_relu_forward(*a), lambda *a, **k: affine_bn_relu_backward(*a, **k),
                               F.batchnorm, lambda: {"mode": "train"}, axis=0),
    "layernorm": Normalization(lambda *a: affine_ln_relu_forward(*a), lambda *a, **k: affine_ln_relu_backward(*a, **k),
                               F.layernorm, dict, axis=1),
}
NORMALIZATIONS = tuple(NORMALIZERS)
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)


def _check_args(hidden_dims, input_dim, num_classes, dropout, normalization, reg, weight_scale, dtype, seed):
    """Validate the constructor's arguments; return ``(hidden_dims as a list, dtype as np.dtype)``."""
    f = "FullyConnectedNet"
    if isinstance(hidden_dims, (str, bytes, Mapping)) or not isinstance(hidden_dims, (Sequence, np.ndarray)):
        raise ValueError(f"{f}: hidden_dims must be a list of positive ints, got {hidden_dims!r}")
    bad = [h for h in hidden_dims if not (_is_int(h) and h > 0)]
    if bad:
        raise ValueError(f"{f}: hidden_dims must be a list of positive ints, got {list(hidden_dims)!r} "
                         f"(bad entries: {bad!r})")
    for name, value in (("input_dim", input_dim), ("num_classes", num_classes)):
        if not (_is_int(value) and value > 0):
            raise ValueError(f"{f}: {name} must be a positive int, got {value!r}")
    if not (_is_real(dropout) and 0.0 <= dropout < 1.0):
        raise ValueError(f"{f}: dropout is the probability of dropping a unit and must lie in [0, 1), "
                         f"got {dropout!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{f}: normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    if not (_is_real(reg) and reg >= 0):
        raise ValueError(f"{f}: reg must be a finite number >= 0, got {reg!r}")
    if not (_is_real(weight_scale) and weight_scale >= 0):
        raise ValueError(f"{f}: weight_scale must be a finite number >= 0, got {weight_scale!r}")
    if seed is not None and not (_is_int(seed) and seed >= 0):
        raise ValueError(f"{f}: seed must be None or an int >= 0, got {seed!r}")
    try:
        # np.dtype(None) is float64, and a dtype compares equal to None: reject None first.
        np_dtype = None if dtype is None else np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype is None or np_dtype not in DTYPES:
        raise ValueError(f"{f}: dtype must be np.float32 or np.float64, got {dtype!r}")
    return [int(h) for h in hidden_dims], np_dtype


class FullyConnectedNet:
    """Fully-connected network with ReLU, optional batch/layer norm and dropout, softmax loss.

    Parameters
    ----------
    hidden_dims : list of int
        Width of each hidden layer; ``[]`` gives a softmax classifier.
    input_dim : int
        Features per sample, ``D = d_1 * ... * d_k`` for inputs of shape (N, d_1, ..., d_k).
    num_classes : int
    dropout : float
        Probability of **dropping** a unit, in [0, 1); 0 means no dropout layers.
    normalization : {None, 'batchnorm', 'layernorm'}
    reg : float
        L2 strength: the loss gains ``0.5 * reg * sum(W**2)`` over every weight matrix.
    weight_scale : float
        Standard deviation of the initial weights (biases 0, gamma 1, beta 0).
    dtype : {np.float32, np.float64}
        Every parameter, activation, gradient and the loss are kept in this dtype.
    seed : int, optional
        Seeds the weight initialisation (``np.random.default_rng(seed)``, never the
        global ``np.random``) and, as in CS231n, fixes the dropout mask, which makes
        dropout deterministic for gradient checks. None draws fresh entropy.
    use_batchnorm : bool
        CS231n shorthand for ``normalization='batchnorm'``.

    Attributes
    ----------
    params : dict of str to ndarray
    bn_params : list of dict
        One per hidden layer: ``{'mode': 'train'}`` for batch norm (batchnorm_forward
        adds ``running_mean`` / ``running_var``), ``{}`` (ln_param) for layer norm.
    dropout_param : dict
        ``{'mode', 'p'}`` plus ``'seed'`` when a seed was given; ``{}`` without dropout.

    Notes
    -----
    Dropout with a seed is deterministic, as in CS231n, so gradient checks and
    the twin (which draws the same masks) agree with :meth:`loss`. Layer ``i``
    draws its mask from ``[seed, i]``, so equally wide layers do not share a
    mask. :class:`~twingrad.solver.Solver` sets a fresh ``dropout_param['seed']``
    from its own generator before every step, so training sees a new mask each
    step and is still reproducible. Without any seed the masks are fresh
    entropy, and hand and twin gradients cannot be compared.
    """

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0.0, normalization=None,
                 reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None, use_batchnorm=False):
        if use_batchnorm:
            if normalization not in (None, "batchnorm"):
                raise ValueError("FullyConnectedNet: use_batchnorm=True is shorthand for normalization='batchnorm' "
                                 f"and conflicts with normalization={normalization!r}")
            normalization = "batchnorm"
        hidden_dims, dtype = _check_args(hidden_dims, input_dim, num_classes, dropout, normalization, reg,
                                         weight_scale, dtype, seed)
        self.hidden_dims = hidden_dims
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.normalization = normalization
        self.use_batchnorm = normalization == "batchnorm"
        self.dropout = float(dropout)
        self.use_dropout = dropout > 0
        self.reg = float(reg)
        self.weight_scale = float(weight_scale)
        self.dtype = dtype
        self.seed = seed
        self.num_layers = len(hidden_dims) + 1

        rng = np.random.default_rng(seed)
        dims = [self.input_dim, *hidden_dims, self.num_classes]
        self.params = {}
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
            # Drawn in float64 then cast, so a float32 and a float64 net with the same seed start alike.
            self.params[f"W{i}"] = (weight_scale * rng.standard_normal((fan_in, fan_out))).astype(dtype)
            self.params[f"b{i}"] = np.zeros(fan_out, dtype)
            if normalization is not None and i < self.num_layers:
                self.params[f"gamma{i}"] = np.ones(fan_out, dtype)
                self.params[f"beta{i}"] = np.zeros(fan_out, dtype)

        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": self.dropout}
            if seed is not None:
                self.dropout_param["seed"] = seed
        make = NORMALIZERS[normalization].param
        self.bn_params = [make() for _ in hidden_dims] if make else []

    @property
    def config(self) -> dict:
        """The constructor's arguments as plain JSON-able values (checkpoints record them)."""
        return {"hidden_dims": list(self.hidden_dims), "input_dim": self.input_dim, "num_classes": self.num_classes,
                "dropout": self.dropout, "normalization": self.normalization, "reg": self.reg,
                "weight_scale": self.weight_scale, "dtype": self.dtype.name, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"FullyConnectedNet({args})"

    # -- input checks ---------------------------------------------------------

    def _check_X(self, X) -> np.ndarray:
        f = "FullyConnectedNet.loss"
        X = np.asarray(X)
        if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
            raise TypeError(f"{f}: X must hold real numbers, got dtype {X.dtype}")
        if X.ndim < 2 or int(np.prod(X.shape[1:])) != self.input_dim:
            raise ValueError(f"{f}: X must have shape (N, {self.input_dim}) or (N, d_1, ..., d_k) with "
                             f"d_1 * ... * d_k = input_dim = {self.input_dim}, got shape {X.shape}")
        # One reshape up front: later layers see (N, D); copy=False avoids a copy when X is already in dtype.
        return X.reshape(X.shape[0], self.input_dim).astype(self.dtype, copy=False)

    def _check_y(self, y, num_samples: int) -> np.ndarray:
        f = "FullyConnectedNet.loss"
        if num_samples == 0:
            raise ValueError(f"{f}: the loss of an empty batch is undefined; X has 0 rows")
        return check.labels(f, y, num_samples, self.num_classes)

    # -- the hand-derived pass --------------------------------------------------

    def _forward(self, X: np.ndarray, mode: str):
        """Scores and the per-layer caches; sets train/test mode on the dropout and bn params."""
        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if self.use_batchnorm:
            for bn_param in self.bn_params:
                bn_param["mode"] = mode
        p = self.params
        h, caches, dropout_caches = X, [], []
        norm = NORMALIZERS[self.normalization]
        for i in range(1, self.num_layers):
            extra = (p[f"gamma{i}"], p[f"beta{i}"], self.bn_params[i - 1]) if norm.twin else ()
            h, cache = norm.forward(h, p[f"W{i}"], p[f"b{i}"], *extra)
            caches.append(cache)
            if self.use_dropout:
                h, cache = dropout_forward(h, _layer_dropout_param(self.dropout_param, i))
                dropout_caches.append(cache)
        L = self.num_layers
        scores, cache = affine_forward(h, p[f"W{L}"], p[f"b{L}"])
        caches.append(cache)
        return scores, caches, dropout_caches

    def loss(self, X, y=None):
        """Scores, or the loss and its gradients.

        Parameters
        ----------
        X : ndarray, shape (N, input_dim) or (N, d_1, ..., d_k)
        y : ndarray of int, shape (N,), optional
            Labels in ``[0, num_classes)``. Without y the net runs in test mode.

        Returns
        -------
        scores : ndarray, shape (N, num_classes)
            When y is None.
        loss : scalar of dtype, grads : dict of str to ndarray
            When y is given; ``grads`` is keyed and shaped like ``params``. The
            gradient with respect to X is never computed.
        """
        X = self._check_X(X)
        if y is None:
            return self._forward(X, "test")[0]
        y = self._check_y(y, X.shape[0])
        scores, caches, dropout_caches = self._forward(X, "train")
        loss, dscores = softmax_loss(scores, y)

        p, L, grads = self.params, self.num_layers, {}
        # reg as a dtype scalar: a Python float times a float32 numpy scalar is float64 under NumPy 1.x.
        reg = self.dtype.type(self.reg)
        dh, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, caches[-1], input_grad=L > 1)
        norm = NORMALIZERS[self.normalization]
        for i in range(L - 1, 0, -1):
            if self.use_dropout:
                dh = dropout_backward(dh, dropout_caches[i - 1])
            # the first layer's dx (w.r.t. X) is never needed
            dh, grads[f"W{i}"], grads[f"b{i}"], *norm_grads = norm.backward(dh, caches[i - 1], input_grad=i > 1)
            if norm_grads:
                grads[f"gamma{i}"], grads[f"beta{i}"] = norm_grads
        if self.reg:  # reg = 0 (the default) would still cost two passes over every W
            for i in range(1, L + 1):
                W = p[f"W{i}"]
                loss += reg * self.dtype.type(0.5) * np.vdot(W, W)  # one BLAS dot, no W * W temporary
                grads[f"W{i}"] += reg * W  # in place: dw is a fresh array from affine_backward
        return self.dtype.type(loss), grads

    # -- the twin -----------------------------------------------------------------

    @property
    def twin_settings(self) -> dict:
        """Keyword arguments that make :func:`twin_loss` compute this net's loss."""
        eps = self.bn_params[0].get("eps", 1e-5) if self.bn_params else 1e-5
        return {"normalization": self.normalization, "dropout": self.dropout, "seed": self.dropout_param.get("seed"),
                "reg": self.reg, "eps": eps}

    def twin_grads(self, X, y, params=None):
        """``(loss, grads)`` from autograd through :func:`twin_loss`: the second opinion on :meth:`loss`.

        With batch norm, the running averages in ``bn_params`` are updated as the
        hand pass would (from the twin's batch statistics), so a model trained on
        these gradients can still run in test mode. With dropout but no seed, the
        masks are fresh each call and cannot match the hand pass: compare the two
        only for a net built with a seed.
        """
        X = self._check_X(X)
        y = self._check_y(y, X.shape[0])
        params = self.params if params is None else params
        settings = self.twin_settings
        loss, grads = value_and_grad(lambda p: twin_loss(p, X, y, **settings))(params)
        if self.use_batchnorm:
            self._update_running_stats(params, X, settings)
        return self.dtype.type(loss), {k: np.asarray(g, dtype=self.dtype) for k, g in grads.items()}

    def _update_running_stats(self, params, X, settings) -> None:
        _, trace = twin_forward(params, X, **{k: v for k, v in settings.items() if k != "reg"})
        for bn_param, a in zip(self.bn_params, trace.pre_norm):
            bn_param["mode"] = "train"
            momentum = bn_param.get("momentum", 0.9)
            mean = a.mean(axis=0)
            var = np.mean(np.square(a - mean), axis=0)  # biased, as batchnorm_forward
            for key, batch in (("running_mean", mean), ("running_var", var)):
                running = bn_param.get(key)
                running = np.zeros_like(batch) if running is None else running
                bn_param[key] = momentum * running + (1 - momentum) * batch


def _layer_seed(seed, layer: int):
    """Layer ``layer``'s dropout seed: ``[seed, layer]``, so layers of one width get different masks."""
    return None if seed is None else [seed, layer]


def _layer_dropout_param(dropout_param: dict, layer: int) -> dict:
    return {**dropout_param, "seed": _layer_seed(dropout_param.get("seed"), layer)}


class TwinTrace(NamedTuple):
    """Intermediate values of :func:`twin_forward`, one entry per hidden layer."""

    pre_norm: list  #: affine outputs fed to the normalization (empty without one)
    pre_relu: list  #: inputs of each ReLU, whose signs mark its kinks


def _num_layers(params) -> int:
    n = sum(1 for k in params if k.startswith("W") and k[1:].isdigit())
    missing = [k for i in range(1, n + 1) for k in (f"W{i}", f"b{i}") if k not in params]
    if n == 0 or missing:
        raise KeyError(f"twin_loss: params must hold W1, b1, ..., WL, bL; missing {missing or ['W1', 'b1']}")
    return n


def twin_forward(params, X, *, normalization=None, dropout=0.0, seed=None, eps=1e-5):
    """Train-mode scores of the net as a pure function, and the inputs of its normalizations.

    Parameters
    ----------
    params : dict of str to array
        ``W1, b1, [gamma1, beta1,] ..., WL, bL``; the depth is read off the keys.
    X : array, shape (N, D)
    normalization, dropout, seed, eps
        As in :class:`FullyConnectedNet`; ``seed`` fixes the dropout mask.

    Returns
    -------
    scores : array, shape (N, C)
    trace : TwinTrace
        The inputs of every normalization (batch norm's running averages are
        state, which this pure function leaves to the caller) and of every ReLU.
    """
    L = _num_layers(params)
    h, pre_norm, pre_relu = anp.reshape(X, (X.shape[0], -1)), [], []
    norm = NORMALIZERS[normalization].twin
    for i in range(1, L):
        a = F.affine(h, params[f"W{i}"], params[f"b{i}"])
        if norm is not None:
            pre_norm.append(a)
            a = norm(a, params[f"gamma{i}"], params[f"beta{i}"], eps)
        pre_relu.append(a)
        h = F.relu(a)
        if dropout > 0:
            h = F.dropout(h, dropout, _layer_seed(seed, i))  # the hand pass's mask for this layer
    return F.affine(h, params[f"W{L}"], params[f"b{L}"]), TwinTrace(pre_norm, pre_relu)


def twin_loss(params, X, y, *, normalization=None, dropout=0.0, seed=None, reg=0.0, eps=1e-5):
    """The loss of :meth:`FullyConnectedNet.loss` as a pure function of ``params``, for autograd.

    Built only from the layer twins in :mod:`twingrad.functional`. Batch norm
    uses batch statistics (train mode). With ``dropout > 0`` the mask comes from
    ``seed``; with ``seed=None`` it is fresh entropy on every call, so comparing
    gradients with the hand pass needs a seed.

    Returns
    -------
    loss : scalar
        Mean softmax cross-entropy plus ``0.5 * reg * sum(W**2)`` over every weight matrix.
    """
    scores, _ = twin_forward(params, X, normalization=normalization, dropout=dropout, seed=seed, eps=eps)
    loss = F.softmax_loss(scores, y)
    if not reg:  # reg = 0 would still trace (and differentiate) a pass over every W
        return loss
    weights = [params[f"W{i}"] for i in range(1, _num_layers(params) + 1)]
    return loss + 0.5 * reg * sum(anp.sum(W * W) for W in weights)
