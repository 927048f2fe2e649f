"""Every teaching notebook runs top to bottom on a fresh kernel and draws its figures.

The notebooks are kept as jupytext "percent" scripts (``notebooks/NN_name.py``);
each is converted in memory with jupytext, executed with nbclient in a
temporary working directory (the figures it saves land there), and fails the
test on the first cell that raises. Run one with ``pytest tests/test_notebooks.py -k 02``;
``--durations=0`` prints how long each took.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT = 180  # seconds; a notebook's budget is one minute in total, this only catches a hang


def test_all_seven_notebooks_are_collected():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_a_fresh_kernel(path, tmp_path, monkeypatch, record_property):
    # Agg: headless, and plt.show() is a no-op; the notebooks also save each figure to figures/.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # One BLAS thread: the notebooks' matrices are small, and on a 2-core machine shared with
    # other jobs a multithreaded product waits for a descheduled thread (16 ms instead of 0.15 ms).
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name} failed on a fresh kernel:\n{error}", pytrace=False)
    record_property("seconds", round(time.perf_counter() - start, 1))

    figures = sorted((tmp_path / "figures").glob("*.png"))
    assert figures, f"{path.name} saved no figure to figures/"
    assert all(f.stat().st_size > 1000 for f in figures), f"an empty figure among {figures}"
