"""Assertions for your own test suite: the checks and diagnoses of ``twingrad verify``, in pytest.

Two entry points:

- :func:`assert_layer_matches` checks any forward/backward pair you wrote
  against a twin you write in ``autograd.numpy`` (three ways: your backward,
  autograd, central differences) or, without a twin, against central
  differences of your own forward;
- :func:`assert_gradients` runs ``twingrad verify``'s checks of CS231n
  functions (``"batchnorm_backward"``, ...) on a module of yours.

Both raise :class:`AssertionError` with the same diagnosis the command line
prints: the gradient, its worst element, expected vs got, a hint when a
pattern (a sign, a factor N, a missing mean path, ...) explains the error, and
a reproducer to paste: the ``twingrad verify`` command for
:func:`assert_gradients`, the Python call with the failing inputs for
:func:`assert_layer_matches`. Under pytest the traceback stops at your test:
twingrad's own frames are hidden (``__tracebackhide__``).
Combine them with :mod:`twingrad.strategies` for property-based tests::

    from hypothesis import given
    from twingrad import strategies as tst
    from twingrad.testing import assert_layer_matches
    import my_layers

    @given(tst.arrays(tst.batch_shapes()), tst.seeds())
    def test_my_relu(x, seed):
        assert_layer_matches(my_layers.relu_forward, my_layers.relu_backward,
                             twin=lambda x: anp.where(x > 0, x, 0.0),
                             inputs={"x": x}, wrt=["x"], seed=seed, kinks=lambda x: x)
"""

from __future__ import annotations

import copy
import os
import shlex
from typing import Callable, Sequence

import numpy as np

from ._reproducer import snippet
from .gradcheck import compare, numeric_vjp, random_upstream, tolerance
from .verify.calling import Caller, UserError, gradients
from .verify.engine import Case, check_case, ulp
from .verify.results import Outcome, Record, diagnose

__all__ = ["assert_layer_matches", "assert_gradients", "check_module"]


class _Replay:
    """What a diagnosis needs of the settings, for a check run from Python rather than the CLI."""

    def __init__(self, seed: int, dtype: str, call: str):
        self.seed, self.dtype, self.call = seed, dtype, call

    def reproduce(self, function: str, case: int) -> str:
        return self.call


def _failure(name: str, text: str, reproducer: str) -> AssertionError:
    """The AssertionError of a failed check: the diagnosis, then the lines to paste."""
    if "reproduce: paste the lines below" not in text:  # errors raised before any diagnosis
        text += "\n  reproduce: paste the lines below into a Python prompt"
    return AssertionError(f"{text}\n{reproducer}")


def assert_layer_matches(forward: Callable, backward: Callable | None = None, twin: Callable | None = None, *,
                         inputs: dict, wrt: Sequence[str], kinks: Callable | None = None, mode: str = "auto",
                         seed: int = 0, dout=None, name: str | None = None) -> None:
    """Assert that ``backward`` computes the gradients of ``forward`` (and of ``twin``).

    Parameters
    ----------
    forward : callable
        ``forward(*inputs.values()) -> (out, cache)``; with ``backward=None`` a
        loss ``forward(*inputs.values()) -> (loss, grad)`` or ``(loss, (grads...))``
        whose gradients are those of the loss, in the order of ``wrt``.
    backward : callable, optional
        ``backward(dout, cache) -> gradient or tuple of gradients``, in the order of ``wrt``.
    twin : callable, optional
        The same function written with ``autograd.numpy``, taking the same
        arguments as ``forward`` and returning ``out`` only. With a twin the
        check is three-way: backward vs autograd (elementwise, exact up to
        rounding) and vs central differences of the twin. Without one, the
        backward is compared with central differences of ``forward`` itself.
    inputs : dict
        The arguments of ``forward``, by name, in order; left unchanged.
    wrt : sequence of str
        The differentiable inputs, in the order the backward returns their gradients.
    kinks : callable, optional
        ``kinks(*inputs.values()) -> array`` of the quantities whose sign change is
        a non-differentiable point (ReLU's input): finite differences across one
        are left out rather than reported as a mismatch.
    mode : {'auto', 'full', 'fast'}
        Central differences per element or along random projections (see ``twingrad verify --mode``).
    seed : int
        Seeds the upstream gradient (random, never all ones) and the projections.
    dout : array or float, optional
        A given upstream gradient instead.
    name : str, optional
        The function's name in the message (default: ``backward``'s or ``forward``'s ``__name__``).

    Raises
    ------
    AssertionError
        With the diagnosis, when a gradient disagrees, or when the code raises or
        returns gradients of the wrong number or shape, followed by the Python
        lines that replay the failing call: the functions imported by name
        (lambdas and nested functions are left for you to paste), the inputs
        written inline, or saved to an ``.npz`` file in the temporary folder when large.
    """
    __tracebackhide__ = True  # pytest shows the student's test, not twingrad's frames
    wrt = list(wrt)
    missing = [w for w in wrt if w not in inputs]
    if missing:
        raise ValueError(f"wrt names {missing} are not among the inputs {list(inputs)}")
    name = name or getattr(backward or forward, "__name__", "layer")
    dtype = np.result_type(*(np.asarray(inputs[w]).dtype for w in wrt))
    replay = _Replay(seed, np.dtype(dtype).name, "paste the lines below into a Python prompt")
    reproducer = lambda: snippet(forward, backward, twin, kinks, inputs=inputs, wrt=wrt,  # noqa: E731
                                 mode=mode, seed=seed, dout=dout)
    shapes = {k: tuple(np.shape(v)) for k, v in inputs.items() if isinstance(v, np.ndarray)}
    caller = Caller(None)
    rng = np.random.default_rng(seed)
    try:
        checked, out = _hand_case(forward, backward, twin, inputs, wrt, kinks, caller, name)
        if twin is None:
            outcomes = _numeric_only(checked, out, forward, backward, inputs, wrt, rng, dout, dtype)
        else:
            _, outcomes = check_case(checked, rng, dtype, mode, dout=dout)
            outcomes = [(o.gradient, Outcome(o.status, o.comparisons, 0, shapes, o.mode,
                                             details={**o.arrays, "context": _context(inputs, wrt)}))
                        for o in outcomes]
    except UserError as err:
        message = str(err) if str(err).startswith(name) else f"{name}: {err}"
        raise _failure(name, message, reproducer()) from None
    failures = [diagnose(name, gradient, outcome, replay)["text"] for gradient, outcome in outcomes
                if outcome.status == "fail"]
    if failures:
        raise _failure(name, "\n".join(failures), reproducer())


def _context(inputs: dict, wrt: list) -> dict:
    """Batch size and features of the first input, for the hints that name N and D."""
    x = np.asarray(inputs[wrt[0]])
    return {"N": x.shape[0] if x.ndim > 1 else None, "D": int(np.prod(x.shape[1:])) if x.ndim > 1 else None}


def _hand_case(forward, backward, twin, inputs, wrt, kinks, caller, name) -> tuple[Case, object]:
    args = lambda values: [copy.deepcopy(values[k]) for k in inputs]  # noqa: E731
    result = caller.invoke(name, forward, *args(inputs))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise UserError(f"forward returned {type(result).__name__}; expected a pair (out, cache) or (loss, grads)")
    out, cache = result
    names = tuple("d" + w for w in wrt)

    def hand(dout):
        if backward is None:
            grads = cache if isinstance(cache, (tuple, list)) else (cache,)
            return {n: np.asarray(g) * dout for n, g in gradients(name, tuple(grads), names).items()}
        return gradients(name, caller.invoke(name, backward, dout, cache), names)

    def twin_of(*arrays):
        return twin(*[dict(zip(wrt, arrays)).get(k, v) for k, v in inputs.items()])

    def kinks_of(*arrays):
        return kinks(*[dict(zip(wrt, arrays)).get(k, v) for k, v in inputs.items()])

    def perturbed(dout):
        rng = np.random.default_rng(0)
        moved = {**inputs, **{w: ulp(np.asarray(inputs[w]), rng) for w in wrt}}
        return _hand_case(forward, backward, twin, moved, wrt, kinks, caller, name)[0].hand(dout)

    checked = Case({w: inputs[w] for w in wrt}, twin_of if twin else None, hand, dict(zip(wrt, names)),
                      kinks_of if kinks else None, perturbed=perturbed, name=name)
    return checked, out


def _numeric_only(checked, out, forward, backward, inputs, wrt, rng, dout, dtype):
    """Without a twin: the backward against central differences of ``forward`` itself."""
    out = np.asarray(out, dtype=np.float64)
    if dout is None:
        dout = 1.0 if backward is None else random_upstream(rng, out)
    hand = checked.hand(np.asarray(dout, dtype=dtype) if np.ndim(dout) else dout)
    arrays = {w: np.array(inputs[w], dtype=np.float64) for w in wrt}
    dout64 = np.asarray(dout, dtype=np.float64)

    def evaluate():
        values = [arrays.get(k, v) for k, v in inputs.items()]
        value = np.asarray(forward(*copy.deepcopy(values))[0], dtype=np.float64)
        signs = np.sign(checked.kinks(*arrays.values())) if checked.kinks else None
        return float(np.sum(value * dout64)), signs

    tol = tolerance("numeric", dtype)
    outcomes = []
    for w, gname in checked.gradient_names.items():
        (num,), (kinked,) = numeric_vjp(evaluate, [arrays[w]], 1e-5)
        got = np.asarray(hand[gname])
        if got.shape != num.shape:
            raise UserError(f"{checked.name}: {gname} has shape {got.shape}; expected {num.shape}, the shape of {w}")
        comparison = compare(got, num, tol, "numeric", ignore=kinked if kinked.any() else None)
        status = "fail" if not comparison.passed else ("kink" if comparison.ignored else "pass")
        shapes = {k: tuple(np.shape(v)) for k, v in inputs.items() if isinstance(v, np.ndarray)}
        outcomes.append((gname, Outcome(status, {"numeric": comparison}, 0, shapes, "full",
                                        details={"got": got, "numeric": num, "context": _context(inputs, wrt),
                                                 "reference_text": "central differences of your forward"})))
    return outcomes


def check_module(module, functions: str | Sequence[str] | None = None, *, seed: int = 0, cases: int = 5,
                 mode: str = "auto", dtype: str = "float64", keep_prob: bool = False) -> list[Record]:
    """The records ``twingrad verify --impl`` would produce for ``module`` (checked in this process).

    Parameters
    ----------
    module : module or str
        A module object (``import my_layers``) or the path of a Python file.
    functions : str or sequence of str, optional
        CS231n function names to check (``"batchnorm_backward"``, ``"FullyConnectedNet.loss"``);
        default: every one.
    seed, cases, mode, dtype, keep_prob
        As ``--seed``, ``-k``, ``--mode``, ``--dtype`` and ``--keep-prob``.
    """
    __tracebackhide__ = True
    from .verify.functions import add_dependency_notes
    from .verify.functions import check_all as check
    from .verify.settings import Settings

    if isinstance(functions, str):
        functions = [functions]
    path = None
    if isinstance(module, (str, os.PathLike)):
        from .verify.calling import load

        path = os.fspath(module)
        try:
            module = load(path)
        except UserError as failure:
            raise AssertionError(failure.message) from None
    path = path or getattr(module, "__file__", None)
    settings = Settings(seed=seed, cases=cases, mode=mode, dtype=dtype, keep_prob=keep_prob,
                        only=tuple(functions or ()), impl=path)
    records = check(Caller(module, path), settings)
    add_dependency_notes(records)
    return records


def assert_gradients(functions: str | Sequence[str] | None, module, **options) -> None:
    """Assert that ``module``'s CS231n functions pass ``twingrad verify``'s checks.

    Parameters
    ----------
    functions : str or sequence of str or None
        ``"batchnorm_backward"``, several names, or None for every function the module defines.
    module : module or str
        The module, or the path of its file.
    **options
        ``seed``, ``cases``, ``mode``, ``dtype``, ``keep_prob``: see :func:`check_module`.

    Raises
    ------
    AssertionError
        Listing every failing, erroring or (when named explicitly) missing
        function, each with the diagnosis the command line prints and the
        ``twingrad verify`` command that replays it (paste it into a shell). Kinks pass.
    """
    __tracebackhide__ = True
    records = check_module(module, functions, **options)
    named = functions is not None
    bad = [r for r in records if r.status in ("fail", "error") or (named and r.status == "missing")]
    if bad:
        path = os.fspath(module) if isinstance(module, (str, os.PathLike)) else getattr(module, "__file__", None)
        lines = []
        for r in bad:
            if r.diagnosis and r.diagnosis.get("text"):
                lines.append(r.diagnosis["text"])
            else:
                lines.append(f"{r.function}: {r.status}: {r.message}")
                if r.status == "error" and path:
                    lines.append(f"  reproduce: {_verify_command(path, r.function, options)}")
        raise AssertionError("\n".join(lines))


def _verify_command(path: str, function: str, options: dict) -> str:
    """The ``twingrad verify`` command line that runs ``function``'s checks as :func:`assert_gradients` did."""
    words = ["twingrad", "verify", "--impl", path, "--only", function, "--seed", str(options.get("seed", 0))]
    for option, default in (("mode", "auto"), ("dtype", "float64")):
        if options.get(option, default) != default:
            words += [f"--{option}", str(options[option])]
    if options.get("keep_prob"):
        words.append("--keep-prob")
    return shlex.join(words)
