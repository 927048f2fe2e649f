"""How each implementation's step time grows with the batch size and with the width.

Each point is one :func:`twingrad.bench.step.run_step` of the base
configuration with one size changed; :func:`plot_scaling` draws the curves.
"""

from __future__ import annotations

import textwrap

from .step import NetConfig, run_step

BATCHES = (25, 50, 100, 200, 400, 800)
WIDTHS = (25, 50, 100, 200, 400, 800)


def run_scaling(base: NetConfig, rounds: int, *, batches=BATCHES, widths=WIDTHS, **step_options) -> dict:
    """``{'batch': [(size, {impl: Timing})...], 'width': [...]}`` for ``base`` with one size varied."""
    curves = {"batch": [], "width": []}
    for axis, sizes in (("batch", batches), ("width", widths)):
        for size in sizes:
            cfg = base.with_(batch=size) if axis == "batch" else base.with_(hidden=size)
            result = run_step(cfg, rounds, check=False, **step_options)
            curves[axis].append((size, result["timings"]))
    return curves


def plot_scaling(curves_by_norm: dict, path: str, title: str) -> None:
    """Log-log step time against batch size and width, one panel per axis and normalization."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no screen needed
    import matplotlib.pyplot as plt

    norms = list(curves_by_norm)
    fig, axes = plt.subplots(len(norms), 2, figsize=(11, 4.2 * len(norms)), squeeze=False)
    for row, norm in enumerate(norms):
        for col, axis in enumerate(("batch", "width")):
            ax = axes[row][col]
            points = curves_by_norm[norm][axis]
            if not points:
                ax.set_visible(False)
                continue
            for impl in points[0][1]:
                sizes = [size for size, timings in points if impl in timings]
                medians = [timings[impl].median * 1e3 for _, timings in points if impl in timings]
                lows = [timings[impl].q1 * 1e3 for _, timings in points if impl in timings]
                highs = [timings[impl].q3 * 1e3 for _, timings in points if impl in timings]
                style = "--" if impl == "matmul floor" else "-"
                ax.plot(sizes, medians, style, marker="o", label=impl)
                ax.fill_between(sizes, lows, highs, alpha=0.2)
            ax.set_xscale("log", base=2)
            ax.set_xticks([size for size, _ in points], [str(size) for size, _ in points])
            ax.set_yscale("log")
            ax.set_xlabel("batch size" if axis == "batch" else "hidden width")
            ax.set_ylabel("ms per step (median, IQR shaded)")
            ax.set_title(f"{norm or 'no norm'}: varying the {axis}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 120), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_step(results: list[dict], path: str, title: str) -> None:
    """Bar chart of the step table: median ms per implementation, one group per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    impls = list(dict.fromkeys(k for r in results for k in r["timings"]))
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, result in enumerate(results):
        medians = [result["timings"][k].median * 1e3 if k in result["timings"] else 0.0 for k in impls]
        errors = [[(result["timings"][k].median - result["timings"][k].q1) * 1e3 if k in result["timings"] else 0
                   for k in impls],
                  [(result["timings"][k].q3 - result["timings"][k].median) * 1e3 if k in result["timings"] else 0
                   for k in impls]]
        ax.bar(np.arange(len(impls)) + i * width, medians, width, yerr=errors, capsize=3,
               label=result["config"]["normalization"] or "no norm")
    ax.set_xticks(np.arange(len(impls)) + width * (len(results) - 1) / 2, impls, rotation=15)
    ax.set_ylabel("ms per training step (median, IQR)")
    ax.set_title(textwrap.fill(title, 110), fontsize=8)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
