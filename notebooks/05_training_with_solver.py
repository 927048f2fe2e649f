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
# # 05 · Training with Solver
#
# The layers give a loss and its gradients; an **update rule** turns the
# gradients into a step, and the `Solver` runs the loop: sample a minibatch,
# compute loss and gradients, update every parameter, measure accuracy once an
# epoch, keep the best model.
#
# In this notebook: the four update rules of `twingrad.optim`, first on a
# two-parameter toy problem where we can watch them move, then on a real
# network; and the training run repeated with gradients from autograd instead of
# the hand-derived backward passes, to see that the two trajectories coincide.

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from twingrad import optim
from twingrad.data import load_digits
from twingrad.fc_net import FullyConnectedNet
from twingrad.solver import Solver

FIGURES = Path("figures")
FIGURES.mkdir(exist_ok=True)

# %% [markdown]
# ## Four update rules
#
# Every rule has the CS231n signature `next_w, config = rule(w, dw, config)`;
# `config` holds the hyperparameters and the rule's state (velocity, moments),
# carried from one step to the next. With learning rate $\eta$ and gradient $g$:
#
# **SGD**: step against the gradient.
# $$w \leftarrow w - \eta\, g$$
#
# **SGD with momentum**: accumulate a velocity, a decaying sum of past
# gradients ($\mu = 0.9$). Directions in which the gradient keeps its sign build
# up speed; directions in which it oscillates cancel.
# $$v \leftarrow \mu v - \eta\, g, \qquad w \leftarrow w + v$$
#
# **RMSProp**: divide each coordinate's step by a running root mean square of
# its gradient ($\rho = 0.99$), so steep and flat directions move at similar
# speeds.
# $$c \leftarrow \rho c + (1-\rho)\, g^2, \qquad w \leftarrow w - \eta\, \frac{g}{\sqrt{c} + \epsilon}$$
#
# **Adam**: momentum and RMSProp together, with both averages corrected for
# starting at zero ($\beta_1 = 0.9$, $\beta_2 = 0.999$, $t$ the step count).
# $$m \leftarrow \beta_1 m + (1-\beta_1) g, \quad v \leftarrow \beta_2 v + (1-\beta_2) g^2, \quad
#   w \leftarrow w - \eta\, \frac{m / (1-\beta_1^t)}{\sqrt{v/(1-\beta_2^t)} + \epsilon}$$
#
# ## A toy problem: a long narrow valley
#
# $f(w) = \tfrac12 (w_1^2 + 50\, w_2^2)$ is 50 times steeper across the valley
# ($w_2$) than along it ($w_1$). That is the shape that makes plain gradient
# descent slow: a learning rate small enough not to bounce across the valley
# (below $2/50$) crawls along it. The gradients here are exact (no minibatch
# noise), which is the easy case.

# %%
STEEPNESS = 50.0


def valley(w1, w2):
    return 0.5 * (w1**2 + STEEPNESS * w2**2)


def valley_grad(w):
    return np.array([w[0], STEEPNESS * w[1]])


settings = {
    "sgd": {"learning_rate": 0.035},
    "sgd_momentum": {"learning_rate": 0.035, "momentum": 0.6},
    "rmsprop": {"learning_rate": 0.1},
    "adam": {"learning_rate": 0.2},
}
steps = 60
paths = {}
for name, config in settings.items():
    rule, config, w = optim.get_update_rule(name), dict(config), np.array([-4.5, 1.0])
    path = [w]
    for _ in range(steps):
        w, config = rule(w, valley_grad(w), config)
        path.append(w)
    paths[name] = np.array(path)
    print(f"{name:13} f(w) after {steps} steps: {valley(*path[-1]):.1e}")

w1, w2 = np.meshgrid(np.linspace(-5, 1.5, 200), np.linspace(-1.3, 1.3, 200))
fig, (ax, ax_f) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw={"width_ratios": [2, 1]})
ax.contour(w1, w2, valley(w1, w2), levels=np.logspace(-2, 1.8, 12), colors="lightgrey")
for name, path in paths.items():
    label = f"{name} " + ", ".join(f"{k} = {v}" for k, v in settings[name].items())
    ax.plot(path[:, 0], path[:, 1], "o-", markersize=2.5, linewidth=1.2, label=label)
    ax_f.semilogy(valley(path[:, 0], path[:, 1]), label=name)
ax.plot(0, 0, "k*", markersize=12)
ax.set(xlabel="$w_1$ (shallow)", ylabel="$w_2$ (steep)", title=f"{steps} steps from (-4.5, 1)")
ax.legend(fontsize=8, loc="lower right")
ax_f.set(xlabel="step", ylabel="f(w)", title="$f = (w_1^2 + 50 w_2^2)/2$")
ax_f.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "05_update_rules_valley.png", dpi=100)
plt.show()

# %% [markdown]
# SGD's learning rate is near its limit, so it zigzags across the valley and
# still creeps along it. Momentum damps the zigzag (the oscillating part of the
# velocity cancels) and gathers speed along the valley, orders of magnitude
# ahead after 60 steps. (With the default momentum of 0.9 it would overshoot and
# spiral in more slowly on this problem: momentum is a setting to choose, too.)
# RMSProp divides each coordinate's step by the size of its gradient: after one
# step across, it runs straight down the valley floor, fastest of all here.
# Adam rescales the same way but also carries momentum ($\beta_1 = 0.9$), so
# it overshoots and circles the minimum. A clean quadratic is not where Adam
# shines: its strengths, robustness to noisy gradients and to parameters of
# very different scales, show in networks.
#
# ## On a real network
#
# A 4-layer network (three hidden layers of 100 units) on the digits, the same
# initial weights and the same minibatches for each rule (`seed` in both the
# model and the Solver). Learning rates are rough, typical choices, not tuned
# per rule. A verbose run first, to see what `Solver` reports:

# %%
data = load_digits()
model = FullyConnectedNet([100, 100, 100], input_dim=64, weight_scale=0.1, dtype=np.float64, seed=0)
solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3}, num_epochs=2,
                batch_size=50, seed=0, print_every=20, verbose=True, progress=False)
solver.train()
print("best validation accuracy:", solver.best_val_acc, "  test accuracy:",
      solver.check_accuracy(data["X_test"], data["y_test"]))

# %%
learning_rates = {"sgd": 1e-2, "sgd_momentum": 1e-2, "rmsprop": 1e-3, "adam": 1e-3}
solvers = {}
for rule, learning_rate in learning_rates.items():
    model = FullyConnectedNet([100, 100, 100], input_dim=64, weight_scale=0.1, dtype=np.float64, seed=0)
    solvers[rule] = Solver(model, data, update_rule=rule, optim_config={"learning_rate": learning_rate},
                           num_epochs=8, batch_size=50, seed=0, verbose=False)
    solvers[rule].train()
    print(f"{rule:13} final train accuracy {solvers[rule].train_acc_history[-1]:.3f}, "
          f"best validation accuracy {solvers[rule].best_val_acc:.3f}")

fig, (ax_loss, ax_train, ax_val) = plt.subplots(1, 3, figsize=(15, 4))
for rule, solver in solvers.items():
    label = f"{rule} (η = {learning_rates[rule]:g})"
    ax_loss.plot(solver.loss_history, alpha=0.25)
    smooth = np.convolve(solver.loss_history, np.ones(10) / 10, mode="valid")
    ax_loss.plot(np.arange(9, len(solver.loss_history)), smooth, color=ax_loss.lines[-1].get_color(), label=label)
    ax_train.plot(solver.train_acc_history, "o-", markersize=3, label=label)
    ax_val.plot(solver.val_acc_history, "o-", markersize=3, label=label)
ax_loss.set(xlabel="iteration", ylabel="training loss", title="Loss (light: per minibatch; dark: mean of 10)")
ax_train.set(xlabel="epoch", ylabel="accuracy", title="Training accuracy")
ax_val.set(xlabel="epoch", ylabel="accuracy", title="Validation accuracy")
for ax in (ax_loss, ax_train, ax_val):
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "05_update_rules_training.png", dpi=100)
plt.show()

# %% [markdown]
# The picture from the valley carries over: plain SGD is slow at this learning
# rate, momentum is faster, and the adaptive rules (RMSProp, Adam) get to high
# accuracy within a couple of epochs.
#
# ## Hand-derived vs autograd: the same training run
#
# `Solver(..., backend="autograd")` takes its gradients from autograd, through
# the network's twin (`twingrad.fc_net.twin_loss`, built only from the layer
# twins), instead of from the hand-derived backward passes. If every hand
# backward is right, the two runs see the same gradients at every step, up to
# rounding, and so follow the same trajectory. We train the same batch-norm
# network twice, once per backend, from the same initial weights on the same
# minibatches.

# %%
runs, seconds = {}, {}
for backend in ("hand", "autograd"):
    model = FullyConnectedNet([100, 100, 100], input_dim=64, normalization="batchnorm",
                              weight_scale=0.1, dtype=np.float64, seed=0)
    runs[backend] = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
                           num_epochs=4, batch_size=50, seed=0, verbose=False, backend=backend)
    start = time.perf_counter()
    runs[backend].train()
    seconds[backend] = time.perf_counter() - start

hand_loss = np.array(runs["hand"].loss_history, dtype=float)
auto_loss = np.array(runs["autograd"].loss_history, dtype=float)
difference = np.abs(hand_loss - auto_loss)
params_gap = max(np.max(np.abs(runs["hand"].model.params[k] - runs["autograd"].model.params[k]))
                 for k in runs["hand"].model.params)
print(f"largest loss difference over {len(hand_loss)} steps: {difference.max():.1e}")
print(f"largest parameter difference after training: {params_gap:.1e}")
print("validation accuracy histories equal:", runs["hand"].val_acc_history == runs["autograd"].val_acc_history)
print(f"training time: hand {seconds['hand']:.2f} s, autograd {seconds['autograd']:.2f} s "
      f"(x{seconds['autograd'] / seconds['hand']:.1f})")

fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(12, 4))
ax.plot(hand_loss, linewidth=4, alpha=0.4, label="hand-derived backward")
ax.plot(auto_loss, "k--", linewidth=1, label="autograd through the twin")
ax.set(xlabel="iteration", ylabel="training loss", title="The two trajectories coincide")
ax.legend()
ax_gap.semilogy(np.maximum(difference, 1e-18), ".", markersize=3)
ax_gap.axhline(np.finfo(np.float64).eps, color="grey", linestyle=":", label="float64 machine epsilon")
ax_gap.set(xlabel="iteration", ylabel="|loss(hand) - loss(autograd)|", title="Their difference: rounding only",
           ylim=(1e-18, 1e-6))
ax_gap.legend()
fig.tight_layout()
fig.savefig(FIGURES / "05_hand_vs_autograd.png", dpi=100)
plt.show()

# %% [markdown]
# The two losses agree to about machine precision at every step (points drawn
# at 1e-18 are exact ties). A wrong backward pass anywhere in the network, in
# any layer, would show up here as trajectories that drift apart. (The autograd
# backend is slower, by the factor printed above: it traces the whole network
# at every step. It is a check, not a replacement.)
#
# ## Summary
#
# - An update rule is `(w, dw, config) -> (next_w, config)`; the state lives in `config`.
# - Momentum damps oscillation and accelerates along consistent directions;
#   RMSProp and Adam rescale every coordinate by the size of its gradient.
# - `Solver` keeps `loss_history`, `train_acc_history`, `val_acc_history`, and
#   restores the `best_params` at the end; `seed` makes a run reproducible.
# - `backend="autograd"` trains on autograd's gradients: with correct hand
#   backward passes the trajectories coincide.
