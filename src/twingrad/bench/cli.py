"""``twingrad bench``: the command-line front end of :mod:`twingrad.bench`.

Wired into :mod:`twingrad.cli` through :func:`add_arguments` and :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .._cli_types import empty_values, float_range, int_range, nonempty_path
from . import frameworks, machine, report
from .step import NetConfig

SECTIONS = ("step", "layers", "bn-alt", "memory", "verify", "scaling", "cnn", "fairness")
DEFAULT_SECTIONS = SECTIONS[:-1]  # fairness starts a fresh process per implementation: on request only
MAX_STEP_BYTES = 2 << 30  # the step's own arrays; timings of anything larger say little on a laptop


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds and sizes: a rough table in about 10 s on an idle 2-core machine "
                             "(90 s measured with 60%% of the CPU taken by other work)")
    parser.add_argument("--repeats", type=int_range(1, 1000), default=None, metavar="N",
                        help="rounds of interleaved timing per measurement, 1..1000 (default 12, quick 4)")
    parser.add_argument("--sections", type=_checked_sections, default=",".join(DEFAULT_SECTIONS), metavar="LIST",
                        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all but fairness, "
                             "which times each implementation again alone in a fresh process)")
    parser.add_argument("--json", metavar="PATH", type=nonempty_path("path"),
                        help="also write every result as JSON ('-' for stdout)")
    parser.add_argument("--plot", metavar="DIR", type=nonempty_path("folder"),
                        help="write step.png and scaling.png into DIR, created if missing (needs matplotlib)")
    parser.add_argument("--no-frameworks", action="store_true", help="skip PyTorch and JAX even when installed")
    parser.add_argument("--settle", type=float_range(0, 10), default=0.15, metavar="S",
                        help="seconds to wait when switching libraries, for their spinning threads, "
                             "0..10 (default 0.15)")
    net = parser.add_argument_group("network of the step (default: the CIFAR-sized 3072-[100]x5-10, batch 200)")
    net.add_argument("--batch", type=int_range(1, 65_536), default=200, help="1..65536 (default 200)")
    net.add_argument("--input-dim", type=int_range(1, 1 << 20), default=3072, help="1..1048576 (default 3072)")
    net.add_argument("--hidden", type=int_range(1, 65_536), default=100,
                     help="width of every hidden layer, 1..65536 (default 100)")
    net.add_argument("--depth", type=int_range(1, 100), default=5, help="number of hidden layers, 1..100 (default 5)")
    net.add_argument("--classes", type=int_range(2, 100_000), default=10, help="2..100000 (default 10)")
    net.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    net.add_argument("--reg", type=float_range(0), default=0.0, help="L2 strength of the net, >= 0 (default 0)")
    cnn = parser.add_argument_group("ThreeLayerConvNet of the cnn section (default: the course's CIFAR-sized net; "
                                    "--hidden, --classes and --dtype apply too)")
    cnn.add_argument("--cnn-batch", type=int_range(1, 4096), default=50, help="1..4096 (default 50)")
    cnn.add_argument("--cnn-size", type=int_range(2, 512), default=32,
                     help="height and width of the 3-channel images, even, 2..512 (default 32)")
    cnn.add_argument("--cnn-filters", type=int_range(1, 1024), default=32, help="1..1024 (default 32)")
    cnn.add_argument("--cnn-filter-size", type=int_range(1, 31), default=7,
                     help="odd, 1..31; padded to keep the image size (default 7)")
    cnn.add_argument("--no-naive", action="store_true", help="skip the naive (loop) layers' step in the cnn section")


def _checked_sections(text: str) -> str:
    """Type function of --sections: the text, once `_sections` accepts it (kept a string, as the option reads)."""
    _sections(text)
    return text


def _sections(text: str) -> list[str]:
    """The names in a --sections value: known ones, at least one."""
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"got {text!r} (unknown section(s) {unknown}), allowed a comma-separated "
                                         f"subset of {','.join(SECTIONS)}")
    return chosen


def _check_outputs(args) -> str | None:
    """Why the run cannot start (a size too large, an output that cannot be written), or None."""
    for option in empty_values(args):
        return f"argument {option}: got no value ('--' ends the options, it is not a value)"
    itemsize = np.dtype(args.dtype).itemsize
    # weights and their gradients, activations and their gradients, the input batch; x2 for the twin's copies
    widths = [args.input_dim, *[args.hidden] * args.depth, args.classes]
    weights = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    activations = args.batch * sum(widths)
    need = 2 * 2 * (weights + activations) * itemsize
    if need > MAX_STEP_BYTES:
        return (f"a step of the {'-'.join(map(str, widths))} network on batch {args.batch} needs about "
                f"{need / 2**30:.1f} GiB of arrays; twingrad bench times steps of up to {MAX_STEP_BYTES >> 30} GiB")
    if args.json and args.json != "-":
        folder = os.path.dirname(os.path.abspath(args.json))
        if os.path.isdir(args.json) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            return f"--json {args.json}: not a writable file path (the folder {folder} must exist)"
    if args.plot:
        if os.path.exists(args.plot) and not os.path.isdir(args.plot):
            return f"--plot {args.plot}: is a file; --plot takes a folder"
        try:
            os.makedirs(args.plot, exist_ok=True)
        except OSError as err:
            return f"--plot {args.plot}: cannot create the folder: {err.strerror}"
    return None


def _frameworks(args, threads: int, out) -> dict:
    info = {"torch": None, "jax": None, "notes": []}
    if args.no_frameworks:
        info["notes"].append("PyTorch and JAX skipped (--no-frameworks)")
        return info
    for name in ("torch", "jax"):
        module, note = frameworks.load(name)
        info[name] = module
        info["notes"].append(note)
    torch = info["torch"]
    if torch is not None:
        info["torch_default_threads"] = torch.get_num_threads()
        torch.set_num_threads(threads)
        info["notes"].append(f"torch threads set to {threads} to match numpy's BLAS "
                             f"(torch's own default here: {info['torch_default_threads']})")
    if info["jax"] is not None:
        info["notes"].append(f"jax devices: {', '.join(str(d) for d in info['jax'].devices())} "
                             "(XLA's own CPU thread pool)")
    return info


def run(args: argparse.Namespace) -> int:
    out = sys.stdout if args.json != "-" else sys.stderr  # keep stdout clean for the JSON
    say = lambda *a: print(*a, file=out, flush=True)
    error = _check_outputs(args)
    if error:
        print(f"twingrad bench: error: {error}", file=sys.stderr)
        return 2
    sections = _sections(args.sections)
    rounds = args.repeats or (4 if args.quick else 12)
    info = machine.machine_info()
    info["malloc"] = machine.steady_heap()
    threads = machine.numpy_threads()
    say(f"twingrad bench: {machine.describe(info)}; {info['malloc']}")
    fw = _frameworks(args, threads, out)
    for note in fw["notes"]:
        say(f"  {note}")
    base = NetConfig(batch=args.batch, input_dim=args.input_dim, hidden=args.hidden, depth=args.depth,
                     classes=args.classes, dtype=args.dtype, reg=args.reg)
    step_options = {"torch": fw["torch"], "jax": fw["jax"], "threads": threads,
                    "torch_default_threads": fw.get("torch_default_threads"), "settle": args.settle}
    results: dict = {"machine": info, "frameworks": [n for n in fw["notes"]], "rounds": rounds}
    start = time.perf_counter()
    with machine.OtherLoad() as load:
        if "step" in sections:
            results["step"] = _step(base, rounds, step_options, say)
        if "layers" in sections:
            results["layers"] = _layers(base, rounds, fw, args, say)
        if "bn-alt" in sections:
            results["bn_alt"] = _bn_alt(base, rounds, args, say)
        if "memory" in sections:
            results["memory"] = _memory(base, say)
        if "verify" in sections:
            results["verify"] = _verify(base, args, say)
        if "scaling" in sections:
            results["scaling"] = _scaling(base, args, step_options, say)
        if "cnn" in sections:
            results["cnn"] = _cnn(args, rounds, fw, threads, say)
        if "fairness" in sections:
            results["fairness"] = _fairness(base, rounds, step_options, say)
    results["seconds"] = time.perf_counter() - start
    results["other_load"] = load.share
    if load.share is not None:
        say(f"\nOther processes used {load.share:.0%} of the machine's CPU time during the run"
            f"{' (a noisy machine: compare ratios, not absolute times)' if load.share > 0.05 else ''}.")
    say(f"Done in {results['seconds']:.0f} s.")
    if args.plot:
        _plots(results, args.plot, info, say)
    if args.json:
        _write_json(results, args.json)
    return 0


def _step(base, rounds, step_options, say) -> list[dict]:
    from .step import run_step

    say(f"\nTraining step (loss and every gradient), {base.label.rsplit(',', 1)[0]}; "
        f"{rounds} rounds x 3 calls, interleaved")
    results = []
    for norm in (None, "batchnorm"):
        results.append(run_step(base.with_(normalization=norm), rounds, **step_options))
    say(report.step_table(results))
    default = base.with_(normalization=None) == NetConfig()
    say("Goals (hand step / other):" if default else
        "Hand step / other (the goals are stated for the default network, not this one):")
    for line in report.goal_lines(results, verdict=default):
        say(line)
    for line in report.agreement_lines(results):
        say(line)
    return results


def _layers(base, rounds, fw, args, say) -> list[dict]:
    from .layers_bench import run_layers

    say(f"\nLayers, forward + backward, {base.dtype} (median us per call)")
    rows = run_layers(max(2, rounds // 3), batch=base.batch, input_dim=base.input_dim, hidden=base.hidden,
                      classes=base.classes, dtype=base.dtype, torch=fw["torch"], jax=fw["jax"],
                      settle=args.settle, min_sample=0.0005 if args.quick else 0.002)
    say(report.layers_table(rows))
    return rows


def _bn_alt(base, rounds, args, say) -> list[dict]:
    from .layers_bench import run_batchnorm_alt

    say("\nbatchnorm_backward (staged) vs batchnorm_backward_alt (closed form)")
    shapes = ((base.batch, base.hidden), (100, 500)) if args.quick else ((base.batch, base.hidden), (100, 500),
                                                                          (1000, 1000))
    rows = run_batchnorm_alt(rounds, shapes=shapes, dtype=base.dtype)
    say(report.bn_alt_table(rows))
    return rows


def _memory(base, say) -> list[dict]:
    from .memory import run_memory

    say("\nPeak memory of one step above its inputs (tracemalloc; numpy allocations only)")
    rows = [run_memory(base.with_(normalization=norm)) for norm in (None, "batchnorm")]
    say(report.memory_table(rows))
    return rows


def _verify(base, args, say) -> dict:
    from .verify_bench import run_verify

    big = f"{base.input_dim}-{base.hidden}x{base.depth}-{base.classes},batch={base.batch}"
    say("\nThe verification suite on a network: fast (random projections) vs full (every element)")
    result = run_verify(big=big)
    say(report.verify_table(result))
    full = result["big"]["full"]
    if full.get("status") == "estimated":
        say(f"  full mode on the big net estimated: {full['elements']} parameters x 4 loss evaluations "
            f"(five-point stencil) x {full['seconds_per_evaluation'] * 1e3:.1f} ms")
    return result


def _scaling(base, args, step_options, say) -> dict:
    from .scaling import BATCHES, WIDTHS, run_scaling

    batches, widths = ((50, 200, 800), (50, 100, 400)) if args.quick else (BATCHES, WIDTHS)
    rounds = 2 if args.quick else 4
    say(f"\nScaling: step time over batch sizes {batches} and widths {widths} ({rounds} rounds each)")
    curves = {}
    for norm in (None, "batchnorm"):
        curves[norm or "none"] = run_scaling(base.with_(normalization=norm), rounds, batches=batches,
                                             widths=widths, **step_options)
        for axis in ("batch", "width"):
            rows = [[str(size), *[f"{t.median * 1e3:.2f}" for t in timings.values()]]
                    for size, timings in curves[norm or "none"][axis]]
            impls = list(curves[norm or "none"][axis][0][1])
            say(report.table([f"{norm or 'no norm'}, {axis}", *impls], rows))
    return curves


def _fairness(base, rounds, step_options, say) -> dict:
    from .fairness import run_fairness

    say(f"\nFairness: the step ({base.label}) in the interleaved harness vs each implementation alone "
        f"in a fresh process; {rounds} rounds x 3 calls each")
    result = run_fairness(base, rounds, say=say, **step_options)
    say(report.fairness_table(result))
    return result


def _cnn(args, rounds, fw, threads, say) -> dict:
    from .cnn_step import CnnConfig, run_cnn_step

    cfg = CnnConfig(batch=args.cnn_batch, size=args.cnn_size, filters=args.cnn_filters,
                    filter_size=args.cnn_filter_size, hidden=args.hidden, classes=args.classes, dtype=args.dtype)
    say(f"\nConvolutional training step (loss and every gradient), {cfg.label}; {rounds} rounds x 3 calls, "
        "interleaved (the naive step apart: a few single calls)")
    result = run_cnn_step(cfg, rounds, torch=fw["torch"], jax=fw["jax"], threads=threads, naive=not args.no_naive,
                          settle=args.settle)
    say(report.cnn_table(result))
    for line in report.cnn_lines(result):
        say(line)
    return result


def _plots(results, directory, info, say) -> None:
    try:
        from .scaling import plot_scaling, plot_step
    except ImportError as exc:  # pragma: no cover - matplotlib is imported inside the functions
        say(f"no plots: {exc}")
        return
    os.makedirs(directory, exist_ok=True)
    title = machine.describe(info)
    try:
        if "step" in results:
            plot_step(results["step"], os.path.join(directory, "step.png"), title)
        if "scaling" in results:
            plot_scaling({None if k == "none" else k: v for k, v in results["scaling"].items()},
                         os.path.join(directory, "scaling.png"), title)
    except ImportError:
        say("no plots: matplotlib is not installed (pip install 'twingrad[bench]')")
        return
    say(f"Plots written to {directory}")


def _write_json(results, path) -> None:
    document = report.to_json(results)
    if path == "-":
        json.dump(document, sys.stdout, indent=1, default=_default)
        sys.stdout.write("\n")
    else:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1, default=_default)


def _default(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
