"""The notebooks in notebooks/ run top to bottom against the committed data (nbclient), and are
committed with their outputs stripped.

The kernel is this interpreter (the project's venv), through a throw-away kernel spec on a
private JUPYTER_PATH: no dependency on a kernel registered on the machine, works in a fresh venv.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "backtest-tests-python"
HAVE_SIM = importlib.util.find_spec("backtest.simulate") is not None


@pytest.fixture()
def kernel_spec(tmp_path, monkeypatch):
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "backtest tests (this venv)",
                "language": "python",
                "env": {"PYTHONHASHSEED": "0"},
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    return KERNEL


def test_there_are_notebooks():
    names = {p.name for p in NOTEBOOKS}
    assert {"2025-10-10-post-mortem.ipynb", "sweep-explorer.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before committing"


@pytest.mark.skipif(not HAVE_SIM, reason="needs backtest.simulate")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, kernel_spec):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=600, kernel_name=kernel_spec, resources={"metadata": {"path": str(path.parent)}}, allow_errors=False
    )
    client.execute()
    # every code cell ran, and the figures were drawn
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    images = sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {}))
    assert images >= (4 if "post-mortem" in path.name else 1), f"{path.name}: expected figures in the outputs"
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
