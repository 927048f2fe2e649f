"""twingrad: hand-derived backpropagation in numpy, checked against autograd twins."""

__version__ = "0.1.0"
