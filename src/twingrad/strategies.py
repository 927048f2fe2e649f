"""Hypothesis strategies for property tests of layers, twingrad's own and users'.

Needs ``hypothesis`` (``pip install twingrad[test]``). The array strategies
(:func:`arrays`, :func:`scores_and_labels`, :func:`normalization_inputs`, ...)
derive everything random from a drawn integer seed: fast to generate at any
size, and a failing example prints a seed that reproduces it;
:func:`away_from_kinks` and :func:`labels` draw element by element and shrink
towards simple values. Pair them with
:func:`twingrad.testing.assert_layer_matches` in your own test suite::

    @given(x=arrays(batch_shapes(max_ndim=4)), seed=seeds())
    def test_my_relu(x, seed):
        assert_layer_matches(relu_forward, relu_backward, twin=relu_twin,
                             inputs={"x": x}, wrt=["x"], kinks=lambda x: x, seed=seed)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from .twins import SCALES, LayerSpec

# Scales of the inputs: small enough that float64 central differences stay
# accurate (their truncation error grows like 1/scale^2 for normalization).


def seeds() -> st.SearchStrategy[int]:
    """Seeds for ``np.random.default_rng`` and for dropout masks."""
    return st.integers(min_value=0, max_value=2**32 - 1)


dropout_seeds = seeds


def batch_shapes(min_batch: int = 1, max_batch: int = 6, min_ndim: int = 2, max_ndim: int = 2,
                 max_side: int = 5) -> st.SearchStrategy[tuple]:
    """Shapes ``(N, d_1, ..., d_k)`` with ``min_ndim <= 1 + k <= max_ndim``."""
    return st.integers(min_ndim, max_ndim).flatmap(
        lambda ndim: st.tuples(
            st.integers(min_batch, max_batch), *[st.integers(1, max_side) for _ in range(ndim - 1)]
        )
    )


def away_from_kinks(shape: tuple, margin: float = 0.05, scale: float = 1.0, dtype=np.float64):
    """Arrays whose entries all satisfy ``margin * scale <= |x| <= 2 * scale``: far from ReLU's kink."""
    magnitudes = st.floats(margin * scale, 2.0 * scale, allow_nan=False)
    values = st.tuples(st.sampled_from([-1.0, 1.0]), magnitudes).map(lambda pair: pair[0] * pair[1])
    size = int(np.prod(shape))
    return st.lists(values, min_size=size, max_size=size).map(lambda v: np.array(v, dtype=dtype).reshape(shape))


def labels(num_samples: int, num_classes: int) -> st.SearchStrategy[np.ndarray]:
    """Integer labels of shape (num_samples,) in ``[0, num_classes)``."""
    return st.lists(st.integers(0, num_classes - 1), min_size=num_samples, max_size=num_samples).map(
        lambda v: np.array(v, dtype=np.int64)
    )


def arrays(shapes, scale: float = 1.0, dtype=np.float64) -> st.SearchStrategy[np.ndarray]:
    """Normal arrays (standard deviation ``scale``) of a shape drawn from ``shapes`` (a strategy or a tuple)."""
    shapes = shapes if isinstance(shapes, st.SearchStrategy) else st.just(tuple(shapes))
    return st.tuples(shapes, seeds()).map(
        lambda pair: (np.random.default_rng(pair[1]).normal(size=pair[0]) * scale).astype(dtype))


def arrays_away_from_kinks(shapes, margin: float = 0.05, scale: float = 1.0, dtype=np.float64):
    """Like :func:`away_from_kinks`, but seeded (fast for large arrays): ``margin * scale <= |x| <= 2 * scale``."""
    shapes = shapes if isinstance(shapes, st.SearchStrategy) else st.just(tuple(shapes))

    def build(pair):
        rng = np.random.default_rng(pair[1])
        signs = rng.choice([-1.0, 1.0], size=pair[0])
        return (signs * rng.uniform(margin, 2.0, size=pair[0]) * scale).astype(dtype)

    return st.tuples(shapes, seeds()).map(build)


def scores_and_labels(min_batch: int = 1, max_batch: int = 6, min_classes: int = 2, max_classes: int = 6,
                      scale: float = 1.0, dtype=np.float64) -> st.SearchStrategy[tuple]:
    """``(x, y)`` for a loss: scores of shape (N, C) and integer labels in ``[0, C)``."""
    shapes = st.tuples(st.integers(min_batch, max_batch), st.integers(min_classes, max_classes))
    return st.tuples(shapes, seeds()).map(lambda pair: _scores_and_labels(*pair, scale, dtype))


def _scores_and_labels(shape, seed, scale, dtype):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale).astype(dtype), rng.integers(0, shape[1], size=shape[0])


def dropout_params(probabilities=(0.0, 0.25, 0.5, 0.8), keep_prob: bool = False,
                   mode: str = "train") -> st.SearchStrategy[dict]:
    """``dropout_param`` dicts with a seed (so the mask is reproducible) and ``p`` from ``probabilities``.

    ``probabilities`` are drop probabilities; with ``keep_prob=True`` the dicts hold
    ``p = 1 - drop``, the keep-probability convention of later course years.
    """
    return st.builds(lambda p, seed: {"mode": mode, "p": (1.0 - p) if keep_prob else p, "seed": seed},
                     st.sampled_from(probabilities), dropout_seeds())


def normalization_inputs(min_batch: int = 2, max_batch: int = 6, max_features: int = 5,
                         dtype=np.float64) -> st.SearchStrategy[tuple]:
    """``(x, gamma, beta)`` for batch or layer norm, each feature with its own offset and spread.

    Drawn so every feature (and every sample) varies: a variance near 0 makes the
    normalization's derivatives blow up and central differences meaningless.
    """
    shapes = st.tuples(st.integers(min_batch, max_batch), st.integers(2, max_features))
    return st.tuples(shapes, seeds()).map(lambda pair: _normalization_inputs(*pair, dtype))


def _normalization_inputs(shape, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape) * rng.uniform(0.5, 2.0, size=shape[1]) + rng.normal(size=shape[1])
    gamma = 1.0 + 0.3 * rng.normal(size=shape[1])
    beta = 0.3 * rng.normal(size=shape[1])
    return x.astype(dtype), gamma.astype(dtype), beta.astype(dtype)


@dataclass(frozen=True)
class LayerCase:
    """Reproducible inputs for one registered layer: print it to replay a failure."""

    spec: LayerSpec
    shape: tuple
    scale: float
    seed: int
    dtype: type = np.float64

    def inputs(self) -> dict:
        return self.spec.sample(np.random.default_rng(self.seed), self.shape, self.scale, self.dtype)

    def rng(self) -> np.random.Generator:
        """A second stream, for upstream gradients, independent of the inputs'."""
        return np.random.default_rng([self.seed, 1])

    def __repr__(self) -> str:
        return f"LayerCase({self.spec.name!r}, shape={self.shape}, scale={self.scale}, seed={self.seed})"


def layer_cases(spec: LayerSpec, max_batch: int = 6, scales=SCALES, dtype=np.float64) -> st.SearchStrategy[LayerCase]:
    """Shapes, scales and seeds for ``spec``, within the ranks, batch sizes and :attr:`~LayerSpec.max_shape` it accepts."""
    low, high = spec.ndim
    if spec.max_shape is None:
        shapes = batch_shapes(spec.min_batch, max_batch, low, high)
    else:
        limits = spec.max_shape
        shapes = st.integers(low, high).flatmap(lambda ndim: st.tuples(
            st.integers(spec.min_batch, max(spec.min_batch, min(max_batch, limits[0]))),
            *[st.integers(1, limit) for limit in limits[1:ndim]]))
    return st.builds(
        LayerCase,
        spec=st.just(spec),
        shape=shapes,
        scale=st.sampled_from(scales),
        seed=seeds(),
        dtype=st.just(dtype),
    )
