"""FullyConnectedNet checked three ways: ``loss(X, y)``'s gradients vs autograd through
:func:`twingrad.fc_net.twin_loss` vs central differences of that twin.

The default run sweeps normalization (none, batch norm, layer norm) and
dropout (off, on with a seed, so hand and twin share the mask) with random
depths and widths; ``--net`` checks one architecture, such as the
CIFAR-sized ``3072-100x5-10``, where the fast (projection) mode pays off.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..fc_net import NORMALIZERS, FullyConnectedNet, twin_forward, twin_loss
from ..gradcheck import Comparison, compare, tolerance
from . import calling
from .architecture import Architecture
from .calling import Caller, UserError
from .engine import Case, check_case, fingerprint, ulp
from .results import Collector, Outcome, Record, failure_record, function_record

FUNCTION = "FullyConnectedNet.loss"
SWEEP = [(normalization, dropout) for normalization in (None, "batchnorm", "layernorm") for dropout in (0.0, 0.25)]


# The 2016-17 starters chose a normalization by a flag of its own, before normalization= existed.
_OLD_KEYWORDS = {"batchnorm": "use_batchnorm"}


class Builder:
    """Builds a FullyConnectedNet of some class for an architecture: twingrad's, or a student's.

    A student's class is called with the CS231n keywords its signature accepts
    (``normalization`` or the older ``use_batchnorm``; ``dropout`` off), through
    a :class:`~.calling.Caller`, so its exceptions become error records.
    """

    def __init__(self, caller=None, keep_prob: bool = False, keep: float = 1.0):
        self.student = caller is not None
        self.caller = caller or Caller(None)  # twingrad's own net is called in process
        self.keep_prob = keep_prob  # the course year's meaning of the dropout argument
        self.keep = keep  # the fraction of units a student's net keeps: 1, dropout off
        self.parameters = self.caller.signature("FullyConnectedNet") if self.student else set()
        self.unsupported = False  #: the last error came from building the net for its configuration

    def supports(self, normalization, dropout) -> bool:
        if not self.student:
            return True
        if dropout:
            return False  # a student's masks come from their own generator: no twin to compare with
        if normalization is None:
            return True
        if "normalization" in self.parameters:
            return True
        return _OLD_KEYWORDS.get(normalization) in self.parameters

    def __call__(self, arch: Architecture, rng: np.random.Generator, dtype) -> tuple:
        """A net with He-scaled random weights (and random gamma, beta, b), a batch and labels."""
        seed = int(rng.integers(2**31))
        kwargs = {"input_dim": arch.input_dim, "num_classes": arch.num_classes, "reg": arch.reg,
                  "dtype": dtype, "seed": seed}
        if self.student:
            model, current = self._student_model(arch, kwargs)
        else:
            model = FullyConnectedNet(list(arch.hidden_dims), dropout=arch.dropout,
                                      normalization=arch.normalization, **kwargs)
            current = model.params
        # He scaling keeps activations of order 1 at any width, so errors are judged at a
        # meaningful size; random b, gamma, beta so that no gradient is trivially zero.
        params = {}
        for name, shape in _param_shapes(arch).items():
            # the architecture's shapes, never the submission's: the twin runs on these
            calling.array(FUNCTION, f"params[{name!r}]", current[name], shape)
            if name.startswith("W"):
                fresh = rng.normal(size=shape) * np.sqrt(2.0 / shape[0])
            elif name.startswith("gamma"):
                fresh = 1.0 + 0.3 * rng.normal(size=shape)
            else:
                fresh = 0.3 * rng.normal(size=shape)
            params[name] = fresh.astype(dtype)
        Net(model, self.caller, params).set_params(params)
        X = rng.normal(size=(arch.batch, arch.input_dim)).astype(dtype)
        y = rng.integers(0, arch.num_classes, size=arch.batch)
        seed = getattr(model, "seed", None) if not self.student and arch.dropout else None
        return Net(model, self.caller, params, seed), X, y

    def _student_model(self, arch, kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k in self.parameters}
        if arch.normalization and "normalization" in self.parameters:
            kwargs["normalization"] = arch.normalization
        elif arch.normalization in _OLD_KEYWORDS:
            kwargs[_OLD_KEYWORDS[arch.normalization]] = True
        for name, value in (("dropout", self.keep if self.keep_prob else 1.0 - self.keep),
                            ("dropout_keep_ratio", self.keep)):
            if name in self.parameters:
                kwargs[name] = value
        self.unsupported = True  # until the net is built with the configuration's parameters
        model = self.caller("FullyConnectedNet", list(arch.hidden_dims), **kwargs)
        params = self.caller.get(FUNCTION, model, "params")
        expected = _param_names(arch)
        if isinstance(params, dict) and any(str(k).startswith(("gamma", "beta")) for k in params):
            self.unsupported = False  # it builds a normalization, with the wrong names: an error, not missing
        if not isinstance(params, dict) or sorted(params) != sorted(expected):
            found = sorted(params) if isinstance(params, dict) else "no params dict"
            raise UserError(f"FullyConnectedNet({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}).params has "
                            f"keys {found}; expected the CS231n names {expected}")
        self.unsupported = False
        return model, params


def _param_shapes(arch: Architecture) -> dict:
    """Every parameter of the architecture, in CS231n order, with its shape."""
    dims = [arch.input_dim, *arch.hidden_dims, arch.num_classes]
    shapes = {}
    for i in range(1, len(dims)):
        shapes[f"W{i}"], shapes[f"b{i}"] = (dims[i - 1], dims[i]), (dims[i],)
        if arch.normalization and i < len(dims) - 1:
            shapes[f"gamma{i}"], shapes[f"beta{i}"] = (dims[i],), (dims[i],)
    return shapes


def _param_names(arch: Architecture) -> list[str]:
    num_layers = len(arch.hidden_dims) + 1
    names = []
    for i in range(1, num_layers + 1):
        names += [f"W{i}", f"b{i}"]
        if arch.normalization and i < num_layers:
            names += [f"gamma{i}", f"beta{i}"]
    return names


@dataclass
class Net:
    """A network under check: the model (in this process or the runner's), how to call it, its parameters."""

    model: object
    caller: object
    params: dict  #: name -> array, as set by the builder
    seed: int | None = None  #: the dropout seed, shared with the twin
    function: str = FUNCTION  #: what messages call its loss (``ThreeLayerConvNet.loss``)

    def loss(self, X, y):
        return self.caller.method(self.function, self.model, "loss", X, y)

    def scores(self, X):
        """The test-mode scores: ``loss(X)`` without labels."""
        return self.caller.method(self.function, self.model, "loss", X)

    def set_params(self, params: dict) -> None:
        # A copy: a runner mirrors back what the submission writes into a dict it is given (running
        # averages), and its params.update may write into its argument. The judge's weights are its own.
        self.caller.method(self.function, self.model, "params.update", dict(params))


def _twin_settings(arch: Architecture, net: Net) -> dict:
    return {"normalization": arch.normalization, "dropout": arch.dropout, "seed": net.seed, "reg": arch.reg,
            "eps": 1e-5}


def well_conditioned(arch: Architecture, net: Net, X) -> bool:
    """False when a normalized feature has variance near 0: there the normalization's higher
    derivatives blow up and central differences lose their accuracy (a redraw, not a failure)."""
    settings = {k: v for k, v in _twin_settings(arch, net).items() if k != "reg"}
    params = {k: np.asarray(net.params[k], np.float64) for k in _param_names(arch)}
    _, trace = twin_forward(params, X.astype(np.float64), **settings)
    axis = NORMALIZERS[arch.normalization].axis
    return all(a.shape[axis] < 2 or np.var(a, axis=axis).min() > 1e-3 for a in trace.pre_norm)


def net_case(arch: Architecture, net: Net, X, y) -> tuple[Case, float]:
    """The hand ``loss(X, y)`` (run once here) beside ``twin_loss``, differentiated in every parameter."""
    names = _param_names(arch)
    settings = _twin_settings(arch, net)
    forward_settings = {k: v for k, v in settings.items() if k != "reg"}
    X64 = X.astype(np.float64)
    result = net.loss(X, y)
    loss, grads = calling.pair("FullyConnectedNet.loss", result, "(loss, grads)")
    if not isinstance(grads, dict):
        raise UserError(f"FullyConnectedNet.loss returned grads as {calling.describe_value(grads)}; expected a dict "
                        "keyed like params")

    def twin(*arrays):
        return twin_loss(dict(zip(names, arrays)), X64, y, **settings)

    def traced(*arrays):
        params = dict(zip(names, arrays))
        scores, trace = twin_forward(params, X64, **forward_settings)
        value = _loss_from_scores(scores, y, params, settings)
        kinks = np.concatenate([a.ravel() for a in trace.pre_relu]) if trace.pre_relu else np.zeros(0)
        return value, kinks

    def hand(dout):
        return calling.scaled(grads, dout)

    def perturbed(dout):
        rng = np.random.default_rng(0)
        net.set_params({n: ulp(np.asarray(net.params[n]), rng) for n in names})
        try:
            _, moved = net.loss(X, y)
        finally:
            net.set_params(net.params)
        return calling.scaled(moved, dout)

    key = fingerprint(FUNCTION, str(arch), sorted(settings.items()), X64, np.asarray(y))
    checked = Case(dict(net.params), twin, hand, {n: n for n in names}, traced=traced,
                      perturbed=perturbed, key=key, name=FUNCTION)
    return checked, loss


def _loss_from_scores(scores, y, params, settings) -> float:
    """twin_loss's value from scores already computed, for the finite differences.

    The same formula as :func:`twingrad.functional.softmax_loss` in plain numpy:
    only the value is needed here, and scipy's logsumexp (behind autograd's)
    spends ~150 us per call dispatching, a third of the default run's network sweep.
    """
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    weights = [params[k] for k in params if k.startswith("W")]
    return loss + 0.5 * settings["reg"] * sum(np.sum(W * W) for W in weights)


def check_architectures(architectures, settings, builder: Builder | None = None, progress=None) -> list[Record]:
    """Every record of ``FullyConnectedNet.loss`` over ``architectures``, ``settings.cases`` cases each.

    ``architectures`` is a list of ``(key, arch)`` pairs, where ``arch`` is an
    :class:`Architecture` or ``draw(rng) -> Architecture`` for a random one per case;
    ``progress()`` is called after each case.
    """
    builder = builder or Builder()
    collector = Collector(FUNCTION, settings, first_input="X")
    exact = tolerance("exact", settings.np_dtype)
    case = None
    try:
        for key, arch_or_draw in architectures:
            for case in settings.case_indices():
                _network_case(key, arch_or_draw, case, builder, settings, collector, exact)
                if progress:
                    progress()
    except UserError as err:
        return [failure_record(FUNCTION, err, settings, case, {})]
    return collector.records()


def check_configurations(architectures, settings, builder: Builder) -> list[Record]:
    """A student's net, one configuration at a time: each gets its own records (``configuration``
    names it), and one that fails to build or to run leaves the others checked.

    A configuration whose net cannot be built (the class rejects ``normalization="layernorm"``,
    or builds no ``gamma``/``beta`` for it) is reported as not supported: ``missing``, with why.
    """
    records = []
    for key, arch_or_draw in architectures:
        found = check_architectures([(key, arch_or_draw)], settings, builder)
        name = key.split("/")[0].replace("None", "plain")
        for record in found:
            record.configuration = name
            if record.status == "error" and name != "plain" and builder.unsupported:
                record.status = "missing"
                record.message = f"normalization={name!r} is not supported: {record.message}"
        builder.unsupported = False
        records += found
    return records


def _network_case(key, arch_or_draw, case, builder, settings, collector, exact) -> None:
    for attempt in range(settings.redraws + 1):
        rng = settings.rng(f"{FUNCTION}/{key}", case, attempt)
        arch = arch_or_draw(rng) if callable(arch_or_draw) else arch_or_draw
        try:
            net, X, y = builder(arch, rng, settings.np_dtype)
        except UserError as err:
            raise UserError(f"{err.message} (architecture {arch})", err.status) from None
        if arch.normalization and not well_conditioned(arch, net, X) and attempt < settings.redraws:
            continue
        try:
            checked, loss = net_case(arch, net, X, y)
        except UserError as err:
            raise UserError(f"{err.message} (architecture {arch})", err.status) from None
        twin_out, outcomes = check_case(checked, rng, settings.np_dtype, settings.mode, dout=1.0,
                                           fast_threshold=settings.fast_threshold, directions=settings.directions)
        statuses = {o.status for o in outcomes}
        if "kink" not in statuses or "fail" in statuses or attempt == settings.redraws:
            break
    shapes = {"X": X.shape}
    note = f"architecture {arch}"
    loss = calling.array(FUNCTION, "loss", loss, ())
    comparison = compare(loss, twin_out, exact, "twin")
    details = {"got": loss, "twin": twin_out, "note": note}
    if not comparison.passed:
        details["extra_hints"] = _loss_hints(loss, arch, net, X, y, exact)
    collector.add("loss", "forward", Outcome("pass" if comparison.passed else "fail", {"twin": comparison},
                                             case, shapes, details=details))
    _test_mode_case(arch, net, X, case, shapes, exact, collector)
    for o in outcomes:
        family = o.gradient.rstrip("0123456789")
        details = {**o.arrays, "name": o.gradient, "note": note, "context": {"N": arch.batch}, "notes": o.notes}
        if o.status == "fail" and family == "W" and arch.reg:
            details["extra_hints"] = _regularization_hints(o, np.asarray(net.params[o.gradient], np.float64),
                                                           arch.reg, settings)
        collector.add(family, "gradient", Outcome(o.status, o.comparisons, case, shapes, o.mode, attempt, details))


def _test_mode_case(arch: Architecture, net: Net, X, case, shapes, tol, collector) -> None:
    """``loss(X)`` without labels: the scores, batch norm normalizing with the running averages the net
    holds (``bn_params``, as the course keeps them; a net that keeps them elsewhere is not checked here)."""
    scores = calling.array(FUNCTION, "scores (test mode)", net.scores(X), (arch.batch, arch.num_classes))
    running = None
    if arch.normalization == "batchnorm":
        bn_params = net.caller.get(FUNCTION, net.model, "bn_params")
        if not isinstance(bn_params, (list, tuple)) or len(bn_params) != len(arch.hidden_dims):
            return  # kept some other way: not checked here
        running = _running_averages(bn_params, arch)
        if running is None:
            lost = Comparison("twin", 0.0, 0.0, (), 0.0, 0.0, tol, False)
            finding = ("  after training calls, its bn_params hold no running averages of the layers' widths: "
                       "test mode has nothing to normalize with (is each call given a fresh bn_param?)")
            collector.add("scores_test", "forward", Outcome("fail", {"twin": lost}, case, shapes, details={
                "got": scores, "finding": finding, "note": f"test mode, architecture {arch}"}))
            return
    expected = _test_scores({k: np.asarray(net.params[k], np.float64) for k in _param_names(arch)},
                            np.asarray(X, np.float64), arch, running)
    comparison = compare(scores, expected, tol, "twin")
    collector.add("scores_test", "forward", Outcome("pass" if comparison.passed else "fail", {"twin": comparison},
                                                    case, shapes, details={"got": scores, "twin": expected,
                                                                           "note": f"test mode, architecture {arch}"}))


def _running_averages(bn_params, arch: Architecture) -> list | None:
    """Each batch-normalized layer's (running_mean, running_var) from the net's bn_params, or None."""
    found = []
    for param, width in zip(bn_params, arch.hidden_dims):
        values = [param.get(k) if isinstance(param, dict) else None for k in ("running_mean", "running_var")]
        if not all(isinstance(v, np.ndarray) and v.shape == (width,) and v.dtype.kind == "f" for v in values):
            return None
        found.append(tuple(np.asarray(v, np.float64) for v in values))
    return found


def _test_scores(params: dict, X, arch: Architecture, running, eps: float = 1e-5) -> np.ndarray:
    """The scores in test mode: dropout off, batch norm with the running averages, layer norm as in training."""
    h, last = X, len(arch.hidden_dims) + 1
    for i in range(1, last):
        a = h @ params[f"W{i}"] + params[f"b{i}"]
        if arch.normalization:
            mean, var = (running[i - 1] if arch.normalization == "batchnorm"
                         else (a.mean(axis=1, keepdims=True), a.var(axis=1, keepdims=True)))
            a = params[f"gamma{i}"] * (a - mean) / np.sqrt(var + eps) + params[f"beta{i}"]
        h = np.maximum(a, 0)
    return h @ params[f"W{last}"] + params[f"b{last}"]


def _loss_hints(loss, arch: Architecture, net: Net, X, y, tol) -> list[str]:
    """A wrong loss that a ReLU on the scores, or a missing L2 term, reproduces."""
    settings = _twin_settings(arch, net)
    params = {k: np.asarray(net.params[k], np.float64) for k in _param_names(arch)}
    scores, _ = twin_forward(params, X.astype(np.float64), **{k: v for k, v in settings.items() if k != "reg"})
    scores = np.asarray(scores)
    models = [(_loss_from_scores(np.maximum(scores, 0), y, params, settings),
               "the scores pass through a ReLU: the last affine layer has no ReLU (nor dropout or normalization) "
               "after it")]
    if arch.reg:
        models.append((_loss_from_scores(scores, y, params, {**settings, "reg": 0.0}),
                       "the L2 term 0.5 * reg * sum(W**2) over every W is missing from the loss"))
    return [text for model, text in models if tol.fits(np.asarray(loss, np.float64), np.asarray(model))][:1]


def _regularization_hints(outcome, W, reg, settings) -> list[str]:
    """dW wrong by a multiple of ``reg * W``: the L2 term missing, doubled or halved."""
    got, expected = np.asarray(outcome.arrays["got"], np.float64), outcome.arrays["autograd"]
    tol = outcome.vs_autograd.tolerance
    for factor, text in ((-1.0, "the L2 term reg * W is missing from this gradient"),
                         (1.0, "the L2 term is added twice (2 * reg * W)"),
                         (-0.5, "the L2 term is 0.5 * reg * W; the derivative of 0.5 * reg * sum(W**2) is reg * W")):
        model = expected + factor * reg * W
        if tol.fits(got, model):
            return [text]
    return []


def _random_architecture(normalization, dropout):
    def draw(rng):
        depth = int(rng.integers(1, 4))
        return Architecture(
            input_dim=int(rng.integers(2, 7)),
            hidden_dims=tuple(int(h) for h in rng.integers(2, 8, size=depth)),
            num_classes=int(rng.integers(2, 6)),
            normalization=normalization,
            dropout=dropout,
            reg=float(rng.choice([0.0, 0.1, 1.0])),
            batch=int(rng.integers(2, 7)),
        )

    return draw


def check_sweep(settings, builder: Builder | None = None) -> list[Record]:
    """Networks of random sizes: each normalization with and without dropout (that the class supports)."""
    builder = builder or Builder()
    architectures = [(f"{normalization}/{dropout}", _random_architecture(normalization, dropout))
                     for normalization, dropout in SWEEP if builder.supports(normalization, dropout)]
    return check_architectures(architectures, settings, builder)


def check_student_network(caller, settings) -> list[Record]:
    """A module's own FullyConnectedNet class, if it defines one, over the sweep it supports."""
    if caller.kind("FullyConnectedNet") != "class":
        return [function_record(FUNCTION, "missing", "not defined (no FullyConnectedNet class)", settings)]
    from .dropout_net import check_student_dropout  # it builds on this module

    builder = Builder(caller, settings.keep_prob)
    architectures = [(f"{normalization}/{dropout}", _random_architecture(normalization, dropout))
                     for normalization, dropout in SWEEP if builder.supports(normalization, dropout)]
    return check_configurations(architectures, settings, builder) + check_student_dropout(caller, settings)


def check_network(arch: Architecture, settings) -> list[Record]:
    """One architecture, ``settings.cases`` random draws of its weights and batch (progress on stderr
    when a run takes more than a few seconds)."""
    with tqdm(total=len(settings.case_indices()), desc=f"FullyConnectedNet {arch}", unit="case", delay=3,
              file=sys.stderr, leave=False) as bar:
        return check_architectures([(str(arch), arch)], settings, progress=bar.update)
