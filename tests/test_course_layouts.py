"""Submissions as students hand them in: the course package, zipped or not, in a class folder.

``verify_fixtures/course/2017`` is a correct assignment-2 package of the
2017 starter (absolute ``cs231n.`` imports, dropout's p drops a unit,
``FullyConnectedNet(dropout=0, use_batchnorm=False)``); ``course/2019`` one
of the 2019 starter (relative imports, p keeps a unit,
``dropout_keep_ratio=1, normalization=None``). Both carry the starter's
``fast_layers.py``, whose compiled extension is absent here, as in a real
hand-in. The class below mixes them, zipped and not, with broken variants.
"""

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from twingrad.cli import main

# The convolutional half (issue 12), which these FC-only fixtures do not write: reported missing.
CONVOLUTIONAL = {
    "conv_forward_naive", "conv_backward_naive", "conv_forward_fast", "conv_backward_fast",
    "max_pool_forward_naive", "max_pool_backward_naive", "max_pool_forward_fast", "max_pool_backward_fast",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward", "spatial_groupnorm_forward",
    "spatial_groupnorm_backward", "conv_relu_forward", "conv_relu_backward", "conv_relu_pool_forward",
    "conv_relu_pool_backward", "ThreeLayerConvNet.loss",
}

COURSE = Path(__file__).parent / "verify_fixtures" / "course"


def _verify(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *argv])
    return code, out.getvalue(), err.getvalue()


def _zip(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent))


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """A class of four: alice (2017, a folder), bob (2019, a zip), carol (a starter module that does not
    import), dave (2019 with broken update rules)."""
    root = tmp_path_factory.mktemp("class")
    shutil.copytree(COURSE / "2017", root / "alice")
    staging = tmp_path_factory.mktemp("staging")
    shutil.copytree(COURSE / "2019" / "assignment2", staging / "assignment2")
    _zip(staging / "assignment2", root / "bob.zip")
    shutil.copytree(COURSE / "2019", root / "carol")
    _edit(root / "carol" / "assignment2" / "cs231n" / "fast_layers.py",
          "try:\n    from cs231n.im2col_cython import col2im_cython, im2col_cython\n",
          "from cs231n.im2col_cython import col2im_cython, im2col_cython\ntry:\n    pass\n")
    shutil.copytree(COURSE / "2019", root / "dave")
    optim = root / "dave" / "assignment2" / "cs231n" / "optim.py"
    _edit(optim, '    m_hat = config["m"] / (1 - config["beta1"] ** config["t"])\n',
          '    m_hat = config["m"]\n')
    _edit(optim, '    v_hat = config["v"] / (1 - config["beta2"] ** config["t"])\n', '    v_hat = config["v"]\n')
    _edit(optim, '    next_w = w - config["learning_rate"] * dw / (np.sqrt(config["cache"]) + config["epsilon"])',
          '    next_w = w - config["learning_rate"] * dw / np.sqrt(config["cache"] + config["epsilon"])')
    _edit(optim, '    v = config["momentum"] * v - config["learning_rate"] * dw\n    next_w = w + v',
          '    v = config["momentum"] * v + config["learning_rate"] * dw\n    next_w = w - v')
    shutil.copytree(COURSE / "2019", root / "eve")  # her net has no layer norm yet
    _edit(root / "eve" / "assignment2" / "cs231n" / "classifiers" / "fc_net.py",
          "            if normalization is not None and i < self.num_layers - 1:",
          "            if normalization == 'batchnorm' and i < self.num_layers - 1:")
    code, out, err = _verify("--impl", str(root), "--json", "-k", "3", "-j", "2")
    doc = json.loads(out)
    return {"code": code, "doc": doc, "by_name": {s["name"]: s for s in doc["submissions"]}}


def test_a_class_folder_gives_one_result_per_entry_named_by_the_entry(graded):
    assert sorted(graded["by_name"]) == ["alice", "bob.zip", "carol", "dave", "eve"]


def test_both_eras_pass_everything_with_no_option(graded):
    for name, convention in (("alice", "drop"), ("bob.zip", "keep")):
        submission = graded["by_name"][name]
        # everything written passes; only the convolutional half, not in these fixtures, is missing
        not_passed = {f: s for f, s in submission["functions"].items() if s != "pass"}
        assert not_passed == dict.fromkeys(CONVOLUTIONAL, "missing"), (name, not_passed)
        assert submission["status"] == "incomplete", name
        assert submission["dropout_convention"] == convention
        assert set(submission["functions"]) >= {"affine_relu_forward", "FullyConnectedNet.loss",
                                                "sgd", "sgd_momentum", "rmsprop", "adam"}
        net = [c for c in submission["checks"] if c["function"] == "FullyConnectedNet.loss"]
        assert {c["gradient"] for c in net} == {"loss", "W", "b", "gamma", "beta", "scores_test"}
        # each normalization its net offers is checked on its own
        expected = {"plain", "batchnorm", "dropout"} if name == "alice" else {"plain", "batchnorm", "layernorm",
                                                                               "dropout"}
        assert {c["configuration"] for c in net} == expected


def test_a_configuration_the_net_does_not_support_is_skipped_with_why_and_the_others_are_checked(graded):
    eve = graded["by_name"]["eve"]
    net = [c for c in eve["checks"] if c["function"] == "FullyConnectedNet.loss"]
    statuses = {}
    for check in net:
        statuses.setdefault(check["configuration"], set()).add(check["status"])
    assert statuses == {"plain": {"pass"}, "batchnorm": {"pass"}, "layernorm": {"missing"}, "dropout": {"pass"}}
    message = next(c["message"] for c in net if c["configuration"] == "layernorm")
    assert "normalization='layernorm' is not supported" in message and "gamma1" in message
    assert eve["functions"]["FullyConnectedNet.loss"] == "missing" and eve["status"] == "incomplete"


def test_a_starter_module_that_does_not_import_fails_only_what_depends_on_it(graded):
    carol = graded["by_name"]["carol"]
    statuses = carol["functions"]
    for name in ("affine_forward", "batchnorm_backward", "dropout_forward", "adam"):
        assert statuses[name] == "pass", name
    for name in ("affine_relu_forward", "affine_bn_relu_backward", "FullyConnectedNet.loss"):
        assert statuses[name] == "error", name
        message = next(c["message"] for c in carol["checks"] if c["function"] == name)
        assert "No module named 'cs231n.im2col_cython'" in message and "Traceback" not in message
    assert carol["import_error"] is None and carol["status"] == "fail"


def test_broken_update_rules_fail_with_the_mistake_named(graded):
    dave = graded["by_name"]["dave"]
    assert dave["functions"]["sgd"] == "pass"
    hints = {}
    for check in dave["checks"]:
        if check["status"] == "fail" and check["gradient"] == "next_w":
            hints[check["function"]] = " ".join(check["diagnosis"]["hints"])
    assert "bias correction" in hints["adam"]
    assert "epsilon is inside the square root" in hints["rmsprop"]
    assert "velocity's sign" in hints["sgd_momentum"]
    published = {c["function"]: c["status"] for c in dave["checks"] if c["gradient"] == "published"}
    # at the notebook's values epsilon's place moves the step by ~1e-10: only the tiny-gradient cases see it
    assert published == {"sgd_momentum": "fail", "rmsprop": "pass", "adam": "fail"}


def test_the_class_exit_code_is_the_worst(graded):
    assert graded["code"] == graded["doc"]["exit_code"] == 1


def test_a_zip_that_points_outside_itself_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("cs231n/layers.py", "import numpy as np\n")
        archive.writestr("../../escaped.py", "print('out')\n")
    code, out, _ = _verify("--impl", str(evil), "--json")
    doc = json.loads(out)
    assert doc["status"] == "import_error" and "points outside the archive" in doc["import_error"]
    assert not (tmp_path.parent / "escaped.py").exists()


@pytest.mark.parametrize("name, content, message", [
    ("broken.zip", b"PK\x03\x04 not really", "not a readable zip archive"),
    ("notes.txt", b"hello", "not a .py file, a .zip or a folder"),
])
def test_a_path_that_is_no_submission_is_one_line_and_exit_2(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = _verify("--impl", str(path))
    assert code == 2 and message in err and "Traceback" not in out + err


def test_an_error_raised_in_the_courses_ready_made_files_is_not_checked_not_the_students(tmp_path):
    root = tmp_path / "frank"
    shutil.copytree(COURSE / "2019", root)
    package = root / "assignment2" / "cs231n"
    with open(package / "fast_layers.py", "a") as handle:  # the starter's fast layers need the extension
        handle.write("\n\ndef conv_forward_fast(x, w, b, conv_param):\n    return col2im_6d_cython(x, w)\n")
    with open(package / "layer_utils.py", "a") as handle:
        handle.write(
            "\n\ndef conv_relu_forward(x, w, b, conv_param):\n"
            "    a, conv_cache = conv_forward_fast(x, w, b, conv_param)\n"
            "    out, relu_cache = relu_forward(a)\n"
            "    return out, (conv_cache, relu_cache)\n"
            "\n\ndef conv_relu_pool_forward(x, w, b, conv_param, pool_param):\n"
            "    raise ValueError('my own mistake')\n")
    code, out, _ = _verify("--impl", str(root), "--json", "-k", "2", "--sandbox", "none",
                           "--only", "affine_relu_forward,conv_relu_forward,conv_relu_pool_forward")
    checks = {c["function"]: c for c in json.loads(out)["checks"]}
    assert checks["conv_relu_forward"]["status"] == "missing"
    assert "fast_layers.py is the course's ready-made code" in checks["conv_relu_forward"]["message"]
    assert checks["conv_relu_pool_forward"]["status"] == "error"  # raised in the student's own file
    assert checks["affine_relu_forward"]["status"] == "pass"


def test_a_normalization_built_under_the_wrong_names_is_an_error_not_unsupported(tmp_path):
    root = tmp_path / "gina"
    shutil.copytree(COURSE / "2019", root)
    _edit(root / "assignment2" / "cs231n" / "classifiers" / "fc_net.py",
          "            if normalization is not None and i < self.num_layers - 1:",
          "            if normalization is not None and i > 0:")  # gamma2 ... on the wrong layers
    code, out, _ = _verify("--impl", str(root), "--json", "-k", "2", "--sandbox", "none",
                           "--only", "FullyConnectedNet.loss")
    statuses = {c["configuration"]: c["status"] for c in json.loads(out)["checks"]}
    assert statuses["batchnorm"] == "error" and statuses["layernorm"] == "error", statuses
    assert statuses["plain"] == "pass"


def test_a_relu_on_the_scores_is_named_in_the_loss_diagnosis(tmp_path):
    root = tmp_path / "hank"
    shutil.copytree(COURSE / "2019", root)
    _edit(root / "assignment2" / "cs231n" / "classifiers" / "fc_net.py",
          "        scores, last_cache = affine_forward(out, self.params['W%d' % L], self.params['b%d' % L])\n",
          "        scores, last_cache = affine_relu_forward(out, self.params['W%d' % L], self.params['b%d' % L])\n")
    _edit(root / "assignment2" / "cs231n" / "classifiers" / "fc_net.py",
          "affine_backward(dscores, last_cache)", "affine_relu_backward(dscores, last_cache)")
    code, out, _ = _verify("--impl", str(root), "--json", "-k", "2", "--sandbox", "none",
                           "--only", "FullyConnectedNet.loss")
    loss = next(c for c in json.loads(out)["checks"] if c["configuration"] == "plain" and c["gradient"] == "loss")
    assert loss["status"] == "fail" and any("scores pass through a ReLU" in h for h in loss["diagnosis"]["hints"])


def test_a_net_whose_batch_norm_forgets_its_running_averages_fails_in_test_mode(tmp_path):
    # Every call gets a fresh bn_param in train mode: the loss and its gradients are right, test mode is not.
    root = tmp_path / "ida"
    shutil.copytree(COURSE / "2019", root)
    fc_net = root / "assignment2" / "cs231n" / "classifiers" / "fc_net.py"
    text = fc_net.read_text()
    old = ("                out, cache = affine_bn_relu_forward(out, W, b, self.params['gamma%d' % i],\n"
           "                                                    self.params['beta%d' % i], self.bn_params[i - 1])\n")
    assert text.count(old) == 1
    fc_net.write_text(text.replace(old, old.replace("self.bn_params[i - 1]", "{'mode': 'train'}")))
    code, out, _ = _verify("--impl", str(root), "--json", "-k", "2", "--sandbox", "none",
                           "--only", "FullyConnectedNet.loss")
    rows = {(c["configuration"], c["gradient"]): c for c in json.loads(out)["checks"]}
    assert rows[("batchnorm", "scores_test")]["status"] == "fail"
    assert "no running averages" in rows[("batchnorm", "scores_test")]["diagnosis"]["text"]
    assert rows[("batchnorm", "W")]["status"] == "pass" and rows[("plain", "scores_test")]["status"] == "pass"
