"""Gradient checking: numeric gradients, one tolerance rule, and the three-way check.

The CS231n helpers (:func:`eval_numerical_gradient`,
:func:`eval_numerical_gradient_array`, :func:`rel_error`) keep their names and
signatures. :func:`check_layer` compares a hand-derived backward with the
autograd twin (exact up to rounding) and with central differences, and
returns a structured verdict per gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .twins import LayerSpec, run_hand


@dataclass(frozen=True)
class Tolerance:
    """``|actual - expected| <= atol + rtol * |expected|``, elementwise (as ``numpy.isclose``)."""

    atol: float
    rtol: float

    def bound(self, expected: np.ndarray) -> np.ndarray:
        return self.atol + self.rtol * np.abs(expected)

    def fits(self, actual, expected) -> bool:
        """True when every element of ``actual`` is within the bound of ``expected`` (same shapes only)."""
        actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        return actual.shape == expected.shape and bool(np.all(np.abs(actual - expected) <= self.bound(expected)))


# "exact": hand vs autograd twin. Both are analytic, so they differ by rounding only.
# "numeric": vs central differences, whose error is O(h^2) truncation plus O(eps / h) rounding.
TOLERANCES = {
    "exact": {np.dtype(np.float64): Tolerance(atol=1e-10, rtol=1e-7), np.dtype(np.float32): Tolerance(atol=1e-5, rtol=1e-4)},
    "numeric": {np.dtype(np.float64): Tolerance(atol=1e-7, rtol=1e-5), np.dtype(np.float32): Tolerance(atol=1e-2, rtol=1e-2)},
}
# Central-difference step: CS231n's 1e-5 in float64; near cbrt(machine eps) in float32.
STEPS = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-2}


def tolerance(kind: str, dtype) -> Tolerance:
    """Default tolerance for comparing against an ``"exact"`` or a ``"numeric"`` reference."""
    try:
        return TOLERANCES[kind][np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"no {kind!r} tolerance for dtype {np.dtype(dtype)}; use float32 or float64") from None


def _require_finite(name: str, x: np.ndarray) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite for a gradient check, but {name}{list(index)} = {x[index]}")


def _require_perturbable(func: str, x, h) -> None:
    """Refuse what central differences in place cannot use: see :func:`eval_numerical_gradient`."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{func}: x must be a numpy array (it is perturbed in place), got {type(x).__name__}")
    if x.dtype.char not in "fd":
        raise TypeError(
            f"{func}: x must be a float32 or float64 array, got dtype {x.dtype}; x[i] + h cannot be stored in "
            f"it, and a converted copy would not be the array f reads: convert the array itself "
            f"(e.g. W = W.astype(np.float64)) before the check")
    if not (isinstance(h, (float, int, np.floating, np.integer)) and not isinstance(h, bool) and 0 < h < np.inf):
        raise ValueError(f"{func}: h must be a finite step > 0, got {h!r}")


def _perturbed(x: np.ndarray, offsets: tuple, evaluate: Callable) -> Iterator[tuple]:
    """Yield ``(index, [evaluate() at x[index] + o for o in offsets])``, restoring x each time."""
    for index in np.ndindex(x.shape):
        original = x[index]
        try:
            values = []
            for offset in offsets:
                x[index] = original + offset
                values.append(evaluate())
        finally:
            x[index] = original
        yield index, values


def eval_numerical_gradient(f: Callable, x: np.ndarray, verbose: bool = True, h: float = 1e-5) -> np.ndarray:
    """Central-difference gradient of a scalar function ``f`` at ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : ndarray of float32 or float64
        Point of evaluation; perturbed element by element and restored, so it is
        unchanged on return (also when ``f`` raises). An integer (or float16,
        longdouble, ...) array is refused with a TypeError rather than upcast:
        ``f`` often reads ``x`` through a model (``lambda _: model.loss(X)[0]``),
        so the perturbation must land in the very array ``f`` reads, and an
        integer array cannot hold ``x[i] + h`` (it truncates, silently).
    verbose : bool
        Print each index and its gradient, as CS231n does.
    h : float
        Step.

    Returns
    -------
    grad : ndarray, shape of x

    Raises
    ------
    TypeError
        When x is not a float32 or float64 array.
    ValueError
        When x holds NaN or infinity, or h is not a finite number > 0.
    """
    _require_perturbable("eval_numerical_gradient", x, h)
    _require_finite("x", x)
    grad = np.zeros_like(x)
    for index, (plus, minus) in _perturbed(x, (h, -h), lambda: f(x)):
        grad[index] = (plus - minus) / (2 * h)
        if verbose:
            print(index, grad[index])
    return grad


def eval_numerical_gradient_array(f: Callable, x: np.ndarray, df: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central-difference vector-Jacobian product ``df . d f(x) / dx`` of an array function.

    ``f(x)`` returns an array shaped like ``df``; ``x`` is restored on return.
    ``x`` must be a float32 or float64 array, for the reasons given in
    :func:`eval_numerical_gradient`.
    """
    _require_perturbable("eval_numerical_gradient_array", x, h)
    _require_finite("x", x)
    grad = np.zeros_like(x)
    for index, (plus, minus) in _perturbed(x, (h, -h), lambda: f(x)):
        grad[index] = np.sum((plus - minus) * df) / (2 * h)
    return grad


def rel_error(x, y) -> float:
    """CS231n's relative error ``max |x - y| / max(1e-8, |x| + |y|)``."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


@dataclass
class Comparison:
    """How an array compares with its reference under one :class:`Tolerance`."""

    reference: str  #: "autograd", "numeric" or "twin" (forward values)
    max_abs_error: float
    max_rel_error: float  #: CS231n form, |a - e| / (|a| + |e|): in [0, 1]
    worst_index: tuple  #: the element that most exceeds (or comes nearest) its bound
    expected: float  #: reference value there
    actual: float
    tolerance: Tolerance
    passed: bool
    ignored: int = 0  #: elements left out of the comparison (finite differences across a kink)


def compare(actual, expected, tol: Tolerance, reference: str, ignore: np.ndarray | None = None) -> Comparison:
    """Compare ``actual`` with ``expected`` elementwise; ``ignore`` masks elements out."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        raise ValueError(f"shape mismatch against {reference}: expected {expected.shape}, got {actual.shape}")
    error = np.abs(actual.astype(np.float64) - expected)
    error = np.where(np.isnan(error), np.inf, error)  # NaN never passes
    excess = error / tol.bound(expected)
    if ignore is not None:
        excess = np.where(ignore, 0.0, excess)
    if actual.size == 0:
        return Comparison(reference, 0.0, 0.0, (), 0.0, 0.0, tol, True)
    worst = np.unravel_index(int(np.argmax(excess)), actual.shape)
    kept = ~ignore if ignore is not None else np.ones(actual.shape, bool)
    denominator = np.abs(actual) + np.abs(expected)
    rel = np.divide(error, denominator, out=np.zeros_like(error), where=denominator > 0)
    return Comparison(
        reference=reference,
        max_abs_error=float(error[kept].max(initial=0.0)),
        max_rel_error=float(rel[kept].max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst),
        expected=float(expected[worst]),
        actual=float(actual[worst]),
        tolerance=tol,
        passed=bool(excess.max() <= 1.0),
        ignored=int((~kept).sum()),
    )


def _five_point(plus, minus, plus2, minus2, h: float):
    """``(8 [f(x+h) - f(x-h)] - [f(x+2h) - f(x-2h)]) / 12h``: truncation error O(h^4)."""
    return (8 * (plus - minus) - (plus2 - minus2)) / (12 * h)


def numeric_vjp(evaluate: Callable, arrays: list, h: float) -> tuple[list, list]:
    """Five-point central differences of a scalar ``evaluate()`` over every element of ``arrays``.

    Parameters
    ----------
    evaluate : callable
        ``evaluate() -> (value, signs)``: the scalar (typically ``sum(f(...) * dout)``,
        a vector-Jacobian product) at the arrays' current contents, and the signs of
        the kink quantities there (or None when the function has no kinks).
    arrays : list of ndarray
        Perturbed one element at a time, in place, and restored.
    h : float
        Step.

    Returns
    -------
    grads : list of ndarray, shaped like ``arrays``
    kinked : list of bool ndarray
        True where a stencil point changed the sign of a kink quantity: there
        finite differences straddle a non-differentiable point and measure nothing useful.
    """
    _, base_signs = evaluate()
    grads, kinked = [], []
    for x in arrays:
        grad, crossed = np.zeros_like(x), np.zeros(x.shape, bool)
        for index, results in _perturbed(x, (h, -h, 2 * h, -2 * h), evaluate):
            grad[index] = _five_point(*(value for value, _ in results), h)
            if base_signs is not None:
                crossed[index] = any(np.any(signs != base_signs) for _, signs in results)
        grads.append(grad)
        kinked.append(crossed)
    return grads, kinked


def directional_derivative(evaluate: Callable, x: np.ndarray, u: np.ndarray, h: float,
                           base_signs: np.ndarray | None = None) -> tuple[float, bool]:
    """Five-point central difference of a scalar ``evaluate()`` along direction ``u`` of ``x``.

    The fast (projection) counterpart of :func:`numeric_vjp`: four evaluations
    instead of four per element. With ``evaluate`` returning ``sum(f(x) * v)``,
    the result is ``v^T J u``. ``x`` is moved in place to ``x + t u`` and
    restored bit for bit (from a copy, not by subtracting ``t u`` again).

    Returns ``(derivative, crossed)``, ``crossed`` being True when a stencil
    point changed the sign of a kink quantity relative to ``base_signs`` (the
    signs at ``x``, which the caller evaluates once for all directions).
    """
    original = x.copy()
    try:
        results = []
        for t in (h, -h, 2 * h, -2 * h):
            np.add(original, t * u, out=x, casting="unsafe")
            results.append(evaluate())
    finally:
        x[...] = original
    crossed = base_signs is not None and any(np.any(signs != base_signs) for _, signs in results)
    return float(_five_point(*(value for value, _ in results), h)), bool(crossed)


def compare_projection(actual: float, expected: float, reference: np.ndarray, u: np.ndarray,
                       tol: Tolerance) -> tuple[float, float]:
    """Judge a projection ``<g, u>`` against its reference: ``(excess, bound)``, passing when ``excess <= 1``.

    The bound ``atol * sum|u| + rtol * sum|reference * u|`` is the elementwise
    rule summed along ``u``: a gradient that passes elementwise always passes
    every projection, so the fast mode never fails where the full mode passes.
    """
    bound = tol.atol * float(np.sum(np.abs(u))) + tol.rtol * float(np.sum(np.abs(reference * u)))
    error = abs(actual - expected)
    error = np.inf if np.isnan(error) else error
    return (error / bound if bound > 0 else (0.0 if error == 0 else np.inf)), bound


@dataclass
class GradientCheck:
    """One gradient of one layer, checked against autograd and against central differences."""

    gradient: str
    shape: tuple
    vs_autograd: Comparison
    vs_numeric: Comparison

    @property
    def status(self) -> str:
        """'pass'; 'fail'; or 'kink' when the only disagreement is finite differences across a kink."""
        if not (self.vs_autograd.passed and self.vs_numeric.passed):
            return "fail"
        return "kink" if self.vs_numeric.ignored else "pass"


@dataclass
class LayerCheck:
    """The three-way verdict on one layer at one set of inputs."""

    name: str
    shapes: dict
    forward: Comparison
    gradients: list[GradientCheck] = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {g.status for g in self.gradients}
        if not self.forward.passed or "fail" in statuses:
            return "fail"
        return "kink" if "kink" in statuses else "pass"

    @property
    def passed(self) -> bool:
        return self.status == "pass"


def random_upstream(rng: np.random.Generator, out) -> np.ndarray | float:
    """A random upstream gradient shaped like ``out``: never all ones, never zero."""
    out = np.asarray(out)
    if out.ndim == 0:
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0))
    return rng.normal(size=out.shape).astype(out.dtype)


def _check_hand_shapes(spec: LayerSpec, inputs: dict, hand_out, twin_out, hand_grads: dict) -> None:
    """Raise a ValueError naming the function and the array when the hand pass returned a wrong shape."""
    if np.shape(hand_out) != np.shape(twin_out):
        raise ValueError(f"{spec.forward} returned out of shape {np.shape(hand_out)}, expected {np.shape(twin_out)}")
    backward = spec.backward or spec.forward
    if len(hand_grads) != len(spec.wrt):
        raise ValueError(f"{backward} returned {len(hand_grads)} gradients, expected {len(spec.wrt)}: "
                         f"{', '.join(spec.gradient_names)}")
    for name, grad_name in zip(spec.wrt, spec.gradient_names):
        got, expected = np.shape(hand_grads[grad_name]), np.shape(inputs[name])
        if got != expected:
            raise ValueError(f"{backward} returned {grad_name} of shape {got}, expected {expected} (the shape of {name})")


def check_layer(spec: LayerSpec, inputs: dict, rng: np.random.Generator, module=None, h: float | None = None) -> LayerCheck:
    """Check a hand-derived layer three ways at ``inputs``.

    Parameters
    ----------
    spec : LayerSpec
        The registry entry.
    inputs : dict
        Valid inputs, e.g. from ``spec.sample``; left unchanged.
    rng : numpy.random.Generator
        Draws the upstream gradient.
    module : module, optional
        Where the hand functions come from (default: twingrad's own).
    h : float, optional
        Finite-difference step (default: float64's; differences are taken in float64).

    Returns
    -------
    LayerCheck
        Forward (hand vs twin) and, per gradient, hand vs autograd and hand vs numeric:
        the comparisons of :func:`twingrad.verify.engine.check_case`, which
        ``twingrad verify`` runs too.
    """
    from .verify.engine import Case, check_case  # the one engine (verify builds on this module)

    dtype = np.asarray(inputs[spec.wrt[0]]).dtype
    for name in spec.wrt:
        _require_finite(name, inputs[name])
    twin_out = spec.twin_function(inputs)(*(inputs[a] for a in spec.wrt))
    dout = random_upstream(rng, twin_out)
    hand_out, hand_grads = run_hand(spec, inputs, dout, module)
    _check_hand_shapes(spec, inputs, hand_out, twin_out, hand_grads)

    kinks = None
    if spec.kinks:
        def kinks(*arrays):
            return spec.kinks({**inputs, **dict(zip(spec.wrt, arrays))})

    case = Case({name: inputs[name] for name in spec.wrt}, spec.twin_function(inputs), lambda _: hand_grads,
                      dict(zip(spec.wrt, spec.gradient_names)), kinks, name=spec.backward or spec.forward)
    _, outcomes = check_case(case, rng, dtype, "full", h=h, dout=dout)
    shapes = {name: tuple(np.shape(inputs[name])) for name in spec.wrt}
    forward = compare(hand_out, np.asarray(twin_out, np.float64), tolerance("exact", dtype), "twin")
    return LayerCheck(spec.name, shapes, forward, list(outcomes))
