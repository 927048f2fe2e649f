"""Attack: a detached process that outlives the run, a non-daemon thread, a forked child on the pipe."""
import os
import subprocess
import threading
import time

import numpy as np

subprocess.Popen(["sleep", "4242"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
threading.Thread(target=lambda: time.sleep(4243)).start()
if os.fork() == 0:
    os.setsid()
    time.sleep(4244)
    os._exit(0)


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.mean(axis=0)  # wrong on purpose: the sum over the batch
    return dx, dw, db

