# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Verify your own layers
#
# You have written your own `layers.py` for the CS231n assignment. How do you
# know the backward passes are right? One relative error printed for one
# random input is weak evidence: a bug may hide at that shape, at that scale,
# or behind an all-ones upstream gradient.
#
# `twingrad.testing` checks **your** functions three ways: your backward pass
# against autograd through a twin of the layer (exact up to rounding) and
# against central differences (approximate). When they disagree it says which
# gradient, which element, expected vs got, and, when a pattern explains the
# error, what the mistake probably is. `twingrad.strategies` then lets
# hypothesis choose the inputs: many shapes, scales and seeds, with any failure
# shrunk to the smallest example it can find.
#
# Below, a student's affine layer with two bugs. We find both, read the
# diagnosis, fix them, and watch the checks pass.

# %%
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from twingrad import functional as F
from twingrad import strategies as tst
from twingrad.testing import assert_gradients, assert_layer_matches, check_module

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## A student's layer
#
# This is the subject of the notebook, not library code: a first attempt at
# the affine layer, with the CS231n signatures. Read it; do you see the bugs?

# %%
def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = dout @ w.T
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.mean(axis=0)
    return dx, dw, db


# %% [markdown]
# ## One assertion
#
# `assert_layer_matches(forward, backward, twin=..., inputs=..., wrt=...)` runs
# the forward and the backward with a random upstream gradient (never all ones),
# pulls the same upstream gradient back through the twin with autograd, takes
# central differences, and raises `AssertionError` with a diagnosis if any
# gradient disagrees. The twin is the same layer written in `autograd.numpy`
# with no backward pass: here twingrad's own, `twingrad.functional.affine`
# (for a layer of your own invention you would write one, a few lines).
#
# First, the student's own "unit test": one input of shape $(4, 5)$.

# %%
inputs = {"x": rng.normal(size=(4, 5)), "w": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}
try:
    assert_layer_matches(affine_forward, affine_backward, twin=F.affine, inputs=inputs, wrt=["x", "w", "b"])
except AssertionError as diagnosis:
    print(diagnosis)

# %% [markdown]
# ## Reading the diagnosis
#
# - **`db` is wrong**; nothing is said about `dx` and `dw`, so they passed. The
#   bug is in one line.
# - It was compared with the **autograd twin's gradient**, which is exact, so
#   this is not finite-difference noise.
# - The worst element, expected vs got, and the tolerance: far outside it.
# - The **hint**: got $= 0.25 \times$ expected everywhere, and $0.25 = 1/N$ for a
#   batch of $N = 4$: a mean where the gradient sums over the batch.
# - **reproduce**: the lines under it replay exactly this check, with the same
#   inputs written out in full: paste them into a Python prompt. Functions that
#   can be imported are imported by name; the student's functions here live in
#   the notebook itself, so the lines say where to paste their definitions.
#
# Why a sum: in the forward pass $b$ is added to every row,
# $Y_{n,:} = X_{n,:}W + b$, so $\partial L/\partial b = \sum_n \partial L/\partial Y_{n,:}$:
# every sample's gradient reaches the one shared bias, undiminished. (Taking the
# mean is the classic mix-up with the loss, which *is* averaged over the batch;
# that $1/N$ is already inside `dout`.)
#
# The fix, and the same assertion again (silence means it passed):

# %%
def affine_backward(dout, cache):  # noqa: F811  (the student's second attempt)
    x, w, b = cache
    dx = dout @ w.T
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


assert_layer_matches(affine_forward, affine_backward, twin=F.affine, inputs=inputs, wrt=["x", "w", "b"])
print("passed for x of shape", inputs["x"].shape)

# %% [markdown]
# Done? Only for inputs of shape $(4, 5)$.
#
# ## Letting hypothesis look for trouble
#
# A property test states what must hold for **all** valid inputs, here "the
# assertion passes", and lets hypothesis choose the inputs.
# `tst.batch_shapes(min_ndim=2, max_ndim=4)` draws input shapes
# $(N, d_1, \dots, d_k)$ of rank 2 to 4, as the affine layer accepts;
# `tst.seeds()` draws seeds for the values and the upstream gradient. When a
# case fails, hypothesis *shrinks* it: it tries smaller shapes and simpler
# seeds until it has the smallest case that still fails.
#
# (In your own pytest suite the decorated function is simply a test,
# `def test_my_affine(shape, outputs, seed): ...`. Here we call it by hand and
# print what it raises.)

# %%
def affine_property(backward, max_examples=40):
    """Check ``backward`` on hypothesis-chosen shapes and seeds; return the shapes tried."""
    tried, failed = [], []

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None)
    @given(shape=tst.batch_shapes(min_ndim=2, max_ndim=4), outputs=st.integers(1, 5), seed=tst.seeds())
    def test_my_affine(shape, outputs, seed):
        tried.append(shape)
        failed.append(True)  # until the assertion below passes
        values = np.random.default_rng(seed)
        inputs = {"x": values.normal(size=shape),
                  "w": values.normal(size=(int(np.prod(shape[1:])), outputs)),
                  "b": values.normal(size=outputs)}
        assert_layer_matches(affine_forward, backward, twin=F.affine, inputs=inputs, wrt=["x", "w", "b"], seed=seed)
        failed[-1] = False

    try:
        test_my_affine()
    except AssertionError as diagnosis:
        first = failed.index(True) + 1
        print(f"FAILED. Case {first} was the first to fail; hypothesis then took {len(tried) - first} more "
              f"tries to shrink it to x of shape {tried[-1]}:\n")
        print(diagnosis)
    else:
        print(f"passed {len(tried)} cases, x of rank {sorted({len(s) for s in tried})}, "
              f"up to {max(int(np.prod(s)) for s in tried)} elements")
    return tried


tried = affine_property(affine_backward)

# %% [markdown]
# Hypothesis found a failing case almost at once and shrank it to $x$ of shape
# $(1, 1, 1)$: one sample of shape $(1, 1)$. The diagnosis says `dx` has shape
# $(1, 1)$ where $x$ has shape $(1, 1, 1)$, with the same number of elements,
# and guesses the mistake: the forward pass flattened $x$ to $(N, D)$, and the
# backward pass forgot to give the gradient its shape back. Every 2-D test
# passes; any input with more than two dimensions (an image batch
# $(N, C, H, W)$, say) breaks. Our hand-picked test could never have seen it.
#
# The second fix:

# %%
def affine_backward(dout, cache):  # noqa: F811  (third attempt)
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)  # the forward flattened x: unflatten its gradient
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)  # b is shared by every sample: sum over the batch
    return dx, dw, db


tried = affine_property(affine_backward)

# %% [markdown]
# What did those cases cover?

# %%
ranks = [len(s) for s in tried]
batches = [s[0] for s in tried]
sizes = [int(np.prod(s)) for s in tried]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
axes[0].hist(ranks, bins=np.arange(1.5, 5.5, 1), rwidth=0.8)
axes[0].set(xlabel="rank of x", ylabel="cases", title="x of shape (N, d_1, ..., d_k)", xticks=[2, 3, 4])
axes[1].hist(batches, bins=np.arange(0.5, 7.5, 1), rwidth=0.8)
axes[1].set(xlabel="batch size N", title="batch sizes", xticks=range(1, 7))
axes[2].hist(sizes, bins=20)
axes[2].set(xlabel="elements in x", title="input sizes")
fig.suptitle(f"The {len(tried)} cases hypothesis tried on the fixed affine layer")
fig.tight_layout()
fig.savefig(FIGURES / "06_cases_tried.png", dpi=100)
plt.show()

# %% [markdown]
# ## A whole module at once
#
# For CS231n functions there is a shortcut that needs no twin and no strategy:
# `assert_gradients(names, module)` runs the checks of `twingrad verify` on the
# functions of a module, found by their CS231n names, with twingrad's twins,
# over several seeded random shapes. `check_module` returns the records it
# judged, one per checked quantity. The module can be an imported
# `my_layers`, a path to `my_layers.py`, or, as here, any object with the
# functions as attributes.

# %%
student = types.SimpleNamespace(affine_forward=affine_forward, affine_backward=affine_backward)
assert_gradients(["affine_forward", "affine_backward"], student)
print("assert_gradients: passed\n")
for record in check_module(student, ["affine_forward", "affine_backward"]):
    shapes = " ".join("x".join(map(str, s)) for s in record.shapes[:3])
    print(f"{record.function:16} {str(record.gradient or 'out'):4} {record.status:5} "
          f"{record.cases} cases (shapes {shapes} ...)  max rel error {record.max_rel_error:.1e}")

# %% [markdown]
# The same checks, with the same diagnoses, run from the command line on a
# file: `twingrad verify --impl my_layers.py` (one row per gradient; `--json`
# for graders).
#
# ## Your turn
#
# In your own `test_layers.py`, next to your `layers.py`:
#
# ```python
# import autograd.numpy as anp
# from hypothesis import given
# from twingrad import strategies as tst
# from twingrad.testing import assert_gradients, assert_layer_matches
# import layers
#
# def test_every_cs231n_function():
#     assert_gradients(None, layers)          # every function the module defines
#
# @given(x=tst.arrays(tst.batch_shapes(max_ndim=4)), seed=tst.seeds())
# def test_my_relu(x, seed):
#     assert_layer_matches(layers.relu_forward, layers.relu_backward,
#                          twin=lambda x: anp.where(x > 0, x, 0.0),
#                          inputs={"x": x}, wrt=["x"], kinks=lambda x: x, seed=seed)
# ```
#
# `kinks=lambda x: x` tells the checker where ReLU is not differentiable (where
# $x$ changes sign), so a finite difference that straddles zero is set aside
# rather than reported as your mistake (notebook 01).
#
# ## Summary
#
# - `assert_layer_matches`: your backward vs autograd through a twin vs central
#   differences, with a diagnosis: which gradient, which element, expected vs
#   got, and a hint when a pattern (here a factor $1/N$, a missing reshape)
#   explains the error.
# - One hand-picked input proves little. A property test over shapes and
#   seeds, shrunk to the smallest failure, finds the bugs that hide in shapes
#   you did not think of.
# - `assert_gradients` / `twingrad verify --impl`: every CS231n function of a
#   module in one call.
