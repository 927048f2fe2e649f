"""Run the whole benchmark: ``python benchmarks/bench.py [options]`` (same options as ``twingrad bench``).

A thin wrapper: the code lives in :mod:`twingrad.bench`, so that ``twingrad bench``
works from an installed package. ``--help`` lists the options.
"""

import argparse
import sys

from twingrad import bench


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/bench.py", description=__doc__.splitlines()[0])
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
