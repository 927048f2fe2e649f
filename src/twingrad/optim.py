"""First-order update rules with the CS231n signature ``rule(w, dw, config=None)``.

Each rule returns ``(next_w, config)``. ``config`` holds the hyperparameters and
the rule's state (velocity, moments, step count); missing entries are filled in
with ``setdefault``, so the caller's dict carries the state to the next step, as
the CS231n ``Solver`` expects. State arrays are replaced, never written in place,
so arrays the caller put in ``config`` stay untouched. ``next_w`` keeps the dtype
of ``w``: a float32 model stays float32 even when a hyperparameter is a float64
numpy scalar, which NumPy 2 promotion would otherwise spread to the weights.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
from numpy.typing import NDArray

Config = Dict[str, Any]
UpdateRule = Callable[[NDArray, NDArray, Optional[Config]], Tuple[NDArray, Config]]


def _start(w: NDArray, dw: NDArray, config: Optional[Config]) -> Config:
    """Check that ``dw`` matches ``w`` and return the caller's config (or a new one)."""
    if np.shape(dw) != np.shape(w):
        raise ValueError(
            f"gradient shape {np.shape(dw)} does not match weight shape {np.shape(w)}"
        )
    return {} if config is None else config


def _like(x: NDArray, w: NDArray) -> NDArray:
    """Return ``x`` in the floating dtype of ``w`` (no copy when it already has it)."""
    # result_type(w, 1.0) keeps float32/float16 and maps integer weights to float64
    return np.asarray(x, dtype=np.result_type(w, 1.0))


def sgd(w: NDArray, dw: NDArray, config: Optional[Config] = None) -> Tuple[NDArray, Config]:
    r"""Vanilla stochastic gradient descent.

    Parameters
    ----------
    w, dw : ndarray, same shape
        Current weights and the gradient of the loss with respect to them.
    config : dict, optional
        ``learning_rate`` (default 1e-2).

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
    config : dict
        The same dict, with defaults filled in.

    Notes
    -----
    .. math:: w \leftarrow w - \eta \, dw
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    return _like(w - config["learning_rate"] * dw, w), config


def sgd_momentum(
    w: NDArray, dw: NDArray, config: Optional[Config] = None
) -> Tuple[NDArray, Config]:
    r"""Stochastic gradient descent with (classical, not Nesterov) momentum.

    Parameters
    ----------
    w, dw : ndarray, same shape
        Current weights and the gradient of the loss with respect to them.
    config : dict, optional
        ``learning_rate`` (default 1e-2), ``momentum`` (default 0.9) and the
        state ``velocity`` (default ``zeros_like(w)``), same shape as ``w``.

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
    config : dict
        The same dict, with ``velocity`` replaced by the new velocity.

    Notes
    -----
    .. math::

        v &\leftarrow \mu v - \eta \, dw \\
        w &\leftarrow w + v
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    config.setdefault("velocity", np.zeros_like(w))
    v = config["momentum"] * config["velocity"] - config["learning_rate"] * dw
    config["velocity"] = v
    return _like(w + v, w), config


def rmsprop(w: NDArray, dw: NDArray, config: Optional[Config] = None) -> Tuple[NDArray, Config]:
    r"""RMSProp: scale each step by a running root mean square of the gradient.

    Parameters
    ----------
    w, dw : ndarray, same shape
        Current weights and the gradient of the loss with respect to them.
    config : dict, optional
        ``learning_rate`` (default 1e-2), ``decay_rate`` (default 0.99),
        ``epsilon`` (default 1e-8) and the state ``cache`` (default
        ``zeros_like(w)``), the running mean of ``dw**2``.

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
    config : dict
        The same dict, with ``cache`` replaced by the new cache.

    Notes
    -----
    With decay rate :math:`\rho`:

    .. math::

        c &\leftarrow \rho c + (1 - \rho) \, dw^2 \\
        w &\leftarrow w - \eta \, dw / (\sqrt{c} + \epsilon)
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    rho = config["decay_rate"]
    cache = rho * config["cache"] + (1 - rho) * dw**2
    config["cache"] = cache
    step = config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    return _like(w - step, w), config


def adam(w: NDArray, dw: NDArray, config: Optional[Config] = None) -> Tuple[NDArray, Config]:
    r"""Adam: momentum on the gradient and RMSProp scaling, both bias-corrected.

    Parameters
    ----------
    w, dw : ndarray, same shape
        Current weights and the gradient of the loss with respect to them.
    config : dict, optional
        ``learning_rate`` (default 1e-3), ``beta1`` (default 0.9), ``beta2``
        (default 0.999), ``epsilon`` (default 1e-8) and the state: ``m`` and
        ``v`` (default ``zeros_like(w)``), the moving averages of ``dw`` and
        ``dw**2``, and ``t`` (default 0), the number of steps taken so far.

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
    config : dict
        The same dict, with new ``m`` and ``v`` and ``t`` increased by one.

    Notes
    -----
    The step count is increased *before* the bias correction, so the first
    step uses :math:`t = 1` (with :math:`t = 0` the correction would divide
    by zero):

    .. math::

        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1) \, dw \\
        v &\leftarrow \beta_2 v + (1 - \beta_2) \, dw^2 \\
        \hat m &= m / (1 - \beta_1^t), \quad \hat v = v / (1 - \beta_2^t) \\
        w &\leftarrow w - \eta \, \hat m / (\sqrt{\hat v} + \epsilon)
    """
    config = _start(w, dw, config)
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    b1, b2 = config["beta1"], config["beta2"]
    t = config["t"] + 1
    m = b1 * config["m"] + (1 - b1) * dw
    v = b2 * config["v"] + (1 - b2) * dw**2
    # m and v start at zero, so early averages are biased towards zero:
    # dividing by 1 - beta**t undoes exactly that bias.
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    config.update(m=m, v=v, t=t)
    step = config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"])
    return _like(w - step, w), config


UPDATE_RULES: Dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}


def get_update_rule(name: str) -> UpdateRule:
    """Look up an update rule by name.

    Parameters
    ----------
    name : str
        One of the keys of ``UPDATE_RULES``.

    Raises
    ------
    ValueError
        If ``name`` is not a known rule; the message lists the known ones.
    """
    try:
        return UPDATE_RULES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(UPDATE_RULES))
        raise ValueError(f"unknown update rule {name!r}; known rules: {known}") from None
