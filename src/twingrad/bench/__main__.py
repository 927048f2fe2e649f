"""``python -m twingrad.bench``: the same as ``twingrad bench``."""

import argparse
import sys

from . import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m twingrad.bench", description="Side-by-side timings: hand-derived "
                                 "layers vs autograd twins vs PyTorch vs JAX vs the matrix-product floor.")
add_arguments(parser)
sys.exit(run(parser.parse_args()))
