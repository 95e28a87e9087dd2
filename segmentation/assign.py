"""Assignment: the segment of every row of every table, written as a Parquet dataset with the segment
counts computed in the same pass; and ``assign_file``, the same for a new file with a saved model.

The population's rows are assigned from the PCA coordinates the project pass saved for clustering (block i
of the coordinates holds the kept rows of coded block i), so the projection is not computed twice.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
from fsspec.core import url_to_fs

from .io import read_table
from .model import MEMBERSHIP, SegmentationModel, segment_names
from .progress import LocalTaskCounter, StageDisplay
from .scratch import Blocks, Coordinates, call_method, load_arrays

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


def _assign_from_coordinates(
    model: SegmentationModel, block, path: str, storage_options: dict, table: str
) -> pd.DataFrame:
    coordinates = load_arrays([path], storage_options)
    return model.assign_reduced(block.ids, model.set_aside_block(block), coordinates, table)


def table_assignments(
    model: SegmentationModel, name: str, blocks: Blocks, coordinates: Coordinates | None = None
) -> dd.DataFrame:
    """``LNR, table, segment`` of every row of the table ``name`` from its coded ``blocks``; from the saved
    ``coordinates`` of those blocks when given (the population's). One task per block."""
    shared = dask.delayed(model, traverse=False)
    if coordinates is not None:
        each = [(path, coordinates.storage_options, name) for path in coordinates.paths]
        parts = blocks.map(_assign_from_coordinates, shared, each=each)
    else:
        parts = blocks.map(call_method, shared, "assign_block", each=[(name,)] * len(blocks.paths))
    return dd.from_delayed(parts, meta=assignment_meta(model), verify_meta=False)


def write_assignments(
    frames: dict[str, dd.DataFrame], url: str, storage_options: dict
) -> dict[str, pd.Series]:
    """Write every table's assignments into the dataset at ``url`` (files ``TABLE-NNNNN.parquet``) and
    count its rows per segment, in one computation; returns the counts per table."""
    lazy = {
        name: {
            "write": frame.to_parquet(
                url,
                write_index=False,
                compute=False,
                name_function=lambda i, n=name: f"{n}-{i:05d}.parquet",
                storage_options=storage_options,
                write_metadata_file=False,
            ),
            "counts": frame["segment"].value_counts(split_out=1),
        }
        for name, frame in frames.items()
    }
    (computed,) = dask.compute(lazy)
    return {name: result["counts"] for name, result in computed.items()}


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
