"""Ranked target lists: rows of the population (and mail-out) tables ordered by their segment's lift.

A segment's lift is its customer/population ratio from ``proportions.csv``: a row in a segment with
lift 2.2 belongs to a group that holds 2.2 times as many customers as its size suggests. When the run has
a response model (``response_scores/``, see ``segmentation.response``), rows are ranked by their predicted
response instead, ties broken by lift, then LNR, and the list gains a ``probability`` column.

Accounting: every row of the requested tables whose segment is ``"0"`` .. ``"k-1"`` appears exactly
once. Rows in ``insufficient_data`` are left out (and counted in the log): their ratio says how often
customer records are incomplete, not who the people are, so ranking people by it would target missing
data rather than customers' look-alikes. For the population that leaves ``run.json`` rows.assigned.

Memory: the list is one file, so it is assembled on the client. The workers read only the requested
tables (Parquet filters skip the other files and row groups) and drop the set-aside rows; the client
receives three narrow columns (int64 ``LNR``, Arrow-string ``table`` and ``segment``), about 40 bytes a
row (40 MB and about 1.5 s for a million rows), attaches the lift from a k-entry table and sorts once. A
distributed sort would not help: the key has only k distinct lifts, so it cannot be split evenly
across partitions, and the single output file has to be gathered anyway.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd

from .io import replace_when_done
from .model import INSUFFICIENT
from .run_folder import ASSIGNMENTS, PROPORTIONS, RESPONSE_SCORES, TARGETS, TARGETS_TOP, RunReader

logger = logging.getLogger(__name__)

TARGET_TABLES = ("population", "mailout_train", "mailout_test")
COLUMNS = ["LNR", "table", "segment", "lift"]


def segment_lift(proportions: pd.DataFrame) -> pd.Series:
    """Lift (customer/population ratio) per assigned segment, indexed by segment name."""
    assigned = proportions[proportions["segment"].astype(str) != INSUFFICIENT]
    return pd.Series(
        assigned["ratio"].to_numpy(dtype=float), index=assigned["segment"].astype(str), name="lift"
    )


def rank_targets(
    assignments: dd.DataFrame, lift: Mapping[str, float], tables: Iterable[str] = TARGET_TABLES
) -> tuple[pd.DataFrame, pd.Series]:
    """Rows of ``tables`` with their segment's lift, ranked by lift (descending), then LNR, then table; when
    ``assignments`` has a ``probability`` column (predicted response), by it first (descending).

    Returns the ranked frame (columns LNR, table, segment, lift[, probability]; index 0..n-1) and the
    number of insufficient_data rows left out per table. Raises ValueError for a segment with no lift or a
    row listed twice.
    """
    tables, lift = list(tables), dict(lift)
    scored = "probability" in assignments.columns
    columns = ["LNR", "table", "segment", *(["probability"] if scored else [])]
    rows = assignments[assignments["table"].isin(tables)][columns]
    rows = rows.astype({"table": pd.StringDtype("pyarrow"), "segment": pd.StringDtype("pyarrow")})
    set_aside = rows["segment"] == INSUFFICIENT
    kept, left_out = dask.compute(rows[~set_aside], set_aside.groupby(rows["table"]).sum())
    unknown = sorted(set(kept["segment"].unique()) - set(lift))
    if unknown:
        raise ValueError(
            f"assignments hold segment(s) {', '.join(unknown)} that proportions.csv has no ratio for"
        )
    if kept.duplicated(["table", "LNR"]).any():
        twice = kept.loc[kept.duplicated(["table", "LNR"]), ["table", "LNR"]].head(3).to_dict("records")
        raise ValueError(f"assignments list some rows more than once, e.g. {twice}")
    kept = kept.assign(lift=kept["segment"].map(lift).astype("float64"))
    keys = ["probability"] * scored + ["lift", "LNR", "table"]
    ranked = kept.sort_values(keys, ascending=[False] * scored + [False, True, True], kind="stable")
    return ranked[COLUMNS + ["probability"] * scored].reset_index(drop=True), left_out.astype("int64")


def write_targets(
    run_dir: str | os.PathLike,
    top_n: int = 1000,
    tables: Iterable[str] = TARGET_TABLES,
    source: RunReader | None = None,
) -> tuple[Path, Path]:
    """Write ``targets.parquet`` (every assigned row of ``tables`` present in assignments/, ranked by
    lift) and ``targets_top.csv`` (its first ``top_n`` rows) into the run folder.

    Parameters
    ----------
    run_dir : a local run folder (docs/run-folder.md), where the two files are written.
    top_n : int, default 1000. Rows in targets_top.csv (fewer if fewer rows are ranked).
    tables : tables to rank, default population, mailout_train, mailout_test; absent ones are skipped.
    source : where the run's files are read, default ``run_dir``: proportions.csv and assignments/, or
        response_scores/ when the run has a response model (then rows are ranked by predicted response).
        The job passes the reader of the run it is writing, whose datasets may be in object storage.

    Both files are written to temporary files in the run folder and renamed into place once complete.
    Returns (parquet path, csv path).
    """
    run_dir = Path(run_dir)
    source = source or RunReader(run_dir)
    started = time.perf_counter()
    proportions = source.read(PROPORTIONS)
    tables = list(tables)
    scored = source.exists(RESPONSE_SCORES)
    assignments = source.read(
        RESPONSE_SCORES if scored else ASSIGNMENTS,
        columns=["LNR", "table", "segment", *(["probability"] if scored else [])],
        filters=[("table", "in", tables)],
    )
    ranked, left_out = rank_targets(assignments, segment_lift(proportions), tables)
    parquet_path, csv_path = run_dir / TARGETS.name, run_dir / TARGETS_TOP.name
    with replace_when_done(parquet_path) as parquet_temporary, replace_when_done(csv_path) as csv_temporary:
        ranked.to_parquet(parquet_temporary, index=False)
        ranked.head(top_n).to_csv(csv_temporary, index=False)
    logger.info(
        "targets: %d rows (%s) ranked in %.1f s; %s insufficient_data rows left out",
        len(ranked),
        ", ".join(f"{t} {n}" for t, n in ranked["table"].value_counts().items()),
        time.perf_counter() - started,
        ", ".join(f"{t} {n}" for t, n in left_out.items()) or "no",
    )
    return parquet_path, csv_path
