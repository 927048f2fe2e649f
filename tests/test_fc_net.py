"""FullyConnectedNet: hand-derived gradients vs the autograd twin vs central differences,
CS231n's published initial losses, dtypes, modes and argument errors."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import twingrad.fc_net as fc_net
from twingrad.fc_net import FullyConnectedNet, twin_forward, twin_loss
from twingrad.gradcheck import tolerance


# -- random architectures -------------------------------------------------------------


@dataclass(frozen=True)
class NetCase:
    """One random net and batch; printed by hypothesis on failure, and enough to rebuild both."""

    hidden_dims: tuple
    input_dim: int
    num_classes: int
    batch: int
    normalization: object
    dropout: float
    reg: float
    weight_scale: float
    seed: int

    def build(self):
        model = FullyConnectedNet(list(self.hidden_dims), input_dim=self.input_dim, num_classes=self.num_classes,
                                  dropout=self.dropout, normalization=self.normalization, reg=self.reg,
                                  weight_scale=self.weight_scale, dtype=np.float64, seed=self.seed)
        rng = np.random.default_rng([self.seed, 1])  # a stream independent of the weights'
        X = rng.standard_normal((self.batch, self.input_dim))
        y = rng.integers(0, self.num_classes, size=self.batch)
        return model, X, y


net_cases = st.builds(
    NetCase,
    hidden_dims=st.lists(st.integers(1, 8), min_size=0, max_size=3).map(tuple),  # depth 1..4
    input_dim=st.integers(2, 6),
    num_classes=st.integers(2, 5),
    batch=st.integers(2, 6),
    normalization=st.sampled_from([None, "batchnorm", "layernorm"]),
    dropout=st.sampled_from([0.0, 0.25, 0.5]),
    reg=st.sampled_from([0.0, 0.1, 3.14]),
    weight_scale=st.sampled_from([0.3, 0.5, 1.0]),  # large enough that activations are not tiny
    seed=st.integers(0, 2**32 - 1),  # also fixes the dropout mask, so hand and twin draw the same one
)


def _relu_signs(model, params, X):
    _, trace = twin_forward(params, X, **{k: v for k, v in model.twin_settings.items() if k != "reg"})
    return [np.sign(a) for a in trace.pre_relu]


def _well_conditioned(model, params, X) -> bool:
    """False when a normalized activation has a variance near 0, where the normalization's
    higher derivatives blow up like var^(-3/2) and central differences lose their accuracy."""
    _, trace = twin_forward(params, X, **{k: v for k, v in model.twin_settings.items() if k != "reg"})
    axis = 0 if model.normalization == "batchnorm" else 1
    return all(a.shape[axis] < 2 or np.var(a, axis=axis).min() > 1e-3 for a in trace.pre_norm)


@settings(deadline=None)
@given(case=net_cases)
def test_hand_gradients_equal_autograd_twin(case):
    model, X, y = case.build()
    loss, grads = model.loss(X, y)
    twin_value, twin_grads = model.twin_grads(X, y)
    exact = tolerance("exact", np.float64)
    np.testing.assert_allclose(loss, twin_value, rtol=exact.rtol, atol=exact.atol)
    assert sorted(grads) == sorted(model.params) == sorted(twin_grads)
    for name in model.params:
        assert grads[name].shape == model.params[name].shape
        np.testing.assert_allclose(grads[name], twin_grads[name], rtol=exact.rtol, atol=exact.atol,
                                   err_msg=f"{case}: {name}")


@settings(deadline=None)
@given(case=net_cases, picks=st.integers(0, 2**32 - 1))
def test_hand_gradients_match_central_differences(case, picks):
    """A few elements of every parameter, by central differences of the (pure) twin loss."""
    model, X, y = case.build()
    _, grads = model.loss(X, y)
    params = {k: v.copy() for k, v in model.params.items()}  # perturbed in place below
    settings_ = model.twin_settings
    if not _well_conditioned(model, params, X):
        event("numeric check skipped: normalized variance near 0")
        return
    base_signs = _relu_signs(model, params, X)
    numeric, h = tolerance("numeric", np.float64), 1e-5
    rng = np.random.default_rng(picks)
    checked = skipped = 0
    for name, p in params.items():
        for flat in rng.choice(p.size, size=min(3, p.size), replace=False):
            index = np.unravel_index(flat, p.shape)
            original = p[index]
            values, crossed = [], False
            for step in (h, -h):
                p[index] = original + step
                values.append(twin_loss(params, X, y, **settings_))
                # ReLU is not differentiable at 0: a stencil that flips the sign of any ReLU
                # input straddles a kink, where a central difference measures nothing useful.
                crossed |= any(np.any(s != b) for s, b in zip(_relu_signs(model, params, X), base_signs))
            p[index] = original
            if crossed:
                skipped += 1
                continue
            checked += 1
            estimate = (values[0] - values[1]) / (2 * h)
            np.testing.assert_allclose(grads[name][index], estimate, rtol=numeric.rtol, atol=numeric.atol,
                                       err_msg=f"{case}: {name}{index}")
    event(f"kinked stencils skipped: {'some' if skipped else 'none'}")
    assert checked + skipped > 0


# -- CS231n's published value -----------------------------------------------------------


@pytest.mark.parametrize("reg_index", [0, 1])
def test_initial_loss_matches_cs231n_notebook(reg_index):
    """The notebook's 'Initial loss' for reg 0 and 3.14, to the last printed digit.

    In the notebook the model is built inside ``for reg in [0, 3.14]``, and its weights
    come from the global ``np.random`` (seed 231) after X and y: the second model's
    weights are the draws that follow the first model's W1, W2, W3.
    """
    published = {0: 2.3004790897684924, 3.14: 7.052114776533016}
    np.random.seed(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X = np.random.randn(N, D)
    y = np.random.randint(C, size=(N,))
    for reg in [0, 3.14][: reg_index + 1]:
        model = FullyConnectedNet([H1, H2], input_dim=D, num_classes=C, reg=reg, weight_scale=5e-2,
                                  dtype=np.float64)
        for i, shape in enumerate([(D, H1), (H1, H2), (H2, C)], start=1):
            model.params[f"W{i}"] = 5e-2 * np.random.randn(*shape)
            model.params[f"b{i}"] = np.zeros(shape[1])
    loss, _ = model.loss(X, y)
    np.testing.assert_allclose(loss, published[reg], rtol=1e-12, atol=0)
    np.testing.assert_allclose(model.twin_grads(X, y)[0], published[reg], rtol=1e-12, atol=0)


# -- dtypes, modes, construction ------------------------------------------------------------


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
def test_float32_net_stays_float32(normalization):
    model = FullyConnectedNet([7, 5], input_dim=6, num_classes=4, dropout=0.3, normalization=normalization,
                              reg=0.5, dtype=np.float32, seed=1)
    X = np.random.default_rng(0).standard_normal((8, 2, 3))  # float64 and (N, d_1, d_2): cast and flattened
    y = np.arange(8) % 4
    loss, grads = model.loss(X, y)
    assert loss.dtype == np.float32 and isinstance(loss, np.float32)
    assert {k: g.dtype for k, g in grads.items()} == {k: np.dtype(np.float32) for k in model.params}
    assert all(p.dtype == np.float32 for p in model.params.values())
    assert model.loss(X).dtype == np.float32
    assert all(v.dtype == np.float32 for bn in model.bn_params for v in bn.values() if isinstance(v, np.ndarray))


def test_param_names_shapes_and_init():
    model = FullyConnectedNet([4, 3], input_dim=5, num_classes=2, normalization="layernorm", seed=0,
                              weight_scale=0.1, dtype=np.float64)
    assert {k: v.shape for k, v in model.params.items()} == {
        "W1": (5, 4), "b1": (4,), "gamma1": (4,), "beta1": (4,),
        "W2": (4, 3), "b2": (3,), "gamma2": (3,), "beta2": (3,), "W3": (3, 2), "b3": (2,)}
    assert np.all(model.params["gamma1"] == 1) and np.all(model.params["beta2"] == 0)
    assert np.all(model.params["b3"] == 0)
    assert model.bn_params == [{}, {}]


def test_seeded_init_is_reproducible_and_ignores_global_state():
    np.random.seed(0)
    a = FullyConnectedNet([6], input_dim=4, seed=5)
    np.random.seed(1)
    b = FullyConnectedNet([6], input_dim=4, seed=5)
    state = np.random.get_state()[1].copy()
    c = FullyConnectedNet([6], input_dim=4, seed=6)
    assert np.array_equal(np.random.get_state()[1], state)  # the global stream was not touched
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_test_mode_returns_scores():
    model = FullyConnectedNet([5], input_dim=3, num_classes=4, dropout=0.5, seed=0, dtype=np.float64)
    X = np.ones((6, 3))
    scores = model.loss(X)
    assert scores.shape == (6, 4)
    assert model.dropout_param["mode"] == "test"
    np.testing.assert_array_equal(scores, model.loss(X))  # no dropout at test time


def test_use_batchnorm_shorthand():
    model = FullyConnectedNet([4], input_dim=3, use_batchnorm=True)
    assert model.normalization == "batchnorm" and model.use_batchnorm
    assert model.bn_params == [{"mode": "train"}] and "gamma1" in model.params
    assert FullyConnectedNet([4], input_dim=3, use_batchnorm=True, normalization="batchnorm").use_batchnorm
    with pytest.raises(ValueError, match="use_batchnorm.*conflicts.*layernorm"):
        FullyConnectedNet([4], input_dim=3, use_batchnorm=True, normalization="layernorm")


def test_dropout_param_seed_only_when_seeded():
    assert FullyConnectedNet([4], dropout=0.2, seed=3).dropout_param == {"mode": "train", "p": 0.2, "seed": 3}
    assert FullyConnectedNet([4], dropout=0.2).dropout_param == {"mode": "train", "p": 0.2}
    assert FullyConnectedNet([4], seed=3).dropout_param == {}


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_dims": [3, 0]}, r"hidden_dims must be a list of positive ints.*\[3, 0\]"),
    ({"hidden_dims": 100}, "hidden_dims must be a list of positive ints, got 100"),
    ({"hidden_dims": [2.5]}, "hidden_dims"),
    ({"dropout": 1.0}, r"dropout .* \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, "dropout"),
    ({"normalization": "groupnorm"}, "normalization must be one of .* got 'groupnorm'"),
    ({"dtype": np.int32}, "dtype must be np.float32 or np.float64"),
    ({"dtype": "nonsense"}, "dtype must be np.float32 or np.float64, got 'nonsense'"),
    ({"dtype": None}, "dtype must be np.float32 or np.float64, got None"),
    ({"reg": -1.0}, "reg must be"),
    ({"weight_scale": float("nan")}, "weight_scale"),
    ({"input_dim": 0}, "input_dim must be a positive int, got 0"),
    ({"num_classes": 2.0}, "num_classes"),
    ({"seed": -1}, "seed"),
])
def test_bad_constructor_arguments(kwargs, match):
    args = {"hidden_dims": [4], **kwargs}
    with pytest.raises(ValueError, match=match):
        FullyConnectedNet(**args)


def test_bad_inputs_to_loss():
    model = FullyConnectedNet([4], input_dim=6, num_classes=3, dtype=np.float64)
    with pytest.raises(ValueError, match=r"input_dim = 6, got shape \(2, 5\)"):
        model.loss(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="X must have shape"):
        model.loss(np.zeros(6))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        model.loss(np.zeros((2, 6)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        model.loss(np.zeros((2, 6)), np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integer class labels"):
        model.loss(np.zeros((2, 6)), np.array([0.0, 1.0]))
    model.loss(np.zeros((2, 2, 3)), np.array([0, 2]))  # (N, d_1, d_2) with d_1 * d_2 = 6 is fine


# -- batch norm state and the first layer's input gradient ---------------------------------


def test_batchnorm_running_stats_update_in_train_and_serve_in_test():
    model = FullyConnectedNet([5, 4], input_dim=3, num_classes=2, normalization="batchnorm", seed=0,
                              weight_scale=0.5, dtype=np.float64)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, 3)) + 2.0, rng.integers(0, 2, 10)
    model.loss(X, y)
    first = [(bn["running_mean"].copy(), bn["running_var"].copy()) for bn in model.bn_params]
    assert all(np.any(mean != 0) and np.all(var > 0) for mean, var in first)
    model.loss(X, y)
    assert all(not np.array_equal(bn["running_mean"], mean) for bn, (mean, _) in zip(model.bn_params, first))

    # Test mode: the running averages, not this batch's statistics, normalize.
    scores = model.loss(X[:3])
    assert all(bn["mode"] == "test" for bn in model.bn_params)
    h, p = X[:3], model.params
    for i, bn in enumerate(model.bn_params, start=1):
        a = h @ p[f"W{i}"] + p[f"b{i}"]
        a = p[f"gamma{i}"] * (a - bn["running_mean"]) / np.sqrt(bn["running_var"] + 1e-5) + p[f"beta{i}"]
        h = np.maximum(a, 0)
    np.testing.assert_allclose(scores, h @ p["W3"] + p["b3"], rtol=1e-12)


def test_twin_grads_update_batchnorm_running_stats_like_the_hand_pass():
    hand = FullyConnectedNet([5], input_dim=3, normalization="batchnorm", seed=0, dtype=np.float64)
    twin = FullyConnectedNet([5], input_dim=3, normalization="batchnorm", seed=0, dtype=np.float64)
    X, y = np.random.default_rng(1).standard_normal((6, 3)), np.arange(6) % 3
    hand.loss(X, y)
    twin.twin_grads(X, y)
    for key in ("running_mean", "running_var"):
        np.testing.assert_allclose(twin.bn_params[0][key], hand.bn_params[0][key], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("normalization, sandwich", [
    (None, "affine_relu_backward"),
    ("batchnorm", "affine_bn_relu_backward"),
    ("layernorm", "affine_ln_relu_backward"),
])
def test_first_layer_does_not_compute_input_gradient(monkeypatch, normalization, sandwich):
    calls = []
    for name in (sandwich, "affine_backward"):
        original = getattr(fc_net, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append((_name, kwargs.get("input_grad", True)))
            result = _original(*args, **kwargs)
            assert (result[0] is None) == (not kwargs.get("input_grad", True))
            return result

        monkeypatch.setattr(fc_net, name, spy)
    model = FullyConnectedNet([4, 3], input_dim=2, num_classes=2, normalization=normalization, seed=0)
    model.loss(np.ones((3, 2)) * np.arange(3)[:, None], np.array([0, 1, 0]))
    # Backward runs last layer first: the output affine, then layer 2, then layer 1 (no dx).
    assert calls == [("affine_backward", True), (sandwich, True), (sandwich, False)]


def test_softmax_classifier_has_no_input_gradient(monkeypatch):
    calls = []
    original = fc_net.affine_backward
    monkeypatch.setattr(fc_net, "affine_backward",
                        lambda *a, **k: calls.append(k.get("input_grad", True)) or original(*a, **k))
    model = FullyConnectedNet([], input_dim=2, num_classes=3, seed=0)
    loss, grads = model.loss(np.ones((2, 2)), np.array([0, 2]))
    assert calls == [False] and sorted(grads) == ["W1", "b1"]


def test_twin_loss_needs_weights():
    with pytest.raises(KeyError, match="missing"):
        twin_loss({"W1": np.zeros((2, 2))}, np.zeros((1, 2)), np.array([0]))
