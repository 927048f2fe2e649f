"""``twingrad verify`` on twingrad itself: the table, the JSON document and its schema, options."""

import contextlib
import io
import json
from pathlib import Path

import pytest

from twingrad.cli import main
from twingrad.verify.functions import function_names
from twingrad.verify.schema import SCHEMA


def _verify(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def default_json():
    code, out, _ = _verify("--json", "-k", "2")
    return code, json.loads(out)


def test_default_run_checks_every_function_and_the_network(default_json):
    code, doc = default_json
    assert code == 0 and doc["exit_code"] == 0 and doc["path"] is None
    assert list(doc["functions"]) == function_names()
    assert set(doc["functions"].values()) == {"pass"}
    net = {c["gradient"] for c in doc["checks"] if c["function"] == "FullyConnectedNet.loss"}
    assert net == {"loss", "scores_test", "W", "b", "gamma", "beta"}  # scores_test: loss(X), test mode


def _check_types(doc):
    """The schema's structure, checked by hand (jsonschema is optional)."""
    for key, kind in [("schema", str), ("twingrad_version", str), ("settings", dict), ("checks", list),
                      ("functions", dict), ("summary", dict), ("exit_code", int)]:
        assert isinstance(doc[key], kind), key
    for check in doc["checks"]:
        assert set(SCHEMA["oneOf"][0]["properties"]["checks"]["items"]["required"]) <= set(check)
        assert isinstance(check["function"], str) and check["status"] in ("pass", "fail", "missing", "error", "kink")
        assert check["gradient"] is None or isinstance(check["gradient"], str)
        assert all(isinstance(v, (float, type(None))) for v in (check["max_abs_error"], check["max_rel_error"]))
        assert all(set(t) == {"atol", "rtol"} for t in check["tolerance"].values())
        assert isinstance(check["seed"], int) and all(isinstance(s, list) for s in check["shapes"])


def test_json_document_follows_the_schema(default_json):
    _, doc = default_json
    _check_types(doc)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, SCHEMA)


def test_the_table_has_a_row_per_gradient():
    code, out, _ = _verify("-k", "1", "--only", "batchnorm_backward,svm_loss")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["function", "gradient", "shapes", "tried", "max", "abs", "err", "max", "rel", "err",
                                "status"]
    rows = [line.split()[:2] for line in lines[2:] if line.strip() and not line.startswith("twingrad")]
    assert rows == [["svm_loss", "loss"], ["svm_loss", "dx"], ["batchnorm_backward", "dx"],
                    ["batchnorm_backward", "dgamma"], ["batchnorm_backward", "dbeta"]]
    assert "2 functions" in lines[-1] and lines[-1].endswith("OK")


def test_one_case_replays_alone():
    full = json.loads(_verify("--json", "-k", "3", "--only", "affine_backward")[1])
    one = json.loads(_verify("--json", "-k", "3", "--only", "affine_backward", "--case", "2")[1])
    assert one["checks"][0]["cases"] == 1
    assert one["checks"][0]["shapes"][0] in full["checks"][0]["shapes"]


def test_one_network_in_fast_mode():
    code, out, _ = _verify("--net", "40-12x2-5,batchnorm,batch=6", "--mode", "fast", "-k", "1", "--json")
    doc = json.loads(out)
    assert code == 0
    grads = [c for c in doc["checks"] if c["kind"] == "gradient"]
    assert {c["gradient"] for c in grads} == {"W", "b", "gamma", "beta"} and {c["mode"] for c in grads} == {"fast"}


def test_float32_warns_that_numeric_checks_are_coarse():
    code, _, err = _verify("--dtype", "float32", "-k", "1", "--only", "affine_backward")
    assert code == 0 and "float32 checks are coarse" in err


def test_the_docs_describe_every_field_of_a_check():
    docs = (Path(__file__).parents[1] / "docs" / "verify.md").read_text()
    check = SCHEMA["oneOf"][0]["properties"]["checks"]["items"]
    for field in check["required"] + list(SCHEMA["oneOf"][0]["required"]):
        assert f"`{field}`" in docs, field


@pytest.mark.parametrize("argv, message", [
    (["--impl", "x.py", "--net", "10-5-2"], "cannot be combined"),
    (["--keep-prob"], "--dropout-convention and --keep-prob are for students' code"),
    (["--impl", "x.py", "--keep-prob", "--dropout-convention", "drop"], "--keep-prob means --dropout-convention keep"),
    (["--only", "affine_backwards"], "unknown function 'affine_backwards'"),
    (["--net", "3072-lots-10"], "cannot read the layer sizes"),
    (["-k", "0"], "--cases must be >= 1 and <= 1000, got 0"),
    (["--timeout", "0"], "--timeout must be > 0 and <= 3600, got 0"),
    (["--timeout", "nan"], "--timeout must be > 0"),
    (["-j", "0"], "--jobs must be >= 1 and <= 64, got 0"),
    (["--budget", "-1"], "--budget must be > 0"),
    (["--memory-limit", "10"], "--memory-limit must be 0 (no limit) or at least 256 MB"),
    (["--seed", "-3"], "--seed must be >= 0"),
    (["--seed", "99999999999"], "--seed must be >= 0 and <= 4294967295, got 99999999999"),
    (["--only", ",,,"], "--only was given no function name"),
    (["--sandbox", "docker"], "invalid choice: 'docker'"),
    (["--net", "0-0-0"], "layer sizes must be >= 1 and the class count >= 2, got '0-0-0'"),
    (["--net", "5-3-2,dropout=1.5"], "dropout must be a drop probability in [0, 1), got '1.5'"),
    (["--net", "5-3-2,batch=0"], "batch must be an integer in [2, 100000]"),
    (["--net", "5-3-2,reg=x"], "reg must be a number in [0, 1e6], got 'x'"),
])
def test_bad_options_exit_2_with_a_message(argv, message):
    try:
        code, _, err = _verify(*argv)
    except SystemExit as exit:  # argparse rejects a value out of range: one line naming the option
        code, err_stream = exit.code, io.StringIO()
        with contextlib.redirect_stderr(err_stream), pytest.raises(SystemExit):  # again, to read its line
            main(["verify", *argv])
        err = err_stream.getvalue()
        last = err.strip().splitlines()[-1]  # the usage, then one line naming the option
        assert "Traceback" not in err and last.startswith("twingrad verify: error: argument") and message in last
    assert code == 2 and message in err


def test_auto_projects_every_input_of_a_large_network():
    code, out, _ = _verify("--net", "3072-100-10", "-k", "1", "--json")
    doc = json.loads(out)
    assert code == 0
    modes = {c["gradient"]: c["mode"] for c in doc["checks"] if c["kind"] == "gradient"}
    # b1 has 100 elements, but behind 307 200 weights: projected; b2's 10 are still cheap one by one
    assert modes == {"W": "fast", "b": "fast+full"}
    small = json.loads(_verify("--net", "5-4-3", "-k", "1", "--json")[1])
    assert {c["mode"] for c in small["checks"] if c["kind"] == "gradient"} == {"full"}


def test_a_passing_row_with_a_large_relative_error_is_explained_under_the_table():
    code, out, _ = _verify("-k", "2", "--only", "FullyConnectedNet.loss")
    rows = [line for line in out.splitlines() if line.startswith("FullyConnectedNet.loss") and " b " in line]
    assert code == 0 and rows and "pass" in rows[0]
    assert "max rel err is CS231n's" in out and "It decides nothing" in out
    code, out, _ = _verify("-k", "1", "--only", "relu_forward")
    assert "max rel err is CS231n's" not in out  # no puzzling row, no footer
