"""The tutorial notebook runs to the end at its small settings and gives the numbers it shows;
the committed notebook carries no outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert [c.outputs for c in code] == [[] for _ in code]
    assert [c.execution_count for c in code] == [None] * len(code)
    # the size knobs come first, in a cell tagged "parameters" (papermill convention)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "SMALL =" in code[0].source


def _kernel_manager(tmp_path: Path) -> KernelManager:
    """A ``python3`` kernel running this interpreter (the venv's), whatever kernels the user
    has installed elsewhere."""
    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3 (tests)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


@pytest.mark.slow
def test_tutorial_runs_small_and_pun_it_beats_zero_filling(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTMRI_PUN_TUTORIAL_SMALL", "1")
    monkeypatch.setenv("FASTMRI_PUN_TUTORIAL_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import json; print(json.dumps(RESULT))"))
    client = NotebookClient(
        nb, km=_kernel_manager(tmp_path), timeout=300, resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError (with the traceback) if a cell fails

    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")  # ran to the end
    result = json.loads(nb.cells[-1].outputs[0]["text"])
    psnr = result["psnr"]
    assert set(psnr) == {"dense", "pun-it", "zero-filled"}
    # global top-k keeps round(0.1 * N) weights: within one weight of the small setting's 10 %
    assert result["pun_it_density"] == pytest.approx(0.1, abs=2e-3)
    assert psnr["dense"] > psnr["zero-filled"]
    assert psnr["pun-it"] > psnr["zero-filled"]
    assert (tmp_path / "runs" / "psnr_boxplot.png").is_file()
