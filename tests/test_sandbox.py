"""Tests of the runners' process isolation (``twingrad.verify.sandbox``).

Every test that needs bubblewrap runs in both modes and skips the bwrap case, with the reason, where
``choose("bwrap")`` cannot run. Leftover processes are found by scanning /proc here, not by the module.
"""

import errno
import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import twingrad
from twingrad.verify import sandbox

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="the leftover checks read /proc")

ENV = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
ROOT = Path(__file__).resolve().parents[1]  # the project checkout (under /work on the dev machine)


@pytest.fixture(params=["none", "bwrap"])
def box(request):
    if request.param == "none":
        return sandbox.choose("none")
    try:
        return sandbox.choose("bwrap")
    except sandbox.SandboxError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def submission(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "layers.py").write_text("ANSWER = 42\n")
    return folder


@pytest.fixture
def start(box, submission, tmp_path):
    """Launch ``python -c code *args`` as a runner; every runner is killed at the end of the test."""
    started = []

    def start(code, *args, env=ENV):
        log = open(tmp_path / f"stderr{len(started)}.txt", "wb")
        runner = sandbox.launch(box, [sys.executable, "-c", code, *args], submission=str(submission),
                                env=dict(env), stderr=log)
        log.close()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        sandbox.kill_tree(runner)


def read_line(runner, timeout=60.0):
    """One line from the runner's stdout, without trusting it to ever send one."""
    data, deadline = b"", time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([runner.stdout], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(runner.stdout.fileno(), 1) if ready else b""
        if not chunk:
            raise AssertionError(f"the runner sent {data!r} and then nothing")
        data += chunk
    return data[:-1]


def read_exactly(runner, size, timeout=60.0):
    """``size`` bytes from the runner's stdout, or fewer if it closes it or the timeout passes."""
    data, deadline = b"", time.monotonic() + timeout
    while len(data) < size and select.select([runner.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(runner.stdout.fileno(), size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _proc(pid, name):
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def leftovers(token, marker):
    """Pids of live (non-zombie) processes that carry the token or have the marker on their command line."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        stat = _proc(name, "stat")
        if not stat or stat[stat.rindex(b")") + 2:].split()[0] == b"Z":
            continue
        if f"{sandbox.TOKEN_VAR}={token}".encode() in _proc(name, "environ").split(b"\0") or (
                marker.encode() in _proc(name, "cmdline").split(b"\0")):
            found.append(int(name))
    return found


def our_zombies():
    found = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        stat = _proc(name, "stat")
        fields = stat[stat.rindex(b")") + 2:].split() if stat else []
        if fields and fields[0] == b"Z" and int(fields[1]) == os.getpid():
            found.add(int(name))
    return found


# Each kind of runner leaves something behind that would outlive it; sys.argv[2] is "100.<nonce>": the
# seconds to sleep, and a marker on the command line of every process involved.
ESCAPE = r"""
import os, subprocess, sys, threading, time
kind, marker = sys.argv[1], sys.argv[2]
say = lambda text: os.write(1, text.encode() + b"\n")
if kind == "thread":  # a non-daemon thread keeps the process alive after its main thread returns
    threading.Thread(target=lambda: (say("up"), time.sleep(float(marker)))).start()
elif kind == "popen_sleep":
    subprocess.Popen(["sleep", marker])
    say("up")
elif kind == "setsid_child":
    if os.fork() == 0:
        os.setsid()
        say("up")
        time.sleep(float(marker))
        os._exit(0)
else:  # a double-forked daemon in its own session, with or without the runner's environment (and token)
    if os.fork() == 0:
        if os.fork() == 0:
            os.setsid()
            code = "import os, sys, time; os.write(1, b'up\\n'); time.sleep(float(sys.argv[1]))"
            env = {} if kind == "daemon_no_env" else dict(os.environ)
            os.execve(sys.executable, [sys.executable, "-c", code, marker], env)
        os._exit(0)
    os.wait()
say("ready")
if kind != "thread":
    sys.stdin.buffer.read(1)
"""
KINDS = ["setsid_child", "daemon", "daemon_no_env", "thread", "popen_sleep"]


@pytest.mark.parametrize("kind", KINDS)
def test_kill_tree_leaves_no_process_behind(start, kind):
    marker = f"100.{random.randrange(10**8, 10**9)}"
    zombies = our_zombies()
    runner = start(ESCAPE, kind, marker)
    assert {read_line(runner), read_line(runner)} == {b"up", b"ready"}
    assert leftovers(runner.token, marker), "the escapee should be running now, else this test proves nothing"
    began = time.monotonic()
    sandbox.kill_tree(runner)
    took = time.monotonic() - began
    assert leftovers(runner.token, marker) == []
    assert took < 20, f"kill_tree took {took:.1f} s: it waited for the 100 s escapee"  # not a speed test
    assert our_zombies() <= zombies, "kill_tree left unreaped children"
    sandbox.kill_tree(runner)  # idempotent


ECHO = "import sys; data = sys.stdin.buffer.read(5); sys.stdout.buffer.write(data[::-1]); sys.stdout.flush()"


def test_channel_environment_and_submission_path(box, start, submission):
    runner = start(ECHO)
    runner.stdin.write(b"hello")
    assert read_exactly(runner, 5) == b"olleh"
    assert runner.wait(timeout=60) == 0
    code = ("import json, os, sys; env = dict(os.environ); env.pop('LC_CTYPE', None); env.pop('PWD', None)\n"
            "print(json.dumps([sys.argv[1], open(os.path.join(sys.argv[1], 'layers.py')).read(), env]))")
    seen, text, env = json.loads(read_line(start(code, "{submission}")))
    expected_path = "/submission" if box.name == "bwrap" else str(submission)
    assert (seen, text) == (expected_path, "ANSWER = 42\n")
    assert env.keys() == {*ENV, sandbox.TOKEN_VAR} and all(env[k] == v for k, v in ENV.items())


# What a runner can reach: printed as one JSON line, judged by the test.
PROBE = r"""
import json, os, socket, sys
judge, port, sibling, in_work, seen = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def attempt(action):
    try:
        action()
        return "ok"
    except Exception as exc:
        return type(exc).__name__
def write(path):
    with open(path, "w") as f:
        f.write("x")
report = {
    "pid": os.getpid(),
    "ppid": os.getppid(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "judge_visible": os.path.exists(f"/proc/{judge}"),
    "connect": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close()),
    "read_sibling": attempt(lambda: open(sibling).read()),
    "read_work": attempt(lambda: open(in_work).read()),
    "write_submission": attempt(lambda: write(os.path.join(seen, "layers.py"))),
    "write_cwd": attempt(lambda: write("scratch.txt")),
    "submission": open(os.path.join(seen, "layers.py")).read(),
    "imports": attempt(lambda: __import__("numpy") and __import__("twingrad")),
}
print(json.dumps(report))
"""


def test_what_a_runner_can_reach(box, start, submission, tmp_path):
    sibling = tmp_path / "bob" / "layers.py"  # a classmate's file, beside the submission
    sibling.parent.mkdir()
    sibling.write_text("BOB = 1\n")
    with socket.socket() as server, tempfile.TemporaryDirectory(dir=ROOT, prefix=".sandbox-test-") as work:
        server.bind(("127.0.0.1", 0))
        server.listen()
        in_work = Path(work) / "secret.txt"
        in_work.write_text("secret\n")
        env = {**ENV, "PYTHONPATH": os.path.dirname(os.path.dirname(twingrad.__file__))}
        runner = start(PROBE, str(os.getpid()), str(server.getsockname()[1]), str(sibling), str(in_work),
                       "{submission}", env=env)
        report = json.loads(read_line(runner))
    assert (report["imports"], report["write_cwd"]) == ("ok", "ok")
    if box.name == "bwrap":
        assert report["ppid"] != os.getpid() and not report["judge_visible"]
        assert report["pids"] == sorted({report["ppid"], report["pid"]})  # bwrap's init and itself: nothing else
        assert report["connect"] != "ok"
        assert report["read_sibling"] == report["read_work"] == "FileNotFoundError"
        assert report["write_submission"] == "OSError"  # read-only file system
        assert report["submission"] == "ANSWER = 42\n"
    else:  # no sandbox: the same probe reaches everything, which is what makes the checks above meaningful
        assert report["ppid"] == os.getpid() and report["judge_visible"]
        assert report["connect"] == report["read_sibling"] == report["read_work"] == "ok"
    assert (submission / "layers.py").read_text() == ("ANSWER = 42\n" if box.name == "bwrap" else "x")


def test_bwrap_kernel_settings_are_read_only(box, start):
    if box.name != "bwrap":  # never try this without a sandbox: a root test run would rename the machine
        pytest.skip("the no-sandbox mode does not protect kernel settings")
    code = ("try:\n    open('/proc/sys/kernel/hostname', 'w').write('renamed')\n"
            "except OSError as exc:\n    print(exc.errno)\nelse:\n    print('written')")
    assert read_line(start(code)) in (b"%d" % errno.EROFS, b"%d" % errno.EACCES)  # EROFS as root


DAEMON = r"""
import os, sys, time
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(100)", sys.argv[1]],
                  dict(os.environ) if sys.argv[2] == "keep" else {})
    os._exit(0)
os.wait()
print("ready", flush=True)
if sys.argv[3] == "stay":
    sys.stdin.buffer.read(1)
"""


def test_reap_orphans_spares_runners_still_running_and_the_judges_children(box, start):
    bystander = subprocess.Popen(["sleep", "60"])  # the judge's own child, in the judge's session
    try:
        alive = start(ECHO)
        marker = f"100.{random.randrange(10**8, 10**9)}"
        working = start(DAEMON, marker, "keep", "stay")  # its daemon holds a token of a runner still running
        assert read_line(working) == b"ready"
        daemon = leftovers(working.token, marker)
        assert sandbox.reap_orphans() == 0
        assert (alive.poll(), bystander.poll(), leftovers(working.token, marker)) == (None, None, daemon)
        alive.stdin.write(b"abcde")
        assert read_exactly(alive, 5) == b"edcba"
        sandbox.kill_tree(working)
        assert leftovers(working.token, marker) == []
        bystander.send_signal(signal.SIGTERM)
        assert bystander.wait(timeout=60) == -signal.SIGTERM  # its exit status was not taken by a waitpid
    finally:
        bystander.kill()
        bystander.wait()


def test_reap_orphans_kills_the_orphans_of_a_runner_that_exited(start):
    sandbox.reap_orphans()  # whatever earlier tests in this process left is not this test's to count
    marker = f"100.{random.randrange(10**8, 10**9)}"
    runner = start(DAEMON, marker, "drop", "leave")  # the daemon clears its environment: no token
    assert read_line(runner) == b"ready"
    assert runner.wait(timeout=60) == 0
    if runner.sandbox.name == "none":  # an orphan without a token is reaped at once, before kill_tree
        assert len(leftovers(runner.token, marker)) == 1
        assert sandbox.reap_orphans() == 1
        assert leftovers(runner.token, marker) == []
    # Under bwrap the namespace dies with the runner, but bwrap may exit before its init has finished
    # killing it: kill_tree waits for that init.
    sandbox.kill_tree(runner)
    assert leftovers(runner.token, marker) == []


def test_none_mode_working_directory_is_private_and_removed(start):
    runner = start("import os; print(os.getcwd(), flush=True)")
    cwd = read_line(runner).decode()
    if runner.sandbox.name == "bwrap":
        assert cwd == sandbox.WORKDIR
    else:
        assert cwd == runner._cwd and os.path.isdir(cwd) and os.listdir(cwd) == []
    sandbox.kill_tree(runner)
    assert runner.sandbox.name == "bwrap" or not os.path.exists(cwd)


def test_choose_rejects_unknown_modes():
    with pytest.raises(ValueError, match="one of auto, bwrap, none, got 'nonsense'"):
        sandbox.choose("nonsense")
    none = sandbox.choose("none")
    assert (none.name, none.bwrap) == ("none", None) and "--sandbox none" in none.note


def test_choose_falls_back_or_raises_when_bwrap_cannot_run(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"  # as bwrap behaves where user namespaces are disabled
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "_probe", None)
    monkeypatch.setattr(sandbox, "_candidates", lambda: [str(fake)])
    with pytest.raises(sandbox.SandboxError) as raised:
        sandbox.choose("bwrap")
    assert "Permission denied" in str(raised.value) and "\n" not in str(raised.value)
    auto = sandbox.choose("auto")
    assert auto.name == "none" and auto.note.startswith("submissions run without a sandbox")
    assert "Permission denied" in auto.note
    monkeypatch.setattr(sandbox, "_probe", None)
    monkeypatch.setattr(sandbox, "_candidates", lambda: [])
    assert "no bwrap on PATH" in sandbox.choose("auto").note
    monkeypatch.setattr(sandbox, "_probe", None)
    monkeypatch.setattr(sandbox.sys, "platform", "darwin")
    assert "needs Linux, this is darwin" in sandbox.choose("auto").note


def test_choose_probes_once(monkeypatch):
    calls = []
    monkeypatch.setattr(sandbox, "_probe", None)
    monkeypatch.setattr(sandbox, "_candidates", lambda: ["/bin/bwrap-for-test"])
    monkeypatch.setattr(sandbox, "_try_bwrap", lambda path: calls.append(path) or "")
    assert sandbox.choose("auto") == sandbox.choose("bwrap") == sandbox.Sandbox("bwrap", "/bin/bwrap-for-test")
    assert calls == ["/bin/bwrap-for-test"]


def test_launch_rejects_a_missing_submission(tmp_path):
    with pytest.raises(ValueError, match="submission must be an existing folder"):
        sandbox.launch(sandbox.choose("none"), [sys.executable, "-c", "pass"], submission=str(tmp_path / "no"),
                       env=ENV, stderr=None)


NOISY = r"""
import os, subprocess, sys
if os.fork() == 0:  # an orphan without a token, for whichever thread reaps next
    if os.fork() == 0:
        os.setsid()
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(100)", sys.argv[1]], {})
    os._exit(0)
os.wait()
subprocess.Popen(["sleep", sys.argv[1]])
data = sys.stdin.buffer.read(3)
sys.stdout.buffer.write(data[::-1])
sys.stdout.flush()
sys.stdin.buffer.read(1)
"""


def test_runners_in_two_threads_disturb_each_other_in_nothing(box, submission):
    # As the judge grades with -j 2: every thread launches, talks, kills and reaps while the other works.
    from concurrent.futures import ThreadPoolExecutor

    marker = f"100.{random.randrange(10**8, 10**9)}"
    zombies = our_zombies()

    def one(i):
        runner = sandbox.launch(box, [sys.executable, "-c", NOISY, marker], submission=str(submission),
                                env=dict(ENV), stderr=subprocess.DEVNULL)
        try:
            message = b"%03d" % i
            runner.stdin.write(message)
            return read_exactly(runner, 3) == message[::-1], runner.token
        finally:
            sandbox.kill_tree(runner)
            sandbox.reap_orphans()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, range(6)))
    assert [ok for ok, _ in results] == [True] * 6
    assert [pid for _, token in results for pid in leftovers(token, marker)] == []
    assert our_zombies() <= zombies


def test_an_old_bwrap_without_size_runs_without_the_tmpfs_cap(monkeypatch, tmp_path):
    try:
        real = sandbox.choose("bwrap").bwrap
    except sandbox.SandboxError as exc:
        pytest.skip(str(exc))
    old = tmp_path / "bwrap"  # as bubblewrap before 0.10 answers
    old.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = --size ] && { echo "bwrap: Unknown option --size" >&2;'
                   f' exit 1; }}; done\nexec {real} "$@"\n')
    old.chmod(0o755)
    monkeypatch.setattr(sandbox, "_probe", None)
    monkeypatch.setattr(sandbox, "_no_size", set())
    monkeypatch.setattr(sandbox, "_candidates", lambda: [str(old)])
    assert sandbox.choose("bwrap") == sandbox.Sandbox("bwrap", str(old))
    assert "--size" not in sandbox._bwrap_argv(str(old), str(tmp_path), {})
    assert "--size" in sandbox._bwrap_argv(real, str(tmp_path), {})
