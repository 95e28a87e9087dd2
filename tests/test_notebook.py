"""notebooks/walkthrough.ipynb is stored executed (outputs kept, small) and runs again top to bottom.

The kernel is this interpreter (a kernelspec written to a temporary folder with ``sys.executable``), so the
notebook runs against the same installed packages as the tests, whether or not a virtualenv is activated
and whatever kernels the user has installed.

After changing the notebook (or what it shows), store it executed again with
``python tests/test_notebook.py --store``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
KERNEL = "segmentation-tests"
CELL_TIMEOUT = 300  # seconds; the whole notebook takes about a minute on 2 cores
MAX_BYTES = 600_000  # figures are stored at a low dpi to stay under this


def execute(notebook: nbformat.NotebookNode, folder: Path) -> nbformat.NotebookNode:
    """Run every cell of ``notebook`` in place, with this interpreter as the kernel and ``folder`` as the
    working directory (the kernelspec is written there too); raises CellExecutionError if a cell fails."""
    write_kernel_spec(folder / "kernels" / KERNEL)
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")])  # this folder only: no user kernels
    kernel = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)
    client = NotebookClient(
        notebook,
        km=kernel,
        timeout=CELL_TIMEOUT,
        record_timing=False,
        resources={"metadata": {"path": str(folder)}},
    )
    try:
        client.execute()
    finally:
        # nbclient leaves a kernel it did not create running: shut it down, or it outlives the caller
        if kernel.has_kernel:
            kernel.shutdown_kernel(now=True)
    return notebook


def code_outputs(notebook: nbformat.NotebookNode) -> list:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def rich_outputs(cell: nbformat.NotebookNode) -> int:
    """Results and displays of a cell (printed text and log lines may change from run to run)."""
    return sum(output.output_type in ("execute_result", "display_data") for output in cell.outputs)


def images(notebook: nbformat.NotebookNode) -> list:
    return [output for output in code_outputs(notebook) if "image/png" in output.get("data", {})]


def test_stored_executed_and_small():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))  # in order, all run
    assert all(cell.outputs for cell in code[2:])  # every cell after the imports shows something
    assert not [output for output in code_outputs(notebook) if output.output_type == "error"]
    assert len(images(notebook)) == 3
    assert NOTEBOOK.stat().st_size < MAX_BYTES
    assert notebook.metadata.kernelspec.name == "python3"  # not the tests' temporary kernel


def test_walkthrough_runs_again(tmp_path, monkeypatch):
    # the notebook writes under tempfile.mkdtemp(): inside tmp_path, so nothing is left behind
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    stored = [rich_outputs(cell) for cell in notebook.cells if cell.cell_type == "code"]
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    execute(notebook, tmp_path)

    assert not [output for output in code_outputs(notebook) if output.output_type == "error"]
    assert len(images(notebook)) == 3
    assert [rich_outputs(cell) for cell in notebook.cells[:-1] if cell.cell_type == "code"] == stored
    kernel_python = notebook.cells[-1].outputs[0]["text"].strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    work = list(scratch.glob("segmentation-walkthrough-*"))
    assert len(work) == 1
    assert (work[0] / "runs" / "walkthrough" / "report.html").exists()
    assert (work[0] / "mailout_test_segments.parquet").is_dir()  # the new file was assigned
    text = "".join(output.get("text", "") for output in code_outputs(notebook))
    assert " rows ranked, " in text  # the targeting list was built


def store() -> None:
    """Execute the notebook and write it back with its outputs (``python tests/test_notebook.py --store``)."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    metadata = notebook.metadata
    with tempfile.TemporaryDirectory(prefix="walkthrough-") as folder:
        os.environ["TMPDIR"] = folder  # the kernel inherits it: the notebook's files go there, then away
        execute(notebook, Path(folder))
    notebook.metadata = metadata  # keep the generic kernelspec, not the temporary one
    nbformat.validate(notebook)
    nbformat.write(notebook, NOTEBOOK)
    print(f"{NOTEBOOK}: stored executed, {NOTEBOOK.stat().st_size:,} bytes")


if __name__ == "__main__":
    if sys.argv[1:] != ["--store"]:
        sys.exit("usage: python tests/test_notebook.py --store")
    store()
