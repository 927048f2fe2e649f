"""A student's FullyConnectedNet with dropout on: its masks rebuilt with its own dropout_forward.

A student's masks come from their own ``dropout_forward`` and generator. With
a seed they are fixed, and the judge rebuilds them by calling the
submission's ``dropout_forward`` on positive values of each hidden layer's shape with
the net's own ``dropout_param``, in the two ways a net draws them: the
course's (every call reseeds from ``dropout_param['seed']``) and one stream
seeded once per loss, layer after layer. The twin with the masks that give
the net's loss is the loss it must compute, and its gradients are checked
three ways like any other configuration's (autograd, and central differences
of that twin along random directions).

- the loss must be the same twice, and that of one of those layouts (a net
  that never drops, drops the scores too, or mixes up its layers' caches is
  not); where neither fits, or the masks cannot be rebuilt, the loss fails
  with what was compared, and the gradients are still compared with central
  differences of the net's own loss (a net that draws its masks some third
  way is told so, not that its gradients are wrong);
- test-mode scores must be the twin's without dropout.

Float64 whatever ``--dtype`` says; at most :data:`CASES` cases, each with two
hidden layers of different widths (so that one layer's mask or cache cannot
stand in for another's). Each record carries ``configuration = "dropout"``.
"""

from __future__ import annotations

import autograd.numpy as anp
import numpy as np

from .. import functional as F
from ..fc_net import twin_forward, twin_loss
from ..gradcheck import STEPS, Comparison, compare, compare_projection, tolerance
from . import calling
from .calling import UserError
from .engine import Case, check_case
from .architecture import Architecture
from .network import FUNCTION, Builder, _param_names
from .results import Collector, Outcome, Record, failure_record, function_record

KEEP = 0.75  #: the fraction of units kept, in whichever convention the class takes it
DIRECTIONS = 1  #: random directions per parameter and case
CASES = 2  #: at most: each costs about a dozen round trips to a runner
CONFIGURATION = "dropout"
_OWN_LOSS = "central differences of the net's own loss (its masks fixed by the seed)"


def check_student_dropout(caller, settings) -> list[Record]:
    """The records of a student's FullyConnectedNet with dropout on, one per checked quantity."""
    builder = Builder(caller, settings.keep_prob, keep=KEEP)
    takes = builder.parameters
    if "seed" not in takes or not {"dropout", "dropout_keep_ratio"} & takes:
        missing = "a seed" if "seed" not in takes else "a dropout argument"
        records = [function_record(FUNCTION, "missing", f"dropout is not supported: FullyConnectedNet takes no "
                                   f"{missing}, so its masks cannot be fixed for a gradient check", settings)]
    else:
        records = _check(builder, settings)
    for record in records:
        record.configuration = CONFIGURATION
    return records


def _check(builder: Builder, settings) -> list[Record]:
    collector = Collector(FUNCTION, settings, first_input="X")
    case = None
    try:
        for case in settings.case_indices()[:CASES]:
            _case(builder, settings, case, collector)
    except UserError as err:
        return [failure_record(FUNCTION, err, settings, case, {})]
    return collector.records()


def _architecture(rng: np.random.Generator) -> Architecture:
    # Two hidden layers of different widths; 8 samples x 6+ units a layer, so that keeping every unit by
    # chance has a probability below 1e-6.
    first = int(rng.integers(6, 9))
    return Architecture(input_dim=int(rng.integers(3, 6)), hidden_dims=(first, first + int(rng.integers(1, 3))),
                        num_classes=int(rng.integers(2, 5)), reg=float(rng.choice([0.0, 0.1])), batch=8)


def _case(builder: Builder, settings, case: int, collector: Collector) -> None:
    rng = settings.rng(f"{FUNCTION}/{CONFIGURATION}", case)
    arch = _architecture(rng)
    net, X, y = builder(arch, rng, np.float64)
    names = _param_names(arch)
    params = {n: np.array(net.params[n], dtype=np.float64) for n in names}
    shapes, where = {"X": X.shape}, f"architecture {arch}, keeping {KEEP:g} of the units"

    param = net.caller.get(FUNCTION, net.model, "dropout_param")  # before loss runs: a seed may drift
    loss, grads = calling.pair(FUNCTION, net.loss(X, y), "(loss, grads)")
    again, _ = calling.pair(FUNCTION, net.loss(X, y), "(loss, grads)")
    loss, again = calling.array(FUNCTION, "loss", loss, ()), calling.array(FUNCTION, "loss", again, ())
    if not isinstance(grads, dict):
        raise UserError(f"FullyConnectedNet.loss returned grads as {calling.describe_value(grads)}; expected a dict")
    for name in names:
        if grads.get(name) is None:
            raise UserError(f"{FUNCTION}: grads has no {name!r} (with dropout on, {where})")
    candidates, why = _candidate_masks(net.caller, param, params, X, arch)
    status, comparison, details, masks = _judge_loss(loss, again, candidates, why, params, X, y, arch)
    collector.add("loss", "forward", Outcome(status, {"expected": comparison}, case, shapes,
                                             details={**details, "note": where}))
    twin = _masked_twin(names, X, y, masks, arch.reg) if masks is not None else None

    scores = calling.array(FUNCTION, "scores (test mode)", net.scores(X), (arch.batch, arch.num_classes))
    twin_scores, _ = twin_forward(params, X, normalization=None, dropout=0.0, seed=None, eps=1e-5)
    test_mode = compare(scores, twin_scores, tolerance("exact", np.float64), "twin")
    collector.add("scores_test", "forward", Outcome(
        "pass" if test_mode.passed else "fail", {"twin": test_mode}, case, shapes,
        details={"got": scores, "twin": np.asarray(twin_scores), "note": f"test mode, where dropout is off ({where})"}))

    if twin is not None:
        _three_ways(grads, params, twin, masks, X, rng, case, shapes, where, collector)
        return
    if not compare(again, loss, tolerance("exact", np.float64), "expected").passed:
        return  # a loss that changes from call to call has no derivative to compare with: the loss row says so
    for name in names:  # no twin: the derivative of its own loss, at least
        got = calling.array(FUNCTION, f"grads[{name!r}]", grads[name], params[name].shape)
        comparison = _own_loss_projections(net, X, y, params, name, got, rng)
        collector.add(name.rstrip("0123456789"), "gradient", Outcome(
            "pass" if comparison.passed else "fail", {"numeric": comparison}, case, shapes, "fast",
            details={"got": got, "name": name, "note": where, "reference_text": _OWN_LOSS}))


def _judge_loss(loss, again, candidates: dict, why: str, params: dict, X, y, arch):
    """The loss's status, comparison and diagnosis details, and the masks it was found to use (or None).

    It must be the same twice, and the twin's with the masks of one of the layouts in ``candidates``.
    """
    exact = tolerance("exact", np.float64)
    details = {"got": loss, "reference_text": "the twin with the masks its own dropout_forward draws"}
    if not compare(again, loss, exact, "expected").passed:
        details["finding"] = (f"  two calls of loss with the same seed gave {float(loss):.7g} and {float(again):.7g}: "
                              "the dropout masks must come from dropout_param['seed']")
        return "fail", Comparison("expected", 0.0, 0.0, (), float(again), float(loss), exact, False), details, None
    if not candidates:
        details["finding"] = f"  its masks cannot be rebuilt: {why}"
        return "fail", Comparison("expected", 0.0, 0.0, (), float(loss), float(loss), exact, False), details, None
    names = list(params)
    tried = {}
    for layout, masks in candidates.items():
        tried[layout] = float(_masked_twin(names, X, y, masks, arch.reg)(*params.values()))
        comparison = compare(loss, tried[layout], exact, "expected")
        if comparison.passed:
            details["expected"] = np.float64(tried[layout])
            kept = np.concatenate([m[m != 0] for m in masks])
            if not np.allclose(kept, 1 / KEEP, rtol=1e-6, atol=0):  # the rate asked, and inverted scaling
                details["finding"] = (f"  its masks scale the units they keep by {np.median(kept):.4g}; asked to keep "
                                      f"{KEEP:g} of the units, inverted dropout scales them by 1/{KEEP:g} = "
                                      f"{1 / KEEP:.4g} (is p stored, or scaled, as the other convention?)")
                wrong = Comparison("expected", 0.0, 0.0, (), float(np.median(kept)) * KEEP, 1.0, exact, False)
                return "fail", wrong, details, masks
            return "pass", comparison, details, masks
    nearest = min(tried, key=lambda k: abs(tried[k] - float(loss)))
    details["expected"] = np.float64(tried[nearest])
    details["finding"] = (f"  the train-mode loss is {float(loss):.7g}; with the masks its dropout_forward draws from "
                          f"the net's dropout_param it would be "
                          + " or ".join(f"{value:.7g} ({layout})" for layout, value in tried.items())
                          + _without_dropout(loss, params, X, y, arch)
                          + "; its gradients were compared with central differences of its own loss")
    return "fail", compare(loss, tried[nearest], exact, "expected"), details, None


def _candidate_masks(caller, param, params: dict, X, arch: Architecture) -> tuple[dict, str]:
    """The hidden layers' scaled masks under each way a net may draw them, rebuilt with the submission's own
    dropout_forward; ``({}, why)`` when they cannot be.

    Each layer's dropout_forward is given exactly what the net gives it, if the net is right: the ReLU
    output of the layer, computed by the twin from the masks before it. A dropout_forward therefore cannot
    tell the judge's call from the net's by its input. "reseeded per layer": the course's layout, every
    call passes the net's dropout_param and reseeds from its seed. "one stream": the net seeds once per
    loss and draws layer after layer from that stream.
    """
    if not isinstance(param, dict) or "seed" not in param:
        return {}, "the net has no dropout_param holding a seed (the course keeps it in self.dropout_param)"
    if not caller.has("dropout_forward"):
        return {}, "the module defines no dropout_forward"
    seed = param["seed"]
    state = np.random.get_state()  # an in-process caller seeds this process's generator: give it back
    try:
        layouts = {"reseeded per layer": _layer_masks(caller, param, params, X, arch)}
        if type(seed) is int and 0 <= seed < 2**32:  # np.random.seed's range; the value is the submission's
            caller.seed_global(seed)
            unseeded = {k: v for k, v in param.items() if k != "seed"}
            layouts["one stream"] = _layer_masks(caller, unseeded, params, X, arch)
    except UserError as err:
        return {}, f"its dropout_forward fails on a layer's values: {err.message}"
    finally:
        np.random.set_state(state)
    # A layout that drops no active unit cannot tell a net with dropout from one without (0.75 kept of
    # 48+ units: all kept by chance has a probability below 1e-6).
    dropping = {layout: masks for layout, masks in layouts.items() if all(dropped for _, dropped in masks)}
    found = {layout: [mask for mask, _ in masks] for layout, masks in dropping.items()}
    return found, "" if found else "its dropout_forward, given the net's dropout_param, drops no active unit"


def _layer_masks(caller, param: dict, params: dict, X, arch: Architecture) -> list:
    """``(mask, dropped)`` per hidden layer: the scaled mask (dropout_forward's output over its input where
    that is positive, 0 elsewhere, where any mask gives 0), and whether it dropped an active unit."""
    h, masks = np.asarray(X, np.float64), []
    for i in range(1, len(arch.hidden_dims) + 1):
        h = np.maximum(h @ params[f"W{i}"] + params[f"b{i}"], 0)
        result = caller("dropout_forward", h.copy(), {**param, "mode": "train"})
        out, _ = calling.pair("dropout_forward", result, "(out, cache)")
        out = np.asarray(calling.array("dropout_forward", "out", out, h.shape), np.float64)
        active = h > 0
        mask = np.divide(out, h, out=np.zeros_like(h), where=active)
        masks.append((mask, bool(np.any(active & (mask == 0)))))
        h = h * mask
    return masks


def _masked_twin(names: list, X, y, masks: list, reg: float):
    """The net's loss as a pure function of its parameters, each hidden layer's ReLU output times its mask."""
    X64 = np.asarray(X, np.float64)

    def loss(*arrays):
        p = dict(zip(names, arrays))
        last = len(masks) + 1
        h = X64
        for i, mask in enumerate(masks, start=1):
            h = F.relu(F.affine(h, p[f"W{i}"], p[f"b{i}"])) * mask
        scores = F.affine(h, p[f"W{last}"], p[f"b{last}"])
        return F.softmax_loss(scores, y) + 0.5 * reg * sum(anp.sum(p[f"W{i}"] ** 2) for i in range(1, last + 1))

    return loss


def _three_ways(grads, params, twin, masks, X, rng, case, shapes, where, collector) -> None:
    names = list(params)
    X64 = np.asarray(X, np.float64)

    def kinks(*arrays):
        p, h, found = dict(zip(names, arrays)), X64, []
        for i, mask in enumerate(masks, start=1):
            a = F.affine(h, p[f"W{i}"], p[f"b{i}"])
            found.append(np.ravel(a))
            h = np.maximum(a, 0) * mask
        return np.concatenate(found)

    def hand(dout):
        return calling.scaled(grads, dout)

    checked = Case(dict(params), twin, hand, {n: n for n in names}, kinks, name=FUNCTION)
    # projections: autograd is the exact reference here, central differences the third opinion
    _, outcomes = check_case(checked, rng, np.float64, "fast", dout=1.0)
    for o in outcomes:
        details = {**o.arrays, "name": o.gradient, "note": where, "context": {"N": X64.shape[0]}, "notes": o.notes}
        collector.add(o.gradient.rstrip("0123456789"), "gradient", Outcome(o.status, o.comparisons, case, shapes,
                                                                           o.mode, details=details))


def _without_dropout(loss, params, X, y, arch) -> str:
    plain = twin_loss(params, X, y, normalization=None, dropout=0.0, seed=None, reg=arch.reg, eps=1e-5)
    if compare(loss, plain, tolerance("exact", np.float64), "twin").passed:
        return ", and without dropout it is the same: no unit was dropped"
    return ""


def _own_loss_projections(net, X, y, params: dict, name: str, got: np.ndarray, rng) -> Comparison:
    """``<got, u>`` against the derivative of the net's own loss along random directions ``u`` of ``name``.

    Two-point central differences: each evaluation is two round trips to a
    runner (set the parameter, call the loss), and in float64 with h = 1e-5
    their truncation error (~1e-10 relative) is far inside the tolerance.
    """
    h, tol = STEPS[np.dtype(np.float64)], tolerance("numeric", np.float64)

    def loss_at(value: np.ndarray) -> float:
        net.set_params({name: value})
        return float(calling.array(FUNCTION, "loss", calling.pair(FUNCTION, net.loss(X, y), "(loss, grads)")[0], ()))

    worst = None
    try:
        for k in range(DIRECTIONS):
            u = rng.normal(size=params[name].shape)
            numeric = (loss_at(params[name] + h * u) - loss_at(params[name] - h * u)) / (2 * h)
            actual = float(np.sum(got * u))
            excess, _ = compare_projection(actual, numeric, got, u, tol)
            if worst is None or excess > worst[0]:
                worst = (excess, k, numeric, actual)
    finally:
        net.set_params({name: params[name]})
    excess, k, numeric, actual = worst
    error = abs(actual - numeric)
    scale = abs(actual) + abs(numeric)
    return Comparison("numeric", error, error / scale if scale else 0.0, (k,), numeric, actual, tol, excess <= 1.0)
