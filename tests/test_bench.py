"""Smoke tests of ``twingrad bench`` on tiny sizes: every section runs, the table and the
JSON come out, and PyTorch / JAX are skipped cleanly when missing. No timing is asserted."""

import argparse
import json

import numpy as np
import pytest

from twingrad import bench
from twingrad.bench import frameworks, timing

TINY = ["--quick", "--repeats", "1", "--settle", "0", "--batch", "6", "--input-dim", "8", "--hidden", "4",
        "--depth", "2", "--classes", "3"]


def _run(argv):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


@pytest.fixture
def no_frameworks(monkeypatch):
    """As on a machine without the bench extra, whatever this one has installed."""
    monkeypatch.setattr(frameworks, "load", lambda name: (None, f"{name} not installed (test)"))


def test_every_section_runs_and_writes_json(tmp_path, capsys, no_frameworks):
    out = tmp_path / "bench.json"
    assert _run(TINY + ["--sections", "step,layers,bn-alt,memory,verify", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "torch not installed" in text and "jax not installed" in text
    for heading in ("Training step", "Hand step / other", "Layers", "batchnorm_backward", "Peak memory", "verification suite"):
        assert heading in text
    doc = json.loads(out.read_text())
    assert doc["machine"]["numpy"] == np.__version__ and doc["machine"]["cores"] >= 1
    assert [r["config"]["normalization"] for r in doc["step"]] == [None, "batchnorm"]
    for result in doc["step"]:
        assert set(result["timings"]) == {"hand", "autograd twin", "matmul floor"}
        assert result["timings"]["hand"]["median_ms"] > 0
        assert result["agreement"]["autograd twin"]["max_grad_rel_diff"] < 1e-3  # the twin computes the same step
    assert {r["layer"] for r in doc["layers"]} >= {"affine", "relu", "batchnorm", "softmax_loss", "affine_bn_relu"}
    assert all(r["speedup"] > 0 for r in doc["bn_alt"])
    assert all(r["hand_peak_bytes"] > 0 and r["twin_peak_bytes"] > 0 for r in doc["memory"])
    assert doc["verify"]["big"]["fast"]["status"] in ("pass", "unavailable")


def test_scaling_and_plots(tmp_path, capsys, no_frameworks):
    pytest.importorskip("matplotlib")
    assert _run(TINY + ["--sections", "step,scaling", "--plot", str(tmp_path)]) == 0
    assert (tmp_path / "step.png").stat().st_size > 0 and (tmp_path / "scaling.png").stat().st_size > 0
    assert "Scaling" in capsys.readouterr().out


def test_json_to_stdout_keeps_stdout_clean(capsys):
    assert _run(TINY + ["--no-frameworks", "--sections", "bn-alt", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bn_alt"][0]["timings"]["batchnorm_backward_alt"]["samples"] >= 1


def test_unknown_section_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        _run(TINY + ["--sections", "step,nonsense"])
    assert info.value.code == 2 and "unknown section(s) ['nonsense']" in capsys.readouterr().err


def test_interleaved_rounds_rotate_and_group_by_library():
    calls = []
    candidates = {name: timing.Candidate(lambda n=name: calls.append(n), lib)
                  for name, lib in (("a", "numpy"), ("b", "numpy"), ("t", "torch"))}
    result = timing.interleaved(candidates, rounds=2, block=2, settle=0)
    assert all(len(t.samples) == 4 and t.block == 2 for t in result.values())
    blocks = [calls[i] for i in range(0, len(calls), 3)]  # each block: one untimed call, then two timed
    assert blocks[:3] == ["a", "b", "t"] and blocks[3:] == ["t", "b", "a"]


def test_paired_ratio_is_per_round():
    a = timing.Timing((1.0, 1.0, 4.0, 4.0), block=2)
    b = timing.Timing((2.0, 2.0, 8.0, 8.0), block=2)
    assert timing.paired_ratio(a, b) == pytest.approx(0.5)  # the overall medians would say 2.5 / 5


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_frameworks_agree_with_the_hand_step_when_installed(name):
    module, _ = frameworks.load(name)
    if module is None:
        pytest.skip(f"{name} not installed (the bench extra)")
    from twingrad.bench.step import NetConfig, agreement, build_candidates, make_workload

    cfg = NetConfig(batch=6, input_dim=8, hidden=4, depth=2, classes=3, normalization="batchnorm")
    model, X, y = make_workload(cfg)
    candidates = build_candidates(cfg, model, X, y, **{name: module}, threads=1)
    label = "pytorch eager" if name == "torch" else "jax jit"
    assert agreement(candidates)[label]["max_grad_rel_diff"] < 1e-3


def test_cnn_section_runs_on_a_tiny_net(capsys, no_frameworks):
    """The convolutional step: every numpy implementation computes the same step, and where the time goes."""
    assert _run(TINY + ["--sections", "cnn", "--cnn-batch", "2", "--cnn-size", "4", "--cnn-filters", "2",
                        "--cnn-filter-size", "3", "--json", "-"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert set(doc["cnn"]["timings"]) == {"hand (fast layers)", "autograd twin", "hand (naive layers)", "matmul floor"}
    for name in ("autograd twin", "hand (naive layers)"):
        assert doc["cnn"]["agreement"][name]["max_grad_rel_diff"] < 1e-3
    assert "conv backward (dW, db; no dX)" in doc["cnn"]["split"]
    assert "Convolutional training step" in captured.err and "Where the fast hand step's time goes" in captured.err
