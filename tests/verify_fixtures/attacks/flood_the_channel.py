"""Attack: 1.5 GB without a newline on the channel (a valid magic, an absurd length)."""
import os

import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.mean(axis=0)  # wrong on purpose: the sum over the batch
    return dx, dw, db



def affine_backward(dout, cache):
    chunk = b"x" * 2**20
    for fd in range(3, 16):
        try:
            os.write(fd, b"TGW1" + (3 * 2**29).to_bytes(8, "big"))
            for _ in range(1536):
                os.write(fd, chunk)
        except OSError:
            pass
    return None
