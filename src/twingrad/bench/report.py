"""Terminal tables and the JSON document of a ``twingrad bench`` run."""

from __future__ import annotations

from .._text import table
from .timing import Timing, paired_ratio

GOALS = (("pytorch eager", 0.8), ("jax jit", 1.0), ("matmul floor", 1.5))  # hand step / other, at most


def _ms(t: Timing) -> str:
    return f"{t.median * 1e3:.3f} [{t.q1 * 1e3:.2f}-{t.q3 * 1e3:.2f}]"


def _us(t: Timing) -> str:
    return f"{t.median * 1e6:.0f}"


RATIO_HEADER = "hand ÷ this"
RATIO_FOOTER = ("hand ÷ this: the hand step's time divided by this row's, paired round by round; "
                "below 1 the hand step is faster, above 1 slower")


def step_table(results: list[dict]) -> str:
    """Per configuration (no norm, batch norm): median [IQR] and min ms, and hand's time over each
    (the column :data:`RATIO_HEADER`, explained by :data:`RATIO_FOOTER` under the table)."""
    impls = list(dict.fromkeys(k for r in results for k in r["timings"]))
    header = ["step (ms)"]
    for r in results:
        norm = r["config"]["normalization"] or "no norm"
        header += [f"{norm}: median [q1-q3]", "min", RATIO_HEADER]
    rows = []
    for impl in impls:
        row = [impl]
        for r in results:
            t, hand = r["timings"].get(impl), r["timings"]["hand"]
            row += [_ms(t), f"{t.min * 1e3:.3f}", f"{paired_ratio(hand, t):.2f}"] if t else ["skipped", "", ""]
        rows.append(row)
    return table(header, rows) + "\n" + RATIO_FOOTER


def goal_lines(results: list[dict], verdict: bool = True) -> list[str]:
    """The issue's goals: hand step / other at most the stated ratio, per configuration.

    Ratios are paired: the median over rounds of the two times measured in the same round.
    The goals are stated for the default network; ``verdict=False`` prints the ratios only.
    """
    lines = []
    for r in results:
        hand = r["timings"]["hand"]
        parts = []
        for other, limit in GOALS:
            t = r["timings"].get(other)
            if t is None:
                parts.append(f"hand/{other} n/a (not run)")
                continue
            ratio = paired_ratio(hand, t)
            judged = f" (goal <= {limit}: {'met' if ratio <= limit else 'MISSED'})" if verdict else ""
            parts.append(f"hand/{other} = {ratio:.2f}{judged}")
        twin = r["timings"].get("autograd twin")
        if twin:
            parts.append(f"twin/hand = {paired_ratio(twin, hand):.1f}")
        lines.append(f"  {r['config']['normalization'] or 'no norm'}: " + "; ".join(parts))
    return lines


def agreement_lines(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        for impl, a in r.get("agreement", {}).items():
            lines.append(f"  {r['config']['normalization'] or 'no norm'}, {impl} vs hand: loss differs by "
                         f"{a['loss_diff']:.1e}, gradients by at most {a['max_grad_rel_diff']:.1e} (relative)")
    return lines


def cnn_table(result: dict) -> str:
    """The convolutional step: median [IQR] and min ms per implementation, and the fast hand step over each."""
    hand = result["timings"]["hand (fast layers)"]
    rows = [[impl, _ms(t), f"{t.min * 1e3:.3f}", f"{paired_ratio(hand, t):.2f}"]
            for impl, t in result["timings"].items()]
    return table(["cnn step (ms)", "median [q1-q3]", "min", "hand fast / it"], rows)


def cnn_lines(result: dict) -> list[str]:
    """The goal (fast hand step <= 1.5x PyTorch eager), where the time goes, and the agreement check."""
    timings, lines = result["timings"], []
    hand, torch = timings["hand (fast layers)"], timings.get("pytorch eager")
    if torch is not None:
        ratio = paired_ratio(hand, torch)
        lines.append(f"Goal: hand fast / pytorch eager = {ratio:.2f} (<= 1.5: {'met' if ratio <= 1.5 else 'MISSED'})")
    lines.append("Where the fast hand step's time goes (each part timed alone, ms):")
    lines += [f"  {part:36s} {ms:8.3f}" for part, ms in result["split"].items()]
    for impl, a in result.get("agreement", {}).items():
        lines.append(f"  {impl} vs hand (fast): loss differs by {a['loss_diff']:.1e}, gradients by at most "
                     f"{a['max_grad_rel_diff']:.1e} (relative)")
    return lines


def layers_table(rows: list[dict]) -> str:
    impls = list(dict.fromkeys(k for r in rows for k in r["timings"]))
    header = ["layer (fwd+bwd, us)", "shape", *impls, "twin/hand", "notes"]
    out = []
    for r in rows:
        t = r["timings"]
        out.append([r["layer"], r["shape"], *[_us(t[k]) if k in t else "-" for k in impls],
                    f"{t['autograd twin'].median / t['hand'].median:.1f}", "; ".join(r["notes"])])
    return table(header, out)


def bn_alt_table(rows: list[dict]) -> str:
    header = ["batch norm backward (us)", "staged", "alt (closed form)", "speedup"]
    return table(header, [[r["shape"], _us(r["timings"]["batchnorm_backward"]),
                           _us(r["timings"]["batchnorm_backward_alt"]), f"{r['speedup']:.2f}x"] for r in rows])


def memory_table(rows: list[dict]) -> str:
    mb = lambda b: f"{b / 2**20:.1f}"
    header = ["peak memory of a step (MiB)", "hand", "autograd twin", "twin/hand", "params", "batch X"]
    return table(header, [[r["label"], mb(r["hand_peak_bytes"]), mb(r["twin_peak_bytes"]),
                           f"{r['twin_peak_bytes'] / max(r['hand_peak_bytes'], 1):.1f}",
                           mb(r["params_bytes"]), mb(r["batch_bytes"])] for r in rows])


def verify_table(result: dict) -> str:
    def cell(entry):
        prefix = "~" if entry["status"] == "estimated" else ""
        verdict = "" if entry["status"] == "estimated" else f" ({entry['status']})"
        return f"{prefix}{entry['seconds']:.2f} s{verdict}"

    header = ["three-way check, float64", "parameters", "fast (projections)", "full (per element)"]
    rows = []
    for key in ("small", "big"):
        entry = result[key]
        elements = entry["fast"].get("elements", "?")
        rows.append([entry["arch"], str(elements), cell(entry["fast"]), cell(entry["full"])])
    return table(header, rows)


def fairness_table(result: dict) -> str:
    """Each implementation's median in the harness and alone in a fresh process, and the verdict."""
    tol = result["tolerance"]
    header = ["step (ms)", "in the harness: median [q1-q3]", "alone, fresh process: median [q1-q3]",
              "harness ÷ alone", f"within {tol:.0%}?"]
    rows = []
    for r in result["rows"]:
        if r["alone"] is None:
            rows.append([r["implementation"], _ms(r["harness"]), r["note"], "", ""])
            continue
        verdict = "yes" if r["fair"] else f"NO ({'slower' if r['ratio'] > 1 else 'faster'} in the harness)"
        rows.append([r["implementation"], _ms(r["harness"]), _ms(r["alone"]), f"{r['ratio']:.2f}", verdict])
    return table(header, rows)


def to_json(value):
    """``value`` with every :class:`Timing` replaced by its summary dict (for ``json.dump``)."""
    if isinstance(value, Timing):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value
