"""``twingrad bench``: side-by-side timings of the hand-derived layers, their autograd
twins, PyTorch and JAX, and the matrix-product floor.

Modules: :mod:`.timing` (interleaved rounds, median and spread),
:mod:`.machine` (CPU, numpy's BLAS, threads, other load), :mod:`.step` (one
training step of FullyConnectedNet in every implementation),
:mod:`.layers_bench` (each layer, and batch norm's two backward passes),
:mod:`.frameworks` / :mod:`.framework_layers` (PyTorch and JAX, optional),
:mod:`.memory`, :mod:`.verify_bench`, :mod:`.scaling` (curves and plots),
:mod:`.report` (tables, JSON) and :mod:`.cli` (the command).
"""

from .cli import add_arguments, run

__all__ = ["add_arguments", "run"]
