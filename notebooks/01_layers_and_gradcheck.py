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
# # 01 · Fully-connected layers and gradient checking
#
# A backward pass derived on paper is easy to get slightly wrong: a missing
# transpose, a sum over the wrong axis, a forgotten $1/N$. twingrad gets a
# **second and a third opinion** on every gradient:
#
# 1. **hand**: the backward pass in `twingrad.layers`, derived on paper;
# 2. **autograd twin**: the same forward written in `autograd.numpy`
#    (`twingrad.functional`), differentiated automatically. It is exact up to
#    rounding, so hand and twin should agree to about 1e-12;
# 3. **numeric**: central finite differences of the forward. Slow, approximate,
#    but it needs no derivation at all.
#
# This notebook derives the four layers of a basic classifier (affine, ReLU,
# SVM loss, softmax loss), checks each three ways, and then looks at the check
# itself: what relative error means, why we check in float64, and what happens
# at a kink.

# %%
import types
from pathlib import Path

import autograd.numpy as anp
import matplotlib.pyplot as plt
import numpy as np
from autograd import grad

from twingrad import functional as F
from twingrad import layers
from twingrad.gradcheck import (
    check_layer,
    compare,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
    tolerance,
)
from twingrad.twins import REGISTRY

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)
rng = np.random.default_rng(0)
np.set_printoptions(precision=4, suppress=False)

# %% [markdown]
# ## The affine layer
#
# A batch of $N$ inputs, each flattened to $D$ features, is the matrix
# $X \in \mathbb{R}^{N\times D}$; the layer computes
#
# $$Y = XW + b, \qquad W \in \mathbb{R}^{D\times M},\; b \in \mathbb{R}^{M}.$$
#
# In the backward pass we receive the **upstream gradient**
# $G = \partial L/\partial Y$ (same shape as $Y$) and must return the gradient
# of the loss with respect to every input. Element by element,
# $Y_{nm} = \sum_d X_{nd}W_{dm} + b_m$, so by the chain rule
#
# $$\frac{\partial L}{\partial X_{nd}} = \sum_m G_{nm} W_{dm}, \qquad
#   \frac{\partial L}{\partial W_{dm}} = \sum_n X_{nd} G_{nm}, \qquad
#   \frac{\partial L}{\partial b_m} = \sum_n G_{nm},$$
#
# which in matrix form is
#
# $$\frac{\partial L}{\partial X} = G W^\top, \qquad
#   \frac{\partial L}{\partial W} = X^\top G, \qquad
#   \frac{\partial L}{\partial b} = \textstyle\sum_n G_{n,:}.$$
#
# A quick sanity check that costs nothing: every gradient has the shape of the
# thing it is the gradient of. $GW^\top$ is $(N\times M)(M\times D) = N\times D$. ✓
#
# The bias was *broadcast* over the batch in the forward pass (copied to every
# row), so in the backward pass its gradient is *summed* over the batch: a copy
# forward is a sum backward.
#
# Now the three opinions. The upstream gradient is random, never all ones: an
# all-ones `dout` hides bugs that a sum happens to cancel.

# %%
x = rng.normal(size=(4, 2, 3))  # N=4 samples of shape (2, 3): D = 6
w = rng.normal(size=(6, 5))
b = rng.normal(size=5)
dout = rng.normal(size=(4, 5))

# 1. hand
out, cache = layers.affine_forward(x, w, b)
dx, dw, db = layers.affine_backward(dout, cache)

# 2. autograd twin: the gradient of <dout, f(x, w, b)> is exactly the backward pass
twin_dx, twin_dw, twin_db = grad(lambda x, w, b: anp.sum(F.affine(x, w, b) * dout), argnum=(0, 1, 2))(x, w, b)

# 3. central differences, one input at a time, the others held fixed
num_dx = eval_numerical_gradient_array(lambda v: layers.affine_forward(v, w, b)[0], x.copy(), dout)
num_dw = eval_numerical_gradient_array(lambda v: layers.affine_forward(x, v, b)[0], w.copy(), dout)
num_db = eval_numerical_gradient_array(lambda v: layers.affine_forward(x, w, v)[0], b.copy(), dout)

print(f"{'':4} {'hand vs twin':>14} {'hand vs numeric':>16}")
for name, hand, twin, num in [("dx", dx, twin_dx, num_dx), ("dw", dw, twin_dw, num_dw), ("db", db, twin_db, num_db)]:
    print(f"{name:4} {rel_error(hand, twin):14.1e} {rel_error(hand, num):16.1e}")

# %% [markdown]
# Hand and twin agree exactly here (in general to rounding, about 1e-16: the
# same products, perhaps in a different order); hand vs numeric to about 1e-8:
# that is the error of the finite difference itself, which we look at below.
#
# ## ReLU
#
# $y = \max(x, 0)$ elementwise, so $\partial y/\partial x$ is 1 where $x > 0$
# and 0 where $x < 0$:
#
# $$\frac{\partial L}{\partial x} = G \odot [x > 0].$$
#
# At exactly $x = 0$ there is no derivative: the function has a **kink**.
# Any value in $[0, 1]$ is a valid *subgradient*; twingrad (like PyTorch) takes
# 0, and the twin is written to take the same one. From here on we let
# `check_layer` do the bookkeeping: it runs the hand forward and backward, the
# twin under autograd, and central differences of the twin, with one random
# upstream gradient, and judges each gradient.

# %%
def show(result):
    """Print a LayerCheck: one line per gradient, against the twin and against central differences."""
    print(f"{result.name}: {result.status}   (forward vs twin: max abs error {result.forward.max_abs_error:.1e})")
    for g in result.gradients:
        a, n = g.vs_autograd, g.vs_numeric
        print(f"  {g.gradient:7} vs autograd: max abs {a.max_abs_error:.1e}, rel {a.max_rel_error:.1e} | "
              f"vs numeric: max abs {n.max_abs_error:.1e}, rel {n.max_rel_error:.1e} "
              f"{'(' + str(n.ignored) + ' across a kink)' if n.ignored else ''} -> {g.status}")


relu = REGISTRY["relu"]
inputs = relu.sample(rng, (4, 5), 1.0, np.float64)  # values kept at least 0.05 away from the kink
show(check_layer(relu, inputs, rng))

# %% [markdown]
# ## The multiclass SVM loss
#
# Scores $x \in \mathbb{R}^{N\times C}$, correct classes $y_n$. Each wrong
# class $j$ that scores within a margin of 1 of the right one is penalised:
#
# $$L = \frac1N \sum_n \sum_{j\ne y_n} \max\bigl(0,\; x_{nj} - x_{ny_n} + 1\bigr).$$
#
# Call $m_{nj} = x_{nj} - x_{ny_n} + 1$ the margin. A positive margin adds
# $x_{nj}$ with sign $+$ and $x_{ny_n}$ with sign $-$, so
#
# $$\frac{\partial L}{\partial x_{nj}} = \frac{[m_{nj} > 0]}{N}\;(j \ne y_n), \qquad
#   \frac{\partial L}{\partial x_{ny_n}} = -\frac1N\sum_{j\ne y_n}[m_{nj} > 0].$$
#
# The loss returns its own gradient (it is the top of the graph: the upstream
# gradient is the number 1). The hinge has a kink at $m_{nj} = 0$, just like ReLU.
#
# ## The softmax (cross-entropy) loss
#
# $$p_{nj} = \frac{e^{x_{nj}}}{\sum_k e^{x_{nk}}}, \qquad
#   L = -\frac1N \sum_n \log p_{ny_n}.$$
#
# Since $\log p_{ny_n} = x_{ny_n} - \log\sum_k e^{x_{nk}}$ and
# $\partial \log\sum_k e^{x_{nk}} / \partial x_{nj} = p_{nj}$,
#
# $$\frac{\partial L}{\partial x_{nj}} = \frac{p_{nj} - [j = y_n]}{N}:$$
#
# predicted probability minus the one-hot target. (In code the row maximum is
# subtracted from the scores first; that changes no $p$ and no exponential
# overflows.) For scalar losses the CS231n helper `eval_numerical_gradient`
# differentiates $f(x)$ directly.

# %%
scores = rng.normal(size=(6, 4))
labels = rng.integers(0, 4, size=6)
for name, loss_fn, twin_fn in [("svm_loss", layers.svm_loss, F.svm_loss),
                               ("softmax_loss", layers.softmax_loss, F.softmax_loss)]:
    loss, dscores = loss_fn(scores, labels)
    twin = grad(twin_fn)(scores, labels)
    num = eval_numerical_gradient(lambda s: loss_fn(s, labels)[0], scores.copy(), verbose=False)
    print(f"{name:13} loss {loss:.4f}  hand vs twin {rel_error(dscores, twin):.1e}  "
          f"hand vs numeric {rel_error(dscores, num):.1e}")

# %% [markdown]
# Every layer in the registry, three ways, in one loop (this is what
# `twingrad verify` does over many random shapes):

# %%
for spec in REGISTRY.values():
    result = check_layer(spec, spec.sample(rng, spec.random_shape(rng), 1.0, np.float64), rng)
    worst = max(max(g.vs_autograd.max_rel_error, g.vs_numeric.max_rel_error) for g in result.gradients)
    print(f"{spec.name:15} {result.status:5}  worst relative error {worst:.1e}")

# %% [markdown]
# ## What relative error means
#
# A gradient that is 1e-6 off is fine if the gradient is 10 and hopeless if it
# is 1e-6. So we compare *relative* to the size of the numbers. CS231n's
# `rel_error` is
#
# $$\text{rel}(a, b) = \max_i \frac{|a_i - b_i|}{\max(10^{-8},\, |a_i| + |b_i|)}.$$
#
# Rough rules for float64 and a smooth function: above 1e-2 the gradient is
# probably wrong; 1e-4 is suspicious; 1e-7 and below is right. Hand vs twin
# should be near 1e-12 or better.
#
# Relative error alone has a blind spot: **gradients that are exactly zero**.
# Put an affine layer before batch normalization. Batch norm subtracts the
# batch mean, so the bias $b$ of the affine layer cancels out and its gradient
# is mathematically zero. The hand pass returns about 1e-16 of rounding noise,
# central differences about 1e-11 of noise, and their relative error
# $|a - b| / (|a| + |b|)$ is 100%. (CS231n's `rel_error` prints less only
# because of its $10^{-8}$ floor in the denominator, which is larger than both.)

# %%
x = rng.normal(size=(6, 5))
w = rng.normal(size=(5, 4))
b = rng.normal(size=4)
gamma, beta = np.ones(4), np.zeros(4)
dout = rng.normal(size=(6, 4))


def affine_then_batchnorm(b):
    a, _ = layers.affine_forward(x, w, b)
    return layers.batchnorm_forward(a, gamma, beta, {"mode": "train"})[0]


a, affine_cache = layers.affine_forward(x, w, b)
_, bn_cache = layers.batchnorm_forward(a, gamma, beta, {"mode": "train"})
da, _, _ = layers.batchnorm_backward(dout, bn_cache)
_, _, db = layers.affine_backward(da, affine_cache)
num_db = eval_numerical_gradient_array(affine_then_batchnorm, b.copy(), dout)

print("hand db:   ", db)
print("numeric db:", num_db)
verdict = compare(db, num_db, tolerance("numeric", np.float64), "numeric")
print(f"CS231n rel_error: {rel_error(db, num_db):.1e}   pure relative error: {verdict.max_rel_error:.2f}   "
      f"max abs error: {verdict.max_abs_error:.1e}")
print(f"combined rule |a - b| <= {verdict.tolerance.atol} + {verdict.tolerance.rtol} |b|: passed = {verdict.passed}")

# %% [markdown]
# Both answers are "zero" to the precision either method has. That is why
# twingrad judges with the combined rule of `numpy.testing.assert_allclose`,
#
# $$|a - b| \le \text{atol} + \text{rtol}\,|b|,$$
#
# elementwise: the absolute part covers entries that should be zero, the
# relative part covers the large ones. Relative error is still printed, because
# it is the number people know.
#
# ## Why float64: the two errors of a finite difference
#
# The central difference
#
# $$f'(x) \approx \frac{f(x+h) - f(x-h)}{2h}$$
#
# makes two errors. **Truncation**: by Taylor's theorem the formula is off by
# $\tfrac{h^2}{6} f'''(x)$, so it shrinks like $h^2$. **Rounding**: $f$ is
# computed with relative precision $\varepsilon$ (about 1e-16 in float64, 1e-7 in
# float32), and the difference of two nearly equal numbers divided by $2h$
# turns that into an error of about $\varepsilon |f| / h$. Small $h$ fights
# truncation and feeds rounding. The total is smallest near
# $h \approx \varepsilon^{1/3}$: about 1e-5 in float64 (CS231n's default) and
# 1e-2 in float32, where the best achievable error is far worse.
#
# Let us measure it on the softmax loss, against the exact gradient:

# %%
scores = rng.normal(size=(5, 4))
labels = rng.integers(0, 4, size=5)
_, exact = layers.softmax_loss(scores, labels)
steps = np.logspace(-9, 0, 28)
errors = {}
for dtype in (np.float32, np.float64):
    s = scores.astype(dtype)
    loss_of = lambda v: layers.softmax_loss(v, labels)[0]  # noqa: E731  (computed in v's dtype)
    errors[dtype] = [rel_error(eval_numerical_gradient(loss_of, s, verbose=False, h=dtype(h)), exact) for h in steps]

fig, ax = plt.subplots(figsize=(6, 4))
for dtype, style in ((np.float64, "o-"), (np.float32, "s-")):
    ax.loglog(steps, errors[dtype], style, label=np.dtype(dtype).name, markersize=4)
    eps = np.finfo(dtype).eps
    ax.axvline(eps ** (1 / 3), color=ax.lines[-1].get_color(), linestyle=":", linewidth=1)
ax.set_xlabel("step h")
ax.set_ylabel("relative error of the numeric gradient")
ax.set_title("Central differences: rounding (left) vs truncation (right)")
ax.legend(title="dtype (dotted: $\\varepsilon^{1/3}$)")
fig.tight_layout()
fig.savefig(FIGURES / "01_step_size_error.png", dpi=100)
plt.show()

best = {dtype: min(e) for dtype, e in errors.items()}
print(f"best relative error: float64 {best[np.float64]:.1e}, float32 {best[np.float32]:.1e}")
float32_errors = np.asarray(errors[np.float32])
at_cs231n_step = float32_errors[np.argmin(np.abs(np.log(steps / 1e-5)))]
useless = steps[float32_errors > 0.99]
print(f"float32 at float64's step h = 1e-5: relative error {at_cs231n_step:.1e}")
print(f"float32 steps whose numeric gradient is all rounding (relative error about 1): h <= {useless.max():.1e}")

# %% [markdown]
# The lines above give the numbers: float32's best numeric gradient is far
# worse than float64's, and at float64's step of $10^{-5}$ float32's is
# worthless. For steps that small, the change of the loss between $x - h$ and
# $x + h$ drowns in float32's rounding of the loss itself (the loss is about 1,
# and float32 numbers near 1 are about $10^{-7}$ apart), so the "gradient" is
# noise or zero, with relative error about 1. So gradient checks run in **float64**; float32 (used for speed in training) is
# checked with a larger step and looser, stated tolerances:

# %%
print("float64:", tolerance("numeric", np.float64), "   float32:", tolerance("numeric", np.float32))
affine = REGISTRY["affine"]
show(check_layer(affine, affine.sample(rng, (4, 6), 1.0, np.float32), rng))

# %% [markdown]
# ## A kink, on purpose
#
# Put one ReLU input within $h$ of zero: $x = 3\cdot 10^{-6}$ with
# $h = 10^{-5}$. The stencil $x \pm h$ lands on both sides of the kink, and the
# difference quotient averages the slopes 0 and 1: it measures neither.

# %%
h = 1e-5
x0 = 3e-6
relu_out = lambda v: np.maximum(v, 0)  # noqa: E731
print("numeric slope at 3e-6:", (relu_out(x0 + h) - relu_out(x0 - h)) / (2 * h), " true slope: 1")

# The numeric derivative at many points near 0 at once: each entry of v is an independent input.
near_zero = np.linspace(-3 * h, 3 * h, 121)
numeric_slope = eval_numerical_gradient(lambda v: relu_out(v).sum(), near_zero.copy(), verbose=False, h=h)

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(near_zero / h, (near_zero > 0).astype(float), label="true derivative (0 at x = 0)", linewidth=3, alpha=0.6)
ax.plot(near_zero / h, numeric_slope, label="central difference, step h", linestyle="--")
ax.axvspan(-1, 1, color="grey", alpha=0.15, label="stencil crosses the kink")
ax.set_xlabel("x / h")
ax.set_ylabel("dReLU/dx")
ax.set_title("Finite differences across the ReLU kink")
ax.legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "01_relu_kink.png", dpi=100)
plt.show()

# %% [markdown]
# Within one step of zero the numeric derivative ramps from 0 to 1 instead of
# jumping. The hand pass and the twin are still right (they agree on the
# subgradient); it is the *third opinion* that is meaningless there. This is
# what `check_layer` reports:

# %%
result = check_layer(relu, {"x": np.array([[0.5, -1.0, 3e-6]])}, rng)
show(result)
(g,) = result.gradients
print("elements left out of the numeric comparison:", g.vs_numeric.ignored)

# %% [markdown]
# Status **kink**, not fail: the stencil of one element changed the sign of a
# ReLU input, so that element was left out of the numeric comparison, and
# everything else (including hand vs autograd on *every* element) agreed. A
# wrong backward next to a kink is still a **fail**: here is ReLU's backward
# doubled, standing in for a student's bug.

# %%
def relu_backward_doubled(dout, cache):
    return 2 * layers.relu_backward(dout, cache)


# check_layer looks the hand functions up by name in `module`: twingrad's own, with one replaced.
doubled = types.SimpleNamespace(**{**vars(layers), "relu_backward": relu_backward_doubled})
show(check_layer(relu, {"x": np.array([[0.5, -1.0, 3e-6]])}, rng, module=doubled))

# %% [markdown]
# ## Summary
#
# - Derive, then check: hand vs autograd twin (exact, ~1e-12) and hand vs
#   central differences (approximate, ~1e-8 in float64).
# - Relative error is the familiar number; the verdict uses
#   $|a-b| \le \text{atol} + \text{rtol}|b|$, which survives gradients that are zero.
# - Check in float64 with $h \approx 10^{-5}$; float32 can only be checked loosely.
# - Kinks (ReLU at 0, the hinge at margin 0) make finite differences lie;
#   twingrad flags them as kinks instead of failing a correct layer.
