"""Hypothesis strategies for property tests of layers, twingrad's own and users'.

Needs ``hypothesis`` (``pip install twingrad[test]``). Everything random is
derived from a drawn integer seed, so a failing example prints a seed that
reproduces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from .twins import LayerSpec

# Scales of the inputs: small enough that float64 central differences stay
# accurate (their truncation error grows like 1/scale^2 for normalization).
SCALES = (0.1, 1.0, 10.0)


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
    """Shapes, scales and seeds for ``spec``, within the ranks and batch sizes it accepts."""
    low, high = spec.ndim
    return st.builds(
        LayerCase,
        spec=st.just(spec),
        shape=batch_shapes(spec.min_batch, max_batch, low, high),
        scale=st.sampled_from(scales),
        seed=seeds(),
        dtype=st.just(dtype),
    )
