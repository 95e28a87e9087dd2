"""Assignment: the segment of every row of every table, written as a Parquet dataset with the segment
counts computed in the same pass; and ``assign_file``, the same for a new file with a saved model.

The population's rows are assigned from the PCA coordinates the project pass saved for clustering (block i
of the coordinates holds the kept rows of coded block i), so the projection is not computed twice.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dask
import fsspec
import pandas as pd
from fsspec.core import url_to_fs

from ._estimators import tree_reduce
from .io import read_table
from .model import MEMBERSHIP, SegmentationModel, segment_names
from .progress import LocalTaskCounter, StageDisplay
from .scratch import Blocks, Coordinates, load_arrays

TABLES = ("population", "customers", "mailout_train", "mailout_test")


def assignment_meta(model: SegmentationModel) -> pd.DataFrame:
    """The assignments' columns: ``LNR, table, segment``, and ``membership_probability`` when the segmenter
    gives one."""
    columns = {
        "LNR": pd.Series(dtype="int64"),
        "table": pd.Series(dtype="string"),
        "segment": pd.Series(dtype="string"),
    }
    if model.segmenter.has_probability:
        columns[MEMBERSHIP] = pd.Series(dtype="float64")
    return pd.DataFrame(columns)


def table_assignments(
    model: SegmentationModel,
    name: str,
    blocks: Blocks,
    url: str,
    storage_options: dict,
    coordinates: Coordinates | None = None,
) -> list:
    """One lazy task per coded block of the table ``name``: its ``LNR, table, segment`` rows written to the
    dataset at ``url`` (file ``NAME-NNNNN.parquet``), returning its rows per segment. From the saved
    ``coordinates`` of those blocks when given (the population's)."""
    shared = dask.delayed(model, traverse=False)
    files = [f"{url.rstrip('/')}/{name}-{i:05d}.parquet" for i in range(len(blocks.paths))]
    if coordinates is None:
        each = [(name, file, storage_options, None) for file in files]
    else:
        each = [
            (name, file, storage_options, path) for file, path in zip(files, coordinates.paths, strict=True)
        ]
    return blocks.map(_assign_and_write, shared, each=each)


def _assign_and_write(
    model: SegmentationModel, block, table: str, file: str, storage_options: dict, coordinates: str | None
) -> pd.Series:
    if coordinates is None:
        frame = model.assign_block(block, table)
    else:
        reduced = load_arrays([coordinates], storage_options)
        frame = model.assign_reduced(block.ids, model.set_aside_block(block), reduced, table)
    with fsspec.open(file, "wb", **storage_options) as handle:
        frame.to_parquet(handle, index=False)
    return frame["segment"].value_counts()


def write_assignments(parts: dict[str, list], url: str, storage_options: dict) -> dict[str, pd.Series]:
    """Compute ``table_assignments`` of every table in one computation (the dataset's files are written by
    the workers, a task per block, with no graph of Dask DataFrame steps around them: 82 tasks at the real
    size, not 579), the counts added up in a tree on the workers; returns the rows per segment of each
    table."""
    fs, root = url_to_fs(url, **storage_options)
    fs.makedirs(root, exist_ok=True)
    lazy = {name: tree_reduce(counts, _add_counts) for name, counts in parts.items() if counts}
    (computed,) = dask.compute(lazy)
    return {name: computed.get(name, pd.Series(dtype="int64")) for name in parts}


def _add_counts(*counts: pd.Series) -> pd.Series:
    return pd.concat(counts).groupby(level=0).sum()


def assign_file(
    model_dir: str,
    input_path: str,
    out: str,
    table: str | None = None,
    storage_options: dict | None = None,
    sep: str = ";",
) -> pd.Series:
    """Segment a new table with a saved model; writes ``LNR, table, segment`` Parquet atomically and returns
    the rows per segment."""
    model = SegmentationModel.load(model_dir)
    name = table or Path(str(input_path)).name.split(".")[0]
    source = read_table(
        input_path, model.schema, name if name in TABLES else "mailout_test", storage_options, sep=sep
    )
    assigned = source.frame.map_partitions(model.assign_partition, name, meta=assignment_meta(model))
    staging = f"{out.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    fs, target = url_to_fs(out, **(storage_options or {}))
    staged = url_to_fs(staging, **(storage_options or {}))[1]
    write = assigned.to_parquet(staging, write_index=False, compute=False, storage_options=storage_options)
    counter = LocalTaskCounter()
    display = StageDisplay(counts=counter.counts)
    try:
        with counter, display.stage("assign"):
            _, counts = dask.compute(write, assigned["segment"].value_counts(split_out=1))
    except BaseException:
        if fs.exists(staged):
            fs.rm(staged, recursive=True)
        raise
    finally:
        display.close()
    if fs.exists(target):
        fs.rm(target, recursive=True)
    fs.mv(staged, target, recursive=True)
    return counts.reindex(segment_names(model.segmenter.n_clusters), fill_value=0)
