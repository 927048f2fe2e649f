"""Grade books: a rubric, Gradescope's results.json, JUnit XML and the class CSV.

A class of three submissions (one correct, one with a wrong gradient, one that
does not import) is graded by real ``twingrad verify --impl`` runs, with and
without a rubric; every file is parsed back and checked against the points the
rubric gives, worked out by hand below, and against the JSON report.
"""

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from twingrad import grades
from twingrad.cli import main
from twingrad.grades import RubricError, load_rubric
from twingrad.grades.scoring import grade_document

GRADESCOPE_DIR = Path(__file__).parent.parent / "docs" / "gradescope"

# Written for this test (no twingrad import): what a student hands in.
CORRECT = '''import numpy as np


def affine_forward(x, w, b):
    out = x.reshape(len(x), -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(len(x), -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_forward(x):
    return np.where(x > 0, x, 0.0), x


def relu_backward(dout, cache):
    return np.where(cache > 0, dout, 0.0)


def softmax_loss(x, y):
    shifted = x - x.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(x)
    loss = -np.mean(np.log(probs[np.arange(n), y]))
    dx = probs.copy()
    dx[np.arange(n), y] -= 1
    return loss, dx / n
'''
# The bias gradient averaged over the batch instead of summed: affine_backward fails (db).
WRONG = CORRECT.replace("db = dout.sum(axis=0)", "db = dout.mean(axis=0)")
BROKEN = "import numpy as np\n\ndef affine_forward(x, w, b)\n    return x\n"  # a syntax error

ONLY = "affine_forward,affine_backward,relu_forward,relu_backward,softmax_loss,FullyConnectedNet.loss"
FUNCTIONS = ONLY.split(",")

RUBRIC = '''# graded out of 10
[points]
affine_forward = 1
affine_backward = { points = 2, visibility = "after_due_date" }
relu_forward = 0.5
relu_backward = 1.5
softmax_loss = 3
"FullyConnectedNet.loss[batchnorm]" = 2

[credit]
fail = 0.25

[gradescope]
visibility = "after_published"
'''
# By hand: the correct file earns everything but the network (it defines none: missing, 0);
# the wrong one loses 3/4 of affine_backward's 2 points; the broken one earns nothing.
RUBRIC_MAX = 1 + 2 + 0.5 + 1.5 + 3 + 2
RUBRIC_POINTS = {"correct.py": 1 + 2 + 0.5 + 1.5 + 3, "wrong.py": 1 + 2 * 0.25 + 0.5 + 1.5 + 3, "broken.py": 0}
# Without a rubric: a point per checked function (6); the network is missing everywhere.
PLAIN_POINTS = {"correct.py": 5, "wrong.py": 4, "broken.py": 0}

GRADESCOPE_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
                  "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
GRADESCOPE_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
                   "tags", "visibility", "extra_data"}
VISIBILITIES = {"visible", "hidden", "after_due_date", "after_published"}
# junit-10.xsd's SUREFIRE_TIME: digits (thousands may be comma-grouped), an optional fraction; no sign, no exponent
SUREFIRE_TIME = re.compile(r"(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]*)?")


def _verify(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def classroom(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    subs = root / "submissions"
    subs.mkdir()
    for name, text in (("correct", CORRECT), ("wrong", WRONG), ("broken", BROKEN)):
        (subs / f"{name}.py").write_text(text)
    (root / "rubric.toml").write_text(RUBRIC)
    return root


def _grade_class(root: Path, tag: str, *extra):
    out = root / tag
    out.mkdir()
    code, stdout, err = _verify("--impl", str(root / "submissions"), "--only", ONLY, "-k", "2", "--json",
                                "--junit-xml", str(out / "junit.xml"), "--csv", str(out / "grades.csv"), *extra)
    doc = json.loads(stdout)
    return {"code": code, "doc": doc, "err": err, "junit": ET.parse(out / "junit.xml").getroot(),
            "csv": list(csv.DictReader((out / "grades.csv").open(newline=""))),
            "subs": {Path(s["path"]).name: s for s in doc["submissions"]}}


@pytest.fixture(scope="module")
def with_rubric(classroom):
    return _grade_class(classroom, "rubric", "--rubric", str(classroom / "rubric.toml"))


@pytest.fixture(scope="module")
def without_rubric(classroom):
    return _grade_class(classroom, "plain")


def test_the_fixture_class_is_judged_as_intended(without_rubric):
    subs = without_rubric["subs"]
    assert subs["correct.py"]["functions"] == {f: "pass" for f in FUNCTIONS[:-1]} | {FUNCTIONS[-1]: "missing"}
    assert subs["wrong.py"]["functions"]["affine_backward"] == "fail"
    assert [f for f, s in subs["wrong.py"]["functions"].items() if s != "pass"] == ["affine_backward",
                                                                                   "FullyConnectedNet.loss"]
    assert subs["broken.py"]["status"] == "import_error"
    assert without_rubric["code"] == 2  # the worst of the three


@pytest.mark.parametrize("run, points, max_points", [("with_rubric", RUBRIC_POINTS, RUBRIC_MAX),
                                                     ("without_rubric", PLAIN_POINTS, 6)])
def test_json_csv_and_junit_give_the_hand_computed_points(request, run, points, max_points):
    result = request.getfixturevalue(run)
    json_points = {name: (s["grade"]["points"], s["grade"]["max_points"]) for name, s in result["subs"].items()}
    csv_points = {row["name"]: (float(row["points"]), float(row["max_points"])) for row in result["csv"]}
    junit_points = {}
    for suite in result["junit"]:
        props = {p.get("name"): p.get("value") for p in suite.find("properties")}
        junit_points[suite.get("name")] = (float(props["points"]), float(props["max_points"]))
    expected = {name: (pytest.approx(value), max_points) for name, value in points.items()}
    assert json_points == expected
    assert csv_points == expected
    assert junit_points == expected


@pytest.mark.parametrize("run", ["with_rubric", "without_rubric"])
def test_the_files_agree_with_the_json_report_on_every_status(request, run):
    result = request.getfixturevalue(run)
    keys = ([line.split(" = ")[0].strip('"') for line in RUBRIC.split("[credit]")[0].splitlines()[2:] if line]
            if run == "with_rubric" else FUNCTIONS)
    assert list(result["csv"][0])[4:] == keys
    for row in result["csv"]:
        sub = result["subs"][row["name"]]
        assert row["status"] == sub["status"]
        for key in keys:
            function = key.split("[")[0]
            expected = sub["functions"].get(function, "import_error")
            assert row[key] == expected, (row["name"], key)
            assert next(i for i in sub["grade"]["items"] if i["key"] == key)["status"] == expected
        suite = next(s for s in result["junit"] if s.get("name") == row["name"])
        for case in suite.iter("testcase"):
            outcome = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            assert outcome == {"fail": ["failure"], "import_error": ["error"], "missing": ["skipped"],
                               "pass": []}[row[case.get("name")]]


def test_the_grade_objects_add_nothing_the_json_schema_refuses(with_rubric):
    from twingrad.verify.schema import SCHEMA

    jsonschema = pytest.importorskip("jsonschema")
    graded = with_rubric["doc"]
    assert all("grade" in s for s in graded["submissions"])
    validator = jsonschema.Draft202012Validator(SCHEMA["oneOf"][1]["properties"]["submissions"]["items"])
    for sub in graded["submissions"]:
        plain = {k: v for k, v in sub.items() if k != "grade"}
        # compared with the submission without it: the schema's own lag behind the report does not count here
        found = [sorted((tuple(e.absolute_path), e.validator) for e in validator.iter_errors(d)) for d in (sub, plain)]
        assert found[0] == found[1]


def _check_junit(root: ET.Element) -> None:
    """The structure junit-10.xsd requires, in the stricter older element order."""
    assert root.tag == "testsuites"
    assert set(root.attrib) <= {"name", "time", "tests", "failures", "errors"}
    assert SUREFIRE_TIME.fullmatch(root.get("time"))
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root:
        assert suite.tag == "testsuite"
        assert {"name", "tests", "failures", "errors"} <= set(suite.attrib)
        assert SUREFIRE_TIME.fullmatch(suite.get("time"))
        tags = [child.tag for child in suite]
        assert tags == ["properties"] + ["testcase"] * (len(tags) - 1), "properties first, then the cases"
        for prop in suite.find("properties"):
            assert prop.tag == "property" and set(prop.attrib) == {"name", "value"}
        cases = suite.findall("testcase")
        outcomes = []
        for case in cases:
            assert case.get("name") and case.get("classname") == suite.get("name")
            assert SUREFIRE_TIME.fullmatch(case.get("time"))
            children = [child.tag for child in case]
            assert set(children) <= {"failure", "error", "skipped", "system-out", "system-err"}
            results = [t for t in children if t in ("failure", "error", "skipped")]
            assert len(results) <= 1 and children[: len(results)] == results, "one result, before any output"
            for child in case:
                assert set(child.attrib) <= {"type", "message"}
            outcomes += results
        counts = {"tests": len(cases), "failures": outcomes.count("failure"), "errors": outcomes.count("error"),
                  "skipped": outcomes.count("skipped")}
        assert {k: int(suite.get(k)) for k in counts} == counts
        for key in totals:
            totals[key] += counts[key]
    assert {k: int(root.get(k)) for k in totals} == totals


@pytest.mark.parametrize("run", ["with_rubric", "without_rubric"])
def test_junit_follows_the_schema_and_carries_the_diagnosis(request, run):
    result = request.getfixturevalue(run)
    root = result["junit"]
    _check_junit(root)
    assert [s.get("name") for s in root] == ["broken.py", "correct.py", "wrong.py"]
    wrong = next(s for s in root if s.get("name") == "wrong.py")
    failure = wrong.find("testcase[@name='affine_backward']/failure")
    check = next(c for c in result["subs"]["wrong.py"]["checks"] if c["status"] == "fail")
    assert check["diagnosis"]["text"] in failure.text
    assert failure.get("message") == check["diagnosis"]["text"].splitlines()[0]
    broken = next(s for s in root if s.get("name") == "broken.py")
    error = broken.find("testcase/error")
    assert error.get("type") == "import_error" and "SyntaxError" in error.text


def _gradescope(root: Path, name: str, *extra):
    path = root / f"results-{name}.json"
    code, _, err = _verify("--impl", str(root / "submissions" / f"{name}.py"), "--only", ONLY, "-k", "2",
                           "--gradescope", str(path), *extra)
    return code, json.loads(path.read_text()), err


def _check_gradescope(results: dict) -> None:
    assert set(results) <= GRADESCOPE_TOP
    assert isinstance(results["score"], float)
    assert isinstance(results["output"], str) and isinstance(results["execution_time"], int)
    assert results["visibility"] in VISIBILITIES and results["stdout_visibility"] in VISIBILITIES
    for test in results["tests"]:
        assert set(test) <= GRADESCOPE_TEST
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], float) and isinstance(test["max_score"], float)
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed") and test["visibility"] in VISIBILITIES
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))


@pytest.mark.parametrize("name", ["correct", "wrong", "broken"])
def test_gradescope_results_with_a_rubric(classroom, with_rubric, name):
    code, results, _ = _gradescope(classroom, name, "--rubric", str(classroom / "rubric.toml"))
    _check_gradescope(results)
    assert results["score"] == pytest.approx(RUBRIC_POINTS[f"{name}.py"])
    assert sum(t["max_score"] for t in results["tests"]) == RUBRIC_MAX
    assert results["visibility"] == "after_published"
    tests = {t["name"]: t for t in results["tests"]}
    assert tests["affine_backward"]["visibility"] == "after_due_date"
    assert tests["softmax_loss"]["visibility"] == "after_published"  # the rubric's default
    sub = with_rubric["subs"][f"{name}.py"]
    for item in sub["grade"]["items"]:
        assert tests[item["key"]]["score"] == item["points"]
        assert tests[item["key"]]["status"] == ("passed" if item["status"] in ("pass", "kink") else "failed")
    if name == "wrong":
        assert tests["affine_backward"]["score"] == 0.5
        assert "db is wrong" in tests["affine_backward"]["output"] and "1/N" in tests["affine_backward"]["output"]
    if name == "broken":
        assert code == 2 and "SyntaxError at line 3" in results["output"]


def test_gradescope_without_a_rubric_is_a_point_per_function(classroom):
    _, results, _ = _gradescope(classroom, "wrong")
    _check_gradescope(results)
    assert [t["name"] for t in results["tests"]] == FUNCTIONS
    assert results["score"] == 4.0 and all(t["max_score"] == 1.0 for t in results["tests"])


def test_the_terminal_shows_the_points_after_the_table(classroom):
    code, out, _ = _verify("--impl", str(classroom / "submissions" / "wrong.py"), "--only", ONLY, "-k", "2",
                           "--rubric", str(classroom / "rubric.toml"))
    assert code == 1
    assert f"\nPoints ({classroom / 'rubric.toml'})\n  " in out
    assert out.rstrip().endswith("wrong.py  6.5 / 10")


def test_gradescope_refuses_a_class_before_grading_it(classroom, tmp_path):
    code, out, err = _verify("--impl", str(classroom / "submissions"), "--gradescope", str(tmp_path / "r.json"))
    assert code == 2 and "one submission" in err and "3" in err
    assert out == "" and not (tmp_path / "r.json").exists()


def test_bad_output_paths_are_refused_before_grading(classroom, tmp_path):
    target = classroom / "submissions" / "correct.py"
    before = target.read_bytes()
    code, out, err = _verify("--impl", str(target), "--csv", str(target))
    assert code == 2 and "input files" in err and out == ""
    assert target.read_bytes() == before
    code, _, err = _verify("--impl", str(target), "--junit-xml", str(tmp_path / "no" / "such" / "j.xml"))
    assert code == 2 and "does not exist" in err
    code, _, err = _verify("--impl", str(target), "--csv", str(tmp_path / "a"), "--junit-xml", str(tmp_path / "a"))
    assert code == 2 and "same file" in err


def test_a_rubric_item_left_out_by_only_is_an_error(classroom):
    code, out, err = _verify("--impl", str(classroom / "submissions" / "correct.py"), "--only", "affine_forward",
                             "--rubric", str(classroom / "rubric.toml"))
    assert code == 2 and out == "" and "'affine_backward'" in err and "--only" in err


# -- the rubric's errors ---------------------------------------------------------------------------

KNOWN = ["affine_forward", "affine_backward", "softmax_loss", "FullyConnectedNet.loss", "sgd"]
BAD_RUBRICS = {
    "bad TOML": ("[points]\naffine_forward = 1\naffine_backward = = 2\n", 3, "not valid TOML"),
    "unknown function": ("[points]\naffine_forward = 1\n\naffine_backwards = 2\n", 4,
                         "unknown function 'affine_backwards' in [points] (did you mean 'affine_backward'?)"),
    "unknown configured function": ('[points]\n"FullyConnectedNets.loss[batchnorm]" = 2\n', 2,
                                    "unknown function 'FullyConnectedNets.loss'"),
    "negative points": ("# comment\n[points]\nsoftmax_loss = -1\n", 3, "points of 'softmax_loss' must be >= 0, got -1"),
    "negative in a table": ("[points]\nsgd = { points = -2.5 }\n", 2, "must be >= 0, got -2.5"),
    "points as text": ('[points]\nsgd = "two"\n', 2, "must be a number, got 'two'"),
    "points as bool": ("[points]\nsgd = true\n", 2, "must be a number, got True"),
    "points nan": ("[points]\nsgd = nan\n", 2, "must be a number, got nan"),
    "unknown table": ("[points]\nsgd = 1\n\n[credits]\nfail = 0.5\n", 4, "unknown key 'credits'"),
    "unknown item key": ('[points]\nsgd = { points = 1, hidden = true }\n', 2, "unknown key 'hidden' for 'sgd'"),
    "no points in item": ('[points]\nsgd = { visibility = "hidden" }\n', 2, "'sgd' has no points"),
    "credit status": ("[points]\nsgd = 1\n[credit]\npass = 0.5\n", 4, "unknown status 'pass' in [credit]"),
    "credit above one": ("[points]\nsgd = 1\n[credit]\nkink = 1.5\n", 4, "credit for kink must be between 0 and 1"),
    "visibility": ('[points]\nsgd = { points = 1, visibility = "secret" }\n', 2, "visibility must be one of"),
    "gradescope key": ('[points]\nsgd = 1\n[gradescope]\nvisible = "hidden"\n', 4, "unknown key 'visible'"),
    "sub-table item": ('[points]\nsgd = 1\n\n[points.softmax_loss]\npoints = 1\nweight = 2\n', 6,
                       "unknown key 'weight'"),
    "no points table": ('[credit]\nfail = 0.5\n', None, "no [points] table"),
    "bad configuration": ('[points]\n"FullyConnectedNet.loss[batch norm]" = 1\n', 2, "bad item"),
}


@pytest.mark.parametrize("case", BAD_RUBRICS)
def test_a_bad_rubric_is_an_error_naming_file_and_line(tmp_path, case):
    text, line, words = BAD_RUBRICS[case]
    path = tmp_path / "rubric.toml"
    path.write_text(text)
    with pytest.raises(RubricError) as info:
        load_rubric(str(path), KNOWN)
    message = str(info.value)
    assert message.startswith(f"rubric {path}")
    assert words in message
    if line is not None:
        assert f"{path}, line {line}:" in message
    assert "\n" not in message


def test_a_bad_rubric_stops_verify_with_exit_2_before_grading(classroom, tmp_path):
    path = tmp_path / "rubric.toml"
    path.write_text("[points]\naffine_forward = 1\nlayer_norm_backward = 2\n")
    code, out, err = _verify("--impl", str(classroom / "submissions"), "--rubric", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"twingrad verify: rubric {path}, line 3: unknown function 'layer_norm_backward'")
    assert "layernorm_backward" in err  # the close match
    code, _, err = _verify("--impl", str(classroom / "submissions"), "--rubric", str(tmp_path / "none.toml"))
    assert code == 2 and "cannot be read" in err


def test_a_good_rubric_reads_as_written(classroom):
    rubric = load_rubric(str(classroom / "rubric.toml"), FUNCTIONS)
    assert [(i.key, i.function, i.configuration, i.points, i.visibility) for i in rubric.items] == [
        ("affine_forward", "affine_forward", None, 1.0, None),
        ("affine_backward", "affine_backward", None, 2.0, "after_due_date"),
        ("relu_forward", "relu_forward", None, 0.5, None),
        ("relu_backward", "relu_backward", None, 1.5, None),
        ("softmax_loss", "softmax_loss", None, 3.0, None),
        ("FullyConnectedNet.loss[batchnorm]", "FullyConnectedNet.loss", "batchnorm", 2.0, None)]
    assert rubric.credit == {"pass": 1.0, "kink": 1.0, "fail": 0.25, "error": 0.0, "missing": 0.0}
    assert (rubric.visibility, rubric.stdout_visibility) == ("after_published", "hidden")


def test_the_documented_rubric_reads_with_twingrad_s_function_names(tmp_path):
    from twingrad.verify.functions import function_names

    text = (Path(__file__).parent.parent / "docs" / "grading.md").read_text()
    (tmp_path / "rubric.toml").write_text(text.split("```toml\n")[1].split("```")[0])
    rubric = load_rubric(str(tmp_path / "rubric.toml"), function_names())
    assert sum(item.points for item in rubric.items) == 20  # as its first line says


# -- documents with the fields the grader rewrite adds ---------------------------------------------

def _check(function, status, configuration=None, text=None, message=None, gradient="dx"):
    check = {"function": function, "gradient": gradient, "status": status, "message": message,
             "diagnosis": {"text": text} if text else None}
    if configuration:
        check["configuration"] = configuration
    return check


def _future_doc():
    net = "FullyConnectedNet.loss"
    return {"schema": "twingrad-verify/1", "twingrad_version": "9.9", "settings": {"only": []}, "exit_code": 2,
            "submissions": [
                {"path": "class/alice/layers.py", "name": "alice", "status": "incomplete", "exit_code": 1,
                 "uses_twingrad": True,
                 "functions": {"sgd": "pass", "adam": "missing", net: "kink"},
                 "timings": {"sgd": 0.25, net: 1.5},
                 "checks": [_check("sgd", "pass", gradient="next_w"), _check("adam", "missing", gradient=None),
                            _check(net, "pass", "plain", gradient="W"), _check(net, "kink", "batchnorm"),
                            _check(net, "pass", "dropout")]},
                {"path": "class/bob/layers.py", "status": "fail", "exit_code": 1,
                 "functions": {"sgd": "error", "adam": "pass", net: "fail"},
                 "checks": [_check("sgd", "error", message="raised ValueError\x1b[31m", gradient=None),
                            _check("adam", "pass"), _check(net, "pass", "plain"),
                            _check(net, "fail", "batchnorm", text="W2 is wrong\n  hint: ..."),
                            _check(net, "pass", "dropout")]},
                {"path": "class/carol/layers.py", "status": "internal_error", "exit_code": 2,
                 "internal_error": "Traceback (most recent call last):\n  ...\nKeyError: 'x'",
                 "functions": {"sgd": "pass"}, "checks": [_check("sgd", "pass")]},
                {"path": "class/=cmd/layers.py", "status": "pass", "exit_code": 0,
                 "functions": {"sgd": "pass", "adam": "pass", net: "error"},
                 "checks": [_check(net, "error", message="no FullyConnectedNet(...) signature works", gradient=None)]},
            ]}


FUTURE_RUBRIC = '''[points]
sgd = 1
adam = 2
"FullyConnectedNet.loss[plain]" = 1
"FullyConnectedNet.loss[batchnorm]" = { points = 3, visibility = "hidden" }
"FullyConnectedNet.loss[layernorm]" = 1
[credit]
error = 0.5
'''


def test_configurations_update_rules_and_the_new_statuses_are_graded(tmp_path):
    (tmp_path / "rubric.toml").write_text(FUTURE_RUBRIC)
    rubric = load_rubric(str(tmp_path / "rubric.toml"), KNOWN + ["adam"])
    book = grade_document(_future_doc(), rubric)
    got = {s.name: (s.status, [i.status for i in s.items], s.points) for s in book.submissions}
    assert got == {
        # layernorm was never checked for alice: missing; batchnorm's kink is a pass
        "alice": ("incomplete", ["pass", "missing", "pass", "kink", "missing"], 1 + 0 + 1 + 3 + 0),
        "bob/layers.py": ("fail", ["error", "pass", "pass", "fail", "missing"], 0.5 + 2 + 1 + 0 + 0),
        # what was judged before twingrad failed counts; the rest is the internal error
        "carol/layers.py": ("internal_error", ["pass"] + ["internal_error"] * 4, 1),
        # a check about the whole network (no configuration) decides every configuration
        "=cmd/layers.py": ("pass", ["pass", "pass", "error", "error", "error"], 1 + 2 + 0.5 * (1 + 3 + 1)),
    }
    alice = book.submissions[0]
    assert [i.seconds for i in alice.items] == [0.25, 0.0, 1.5, 0.0, 0.0]  # a function's time counts once


def test_future_documents_in_every_format(tmp_path):
    (tmp_path / "rubric.toml").write_text(FUTURE_RUBRIC)
    doc = _future_doc()
    grades.write_outputs(doc, rubric_path=str(tmp_path / "rubric.toml"), junit_xml=str(tmp_path / "j.xml"),
                         csv=str(tmp_path / "c.csv"), known_functions=KNOWN + ["adam"])
    root = ET.parse(tmp_path / "j.xml").getroot()  # the escape code did not make it ill-formed
    _check_junit(root)
    carol = next(s for s in root if s.get("name") == "carol/layers.py")
    assert [c.find("error").get("type") for c in carol.iter("testcase") if c.find("error") is not None] == [
        "internal_error"] * 4
    bob = next(s for s in root if s.get("name") == "bob/layers.py")
    assert "\ufffd" in bob.find("testcase[@name='sgd']/error").text
    assert bob.find("testcase[@name='FullyConnectedNet.loss[batchnorm]']/failure").get("message") == "W2 is wrong"
    alice = next(s for s in root if s.get("name") == "alice")
    assert alice.get("time") == "1.750"
    assert {p.get("name"): p.get("value") for p in alice.find("properties")}["uses_twingrad"] == "true"
    assert {p.get("name"): p.get("value") for p in bob.find("properties")}["uses_twingrad"] == "false"
    rows = list(csv.reader((tmp_path / "c.csv").open(newline="")))
    assert [r[:4] for r in rows[1:]] == [["alice", "incomplete", "5", "8"], ["bob/layers.py", "fail", "3.5", "8"],
                                         ["carol/layers.py", "internal_error", "1", "8"],
                                         ["'=cmd/layers.py", "pass", "5.5", "8"]]  # no formula for a spreadsheet
    assert doc["submissions"][1]["grade"]["points"] == 3.5
    with pytest.raises(ValueError, match="one submission; this run checked 4"):
        grades.write_outputs(doc, gradescope=str(tmp_path / "r.json"))
    assert not (tmp_path / "r.json").exists()


def test_an_internal_error_keeps_its_traceback_from_students(tmp_path):
    doc = _future_doc()
    carol = {**doc, **doc["submissions"][2]}
    del carol["submissions"]
    grades.write_outputs(carol, gradescope=str(tmp_path / "r.json"))
    results = json.loads((tmp_path / "r.json").read_text())
    _check_gradescope(results)
    assert "KeyError" in results["extra_data"]["internal_error"]
    assert "KeyError" not in results["output"] + "".join(t["output"] for t in results["tests"])
    assert "bug in twingrad" in results["output"]
    assert [t["name"] for t in results["tests"]] == ["sgd"]  # one point per checked function


def test_a_kink_passes_on_gradescope(tmp_path):
    (tmp_path / "rubric.toml").write_text(FUTURE_RUBRIC)
    doc = _future_doc()
    alice = {**doc, **doc["submissions"][0]}
    del alice["submissions"]
    grades.write_outputs(alice, rubric_path=str(tmp_path / "rubric.toml"), gradescope=str(tmp_path / "r.json"))
    results = json.loads((tmp_path / "r.json").read_text())
    _check_gradescope(results)
    batchnorm = results["tests"][3]
    assert (batchnorm["name"], batchnorm["status"], batchnorm["score"]) == ("FullyConnectedNet.loss[batchnorm]",
                                                                           "passed", 3.0)
    assert batchnorm["visibility"] == "hidden" and results["tests"][0]["visibility"] == "visible"
    assert results["execution_time"] == 2  # 1.75 s, rounded
    assert results["extra_data"]["uses_twingrad"] is True


def test_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "grades.csv"
    target.write_text("old")
    grades.write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["grades.csv"]

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(ValueError, match="cannot write .*No space left"):
        grades.write_outputs(_future_doc(), csv=str(target))
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["grades.csv"]


# -- the Gradescope example, run as Gradescope runs it ----------------------------------------------

def _autograder(tmp_path: Path, files: dict) -> tuple[subprocess.CompletedProcess, dict]:
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    for name in ("run_autograder", "setup.sh"):
        shutil.copy(GRADESCOPE_DIR / name, root / "source" / name)
    (root / "source" / "rubric.toml").write_text(RUBRIC)
    for relative, text in files.items():
        (root / "submission" / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / relative).write_text(text)
    src = str(Path(grades.__file__).parents[2])  # this tree's src/, whichever twingrad is installed
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "TWINGRAD_PYTHON": sys.executable,
           "TWINGRAD_SKIP_INSTALL": "1", "TWINGRAD_VERIFY_ARGS": f"--only {ONLY} -k 2",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, cwd=root,
                         capture_output=True, text=True, timeout=120)
    return run, json.loads((root / "results" / "results.json").read_text())


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_autograder is a bash script")
def test_run_autograder_grades_the_package_a_student_uploaded(tmp_path):
    run, results = _autograder(tmp_path, {
        "assignment2/cs231n/layers.py": WRONG,
        "assignment2/cs231n/__init__.py": "",
        "__MACOSX/cs231n/layers.py": CORRECT,  # a Mac's zip debris: never graded
        "notes/layers.py": CORRECT,  # deeper elsewhere does not win over the cs231n package
    })
    assert run.returncode == 0, run.stderr
    assert "grading assignment2/cs231n\n" in run.stdout
    _check_gradescope(results)
    assert results["score"] == RUBRIC_POINTS["wrong.py"]
    assert {t["name"]: t["status"] for t in results["tests"]}["affine_backward"] == "failed"


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_autograder is a bash script")
def test_run_autograder_grades_a_loose_layers_file_beside_others(tmp_path):
    run, results = _autograder(tmp_path, {"layers.py": CORRECT, "scratch.py": "print('trying things')\n"})
    assert run.returncode == 0, run.stderr
    _check_gradescope(results)
    assert results["score"] == RUBRIC_POINTS["correct.py"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_autograder is a bash script")
def test_run_autograder_without_a_layers_file_tells_the_student(tmp_path):
    run, results = _autograder(tmp_path, {"README.txt": "forgot my code", "a.py": "", "b.py": ""})
    assert run.returncode == 0, run.stderr
    assert results["score"] == 0.0 and "No layers.py" in results["output"]


def test_the_default_rubric_leaves_out_what_no_submission_was_asked_to_write():
    from twingrad.grades.scoring import grade_document

    def sub(name, **functions):
        checks = [{"function": f, "configuration": None, "status": status, "message": message}
                  for f, (status, message) in functions.items()]
        return {"name": name, "status": "fail", "functions": {f: s for f, (s, _) in functions.items()},
                "checks": checks}

    undefined, course_code = ("missing", "not defined"), ("missing", "not checked: raised in fast_layers.py")
    doc = {"submissions": [
        sub("ann", affine_forward=("pass", None), svm_loss=("pass", None), affine_bn_relu_forward=undefined,
            conv_relu_forward=course_code,
            dropout_forward=("missing", "not implemented yet: its TODO blocks are empty")),
        sub("bob", affine_forward=("fail", "dx"), svm_loss=undefined, affine_bn_relu_forward=undefined,
            conv_relu_forward=course_code, dropout_forward=("pass", None)),
    ]}
    book = grade_document(doc)
    assert book.keys == ["affine_forward", "svm_loss", "dropout_forward"]
    ann, bob = book.submissions
    assert (ann.points, ann.max_points) == (2.0, 3.0) and (bob.points, bob.max_points) == (1.0, 3.0)


def test_one_submission_alone_cannot_leave_a_function_out_of_the_default_rubric():
    from twingrad.grades.scoring import grade_document

    checks = [{"function": "affine_forward", "configuration": None, "status": "pass", "message": None},
              {"function": "affine_backward", "configuration": None, "status": "missing", "message": "not defined"}]
    doc = {"name": "deleted_the_hard_one", "status": "incomplete", "checks": checks,
           "functions": {"affine_forward": "pass", "affine_backward": "missing"}}
    (sub,) = grade_document(doc).submissions
    assert (sub.points, sub.max_points) == (1.0, 2.0)
