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
# # 07 · Convolutional networks
#
# The second half of the course's second assignment: convolution, max pooling,
# spatial batch and group normalization, and a three-layer convolutional network.
# This notebook
#
# 1. derives the convolution's backward pass: the input's gradient is a
#    **convolution of `dout` with the kernel** (flipped), the weights' gradient a
#    **correlation of the input with `dout`**;
# 2. checks the naive (loop) and fast (im2col) versions against the autograd twin;
# 3. shows where max pooling routes its gradient, ties included;
# 4. compares spatial batch norm and group norm on small batches;
# 5. trains `ThreeLayerConvNet` on the 8x8 digits and plots its first-layer filters.

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from twingrad import fast_layers, layers
from twingrad import functional as F
from twingrad.cnn import ThreeLayerConvNet
from twingrad.data import load_digits
from twingrad.gradcheck import check_layer
from twingrad.solver import Solver
from twingrad.twins import REGISTRY, run_hand, run_twin

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The convolution and its backward pass
#
# Images are `(N, C, H, W)`, filters `(F, C, HH, WW)`. With $\tilde x$ the input
# zero-padded by `pad` and $s$ the stride, every framework's "convolution" is a
# cross-correlation:
#
# $$y_{nfij} = b_f + \sum_{c,k,l} \tilde x_{n,c,\,si+k,\,sj+l}\; w_{fckl}.$$
#
# Each output pixel is the dot product of one window with one filter, so its
# gradient $g_{nfij} = \partial L / \partial y_{nfij}$ flows back along both
# factors of every product:
#
# $$\frac{\partial L}{\partial w_{fckl}} = \sum_{n,i,j} g_{nfij}\, \tilde x_{n,c,\,si+k,\,sj+l}
# \qquad\text{(the input correlated with } g\text{)},$$
#
# $$\frac{\partial L}{\partial \tilde x_{n,c,p,q}}
#   = \sum_{f}\sum_{(i,k):\,si+k=p}\;\sum_{(j,l):\,sj+l=q} g_{nfij}\, w_{fckl}.$$
#
# In the second sum put $k = p - si$: for stride 1 it is
# $\sum_{f,i,j} g_{nfij}\, w_{fc,\,p-i,\,q-j}$, a **full convolution** of
# $g$ with the kernel (a true convolution: the kernel's index runs backwards,
# the kernel flipped). With stride $s$, $g$ is first spread out with $s-1$ zeros
# between its entries. The bias gradient is $\sum_{n,i,j} g_{nfij}$, and the
# padding's rows and columns of $\partial L/\partial\tilde x$ are dropped.
#
# Let us check the "full convolution of `dout` with the flipped kernel" claim
# numerically, for one channel, one filter and stride 1, against
# `conv_backward_naive`:

# %%
x = rng.normal(size=(1, 1, 5, 5))
w = rng.normal(size=(1, 1, 3, 3))
b = np.zeros(1)
out, cache = layers.conv_forward_naive(x, w, b, {"stride": 1, "pad": 0})
dout = rng.normal(size=out.shape)
dx, dw, db = layers.conv_backward_naive(dout, cache)

# dx as a full convolution: pad dout by HH-1 and correlate it with the kernel rotated by 180 degrees,
# which is what the convolution of dout with the kernel is.
flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, HH, WW): channels become filters
dx_as_convolution, _ = layers.conv_forward_naive(dout, flipped, np.zeros(1), {"stride": 1, "pad": 2})
# dw as a correlation of the input with dout: dout plays the filter
dw_as_correlation, _ = layers.conv_forward_naive(x.transpose(1, 0, 2, 3), dout.transpose(1, 0, 2, 3),
                                                 np.zeros(1), {"stride": 1, "pad": 0})
print("dx vs full convolution of dout with the kernel:", np.abs(dx - dx_as_convolution).max())
print("dw vs correlation of x with dout:              ", np.abs(dw - dw_as_correlation.transpose(1, 0, 2, 3)).max())

# %% [markdown]
# ## 2. Naive, fast and the twin, three ways
#
# `conv_forward_naive` loops over output pixels; `conv_forward_fast` gathers every
# window once into a matrix (**im2col**, through a strided view of the padded
# input) and does one matrix product. The twin, `functional.conv`, is one
# `tensordot` per kernel offset over strided slices, and autograd differentiates
# it. All three must agree, and all three with central differences:

# %%
x = rng.normal(size=(2, 3, 7, 5))
w = rng.normal(size=(4, 3, 3, 3)) / 5
b = rng.normal(size=4)
conv_param = {"stride": 2, "pad": 1}
naive_out, _ = layers.conv_forward_naive(x, w, b, conv_param)
fast_out, _ = fast_layers.conv_forward_fast(x, w, b, conv_param)
twin_out = F.conv(x, w, b, stride=2, pad=1)
print("output shape", naive_out.shape, "| naive vs fast", np.abs(naive_out - fast_out).max(),
      "| naive vs twin", np.abs(naive_out - twin_out).max())

inputs = {"x": x, "w": w, "b": b, "conv_param": conv_param}
for name in ("conv_naive", "conv_fast"):
    result = check_layer(REGISTRY[name], inputs, np.random.default_rng(1))
    print(f"{name:10s} {result.status}:",
          ", ".join(f"{g.gradient} vs autograd {g.vs_autograd.max_abs_error:.1e}, "
                    f"vs numeric {g.vs_numeric.max_abs_error:.1e}" for g in result.gradients))

# %% [markdown]
# And the speed that makes the fast version the one to train with, on a
# CIFAR-sized layer (batch 20 of 3x32x32, 16 filters 5x5):

# %%
x = rng.normal(size=(20, 3, 32, 32)).astype(np.float32)
w = (rng.normal(size=(16, 3, 5, 5)) / 10).astype(np.float32)
b = np.zeros(16, np.float32)
conv_param = {"stride": 1, "pad": 2}
timings = {}
for name, forward, backward in (("naive", layers.conv_forward_naive, layers.conv_backward_naive),
                                ("fast", fast_layers.conv_forward_fast, fast_layers.conv_backward_fast)):
    start = time.perf_counter()
    out, cache = forward(x, w, b, conv_param)
    backward(np.ones_like(out), cache)
    timings[name] = time.perf_counter() - start
print(f"naive {timings['naive'] * 1e3:.0f} ms, fast {timings['fast'] * 1e3:.0f} ms: "
      f"{timings['naive'] / timings['fast']:.0f}x")

# %% [markdown]
# ## 3. Max pooling routes the gradient to one input per window
#
# A window's output **is** one of its inputs, so the whole upstream gradient goes
# to that input and nothing to the others. When inputs tie for the maximum the
# function has a kink; the course's reference (and `argmax`) send the gradient to
# the **first** maximum in row-major order, and so do twingrad's hand passes and
# its twin. Below, 2x2 windows with stride 2, and one window where three inputs
# tie:

# %%
x = np.array([[[[1.0, 3.0, 2.0, 0.0],
                [2.0, 0.5, 1.0, 4.0],
                [5.0, 5.0, 0.0, 1.0],
                [5.0, 0.0, 2.0, 3.0]]]])
pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
out, cache = fast_layers.max_pool_forward_fast(x, pool_param)
dx = fast_layers.max_pool_backward_fast(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]), cache)
print("out:\n", out[0, 0])
print("dx (the 5s tie in the lower-left window; the first one, top-left, gets 30):\n", dx[0, 0])

fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, image, title in ((axes[0], x[0, 0], "input (windows outlined)"), (axes[1], dx[0, 0], "dx")):
    ax.imshow(image, cmap="viridis")
    for (i, j), value in np.ndenumerate(image):
        ax.text(j, i, f"{value:g}", ha="center", va="center", color="w")
    for edge in (1.5,):
        ax.axhline(edge, color="r")
        ax.axvline(edge, color="r")
    ax.set(title=title, xticks=[], yticks=[])
fig.tight_layout()
fig.savefig(FIGURES / "07_max_pool_routing.png", dpi=100)
plt.show()

# %% [markdown]
# The twin, `functional.max_pool`, finds the first maximum of each window on
# the values (a constant of the derivative, like ReLU's mask) and selects that
# input, rather than calling `np.max`, whose autograd derivative would **share**
# the gradient among tied maxima. The registry's kink locator marks each window's
# winner, so central differences that change a winner are reported as a kink and
# not as a mismatch:

# %%
inputs = {"x": x, "pool_param": pool_param}
result = check_layer(REGISTRY["max_pool_fast"], inputs, np.random.default_rng(2))
g = result.gradients[0]
print(f"status {result.status}: vs autograd {g.vs_autograd.max_abs_error:.1e}; "
      f"{g.vs_numeric.ignored} element(s) whose finite differences straddle a tie left out")

# %% [markdown]
# ## 4. Spatial batch norm vs group norm on small batches
#
# **Spatial batch norm** normalizes each channel with statistics over $N$, $H$ and
# $W$: it is plain batch norm of the $(NHW, C)$ matrix of pixels. **Group norm**
# (Wu and He, 2018) splits each sample's channels into $G$ groups of consecutive
# channels and normalizes each group over its channels and positions: layer norm
# per group, then a per-channel scale and shift (shape `(1, C, 1, 1)` in the
# course). Group norm never looks at the other samples.
#
# Both are checked three ways first:

# %%
x = rng.normal(size=(2, 6, 4, 4)) * 2 + 1
for name, extra in (("spatial_batchnorm", {"gamma": rng.normal(size=6), "beta": rng.normal(size=6),
                                           "bn_param": {"mode": "train", "eps": 1e-5}}),
                    ("spatial_groupnorm", {"gamma": rng.normal(size=(1, 6, 1, 1)),
                                           "beta": rng.normal(size=(1, 6, 1, 1)), "G": 3, "gn_param": {"eps": 1e-5}})):
    result = check_layer(REGISTRY[name], {"x": x, **extra}, np.random.default_rng(3))
    print(f"{name:18s} {result.status}: worst vs autograd "
          f"{max(g.vs_autograd.max_abs_error for g in result.gradients):.1e}, vs numeric "
          f"{max(g.vs_numeric.max_abs_error for g in result.gradients):.1e}")

# %% [markdown]
# A sample's output under batch norm depends on the batch it came in; under
# group norm it does not. Normalize the same sample inside many random batches
# of size $N$ and measure how much its output moves:

# %%
pool = rng.normal(size=(200, 8, 4, 4)) * rng.uniform(0.5, 2, size=(1, 8, 1, 1)) + rng.normal(size=(1, 8, 1, 1))
ones_c, zeros_c = np.ones(8), np.zeros(8)
ones_g, zeros_g = np.ones((1, 8, 1, 1)), np.zeros((1, 8, 1, 1))
batch_sizes = [2, 4, 8, 16, 32]
spread = {"spatial batch norm": [], "group norm (G = 4)": []}
for n in batch_sizes:
    bn_outputs, gn_outputs = [], []
    for trial in range(20):
        batch = np.concatenate([pool[:1], pool[1 + rng.choice(199, n - 1, replace=False)]])
        bn_outputs.append(layers.spatial_batchnorm_forward(batch, ones_c, zeros_c, {"mode": "train"})[0][0])
        gn_outputs.append(layers.spatial_groupnorm_forward(batch, ones_g, zeros_g, 4, {})[0][0])
    spread["spatial batch norm"].append(np.std(bn_outputs, axis=0).mean())
    spread["group norm (G = 4)"].append(np.std(gn_outputs, axis=0).mean())

fig, ax = plt.subplots(figsize=(5, 3.2))
for label, values in spread.items():
    ax.plot(batch_sizes, values, "o-", label=label)
ax.set(xscale="log", xlabel="batch size", ylabel="std of one sample's output", title="batch dependence")
ax.set_xticks(batch_sizes, [str(n) for n in batch_sizes])
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "07_norm_batch_dependence.png", dpi=100)
plt.show()
print({k: [f"{v:.3f}" for v in vals] for k, vals in spread.items()})

# %% [markdown]
# Batch norm's noise shrinks like $1/\sqrt{N}$ and is large at $N = 2$; group
# norm's is exactly zero at every batch size.
#
# ## 5. ThreeLayerConvNet on the digits
#
# `conv (16 filters 3x3, pad 1) - relu - 2x2 max pool - affine (100) - relu - affine - softmax`,
# trained with `Solver` and Adam on the 8x8 digits (each image one channel). The
# hand-derived step uses the fast layers; its gradients agree with autograd's
# through the twin loss `cnn.twin_loss`:

# %%
data = load_digits(dtype=np.float32)
data = {k: v.reshape(-1, 1, 8, 8) if k.startswith("X") else v for k, v in data.items()}
net = ThreeLayerConvNet(input_dim=(1, 8, 8), num_filters=16, filter_size=3, hidden_dim=100, weight_scale=0.1,
                        reg=1e-2, seed=0)
loss, grads = net.loss(data["X_train"][:20], data["y_train"][:20])
_, twin_grads = net.twin_grads(data["X_train"][:20], data["y_train"][:20])
print("hand vs twin gradients, largest difference:",
      {k: f"{np.abs(grads[k] - twin_grads[k]).max():.1e}" for k in grads})

solver = Solver(net, data, update_rule="adam", optim_config={"learning_rate": 2e-3}, lr_decay=0.95,
                num_epochs=30, batch_size=50, seed=0, verbose=False)
start = time.perf_counter()
solver.train()
print(f"trained in {time.perf_counter() - start:.1f} s; test accuracy "
      f"{solver.check_accuracy(data['X_test'], data['y_test']):.3f}")

# %% [markdown]
# The first layer's 16 filters, each a 3x3 pattern the network learned to look
# for (edges and strokes at this scale):

# %%
filters = net.params["W1"][:, 0]
fig, axes = plt.subplots(2, 8, figsize=(8, 2.4))
for ax, f in zip(axes.ravel(), filters):
    ax.imshow(f, cmap="gray")
    ax.set(xticks=[], yticks=[])
fig.suptitle("first-layer filters")
fig.tight_layout()
fig.savefig(FIGURES / "07_first_layer_filters.png", dpi=100)
plt.show()

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(np.asarray(solver.loss_history, dtype=float), lw=0.6)
ax1.set(title="training loss", xlabel="iteration")
ax2.plot(solver.train_acc_history, "o-", label="train")
ax2.plot(solver.val_acc_history, "o-", label="val")
ax2.set(title="accuracy", xlabel="epoch")
ax2.legend()
fig.tight_layout()
fig.savefig(FIGURES / "07_training.png", dpi=100)
plt.show()

# %% [markdown]
# From the command line the same network is `twingrad train --model cnn`;
# `twingrad verify` checks every layer of this notebook three ways, and
# `twingrad bench --sections cnn` times the CIFAR-sized step against PyTorch and JAX.
