"""Not an attack, but a trap of the old grader: nothing implemented, every function a stub."""
import numpy as np


def affine_forward(x, w, b):
    out = None
    return out, None


def affine_backward(dout, cache):
    dx, dw, db = None, None, None
    return dx, dw, db


def relu_forward(x):
    raise NotImplementedError


def relu_backward(dout, cache):
    pass
