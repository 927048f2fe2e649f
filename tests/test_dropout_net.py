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
DROPOUT_FORWARD = ("            if self.use_dropout:\n"
                   "                out, drop_cache = dropout_forward(out, self.dropout_param)\n")


def _net_report(root, cases=2) -> dict:
    """The JSON report of ``twingrad verify`` on the FullyConnectedNet of the package at ``root``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        main(["verify", "--impl", str(root), "--only", "FullyConnectedNet.loss", "-k", str(cases), "--json",
              "--sandbox", "none"])
    return json.loads(out.getvalue())


def _dropout_records(tmp_path, year="2019", edits=()):
    root = tmp_path / "student"
    shutil.copytree(COURSE / year, root)
    path = root / FC_NET
    text = path.read_text()
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    doc = _net_report(root)
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
    assert "autograd twin" in records["W"]["diagnosis"]["text"]
    assert others == {"pass"}  # the configurations without dropout cannot see it


def test_dropout_left_on_in_test_mode_fails_the_test_scores(tmp_path):
    records, _ = _dropout_records(tmp_path, edits=[("            self.dropout_param['mode'] = mode\n",
                                                    "            self.dropout_param['mode'] = 'train'\n")])
    assert records["scores_test"]["status"] == "fail"


def test_dropout_that_is_never_applied_fails_the_loss(tmp_path):
    records, _ = _dropout_records(tmp_path, edits=[(DROPOUT_FORWARD, ""), (DROPOUT_BACKWARD, "")])
    assert records["loss"]["status"] == "fail"
    assert "no unit was dropped" in records["loss"]["diagnosis"]["text"]
    assert records["W"]["status"] == "pass"  # consistent with its own loss: the loss row says what is wrong


def test_masks_that_ignore_the_seed_are_reported(tmp_path):
    records, _ = _dropout_records(tmp_path, edits=[("                self.dropout_param['seed'] = seed\n",
                                                    "                pass\n")])
    assert records["loss"]["status"] == "fail"
    assert "with the same seed gave" in records["loss"]["diagnosis"]["text"]


SCORES = "        scores, last_cache = affine_forward(out, self.params['W%d' % L], self.params['b%d' % L])\n"
SOFTMAX = "        loss, dscores = softmax_loss(scores, y)\n"


@pytest.mark.parametrize("name, edits", [
    # dropout on the scores too, forward and backward: a consistent net, but not the course's
    ("scores", [(SOFTMAX, "        if self.use_dropout:\n            scores, score_cache = dropout_forward(scores, "
                          "self.dropout_param)\n" + SOFTMAX + "        if self.use_dropout:\n            dscores = "
                          "dropout_backward(dscores, score_cache)\n")]),
    # a loss that only moves when dropout is on
    ("shifted", [(SOFTMAX, SOFTMAX + "        loss += 1.0 if self.use_dropout else 0.0\n")]),
    # the last layer's dropout cache used for every layer
    ("one_cache", [("            cache, drop_cache = caches[i - 1]\n",
                    "            cache, drop_cache = caches[i - 1][0], caches[-1][1]\n")]),
])
def test_a_net_whose_loss_is_not_that_of_its_own_masks_is_not_passed(tmp_path, name, edits):
    records, _ = _dropout_records(tmp_path, edits=edits)
    assert {r["status"] for r in records.values()} - {"pass"}, (name, records)
    assert "pass" != records.get("loss", {"status": "error"})["status"], name


def test_gradients_made_up_to_match_a_made_up_loss_are_not_passed(tmp_path):
    # After its first call the net answers L0 + <g, p - p0> for a g of its choosing: central differences
    # of that loss agree with g exactly, but the twin with its masks does not.
    fake = (
        "        if self.use_dropout:\n"
        "            flat = np.concatenate([v.ravel() for k, v in sorted(self.params.items())])\n"
        "            if not hasattr(self, '_first'):\n"
        "                self._first = (loss, flat)\n"
        "            loss0, flat0 = self._first\n"
        "            loss = loss0 + 0.123 * float(np.sum(flat - flat0))\n"
        "            return loss, {k: np.full_like(v, 0.123) for k, v in self.params.items()}\n")
    records, _ = _dropout_records(tmp_path, edits=[(SOFTMAX, SOFTMAX + fake)])
    assert records["loss"]["status"] == "fail"
    assert "central differences of its own loss" in records["loss"]["diagnosis"]["text"]


def test_a_net_that_seeds_once_and_draws_its_masks_inline_passes(tmp_path):
    # Not the course's layout (dropout_forward reseeding at every layer) but correct: one stream seeded
    # once per loss, each layer's mask drawn from it in turn, as dropout_forward would draw it.
    records, others = _dropout_records(tmp_path, edits=[
        ("        caches = []\n", "        caches = []\n        if self.use_dropout and mode == 'train':\n"
                                "            np.random.seed(self.dropout_param['seed'])\n"),
        (DROPOUT_FORWARD, "            if self.use_dropout and mode == 'train':\n"
                          "                p = self.dropout_param['p']\n"
                          "                drop_cache = (np.random.rand(*out.shape) < p) / p\n"
                          "                out = out * drop_cache\n"),
        (DROPOUT_BACKWARD, "            if self.use_dropout:\n                dout = dout * drop_cache\n"),
    ])
    assert {g: r["status"] for g, r in records.items()} == dict.fromkeys(["loss", "scores_test", "W", "b"], "pass")


@pytest.mark.parametrize("signature", ["dropout_keep_ratio", "dropout"])
def test_a_net_whose_dropout_forward_is_still_the_template_is_missing_with_dropout_not_an_error(tmp_path, signature):
    # The convention cannot be probed (dropout_forward raises): the net's signature tells it, by the
    # 2020 keyword or by the 2018-19 default dropout=1 (the keep ratio of a net without dropout).
    root = tmp_path / "student"
    shutil.copytree(COURSE / "2019", root)
    if signature == "dropout":
        fc_net = root / FC_NET
        fc_net.write_text(fc_net.read_text().replace("dropout_keep_ratio", "dropout"))
    layers = root / "assignment2" / "cs231n" / "layers.py"
    text = layers.read_text()
    template = ("    mask = None\n    out = None\n    if mode == 'train':\n"
                "        # TODO: Implement training phase forward pass for inverted dropout.\n"
                "        pass\n        # END OF YOUR CODE\n    else:\n        out = x\n")
    old = ("    mask = None\n    if mode == 'train':\n        mask = (np.random.rand(*x.shape) < p) / p\n"
           "        out = x * mask\n    else:\n        out = x\n")
    assert text.count(old) == 1
    layers.write_text(text.replace(old, template))
    doc = _net_report(root)
    checks = doc["checks"]
    dropout = [c for c in checks if c["configuration"] == "dropout"]
    assert [c["status"] for c in dropout] == ["missing"] and "not implemented yet" in dropout[0]["message"]
    assert {c["status"] for c in checks if c["configuration"] == "plain"} == {"pass"}  # keep convention found


def test_a_seed_that_is_not_a_seed_is_no_internal_error(tmp_path):
    # The net's dropout_param is the submission's: the judge must not pass its 'seed' on unchecked.
    # np.random.seed takes a list; int() does not.
    records, _ = _dropout_records(tmp_path, edits=[("                self.dropout_param['seed'] = seed\n",
                                                    "                self.dropout_param['seed'] = [seed, 1]\n")])
    assert {r["status"] for r in records.values()} == {"pass"}, records


def test_a_dropout_forward_that_spots_the_judges_probe_gains_nothing(tmp_path):
    # Called on ones (as a probe would be), it drops nothing; the net never applies dropout at all.
    records, _ = _dropout_records(tmp_path, edits=[(DROPOUT_FORWARD, ""), (DROPOUT_BACKWARD, "")])
    root = tmp_path / "student" / "assignment2" / "cs231n" / "layers.py"
    text = root.read_text()
    assert "def dropout_forward(x, dropout_param):\n" in text
    root.write_text(text.replace("def dropout_forward(x, dropout_param):\n",
                                 "def dropout_forward(x, dropout_param):\n    if np.all(x == 1):\n"
                                 "        return x, (dropout_param, np.ones_like(x))\n"))
    doc = _net_report(tmp_path / "student")
    loss = next(c for c in doc["checks"]
                if c["configuration"] == "dropout" and c["gradient"] == "loss")
    assert loss["status"] == "fail", loss


def test_masks_that_drop_only_units_already_zero_are_no_dropout(tmp_path):
    # The net applies no dropout but remembers its dead ReLU units by shape; dropout_forward, asked by
    # the judge at that shape, "drops" exactly those: a mask that changes nothing.
    root = tmp_path / "student"
    shutil.copytree(COURSE / "2019", root)
    fc_net, layers = root / FC_NET, root / "assignment2" / "cs231n" / "layers.py"
    text = fc_net.read_text().replace(DROPOUT_FORWARD, "            from .. import layers as _layers\n"
                                      "            _layers.DEAD[out.shape] = out == 0\n").replace(DROPOUT_BACKWARD, "")
    fc_net.write_text(text)
    layers.write_text("DEAD = {}\n" + layers.read_text().replace(
        "def dropout_forward(x, dropout_param):\n",
        "def dropout_forward(x, dropout_param):\n    if x.shape in DEAD and dropout_param['mode'] == 'train':\n"
        "        mask = (~DEAD[x.shape]).astype(x.dtype)\n        return x * mask, (dropout_param, mask)\n"))
    doc = _net_report(root)
    loss = next(c for c in doc["checks"]
                if c["configuration"] == "dropout" and c["gradient"] == "loss")
    assert loss["status"] == "fail" and "drops no active unit" in loss["diagnosis"]["text"], loss


@pytest.mark.parametrize("extra, expected", [("        grads['note'] = 'hello'\n", "pass"),
                                             ("        grads['W1'] = 'todo'\n", "error")])
def test_whatever_grads_holds_is_a_verdict_never_an_internal_error(tmp_path, extra, expected):
    text = (COURSE / "2019" / FC_NET).read_text()
    tail = "        return loss, grads\n"
    assert text.count(tail) == 1
    root = tmp_path / "student"
    shutil.copytree(COURSE / "2019", root)
    (root / FC_NET).write_text(text.replace(tail, extra + tail))
    doc = _net_report(root)
    assert doc["internal_error"] is None and doc["functions"]["FullyConnectedNet.loss"] == expected


def test_a_net_that_keeps_another_fraction_than_asked_fails(tmp_path):
    # Asked to keep 0.75 of the units, it keeps 0.25 (and scales by 4): consistent with itself, not the contract.
    records, _ = _dropout_records(tmp_path, edits=[("'p': dropout_keep_ratio}", "'p': 1 - dropout_keep_ratio}")])
    loss = records["loss"]
    assert loss["status"] == "fail" and "scale the units they keep by 4" in loss["diagnosis"]["text"]


def test_parameters_of_shapes_the_architecture_does_not_have_are_an_error_never_an_internal_error(tmp_path):
    for name, edit in [("transposed", "        self.params['W1'] = self.params['W1'].T\n"),
                       ("ragged", "        self.params['b1'] = [[0.0], [0.0, 1.0]]\n")]:
        root = tmp_path / name
        shutil.copytree(COURSE / "2019", root)
        text = (root / FC_NET).read_text()
        anchor = "        self.dropout_param = {}\n"
        assert text.count(anchor) == 1
        (root / FC_NET).write_text(text.replace(anchor, edit + anchor))
        doc = _net_report(root, cases=1)
        assert doc["internal_error"] is None and doc["functions"]["FullyConnectedNet.loss"] == "error", name
