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
# # 03 · Dropout
#
# Dropout (Srivastava et al., 2014) regularizes a network by switching off a
# random subset of its hidden units at every training step. No unit can rely on
# one particular other unit being there, so the network learns redundant,
# more robust features; it behaves a little like an average over many thinned
# networks that share their weights.
#
# In this notebook: inverted dropout and why it is "inverted"; its backward
# pass; the mask, its seed, and why the hand pass and the twin draw the same
# one; train vs test mode; and the regularization effect on a small training set.

# %%
from pathlib import Path

import autograd.numpy as anp
import matplotlib.pyplot as plt
import numpy as np
from autograd import grad

from twingrad import functional as F
from twingrad import layers
from twingrad.data import load_digits
from twingrad.fc_net import FullyConnectedNet
from twingrad.gradcheck import check_layer
from twingrad.solver import Solver
from twingrad.twins import REGISTRY

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Inverted dropout
#
# In twingrad (and CS231n) $p$ is the probability of **dropping** a unit. In
# train mode each unit gets an independent mask value
#
# $$m_i = \begin{cases} 0 & \text{with probability } p,\\[2pt] \dfrac{1}{1-p} & \text{with probability } 1-p,\end{cases}
#   \qquad y_i = m_i\, x_i,$$
#
# so that $\mathbb{E}[y_i] = (1-p)\cdot\frac{x_i}{1-p} = x_i$. In test mode the
# layer is the identity, $y = x$. Scaling the kept units up during *training*
# (rather than scaling everything down by $1-p$ at *test* time, as the original
# paper did) is what "inverted" means: the network used at test time needs no
# change at all, and a model trained with one $p$ can be evaluated without
# knowing it.

# %%
x = np.ones((500, 500))
for p in (0.25, 0.5, 0.75):
    out, _ = layers.dropout_forward(x, {"mode": "train", "p": p, "seed": 0})
    test_out, _ = layers.dropout_forward(x, {"mode": "test", "p": p})
    print(f"p = {p}: fraction dropped {np.mean(out == 0):.3f}, kept units = {out.max():.3f}, "
          f"train-mode mean {out.mean():.3f}, test-mode mean {test_out.mean():.3f}")

# %% [markdown]
# To see a mask, apply it to the pixels of a digit (in the network, dropout
# acts on hidden units, not pixels; this is only a picture). Kept pixels come
# out brighter by $1/(1-p)$:

# %%
raw = load_digits(subtract_mean=False)
digit = raw["X_train"][0].reshape(8, 8)
fig, axes = plt.subplots(1, 4, figsize=(9, 2.6))
axes[0].imshow(digit, cmap="gray_r", vmin=0, vmax=2)
axes[0].set_title(f"a '{raw['y_train'][0]}', test mode")
for ax, p in zip(axes[1:], (0.25, 0.5, 0.75)):
    out, _ = layers.dropout_forward(digit, {"mode": "train", "p": p, "seed": 1})
    ax.imshow(out, cmap="gray_r", vmin=0, vmax=2)
    ax.set_title(f"train mode, p = {p}")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
fig.savefig(FIGURES / "03_dropout_masks.png", dpi=100)
plt.show()

# %% [markdown]
# ## Backward
#
# $y_i = m_i x_i$ with $m$ a constant (drawn, not computed from $x$), so
#
# $$\frac{\partial L}{\partial x_i} = m_i \,\frac{\partial L}{\partial y_i}:$$
#
# the gradient flows only through the kept units, scaled by the same $1/(1-p)$.
# The backward pass must use **the same mask** as the forward pass, which is
# why the mask goes into the cache. In test mode the gradient passes unchanged.
#
# ## The mask and its seed
#
# A mask is random, so how can three opinions agree on a gradient? By fixing the
# mask with a seed. twingrad draws the mask from `np.random.default_rng(seed)`,
# a private generator: the same seed gives the same mask in the hand pass and
# in the twin, and the global `np.random` state is never touched (the CS231n
# original called `np.random.seed(seed)`, which silently reset every other
# random stream in the program).

# %%
x = rng.normal(size=(4, 6))
param = {"mode": "train", "p": 0.5, "seed": 42}
hand_out, cache = layers.dropout_forward(x, param)
again, _ = layers.dropout_forward(x, param)
other, _ = layers.dropout_forward(x, {**param, "seed": 43})
twin_out = F.dropout(x, 0.5, seed=42)
print("same seed, same mask:          ", np.array_equal(hand_out, again))
print("another seed, another mask:    ", not np.array_equal(hand_out, other))
print("hand pass and twin, same seed: ", np.array_equal(hand_out, twin_out))

global_state = np.random.get_state()[1].copy()
layers.dropout_forward(x, param)
print("global np.random state untouched:", np.array_equal(global_state, np.random.get_state()[1]))

# %% [markdown]
# With the mask fixed, the backward pass can be checked like any other layer:
# against autograd through the twin, and against central differences.

# %%
dout = rng.normal(size=x.shape)
dx = layers.dropout_backward(dout, cache)
twin_dx = grad(lambda v: anp.sum(F.dropout(v, 0.5, seed=42) * dout))(x)
print("max |hand - twin|:", np.max(np.abs(dx - twin_dx)))
print("mask * dout == dx:", np.array_equal(dx, cache.mask * dout))

spec = REGISTRY["dropout"]
for p in (0.25, 0.5, 0.8):
    inputs = {"x": rng.normal(size=(5, 7)), "dropout_param": {"mode": "train", "p": p, "seed": 7}}
    print(f"p = {p}: three-way check {check_layer(spec, inputs, rng).status}")

# %% [markdown]
# ## In a network: train vs test
#
# `FullyConnectedNet(dropout=p)` puts a dropout layer after every hidden ReLU.
# `model.loss(X, y)` runs in train mode, with masks drawn from
# `model.dropout_param["seed"]`; `model.loss(X)` runs in test mode (no
# dropout), so predictions are deterministic.

# %%
data = load_digits()
model = FullyConnectedNet([100], input_dim=64, dropout=0.5, weight_scale=0.1, dtype=np.float64, seed=0)
X, y = data["X_val"][:3], data["y_val"][:3]
print("test mode, twice: identical scores:", np.array_equal(model.loss(X), model.loss(X)))
loss_1, _ = model.loss(X, y)
loss_2, _ = model.loss(X, y)
print(f"train mode, same dropout seed: losses {loss_1:.4f} and {loss_2:.4f} (the same masks)")
model.dropout_param["seed"] = 1  # what Solver does before every step
loss_3, _ = model.loss(X, y)
print(f"train mode, another dropout seed: loss {loss_3:.4f} (other masks)")

# %% [markdown]
# ## The regularization effect
#
# Dropout earns its keep when a network is large enough to memorise its
# training set. So: only **100** training digits, one hidden layer of 512
# units, and initial weights on the large side (0.3), which makes memorising
# easy. Without dropout the network reaches 100% training
# accuracy quickly and validation accuracy stalls; with $p = 0.5$ it is trained
# on a different thinned network at every step. Three seeds each, averaged.
#
# One practical point. `FullyConnectedNet(seed=...)` seeds the weight
# initialisation *and*, as in CS231n, puts the seed into `dropout_param`, which
# fixes the dropout mask: exactly what a gradient check needs, and exactly what
# training must not have (the same units would be dropped at every step).
# twingrad's `Solver` gives the
# network a new dropout seed, drawn from its own seeded generator, before every
# step: the masks are fresh at every step, and the whole run (curves included)
# is still reproducible from the solver's seed. Layer $i$ draws from
# `[seed, i]`, so two hidden layers of the same width never share a mask.

# %%
small = {**data, "X_train": data["X_train"][:100], "y_train": data["y_train"][:100]}
histories = {}
for p in (0.0, 0.5):
    train_curves, val_curves = [], []
    for seed in (0, 1, 2):
        model = FullyConnectedNet([512], input_dim=64, dropout=p, weight_scale=0.3, dtype=np.float64, seed=seed)
        solver = Solver(model, small, update_rule="adam", optim_config={"learning_rate": 1e-3},
                        num_epochs=50, batch_size=25, seed=seed, verbose=False)
        solver.train()
        train_curves.append(solver.train_acc_history)
        val_curves.append(solver.val_acc_history)
    histories[p] = (np.mean(train_curves, axis=0), np.mean(val_curves, axis=0))
    print(f"dropout p = {p}: final train accuracy {histories[p][0][-1]:.3f}, "
          f"validation accuracy over the last 10 epochs {histories[p][1][-10:].mean():.3f}")

fig, ax = plt.subplots(figsize=(7, 4))
for p, color in ((0.0, "tab:red"), (0.5, "tab:blue")):
    train_acc, val_acc = histories[p]
    epochs = np.arange(len(train_acc))
    label = "no dropout" if p == 0 else f"dropout p = {p}"
    ax.plot(epochs, train_acc, "--", color=color, label=f"{label}, train")
    ax.plot(epochs, val_acc, "-", color=color, label=f"{label}, validation")
ax.set_xlabel("epoch")
ax.set_ylabel("accuracy (mean of 3 seeds)")
ax.set_ylim(0.5, 1.01)
ax.set_title("100 training digits, 64-512-10 network")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(FIGURES / "03_dropout_regularization.png", dpi=100)
plt.show()

# %% [markdown]
# Both networks fit the 100 training digits perfectly; the one trained with
# dropout generalizes better, because no hidden unit could specialise on the
# quirks of a few training images. On a large data set, or a small network,
# the effect shrinks or reverses: dropout is a regularizer, and like any
# regularizer it helps only when there is overfitting to prevent.
#
# ## Summary
#
# - Inverted dropout: drop with probability $p$, scale the kept units by
#   $1/(1-p)$ during training; the identity at test time.
# - Backward: multiply by the same mask.
# - A seed fixes the mask: the hand pass and the twin draw the same one, so
#   dropout can be gradient-checked; `Solver` draws a new seed every step.
# - On a small training set dropout narrows the gap between training and
#   validation accuracy.
