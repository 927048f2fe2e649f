"""Pattern hints for a wrong gradient: what the mistake probably is.

Every hint is a hypothesis tested on the data: fit the pattern (a constant
factor, a transpose, a wrong ReLU mask, an error that is constant along the
batch), and emit the hint only when the fitted pattern reproduces the
expected gradient within the tolerance of the check, and the pattern has
fewer free parameters than the data has elements to spare. A hint that does
not demonstrably fit is never shown.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..gradcheck import Tolerance


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= 1e-6 * max(1.0, abs(target))


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _named_factors(context: dict) -> list[tuple[float, str]]:
    """Factors a student plausibly gets wrong, with what each one suggests here."""
    named = []
    n, d = context.get("N"), context.get("D")
    if n and n > 1:
        named += [(float(n), f"N = {n}, the batch size: a missing division by N (the mean over the batch)?"),
                  (1.0 / n, f"1/N with N = {n}, the batch size: a mean where the gradient sums over the batch?")]
    if d and d > 1 and d != n:
        named += [(float(d), f"D = {d}, the number of features: a missing division by D?"),
                  (1.0 / d, f"1/D with D = {d}, the number of features: a mean where the gradient sums?")]
    p = context.get("p_drop")
    if p is not None and 0 < p < 1:
        keep = 1.0 - p
        name = "p" if context.get("keep_prob") else "1 - p"
        named += [(keep, f"{name} = {_fmt(keep)}, the keep probability: the 1/({name}) scale of inverted "
                         "dropout is missing from the backward pass"),
                  (1.0 / keep, f"1/({name}) = {_fmt(1 / keep)}: the inverted-dropout scale is applied twice")]
    named += [(2.0, "2: a term counted twice?"), (0.5, "1/2: a factor of 2 missing (the derivative of a square?)")]
    return named


def constant_factor(got, expected, tol, context) -> str | None:
    """``got = c * expected`` for one constant c (least squares), with c named when it is -1, N, 1/N, 1-p, ..."""
    norm = float(np.sum(expected * expected))
    if got.size < 2 or norm == 0:
        return None
    c = float(np.sum(got * expected)) / norm
    if _near(c, 1.0) or _near(c, 0.0) or not tol.fits(got, c * expected):
        return None  # (all zeros: zeros() says it better)
    if _near(c, -1.0):
        return "sign flipped: got = -expected everywhere"
    text = f"off by a constant factor: got = {_fmt(c)} x expected everywhere"
    for factor, meaning in _named_factors(context):
        if _near(c, factor):
            return f"{text}; {_fmt(c)} = {meaning}"
    return text


def zeros(got, expected, tol, context) -> str | None:
    if got.size and not np.any(got) and np.any(expected):
        return "got is all zeros: the gradient is never written (still the np.zeros_like it started as?)"
    return None


def transposed(got, expected, tol, context) -> str | None:
    if got.ndim == 2 and got.shape[0] == got.shape[1] > 1 and tol.fits(got, expected.T):
        return "transposed: got = expected.T (e.g. dout.T @ x where x.T @ dout belongs)"
    return None


def relu_mask(got, expected, tol, context) -> str | None:
    """For ReLU: which mask the hand pass applied to ``dout`` instead of ``x > 0``."""
    x, dout = context.get("relu_input"), context.get("dout")
    if x is None or dout is None or x.shape != got.shape:
        return None
    candidates = [
        (x < 0, "the mask is inverted: the gradient flows where x < 0 instead of where x > 0"),
        (dout > 0, "the mask comes from dout (dout > 0), not from the forward input x (x > 0)"),
        (dout < 0, "the mask comes from dout (dout < 0), not from the forward input x (x > 0)"),
        (np.ones_like(x, bool), "no mask: dout passes through unchanged, also where x <= 0"),
    ]
    for mask, text in candidates:
        if tol.fits(got, dout * mask):
            return f"wrong ReLU mask: {text}"
    return None


def localized(got, expected, tol, context) -> str | None:
    """Only some rows, columns, or (for losses) only the label entries are wrong."""
    bad = np.abs(got - expected) > tol.bound(expected)
    if got.ndim != 2 or not bad.any() or bad.all():
        return None
    y = context.get("y")
    if y is not None and got.shape[0] == len(y):
        at_label = np.zeros_like(bad)
        at_label[np.arange(len(y)), y] = True
        if np.array_equal(bad, at_label):
            return "only the correct-class entries dx[n, y[n]] are wrong; the others are right"
        if not (bad & at_label).any():
            return "only entries off the correct class are wrong; dx[n, y[n]] are right"
    rows, cols = np.flatnonzero(bad.any(axis=1)), np.flatnonzero(bad.any(axis=0))
    if len(rows) < got.shape[0] and len(rows) <= len(cols):
        return f"only rows {_listing(rows)} of {got.shape[0]} are wrong; the other rows are right"
    if len(cols) < got.shape[1]:
        return f"only columns {_listing(cols)} of {got.shape[1]} are wrong; the other columns are right"
    return None


def _listing(indices) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:6])
    return f"[{shown}{', ...' if len(indices) > 6 else ''}]"


def statistics_paths(got, expected, tol, context) -> str | None:
    """Batch/layer norm: ``got - expected`` lives in the span of the mean path or the variance path.

    Along the normalized axis, the error of a missing mean path is a constant
    and that of a missing variance path is proportional to ``x_hat``; each is
    one free parameter per feature (per sample for layer norm), so it is fitted
    only with at least 3 elements along the axis, and both together with at least 4.
    """
    axis, x_hat = context.get("norm_axis"), context.get("x_hat")
    if axis is None or x_hat is None or x_hat.shape != got.shape or got.ndim != 2:
        return None
    n = got.shape[axis]
    diff = got - expected
    what = "every sample of a feature" if axis == 0 else "every feature of a sample"
    mean_fit = expected + diff.mean(axis=axis, keepdims=True)
    if n >= 3 and tol.fits(got, mean_fit):
        return (f"got - expected is the same for {what}: the path through the mean is missing or wrong "
                f"(the term that subtracts the mean of the upstream gradient, times gamma / sigma)")
    # x_hat has mean 0 along the axis, so the two fits are orthogonal and add up.
    sq = np.sum(x_hat * x_hat, axis=axis, keepdims=True)
    slope = np.divide(np.sum(diff * x_hat, axis=axis, keepdims=True), sq, out=np.zeros_like(sq), where=sq > 0)
    if n >= 3 and tol.fits(got, expected + slope * x_hat):
        return (f"got - expected is proportional to x_hat for {what}: the path through the variance is "
                f"missing or wrong (the term with x_hat * mean(dout * gamma * x_hat))")
    both_fit = expected + diff.mean(axis=axis, keepdims=True) + slope * x_hat
    if n >= 4 and tol.fits(got, both_fit):
        return ("got - expected is a + b * x_hat per feature: the paths through the batch statistics "
                "(mean and variance) are missing or wrong; the direct path dout * gamma / sigma is right")
    return None


HINTS: list[Callable] = [zeros, constant_factor, transposed, relu_mask, statistics_paths, localized]
# These explain a wrong backward pass; a forward value, a state or a statistic never gets them.
GRADIENT_ONLY = {relu_mask, statistics_paths}


def hints(got: np.ndarray, expected: np.ndarray, tol: Tolerance, context: dict | None = None,
          kind: str = "gradient") -> list[str]:
    """Every pattern that demonstrably explains how ``got`` differs from ``expected``.

    Parameters
    ----------
    got, expected : ndarray, same shape
    tol : Tolerance
        The check's tolerance: a pattern fits when it reproduces ``got`` within it.
    context : dict, optional
        What the patterns may use: ``N`` (batch size), ``D`` (features), ``p_drop``,
        ``keep_prob``, ``y`` (labels), ``relu_input`` and ``dout`` (ReLU),
        ``norm_axis`` and ``x_hat`` (normalization).
    kind : str
        What was checked (``gradient``, ``forward``, ``state``, ``statistics``):
        the hints about backward passes apply to gradients only.
    """
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape or not np.all(np.isfinite(got)):
        return []
    found = []
    for hint in HINTS:
        if kind != "gradient" and hint in GRADIENT_ONLY:
            continue
        text = hint(got, expected, tol, context or {})
        if text:
            found.append(text)
            if hint in (zeros, constant_factor, transposed, relu_mask):
                break  # a global pattern explains every element: the finer ones add nothing
    return found
