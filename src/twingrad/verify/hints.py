"""Pattern hints for a wrong gradient: what the mistake probably is.

Every hint is a hypothesis tested on the data: fit the pattern (a constant
factor, a transpose, a wrong ReLU mask, an error that is constant along the
batch), and emit the hint only when the fitted pattern reproduces the
expected gradient within the tolerance of the check, and the pattern has
fewer free parameters than the data has elements to spare. A hint that does
not demonstrably fit is never shown.

Beside these general patterns, a layer's registry entry names the sets of
classic mistakes of its own that apply (``LayerSpec.diagnoses``):
normalization's forward (eps outside the square root, ddof=1, the standard
deviation, gamma and beta forgotten, the wrong axis), the convolution's
flipped kernel and the stride ignored in its backward, the pooling gradient
sent to the whole window or to every tied maximum, spatial batch norm over
the wrong axes, group norm's groups on the wrong axis. Each is computed and
shown only when it reproduces what the checked code returned
(:func:`forward_hints`, :func:`backward_hints`); plain numpy loops, as the
checked sizes are small.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..gradcheck import Tolerance
from ..twins import LayerSpec


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
        if context.get("kind", "gradient") != "gradient":
            return "got is all zeros"  # a forward value: nothing to say about how gradients start
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
        text = hint(got, expected, tol, {**(context or {}), "kind": kind})
        if text:
            found.append(text)
            if hint in (zeros, constant_factor, transposed, relu_mask):
                break  # a global pattern explains every element: the finer ones add nothing
    return found


# -- what the hints may use about a case ------------------------------------------------


def context(spec: LayerSpec, inputs: dict, dout=None, keep_prob: bool = False) -> dict:
    """What the pattern hints may use about this case."""
    x = np.asarray(inputs[spec.args[0]], dtype=np.float64)
    context = {"N": x.shape[0] if x.ndim else None, "D": int(np.prod(x.shape[1:])) if x.ndim > 1 else None}
    if "y" in inputs:
        context["y"] = inputs["y"]
    if "relu_mask" in spec.diagnoses:
        context.update(relu_input=x, dout=dout)
    if "normalization" in spec.diagnoses:
        param, axis = _normalization(spec)
        eps = inputs[param]["eps"]
        centered = x - x.mean(axis=axis, keepdims=True)
        x_hat = centered / np.sqrt(np.mean(centered**2, axis=axis, keepdims=True) + eps)
        context.update(norm_axis=axis, x_hat=x_hat)
    if "dropout_mask" in spec.diagnoses:
        context.update(p_drop=inputs["dropout_param"]["p"], keep_prob=keep_prob, N=None, D=None)
    return context


# -- the classic mistakes of one layer, by its registry entry's diagnoses --------------------


def forward_hints(spec: LayerSpec, inputs64: dict, got, tol) -> list[str]:
    """The layer's classic forward mistakes (``spec.diagnoses``) that reproduce a wrong output ``got``."""
    got = np.asarray(got, np.float64)
    if "normalization" in spec.diagnoses:
        return _normalization_forward(spec, inputs64, got, tol)
    return [hint for name in spec.diagnoses if name in _FORWARD for hint in _FORWARD[name](inputs64, got, tol)][:1]


def backward_hints(spec: LayerSpec, inputs64: dict, dout, gradient: str, got, tol) -> list[str]:
    """The layer's classic backward mistakes (``spec.diagnoses``) that reproduce a wrong gradient ``got``."""
    got, dout = np.asarray(got, np.float64), np.asarray(dout, np.float64)
    return [hint for name in spec.diagnoses if name in _BACKWARD
            for hint in _BACKWARD[name](inputs64, dout, gradient, got, tol)][:1]


def _normalization(spec: LayerSpec) -> tuple[str, int]:
    """A normalization's parameter dict, and the axis it normalizes over: batch norm's 0, layer norm's 1."""
    param = spec.args[-1]
    return param, 0 if param == "bn_param" else 1


def _normalization_forward(spec, inputs64: dict, out, tol) -> list[str]:
    """A normalization's forward, wrong in one of the usual ways: each computed, kept only if it reproduces ``out``."""
    x, gamma, beta = inputs64["x"], inputs64["gamma"], inputs64["beta"]
    param, axis = _normalization(spec)
    eps, other = inputs64[param]["eps"], 1 - axis

    def normalized(axis, ddof=0, eps_outside=False, std=False):
        centered = x - x.mean(axis=axis, keepdims=True)
        var = x.var(axis=axis, ddof=ddof, keepdims=True)
        if std:
            return centered / np.sqrt(np.sqrt(var) + eps)
        return centered / (np.sqrt(var) + eps if eps_outside else np.sqrt(var + eps))

    candidates = [
        (gamma * normalized(axis, eps_outside=True) + beta, "eps is outside the square root: divide by "
                                                            "sqrt(var + eps), not sqrt(var) + eps"),
        (gamma * normalized(axis, ddof=1) + beta, "the unbiased variance (ddof=1) is used; normalization uses "
                                                  "the biased one (np.var's default)"),
        (gamma * normalized(axis, std=True) + beta, "the standard deviation is used where the variance belongs: "
                                                    "divide by sqrt(var + eps)"),
        (normalized(axis), "gamma and beta are not applied: out = gamma * x_hat + beta"),
    ]
    if x.shape[other] > 1:
        candidates.append((gamma * normalized(other) + beta, f"the statistics are taken over axis {other}; "
                                                             f"{spec.forward} takes them over axis {axis}"))
    got = np.asarray(out, np.float64)
    return [text for model, text in candidates
            if tol.fits(got, model)][:1]


def _pad(x, pad: int):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def _conv(x, w, b, stride: int, pad: int, step: int | None = None):
    """Cross-correlation as the course defines it; ``step`` places the windows (the stride by default)."""
    step = stride if step is None else step
    xp = _pad(x, pad)
    n, _, h, wd = xp.shape
    f, _, hh, ww = w.shape
    out_h, out_w = 1 + (h - hh) // stride, 1 + (wd - ww) // stride
    out = np.zeros((n, f, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, :, i * step:i * step + hh, j * step:j * step + ww]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def _conv_backward(x, w, dout, stride: int, pad: int, step: int):
    """dx and dw of the course's convolution, the windows placed ``step`` apart (a wrong step: a mistake)."""
    xp = _pad(x, pad)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    hh, ww = w.shape[2:]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(i * step, i * step + hh), slice(j * step, j * step + ww))
            if xp[window].shape[2:] != (hh, ww):
                return None, None
            dxp[window] += np.tensordot(dout[:, :, i, j], w, axes=([1], [0]))
            dw += np.tensordot(dout[:, :, i, j], xp[window], axes=([0], [0]))
    h, wd = x.shape[2:]
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw


def _conv_forward(inputs, got, tol):
    x, w, b, param = inputs["x"], inputs["w"], inputs["b"], inputs["conv_param"]
    flipped = _conv(x, w[:, :, ::-1, ::-1], b, param["stride"], param["pad"])
    if w.shape[2] * w.shape[3] > 1 and tol.fits(got, flipped):
        return ["the kernel is flipped: the course's 'convolution' is a cross-correlation, out[i, j] = "
                "sum(x_window * w) without reversing w"]
    return []


def _conv_backward_hints(inputs, dout, gradient, got, tol):
    x, w, param = inputs["x"], inputs["w"], inputs["conv_param"]
    stride, pad = param["stride"], param["pad"]
    if stride == 1 or gradient not in ("dx", "dw"):
        return []
    dx, dw = _conv_backward(x, w, dout, stride, pad, step=1)
    model = dx if gradient == "dx" else dw
    if model is not None and tol.fits(got, model):
        return [f"the stride is ignored in the backward pass: the windows are placed 1 apart, not "
                f"stride = {stride} (x_pad[:, :, i * stride:i * stride + HH, ...])"]
    return []


def _pool_backward_hints(inputs, dout, gradient, got, tol):
    x, param = inputs["x"], inputs["pool_param"]
    ph, pw, stride = param["pool_height"], param["pool_width"], param["stride"]
    every, ties = np.zeros_like(x), np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = (slice(None), slice(None), slice(i * stride, i * stride + ph), slice(j * stride, j * stride + pw))
            g = dout[:, :, i, j][:, :, None, None]
            every[window] += g
            ties[window] += g * (x[window] == x[window].max(axis=(2, 3), keepdims=True))
    if tol.fits(got, every):
        return ["the gradient goes to every element of the window; max pooling sends it to the maximum only"]
    if tol.fits(got, ties):
        return ["the gradient goes to every tied maximum of a window; the course sends it to the first one"]
    return []


def _normalized(x, axes, eps):
    return (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def _spatial_batchnorm_forward(inputs, got, tol):
    x, eps = inputs["x"], inputs["bn_param"].get("eps", 1e-5)
    gamma, beta = inputs["gamma"].reshape(1, -1, 1, 1), inputs["beta"].reshape(1, -1, 1, 1)
    wrong = {(0,): "over the batch only, per pixel (N): the course's spatial batch norm takes every N, H, W "
                   "of a channel (axes 0, 2, 3)",
             (2, 3): "per image and channel (H, W: instance norm); spatial batch norm takes axes 0, 2, 3",
             (1, 2, 3): "per image (C, H, W: layer norm); spatial batch norm takes axes 0, 2, 3"}
    return [f"the statistics are taken {text}" for axes, text in wrong.items()
            if tol.fits(got, gamma * _normalized(x, axes, eps) + beta)][:1]


def _spatial_groupnorm_forward(inputs, got, tol):
    x, G, eps = inputs["x"], inputs["G"], inputs["gn_param"].get("eps", 1e-5)
    n, c, h, w = x.shape
    swapped = x.reshape(n, c // G, G, h, w)
    right = "group g holds the consecutive channels g * C/G ... (g + 1) * C/G - 1: x.reshape(N, G, C // G, H, W)"
    wrong = [((1, 3, 4), "x.reshape(N, C // G, G, H, W) with statistics over axes 1, 3, 4 groups every G-th "
                         f"channel; {right}"),
             ((2, 3, 4), f"x.reshape(N, C // G, G, H, W) makes C/G groups of G channels; {right}")]
    for axes, text in wrong:
        if tol.fits(got, inputs["gamma"] * _normalized(swapped, axes, eps).reshape(x.shape) + inputs["beta"]):
            return [f"the groups are split on the wrong axis: {text}"]
    return []


_FORWARD = {"conv": _conv_forward, "spatial_batchnorm": _spatial_batchnorm_forward,
           "spatial_groupnorm": _spatial_groupnorm_forward}
_BACKWARD = {"conv": _conv_backward_hints, "max_pool": _pool_backward_hints}
