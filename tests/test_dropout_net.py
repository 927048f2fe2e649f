"""A student's FullyConnectedNet with dropout on (``configuration == "dropout"``).

No twin can replay a student's masks; the checks are those the course's
notebook relies on, made strict: fixed masks under a seed, dropout applied in
train mode and not in test mode, gradients that are the derivatives of the
net's own loss. Each broken net is the 2019 fixture with one edit.
"""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from twingrad.cli import main

COURSE = Path(__file__).parent / "verify_fixtures" / "course"
FC_NET = Path("assignment2") / "cs231n" / "classifiers" / "fc_net.py"
DROPOUT_BACKWARD = "            if self.use_dropout:\n                dout = dropout_backward(dout, drop_cache)\n"
DROPOUT_FORWARD = "            if self.use_dropout:\n                out, drop_cache = dropout_forward(out, self.dropout_param)\n"


def _dropout_records(tmp_path, year="2019", edits=()):
    root = tmp_path / "student"
    shutil.copytree(COURSE / year, root)
    path = root / FC_NET
    text = path.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["verify", "--impl", str(root), "--only", "FullyConnectedNet.loss", "-k", "2", "--json",
              "--sandbox", "none"])
    doc = json.loads(out.getvalue())
    records = [c for c in doc["checks"] if c["configuration"] == "dropout"]
    others = {c["status"] for c in doc["checks"] if c["configuration"] != "dropout"}
    return {c["gradient"]: c for c in records}, others


@pytest.mark.parametrize("year", ["2017", "2019"])
def test_a_correct_net_passes_with_dropout_in_either_convention(tmp_path, year):
    records, others = _dropout_records(tmp_path, year)
    assert {g: r["status"] for g, r in records.items()} == dict.fromkeys(["loss", "scores_test", "W", "b"], "pass")
    assert others == {"pass"}


def test_a_forgotten_dropout_backward_fails_the_weights_only_with_dropout_on(tmp_path):
    records, others = _dropout_records(tmp_path, edits=[(DROPOUT_BACKWARD, "")])
    assert records["W"]["status"] == "fail" and records["loss"]["status"] == "pass"
    assert "own loss" in records["W"]["diagnosis"]["text"]
    assert others == {"pass"}  # the configurations without dropout cannot see it


def test_dropout_left_on_in_test_mode_fails_the_test_scores(tmp_path):
    records, _ = _dropout_records(tmp_path, edits=[("            self.dropout_param['mode'] = mode\n",
                                                    "            self.dropout_param['mode'] = 'train'\n")])
    assert records["scores_test"]["status"] == "fail"


def test_dropout_that_is_never_applied_fails_the_loss(tmp_path):
    records, _ = _dropout_records(tmp_path, edits=[(DROPOUT_FORWARD, ""), (DROPOUT_BACKWARD, "")])
    assert records["loss"]["status"] == "fail"
    assert "no unit was dropped" in records["loss"]["diagnosis"]["text"]
    assert records["W"]["status"] == "pass"  # its gradients are still those of its own loss


def test_masks_that_ignore_the_seed_are_reported(tmp_path):
    records, _ = _dropout_records(tmp_path, edits=[("                self.dropout_param['seed'] = seed\n",
                                                    "                pass\n")])
    assert records["loss"]["status"] == "fail"
    assert "with the same seed gave" in records["loss"]["diagnosis"]["text"]
