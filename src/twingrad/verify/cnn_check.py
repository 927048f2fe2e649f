"""A student's ThreeLayerConvNet (``classifiers/cnn.py``): ``loss(X, y)``'s gradients three ways.

The net is built with the course's keywords (those its signature accepts),
given random parameters of the shapes it made, and its ``loss(X, y)`` is
compared with :func:`twingrad.cnn.twin_loss`: the loss against the twin's,
every gradient against autograd's and against central differences. Small
images (even sides, so the 2x2 pooling tiles), odd filter sizes as the
course's ``pad = (filter_size - 1) // 2`` needs.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ..cnn import POOL_PARAM, twin_forward, twin_loss
from ..gradcheck import compare, tolerance
from . import calling
from .calling import UserError
from .engine import Case, check_case, fingerprint
from .network import Net
from .results import Collector, Outcome, Record, failure_record, function_record

FUNCTION = "ThreeLayerConvNet.loss"
PARAMS = ("W1", "b1", "W2", "b2", "W3", "b3")


def check_student_cnn(caller, settings) -> list[Record]:
    """Every record of a module's ThreeLayerConvNet.loss, or why it has none."""
    if caller.kind("ThreeLayerConvNet") != "class":
        return [function_record(FUNCTION, "missing", "not defined (no ThreeLayerConvNet class)", settings)]
    parameters = caller.signature("ThreeLayerConvNet")
    collector = Collector(FUNCTION, settings, first_input="X")
    case = None
    try:
        for case in settings.case_indices():
            _case(caller, parameters, settings, case, collector)
    except UserError as err:
        return [failure_record(FUNCTION, err, settings, case, {})]
    return collector.records()


def _case(caller, parameters, settings, case, collector) -> None:
    for attempt in range(settings.redraws + 1):
        rng = settings.rng(FUNCTION, case, attempt)
        config = {"input_dim": (int(rng.integers(1, 3)), *(2 * int(rng.integers(2, 4)),) * 2),
                  "num_filters": int(rng.integers(2, 4)), "filter_size": int(rng.choice([1, 3])),
                  "hidden_dim": int(rng.integers(3, 6)), "num_classes": int(rng.integers(2, 5)),
                  "weight_scale": 1e-2, "reg": float(rng.choice([0.0, 0.1])), "dtype": settings.np_dtype}
        model = caller("ThreeLayerConvNet", **{k: v for k, v in config.items() if k in parameters})
        current = caller.get(FUNCTION, model, "params")
        if not isinstance(current, dict) or sorted(current) != sorted(PARAMS):
            found = sorted(current) if isinstance(current, dict) else "no params dict"
            raise UserError(f"ThreeLayerConvNet(...).params has keys {found}; expected the CS231n names "
                            f"{list(PARAMS)}")
        shapes = _param_shapes(config)
        for name in PARAMS:  # the configuration's shapes, never the submission's: the twin runs on these
            calling.array(FUNCTION, f"params[{name!r}]", current[name], shapes[name])
        params = {name: _fresh(rng, name, shapes[name], settings.np_dtype) for name in PARAMS}
        net = Net(model, caller, params, function=FUNCTION)
        net.set_params(params)
        X = rng.normal(size=(int(rng.integers(2, 4)), *config["input_dim"])).astype(settings.np_dtype)
        y = rng.integers(0, config["num_classes"], size=X.shape[0])
        checked, loss = _hand_case(net, X, y, config)
        # every evaluation of the twin runs a convolution: 'auto' projects, as for a large network
        mode = "fast" if settings.mode == "auto" else settings.mode
        twin_out, outcomes = check_case(checked, rng, settings.np_dtype, mode, dout=1.0,
                                           fast_threshold=settings.fast_threshold, directions=settings.directions)
        if "kink" not in {o.status for o in outcomes} or attempt == settings.redraws:
            break
    shapes = {"X": X.shape}
    loss = calling.array(FUNCTION, "loss", loss, ())
    comparison = compare(loss, twin_out, tolerance("exact", settings.np_dtype), "twin")
    collector.add("loss", "forward", Outcome("pass" if comparison.passed else "fail", {"twin": comparison}, case,
                                             shapes, details={"got": loss, "twin": twin_out}))
    # test mode: loss(X) without labels returns the scores
    scores = calling.array(FUNCTION, "scores (test mode)", net.scores(X), (X.shape[0], config["num_classes"]))
    conv_param = {"stride": 1, "pad": (config["filter_size"] - 1) // 2}
    expected, _ = twin_forward({n: np.asarray(v, np.float64) for n, v in net.params.items()}, X.astype(np.float64),
                               conv_param=conv_param)
    test_mode = compare(scores, np.asarray(expected), tolerance("exact", settings.np_dtype), "twin")
    collector.add("scores_test", "forward", Outcome("pass" if test_mode.passed else "fail", {"twin": test_mode}, case,
                                                    shapes, details={"got": scores, "twin": np.asarray(expected)}))
    for o in outcomes:
        details = {**o.arrays, "name": o.gradient, "context": {"N": X.shape[0]}, "notes": o.notes}
        collector.add(o.gradient.rstrip("0123456789"), "gradient",
                      Outcome(o.status, o.comparisons, case, shapes, o.mode, attempt, details))


def _param_shapes(config: dict) -> dict:
    """The shape of every parameter of a ThreeLayerConvNet built with ``config`` (a 2x2 pool halves H, W)."""
    (C, H, W), F, size = config["input_dim"], config["num_filters"], config["filter_size"]
    hidden, classes = config["hidden_dim"], config["num_classes"]
    return {"W1": (F, C, size, size), "b1": (F,), "W2": (F * (H // 2) * (W // 2), hidden), "b2": (hidden,),
            "W3": (hidden, classes), "b3": (classes,)}


def _fresh(rng, name: str, shape: tuple, dtype) -> np.ndarray:
    """He-scaled weights (fan-in: C * HH * WW for the filters), biases of order 0.3: no gradient trivially 0."""
    if name.startswith("W"):
        fan_in = int(np.prod(shape[1:])) if name == "W1" else int(shape[0])
        return (rng.normal(size=shape) * np.sqrt(2.0 / max(fan_in, 1))).astype(dtype)
    return (0.3 * rng.normal(size=shape)).astype(dtype)


def _hand_case(net: Net, X, y, config) -> tuple[Case, object]:
    loss, grads = calling.pair(FUNCTION, net.loss(X, y), "(loss, grads)")
    if not isinstance(grads, dict):
        raise UserError(f"{FUNCTION} returned grads as {calling.describe_value(grads)}; expected a dict keyed "
                        "like params")
    settings = {"conv_param": {"stride": 1, "pad": (config["filter_size"] - 1) // 2}, "reg": config["reg"]}
    X64 = X.astype(np.float64)

    def twin(*arrays):
        return twin_loss(dict(zip(PARAMS, arrays)), X64, y, **settings)

    def kinks(*arrays):
        # the ReLUs' pre-activations, and which input wins each pooling window (one sign per candidate)
        _, (conv, hidden) = twin_forward(dict(zip(PARAMS, arrays)), X64, conv_param=settings["conv_param"])
        first = F.first_max_offsets(np.maximum(conv, 0), POOL_PARAM["pool_height"], POOL_PARAM["pool_width"],
                                    POOL_PARAM["stride"])
        winners = (first[..., None] == np.arange(4)) - 0.5
        return np.concatenate([conv.ravel(), hidden.ravel(), winners.ravel()])

    def hand(dout):
        return calling.scaled(grads, dout)

    key = fingerprint(FUNCTION, sorted(settings.items()), X64, np.asarray(y))
    return Case(dict(net.params), twin, hand, {n: n for n in PARAMS}, kinks, key=key, name=FUNCTION), loss
