"""The fairness check of ``twingrad bench``: each implementation's time in the interleaved
harness against its time alone in a fresh process. Only the mechanism is tested (the
section runs, both numbers and the verdict are reported, the child process times what it
is asked to); whether the numbers agree is a measurement, never asserted here."""

import argparse
import json

import pytest

from twingrad import bench
from twingrad.bench import fairness, frameworks, report, timing
from twingrad.bench.step import NetConfig

TINY = ["--repeats", "1", "--settle", "0", "--batch", "6", "--input-dim", "8", "--hidden", "4", "--depth", "2",
        "--classes", "3"]
TINY_CONFIG = NetConfig(batch=6, input_dim=8, hidden=4, depth=2, classes=3)


def _run(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


def test_the_fairness_section_reports_both_times_for_every_implementation(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _run(TINY + ["--no-frameworks", "--sections", "fairness", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "alone, fresh process" in text and "harness ÷ alone" in text
    assert "malloc: " in text.splitlines()[0]  # the allocator setting, the same in the harness and alone
    doc = json.loads(out.read_text())["fairness"]
    assert doc["tolerance"] == pytest.approx(0.2)
    rows = {r["implementation"]: r for r in doc["rows"]}
    assert set(rows) == {"hand", "autograd twin", "matmul floor"}
    for r in rows.values():
        assert r["harness"]["median_ms"] > 0 and r["alone"]["median_ms"] > 0, r
        assert r["ratio"] > 0  # its arithmetic is test_compare's; the JSON's medians are rounded to 10 ns
        assert r["fair"] == (abs(r["ratio"] - 1) <= 0.2)
        assert r["alone"]["samples"] == 3  # one round of three calls, as in the harness


def test_fairness_is_not_run_by_default():
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert "fairness" not in parser.parse_args([]).sections.split(",")


def test_compare_judges_the_ratio_of_the_medians():
    ms = lambda *v: timing.Timing(tuple(x / 1e3 for x in v))  # noqa: E731
    harness = {"a": ms(2.0, 2.2, 2.4), "b": ms(5.0, 5.0, 5.0), "c": ms(1.0), "d": ms(1.0)}
    alone = {"a": ms(2.0, 2.0, 2.0), "b": ms(2.5, 2.5, 2.5), "c": ms(1.3, 1.3), "d": "not timed alone: jax missing"}
    rows = {r["implementation"]: r for r in fairness.compare(harness, alone)}
    assert rows["a"]["ratio"] == pytest.approx(1.1) and rows["a"]["fair"]
    assert rows["b"]["ratio"] == pytest.approx(2.0) and not rows["b"]["fair"]
    assert rows["c"]["ratio"] == pytest.approx(1 / 1.3) and not rows["c"]["fair"]  # faster in the harness: also unfair
    assert rows["d"]["alone"] is None and rows["d"]["fair"] is None and "jax missing" in rows["d"]["note"]
    text = report.fairness_table({"rows": list(rows.values()), "tolerance": 0.2})
    assert "NO (slower in the harness)" in text and "NO (faster in the harness)" in text
    assert "not timed alone: jax missing" in text


def test_a_failing_child_is_reported_not_raised(monkeypatch):
    req = fairness.request(TINY_CONFIG, "no such implementation", 1)
    with pytest.raises(RuntimeError, match="the fresh process timing 'no such implementation' failed: KeyError"):
        fairness.time_alone(req)


@pytest.mark.parametrize("name, module", [("pytorch eager", "torch"), ("jax jit", "jax")])
def test_a_framework_is_timed_alone_with_only_its_own_library(name, module):
    pytest.importorskip(module)
    if frameworks.load(module)[0] is None:
        pytest.skip(f"{module} does not load here")
    result = fairness.time_in_this_process(fairness.request(TINY_CONFIG, name, 2, block=2, warm=1, warm_seconds=0.0))
    assert len(result.samples) == 4 and result.median > 0


def test_the_warm_up_runs_for_a_count_and_a_time(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])

    def call():  # each call takes 10 ms of the fake clock
        now[0] += 0.01

    for calls, seconds, expected in ((2, 0.05, 5), (3, 0.0, 3), (8, 0.05, 8)):
        now[0] = 0.0
        timing._warm_up(call, calls=calls, seconds=seconds)
        assert now[0] == pytest.approx(expected * 0.01), (calls, seconds)


def test_the_ratio_column_says_what_it_is():
    t = timing.Timing((0.002, 0.002, 0.002), block=3)
    text = report.step_table([{"config": {"normalization": None}, "timings": {"hand": t, "jax jit": t}}])
    assert "hand / it" not in text
    assert report.RATIO_HEADER in text.splitlines()[0]
    assert text.splitlines()[-1] == report.RATIO_FOOTER and "below 1 the hand step is faster" in report.RATIO_FOOTER


def test_a_library_change_runs_the_next_library_untimed_instead_of_sleeping(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(timing.time, "sleep", lambda s: pytest.fail("the harness slept"))
    calls = []

    def candidate(name):
        def call():
            calls.append(name)
            now[0] += 0.01  # 10 ms a call
        return call

    cands = {"a": timing.Candidate(candidate("a"), "numpy"), "t": timing.Candidate(candidate("t"), "torch")}
    result = timing.interleaved(cands, rounds=1, block=2, warm=1, settle=0.05, warm_seconds=0.0)
    # a: one untimed call, two timed; t (library changed): 50 ms = 5 untimed calls, two timed
    assert calls == ["a"] * 3 + ["t"] * 7
    assert result["t"].samples == pytest.approx((0.01, 0.01))
