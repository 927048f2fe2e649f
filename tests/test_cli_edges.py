"""Every value a user can type into ``twingrad train`` / ``bench`` / ``--version`` gets a clear answer, never a traceback."""

import argparse
import os
import re

import numpy as np
import pytest

from twingrad import __version__
from twingrad import bench as bench_cli
from twingrad import cli
from twingrad.train import add_arguments, run


def train(*argv) -> int:
    parser = argparse.ArgumentParser(prog="twingrad train")
    add_arguments(parser)
    return run(parser.parse_args([str(a) for a in argv]))


def refused_by_parser(capsys, command: str, *argv) -> str:
    """The one error line argparse prints (after its usage) when it exits with status 2."""
    with pytest.raises(SystemExit) as info:
        cli.main([command, *map(str, argv)])
    assert info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"twingrad {command}: error: ")
    return lines[-1]


# -- ranges, checked in the parser ------------------------------------------------------------------

TRAIN_OUT_OF_RANGE = [
    ("--epochs", "0", "1..1000000"), ("--epochs", "10" + "0" * 29, "1..1000000"),
    ("--learning-rate", "-0.01", r"\(0, inf\)"), ("--learning-rate", "nan", r"\(0, inf\)"),
    ("--lr-decay", "0", r"\(0, 1\]"), ("--lr-decay", "1.5", r"\(0, 1\]"),
    ("--dropout", "1", r"\[0, 1\)"), ("--dropout", "-0.1", r"\[0, 1\)"),
    ("--reg", "-1", r"\[0, inf\)"), ("--reg", "inf", r"\[0, inf\)"),
    ("--weight-scale", "0", r"\(0, inf\)"), ("--batch-size", "0", "1..65536"),
    ("--seed", "-1", r"0\.\.9223372036854775807"), ("--hidden", "0", "1..65536"),
    ("--hidden", "1000000000", "1..65536"), ("--epochs", "two", "an integer in 1..1000000"),
    ("--checkpoint", "", "a non-empty prefix"), ("--plot", " ", "a non-empty file name"),
]


@pytest.mark.parametrize("option, value, allowed", TRAIN_OUT_OF_RANGE)
def test_train_options_out_of_range_are_refused_in_the_parser(capsys, option, value, allowed):
    line = refused_by_parser(capsys, "train", option, value)
    assert re.search(rf"argument {option}: got '?{re.escape(value)}'?, allowed .*{allowed}", line), line


BENCH_OUT_OF_RANGE = [
    ("--batch", "0", "1..65536"), ("--repeats", "0", "1..1000"), ("--settle", "-1", r"\[0, 10\]"),
    ("--settle", "nan", r"\[0, 10\]"), ("--input-dim", "0", "1..1048576"), ("--hidden", "0", "1..65536"),
    ("--depth", "0", "1..100"), ("--classes", "1", "2..100000"), ("--reg", "-1", r"\[0, inf\)"),
    ("--sections", ",", "subset of step,layers"), ("--sections", "step,nonsense", "subset of step,layers"),
    ("--json", "", "a non-empty path"), ("--plot", "", "a non-empty folder"),
]


@pytest.mark.parametrize("option, value, allowed", BENCH_OUT_OF_RANGE)
def test_bench_options_out_of_range_are_refused_in_the_parser(capsys, option, value, allowed):
    line = refused_by_parser(capsys, "bench", option, value)
    assert re.search(rf"argument {option}: got '?{re.escape(value)}'?.*, allowed .*{allowed}", line), line


HOSTILE = ["0", "-1", "nan", "-inf", "1e400", "1" + "0" * 40, "0x10", "", "\x00", "é", "--", "1,2"]
NUMERIC = {"train": ["--epochs", "--learning-rate", "--lr-decay", "--dropout", "--reg", "--weight-scale",
                     "--batch-size", "--seed", "--hidden"],
           "bench": ["--batch", "--repeats", "--settle", "--input-dim", "--hidden", "--depth", "--classes", "--reg"]}


@pytest.mark.parametrize("command", sorted(NUMERIC))
def test_no_typed_value_makes_the_parser_raise_anything_but_a_usage_error(capsys, command):
    parser = cli.build_parser()
    for option in NUMERIC[command]:
        for value in HOSTILE:
            try:
                args = parser.parse_args([command, f"{option}={value}"])
            except SystemExit as exit_:
                assert exit_.code == 2, (option, value)
                assert f"argument {option}" in capsys.readouterr().err, (option, value)
                continue
            parsed = getattr(args, option[2:].replace("-", "_"))
            if parsed == []:  # argparse takes "--opt=--" for the separator: run() refuses it in one line
                assert value == "--"
                continue
            parsed = parsed[0] if isinstance(parsed, list) else parsed
            assert np.isfinite(parsed) and parsed >= 0, (option, value, parsed)  # only finite, in-range values pass


@pytest.mark.parametrize("command", ["train", "bench"])
def test_an_option_whose_value_argparse_swallowed_is_refused(capsys, command):
    assert cli.main([command, "--hidden=--"]) == 2
    assert "argument --hidden: got no value" in capsys.readouterr().err


def test_data_dir_with_digits_is_refused_before_training(capsys, tmp_path):
    assert train("--data-dir", tmp_path, "--quiet") == 2
    captured = capsys.readouterr()
    assert "--data-dir is only read with --dataset cifar10" in captured.err and "accuracy" not in captured.out


def test_bench_refuses_unwritable_outputs_and_oversized_steps_before_timing(capsys, tmp_path):
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    (tmp_path / "file").write_text("")
    cases = [(["--json", str(tmp_path / "missing" / "b.json")], "--json .*missing/b.json: not a writable file path"),
             (["--plot", str(tmp_path / "file")], "--plot .*file: is a file; --plot takes a folder"),
             (["--batch", "65536", "--input-dim", "1048576"], r"needs about \d+\.\d GiB of arrays")]
    for argv, message in cases:
        assert bench_cli.run(parser.parse_args(argv + ["--no-frameworks"])) == 2
        captured = capsys.readouterr()
        assert re.search(message, captured.err) and "Training step" not in captured.out, captured.err


# -- output folders ----------------------------------------------------------------------------------


def test_missing_output_folders_are_created_before_training(capsys, tmp_path):
    prefix, plot = tmp_path / "runs" / "a", tmp_path / "figures" / "deep" / "c.png"
    assert train("--epochs", 1, "--hidden", 8, "--checkpoint", prefix, "--plot", plot, "--quiet") == 0
    assert (tmp_path / "runs" / "a_epoch_1.npz").is_file()
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert [n for n in os.listdir(plot.parent)] == ["c.png"]  # the PNG was written atomically: no temporary left


@pytest.mark.parametrize("option, make, message", [
    ("--checkpoint", lambda p: p, r"--checkpoint .*: is a folder; give a file prefix such as runs/a"),
    ("--plot", lambda p: p, r"--plot .*: is a folder; give a file name such as curves\.png"),
    ("--plot", lambda p: (p / "f").touch() or p / "f" / "c.png", r"--plot .*: cannot create the folder"),
])
def test_unusable_output_paths_are_refused_before_training(capsys, tmp_path, option, make, message):
    assert train("--epochs", 1, "--hidden", 8, option, make(tmp_path), "--quiet") == 2
    captured = capsys.readouterr()
    assert re.search(message, captured.err) and len(captured.err.strip().splitlines()) == 1, captured.err
    assert "accuracy" not in captured.out


# -- --resume messages ---------------------------------------------------------------------------------


@pytest.fixture
def run_epoch_1(tmp_path):
    assert train("--epochs", 1, "--hidden", 8, "--normalization", "batchnorm", "--checkpoint", tmp_path / "run",
                 "--quiet") == 0
    return tmp_path / "run_epoch_1.npz"


def test_resume_paths_are_printed_whole(capsys, tmp_path):
    missing = tmp_path / "it's a 'run'"
    assert train("--resume", missing, "--quiet") == 2
    assert capsys.readouterr().err.strip().endswith(f"{missing}: No such file or directory")


def test_resume_of_a_png_never_mentions_unsafe_loading(capsys, tmp_path):
    png = tmp_path / "curves.png"
    assert train("--epochs", 1, "--hidden", 8, "--plot", png, "--quiet") == 0
    capsys.readouterr()
    assert train("--resume", png, "--quiet") == 2
    err = capsys.readouterr().err
    assert "a PNG image, not an .npz archive" in err and "pickle" not in err


def test_a_model_checkpoint_mismatch_is_one_line_per_difference(capsys, run_epoch_1):
    assert train("--resume", run_epoch_1, "--epochs", 2, "--hidden", 9, 9, "--normalization", "layernorm",
                 "--dtype", "float64", "--quiet") == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].endswith("run_epoch_1.npz: checkpoint does not fit the model:")
    assert sorted(lines[1:]) == [
        "  - model dtype is 'float64' but the checkpoint's is 'float32'",
        "  - model hidden_dims is [9, 9] but the checkpoint's is [8]",
        "  - model normalization is 'layernorm' but the checkpoint's is 'batchnorm'",
    ]


def test_resume_continues_writing_next_to_the_file_named_and_says_when_it_cannot(capsys, tmp_path, run_epoch_1):
    assert train("--resume", run_epoch_1, "--epochs", 2, "--quiet") == 0
    assert (tmp_path / "run_epoch_2.npz").is_file()
    renamed = tmp_path / "kept.npz"
    os.replace(tmp_path / "run_epoch_2.npz", renamed)
    capsys.readouterr()
    assert train("--resume", renamed, "--epochs", 3, "--quiet") == 0
    assert "note: no checkpoints will be written" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["kept.npz", "run_epoch_1.npz"]


def test_resume_with_nothing_left_to_train_says_how_to_go_on(capsys, run_epoch_1):
    assert train("--resume", run_epoch_1, "--quiet") == 2
    assert "finished its run (1 of 1 epoch); give --epochs N with N > 1" in capsys.readouterr().err


# -- --version, plurals, --help ---------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"twingrad {__version__} (Python ")


def test_one_epoch_is_singular(capsys):
    assert train("--epochs", 1, "--hidden", 8, "--quiet") == 0
    assert re.search(r"\(1 epoch, backend hand\)", capsys.readouterr().out)


def test_bench_quick_help_states_its_measured_duration(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "about a minute" not in text and re.search(r"--quick .*in about \d+ s", text)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["bench", "--help"]])
def test_every_help_page_prints(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0 and "usage: twingrad" in capsys.readouterr().out
