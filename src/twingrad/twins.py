"""The registry: every hand-derived layer paired with its autograd twin.

Each :class:`LayerSpec` names the hand forward and backward (by their CS231n
names, so a student's module can stand in for :mod:`twingrad.layers`), the
twin, the differentiable inputs in the order the backward returns their
gradients, where the kinks are, and how to draw valid random inputs. Every
gradient check in twingrad (the tests, ``twingrad verify``) iterates over
:data:`REGISTRY`: a layer added here is checked everywhere.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import numpy as np
from autograd import make_vjp

from . import _conv_cases as conv
from . import functional as F

Inputs = dict  # argument name -> array, label vector or param dict
# Input scales of the random cases (the property tests and twingrad verify): small, unit, large.
SCALES = (0.1, 1.0, 10.0)


@dataclass(frozen=True, kw_only=True)  # named fields: an entry reads without the order
class LayerSpec:
    """One hand-derived layer and its twin.

    Attributes
    ----------
    name : str
        Name root shared by the hand pair and the twin (``"batchnorm"``).
    forward, backward : str
        CS231n names of the hand functions. ``backward`` is None for losses,
        whose forward returns ``(loss, dx)``.
    module : str
        The twingrad module that holds the hand functions.
    twin : callable
        Pure function of the ``wrt`` arrays (positionally) plus ``static(inputs)``
        keyword arguments.
    args : tuple of str
        Positional arguments of the hand forward, in order.
    wrt : tuple of str
        Differentiable inputs, in the order the hand backward returns their gradients.
    sample : callable
        ``sample(rng, shape, scale, dtype) -> inputs``: random valid inputs whose
        first argument has ``shape``.
    static : callable
        Non-differentiable keyword arguments of the twin, read off the inputs.
    kinks : callable or None
        ``kinks(inputs) -> ndarray`` of the quantities whose sign change is a
        non-differentiable point (ReLU pre-activations, hinge margins). A finite
        difference whose stencil changes one of these signs crossed a kink.
    ndim : (int, int)
        Smallest and largest rank of the first input.
    min_batch : int
        Smallest batch size the layer accepts (2 for batch norm in train mode).
    max_shape : tuple of int or None
        Largest size of each axis of the first input, batch first, for the
        random shapes (:meth:`random_shape`, the property tests); None leaves
        the callers' defaults. Convolutions keep theirs small: finite
        differences cost four evaluations per input element.
    diagnoses : tuple of str
        What ``twingrad verify`` knows of this layer beyond its gradients, so
        that the verifier never branches on a layer's name: "relu_mask" (hints
        about ReLU's mask), "normalization" (its forward's usual mistakes, the
        paths through the statistics), "running_averages" (its forward keeps
        batch norm's running averages: checked), "dropout_mask" (a random mask:
        checked by its statistics, the backward against the mask the forward
        drew), and the convolutional mistakes of :mod:`twingrad.verify.hints`
        ("conv", "max_pool", "spatial_batchnorm", "spatial_groupnorm").
    """

    name: str
    forward: str
    backward: str | None
    module: str
    twin: Callable
    args: tuple[str, ...]
    wrt: tuple[str, ...]
    sample: Callable
    static: Callable[[Inputs], dict] = field(default=lambda inputs: {})
    kinks: Callable[[Inputs], np.ndarray] | None = None
    ndim: tuple[int, int] = (2, 2)
    min_batch: int = 1
    max_shape: tuple[int, ...] | None = None
    diagnoses: tuple[str, ...] = ()

    @property
    def is_loss(self) -> bool:
        return self.backward is None

    @property
    def gradient_names(self) -> tuple[str, ...]:
        return tuple("d" + name for name in self.wrt)

    def hand_module(self) -> ModuleType:
        return importlib.import_module(f"twingrad.{self.module}")

    def random_shape(self, rng: np.random.Generator, max_batch: int = 6, max_side: int = 5) -> tuple:
        """A shape for the first input that this layer accepts: ``(N, d_1, ..., d_k)``.

        Each axis is also capped by :attr:`max_shape`, when the layer has one.
        """
        ndim = int(rng.integers(self.ndim[0], self.ndim[1] + 1))
        if self.max_shape is None:  # the draws of every layer before max_shape existed, unchanged
            batch = int(rng.integers(self.min_batch, max_batch + 1))
            return (batch, *(int(d) for d in rng.integers(1, max_side + 1, size=ndim - 1)))
        highs = [min(h, m) for h, m in zip([max_batch, *([max_side] * (ndim - 1))], self.max_shape)]
        batch = int(rng.integers(self.min_batch, max(highs[0], self.min_batch) + 1))
        return (batch, *(int(rng.integers(1, h + 1)) for h in highs[1:]))

    def twin_function(self, inputs: Inputs) -> Callable:
        """The twin as a function of the ``wrt`` arrays only, the rest fixed."""
        static = self.static(inputs)
        return lambda *arrays: self.twin(*arrays, **static)


def run_hand(spec: LayerSpec, inputs: Inputs, dout, module: ModuleType | None = None):
    """Run the hand forward and backward of ``spec`` from ``module`` (default: twingrad's).

    The inputs are deep-copied first, so param dicts that the forward updates
    (running averages) and arrays a careless backward writes into are the
    caller's no longer. Returns ``(out, {gradient name: array})``.
    """
    module = module or spec.hand_module()
    inputs = copy.deepcopy(inputs)
    forward = getattr(module, spec.forward)
    if spec.is_loss:
        loss, dx = forward(*(inputs[a] for a in spec.args))
        return loss, {"dx": dx * dout}
    out, cache = forward(*(inputs[a] for a in spec.args))
    grads = getattr(module, spec.backward)(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    return out, dict(zip(spec.gradient_names, grads))


def run_twin(spec: LayerSpec, inputs: Inputs, dout):
    """Forward through the twin and pull ``dout`` back with autograd: ``(out, grads)``."""
    argnums = tuple(range(len(spec.wrt)))
    vjp, out = make_vjp(spec.twin_function(inputs), argnums)(*(inputs[a] for a in spec.wrt))
    grads = vjp(dout)
    return out, dict(zip(spec.gradient_names, grads))


# --- input samplers -----------------------------------------------------------------


def _away_from_zero(rng, shape, scale, dtype):
    """Values of either sign with magnitude in [0.05, 2] * scale: no ReLU kink within reach."""
    signs = rng.choice([-1.0, 1.0], size=shape)
    return (signs * rng.uniform(0.05, 2.0, size=shape) * scale).astype(dtype)


def _normal(rng, shape, scale, dtype):
    return (rng.normal(size=shape) * scale).astype(dtype)


def _sample_x(rng, shape, scale, dtype):
    return {"x": _normal(rng, shape, scale, dtype)}


def _sample_relu(rng, shape, scale, dtype):
    return {"x": _away_from_zero(rng, shape, scale, dtype)}


def _sample_affine(rng, shape, scale, dtype):
    num_features, num_outputs = int(np.prod(shape[1:])), int(rng.integers(1, 7))
    return {
        "x": _normal(rng, shape, scale, dtype),
        "w": _normal(rng, (num_features, num_outputs), 1.0 / np.sqrt(num_features), dtype),
        "b": _normal(rng, (num_outputs,), 1.0, dtype),
    }


def _sample_loss(rng, shape, scale, dtype):
    return {"x": _normal(rng, shape, scale, dtype), "y": rng.integers(0, shape[1], size=shape[0])}


def _norm_params(rng, num_features, dtype):
    return {"gamma": _normal(rng, (num_features,), 1.0, dtype) + 1, "beta": _normal(rng, (num_features,), 1.0, dtype)}


def _sample_norm(param_name):
    def sample(rng, shape, scale, dtype):
        # An offset per feature, so the mean subtraction has something to do.
        x = _normal(rng, shape, scale, dtype) + _normal(rng, (shape[1],), scale, dtype)
        param = {"mode": "train", "eps": 1e-5} if param_name == "bn_param" else {"eps": 1e-5}
        return {"x": x, **_norm_params(rng, shape[1], dtype), param_name: param}

    return sample


def _sample_dropout(rng, shape, scale, dtype):
    p = float(rng.choice([0.0, 0.25, 0.5, 0.8]))
    seed = int(rng.integers(2**31))
    return {"x": _normal(rng, shape, scale, dtype), "dropout_param": {"mode": "train", "p": p, "seed": seed}}


def _sample_sandwich(param_name):
    def sample(rng, shape, scale, dtype):
        inputs = _sample_affine(rng, shape, scale, dtype)
        if param_name:
            inputs.update(_norm_params(rng, inputs["w"].shape[1], dtype))
            inputs[param_name] = {"mode": "train", "eps": 1e-5} if param_name == "bn_param" else {"eps": 1e-5}
        return inputs

    return sample


# --- kink locators ----------------------------------------------------------------


def _relu_kinks(inputs):
    return inputs["x"]


def _hinge_kinks(inputs):
    x, y = inputs["x"], inputs["y"]
    margins = x - x[np.arange(len(y)), y][:, None] + 1
    margins[np.arange(len(y)), y] = 1  # the label's own term is constant, never a kink
    return margins


def _sandwich_kinks(norm=None, param_name=None):
    """The ReLU's pre-activations of affine - [norm] - relu: where the sandwich has kinks."""
    def kinks(inputs):
        pre = F.affine(inputs["x"], inputs["w"], inputs["b"])
        if norm is not None:
            pre = norm(pre, inputs["gamma"], inputs["beta"], inputs[param_name]["eps"])
        return pre

    return kinks


def _eps(param_name):
    return lambda inputs: {"eps": inputs[param_name]["eps"]}


def _labels(inputs):
    return {"y": inputs["y"]}


def _dropout_static(inputs):
    param = inputs["dropout_param"]
    return {"p": param["p"], "seed": param["seed"]}


_NORM_ARGS = ("x", "gamma", "beta")
_SANDWICH_NORM_ARGS = ("x", "w", "b", "gamma", "beta")
_CONV_ARGS = ("x", "w", "b", "conv_param")
_IMAGES = {"ndim": (4, 4), "max_shape": conv.MAX_SHAPE}  # (N, C, H, W), small

REGISTRY: dict[str, LayerSpec] = {
    spec.name: spec
    for spec in [
        LayerSpec(name="affine", forward="affine_forward", backward="affine_backward", module="layers",
                  twin=F.affine, args=("x", "w", "b"), wrt=("x", "w", "b"), sample=_sample_affine, ndim=(2, 4)),
        LayerSpec(name="relu", forward="relu_forward", backward="relu_backward", module="layers", twin=F.relu,
                  args=("x",), wrt=("x",), sample=_sample_relu, kinks=_relu_kinks, ndim=(1, 4),
                  diagnoses=("relu_mask",)),
        LayerSpec(name="svm_loss", forward="svm_loss", backward=None, module="layers", twin=F.svm_loss,
                  args=("x", "y"), wrt=("x",), sample=_sample_loss, static=_labels, kinks=_hinge_kinks),
        LayerSpec(name="softmax_loss", forward="softmax_loss", backward=None, module="layers", twin=F.softmax_loss,
                  args=("x", "y"), wrt=("x",), sample=_sample_loss, static=_labels),
        LayerSpec(name="batchnorm", forward="batchnorm_forward", backward="batchnorm_backward", module="layers",
                  twin=F.batchnorm, args=(*_NORM_ARGS, "bn_param"), wrt=_NORM_ARGS, sample=_sample_norm("bn_param"),
                  static=_eps("bn_param"), min_batch=2, diagnoses=("normalization", "running_averages")),
        LayerSpec(name="batchnorm_alt", forward="batchnorm_forward", backward="batchnorm_backward_alt",
                  module="layers", twin=F.batchnorm, args=(*_NORM_ARGS, "bn_param"), wrt=_NORM_ARGS,
                  sample=_sample_norm("bn_param"), static=_eps("bn_param"), min_batch=2,
                  diagnoses=("normalization", "running_averages")),
        LayerSpec(name="layernorm", forward="layernorm_forward", backward="layernorm_backward", module="layers",
                  twin=F.layernorm, args=(*_NORM_ARGS, "ln_param"), wrt=_NORM_ARGS, sample=_sample_norm("ln_param"),
                  static=_eps("ln_param"), diagnoses=("normalization",)),
        LayerSpec(name="dropout", forward="dropout_forward", backward="dropout_backward", module="layers",
                  twin=F.dropout, args=("x", "dropout_param"), wrt=("x",), sample=_sample_dropout,
                  static=_dropout_static, ndim=(1, 4), diagnoses=("dropout_mask",)),
        LayerSpec(name="affine_relu", forward="affine_relu_forward", backward="affine_relu_backward",
                  module="layer_utils", twin=F.affine_relu, args=("x", "w", "b"), wrt=("x", "w", "b"),
                  sample=_sample_sandwich(None), kinks=_sandwich_kinks(), ndim=(2, 4)),
        LayerSpec(name="affine_bn_relu", forward="affine_bn_relu_forward", backward="affine_bn_relu_backward",
                  module="layer_utils", twin=F.affine_bn_relu, args=(*_SANDWICH_NORM_ARGS, "bn_param"),
                  wrt=_SANDWICH_NORM_ARGS, sample=_sample_sandwich("bn_param"), static=_eps("bn_param"),
                  kinks=_sandwich_kinks(F.batchnorm, "bn_param"), ndim=(2, 4), min_batch=2),
        LayerSpec(name="affine_ln_relu", forward="affine_ln_relu_forward", backward="affine_ln_relu_backward",
                  module="layer_utils", twin=F.affine_ln_relu, args=(*_SANDWICH_NORM_ARGS, "ln_param"),
                  wrt=_SANDWICH_NORM_ARGS, sample=_sample_sandwich("ln_param"), static=_eps("ln_param"),
                  kinks=_sandwich_kinks(F.layernorm, "ln_param"), ndim=(2, 4)),
        # The convolutional half. The naive and fast convolutions and poolings share one twin each;
        # the sandwiches use the fast layers, as the course's layer_utils does.
        LayerSpec(name="conv_naive", forward="conv_forward_naive", backward="conv_backward_naive", module="layers",
                  twin=F.conv, args=_CONV_ARGS, wrt=("x", "w", "b"), sample=conv.sample_conv,
                  static=conv.conv_static, diagnoses=("conv",), **_IMAGES),
        LayerSpec(name="conv_fast", forward="conv_forward_fast", backward="conv_backward_fast",
                  module="fast_layers", twin=F.conv, args=_CONV_ARGS, wrt=("x", "w", "b"), sample=conv.sample_conv,
                  static=conv.conv_static, diagnoses=("conv",), **_IMAGES),
        LayerSpec(name="max_pool_naive", forward="max_pool_forward_naive", backward="max_pool_backward_naive",
                  module="layers", twin=F.max_pool, args=("x", "pool_param"), wrt=("x",), sample=conv.sample_pool,
                  static=conv.pool_static, kinks=conv.pool_kinks, diagnoses=("max_pool",), **_IMAGES),
        LayerSpec(name="max_pool_fast", forward="max_pool_forward_fast", backward="max_pool_backward_fast",
                  module="fast_layers", twin=F.max_pool, args=("x", "pool_param"), wrt=("x",),
                  sample=conv.sample_pool, static=conv.pool_static, kinks=conv.pool_kinks, diagnoses=("max_pool",),
                  **_IMAGES),
        LayerSpec(name="spatial_batchnorm", forward="spatial_batchnorm_forward",
                  backward="spatial_batchnorm_backward", module="layers", twin=F.spatial_batchnorm,
                  args=(*_NORM_ARGS, "bn_param"), wrt=_NORM_ARGS, sample=conv.sample_spatial_batchnorm,
                  static=conv.spatial_batchnorm_static, min_batch=2, diagnoses=("spatial_batchnorm",), **_IMAGES),
        LayerSpec(name="spatial_groupnorm", forward="spatial_groupnorm_forward",
                  backward="spatial_groupnorm_backward", module="layers", twin=F.spatial_groupnorm,
                  args=(*_NORM_ARGS, "G", "gn_param"), wrt=_NORM_ARGS, sample=conv.sample_spatial_groupnorm,
                  static=conv.spatial_groupnorm_static, diagnoses=("spatial_groupnorm",), **_IMAGES),
        LayerSpec(name="conv_relu", forward="conv_relu_forward", backward="conv_relu_backward",
                  module="layer_utils", twin=F.conv_relu, args=_CONV_ARGS, wrt=("x", "w", "b"),
                  sample=conv.sample_conv, static=conv.conv_static, kinks=conv.conv_relu_kinks, **_IMAGES),
        LayerSpec(name="conv_relu_pool", forward="conv_relu_pool_forward", backward="conv_relu_pool_backward",
                  module="layer_utils", twin=F.conv_relu_pool, args=(*_CONV_ARGS, "pool_param"),
                  wrt=("x", "w", "b"), sample=conv.sample_conv_relu_pool, static=conv.conv_relu_pool_static,
                  kinks=conv.conv_relu_pool_kinks, **_IMAGES),
    ]
}
