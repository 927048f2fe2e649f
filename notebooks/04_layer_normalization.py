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
# # 04 · Layer normalization
#
# Batch normalization (notebook 02) normalizes each **feature** with statistics
# taken over the **batch**. That ties every sample's output to the other samples
# in its minibatch, needs running averages for test time, and breaks down when
# batches are small. Layer normalization (Ba, Kiros and Hinton, 2016) takes the
# statistics of each **sample** over its own **features** instead. Same
# formulas, other axis:
#
# | | statistics over | depends on the rest of the batch | train vs test |
# |---|---|---|---|
# | batch norm | the $N$ samples, per feature (axis 0) | yes | batch stats vs running averages |
# | layer norm | the $D$ features, per sample (axis 1) | no | identical |
#
# This notebook derives the layer-norm backward pass, checks it against its
# twin, and then measures what "small batches" do to batch norm and not to
# layer norm.

# %%
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from twingrad import layers
from twingrad.data import load_digits
from twingrad.fc_net import FullyConnectedNet
from twingrad.gradcheck import check_layer
from twingrad.solver import Solver
from twingrad.twins import REGISTRY, run_hand, run_twin

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Forward
#
# For sample $n$ with features $x_{n1}, \dots, x_{nD}$:
#
# $$\mu_n = \frac1D\sum_{d} x_{nd}, \qquad
#   v_n = \frac1D\sum_{d} (x_{nd} - \mu_n)^2, \qquad
#   \hat x_{nd} = \frac{x_{nd} - \mu_n}{\sqrt{v_n + \varepsilon}}, \qquad
#   y_{nd} = \gamma_d\,\hat x_{nd} + \beta_d.$$
#
# $\gamma$ and $\beta$ are still one per **feature**, as in batch norm. With
# $\gamma = 1, \beta = 0$ every *row* of the output has mean 0 and variance 1
# (up to $\varepsilon$); the columns are left as they come.

# %%
x = rng.normal(loc=5.0, scale=3.0, size=(4, 6))
out, _ = layers.layernorm_forward(x, np.ones(6), np.zeros(6), {"eps": 1e-5})
print("row means:    ", out.mean(axis=1).round(6))
print("row variances:", out.var(axis=1).round(4))
print("column means (not normalized):", out.mean(axis=0).round(2))

# %% [markdown]
# ## Backward, node by node
#
# Fix one sample $n$ and drop the index $n$. The forward graph is
#
# $$\mu = \tfrac1D\textstyle\sum_d x_d \;\to\; c_d = x_d - \mu \;\to\;
#   v = \tfrac1D\textstyle\sum_d c_d^2 \;\to\; s = (v + \varepsilon)^{-1/2}
#   \;\to\; \hat x_d = c_d\,s \;\to\; y_d = \gamma_d \hat x_d + \beta_d.$$
#
# Let $g_d = \partial L/\partial y_d$ be the upstream gradient. Walk the graph
# backwards; a node used by several later nodes collects the sum of their
# contributions.
#
# 1. **Scale and shift** ($\gamma$, $\beta$ are shared by all samples, so sum over
#    the batch): $\dfrac{\partial L}{\partial \beta_d} = \sum_n g_{nd}$,
#    $\dfrac{\partial L}{\partial \gamma_d} = \sum_n g_{nd}\,\hat x_{nd}$, and
#    $h_d := \dfrac{\partial L}{\partial \hat x_d} = \gamma_d\, g_d$.
# 2. **Inverse std** ($s$ is used by every $\hat x_d$):
#    $\dfrac{\partial L}{\partial s} = \sum_d h_d\, c_d$.
# 3. **Variance**: $\dfrac{\partial L}{\partial v} = \dfrac{\partial L}{\partial s}\cdot\left(-\tfrac12\right)(v+\varepsilon)^{-3/2}
#    = -\tfrac12 s^3 \sum_d h_d c_d$.
# 4. **Centered** ($c_d$ feeds $\hat x_d$ and $v$):
#    $\dfrac{\partial L}{\partial c_d} = h_d\, s + \dfrac{\partial L}{\partial v}\,\dfrac{2 c_d}{D}$.
# 5. **Mean** ($\mu$ is subtracted from every $c_d$):
#    $\dfrac{\partial L}{\partial \mu} = -\sum_d \dfrac{\partial L}{\partial c_d}$.
# 6. **Input** ($x_d$ feeds $c_d$ directly and $\mu$ with weight $1/D$):
#    $\dfrac{\partial L}{\partial x_d} = \dfrac{\partial L}{\partial c_d} + \dfrac1D\dfrac{\partial L}{\partial \mu}$.
#
# **Simplify.** Substitute $c_d = \hat x_d / s$ into step 4:
# $\dfrac{\partial L}{\partial c_d} = s\left(h_d - \hat x_d\, \overline{h\hat x}\right)$ with
# bars meaning means over the $D$ features. Because $\sum_d \hat x_d = 0$, step 5
# gives $\dfrac{\partial L}{\partial \mu} = -D\, s\, \bar h$, and step 6 collapses to
#
# $$\boxed{\;\frac{\partial L}{\partial x_d} = s\left(h_d - \bar h - \hat x_d\,\overline{h \hat x}\right),
#   \qquad h_d = \gamma_d\, g_d\;}$$
#
# In words: the gradient reaching $\hat x$, minus its mean, minus its projection
# onto $\hat x$, scaled by $1/\text{std}$. Normalizing removes two directions
# (shifting all features, scaling all features), and the gradient loses its
# component along both.
#
# Batch norm gives the *same* formula along the other axis (notebook 02). One
# difference matters in code: in batch norm $\gamma_d$ is constant along the
# normalized axis and can be pulled out of the means; here it varies along it,
# so $h = \gamma g$ must be formed **before** taking the means.
#
# `twingrad.layers.layernorm_backward` implements the boxed formula. Here it is
# against the autograd twin `twingrad.functional.layernorm` and central
# differences:

# %%
spec = REGISTRY["layernorm"]
inputs = spec.sample(rng, (5, 7), 1.0, np.float64)
dout = rng.normal(size=(5, 7))
_, hand = run_hand(spec, inputs, dout)
_, twin = run_twin(spec, inputs, dout)
for name in spec.gradient_names:
    print(f"{name:7} max |hand - twin| = {np.max(np.abs(hand[name] - twin[name])):.1e}")

result = check_layer(spec, inputs, rng)
print("three-way check:", result.status,
      {g.gradient: f"{max(g.vs_autograd.max_rel_error, g.vs_numeric.max_rel_error):.0e}" for g in result.gradients})

# %% [markdown]
# And the classic bug from adapting batch-norm code by switching the axis:
# leaving $\gamma$ outside the means. The checker blames exactly `dx`:

# %%
def layernorm_backward_gamma_outside(dout, cache):
    x_hat, gamma = cache.x_hat, cache.gamma
    dx = gamma * cache.inv_std * (dout - dout.mean(axis=1, keepdims=True)
                                  - x_hat * np.mean(dout * x_hat, axis=1, keepdims=True))
    return dx, np.sum(dout * x_hat, axis=0), dout.sum(axis=0)


student = types.SimpleNamespace(**{**vars(layers), "layernorm_backward": layernorm_backward_gamma_outside})
result = check_layer(spec, inputs, rng, module=student)
for g in result.gradients:
    print(f"{g.gradient:7} {g.status:5} worst element {g.vs_autograd.worst_index}: "
          f"hand {g.vs_autograd.actual:+.4f} vs autograd {g.vs_autograd.expected:+.4f}")

# %% [markdown]
# With $\gamma = 1$ the two formulas coincide: a test with default parameters
# would never see this bug. The registry draws random $\gamma$ for that reason.
#
# ## Small batches: what batch norm's statistics cost
#
# In train mode, batch norm normalizes a sample with the mean and variance of
# *its minibatch*. So the same sample comes out differently depending on which
# other samples it was drawn with. Let us measure it: take one digit, pass it
# through a fixed random affine layer, and normalize it inside many random
# minibatches of size $B$.

# %%
data = load_digits()
projection = rng.normal(size=(64, 16)) / 8.0
features = data["X_train"] @ projection  # (N, 16) pre-activations of a hidden layer
sample = features[0]
gamma, beta = np.ones(16), np.zeros(16)
population = (sample - features.mean(axis=0)) / features.std(axis=0)  # what a huge batch would give

batch_sizes = [2, 4, 8, 16, 32, 64, 128, 256]
draws = 300
bn_outputs, ln_outputs = {}, {}
for size in batch_sizes:
    bn, ln = [], []
    for _ in range(draws):
        others = features[1 + rng.choice(len(features) - 1, size - 1, replace=False)]
        batch = np.vstack([sample, others])
        bn.append(layers.batchnorm_forward(batch, gamma, beta, {"mode": "train"})[0][0])
        ln.append(layers.layernorm_forward(batch, gamma, beta)[0][0])
    bn_outputs[size], ln_outputs[size] = np.array(bn), np.array(ln)

bn_noise = [np.sqrt(np.mean((bn_outputs[b] - population) ** 2)) for b in batch_sizes]
ln_spread = max(np.ptp(ln_outputs[b], axis=0).max() for b in batch_sizes)
print(f"layer norm: the sample's output varies across batches by at most {ln_spread:.1e}")

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
feature = 0
for size in (4, 16, 128):
    left.hist(bn_outputs[size][:, feature], bins=30, alpha=0.5, density=True, label=f"batch norm, B = {size}")
left.axvline(population[feature], color="k", linestyle="--", label="full-data statistics")
left.set_xlabel(f"batch-norm output, feature {feature} of one fixed digit")
left.set_ylabel("density over random minibatches")
left.set_title("One sample, many minibatches (layer norm: one value)")
left.legend(fontsize=8)

right.loglog(batch_sizes, bn_noise, "o-", label="batch norm")
right.loglog(batch_sizes, bn_noise[0] * np.sqrt(2 / np.array(batch_sizes)), ":", color="grey",
             label=r"$\propto 1/\sqrt{B}$")
right.set_xlabel("batch size B")
right.set_ylabel("RMS deviation from full-data normalization")
right.set_title("Noise of batch statistics (layer norm: 0)")
right.legend()
fig.tight_layout()
fig.savefig(FIGURES / "04_bn_statistics_noise.png", dpi=100)
plt.show()

# %% [markdown]
# The batch-norm output of one sample is a random variable whose spread shrinks
# only like $1/\sqrt{B}$; at $B = 2$ each feature is normalized with two
# numbers, so the output is $\pm 1$ whatever the sample is. A little of this
# noise regularizes; a lot of it means that training sees a different function
# than the one we test with (test mode uses the running averages). Layer norm
# gives each sample the same output in any batch, and at any batch size,
# including 1, where batch norm cannot even run in train mode:

# %%
one = features[:1]
print("layer norm, batch of 1:", layers.layernorm_forward(one, gamma, beta)[0][0, :4].round(3), "...")
try:
    layers.batchnorm_forward(one, gamma, beta, {"mode": "train"})
except ValueError as error:
    print("batch norm, batch of 1:", error)

# %% [markdown]
# ## Training with small batches
#
# Now the real thing: a 3-hidden-layer network on the digits, trained for two
# epochs with Adam at several batch sizes, with batch norm, with layer norm, and
# with neither. The same number of passes over the data each time (smaller
# batches take more, noisier steps).

# %%
batch_sizes = [2, 4, 8, 32, 128]
final_val = {}
for normalization in ("batchnorm", "layernorm", None):
    accuracies = []
    for size in batch_sizes:
        model = FullyConnectedNet([64, 64, 64], input_dim=64, normalization=normalization,
                                  weight_scale=0.1, dtype=np.float64, seed=0)
        solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                        num_epochs=2, batch_size=size, seed=0, verbose=False)
        solver.train()
        accuracies.append(solver.check_accuracy(data["X_val"], data["y_val"]))
    final_val[normalization] = accuracies
    print(f"{str(normalization):10}", " ".join(f"B={b}: {a:.3f}" for b, a in zip(batch_sizes, accuracies)))
print("steps in two epochs:", " ".join(f"B={b}: {2 * max(len(data['X_train']) // b, 1)}" for b in batch_sizes))

fig, ax = plt.subplots(figsize=(6, 4))
for normalization, style in (("batchnorm", "o-"), ("layernorm", "s-"), (None, "^:")):
    ax.semilogx(batch_sizes, final_val[normalization], style, base=2, label=str(normalization or "no normalization"))
ax.set_xlabel("batch size")
ax.set_ylabel("validation accuracy (test mode)")
ax.set_title("Two epochs of Adam on digits, 64-[64]x3-10")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "04_val_accuracy_vs_batch_size.png", dpi=100)
plt.show()

# %% [markdown]
# At batch size 2 the batch-norm network trains on one function (normalized by
# pairs) and is tested on another (normalized by running averages): its
# validation accuracy collapses. Layer norm trains as well on pairs as on
# batches of 8 or 32: its output does not depend on the batch. Its drop at 128
# is shared by every network and is not the batch's doing: two epochs of
# batches of 128 are only about 20 steps. In that short run both normalized
# networks beat the plain one, which is the point of normalizing in the first
# place.
#
# ## Summary
#
# - Layer norm = batch norm's formulas along the feature axis; no running
#   averages, same in train and test, works for any batch size, including 1.
# - Backward: $\partial L/\partial x = s\,(h - \bar h - \hat x\,\overline{h\hat x})$ per
#   sample, with $h = \gamma g$ formed before the means.
# - Batch norm's batch statistics are noisy like $1/\sqrt{B}$; with tiny batches
#   its train and test behaviour part ways.
