"""``twingrad verify``: every registered layer checked three ways over seeded random shapes."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .gradcheck import LayerCheck, check_layer
from .twins import REGISTRY


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", "--cases", type=int, default=5, help="random shapes per layer (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random shapes and inputs (default 0)")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    rows, failed = [], False
    for spec in REGISTRY.values():
        checks: list[LayerCheck] = []
        for _ in range(args.cases):
            shape = spec.random_shape(rng)
            inputs = spec.sample(rng, shape, float(rng.choice([0.1, 1.0, 10.0])), np.float64)
            checks.append(check_layer(spec, inputs, rng))
        rows.extend(_rows(spec, checks))
        failed |= any(c.status == "fail" for c in checks)
    _print_table(rows)
    print(f"\n{len(REGISTRY)} layers x {args.cases} shapes in {time.perf_counter() - start:.1f} s: "
          f"{'FAILED' if failed else 'all gradients agree'}")
    return 1 if failed else 0


def _rows(spec, checks):
    shapes = sorted({c.shapes[spec.wrt[0]] for c in checks})
    worst = lambda values: max(values, default=0.0)  # noqa: E731
    forward = [c.forward for c in checks]
    yield [spec.forward, "out", _fmt_shapes(shapes), worst(f.max_abs_error for f in forward),
           worst(f.max_rel_error for f in forward), "pass" if all(f.passed for f in forward) else "fail"]
    for i, name in enumerate(spec.gradient_names):
        grads = [c.gradients[i] for c in checks]
        comparisons = [g.vs_autograd for g in grads] + [g.vs_numeric for g in grads]
        statuses = {g.status for g in grads}
        status = "fail" if "fail" in statuses else "kink" if "kink" in statuses else "pass"
        yield [spec.backward or spec.forward, name, "", worst(c.max_abs_error for c in comparisons),
               worst(c.max_rel_error for c in comparisons), status]


def _fmt_shapes(shapes):
    text = " ".join("x".join(map(str, s)) for s in shapes)
    return text if len(text) <= 28 else text[:25] + "..."


def _print_table(rows):
    header = ["function", "gradient", "shapes tried", "max abs err", "max rel err", "status"]
    cells = [[r[0], r[1], r[2], f"{r[3]:.1e}", f"{r[4]:.1e}", r[5]] for r in rows]
    widths = [max(len(str(row[i])) for row in [header, *cells]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *cells]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
