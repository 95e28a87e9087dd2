import re
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation import run_folder
from segmentation.run_folder import (
    ASSIGNMENTS,
    CATALOG,
    ELBOW,
    PROPORTIONS,
    RUN_JSON,
    STABILITY,
    TARGETS,
    RunFolder,
    RunReader,
)

DOC = Path(__file__).parents[1] / "docs" / "run-folder.md"


def documented_paths() -> set[str]:
    """The backticked paths of the first column of docs/run-folder.md's first table."""
    text = DOC.read_text()
    table = text.split("| path | what |", 1)[1].split("\n\n", 1)[0]
    paths = set()
    for line in table.splitlines()[2:]:
        first = line.split("|")[1]
        paths.update(re.findall(r"`([^`]+)`", first))
    return paths


def test_the_docs_list_every_file_of_the_catalog_and_no_other():
    assert documented_paths() == {entry.name for entry in CATALOG}


def test_catalog_names_are_unique_and_formats_known():
    names = [entry.name for entry in CATALOG]
    assert len(names) == len(set(names))
    assert {entry.format for entry in CATALOG} <= {
        "json",
        "csv",
        "parquet",
        "dataset",
        "model",
        "html",
        "pdf",
    }
    assert all(entry.name.endswith("/") == (entry.format in ("dataset", "model")) for entry in CATALOG)
    assert {entry for entry in CATALOG if entry.by_workers} == {ASSIGNMENTS, run_folder.RESPONSE_SCORES}
    # Every constant of the module that is a RunFile is in the catalog.
    constants = {v for v in vars(run_folder).values() if isinstance(v, run_folder.RunFile)}
    assert constants == set(CATALOG)


def test_run_folder_appears_only_when_committed(tmp_path):
    folder = RunFolder(tmp_path / "runs" / "demo")
    folder.write(RUN_JSON, {"a": np.int64(1), "b": np.float32(0.5), "c": np.bool_(True)})
    assert not (tmp_path / "runs" / "demo").exists()
    folder.commit()
    assert RunReader(tmp_path / "runs" / "demo").read(RUN_JSON) == {"a": 1, "b": 0.5, "c": True}
    failed = RunFolder(tmp_path / "runs" / "other")
    failed.write(RUN_JSON, {})
    failed.abandon()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo"]


def test_written_files_read_back_by_their_format_with_segments_as_text(tmp_path):
    folder = RunFolder(tmp_path / "run")
    proportions = pd.DataFrame({"segment": ["0", "1", "insufficient_data"], "ratio": [1.5, 0.5, 2.0]})
    folder.write(PROPORTIONS, proportions)
    folder.write(TARGETS, pd.DataFrame({"LNR": [3, 1], "segment": ["1", "0"]}))
    staged = folder.reader()
    pd.testing.assert_frame_equal(staged.read(PROPORTIONS), proportions)
    assert staged.read(TARGETS)["LNR"].tolist() == [3, 1]
    assert staged.read_if_present(ELBOW) is None and not staged.exists(STABILITY)
    with pytest.raises(FileNotFoundError, match="lacks elbow.csv"):
        staged.read(ELBOW)
    with pytest.raises(ValueError, match="written by the workers"):
        folder.path(ASSIGNMENTS)


def test_a_run_in_memory_storage_is_read_by_url():
    location = f"memory://runs/{uuid.uuid4().hex}/demo"
    folder = RunFolder(location)
    folder.write(PROPORTIONS, pd.DataFrame({"segment": ["0"], "ratio": [1.0]}))
    frame = pd.DataFrame({"LNR": [1, 2], "table": ["population"] * 2, "segment": ["0", "0"]})
    frame.to_parquet(f"{folder.url_for(ASSIGNMENTS)}/population-00000.parquet")
    # While staged, the small files are local and the workers' dataset is already in the store.
    staged = folder.reader()
    assert staged.url(ASSIGNMENTS).startswith("memory://") and not staged.url(PROPORTIONS).startswith(
        "memory"
    )
    assert staged.read(ASSIGNMENTS).compute()["LNR"].tolist() == [1, 2]
    folder.commit()
    finished = RunReader(location)
    assert finished.read(PROPORTIONS)["segment"].tolist() == ["0"]
    assert finished.read(ASSIGNMENTS, columns=["LNR"]).compute()["LNR"].tolist() == [1, 2]
