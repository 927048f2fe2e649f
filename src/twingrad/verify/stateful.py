"""Checks beyond the forward value: batch norm's running averages and test mode,
dropout's mask values, keep fraction, test mode and seed.

These have no twin to differentiate: their reference is the definition
(``running = momentum * running + (1 - momentum) * batch``; a kept unit is
scaled by ``1 / keep probability``; ...), and a failure gets a hint only
when one of the usual mistakes reproduces what the module did.
"""

from __future__ import annotations


import numpy as np

from .. import functional as F
from ..gradcheck import Comparison, Tolerance, compare, tolerance
from . import calling
from .results import Outcome, arguments_text

# The keep-fraction check draws this many units: 6 standard deviations of the
# binomial fraction are then below 0.01, tight enough to tell p from 1 - p.
DROPOUT_FORWARD = "dropout_forward"  #: the course's name of the function whose convention is detected
_DROPOUT_SHAPE = (200, 500)
_DROPOUT_PROBS = (0.25, 0.5, 0.75)


def _outcome(name_to_comparison: dict, case: int, shapes: dict, details: dict | None = None) -> Outcome:
    passed = all(c.passed for c in name_to_comparison.values())
    return Outcome("pass" if passed else "fail", name_to_comparison, case, shapes, details=details or {})


def _missing_value(tol: Tolerance) -> Comparison:
    """A comparison that failed because there was nothing to compare."""
    return Comparison("expected", float("inf"), 1.0, (), float("nan"), float("nan"), tol, False)


# -- batch norm ------------------------------------------------------------------------


def batchnorm_state_case(caller, settings, case, inputs, shapes, collector) -> None:
    """Running averages after one train step, and the test-mode output from given running averages."""
    rng = settings.rng("batchnorm_forward/state", case)
    dtype = settings.np_dtype
    exact = tolerance("exact", dtype)
    x, gamma, beta = inputs["x"], inputs["gamma"], inputs["beta"]
    num_features = x.shape[1]
    # Even cases: CS231n's defaults (no running averages yet, momentum 0.9); odd: given ones.
    if case % 2 == 0:
        momentum, mean0, var0 = 0.9, np.zeros(num_features), np.zeros(num_features)
        bn_param = {"mode": "train"}
    else:
        momentum = 0.7
        mean0 = rng.normal(size=num_features).astype(dtype)
        var0 = rng.uniform(0.5, 2.0, size=num_features).astype(dtype)
        bn_param = {"mode": "train", "eps": 1e-5, "momentum": momentum,
                    "running_mean": mean0.copy(), "running_var": var0.copy()}
    caller("batchnorm_forward", x.copy(), gamma.copy(), beta.copy(), bn_param)
    x64 = x.astype(np.float64)
    batch = {"running_mean": x64.mean(axis=0), "running_var": x64.var(axis=0)}
    start = {"running_mean": mean0.astype(np.float64), "running_var": var0.astype(np.float64)}
    for key in ("running_mean", "running_var"):
        expected = momentum * start[key] + (1 - momentum) * batch[key]
        got = bn_param.get(key)
        if got is None:
            note = (f"bn_param has no {key!r} after a train-mode call: store the updated running averages "
                    "back into bn_param")
            collector.add(key, "state", _outcome({"expected": _missing_value(exact)}, case, shapes, {"note": note}))
            continue
        notes: list = []
        got = calling.array("batchnorm_forward", f"bn_param[{key!r}]", got, (num_features,), expected, notes)
        comparison = compare(got, expected, exact, "expected")
        hints = [] if comparison.passed else _running_hints(key, got, momentum, start[key], batch[key], x64, exact)
        collector.add(key, "state", _outcome({"expected": comparison}, case, shapes,
                                             {"got": got, "expected": expected, "extra_hints": hints, "notes": notes}))

    running_mean = rng.normal(size=num_features).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, size=num_features).astype(dtype)
    bn_param = {"mode": "test", "eps": 1e-5, "momentum": 0.9,
                "running_mean": running_mean.copy(), "running_var": running_var.copy()}
    result = caller("batchnorm_forward", x.copy(), gamma.copy(), beta.copy(), bn_param)
    out, _ = calling.pair("batchnorm_forward", result, "(out, cache)")
    expected = np.asarray(F.batchnorm(x64, gamma.astype(np.float64), beta.astype(np.float64), 1e-5,
                                      running_mean.astype(np.float64), running_var.astype(np.float64)))
    out = calling.array("batchnorm_forward", "out (test mode)", out, expected.shape, expected)
    comparison = compare(out, expected, exact, "twin")
    details = {"got": out, "twin": expected}
    changed = [key for key, before in (("running_mean", running_mean), ("running_var", running_var))
               if not _unchanged(bn_param.get(key), before)]
    if changed:
        comparison.passed = False
        details["note"] = f"test mode changed bn_param[{changed[0]!r}]: the running averages only change in train mode"
    elif not comparison.passed and np.allclose(out, F.batchnorm(x64, gamma, beta, 1e-5), rtol=1e-7, atol=1e-10):
        details["extra_hints"] = ["test mode normalizes with the batch statistics: it should use "
                                  "bn_param['running_mean'] and bn_param['running_var']"]
    collector.add("out_test", "forward", _outcome({"twin": comparison}, case, shapes, details))


def _unchanged(value, before: np.ndarray) -> bool:
    """Whether the submission left ``value`` equal to ``before`` (a ragged list or an odd object is a change)."""
    try:
        return bool(np.array_equal(np.asarray(value, dtype=np.float64), before))
    except (TypeError, ValueError):
        return False


def _running_hints(key, got, momentum, start, batch, x64, tol) -> list[str]:
    """The usual mistakes in a running average, tried one by one."""
    candidates = [((1 - momentum) * start + momentum * batch, "momentum and 1 - momentum are swapped")]
    if key == "running_var":
        candidates += [(momentum * start + (1 - momentum) * x64.var(axis=0, ddof=1),
                        "the unbiased variance (ddof=1) is used; batch norm's running variance uses the "
                        "biased one (np.var's default)"),
                       (momentum * start + (1 - momentum) * x64.std(axis=0),
                        "the standard deviation is averaged, not the variance")]
    candidates += [(start, "the running average is not updated (or not stored back into bn_param)"),
                   (batch, "the running average is overwritten by the batch value instead of averaged")]
    return [text for model, text in candidates if tol.fits(got, model)][:1]


# -- dropout ----------------------------------------------------------------------------


def _user_param(settings, p_drop: float, **extra) -> dict:
    p = 1.0 - p_drop if settings.keep_prob else p_drop
    return {"p": p, **extra}


def _p_name(settings) -> str:
    return "p" if settings.keep_prob else "1 - p"


def dropout_forward_case(caller, settings, case, inputs, shapes, collector) -> None:
    """Mask values, keep fraction, test mode and seed of the module's dropout_forward."""
    dtype = settings.np_dtype
    exact = tolerance("exact", dtype)
    x = inputs["x"]
    param = inputs["dropout_param"]
    p_drop, seed = float(param["p"]), param["seed"]
    keep = 1.0 - p_drop

    # Values: every unit is 0 or x / keep.
    result = caller("dropout_forward", x.copy(), _user_param(settings, p_drop, mode="train", seed=seed))
    out, _ = calling.pair("dropout_forward", result, "(out, cache)")
    out = calling.array("dropout_forward", "out", out, x.shape)
    x64, out64 = x.astype(np.float64), out.astype(np.float64)
    kept_value = x64 / keep
    expected = np.where(np.abs(out64 - kept_value) < np.abs(out64), kept_value, 0.0)
    comparison = compare(out, expected, exact, "expected")
    details = {"got": out, "expected": expected,
               "arguments": arguments_text({"dropout_param": _user_param(settings, p_drop, mode="train")})}
    if not comparison.passed:
        details["extra_hints"] = _scale_hints(out64, x64, p_drop, settings)
    collector.add("out", "forward", _outcome({"expected": comparison}, case, shapes, details))

    # Keep fraction over many units, one of three drop probabilities per case.
    p_stat = _DROPOUT_PROBS[case % len(_DROPOUT_PROBS)]
    ones = np.ones(_DROPOUT_SHAPE, dtype)
    result = caller("dropout_forward", ones.copy(), _user_param(settings, p_stat, mode="train", seed=seed))
    out, _ = calling.pair("dropout_forward", result, "(out, cache)")
    out = calling.array("dropout_forward", "out", out, ones.shape)
    fraction = float(np.mean(out != 0))
    sigma = np.sqrt(p_stat * (1 - p_stat) / ones.size)
    comparison = compare(np.array([fraction]), np.array([1.0 - p_stat]), Tolerance(atol=6 * sigma, rtol=0.0),
                         "expected")
    details = {"got": np.array([fraction]), "expected": np.array([1.0 - p_stat])}
    if not comparison.passed:
        given = _user_param(settings, p_stat)["p"]
        if abs(fraction - p_stat) <= 6 * sigma:
            meant, other = ("drop", "keep") if settings.keep_prob else ("keep", "drop")
            details["extra_hints"] = [
                f"given p = {given:g}, your code kept {fraction:.3f} of the units: it treats p as the {meant} "
                f"probability, and it is checked as the {other} probability (--dropout-convention {other}); "
                f"--dropout-convention {meant}, or auto, checks it the other way"]
        else:
            details["extra_hints"] = [f"given p = {given:g}, your code kept {fraction:.3f} of the units; expected "
                                      f"{1 - p_stat:g} ({_p_name(settings)})"]
    stat_shapes = {"x": _DROPOUT_SHAPE}
    collector.add("keep_fraction", "statistics", _outcome({"expected": comparison}, case, stat_shapes, details))

    # Test mode is the identity.
    result = caller("dropout_forward", x.copy(), _user_param(settings, p_drop, mode="test", seed=seed))
    out, _ = calling.pair("dropout_forward", result, "(out, cache)")
    out = calling.array("dropout_forward", "out (test mode)", out, x.shape)
    comparison = compare(out, x64, exact, "expected")
    collector.add("out_test", "forward", _outcome({"expected": comparison}, case, shapes,
                                                  {"got": out, "expected": x64}))

    # The same seed gives the same mask, whatever the global random state in between.
    outs, state = [], np.random.get_state()
    try:
        for disturbance in (1, 2):
            caller.seed_global(disturbance)  # a student's np.random.seed(seed) must override this
            result = caller("dropout_forward", x.copy(), _user_param(settings, p_drop, mode="train", seed=seed))
            outs.append(calling.array("dropout_forward", "out", calling.pair("dropout_forward", result,
                                                                              "(out, cache)")[0], x.shape))
    finally:
        np.random.set_state(state)  # the caller's global random state is theirs
    # NaN where both calls gave NaN is the same mask (a dropout fed p = 0 in its keep convention)
    both_nan = np.isnan(np.asarray(outs[0], np.float64)) & np.isnan(np.asarray(outs[1], np.float64))
    comparison = compare(np.where(both_nan, 0.0, outs[1]), np.where(both_nan, 0.0, outs[0]), exact, "expected")
    details = {"got": outs[1], "expected": outs[0]}
    if not comparison.passed:
        details["note"] = ("two calls with the same dropout_param['seed'] gave different masks: draw the mask "
                           "from a generator seeded with it (np.random.default_rng(seed))")
    elif p_drop > 0:  # ... and another seed another mask: 256 units, alike by chance with P < 1e-40
        probe = np.ones((16, 16), dtype)
        masks = [calling.array("dropout_forward", "out", calling.pair("dropout_forward", caller(
                     "dropout_forward", probe.copy(), _user_param(settings, p_drop, mode="train", seed=s)),
                     "(out, cache)")[0], probe.shape) != 0 for s in (seed, seed + 1)]
        if np.array_equal(*masks):
            comparison.passed = False
            details["note"] = ("dropout_param['seed'] and dropout_param['seed'] + 1 gave the same mask: the mask "
                               "must be drawn at random from a generator seeded with the seed")
    collector.add("seed", "statistics", _outcome({"expected": comparison}, case, shapes, details))


def detect_dropout_convention(caller) -> tuple[str | None, str]:
    """Which convention a module's dropout_forward follows, read off its behaviour.

    It is called with ``p = 0.3`` on 100 000 units: a module that treats p as
    the drop probability keeps about 70% of them, one that treats it as the
    keep probability about 30% (6 standard deviations are 0.009). Returns the
    convention ("drop", "keep", or None for neither or no answer) and a sentence
    that says what was seen.
    """
    p = 0.3
    try:
        result = caller("dropout_forward", np.ones(_DROPOUT_SHAPE), {"p": p, "mode": "train", "seed": 271828})
        out, _ = calling.pair("dropout_forward", result, "(out, cache)")
        out = calling.array("dropout_forward", "out", out, _DROPOUT_SHAPE)
    except calling.UserError as exc:
        return None, f"dropout_forward could not be probed ({exc})"
    fraction = float(np.mean(out != 0))
    seen = f"given p = {p}, dropout_forward kept {fraction:.3f} of the units"
    if abs(fraction - (1 - p)) < 0.03:
        return "drop", seen
    if abs(fraction - p) < 0.03:
        return "keep", seen
    return None, f"{seen}: neither {1 - p:g} (p drops) nor {p:g} (p keeps)"


def _scale_hints(out, x, p_drop, settings) -> list[str]:
    """What the kept units were multiplied by, when it is one constant but the wrong one."""
    kept = (out != 0) & (x != 0)
    if not kept.any():
        return ["every unit was dropped"] if p_drop < 1 else []
    ratios = out[kept] / x[kept]
    c = float(np.median(ratios))
    if not np.allclose(ratios, c, rtol=1e-6, atol=0):
        return []
    keep, name = 1.0 - p_drop, _p_name(settings)
    if np.isclose(c, 1.0):
        return [f"kept units are not scaled: inverted dropout multiplies them by 1/({name}) = {1 / keep:.4g}"]
    if p_drop > 0 and np.isclose(c, 1.0 / p_drop):
        given = _user_param(settings, p_drop)["p"]
        other = "drop" if settings.keep_prob else "keep"
        formula = "1/(1 - p)" if settings.keep_prob else "1/p"  # 1/p_drop, said with the p the code was given
        return [f"kept units are scaled by {c:.4g} = {formula} with p = {given:g} given: p is used as the "
                f"{other} probability (--dropout-convention {other} checks it that way)"]
    if np.isclose(c, keep):
        return [f"kept units are multiplied by {name} = {keep:.4g} instead of divided by it"]
    return [f"kept units are scaled by {c:.4g}; inverted dropout scales them by 1/({name}) = {1 / keep:.4g}"]
