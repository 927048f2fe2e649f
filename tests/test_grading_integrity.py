"""Grading a class that attacks its grader: no forged pass, no harm to a classmate, every run ends.

Each file of ``verify_fixtures/attacks/`` is a submission written to fool
the grader (one attack each), beside a wrong ``affine_backward`` (a mean
where the gradient sums over the batch): whatever an attack does, that
function must never pass. The correct ``good_layers.py`` is graded alone and
beside every attacker, and its verdicts must be the same.

The attacks that signal processes run only under bubblewrap: without a
sandbox, a runner has the grader's own user and could signal it, which the
docs say plainly.
"""

import contextlib
import io
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from twingrad.cli import main
from twingrad.verify import sandbox
from twingrad.verify.judge import RUNNER
from twingrad.verify.schema import SCHEMA

FIXTURES = Path(__file__).parent / "verify_fixtures"
ATTACKS = sorted(p.stem for p in (FIXTURES / "attacks").glob("*.py"))
SANDBOXED_ONLY = {"signal_the_grader"}
ONLY = "affine_forward,affine_backward,relu_forward,relu_backward"


def _bwrap_reason() -> str | None:
    try:
        sandbox.choose("bwrap")
    except sandbox.SandboxError as exc:
        return str(exc)
    return None


MODES = [pytest.param("bwrap", marks=pytest.mark.skipif(_bwrap_reason() is not None,
                                                          reason=f"bubblewrap cannot run here: {_bwrap_reason()}")),
         "none"]


def _verify(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *argv])
    return code, out.getvalue(), err.getvalue()


def _marked_processes(*markers: bytes) -> list[int]:
    """Live processes whose command line holds one of ``markers``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(m in cmdline for m in markers):
            found.append(int(entry))
    return found


WRONG_AFFINE = (FIXTURES / "attacks" / "zero_abs.py").read_text().split("np.absolute = np.abs\n", 1)[1]


def _classmates(folder: Path, report: Path, mode: str) -> None:
    """Two attacks that need paths: rewrite a classmate's file, and rewrite the report after the run."""
    targets = [str(folder / "good.py")]
    if mode == "bwrap":  # without a sandbox the snapshots share the grader's user: see docs/verify.md
        targets.append("/tmp/*/*/*.py")
    (folder / "rewrite_a_classmate.py").write_text(
        "import glob\nimport numpy as np\n"
        f"for pattern in {targets!r}:\n"
        "    for target in glob.glob(pattern):\n"
        "        try:\n"
        "            with open(target, 'w') as handle:\n"
        "                handle.write('def affine_backward(dout, cache):\\n    return None\\n')\n"
        "        except OSError:\n"
        "            pass\n" + WRONG_AFFINE)
    (folder / "rewrite_the_report.py").write_text(
        "import subprocess\nimport numpy as np\n"
        f"subprocess.Popen(['sh', '-c', 'sleep 1; echo forged > {report}'], start_new_session=True)\n"
        + WRONG_AFFINE)


def _verdicts(submission: dict) -> dict:
    """What the judge decided about a submission: its fields but where it was and how long it took."""
    keys = set(SCHEMA["oneOf"][1]["properties"]["submissions"]["items"]["properties"]) - {"timings", "path", "name"}
    return {k: submission[k] for k in keys}


@pytest.fixture(scope="module", params=MODES)
def graded(request, tmp_path_factory):
    mode = request.param
    folder = tmp_path_factory.mktemp(f"class-{mode}")
    report = folder.parent / f"report-{mode}.json"
    shutil.copy(FIXTURES / "good_layers.py", folder / "good.py")
    attacks = [a for a in ATTACKS if mode == "bwrap" or a not in SANDBOXED_ONLY]
    for name in attacks:
        shutil.copy(FIXTURES / "attacks" / f"{name}.py", folder / f"{name}.py")
    _classmates(folder, report, mode)
    alone_code, alone_out, _ = _verify("--impl", str(folder / "good.py"), "--json", "-k", "2", "--only", ONLY,
                                       "--sandbox", mode)
    good_source = (folder / "good.py").read_text()
    start = time.monotonic()
    # 10 s a function: the endless loop costs that much; importing twingrad (one attack does) fits in it
    code, out, err = _verify("--impl", str(folder), "--json", "-k", "2", "--only", ONLY, "-j", "2",
                             "--timeout", "10", "--sandbox", mode)
    elapsed = time.monotonic() - start
    report.write_text(out)
    time.sleep(1.5)  # the detached writer would have struck by now
    # the detached sleep, the report writer, and any runner (the forked child is one, its thread too)
    leftovers = _marked_processes(b"sleep\x004242", b"sleep 1; echo forged > " + str(report).encode(),
                                  RUNNER.encode() + b"\x00")
    for pid in leftovers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    doc = json.loads(out)
    return {"mode": mode, "doc": doc, "code": code, "err": err, "elapsed": elapsed, "report": report,
            "out": out, "leftovers": leftovers, "alone": json.loads(alone_out), "alone_code": alone_code,
            "good_source": good_source, "folder": folder, "attacks": attacks,
            "by_name": {s["name"]: s for s in doc["submissions"]}}


def test_no_attack_forges_a_pass(graded):
    for name in [*graded["attacks"], "rewrite_a_classmate", "rewrite_the_report"]:
        submission = graded["by_name"][f"{name}.py"]
        if name in ("stubs", "empty"):
            continue
        statuses = submission["functions"]
        assert submission["status"] in ("fail", "import_error"), name
        # an attack that breaks its own channel at import is an import error; else the backward is judged
        assert submission["status"] == "import_error" or statuses["affine_backward"] in ("fail", "error"), name


def test_the_attacks_are_reported_as_what_they_are(graded):
    by_name = graded["by_name"]

    def message(name, function="affine_backward"):
        return " ".join(c["message"] or "" for c in by_name[f"{name}.py"]["checks"] if c["function"] == function)

    assert by_name["patch_the_checker.py"]["uses_twingrad"] is True
    assert by_name["good.py"]["uses_twingrad"] is False
    assert "malformed" in message("flood_the_channel") or "died" in message("flood_the_channel")
    assert "did not finish within 10 s" in message("endless")
    assert "died" in message("forge_the_channel") or "malformed" in message("forge_the_channel")


def test_stubs_and_an_empty_file_are_incomplete_never_pass(graded):
    for name in ("stubs.py", "empty.py"):
        submission = graded["by_name"][name]
        assert submission["status"] == "incomplete" and submission["exit_code"] == 1, name
        assert submission["summary"]["functions"]["pass"] == 0, name


def test_the_correct_submission_is_judged_alike_alone_and_beside_every_attacker(graded):
    alone, beside = graded["alone"], graded["by_name"]["good.py"]
    assert alone["functions"] == {f: "pass" for f in ONLY.split(",")}
    assert _verdicts(beside) == _verdicts(alone)
    if graded["mode"] == "bwrap":  # the classmate who tried could not even reach the original
        assert (graded["folder"] / "good.py").read_text() == graded["good_source"]


def test_the_grader_ends_within_its_budget_and_leaves_no_process(graded):
    # one timeout of 10 s (the endless loop) and everyone's start-up, over two jobs: a grader waiting on
    # the attackers' threads, children and sleeps (thousands of seconds) would be far past this
    assert graded["elapsed"] < 120
    assert graded["leftovers"] == []
    assert graded["report"].read_text() == graded["out"]  # nothing rewrote it after the run


def test_the_report_is_complete_and_valid(graded):
    doc = graded["doc"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, SCHEMA)
    assert doc["settings"]["sandbox"] == graded["mode"]
    assert len(doc["submissions"]) == len(graded["attacks"]) + 3
    assert "FORGED" not in graded["out"] and "forged" not in graded["out"]


def test_a_twingrad_bug_on_one_submission_is_its_internal_error_and_the_others_are_graded(tmp_path, monkeypatch):
    from twingrad.verify import judge

    for name in ("first", "victim", "last"):
        shutil.copy(FIXTURES / "good_layers.py", tmp_path / f"{name}.py")
    real = judge.check_one

    def planted(name, caller, settings):
        if settings.impl.endswith("victim.py") and name == "relu_forward":
            raise RuntimeError("a planted bug in the judge")
        return real(name, caller, settings)

    monkeypatch.setattr(judge, "check_one", planted)
    code, out, _ = _verify("--impl", str(tmp_path), "--json", "-k", "1", "--only", ONLY, "--sandbox", "none")
    by_name = {s["name"]: s for s in json.loads(out)["submissions"]}
    victim = by_name["victim.py"]
    assert victim["status"] == "internal_error" and victim["exit_code"] == 1
    assert "RuntimeError: a planted bug in the judge" in victim["internal_error"]
    assert "Traceback" in victim["internal_error"]
    assert by_name["first.py"]["status"] == by_name["last.py"]["status"] == "pass"
    assert code == 1


def test_file_names_are_shown_with_control_characters_escaped(tmp_path):
    shutil.copy(FIXTURES / "good_layers.py", tmp_path / "clear\x1b[2J\rscreen.py")
    (tmp_path / "broken\x07.py").write_text("def affine_forward(x, w, b):\n    return (\n")
    code, out, err = _verify("--impl", str(tmp_path), "-k", "1", "--only", ONLY, "--sandbox", "none")
    assert "\x1b" not in out + err and "\x07" not in out + err and "\r" not in out + err
    assert "clear\\x1b[2J\\rscreen.py" in out and "broken\\x07.py" in out


# A net that writes into the dict the judge hands its params.update() (it spots the runner's attribute
# walk on its stack): small weights and large biases put every ReLU in its linear part, where a backward
# without the ReLU mask agrees with the twin, if the judge took the steered weights as its own.
STEER_THE_WEIGHTS = '''
import sys as _sys


class _Steering:
    def __init__(self, params):
        self.params = params

    def update(self, other):
        for key in list(other):
            if key.startswith("W"):
                other[key] = other[key] * 0.05
            elif key.startswith(("b", "beta")):
                other[key] = other[key] + 6.0
            elif key.startswith("gamma"):
                other[key] = np.ones_like(other[key])
        self.params.update(other)


def _steered(self):
    if "params.update" in repr(list(_sys._getframe(1).f_locals.values()))[:5000]:
        return _Steering(self._params)
    return self._params


def _set(self, value):
    self._params = value
'''


def test_a_net_that_writes_into_the_judges_weights_changes_nothing(tmp_path):
    root = tmp_path / "steer"
    shutil.copytree(FIXTURES / "course" / "2019", root)
    package = root / "assignment2" / "cs231n"
    utils = package / "layer_utils.py"
    no_mask = utils.read_text().replace("    da = relu_backward(dout, relu_cache)\n    return affine_backward(da,",
                                        "    return affine_backward(dout,")  # no ReLU mask: wrong
    utils.write_text(no_mask)
    fc_net = package / "classifiers" / "fc_net.py"
    text = fc_net.read_text().replace("\n\nclass FullyConnectedNet", STEER_THE_WEIGHTS + "\n\nclass FullyConnectedNet")
    fc_net.write_text(text + "\n\nFullyConnectedNet.params = property(_steered, _set)\n")
    code, out, _ = _verify("--impl", str(root), "--json", "-k", "2", "--only", "FullyConnectedNet.loss",
                           "--sandbox", "none")
    checks = json.loads(out)["checks"]
    plain = {c["gradient"]: c["status"] for c in checks if c["configuration"] == "plain"}
    assert plain["W"] == "fail" and code == 1, plain


def test_a_backward_that_fakes_float32_noise_at_the_rerun_still_fails(tmp_path):
    # In float32 the judge reruns the hand pass at inputs one ulp away to measure its rounding; this
    # affine_backward returns db = 0, and a huge jump at the rerun, to have its tolerance widened.
    source = (FIXTURES / "good_layers.py").read_text()
    source = source.replace("    db = np.sum(dout, axis=0)\n",
                            "    db = np.zeros(w.shape[1], dtype=dout.dtype)\n"
                            "    if any(s.shape == x.shape and np.allclose(s, x, rtol=1e-6, atol=0)\n"
                            "           and not np.array_equal(s, x) for s in SEEN):\n"
                            "        db = db + np.float32(1e6)\n"
                            "    SEEN.append(np.array(x))\n", 1)
    path = tmp_path / "noisy.py"
    path.write_text("SEEN = []\n" + source)
    code, out, _ = _verify("--impl", str(path), "--json", "-k", "3", "--dtype", "float32", "--sandbox", "none",
                           "--only", "affine_forward,affine_backward")
    db = next(c for c in json.loads(out)["checks"] if c["gradient"] == "db")
    assert db["status"] == "fail", db


def test_text_a_submission_controls_reaches_the_terminal_without_control_characters(tmp_path):
    # An exception's message and its type's name, made of escape sequences that would move the cursor
    # up, overwrite 'error' with 'pass' and hide what follows.
    path = tmp_path / "ansi.py"
    path.write_text("Hidden = type('Hid\\x1b[8mden', (Exception,), {})\n\n\n"
                    "def affine_forward(x, w, b):\n    raise ValueError('\\x1b[2A\\x1b[1Gpass \\x1b[8m')\n\n\n"
                    "def relu_forward(x):\n    raise Hidden('\\x1b[0m OK')\n")
    code, out, err = _verify("--impl", str(path), "--only", "affine_forward,relu_forward", "--sandbox", "none")
    assert "\x1b" not in out + err and "\\x1b[2A" in out and code == 1
    table = _verify("--impl", str(path), str(FIXTURES / "good_layers.py"), "--only", "affine_forward,relu_forward",
                    "--sandbox", "none")[1]
    assert "\x1b" not in table


def test_importing_twingrad_is_seen_even_when_the_submission_hides_it(tmp_path):
    hidden = tmp_path / "hidden.py"
    hidden.write_text("import sys\nfrom twingrad.layers import affine_forward, affine_backward\n"
                      "for name in [n for n in sys.modules if n.startswith('twingrad')]:\n    del sys.modules[name]\n")
    raising = tmp_path / "raising.py"  # a traceback through the runner reads its lines: not twingrad's code
    raising.write_text("def affine_forward(x, w, b):\n    raise ValueError('no')\n")
    for path, expected in ((hidden, True), (raising, False)):
        _, out, _ = _verify("--impl", str(path), "--json", "-k", "1", "--only", "affine_forward",
                            "--sandbox", "none")
        assert json.loads(out)["uses_twingrad"] is expected, path.name
