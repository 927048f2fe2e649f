"""The pieces of ``twingrad verify``, in process: the three-way engine in both modes, the
hints (which must fit or stay silent), calling and loading students' code, the
stateful checks. A checker that cannot fail proves nothing, so most tests here
break something on purpose."""

import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from twingrad import layers
from twingrad.gradcheck import Tolerance, compare, compare_projection, tolerance
from twingrad.twins import REGISTRY
from twingrad.verify import hints
from twingrad.verify.calling import Caller
from twingrad.verify.functions import add_dependency_notes
from twingrad.verify.engine import Case, _projections, check_case
from twingrad.verify.functions import FUNCTIONS, check_function, reference_module
from twingrad.verify.calling import UserError, load, python2_evidence
from twingrad.verify.results import Record
from twingrad.verify.settings import Settings

GOOD = Path(__file__).parent / "verify_fixtures" / "good_layers.py"


def _affine_case(shape=(6, 50), outputs=40, hand_scale=None, seed=0):
    spec = REGISTRY["affine"]
    rng = np.random.default_rng(seed)
    inputs = spec.sample(rng, shape, 1.0, np.float64)
    inputs["w"] = rng.normal(size=(shape[1], outputs))
    inputs["b"] = rng.normal(size=outputs)
    _, cache = layers.affine_forward(inputs["x"], inputs["w"], inputs["b"])

    def hand(dout):
        dx, dw, db = layers.affine_backward(dout, cache)
        if hand_scale is not None:
            dw = hand_scale(dw.copy())
        return {"dx": dx, "dw": dw, "db": db}

    return Case({k: inputs[k] for k in spec.wrt}, spec.twin, hand, {"x": "dx", "w": "dw", "b": "db"})


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_gradient_wrong_by_a_twentieth_of_a_percent_in_one_element_fails(mode):
    def off(dw):
        dw[3, 7] *= 1.0005
        return dw

    _, outcomes = check_case(_affine_case(hand_scale=off), np.random.default_rng(1), np.float64, mode)
    statuses = {o.gradient: o.status for o in outcomes}
    assert statuses == {"dx": "pass", "dw": "fail", "db": "pass"}
    dw = next(o for o in outcomes if o.gradient == "dw")
    assert dw.vs_autograd.worst_index == (3, 7) and dw.mode == mode


def test_fast_mode_projects_and_falls_back_to_the_full_comparison_on_failure():
    _, outcomes = check_case(_affine_case(hand_scale=lambda dw: dw * 1.001), np.random.default_rng(1),
                                np.float64, "fast")
    dw = next(o for o in outcomes if o.gradient == "dw")
    assert dw.fell_back and not dw.vs_numeric.passed and "numeric" in dw.arrays
    assert dw.vs_numeric.worst_index != ()  # the full comparison names an element
    dx = next(o for o in outcomes if o.gradient == "dx")
    assert not dx.fell_back and "numeric" not in dx.arrays  # no per-element differences where projections agreed


def test_projections_alone_see_a_global_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 40))
    true = np.cos(x)

    def evaluate():
        return float(np.sum(np.sin(x))), None

    tol = tolerance("numeric", np.float64)
    assert _projections(evaluate, x, true, true, tol, rng, 3, 1e-5).passed
    assert not _projections(evaluate, x, true * 1.001, true, tol, rng, 3, 1e-5).passed


def test_a_projection_passes_whenever_every_element_does():
    rng = np.random.default_rng(3)
    tol = Tolerance(atol=1e-7, rtol=1e-5)
    for _ in range(200):
        expected = rng.normal(size=50) * rng.choice([1e-9, 1.0, 1e3])
        got = expected + (rng.uniform(-1, 1, size=50) * tol.bound(expected))  # every element within its bound
        assert compare(got, expected, tol, "x").passed
        u = rng.normal(size=50)
        excess, _ = compare_projection(float(got @ u), float(expected @ u), expected, u, tol)
        assert excess <= 1.0


def test_fast_mode_at_relu_kinks_reports_kink_or_pass_never_fail():
    spec = REGISTRY["relu"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 60))
    x[rng.random(x.shape) < 0.05] = 3e-6  # within reach of the step
    _, cache = layers.relu_forward(x)
    case = Case({"x": x}, spec.twin, lambda dout: {"dx": layers.relu_backward(dout, cache)}, {"x": "dx"},
                      kinks=lambda x: x)
    for mode in ("full", "fast"):
        _, (outcome,) = check_case(case, np.random.default_rng(1), np.float64, mode)
        assert outcome.status in ("pass", "kink") and outcome.vs_autograd.passed


# -- hints ------------------------------------------------------------------------------


def _tol():
    return tolerance("exact", np.float64)


def test_hints_name_the_pattern_that_fits():
    rng = np.random.default_rng(0)
    expected = rng.normal(size=(5, 4))
    assert hints.hints(-expected, expected, _tol()) == ["sign flipped: got = -expected everywhere"]
    assert "= 1/N with N = 5" in hints.hints(expected / 5, expected, _tol(), {"N": 5})[0]
    assert "N = 5, the batch size" in hints.hints(expected * 5, expected, _tol(), {"N": 5})[0]
    assert "1 - p = 0.75" in hints.hints(expected * 0.75, expected, _tol(), {"p_drop": 0.25})[0]
    assert "all zeros" in hints.hints(np.zeros_like(expected), expected, _tol())[0]
    square = rng.normal(size=(4, 4))
    assert "transposed" in hints.hints(square.T, square, _tol())[0]
    rows = expected.copy()
    rows[[1, 3]] += 1.0
    assert hints.hints(rows, expected, _tol()) == ["only rows [1, 3] of 5 are wrong; the other rows are right"]


def test_loss_hints_locate_the_label_entries():
    rng = np.random.default_rng(1)
    expected = rng.normal(size=(4, 3))
    y = np.array([0, 2, 1, 1])
    got = expected.copy()
    got[np.arange(4), y] *= -1
    assert "only the correct-class entries" in hints.hints(got, expected, _tol(), {"y": y})[0]


def test_relu_mask_hints():
    rng = np.random.default_rng(2)
    x, dout = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    expected = dout * (x > 0)
    context = {"relu_input": x, "dout": dout}
    assert "inverted" in hints.hints(dout * (x < 0), expected, _tol(), context)[0]
    assert "from dout" in hints.hints(dout * (dout > 0), expected, _tol(), context)[0]
    assert "no mask" in hints.hints(dout, expected, _tol(), context)[0]


def test_normalization_path_hints_fit_or_stay_silent():
    rng = np.random.default_rng(3)
    x_hat = rng.normal(size=(6, 4))
    x_hat = (x_hat - x_hat.mean(0)) / x_hat.std(0)
    expected = rng.normal(size=(6, 4))
    context = {"norm_axis": 0, "x_hat": x_hat}
    mean_path = expected + rng.normal(size=4)  # the same error for every sample of a feature
    assert "path through the mean" in hints.hints(mean_path, expected, _tol(), context)[0]
    var_path = expected + rng.normal(size=4) * x_hat
    assert "path through the variance" in hints.hints(var_path, expected, _tol(), context)[0]
    # too few samples to tell a pattern from chance: no hint
    assert hints.hints(mean_path[:2], expected[:2], _tol(), {"norm_axis": 0, "x_hat": x_hat[:2]}) == []


def test_no_hint_for_an_error_without_a_pattern():
    rng = np.random.default_rng(4)
    for _ in range(50):
        expected = rng.normal(size=(6, 5))
        got = expected + rng.normal(size=(6, 5)) * 0.1
        x_hat = rng.normal(size=(6, 5))
        context = {"N": 6, "D": 5, "p_drop": 0.5, "norm_axis": 0, "x_hat": x_hat, "y": rng.integers(0, 5, 6),
                   "relu_input": rng.normal(size=(6, 5)), "dout": rng.normal(size=(6, 5))}
        assert hints.hints(got, expected, _tol(), context) == []


# -- calling and loading students' code ----------------------------------------------


def _module(**functions):
    return types.SimpleNamespace(**{**vars(reference_module()), **functions})


def _check(name, module, **settings):
    return check_function(FUNCTIONS[name], Caller(module), Settings(cases=2, **settings))


@pytest.mark.parametrize("backward, status, words", [
    (lambda dout, cache: (dout, dout), "error", "returned a tuple of 2 values; expected 3: (dx, dw, db)"),
    (lambda dout, cache: layers.affine_backward(dout, cache)[:2] + (np.zeros((1, 1)),), "error",
     "db has shape (1, 1)"),
    (lambda dout, cache: (layers.affine_backward(dout, cache)[0], layers.affine_backward(dout, cache)[1].T,
                          layers.affine_backward(dout, cache)[2]), "error", "dw has shape"),
    (lambda dout, cache: None, "missing", "returned None"),
    (lambda dout, cache: 1 / 0, "error", "raised ZeroDivisionError: division by zero"),
])
def test_what_a_backward_returns_is_judged_with_a_message(backward, status, words):
    (record,) = _check("affine_backward", _module(affine_backward=backward))
    assert record.status == status and record.gradient is None and words in record.message


def test_a_stub_raising_not_implemented_is_missing_and_a_backward_without_forward_is_not_checked():
    def stub(*args):
        raise NotImplementedError

    (record,) = _check("relu_forward", _module(relu_forward=stub))
    assert record.status == "missing"
    module = types.SimpleNamespace(relu_backward=layers.relu_backward)
    (record,) = _check("relu_backward", module)
    assert record.status == "missing" and "relu_forward" in record.message


def test_python2_names_at_run_time_are_explained():
    def relu_forward(x):
        for _ in xrange(1):  # noqa: F821
            pass

    (record,) = _check("relu_forward", _module(relu_forward=relu_forward))
    assert record.status == "error" and "xrange is Python 2: use range" in record.message


def test_running_averages_and_test_mode_are_checked_with_hints():
    def unbiased(x, gamma, beta, bn_param):
        out, cache = layers.batchnorm_forward(x, gamma, beta, bn_param)
        if bn_param["mode"] == "train":
            momentum = bn_param.get("momentum", 0.9)
            before = (bn_param["running_var"] - (1 - momentum) * x.var(0)) / momentum
            bn_param["running_var"] = momentum * before + (1 - momentum) * x.var(0, ddof=1)
        return out, cache

    records = {r.gradient: r for r in _check("batchnorm_forward", _module(batchnorm_forward=unbiased))}
    assert records["running_var"].status == "fail" and records["running_mean"].status == "pass"
    assert "unbiased variance" in records["running_var"].diagnosis["hints"][0]
    assert records["out"].status == records["out_test"].status == "pass"


def test_dropout_statistics_and_the_keep_probability_convention():
    def keeps_with_p(x, dropout_param):  # a later course year's dropout: p keeps
        p = dropout_param["p"]
        if dropout_param["mode"] == "test":
            return x, None
        mask = (np.random.default_rng(dropout_param.get("seed")).random(x.shape) < p) / max(p, 1e-12)
        return x * mask, mask

    records = {r.gradient: r for r in _check("dropout_forward", _module(dropout_forward=keeps_with_p))}
    assert records["keep_fraction"].status == "fail"
    hint = records["keep_fraction"].diagnosis["hints"][0]
    assert "given p = 0.25, your code kept 0.2" in hint and "treats p as the keep probability" in hint
    assert "--dropout-convention keep" in hint
    records = {r.gradient: r for r in _check("dropout_forward", _module(dropout_forward=keeps_with_p),
                                             keep_prob=True)}
    assert {r.status for r in records.values()} == {"pass"}


def test_a_sandwich_is_told_which_of_its_parts_fails():
    records = [Record("affine_backward", "db", "gradient", "fail", 0, "float64", diagnosis={"hints": [], "text": ""}),
               Record("affine_relu_backward", "db", "gradient", "fail", 0, "float64",
                      diagnosis={"hints": [], "text": ""})]
    add_dependency_notes(records)
    assert records[0].diagnosis["hints"] == []
    assert "built from affine_backward" in records[1].diagnosis["hints"][0]


def test_loading_writes_no_bytecode_and_explains_failures(tmp_path):
    path = tmp_path / "student.py"
    path.write_text(GOOD.read_text())
    module = load(str(path))
    assert callable(module.affine_forward) and os.listdir(tmp_path) == ["student.py"]
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy as np\n\nx = 1 / 0\n")
    with pytest.raises(UserError, match=r"ZeroDivisionError at line 3.*Nothing was checked") as failure:
        load(str(broken))
    assert failure.value.status == "import_error"
    with pytest.raises(UserError, match="no such file"):
        load(str(tmp_path / "absent.py"))


def test_python2_evidence():
    source = 'print "hi"\nfor i in xrange(3):\n    d.iteritems()\nprint("fine")\nexcept ValueError, e:\n'
    assert python2_evidence(source) == ["a print statement (line 1)", "xrange (line 2)", ".iteritems() (line 3)"]
    assert python2_evidence("print(1)\nx = 0.05\n") == []


def test_each_case_is_seeded_by_its_own_coordinates():
    settings = Settings(seed=3)
    assert settings.rng("affine_backward", 2).random() == Settings(seed=3, cases=9).rng("affine_backward", 2).random()
    assert settings.rng("affine_backward", 2).random() != settings.rng("relu_backward", 2).random()
    assert settings.reproduce("svm_loss", 4) == "twingrad verify --only svm_loss --seed 3 --case 4"


def test_a_backward_that_matches_a_wrong_forward_is_told_to_fix_the_forward():
    def affine_forward(x, w, b):
        out, cache = layers.affine_forward(x, w, b)
        return out - 2 * b, cache  # the sign of b flipped

    def affine_backward(dout, cache):
        dx, dw, db = layers.affine_backward(dout, cache)
        return dx, dw, -db  # ... and the backward consistent with it

    module = _module(affine_forward=affine_forward, affine_backward=affine_backward)
    (forward,) = _check("affine_forward", module)
    assert forward.status == "fail"
    records = {r.gradient: r for r in _check("affine_backward", module)}
    assert records["dx"].status == records["dw"].status == "pass" and records["db"].status == "fail"
    assert any("fix affine_forward first" in h for h in records["db"].diagnosis["hints"])


class _StudentNet:
    """A student's FullyConnectedNet in the 2017 CS231n signature (use_batchnorm), on twingrad's layers."""

    l2_in_gradient = True

    def __init__(self, hidden_dims, input_dim=3 * 32 * 32, num_classes=10, dropout=0, use_batchnorm=False,
                 reg=0.0, weight_scale=1e-2, dtype=np.float32, seed=None):
        from twingrad import layer_utils

        self.lu, self.reg, self.bn = layer_utils, reg, use_batchnorm
        dims = [input_dim, *hidden_dims, num_classes]
        self.L = len(dims) - 1
        self.params = {}
        for i in range(1, self.L + 1):
            self.params[f"W{i}"] = weight_scale * np.random.randn(dims[i - 1], dims[i])
            self.params[f"b{i}"] = np.zeros(dims[i])
            if use_batchnorm and i < self.L:
                self.params[f"gamma{i}"], self.params[f"beta{i}"] = np.ones(dims[i]), np.zeros(dims[i])
        self.bn_params = [{"mode": "train"} for _ in hidden_dims]

    def loss(self, X, y=None):
        p, h, caches = self.params, X, []
        for bn_param in self.bn_params:
            bn_param["mode"] = "test" if y is None else "train"
        for i in range(1, self.L):
            if self.bn:
                h, c = self.lu.affine_bn_relu_forward(h, p[f"W{i}"], p[f"b{i}"], p[f"gamma{i}"], p[f"beta{i}"],
                                                      self.bn_params[i - 1])
            else:
                h, c = self.lu.affine_relu_forward(h, p[f"W{i}"], p[f"b{i}"])
            caches.append(c)
        scores, c = layers.affine_forward(h, p[f"W{self.L}"], p[f"b{self.L}"])
        if y is None:  # test mode
            return scores
        loss, d = layers.softmax_loss(scores, y)
        grads = {}
        d, grads[f"W{self.L}"], grads[f"b{self.L}"] = layers.affine_backward(d, c)
        for i in range(self.L - 1, 0, -1):
            if self.bn:
                d, grads[f"W{i}"], grads[f"b{i}"], grads[f"gamma{i}"], grads[f"beta{i}"] = \
                    self.lu.affine_bn_relu_backward(d, caches[i - 1])
            else:
                d, grads[f"W{i}"], grads[f"b{i}"] = self.lu.affine_relu_backward(d, caches[i - 1])
        for i in range(1, self.L + 1):
            loss += 0.5 * self.reg * np.sum(p[f"W{i}"] ** 2)
            if self.l2_in_gradient or i == self.L:
                grads[f"W{i}"] += self.reg * p[f"W{i}"]
        return loss, grads


def test_a_students_network_is_checked_in_the_configurations_it_supports():
    from twingrad.verify import network

    records = network.check_student_network(Caller(types.SimpleNamespace(FullyConnectedNet=_StudentNet)),
                                            Settings(cases=2))
    assert {r.gradient: r.status for r in records if r.configuration != "dropout"} == {
        "loss": "pass", "scores_test": "pass", "W": "pass", "b": "pass", "gamma": "pass", "beta": "pass"}
    # It takes dropout and seed but ignores them (and its module has no dropout_forward): the loss says so.
    assert {r.gradient: r.status for r in records if r.configuration == "dropout"}["loss"] == "fail"

    class Forgetful(_StudentNet):
        l2_in_gradient = False  # the L2 term only in the last layer's dW

    records = {r.gradient: r for r in network.check_student_network(
        Caller(types.SimpleNamespace(FullyConnectedNet=Forgetful)), Settings(cases=3)) if r.configuration == "plain"}
    assert records["W"].status == "fail" and records["b"].status in ("pass", "kink")
    assert records["W"].diagnosis["gradient"] != "W" and "architecture" in records["W"].diagnosis["text"]
    assert records["W"].diagnosis["hints"] == ["the L2 term reg * W is missing from this gradient"]


def test_fast_fallback_on_a_large_input_differences_a_sample_and_names_the_worst_element():
    from twingrad.verify import network

    from twingrad.verify.architecture import parse_architecture

    arch = parse_architecture("300-80-10,batch=8")
    model, X, y = network.Builder()(arch, np.random.default_rng(0), np.float64)
    case, _ = network.net_case(arch, model, X, y)
    hand = case.hand

    def broken(dout):
        grads = hand(dout)
        grads["W1"] = grads["W1"].copy()
        grads["W1"][17, 3] += 1.0  # one element of 24 000
        return grads

    case.hand = broken
    _, outcomes = check_case(case, np.random.default_rng(1), np.float64, "fast")
    w1 = next(o for o in outcomes if o.gradient == "W1")
    assert w1.status == "fail" and w1.vs_autograd.worst_index == (17, 3)
    assert w1.fell_back and w1.vs_numeric.worst_index == (17, 3) and "numeric" not in w1.arrays
    assert {o.status for o in outcomes if o.gradient != "W1"} <= {"pass", "kink"}


def test_loading_in_process_writes_no_bytecode_even_where_python_would(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.dont_write_bytecode", False)
    path = tmp_path / "student_layers.py"
    path.write_text("from helper import double\n\ndef relu_forward(x):\n    return double(x), x\n")
    (tmp_path / "helper.py").write_text("def double(x):\n    return 2 * x\n")
    load(str(path))
    assert sorted(os.listdir(tmp_path)) == ["helper.py", "student_layers.py"]  # its own imports too
    assert sys.dont_write_bytecode is False  # the caller's setting is restored
