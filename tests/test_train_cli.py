"""``twingrad train`` through ``run(parser.parse_args([...]))``."""

import argparse
import re
import sys

import pytest

from twingrad.train import add_arguments, run


def train(*argv) -> int:
    parser = argparse.ArgumentParser(prog="twingrad train")
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def accuracies(out: str) -> dict:
    found = dict(re.findall(r"^(train|val|test) accuracy:\s+([0-9.]+)$", out, flags=re.M))
    assert sorted(found) == ["test", "train", "val"], out
    return {k: float(v) for k, v in found.items()}


def test_defaults_reach_95_percent_on_digits(capsys):
    assert train("--quiet") == 0
    out = capsys.readouterr().out
    acc = accuracies(out)
    assert acc["test"] >= 0.95 and acc["val"] >= 0.95, out
    assert re.search(r"^elapsed:\s+[0-9.]+ s training", out, flags=re.M)


def test_short_run_with_options_and_plot(capsys, tmp_path):
    plot = tmp_path / "curves.png"
    code = train("--epochs", "3", "--hidden", "32", "--normalization", "batchnorm", "--dropout", "0.1",
                 "--update-rule", "sgd_momentum", "--learning-rate", "0.05", "--dtype", "float64",
                 "--plot", str(plot), "--quiet")
    assert code == 0
    out = capsys.readouterr().out
    assert all(0.5 < a <= 1.0 for a in accuracies(out).values()), out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_autograd_backend(capsys):
    assert train("--epochs", "2", "--backend", "autograd", "--normalization", "layernorm", "--quiet") == 0
    assert "backend autograd" in capsys.readouterr().out


def test_verbose_run_shows_epochs(capsys):
    assert train("--epochs", "1", "--hidden", "16") == 0
    captured = capsys.readouterr()
    assert "(Epoch 1 / 1)" in captured.err + captured.out


def test_checkpoint_and_resume_give_the_uninterrupted_result(capsys, tmp_path):
    prefix = str(tmp_path / "run")
    assert train("--epochs", "4", "--normalization", "batchnorm", "--checkpoint", prefix, "--quiet") == 0
    full = accuracies(capsys.readouterr().out)
    # Architecture and settings come from the checkpoint; only the output prefix changes.
    assert train("--resume", f"{prefix}_epoch_2.npz", "--checkpoint", str(tmp_path / "again"), "--quiet") == 0
    resumed = accuracies(capsys.readouterr().out)
    assert resumed == full
    assert (tmp_path / "again_epoch_4.npz").exists() and not (tmp_path / "again_epoch_2.npz").exists()
    # and a resumed run can go on for longer than the original
    assert train("--resume", f"{prefix}_epoch_4.npz", "--epochs", "5", "--quiet") == 0
    assert "(5 epochs" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "cifar10"], "--dataset cifar10 needs --data-dir"),
    (["--resume", "no/such/file.npz"], "No such file"),
    (["--epochs", "2", "--resume", "{bad}"], "not a readable checkpoint"),
    (["--resume", "{good}", "--normalization", "layernorm"], "model normalization is 'layernorm'"),
])
def test_errors_are_reported_with_exit_code_2(capsys, tmp_path, argv, message):
    bad, good = tmp_path / "bad.npz", tmp_path / "run_epoch_1.npz"
    bad.write_bytes(b"not a zip")
    if "{good}" in argv:
        assert train("--epochs", "1", "--normalization", "batchnorm", "--checkpoint", str(tmp_path / "run"),
                     "--quiet") == 0
    argv = [a.format(bad=bad, good=good) for a in argv]
    assert train(*argv, "--quiet") == 2
    assert message in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_install(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert train("--plot", str(tmp_path / "x.png"), "--quiet") == 2
    assert "pip install twingrad[plot]" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
