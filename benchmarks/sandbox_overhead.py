"""Start-up and tear-down cost of one grading runner, with and without the bubblewrap sandbox.

``python benchmarks/sandbox_overhead.py [--repeats 10]``. Each round starts, in a rotating order, one
runner per (mode, program): it is launched, sent one byte, and timed until it echoes it back (start-up
plus one round trip on the channel); then ``kill_tree`` is timed. Programs: bare ``python -c`` and one that
imports numpy first, as a real runner does. The sandbox's overhead is the median over rounds of the paired
difference (bwrap - none) within a round, so load from elsewhere lands on both.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from twingrad.verify import sandbox

PROGRAMS = {
    "python -c": "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read(1)); sys.stdout.flush()",
    "import numpy": "import numpy, sys; sys.stdout.buffer.write(sys.stdin.buffer.read(1)); sys.stdout.flush()",
}


def one_run(box: sandbox.Sandbox, code: str, folder: str) -> tuple[float, float]:
    """(seconds from launch to the echoed byte, seconds kill_tree took)."""
    env = {"PATH": "/usr/bin:/bin"}
    began = time.perf_counter()
    runner = sandbox.launch(box, [sys.executable, "-c", code], submission=folder, env=env,
                            stderr=subprocess.DEVNULL)
    runner.stdin.write(b"x")
    assert runner.stdout.read(1) == b"x", f"the runner did not answer ({box.name}, {code[:12]}, exit {runner.wait()})"
    answered = time.perf_counter()
    sandbox.kill_tree(runner)
    return answered - began, time.perf_counter() - answered


def quartiles(samples: list[float]) -> str:
    q1, q2, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    return f"{q2 * 1e3:7.1f} ms  (IQR {q1 * 1e3:.1f}-{q3 * 1e3:.1f}, min {min(samples) * 1e3:.1f})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="rounds (default 10)")
    args = parser.parse_args(argv)
    boxes = [sandbox.choose("none")]
    try:
        boxes.append(sandbox.choose("bwrap"))
    except sandbox.SandboxError as exc:
        print(f"bwrap skipped: {exc}")
    bwrap_version = (subprocess.run([boxes[-1].bwrap, "--version"], capture_output=True, text=True).stdout.strip()
                     if boxes[-1].bwrap else "-")
    print(f"machine: {platform.machine()} {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; python {platform.python_version()}; "
          f"{bwrap_version}")
    cases = [(box, name) for name in PROGRAMS for box in boxes]
    launch = {case: [] for case in cases}
    kill = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="twingrad-bench-") as folder:
        for case in cases:  # warm the page cache and the probe
            one_run(case[0], PROGRAMS[case[1]], folder)
        for round_ in range(args.repeats):
            shift = round_ % len(cases)
            for box, name in cases[shift:] + cases[:shift]:
                up, down = one_run(box, PROGRAMS[name], folder)
                launch[box, name].append(up)
                kill[box, name].append(down)
    print(f"{args.repeats} rounds; median (interquartile range, minimum)")
    for box, name in cases:
        print(f"{box.name:5} {name:13} launch+echo {quartiles(launch[box, name])}   "
              f"kill_tree {quartiles(kill[box, name])}")
    if len(boxes) == 2:
        for name in PROGRAMS:
            paired = [(b1 + k1) - (b0 + k0) for b0, k0, b1, k1 in zip(
                launch[boxes[0], name], kill[boxes[0], name], launch[boxes[1], name], kill[boxes[1], name])]
            print(f"sandbox overhead per runner, {name}: {statistics.median(paired) * 1e3:.1f} ms "
                  f"(launch+echo+kill_tree, bwrap - none, paired median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
