"""The machine a benchmark ran on: CPU, cores, numpy and its BLAS, thread counts.

Benchmarks mean little without these, so every report starts with them. Only
the standard library, numpy and (if importable, as scikit-learn brings it)
threadpoolctl are used: reading the machine adds no dependency.
"""

from __future__ import annotations

import ctypes
import os
import platform

import numpy as np


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask), not only those the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def blas_info() -> dict:
    """numpy's BLAS: name, version, kernel architecture and thread count.

    threadpoolctl (if installed) reports what is loaded and running, including the
    threads; otherwise ``np.show_config(mode='dicts')`` gives what numpy was built with.
    """
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in str(pool.get("filepath", "")):
                return {"name": pool.get("internal_api"), "version": pool.get("version"),
                        "architecture": pool.get("architecture"), "threads": pool.get("num_threads"),
                        "source": "threadpoolctl"}
    except ImportError:
        pass
    info = {"name": "unknown", "version": None, "architecture": None, "threads": None, "source": "np.show_config"}
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(name=blas.get("name"), version=blas.get("version"))
    except Exception:  # numpy < 1.25 has no mode='dicts'; the rest of the report still stands
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            info["threads"] = int(os.environ[var])
            break
    return info


def numpy_threads() -> int:
    """Threads numpy's BLAS uses; the core count when it cannot be read."""
    return blas_info().get("threads") or usable_cores()


def machine_info() -> dict:
    """Everything the report's header prints, as a JSON-able dict."""
    blas = blas_info()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "numpy": np.__version__,
        "blas": blas,
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                           "MKL_NUM_THREADS", "XLA_FLAGS") if k in os.environ},
    }


def describe(info: dict) -> str:
    """One line for the terminal: the machine, numpy, its BLAS and threads."""
    blas = info["blas"]
    arch = f" ({blas['architecture']})" if blas.get("architecture") else ""
    env = "".join(f", {k}={v}" for k, v in info.get("env", {}).items())
    return (f"{info['platform']}, {info['cpu']}, {info['cores']} cores; Python {info['python']}, "
            f"numpy {info['numpy']} with {blas['name']} {blas.get('version') or ''}{arch}, "
            f"{blas.get('threads')} BLAS threads{env}")


HEAP_PAD = 64 << 20  #: bytes glibc keeps at the top of the heap during a benchmark (M_TOP_PAD)


def steady_heap(pad: int = HEAP_PAD) -> str:
    """Ask glibc to keep ``pad`` bytes at the top of the heap, and say what was done.

    Without it, a numpy step that allocates a few MB of temporaries grows the
    heap and gives it back to the system at every call, and pays for it in
    page faults: the autograd twin's step took 1850 minor faults and 15 ms in a
    process with numpy alone, 1 fault and 9 ms once PyTorch had been loaded
    (which leaves the heap's top where it is), so the same code ran 1.6x
    faster in the harness than alone. Setting the pad in every benchmark
    process, harness and fresh ones alike, makes the allocator the same for
    all (and like a long training loop's). A no-op off glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return "malloc: the platform's default"
    return f"malloc: glibc M_TOP_PAD {pad >> 20} MiB" if mallopt(-2, pad) == 1 else "malloc: glibc default"


class OtherLoad:
    """How busy other processes kept the machine while a benchmark ran (Linux only).

    Reads ``/proc/stat`` (all CPU time) and this process's own CPU time at entry
    and exit: the rest is what other processes took. A share well above zero
    means the timings were taken on a shared, noisy machine.
    """

    def __enter__(self):
        self._start = self._read()
        return self

    def __exit__(self, *exc):
        self._end = self._read()
        return False

    @staticmethod
    def _read():
        try:
            with open("/proc/stat", encoding="utf-8") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields) - fields[3] - fields[4]) / ticks  # all but idle and iowait, in seconds
        total = sum(fields) / ticks
        own = sum(os.times()[:2])  # this process's user + system time, all threads
        return busy, total, own

    @property
    def share(self) -> float | None:
        """Fraction of the machine's CPU time used by other processes, or None where unknown."""
        if self._start is None or self._end is None:
            return None
        busy = self._end[0] - self._start[0]
        total = self._end[1] - self._start[1]
        own = self._end[2] - self._start[2]
        return max(0.0, (busy - own) / total) if total > 0 else None
