"""The three-way gradient check of any differentiable case, per element or by projection.

A :class:`Case` is a hand-derived forward/backward (whose forward has
already run) beside its pure autograd twin. :func:`check_case` pulls one
random upstream gradient ``v`` back through both and compares:

- **hand vs autograd**, elementwise, always: one backward pass each, so
  cheap at any size, and exact up to rounding;
- **hand vs central differences of the twin**, which cost function
  evaluations. ``full`` differentiates element by element (four evaluations
  per element, five-point stencil); ``fast`` compares projections
  ``<hand_vjp(v), u> = v^T J u`` along a few random directions ``u`` of one
  input at a time (four evaluations per direction; one input at a time so a
  failure names its gradient) and, when a projection disagrees, falls back to
  the full comparison of that input so the diagnosis has a worst element (for
  a large input, at a sample of elements: :func:`_numeric_sample`).

Finite differences are taken in float64 on upcast copies, also when the hand
code runs in float32: the numeric reference is then as accurate as it can be,
and only the comparison tolerance is float32's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from autograd import make_vjp

from ..gradcheck import (
    STEPS,
    Comparison,
    GradientCheck,
    compare,
    compare_projection,
    directional_derivative,
    numeric_vjp,
    random_upstream,
    tolerance,
)
from .calling import UserError, keepdims_note, shape_note


# Above this many elements, the fast mode's fallback differences a sample of elements, not all.
FALLBACK_LIMIT = 20_000
# 'auto' differences an input element by element while (its elements) x (all inputs' elements) stays
# below this: every registry layer and the default network sweep; a CIFAR-sized network projects.
FULL_BUDGET = 5_000_000


@dataclass
class Case:
    """A hand-derived pass and its twin, at one point.

    Attributes
    ----------
    arrays : dict of str to ndarray
        Differentiable inputs, in the order the twin takes them, as the hand code received them.
    twin : callable
        ``twin(*arrays) -> output``: pure ``autograd.numpy``.
    hand : callable
        ``hand(dout) -> {gradient name: array}``: the hand backward, pulling ``dout`` back.
    gradient_names : dict of str to str
        Input name -> gradient name (``"x" -> "dx"``; the net's ``"W1" -> "W1"``).
    kinks : callable or None
        ``kinks(*arrays) -> ndarray`` of the quantities whose sign change is a kink.
    traced : callable or None
        ``traced(*arrays) -> (output, kink quantities)`` in one pass, when that is
        cheaper than ``twin`` and ``kinks`` apart (a network's forward); used by
        the finite differences.
    perturbed : callable or None
        ``perturbed(dout) -> {gradient name: array}``: the hand pass (forward and
        backward) again, at inputs moved by one unit in the last place. Below
        float64, how much that moves the result is the hand code's own rounding
        noise, which a comparison tolerates (see :func:`ulp`).
    name : str
        The checked function, as messages name it (``"affine_backward"``).
    key : str or None
        What, besides ``arrays``, decides ``twin`` and ``kinks`` (a :func:`fingerprint`
        of the layer's name and its fixed arguments): the twin's results at the same
        point are then reused (:data:`REFERENCES`). None: never reused.
    """

    arrays: dict
    twin: Callable
    hand: Callable
    gradient_names: dict
    kinks: Callable | None = None
    traced: Callable | None = None
    perturbed: Callable | None = None
    key: str | None = None
    name: str = "the backward pass"


@dataclass
class GradientOutcome(GradientCheck):
    """A :class:`~twingrad.gradcheck.GradientCheck` with what the verify report needs besides."""

    mode: str = "full"  #: "full" or "fast"
    fell_back: bool = False  #: fast projections disagreed, the full comparison ran
    arrays: dict = field(default_factory=dict)  #: got, autograd, numeric (when computed): for the diagnosis
    notes: list = field(default_factory=list)  #: what the record should say even when it passes

    @property
    def comparisons(self) -> dict:
        return {"autograd": self.vs_autograd, "numeric": self.vs_numeric}


def check_case(case: Case, rng: np.random.Generator, dtype, mode: str = "auto", *,
                  fast_threshold: int = 2000, directions: int = 3, h: float | None = None,
                  dout=None) -> tuple[np.ndarray, list[GradientOutcome]]:
    """Check every gradient of ``case`` three ways.

    Parameters
    ----------
    case : Case
    rng : numpy.random.Generator
        Draws the upstream gradient and the fast mode's directions.
    dtype : dtype
        The dtype of the hand code: selects the tolerances.
    mode : {'auto', 'full', 'fast'}
        'auto' projects the inputs with more than ``fast_threshold`` elements, and every input of a
        case so large that differencing it element by element would be slow (:data:`FULL_BUDGET`).
    h : float, optional
        Finite-difference step (default: float64's, as differences run in float64).
    dout : array or float, optional
        The upstream gradient; random (never all ones) by default.

    Returns
    -------
    twin_out : ndarray
        The twin's output at the point, in float64.
    outcomes : list of GradientOutcome

    Raises
    ------
    UserError
        When the hand backward raises or returns gradients of the wrong type or shape.
    """
    dtype = np.dtype(dtype)
    exact, numeric = tolerance("exact", dtype), tolerance("numeric", dtype)
    h = STEPS[np.dtype(np.float64)] if h is None else h
    names = list(case.arrays)
    arrays64 = [np.array(case.arrays[n], dtype=np.float64) for n in names]
    if dout is None:
        dout = random_upstream(rng, np.asarray(case.twin(*arrays64)))
    # The hand code gets dout in its own dtype; the twin the same values, upcast.
    hand_dout = np.asarray(dout, dtype=dtype) if np.ndim(dout) else dtype.type(dout)
    dout64 = np.asarray(hand_dout, dtype=np.float64)
    point = None if case.key is None else (case.key, fingerprint(*arrays64, dout64))
    twin_out, auto = REFERENCES.get_or_compute((point, "vjp"), lambda: _twin_vjp(case, arrays64, dout64))
    hand_grads = case.hand(hand_dout.copy() if np.ndim(hand_dout) else hand_dout)

    def evaluate():
        if case.traced:
            out, kinks = case.traced(*arrays64)
            return float(np.sum(out * dout64)), np.sign(kinks)
        value = float(np.sum(case.twin(*arrays64) * dout64))
        signs = np.sign(case.kinks(*arrays64)) if case.kinks else None
        return value, signs

    total = sum(a.size for a in arrays64)
    noise = _twin_noise(case, names, auto, hand_dout, dtype)
    # How far an honest hand pass's own rounding may be credited: the code under check reports it (by
    # how much its result jumps when its inputs move by one ulp), so it is capped by what rounding in
    # ``dtype`` can do to this computation: the twin's own noise, or ``dtype``'s resolution of its largest
    # gradient, a hundredfold. A backward that makes up a jump gains no more than that.
    credible = 100 * max(max(noise, default=0.0),
                         float(np.finfo(dtype).eps) * max((float(np.max(np.abs(a), initial=0.0)) for a in auto),
                                                          default=0.0))
    hand_noise = None
    outcomes = []
    for i, name in enumerate(names):
        gname = case.gradient_names[name]
        expected = np.asarray(auto[i], dtype=np.float64)
        notes: list = []
        got = _gradient(hand_grads, gname, case.arrays[name], expected, case.name, notes)
        tol_exact, tol_numeric = _widened(exact, noise[i]), _widened(numeric, noise[i])
        vs_autograd = compare(got, expected, tol_exact, "autograd")
        if not vs_autograd.passed and dtype != np.float64 and case.perturbed:
            if hand_noise is None:
                hand_noise = _hand_noise(case, hand_grads, hand_dout)
            if hand_noise.get(gname):
                tol_exact = _widened(tol_exact, min(hand_noise[gname], credible))
                tol_numeric = _widened(tol_numeric, min(hand_noise[gname], credible))
                vs_autograd = compare(got, expected, tol_exact, "autograd")
        size = arrays64[i].size
        # auto: per element when that is cheap; an evaluation costs about one pass over every input,
        # so a large network projects even its small inputs (a bias of 100 behind 300 000 weights)
        use_fast = mode == "fast" or (mode == "auto" and (size > fast_threshold or size * total > FULL_BUDGET))
        arrays = {"got": got, "autograd": expected}
        fell_back = False
        if use_fast:
            vs_numeric = _projections(evaluate, arrays64[i], got, expected, tol_numeric, rng, directions, h)
            if not vs_numeric.passed:
                fell_back = True
        if fell_back and size > FALLBACK_LIMIT:
            vs_numeric = _numeric_sample(evaluate, arrays64[i], got, expected, tol_numeric, rng, h)
        elif not use_fast or fell_back:
            num, kinked = REFERENCES.get_or_compute((point, "numeric", i, h), lambda: _numeric(evaluate, arrays64[i], h))
            vs_numeric = compare(got, num, tol_numeric, "numeric")
            if not vs_numeric.passed and kinked.any():
                # Judge again without the stencils that crossed a kink: if that passes, it is a kink.
                vs_numeric = compare(got, num, tol_numeric, "numeric", ignore=kinked)
            arrays["numeric"] = num
        outcomes.append(GradientOutcome(gname, tuple(np.shape(got)), vs_autograd, vs_numeric,
                                        "fast" if use_fast else "full", fell_back, arrays, notes))
    return twin_out, outcomes


class _References:
    """The twin's results at a point, computed once per run and shared by every submission checked there.

    The cases are drawn from the seed alone, so every submission of a class
    is checked at the same points: the twin's output, its gradients and its
    central differences there do not depend on the submission. A key of None
    (a twin built from the submission's own output, as dropout's) is never cached.
    """

    def __init__(self, limit: int = 20_000):
        self.limit = limit
        self.values: dict = {}

    def get_or_compute(self, key: tuple, compute: Callable):
        if key[0] is None:
            return compute()
        try:
            return self.values[key]
        except KeyError:
            pass
        value = compute()
        if len(self.values) >= self.limit:
            self.values.clear()  # a bounded memory; a long run just computes again
        self.values[key] = value
        return value


REFERENCES = _References()


def fingerprint(*values) -> str:
    """A digest of arrays (dtype, shape and bytes) and plain values, to key the references by."""
    digest = hashlib.blake2b(digest_size=16)
    for value in values:
        if isinstance(value, np.ndarray) or isinstance(value, np.generic):
            array = np.ascontiguousarray(value)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
        else:
            digest.update(repr(value).encode())
        digest.update(b"|")
    return digest.hexdigest()


def _twin_vjp(case: Case, arrays64: list, dout64) -> tuple:
    vjp, twin_out = make_vjp(case.twin, tuple(range(len(arrays64))))(*arrays64)
    return _frozen(np.asarray(twin_out)), tuple(_frozen(np.asarray(g)) for g in vjp(dout64))


def _numeric(evaluate, x, h: float) -> tuple:
    (num,), (kinked,) = numeric_vjp(evaluate, [x], h)
    return _frozen(num), _frozen(kinked)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False  # shared between submissions: nobody may write into it
    return array


def _numeric_sample(evaluate, x, got, expected, tol, rng, h: float, count: int = 64) -> Comparison:
    """Central differences at the ``count`` elements where hand and autograd disagree most, and ``count`` more
    at random: the fast mode's fallback for an input too large to difference element by element.

    (W1 of a CIFAR-sized network has 307 200 elements: about 20 minutes per element-by-element pass.)
    """
    excess = np.abs(got - expected) / tol.bound(expected)
    flat = np.concatenate([np.argsort(excess, axis=None)[-count:], rng.choice(x.size, size=count, replace=False)])
    flat = np.unique(flat)
    index = np.unravel_index(flat, x.shape)
    num = np.empty(len(flat))
    _, base_signs = evaluate()
    crossed = np.zeros(len(flat), bool)
    for k, element in enumerate(zip(*index)):
        unit = np.zeros_like(x)
        unit[element] = 1.0
        num[k], crossed[k] = directional_derivative(evaluate, x, unit, h, base_signs)
    result = compare(got[index], num, tol, "numeric", ignore=crossed if crossed.any() else None)
    worst = tuple(int(i[result.worst_index[0]]) for i in index) if result.worst_index else ()
    return Comparison("numeric", result.max_abs_error, result.max_rel_error, worst, result.expected, result.actual,
                      tol, result.passed, result.ignored)


def _twin_noise(case: Case, names, auto64, dout, dtype) -> list[float]:
    """Per gradient, how far the twin itself lands from float64 when run in ``dtype``: 0 in float64.

    A careful implementation in float32 is off by this much; the check widens
    ``atol`` by ten times it rather than blaming the rounding on the student.
    """
    if dtype == np.float64:
        return [0.0] * len(names)
    arrays = [np.asarray(case.arrays[n], dtype=dtype) for n in names]
    try:
        vjp, _ = make_vjp(case.twin, tuple(range(len(names))))(*arrays)
        low = vjp(np.asarray(dout, dtype=dtype) if np.ndim(dout) else dtype.type(dout))
    except Exception:  # noqa: BLE001  (a twin that cannot run in float32: no widening)
        return [0.0] * len(names)
    return [float(np.max(np.abs(np.asarray(g, np.float64) - a), initial=0.0)) for g, a in zip(low, auto64)]


def _hand_noise(case: Case, hand_grads: dict, dout) -> dict:
    """Per gradient, how much the hand result moves when its inputs move by one ulp.

    Where float32 cannot resolve a computation (the bias before batch norm,
    mathematically zero, is a sum of large terms that cancel), the hand result
    changes by about its whole error under such a nudge; a wrong formula does
    not, as it is wrong the same way at both points.
    """
    try:
        moved = case.perturbed(dout.copy() if np.ndim(dout) else dout)
        return {name: float(np.max(np.abs(np.asarray(moved[name], np.float64) - np.asarray(g, np.float64)),
                                   initial=0.0))
                for name, g in hand_grads.items() if g is not None and name in moved}
    except Exception:  # noqa: BLE001  (the rerun is best effort: no widening)
        return {}


def ulp(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``array`` with every element moved one unit in the last place, up or down at random."""
    up = rng.random(np.shape(array)) < 0.5
    return np.where(up, np.nextafter(array, np.inf), np.nextafter(array, -np.inf)).astype(array.dtype)


def _widened(tol, noise: float):
    return tol if noise == 0 else type(tol)(atol=tol.atol + 10 * noise, rtol=tol.rtol)


def _gradient(hand_grads: dict, gname: str, like: np.ndarray, expected=None, function: str = "",
              notes: list | None = None) -> np.ndarray:
    """The hand gradient ``gname``, checked to be a real array shaped like its input (or, with a note
    appended to ``notes``, that shape with extra leading axes of length 1)."""
    if gname not in hand_grads:
        raise UserError(f"{function}: no gradient {gname} was returned")
    value = hand_grads[gname]
    if value is None:
        raise UserError(f"{function}: {gname} is None: not computed yet?")
    try:
        got = np.asarray(value)
    except Exception as exc:  # noqa: BLE001  (any conversion failure is the user's type error)
        raise UserError(f"{function}: {gname} is a {type(value).__name__}, not an array: {exc}") from None
    if not (np.issubdtype(got.dtype, np.floating) or np.issubdtype(got.dtype, np.integer)):
        raise UserError(f"{function}: {gname} has dtype {got.dtype}; expected a floating-point array")
    shape = np.shape(like)
    of = gname[1:] if gname.startswith("d") else gname
    note = keepdims_note(gname, got.shape, shape, of) if notes is not None else None
    if note is not None:
        notes.append(note)
        got = got.reshape(shape)
    elif got.shape != shape:
        hint = shape_note(got, shape, expected) or _shape_hint(got.shape, shape)
        raise UserError(f"{function}: {gname} has shape {got.shape}; expected {shape}, the shape of {of}{hint}")
    return got


def _shape_hint(got: tuple, expected: tuple) -> str:
    if len(got) == len(expected) and any(g == 0 < e for g, e in zip(got, expected)):
        return " (an empty slice: x[p:-p] is empty when p = 0, as with pad = 0; slice x[p:p + H])"
    if len(got) == 2 and got == tuple(reversed(expected)):
        return " (transposed?)"
    if int(np.prod(got)) == int(np.prod(expected)):
        return " (same number of elements: a missing reshape back to the input's shape?)"
    if len(expected) == 1 and len(got) == 2 and expected[0] in got:
        return " (summed over the wrong axis, or not summed over the batch?)"
    return ""


def _projections(evaluate, x, got, expected, tol, rng, directions: int, h: float) -> Comparison:
    """Compare ``<got, u>`` with ``v^T J u`` from central differences along random directions ``u``.

    A direction whose stencil crosses a kink is retried with a step 10 and 100
    times smaller (a kink is crossed only within reach of the step), then
    redrawn; a direction that crosses at every step is left out and counted
    in ``ignored``, so the outcome reads 'kink' if nothing else disagreed.
    """
    _, base_signs = evaluate()
    worst_excess, worst = -1.0, None
    errors, rels, ignored = [], [], 0
    for k in range(directions):
        result = None
        for _ in range(3):  # redraws of the direction
            u = rng.normal(size=x.shape)
            for step in (h, h / 10, h / 100):
                value, crossed = directional_derivative(evaluate, x, u, step, base_signs)
                if not crossed:
                    result = value
                    break
            if result is not None:
                break
        if result is None:
            ignored += 1
            continue
        actual = float(np.sum(got * u))
        excess, _ = compare_projection(actual, result, expected, u, tol)
        error = abs(actual - result) if np.isfinite(actual) else np.inf
        errors.append(error)
        denominator = abs(actual) + abs(result)
        rels.append(error / denominator if denominator > 0 else 0.0)
        if excess > worst_excess:
            worst_excess, worst = excess, (k, result, actual)
    if worst is None:
        return Comparison("numeric", 0.0, 0.0, (), 0.0, 0.0, tol, True, ignored)
    k, result, actual = worst
    return Comparison("numeric", max(errors), max(rels), (k,), result, actual, tol, worst_excess <= 1.0, ignored)
