"""notebooks/walkthrough.ipynb runs top to bottom without error and draws the report's figures.

The kernel is this interpreter (a kernelspec written to a temporary folder with ``sys.executable``), so the
notebook runs against the same installed packages as the tests, whether or not a virtualenv is activated
and whatever kernels the user has installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from segmentation.report import FIGURES

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
KERNEL = "segmentation-tests"
CELL_TIMEOUT = 300  # seconds; the whole notebook takes about a minute on 2 cores


def _kernel_manager(kernels: Path) -> KernelManager:
    write_kernel_spec(kernels / KERNEL)
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])  # this folder only: no user or system kernels
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def test_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


def test_walkthrough_runs_and_draws_the_figures(tmp_path, monkeypatch):
    # the notebook writes under tempfile.mkdtemp(): inside tmp_path, so nothing is left behind
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))

    kernel = _kernel_manager(tmp_path / "kernels")
    client = NotebookClient(
        notebook, km=kernel, timeout=CELL_TIMEOUT, resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    finally:
        # nbclient leaves a kernel it did not create running: shut it down, or it outlives the test
        if kernel.has_kernel:
            kernel.shutdown_kernel(now=True)

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == len(FIGURES)
    kernel_python = notebook.cells[-1].outputs[0]["text"].strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    run_dirs = list(scratch.glob("segmentation-walkthrough-*/runs/walkthrough"))
    assert len(run_dirs) == 1 and (run_dirs[0] / "report.html").exists()
