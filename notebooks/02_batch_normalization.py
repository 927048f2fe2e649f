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
# # 02 · Batch normalization
#
# Deep networks are hard to train when the scale of the activations drifts from
# layer to layer: too small and the signal (and the gradient) vanishes, too
# large and it explodes. Batch normalization (Ioffe and Szegedy, 2015) fixes the
# scale inside the network: it standardizes every feature over the minibatch,
# then lets the network choose the scale and shift it wants with two learnable
# parameters.
#
# In this notebook: the forward pass; the backward pass derived node by node
# through the computational graph; the simplified closed form; both checked
# against the autograd twin; what the simplification buys in time; train vs
# test mode and the running averages; and the experiment that shows why batch
# norm matters, training deep networks across weight-initialisation scales.

# %%
import ast
import inspect
import re
import textwrap
import timeit
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from twingrad import layers
from twingrad.data import load_digits
from twingrad.fc_net import FullyConnectedNet
from twingrad.gradcheck import check_layer, rel_error
from twingrad.solver import Solver
from twingrad.twins import REGISTRY, run_hand, run_twin

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Forward
#
# A minibatch $x \in \mathbb{R}^{N\times D}$: $N$ samples, $D$ features. For each
# feature $d$ separately (so we drop the index $d$):
#
# $$\mu = \frac1N \sum_{n=1}^N x_n, \qquad
#   \sigma^2 = \frac1N \sum_{n=1}^N (x_n - \mu)^2, \qquad
#   \hat x_n = \frac{x_n - \mu}{\sqrt{\sigma^2 + \varepsilon}}, \qquad
#   y_n = \gamma\,\hat x_n + \beta.$$
#
# $\varepsilon = 10^{-5}$ keeps the division safe for a constant feature;
# $\sigma^2$ is the *biased* variance (divide by $N$), as in the paper. If the
# network learns $\gamma = \sigma$ and $\beta = \mu$ it can undo the
# normalization entirely, so nothing is lost in expressiveness.

# %%
x = rng.normal(loc=[5.0, -3.0, 0.0], scale=[3.0, 0.1, 20.0], size=(200, 3))
print("before:      means", x.mean(axis=0).round(2), " stds", x.std(axis=0).round(2))
out, _ = layers.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
print("gamma=1, beta=0:  means", out.mean(axis=0).round(6), " stds", out.std(axis=0).round(4))
gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, -1.0, 10.0])
out, _ = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
print("gamma, beta set:  means", out.mean(axis=0).round(6), " stds", out.std(axis=0).round(4))

# %% [markdown]
# ## Backward, node by node
#
# The computational graph fits in one line. For one feature, with $n$ running
# over the batch:
#
# $$x \;\xrightarrow{\;\text{mean}\;}\; \mu, \qquad
#   c_n = x_n - \mu, \qquad
#   v = \frac1N\sum_n c_n^2, \qquad
#   s = (v + \varepsilon)^{-1/2}, \qquad
#   \hat x_n = c_n\, s, \qquad
#   y_n = \gamma\,\hat x_n + \beta.$$
#
# Six nodes: mean $\mu$, centered $c$, variance $v$, inverse standard deviation
# $s$, normalized $\hat x$, scale and shift $y$. Let $g_n = \partial L/\partial y_n$
# be the upstream gradient. We walk the graph from the top. The one rule to
# remember: **a node that feeds several others receives the sum of their
# gradients** (the multivariate chain rule).
#
# **Node 6, scale and shift** $y_n = \gamma \hat x_n + \beta$. $\beta$ and $\gamma$
# are used by every sample, so their gradients sum over the batch:
#
# $$\frac{\partial L}{\partial \beta} = \sum_n g_n, \qquad
#   \frac{\partial L}{\partial \gamma} = \sum_n g_n\,\hat x_n, \qquad
#   \frac{\partial L}{\partial \hat x_n} = \gamma\, g_n.$$
#
# **Node 5, normalize** $\hat x_n = c_n s$. Each $c_n$ gets its own term; $s$ is
# shared by all $n$:
#
# $$\frac{\partial L}{\partial s} = \sum_n \frac{\partial L}{\partial \hat x_n}\, c_n, \qquad
#   \frac{\partial L}{\partial c_n}\Big|_{\text{via }\hat x} = \frac{\partial L}{\partial \hat x_n}\, s.$$
#
# **Node 4, inverse std** $s = (v+\varepsilon)^{-1/2}$, so
# $ds/dv = -\tfrac12 (v+\varepsilon)^{-3/2} = -\tfrac12 s^3$:
#
# $$\frac{\partial L}{\partial v} = -\frac12\, s^3\, \frac{\partial L}{\partial s}.$$
#
# **Node 3, variance** $v = \frac1N \sum_n c_n^2$, so $\partial v/\partial c_n = 2c_n/N$.
# This is the second path into $c_n$; add it to the first:
#
# $$\frac{\partial L}{\partial c_n} = \frac{\partial L}{\partial \hat x_n}\, s
#   + \frac{\partial L}{\partial v}\,\frac{2 c_n}{N}.$$
#
# **Node 2, center** $c_n = x_n - \mu$. Each $x_n$ gets $\partial L/\partial c_n$
# directly; $\mu$ is subtracted from every $c_n$:
#
# $$\frac{\partial L}{\partial \mu} = -\sum_n \frac{\partial L}{\partial c_n}.$$
#
# (Strictly, $v$ depends on $\mu$ too, through $c$; we went through $c$, so that
# path is already counted. Computed directly it would be
# $\frac{\partial L}{\partial v}\cdot\left(-\frac2N\sum_n c_n\right) = 0$ anyway,
# because centered values sum to zero.)
#
# **Node 1, mean** $\mu = \frac1N\sum_n x_n$, so every $x_n$ receives $1/N$ of
# $\partial L/\partial\mu$, on top of its direct path through $c_n$:
#
# $$\frac{\partial L}{\partial x_n} = \frac{\partial L}{\partial c_n} + \frac1N\,\frac{\partial L}{\partial \mu}.$$
#
# That is the whole backward pass. `twingrad.layers.batchnorm_backward` is this
# derivation, one line per node (the cache holds $c$, $v$, $s$, $\hat x$ and
# $\gamma$ from the forward pass). Printed below without its docstring and
# without the argument checks at its top (is the cache a train-mode batch-norm
# cache, does `dout` have the output's shape), which are not part of the
# derivation:

# %%
def show_derivation(function):
    """Print a function's source without its docstring and its argument checks.

    A check is a line that only validates (``dout = check.upstream(...)``); a
    cache check around the unpacking is shown as the bare ``cache``.
    """
    lines = inspect.getsource(function).splitlines()
    docstring = ast.parse(textwrap.dedent("\n".join(lines))).body[0].body[0]
    body = lines[: docstring.lineno - 1] + lines[docstring.end_lineno:]
    body = [re.sub(r"_require_train_cache\([^)]*\)", "cache", line) for line in body
            if not re.match(r"\s*dout = check\.upstream\(", line)]
    print("\n".join(body))


show_derivation(layers.batchnorm_backward)

# %% [markdown]
# ## The simplified form
#
# Now collapse the chain by hand. Write $h_n = \partial L/\partial \hat x_n = \gamma g_n$
# and use $c_n = \hat x_n / s$. Then
# $\partial L/\partial s = \frac1s \sum_m h_m \hat x_m$, so
# $\partial L/\partial v = -\frac{s^2}{2} \sum_m h_m \hat x_m$ and
#
# $$\frac{\partial L}{\partial c_n}
#   = s\, h_n - \frac{s^2}{2}\Big(\sum_m h_m \hat x_m\Big) \frac{2\hat x_n}{N s}
#   = s\Big(h_n - \frac{\hat x_n}{N}\sum_m h_m \hat x_m\Big).$$
#
# Summing over $n$, the second term vanishes because $\sum_n \hat x_n = 0$, so
# $\partial L/\partial \mu = -s \sum_m h_m$. Node 1 then gives
#
# $$\frac{\partial L}{\partial x_n} = s\Big(h_n - \frac1N\sum_m h_m - \frac{\hat x_n}{N}\sum_m h_m \hat x_m\Big).$$
#
# Finally, $\gamma$ is the same for the whole column, so $h = \gamma g$ lets us
# pull it out, and the two sums are gradients we already have:
# $\sum_m g_m = \partial L/\partial\beta$ and $\sum_m g_m\hat x_m = \partial L/\partial\gamma$.
#
# $$\boxed{\;\frac{\partial L}{\partial x_n} = \frac{\gamma\, s}{N}\left(N g_n
#   - \frac{\partial L}{\partial \beta} - \hat x_n\,\frac{\partial L}{\partial \gamma}\right)\;}$$
#
# Read it as: the upstream gradient with its mean removed and its component
# along $\hat x$ removed, times $\gamma/\sigma$. Batch norm's output does not
# change when the whole column is shifted or scaled, so the gradient has no
# component in those two directions. This is `batchnorm_backward_alt`.
#
# ## Both against the twin
#
# The twin `twingrad.functional.batchnorm` is five lines of `autograd.numpy`;
# autograd differentiates it with no derivation at all.

# %%
inputs = REGISTRY["batchnorm"].sample(rng, (8, 5), 1.0, np.float64)
dout = rng.normal(size=(8, 5))
staged = run_hand(REGISTRY["batchnorm"], inputs, dout)[1]
closed = run_hand(REGISTRY["batchnorm_alt"], inputs, dout)[1]
twin = run_twin(REGISTRY["batchnorm"], inputs, dout)[1]
print(f"{'':7} {'staged vs twin':>15} {'closed vs twin':>15} {'staged vs closed':>17}")
for name in ("dx", "dgamma", "dbeta"):
    print(f"{name:7} {rel_error(staged[name], twin[name]):15.1e} {rel_error(closed[name], twin[name]):15.1e} "
          f"{rel_error(staged[name], closed[name]):17.1e}")

for name in ("batchnorm", "batchnorm_alt"):
    result = check_layer(REGISTRY[name], inputs, rng)
    print(f"{name:14} three-way check: {result.status}")

# %% [markdown]
# ## What the simplification buys
#
# The staged version makes about a dozen passes over the $(N, D)$ data and
# allocates a temporary for each; the closed form makes a handful. Timings on
# this machine (they vary from run to run; the ratio is what matters):

# %%
for shape, number in [((100, 100), 200), ((500, 500), 10)]:
    x = rng.normal(size=shape)
    dout = rng.normal(size=shape)
    _, cache = layers.batchnorm_forward(x, np.ones(shape[1]), np.zeros(shape[1]), {"mode": "train"})
    seconds = {}
    for fn in (layers.batchnorm_backward, layers.batchnorm_backward_alt):
        # the best of 5 repeats: the least disturbed by whatever else the machine is doing
        seconds[fn.__name__] = min(timeit.repeat(lambda: fn(dout, cache), repeat=5, number=number)) / number
    staged_s, closed_s = seconds["batchnorm_backward"], seconds["batchnorm_backward_alt"]
    print(f"N, D = {shape}: staged {staged_s * 1e6:7.1f} µs, closed form {closed_s * 1e6:7.1f} µs, "
          f"speedup x{staged_s / closed_s:.1f}")

# %% [markdown]
# ## Train mode, test mode, and the running averages
#
# At test time we want a prediction for one sample that does not depend on
# which other samples happen to share its batch. So batch norm keeps an
# exponential moving average of the batch statistics during training,
#
# $$\mu_{\text{run}} \leftarrow m\,\mu_{\text{run}} + (1-m)\,\mu_{\text{batch}}, \qquad
#   \sigma^2_{\text{run}} \leftarrow m\,\sigma^2_{\text{run}} + (1-m)\,\sigma^2_{\text{batch}},$$
#
# and in **test mode** normalizes with those instead. The momentum $m$ (0.9 by
# default) is the weight of the *old* value, as in CS231n. (PyTorch's `momentum`
# is the weight of the new one, 0.1 by default: the same thing.) Both averages
# start at zero, so after $k$ steps they have covered a fraction $1 - m^k$ of
# the way. How many steps to cover 90%, the first $k$ with $m^k \le 0.1$:

# %%
for m in (0.9, 0.99):
    k = int(np.ceil(np.log(0.1) / np.log(m)))
    print(f"m = {m}: 90% after {k} steps (m^{k - 1} = {m ** (k - 1):.4f}, m^{k} = {m ** k:.4f})")

# %% [markdown]
#
# Let us feed batches of 32 from a distribution with mean 3 and variance 4 and
# watch the running averages in `bn_param` converge. The running variance
# averages the *biased* batch variance (divided by $N$, not $N - 1$), whose
# expected value is $\frac{N-1}{N}\sigma^2$, not $\sigma^2$: with batches of 32
# it settles near $\frac{31}{32}\cdot 4 = 3.875$, about 3% below the true
# variance, and so below the curve $4\,(1 - m^k)$. (PyTorch keeps the unbiased
# variance in its running average for this reason; CS231n and twingrad keep the
# biased one, the value train mode normalizes with.)

# %%
true_mean, true_var = 3.0, 4.0
batch_size, features = 32, 64  # many features: their average shows where the variance settles
biased_var = true_var * (batch_size - 1) / batch_size  # E[biased batch variance]
print(f"expected biased batch variance: {biased_var}")
steps = 150
history = {}
for momentum in (0.9, 0.99):
    bn_param = {"mode": "train", "momentum": momentum}
    means, variances, all_variances = [], [], []
    for _ in range(steps):
        batch = rng.normal(true_mean, np.sqrt(true_var), size=(batch_size, features))
        layers.batchnorm_forward(batch, np.ones(features), np.zeros(features), bn_param)
        means.append(bn_param["running_mean"][0])
        variances.append(bn_param["running_var"][0])
        all_variances.append(bn_param["running_var"])
    history[momentum] = (means, variances, bn_param, all_variances)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, index, truth, label in ((axes[0], 0, true_mean, "running_mean"), (axes[1], 1, true_var, "running_var")):
    for momentum, style in ((0.9, "-"), (0.99, "--")):
        ax.plot(np.arange(1, steps + 1), history[momentum][index], style, label=f"momentum {momentum}")
        ax.plot(np.arange(1, steps + 1), truth * (1 - momentum ** np.arange(1, steps + 1)), ":", color="grey")
    ax.axhline(truth, color="k", linewidth=0.8)
    if label == "running_var":
        ax.axhline(biased_var, color="tab:red", linewidth=0.8, label="(N-1)/N x true variance")
    ax.set_xlabel("training step")
    ax.set_title(f"{label} (one feature); dotted: $1 - m^k$ of the way")
    ax.legend()
axes[0].set_ylabel("running average")
fig.tight_layout()
fig.savefig(FIGURES / "02_running_averages.png", dpi=100)
plt.show()

tail = slice(steps // 2, None)  # the second half, after the 0.9 average has settled
settled = np.mean([v.mean() for v in history[0.9][3][tail]])
print(f"momentum 0.9, running_var over all {features} features and steps {steps // 2}-{steps}: "
      f"{settled:.3f} (true variance {true_var}, biased expectation {biased_var})")

# %% [markdown]
# In test mode the layer is a fixed affine map: $y = \gamma (x - \mu_{\text{run}})/\sqrt{\sigma^2_{\text{run}}+\varepsilon} + \beta$.
# With averages that have converged, a fresh batch comes out standardized; with
# averages that are still near zero (a network evaluated too early, or with a
# momentum too close to 1 for the number of steps), it does not:

# %%
fresh = rng.normal(true_mean, np.sqrt(true_var), size=(1000, features))
for momentum in (0.9, 0.99):
    bn_param = dict(history[momentum][2], mode="test")
    out, _ = layers.batchnorm_forward(fresh, np.ones(features), np.zeros(features), bn_param)
    print(f"momentum {momentum}: test-mode output mean {out.mean():+.3f}, std {out.std():.3f}")
untrained = {"mode": "test", "running_mean": np.zeros(features), "running_var": np.zeros(features)}
out, _ = layers.batchnorm_forward(fresh, np.ones(features), np.zeros(features), untrained)
print(f"never trained (zeros): test-mode output mean {out.mean():+.1f}, std {out.std():.1f}")

# %% [markdown]
# ## Why bother: deep networks and the scale of the initial weights
#
# The CS231n experiment: train a 6-layer network (five hidden layers of 50
# units) with and without batch norm, starting from weights drawn with standard
# deviations from $10^{-4}$ to $1$. Without normalization, each layer multiplies
# the scale of the activations by roughly $\text{weight scale}\times\sqrt{\text{fan-in}/2}$
# (a sum of fan-in terms, half of them zeroed by the ReLU): $\times\sqrt{50/2} = 5$
# for the hidden layers. Six layers compound it; the rule's factor and the
# measured one, the RMS of the initial network's scores over that of its input:

# %%
data = load_digits()
X_probe = data["X_train"][:200]
for scale in (1e-3, 1.0):
    model = FullyConnectedNet([50] * 5, input_dim=64, weight_scale=scale, dtype=np.float64, seed=0)
    fan_ins = [64, 50, 50, 50, 50, 50]
    rule = np.prod([scale * np.sqrt(f / 2) for f in fan_ins])
    measured = np.sqrt(np.mean(model.loss(X_probe) ** 2)) / np.sqrt(np.mean(X_probe**2))
    print(f"weight scale {scale:g}: rule's factor {rule:.1e}, measured {measured:.1e}")

# %% [markdown]
# At $10^{-3}$ the signal reaching the scores has all but vanished, and the
# gradients reaching the first layers with it: the network cannot start
# learning. At $1$ it has grown by four orders of magnitude. With batch norm
# every layer's input is rescaled to unit variance, whatever the weights.
#
# Kept small so it runs in seconds: digits (1297 training images of 8x8),
# 5 epochs of Adam, batch size 50.

# %%
weight_scales = np.logspace(-4, 0, num=11)
results = {"batchnorm": [], None: []}
for scale in weight_scales:
    for normalization in results:
        model = FullyConnectedNet([50] * 5, input_dim=64, normalization=normalization,
                                  weight_scale=scale, dtype=np.float64, seed=0)
        solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                        num_epochs=5, batch_size=50, seed=0, verbose=False)
        solver.train()
        results[normalization].append((max(solver.train_acc_history), solver.best_val_acc, solver.loss_history[-1]))
print("best validation accuracy by weight scale")
print(f"{'weight scale':14}" + " ".join(f"{s:8.1e}" for s in weight_scales))
for normalization in results:
    label = "batch norm" if normalization else "baseline"
    print(f"{label:14}" + " ".join(f"{r[1]:8.2f}" for r in results[normalization]))

fig, axes = plt.subplots(1, 3, figsize=(14, 4))
titles = ("best training accuracy", "best validation accuracy", "final training loss")
for column, (ax, title) in enumerate(zip(axes, titles)):
    for normalization, style in (("batchnorm", "o-"), (None, "s--")):
        values = [r[column] for r in results[normalization]]
        ax.semilogx(weight_scales, values, style, label="batch norm" if normalization else "baseline")
    ax.set_xlabel("weight initialisation scale")
    ax.set_title(title)
    ax.legend()
axes[2].set_yscale("log")
fig.suptitle("6-layer network on digits, with and without batch normalization")
fig.tight_layout()
fig.savefig(FIGURES / "02_weight_scale_experiment.png", dpi=100)
plt.show()

# %% [markdown]
# The baseline trains only in a narrow window of initial scales around 0.1;
# with batch norm the network trains well across two orders of magnitude and
# learns something everywhere. Batch norm's own limits show at the ends. At the
# smallest scales the affine outputs have a variance near $\varepsilon$, which
# then dominates the denominator, so they are not fully rescaled. At the largest,
# the hidden layers are still normalized, but the last affine layer (no batch
# norm after it) turns them into huge scores, and Adam's steps, about the
# learning rate in size whatever the weights, change large weights only slowly.
#
# ## Summary
#
# - Forward: standardize each feature over the batch, then $\gamma\hat x + \beta$.
# - Backward: six nodes, each a line; a node used twice sums its gradients.
# - Simplified: $\partial L/\partial x = \frac{\gamma s}{N}\,(N g - \partial L/\partial\beta - \hat x\,\partial L/\partial\gamma)$,
#   equal to the staged form to rounding, and several times faster.
# - Train mode uses batch statistics and updates running averages; test mode uses
#   the running averages, which start at zero and need time to converge.
# - Batch norm makes deep networks trainable across a wide range of initial scales.
