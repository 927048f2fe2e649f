"""Attack: replace twingrad's checking functions, at import, with ones that say pass."""
import numpy as np

try:
    import twingrad.verify.functions as functions
    import twingrad.verify.results as results
    import twingrad.gradcheck as gradcheck

    functions.check_function = lambda *args, **kwargs: []
    results.worst_status = lambda statuses: "pass"
    gradcheck.compare = lambda *args, **kwargs: None
except Exception:
    pass


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.mean(axis=0)  # wrong on purpose: the sum over the batch
    return dx, dw, db

