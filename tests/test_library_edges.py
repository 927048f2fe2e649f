"""Library edges: every input a caller can give the hand layers and the gradient checkers
gets one clear answer (an error naming the argument, the expected and the actual value,
or a documented result), never garbage."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from twingrad import layers as L
from twingrad.gradcheck import eval_numerical_gradient, eval_numerical_gradient_array
from twingrad.testing import assert_layer_matches

RNG = np.random.default_rng(0)
X = RNG.standard_normal((4, 3))
W = RNG.standard_normal((3, 2))
B = RNG.standard_normal(2)
G = np.ones(3)


def _caches():
    """One cache of every layer, by the forward that made it."""
    return {
        "affine_forward": L.affine_forward(X, W, B)[1],
        "relu_forward": L.relu_forward(X)[1],
        "batchnorm_forward": L.batchnorm_forward(X, G, G, {"mode": "train"})[1],
        "layernorm_forward": L.layernorm_forward(X, G, G)[1],
        "dropout_forward": L.dropout_forward(X, {"mode": "train", "p": 0.5, "seed": 1})[1],
    }


# -- numeric gradients on arrays that cannot hold a perturbation -----------------------------


@pytest.mark.parametrize("x", [np.array([2, 4, 6]), np.array([True, False]), np.array([1.0, 2.0], np.float16)])
def test_numeric_gradient_refuses_arrays_that_cannot_hold_x_plus_h(x):
    before = x.copy()
    with pytest.raises(TypeError, match=rf"eval_numerical_gradient: x must be a float32 or float64 array, "
                                        rf"got dtype {x.dtype}"):
        eval_numerical_gradient(lambda v: float(np.sum(v.astype(float) ** 2)), x, verbose=False)
    with pytest.raises(TypeError, match=rf"eval_numerical_gradient_array: .*got dtype {x.dtype}"):
        eval_numerical_gradient_array(lambda v: v * 2.0, x, np.ones(x.shape))
    np.testing.assert_array_equal(x, before)


def test_numeric_gradient_of_a_float_array_and_bad_steps():
    x = np.array([2.0, 4.0, 6.0])
    np.testing.assert_allclose(eval_numerical_gradient(lambda v: np.sum(v**2), x, verbose=False), [4.0, 8.0, 12.0])
    with pytest.raises(TypeError, match="x must be a numpy array.*got list"):
        eval_numerical_gradient(lambda v: 0.0, [1.0, 2.0], verbose=False)
    for h in (0.0, -1e-5, float("nan"), "1e-5"):
        with pytest.raises(ValueError, match=r"h must be a finite step > 0, got"):
            eval_numerical_gradient(lambda v: 0.0, x, verbose=False, h=h)


# -- a backward given the wrong cache names the cache it expected ----------------------------

BACKWARDS = {  # backward -> (its forward, the upstream gradient's shape)
    "affine_backward": ("affine_forward", "AffineCache", (4, 2)),
    "relu_backward": ("relu_forward", "ReluCache", (4, 3)),
    "batchnorm_backward": ("batchnorm_forward", "BatchNormCache", (4, 3)),
    "batchnorm_backward_alt": ("batchnorm_forward", "BatchNormCache", (4, 3)),
    "layernorm_backward": ("layernorm_forward", "LayerNormCache", (4, 3)),
    "dropout_backward": ("dropout_forward", "DropoutCache", (4, 3)),
}


@pytest.mark.parametrize("backward", list(BACKWARDS))
def test_a_backward_names_the_cache_it_expected(backward):
    own_forward, expected, dout_shape = BACKWARDS[backward]
    caches = _caches()
    dout = np.ones(dout_shape)
    getattr(L, backward)(dout, caches[own_forward])  # its own cache works
    for forward, cache in caches.items():
        if forward == own_forward:
            continue
        with pytest.raises(TypeError, match=rf"^{backward}: cache must be the {expected} that {own_forward} "
                                            rf"returns.*; got a \w+Cache \(the cache {forward} returns\)$"):
            getattr(L, backward)(dout, cache)
    error = ValueError if backward.startswith("batchnorm") else TypeError  # None is batch norm's test-mode cache
    with pytest.raises(error, match=rf"^{backward}: .*None"):
        getattr(L, backward)(dout, None)
    with pytest.raises(TypeError, match=rf"^{backward}: cache must be the {expected}.*; got a tuple$"):
        getattr(L, backward)(dout, (1, 2, 3))


def test_relu_backward_still_takes_cs231ns_bare_input():
    np.testing.assert_array_equal(L.relu_backward(np.ones((2, 2)), np.array([[1.0, -1.0], [0.0, 2.0]])),
                                  [[1.0, 0.0], [0.0, 1.0]])


# -- the parameter dicts ------------------------------------------------------------------------


@pytest.mark.parametrize("momentum", [float("nan"), -0.1, 1.5, "0.9", True, None])
def test_batchnorm_momentum_must_lie_in_0_1(momentum):
    with pytest.raises(ValueError, match=rf"batchnorm_forward: bn_param\['momentum'\] .* must lie in \[0, 1\], "
                                         rf"got {repr(momentum).replace('.', '[.]')}$"):
        L.batchnorm_forward(X, G, G, {"mode": "train", "momentum": momentum})


def test_batchnorm_momentum_edges_are_accepted():
    for momentum, expected in ((0.0, X.mean(axis=0)), (1.0, np.zeros(3)), (np.float32(0.5), X.mean(axis=0) / 2)):
        param = {"mode": "train", "momentum": momentum}
        L.batchnorm_forward(X, G, G, param)
        np.testing.assert_allclose(param["running_mean"], expected, atol=1e-7)


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), float("inf"), "1e-5", True, None])
@pytest.mark.parametrize("layer", ["batchnorm", "layernorm"])
def test_eps_must_be_a_positive_number(layer, eps):
    name = "bn_param" if layer == "batchnorm" else "ln_param"
    param = {"mode": "train", "eps": eps}
    with pytest.raises(ValueError, match=rf"{layer}_forward: {name}\['eps'\] must be a finite number > 0, got"):
        getattr(L, f"{layer}_forward")(X, G, G, param)


def test_layernorm_param_must_be_a_dict():
    with pytest.raises(TypeError, match="layernorm_forward: ln_param must be a dict or None, got float"):
        L.layernorm_forward(X, G, G, 1e-5)


@pytest.mark.parametrize("seed", [1.5, -1, "3", True, [1, -2], []])
def test_dropout_seed_must_be_an_integer(seed):
    with pytest.raises(ValueError, match=r"dropout_forward: dropout_param\['seed'\] must be None, an integer >= 0 "
                                         r"or a list of them, got"):
        L.dropout_forward(X, {"mode": "train", "p": 0.5, "seed": seed})


@pytest.mark.parametrize("p", [float("nan"), "0.5", True])
def test_dropout_p_must_be_a_probability(p):
    with pytest.raises(ValueError, match=r"dropout_param\['p'\] is the probability of dropping a unit and must "
                                         r"lie in \[0, 1\), got"):
        L.dropout_forward(X, {"mode": "train", "p": p})


def test_dropout_seeds_that_work():
    masks = [L.dropout_forward(X, {"mode": "train", "p": 0.5, "seed": s})[1].mask for s in (3, np.int64(3), [3, 1])]
    np.testing.assert_array_equal(masks[0], masks[1])
    assert masks[2].shape == X.shape


# -- empty batches --------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["svm_loss", "softmax_loss"])
def test_a_loss_refuses_an_empty_batch(loss):
    with pytest.raises(ValueError, match=rf"^{loss}: x must hold at least one sample .*got shape \(0, 5\)$"):
        getattr(L, loss)(np.zeros((0, 5)), np.zeros(0, int))


def test_per_sample_layers_pass_an_empty_batch_through():
    empty = np.zeros((0, 3))
    out, cache = L.affine_forward(empty, W, B)
    assert out.shape == (0, 2)
    assert [g.shape for g in L.affine_backward(np.zeros((0, 2)), cache)] == [(0, 3), (3, 2), (2,)]
    assert L.relu_backward(np.zeros((0, 3)), L.relu_forward(empty)[1]).shape == (0, 3)
    assert L.dropout_forward(empty, {"mode": "train", "p": 0.5})[0].shape == (0, 3)
    assert L.batchnorm_forward(empty, G, G, {"mode": "test"})[0].shape == (0, 3)
    with pytest.raises(ValueError, match="train mode needs at least 2 samples"):
        L.batchnorm_forward(empty, G, G, {"mode": "train"})
    with pytest.raises(ValueError, match=r"layernorm_forward: x must have at least one feature.*\(2, 0\)"):
        L.layernorm_forward(np.zeros((2, 0)), np.ones(0), np.ones(0))


# -- dtypes ---------------------------------------------------------------------------------------

FORWARDS = {
    "affine_forward": lambda x: L.affine_forward(x, W.astype(x.dtype), B.astype(x.dtype)),
    "relu_forward": L.relu_forward,
    "svm_loss": lambda x: L.svm_loss(x, np.array([0, 1, 2, 0])),
    "softmax_loss": lambda x: L.softmax_loss(x, np.array([0, 1, 2, 0])),
    "batchnorm_forward": lambda x: L.batchnorm_forward(x, G.astype(x.dtype), G.astype(x.dtype), {"mode": "train"}),
    "layernorm_forward": lambda x: L.layernorm_forward(x, G.astype(x.dtype), G.astype(x.dtype)),
    "dropout_forward": lambda x: L.dropout_forward(x, {"mode": "train", "p": 0.5}),
}


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
@pytest.mark.parametrize("forward", list(FORWARDS))
def test_only_float32_and_float64_are_accepted_as_the_message_says(forward, dtype):
    if np.dtype(dtype) == np.float64:
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError, match=rf"^{forward}: x must have a floating dtype \(float32 or float64\), "
                                        rf"got {np.dtype(dtype)}$"):
        FORWARDS[forward](X.astype(dtype))


def _dtypes(*arrays):
    return {np.asarray(a).dtype.name for a in arrays}


def test_mixed_float32_and_float64_promote_to_float64_everywhere():
    x32, d32 = X.astype(np.float32), np.ones((4, 3), np.float32)
    out, cache = L.affine_forward(x32, W, B.astype(np.float32))
    assert _dtypes(out, *L.affine_backward(np.ones((4, 2), np.float32), cache)) == {"float64"}
    for forward, backward in (("batchnorm_forward", "batchnorm_backward"),
                              ("batchnorm_forward", "batchnorm_backward_alt"),
                              ("layernorm_forward", "layernorm_backward")):
        param = {"mode": "train", "running_mean": np.zeros(3, np.float32)}
        out, cache = getattr(L, forward)(x32, G, G.astype(np.float32), param)
        assert _dtypes(out, *getattr(L, backward)(d32, cache)) == {"float64"}, (forward, backward)
        if forward == "batchnorm_forward":  # the running averages are kept in the layer's dtype
            assert _dtypes(param["running_mean"], param["running_var"]) == {"float64"}
    out, _ = L.batchnorm_forward(x32, G.astype(np.float32), G.astype(np.float32),
                                 {"mode": "test", "running_mean": np.zeros(3), "running_var": np.ones(3)})
    assert out.dtype == np.float32


def test_a_wider_upstream_gradient_is_converted_to_the_layers_dtype():
    x32 = X.astype(np.float32)
    d64 = np.ones((4, 3))
    for forward, backward in (("relu_forward", "relu_backward"), ("layernorm_forward", "layernorm_backward")):
        args = (x32,) if forward == "relu_forward" else (x32, G.astype(np.float32), G.astype(np.float32))
        _, cache = getattr(L, forward)(*args)
        grads = getattr(L, backward)(d64, cache)
        assert _dtypes(*(grads if isinstance(grads, tuple) else (grads,))) == {"float32"}
    _, cache = L.dropout_forward(x32, {"mode": "train", "p": 0.5, "seed": 0})
    assert L.dropout_backward(d64, cache).dtype == np.float32


# -- twingrad.testing: failures show the student's frames and a reproducer to paste ---------------


def broken_affine_backward(dout, cache):
    """affine_backward with db averaged instead of summed: the slip the reproducer must replay."""
    dx, dw, _ = L.affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)


def test_a_failure_prints_python_that_replays_it():
    inputs = {"x": RNG.standard_normal((4, 3)), "w": RNG.standard_normal((3, 2)), "b": RNG.standard_normal(2)}
    with pytest.raises(AssertionError) as failure:
        assert_layer_matches(L.affine_forward, broken_affine_backward, inputs=inputs, wrt=["x", "w", "b"], seed=3)
    message = str(failure.value)
    assert message.startswith("broken_affine_backward: db is wrong")
    snippet = message[message.index("    import numpy as np"):]
    assert "from twingrad.layers import affine_forward as forward" in snippet
    assert f"from {__name__} import broken_affine_backward as backward" in snippet
    namespace: dict = {}
    with pytest.raises(AssertionError) as replayed:
        exec(textwrap.dedent(snippet), namespace)  # pasted: the same call on the same inputs
    assert str(replayed.value) == message
    for name, value in inputs.items():
        np.testing.assert_array_equal(namespace["inputs"][name], value)  # written with every digit


def test_large_inputs_are_saved_to_a_file_the_reproducer_loads():
    inputs = {"x": RNG.standard_normal((20, 10)), "w": RNG.standard_normal((10, 2)), "b": RNG.standard_normal(2)}
    with pytest.raises(AssertionError) as failure:
        assert_layer_matches(L.affine_forward, broken_affine_backward, inputs=inputs, wrt=["x", "w", "b"])
    snippet = str(failure.value).split("prompt\n", 1)[1]
    assert "saved = np.load(" in snippet and "'x': saved['a0']" in snippet
    namespace: dict = {}
    with pytest.raises(AssertionError):
        exec(textwrap.dedent(snippet), namespace)
    np.testing.assert_array_equal(namespace["inputs"]["x"], inputs["x"])


def test_pytest_hides_twingrads_frames(tmp_path):
    test_file = tmp_path / "test_student.py"
    test_file.write_text(textwrap.dedent("""
        import numpy as np
        from twingrad import layers as L
        from twingrad.testing import assert_layer_matches

        def wrong_relu_backward(dout, cache):
            return dout

        def test_relu():
            assert_layer_matches(L.relu_forward, wrong_relu_backward, inputs={"x": np.array([[1.0, -2.0]])},
                                 wrt=["x"])
    """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "wrong_relu_backward: dx is wrong" in run.stdout
    assert "test_student.py:10" in run.stdout  # the student's own line
    assert "twingrad/testing.py" not in run.stdout and "twingrad/verify" not in run.stdout, run.stdout


def test_an_erroring_function_gets_a_verify_command_to_paste(tmp_path):
    from twingrad.testing import assert_gradients

    module = tmp_path / "crashing_layers.py"
    module.write_text(textwrap.dedent("""
        def affine_forward(x, w, b):
            return x.reshape(x.shape[0], -1) @ w + b, (x, w, b)

        def affine_backward(dout, cache):
            raise RuntimeError("not written yet")
    """))
    with pytest.raises(AssertionError) as failure:
        assert_gradients("affine_backward", str(module), cases=1, seed=7)
    message = str(failure.value)
    assert "affine_backward: error" in message and "not written yet" in message
    assert f"  reproduce: twingrad verify --impl {module} --only affine_backward --seed 7" in message
