"""Checks of a module's update rules (``optim.py``): ``sgd``, ``sgd_momentum``, ``rmsprop``, ``adam``.

Each rule, ``rule(w, dw, config) -> (next_w, config)``, is compared with
twingrad's own (:mod:`twingrad.optim`) on random weights, gradients and
state: the next weights and every piece of state it returns (``velocity``,
``cache``, ``m``, ``v``, ``t``); the defaults it fills into an empty config;
and the values the course's notebook publishes. One case in three starts
from zero state with gradients of order 1e-6, where the place of ``epsilon``
decides the step (an epsilon inside the square root moves 1e-4 instead of
0.09). A wrong step gets a hint when one of the usual mistakes reproduces it.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import optim
from ..gradcheck import Comparison, Tolerance, compare, tolerance
from . import calling
from .calling import UserError
from .results import Collector, Outcome, Record, failure_record, function_record

RULES = ("sgd", "sgd_momentum", "rmsprop", "adam")
STATE = {"sgd": (), "sgd_momentum": ("velocity",), "rmsprop": ("cache",), "adam": ("m", "v", "t")}
DEFAULTS = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
}
# The course notebook's checks (FullyConnectedNets.ipynb, 2017 on), printed there to 8 digits.
_W, _DW = np.linspace(-0.4, 0.6, num=20).reshape(4, 5), np.linspace(-0.6, 0.4, num=20).reshape(4, 5)
PUBLISHED = {
    "sgd_momentum": ({"learning_rate": 1e-3, "velocity": np.linspace(0.6, 0.9, num=20).reshape(4, 5)}, {
        "next_w": [[0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
                   [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
                   [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
                   [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096]],
        "velocity": [[0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
                     [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
                     [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
                     [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096]]}),
    "rmsprop": ({"learning_rate": 1e-2, "cache": np.linspace(0.6, 0.9, num=20).reshape(4, 5)}, {
        "next_w": [[-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
                   [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
                   [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
                   [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619]],
        "cache": [[0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
                  [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
                  [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
                  [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926]]}),
    "adam": ({"learning_rate": 1e-2, "m": np.linspace(0.6, 0.9, num=20).reshape(4, 5),
              "v": np.linspace(0.7, 0.5, num=20).reshape(4, 5), "t": 5}, {
        "next_w": [[-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
                   [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
                   [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
                   [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459]],
        "v": [[0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
              [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
              [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
              [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966]],
        "m": [[0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
              [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
              [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
              [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85]]}),
}
# Published to 8 decimals: half a unit in the last place, and a little for the rounding of the computation.
PUBLISHED_TOLERANCE = Tolerance(atol=1e-8, rtol=1e-8)


def _real(value) -> float:
    """A config value as a float, or NaN (which fails) when it is not a real number: a complex one keeps
    nothing of its imaginary part under float(), so it is refused rather than read."""
    real = (int, float, np.integer, np.floating)
    return float(value) if isinstance(value, real) and not isinstance(value, bool) else np.nan


def check_update_rule(name: str, caller, settings) -> list[Record]:
    """Every record of one update rule: next_w, each piece of state, defaults, published values."""
    if not caller.has(name):
        return [function_record(name, "missing", "not defined", settings)]
    collector = Collector(name, settings, first_input="w")
    case = None
    try:
        for case in settings.case_indices():
            _random_case(name, caller, settings, case, collector)
        _defaults_case(name, caller, settings, collector)
        if name in PUBLISHED:
            _published_case(name, caller, settings, collector)
    except UserError as err:
        return [failure_record(name, err, settings, case, {})]
    return collector.records()


def _call(name, caller, w, dw, config):
    result = caller(name, w.copy(), dw.copy(), copy.deepcopy(config))
    next_w, returned = calling.pair(name, result, "(next_w, config)")
    next_w = calling.array(name, "next_w", next_w, w.shape)
    if not isinstance(returned, dict):
        raise UserError(f"{name} returned config as {calling.describe_value(returned)}; expected the config dict")
    return next_w, returned


def _random_case(name, caller, settings, case, collector) -> None:
    rng = settings.rng(name, case)
    shape = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
    dtype = settings.np_dtype
    w = rng.normal(size=shape).astype(dtype)
    tiny = case % 3 == 2  # zero state, tiny gradients: where epsilon's place decides the step
    dw = (rng.normal(size=shape) * (1e-6 if tiny else 1.0)).astype(dtype)
    config = {"learning_rate": float(rng.choice([1e-3, 1e-2, 1e-1]))}
    if case % 3 == 1:
        config.update({"velocity": rng.normal(size=shape), "cache": rng.uniform(0.1, 1.0, size=shape),
                       "m": rng.normal(size=shape), "v": rng.uniform(0.1, 1.0, size=shape),
                       "t": int(rng.integers(1, 10))})
        config = {k: v for k, v in config.items() if k == "learning_rate" or k in STATE[name]}
        config = {k: v.astype(dtype) if isinstance(v, np.ndarray) else v for k, v in config.items()}
    elif name == "adam":
        # The starters disagree on the first step's count (2016-17: setdefault('t', 1), then t += 1; 2019 on:
        # 0): a fresh state says its t, so either default is judged on the update it makes, not on the default.
        config["t"] = 0
    expected_w, expected = getattr(optim, name)(w.astype(np.float64), dw.astype(np.float64),
                                                _float64(copy.deepcopy(config)))
    next_w, returned = _call(name, caller, w, dw, config)
    shapes = {"w": shape}
    exact = tolerance("exact", dtype)
    context = {"name": name, "w": w, "dw": dw, "config": config}
    _add(collector, "next_w", "forward", next_w, expected_w, exact, case, shapes, _step_hints(name, next_w, context, exact))
    for key in STATE[name]:
        _add_state(collector, name, key, returned, expected[key], exact, case, shapes)


def _defaults_case(name, caller, settings, collector) -> None:
    rng = settings.rng(f"{name}/defaults", 0)
    w, dw = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    result = caller(name, w.copy(), dw.copy(), None)
    next_w, returned = calling.pair(name, result, "(next_w, config)")
    calling.array(name, "next_w", next_w, w.shape)
    if not isinstance(returned, dict):
        raise UserError(f"{name}(w, dw, None) returned config as {calling.describe_value(returned)}; expected the "
                        "config dict with the defaults filled in")
    expected = DEFAULTS[name]
    got = [returned.get(key, np.nan) for key in expected]
    got = np.array([_real(g) for g in got])
    comparison = compare(got, np.array(list(expected.values())), Tolerance(atol=0.0, rtol=1e-12), "expected")
    details = {"got": got, "expected": np.array(list(expected.values()))}
    if not comparison.passed:
        wrong = [f"{key} = {returned.get(key, 'missing')!r} (expected {value:g})"
                 for key, value, g in zip(expected, expected.values(), got) if not g == value]
        details["note"] = "with config=None the defaults are: " + ", ".join(wrong)
    collector.add("defaults", "state", Outcome("pass" if comparison.passed else "fail", {"expected": comparison}, 0,
                                               {"w": w.shape}, details=details))


def _published_case(name, caller, settings, collector) -> None:
    config, published = PUBLISHED[name]
    next_w, returned = _call(name, caller, _W, _DW, config)
    shapes = {"w": _W.shape}
    note = "compared with the values the course's notebook publishes"
    for key, values in published.items():
        value = next_w if key == "next_w" else returned.get(key)
        if value is None:
            collector.add("published", "forward", _missing(key, shapes))
            continue
        got = calling.array(name, key, value, _W.shape)
        comparison = compare(got, np.asarray(values), PUBLISHED_TOLERANCE, "expected")
        collector.add("published", "forward", Outcome(
            "pass" if comparison.passed else "fail", {"expected": comparison}, 0, shapes,
            details={"got": got, "expected": np.asarray(values), "name": key, "note": note}))


def _add(collector, gradient, kind, got, expected, tol, case, shapes, hints=()) -> None:
    comparison = compare(got, np.asarray(expected, np.float64), tol, "expected")
    collector.add(gradient, kind, Outcome("pass" if comparison.passed else "fail", {"expected": comparison}, case,
                                          shapes, details={"got": got, "expected": expected,
                                                           "extra_hints": list(hints)}))


def _add_state(collector, name, key, returned, expected, tol, case, shapes) -> None:
    if key not in returned:
        outcome = _missing(key, shapes, case)
        outcome.details["note"] = f"the returned config has no {key!r}: store the new {key} in config"
        collector.add(key, "state", outcome)
        return
    value = returned[key]
    if key == "t":
        got = np.array([_real(value)])
        hints = [] if got[0] == expected else ["t is not increased by one per step"] if got[0] == expected - 1 else []
        _add(collector, key, "state", got, np.array([float(expected)]), Tolerance(atol=0.5, rtol=0.0), case, shapes,
             hints)  # a step count: off by one or more is wrong
        return
    got = calling.array(name, f"config[{key!r}]", value, np.shape(expected))
    _add(collector, key, "state", got, expected, tol, case, shapes)


def _missing(key, shapes, case: int = 0) -> Outcome:
    tol = Tolerance(0.0, 0.0)
    return Outcome("fail", {"expected": Comparison("expected", float("inf"), 1.0, (), float("nan"), float("nan"),
                                                   tol, False)}, case, shapes, details={"name": key})


def _float64(config: dict) -> dict:
    return {k: v.astype(np.float64) if isinstance(v, np.ndarray) else v for k, v in config.items()}


def _step_hints(name, got, context, tol) -> list[str]:
    """The usual mistakes, each computed and kept only when it reproduces ``got``."""
    w, dw = context["w"].astype(np.float64), context["dw"].astype(np.float64)
    config = {**DEFAULTS[name], **_float64(context["config"])}
    lr, zeros = config["learning_rate"], np.zeros_like(w)
    candidates = []
    if name == "sgd_momentum":
        v0, mu = config.get("velocity", zeros), config["momentum"]
        candidates += [(w - (mu * v0 + lr * dw), "the velocity's sign: v = mu * v - lr * dw, then w + v"),
                       (w + mu * v0 - lr * dw, "the step uses the old velocity: update v first, then w + v")]
    if name == "rmsprop":
        rho, eps = config["decay_rate"], config["epsilon"]
        cache = rho * config.get("cache", zeros) + (1 - rho) * dw**2
        candidates += [(w - lr * dw / np.sqrt(cache + eps), "epsilon is inside the square root: "
                                                            "dw / (sqrt(cache) + eps)")]
    if name == "adam":
        b1, b2, eps, t = config["beta1"], config["beta2"], config["epsilon"], config.get("t", 0)
        m = b1 * config.get("m", zeros) + (1 - b1) * dw
        v = b2 * config.get("v", zeros) + (1 - b2) * dw**2
        candidates += [(w - lr * m / (np.sqrt(v) + eps), "the bias correction (m / (1 - beta1**t), "
                                                         "v / (1 - beta2**t)) is missing"),
                       (w - lr * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1)) + eps)),
                        "epsilon is inside the square root: m_hat / (sqrt(v_hat) + eps)")]
        if t > 0:
            candidates += [(w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps),
                            "the bias correction uses the old t: increase t first (the first step has t = 1), "
                            "and store it back in config")]
    got = np.asarray(got, np.float64)
    return [text for model, text in candidates if tol.fits(got, model)][:1]
