"""A student's FullyConnectedNet with dropout on: what can be checked without a twin.

A student's masks come from their own ``dropout_forward`` and generator,
which twingrad cannot replay, so the net has no twin in train mode. What the
course's own notebook relies on can still be checked, strictly:

- with ``seed``, the masks are fixed: the loss is the same twice;
- dropout is applied in train mode (the loss differs from the same weights'
  loss without dropout) and never in test mode (the scores are the twin's
  without dropout);
- the gradients are the derivatives of the net's own loss: central
  differences along a random direction per parameter and case, in float64
  whatever ``--dtype`` says (differences of a float32 loss are mostly noise).

Each record carries ``configuration = "dropout"``.
"""

from __future__ import annotations

import numpy as np

from ..fc_net import twin_forward, twin_loss
from ..gradcheck import STEPS, Comparison, compare, compare_projection, tolerance
from . import calling
from .calling import UserError
from .network import FUNCTION, Architecture, Builder, _param_names
from .results import Collector, Outcome, Record, failure_record, function_record

KEEP = 0.75  #: the fraction of units kept, in whichever convention the class takes it
DIRECTIONS = 1  #: random directions per parameter and case
CASES = 3  #: at most: each costs about 25 round trips to a runner
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
    # Wide enough (8 samples x 6+ units a layer) that keeping every unit by chance is below 1e-6.
    depth = int(rng.integers(1, 3))
    return Architecture(input_dim=int(rng.integers(3, 6)), hidden_dims=tuple(int(h) for h in rng.integers(6, 9, depth)),
                        num_classes=int(rng.integers(2, 5)), reg=float(rng.choice([0.0, 0.1])), batch=8)


def _case(builder: Builder, settings, case: int, collector: Collector) -> None:
    rng = settings.rng(f"{FUNCTION}/{CONFIGURATION}", case)
    arch = _architecture(rng)
    net, X, y = builder(arch, rng, np.float64)
    names = _param_names(arch)
    params = {n: np.array(net.params[n], dtype=np.float64) for n in names}
    shapes, where = {"X": X.shape}, f"architecture {arch}, keeping {KEEP:g} of the units"
    exact = tolerance("exact", np.float64)

    loss, grads = calling.pair(FUNCTION, net.loss(X, y), "(loss, grads)")
    again, _ = calling.pair(FUNCTION, net.loss(X, y), "(loss, grads)")
    loss, again = calling.array(FUNCTION, "loss", loss, ()), calling.array(FUNCTION, "loss", again, ())
    if not isinstance(grads, dict):
        raise UserError(f"FullyConnectedNet.loss returned grads as {calling.describe_value(grads)}; expected a dict")
    no_dropout = twin_loss(params, X, y, normalization=None, dropout=0.0, seed=None, reg=arch.reg, eps=1e-5)
    same = compare(again, loss, exact, "expected")
    details = {"got": loss, "expected": again, "note": where,
               "reference_text": "the same call again, and the same weights without dropout"}
    if not same.passed:
        details["finding"] = (f"  two calls of loss with the same seed gave {float(loss):.7g} and {float(again):.7g}: "
                              "the dropout masks must come from dropout_param['seed']")
    elif compare(loss, no_dropout, exact, "twin").passed:
        same = Comparison("expected", 0.0, 0.0, (), float(no_dropout), float(loss), exact, False)
        details["finding"] = (f"  with dropout on, the train-mode loss ({float(loss):.7g}) equals the loss without "
                              "dropout: no unit was dropped")
    collector.add("loss", "forward", Outcome("pass" if same.passed else "fail", {"expected": same}, case, shapes,
                                             details=details))

    scores = calling.array(FUNCTION, "scores (test mode)", net.scores(X), (arch.batch, arch.num_classes))
    twin_scores, _ = twin_forward(params, X, normalization=None, dropout=0.0, seed=None, eps=1e-5)
    test_mode = compare(scores, twin_scores, exact, "twin")
    collector.add("scores_test", "forward", Outcome(
        "pass" if test_mode.passed else "fail", {"twin": test_mode}, case, shapes,
        details={"got": scores, "twin": np.asarray(twin_scores), "note": f"test mode, where dropout is off ({where})"}))

    for name in names:
        if grads.get(name) is None:
            raise UserError(f"{FUNCTION}: grads has no {name!r} (with dropout on, {where})")
        got = calling.array(FUNCTION, f"grads[{name!r}]", grads[name], params[name].shape)
        comparison = _own_loss_projections(net, X, y, params, name, got, rng)
        collector.add(name.rstrip("0123456789"), "gradient", Outcome(
            "pass" if comparison.passed else "fail", {"numeric": comparison}, case, shapes, "fast",
            details={"got": got, "name": name, "note": where, "reference_text": _OWN_LOSS}))


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
