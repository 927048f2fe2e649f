"""The CS231n functions in checking order, and the checks of each against twingrad's twins.

Every function of the registry is checked under its CS231n name: a forward
by its output (plus, for batch norm and dropout, the state and statistics of
:mod:`.stateful`), a backward by each gradient it returns, a loss by its
value and ``dx``. A backward is run on the cache that the module's *own*
forward returns, so any cache layout works. Each function yields its
records independently of the others, which is what lets a grading worker
report them one at a time.

:func:`check_one` checks one function of any kind (a layer here; the
network, an update rule, the convolutional net in their own modules);
:func:`check_all` checks every selected one in process (twingrad itself,
:mod:`twingrad.testing`); the judge walks the same list for a submission,
one function at a time, each under its own deadline.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..gradcheck import compare, numeric_vjp, random_upstream, tolerance
from ..twins import REGISTRY, SCALES, LayerSpec
from . import calling, cnn_check, network, stateful, update_rules
from .calling import Caller, UserError, stub
from .remote import Planned
from .hints import backward_hints, context, forward_hints
from .engine import Case, check_case, fingerprint, ulp
from .results import Collector, Outcome, Record, arguments_text, failure_record, function_record

# float32 keeps 7 digits: at scales 0.1 and 10 a batch-normalized layer's input
# varies by less than float32 resolves next to its offset, and an honest float32
# implementation's rounding dwarfs float32 tolerances (the bias before batch norm,
# mathematically 0, comes out as 1e-3). Those cases test float32, not the student.
SCALES_FLOAT32 = (1.0,)


@dataclass(frozen=True)
class Function:
    """One CS231n function: its role, the registry entry that checks it, and the forward it needs."""

    name: str
    role: str  #: "forward", "backward" or "loss"
    spec: LayerSpec
    forward: str  #: the forward whose cache a backward needs (the function itself otherwise)


def _table() -> dict[str, Function]:
    table: dict[str, Function] = {}
    for spec in REGISTRY.values():
        if spec.is_loss:
            table[spec.forward] = Function(spec.forward, "loss", spec, spec.forward)
        else:
            table.setdefault(spec.forward, Function(spec.forward, "forward", spec, spec.forward))
            table[spec.backward] = Function(spec.backward, "backward", spec, spec.forward)
    return table


class _Functions(Mapping):
    """Every CS231n function of the registry, read from :data:`~twingrad.twins.REGISTRY` at each use:
    a layer registered at any time (a plug-in, a test) is checked like the others."""

    def __getitem__(self, name: str) -> Function:
        return _table()[name]

    def __iter__(self):
        return iter(_table())

    def __len__(self) -> int:
        return len(_table())


FUNCTIONS: Mapping[str, Function] = _Functions()


# The sandwich layers call these; a failure there usually explains one here.
_PARTS = {
    "affine_relu": ("affine", "relu"),
    "affine_bn_relu": ("affine", "batchnorm", "relu"),
    "affine_ln_relu": ("affine", "layernorm", "relu"),
}


def function_names() -> list[str]:
    """Every CS231n function name ``--only`` accepts, in checking order."""
    return [*FUNCTIONS, network.FUNCTION, cnn_check.FUNCTION, *update_rules.RULES]


def role_of(name: str) -> str:
    """The module of the course package a function is written in: its registry entry's, fc_net, optim."""
    if name == network.FUNCTION:
        return "fc_net"
    if name == cnn_check.FUNCTION:
        return "cnn"
    if name in update_rules.RULES:
        return "optim"
    return FUNCTIONS[name].spec.module if name in FUNCTIONS else "layers"


def selected_functions(settings) -> list[str]:
    """The functions a run checks, in checking order."""
    return [name for name in function_names() if settings.selects(name)]


def check_one(name: str, caller, settings, *, network_sweep: bool = False) -> list[Record]:
    """Every record of one CS231n function (a layer, the network, an update rule)."""
    if name == network.FUNCTION:
        return network.check_sweep(settings) if network_sweep else network.check_student_network(caller, settings)
    if name in update_rules.RULES:
        return update_rules.check_update_rule(name, caller, settings)
    if name == cnn_check.FUNCTION:
        return cnn_check.check_student_cnn(caller, settings)
    return check_function(FUNCTIONS[name], caller, settings)


def check_all(caller: Caller, settings, *, network_sweep: bool = False) -> list[Record]:
    """Check every selected CS231n function that ``caller``'s module defines (absent ones: 'missing').

    ``network_sweep`` checks twingrad's own FullyConnectedNet over the default
    sweep of architectures rather than the module's FullyConnectedNet class.
    """
    return [record for name in selected_functions(settings)
            for record in check_one(name, caller, settings, network_sweep=network_sweep)]


def add_dependency_notes(records: list[Record]) -> None:
    """Tell a failing sandwich layer that a layer it is built from fails too (fix that first)."""
    bad = {r.function for r in records if r.status in ("fail", "error")}
    for record in records:
        if record.status not in ("fail", "error"):
            continue
        for root, parts in _PARTS.items():
            suffix = record.function[len(root):]
            if record.function.startswith(root + "_") and suffix in ("_forward", "_backward"):
                culprits = [f"{part}{suffix}" for part in parts if f"{part}{suffix}" in bad]
                if culprits:
                    one = len(culprits) == 1
                    note = (f"{record.function} is usually built from {', '.join(culprits)}, which "
                            f"{'fails' if one else 'fail'} too: fix {'it' if one else 'them'} first")
                    if record.diagnosis is not None and "text" in record.diagnosis:  # a failure's diagnosis
                        record.diagnosis.setdefault("hints", []).append(note)
                        record.diagnosis["text"] += f"\n  hint: {note}"
                    else:
                        record.message = f"{record.message}; {note}" if record.message else note


def reference_module() -> types.SimpleNamespace:
    """twingrad's own functions under their CS231n names, as one namespace: every registered layer's
    hand pair (from the module its entry names), and the update rules."""
    from .. import optim
    from ..cnn import ThreeLayerConvNet

    names = {**vars(optim), "ThreeLayerConvNet": ThreeLayerConvNet}
    for spec in REGISTRY.values():
        module = spec.hand_module()
        names.update({name: getattr(module, name) for name in (spec.forward, spec.backward) if name})
    return types.SimpleNamespace(**names)


def check_function(fn: Function, caller: Caller, settings) -> list[Record]:
    """Every record of one CS231n function: missing, an error, or one per checked quantity."""
    if not caller.has(fn.name):
        return [function_record(fn.name, "missing", "not defined", settings)]
    if not caller.has(fn.forward):
        return [function_record(fn.name, "missing", f"{fn.name} is defined but {fn.forward}, whose cache it "
                                f"needs, is not: not checked", settings)]
    collector = Collector(fn.name, settings, first_input=fn.spec.args[0])
    case, shapes = None, None
    try:
        caller.prefetch(plan(fn, settings))
        for case in settings.case_indices():
            shapes = None
            if fn.role == "forward":
                shapes = _forward_case(fn, caller, settings, case, collector)
            else:
                shapes = _gradient_case(fn, caller, settings, case, collector)
    except UserError as err:
        return [failure_record(fn.name, err, settings, case, shapes)]
    return collector.records()


def plan(fn: Function, settings) -> list:
    """The calls the first attempt at every case makes, in order: ``(name, args)`` for a prefetch.

    It draws what :func:`_forward_case` and :func:`_gradient_case` draw, from
    the same generators; a backward's cache is ``Planned(k, (1,))``, the
    second value its forward (call ``k``) returns. Dropout's forward checks
    its statistics with calls of their own, and is not planned.
    """
    spec, calls = fn.spec, []
    if fn.role == "forward" and "dropout_mask" in spec.diagnoses:
        return []
    for case in settings.case_indices():
        if fn.role == "forward":
            inputs = sample(spec, settings.rng(fn.name, case), settings)
            calls.append((fn.name, call_args(spec, inputs, settings)))
            continue
        rng = settings.rng(fn.name, case, 0)
        inputs = sample(spec, rng, settings)
        calls.append((fn.forward, call_args(spec, inputs, settings)))
        if fn.role == "backward":
            inputs64 = upcast(spec, inputs)
            out = np.asarray(spec.twin_function(inputs64)(*(inputs64[a] for a in spec.wrt)))
            dout = np.asarray(random_upstream(rng, out), dtype=settings.np_dtype)
            calls.append((fn.name, [dout, Planned(len(calls) - 1, (1,))]))
    return calls


def sample(spec: LayerSpec, rng: np.random.Generator, settings) -> dict:
    """Random valid inputs for ``spec`` in the settings' dtype."""
    shape = spec.random_shape(rng)
    scale = float(rng.choice(SCALES if settings.dtype == "float64" else SCALES_FLOAT32))
    return spec.sample(rng, shape, scale, settings.np_dtype)


def call_args(spec: LayerSpec, inputs: dict, settings) -> list:
    """Fresh copies of the forward's arguments (the checked code may write into them), in its convention."""
    args = [copy.deepcopy(inputs[a]) for a in spec.args]
    if "dropout_mask" in spec.diagnoses and settings.keep_prob:
        args[1]["p"] = 1.0 - args[1]["p"]
    return args


def upcast(spec: LayerSpec, inputs: dict) -> dict:
    """The inputs with every float array in float64: the twin's copy."""
    return {k: v.astype(np.float64) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for k, v in inputs.items()}


def input_shapes(spec: LayerSpec, inputs: dict) -> dict:
    return {a: tuple(np.shape(inputs[a])) for a in spec.args if isinstance(inputs[a], np.ndarray)}


def _forward_case(fn, caller, settings, case, collector) -> dict:
    spec = fn.spec
    inputs = sample(spec, settings.rng(fn.name, case), settings)
    shapes = input_shapes(spec, inputs)
    try:
        if "dropout_mask" in spec.diagnoses:
            stateful.dropout_forward_case(caller, settings, case, inputs, shapes, collector)
            return shapes
        inputs64 = upcast(spec, inputs)
        twin_out = np.asarray(spec.twin_function(inputs64)(*(inputs64[a] for a in spec.wrt)))
        out, _ = calling.pair(fn.name, caller(fn.name, *call_args(spec, inputs, settings)), "(out, cache)")
        out = calling.array(fn.name, "out", out, twin_out.shape, twin_out)
        comparison = compare(out, twin_out, tolerance("exact", settings.np_dtype), "twin")
        details = {"got": out, "twin": twin_out, "context": context(spec, inputs), "arguments": arguments_text(inputs)}
        if not comparison.passed:
            details["extra_hints"] = forward_hints(spec, inputs64, out, comparison.tolerance)
        collector.add("out", "forward", Outcome("pass" if comparison.passed else "fail", {"twin": comparison}, case,
                                                shapes, details=details))
        if "running_averages" in spec.diagnoses:
            stateful.batchnorm_state_case(caller, settings, case, inputs, shapes, collector)
    except UserError as err:
        err.shapes = err.shapes or shapes  # the case it happened in, for the reproducer
        raise
    return shapes


def _gradient_case(fn, caller, settings, case, collector) -> dict:
    spec = fn.spec
    for attempt in range(settings.redraws + 1):
        rng = settings.rng(fn.name, case, attempt)
        inputs = sample(spec, rng, settings)
        shapes = input_shapes(spec, inputs)
        try:
            checked, value, own_forward = _hand_case(fn, caller, inputs, settings)
            arrays64 = [np.asarray(a, np.float64) for a in checked.arrays.values()]
            dout = 1.0 if spec.is_loss else random_upstream(rng, np.asarray(checked.twin(*arrays64)))
            twin_out, outcomes = check_case(checked, rng, settings.np_dtype, settings.mode, dout=dout,
                                               fast_threshold=settings.fast_threshold,
                                               directions=settings.directions)
        except UserError as err:
            err.shapes = err.shapes or shapes
            raise
        statuses = {o.status for o in outcomes}
        if "kink" not in statuses or "fail" in statuses or attempt == settings.redraws:
            break
    hint_context = context(spec, inputs, dout, settings.keep_prob)
    if spec.is_loss:
        loss = calling.array(fn.name, "loss", value, ())
        comparison = compare(loss, twin_out, tolerance("exact", settings.np_dtype), "twin")
        collector.add("loss", "forward", Outcome("pass" if comparison.passed else "fail", {"twin": comparison},
                                                 case, shapes, details={"got": loss, "twin": twin_out}))
    for o in outcomes:
        details = {**o.arrays, "context": hint_context, "notes": o.notes, "arguments": arguments_text(inputs)}
        if o.status == "fail":
            details["extra_hints"] = (
                backward_hints(spec, upcast(spec, inputs), dout, o.gradient, o.arrays["got"], o.vs_autograd.tolerance)
                or _own_forward_hint(fn, o, own_forward, checked, dout, value, twin_out, settings))
        collector.add(o.gradient, "gradient", Outcome(o.status, o.comparisons, case, shapes, o.mode,
                                                      redraws=attempt, details=details))
    return shapes


def _hand_case(fn, caller, inputs, settings) -> tuple[Case, object, object]:
    """The hand pass (the module's forward already run) beside the twin, at ``inputs``.

    Returns ``(checked, forward value, own forward)``: the forward's output, and a
    function of the ``wrt`` arrays running the module's forward again, for the
    hint that a backward agrees with a wrong forward.
    """
    spec = fn.spec
    inputs64 = upcast(spec, inputs)
    arrays = {a: inputs[a] for a in spec.wrt}
    result = caller(fn.forward, *call_args(spec, inputs, settings))
    if spec.is_loss:
        value, dx = calling.pair(fn.name, result, "(loss, dx)")
        if dx is None:
            raise stub(f"{fn.name} returned dx = None: the gradient is not implemented yet?")

        def hand(dout):
            return {"dx": np.asarray(calling.array(fn.name, "dx", dx, inputs["x"].shape)) * dout}
    else:
        value, cache = calling.pair(fn.forward, result, "(out, cache)")

        def hand(dout):
            return calling.gradients(fn.name, caller(fn.name, dout, cache), spec.gradient_names)

    twin = spec.twin_function(inputs64)
    if "dropout_mask" in spec.diagnoses:
        twin = _dropout_twin(fn, value, inputs)
    kinks = None
    if spec.kinks:
        def kinks(*arrays):
            return spec.kinks({**inputs64, **dict(zip(spec.wrt, arrays))})

    def own_forward(*arrays):
        args = call_args(spec, {**inputs, **dict(zip(spec.wrt, arrays))}, settings)
        return np.asarray(caller(fn.forward, *args)[0], dtype=np.float64)

    def perturbed(dout):
        rng = np.random.default_rng(0)
        moved = {**inputs, **{a: ulp(inputs[a], rng) for a in spec.wrt}}
        return _hand_case(fn, caller, moved, settings)[0].hand(dout)

    # Dropout's twin is built from the module's own mask: never shared with another submission.
    key = None if "dropout_mask" in spec.diagnoses else fingerprint(spec.name, *_static_values(spec.static(inputs64)))
    checked = Case(arrays, twin, hand, dict(zip(spec.wrt, spec.gradient_names)), kinks, perturbed=perturbed,
                      key=key, name=fn.name)
    return checked, value, own_forward


def _static_values(static: dict) -> list:
    return [value for item in sorted(static.items()) for value in item]


def _dropout_twin(fn, out, inputs):
    """Dropout's twin with the module's own mask, read off its output: ``out / x``.

    A student's mask comes from their own generator, which twingrad cannot
    replay; the backward must then be the derivative of the forward they ran.
    """
    x = np.asarray(inputs["x"], dtype=np.float64)
    out = np.asarray(calling.array(fn.forward, "out", out, x.shape), dtype=np.float64)
    mask = np.divide(out, x, out=np.zeros_like(x), where=x != 0)
    return lambda x: x * mask


def _own_forward_hint(fn, outcome, own_forward, checked, dout, value, twin_out, settings) -> list[str]:
    """'Your backward is the derivative of your (wrong) forward': central differences of the module's forward."""
    if fn.role != "backward" and fn.role != "loss":
        return []
    name = next(a for a, g in checked.gradient_names.items() if g == outcome.gradient)
    if np.asarray(checked.arrays[name]).size > 2000:
        return []  # each element costs four calls of the student's forward
    if compare(np.asarray(value, np.float64), twin_out, tolerance("exact", settings.np_dtype), "twin").passed:
        return []  # the forward is right: a backward matching it would have passed
    arrays = [np.array(a, dtype=np.float64) for a in checked.arrays.values()]
    target = list(checked.arrays).index(name)
    dout64 = np.asarray(dout, dtype=np.float64)
    try:
        (grad,), _ = numeric_vjp(lambda: (float(np.sum(own_forward(*arrays) * dout64)), None), [arrays[target]], 1e-5)
    except UserError:
        return []
    got = np.asarray(outcome.arrays["got"], dtype=np.float64)
    if compare(got, grad, tolerance("numeric", settings.np_dtype), "numeric").passed:
        if fn.role == "loss":
            return [f"{outcome.gradient} is the derivative of the loss value {fn.name} returns, but that value "
                    "is wrong: fix the loss first"]
        return [f"{fn.name} agrees with central differences of your own {fn.forward}, whose output is wrong: "
                f"fix {fn.forward} first"]
    return []
