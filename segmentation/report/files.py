"""The run folder's small files that the report reads (docs/run-folder.md)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..run_folder import (
    CATALOG,
    ELBOW,
    PCA,
    PCA_LOADINGS,
    PROFILES,
    PROPORTIONS,
    QUALITY_COLUMNS,
    QUALITY_ROWS,
    RUN_JSON,
    STABILITY,
    RunFile,
    RunReader,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunFiles:
    """The small files of a run folder that the report reads; ``elbow`` is None without elbow.csv."""

    run: dict
    proportions: pd.DataFrame
    profiles: pd.DataFrame
    elbow: pd.DataFrame | None
    pca: pd.DataFrame
    pca_loadings: pd.DataFrame
    quality_columns: pd.DataFrame
    quality_rows: pd.DataFrame
    name: str = ""
    stability: pd.DataFrame | None = None  # stability.csv, absent in runs made before it existed
    outputs: tuple[RunFile, ...] = ()  # the catalog's files the report names, present in the run folder


def read_run_files(run_dir: str | os.PathLike) -> RunFiles:
    """Read run.json and the CSVs of a run folder; segment names stay strings ("0", not 0).

    Every file is required except elbow.csv (None when absent: the job fixed k and skipped the elbow) and
    stability.csv.
    """
    run = RunReader(run_dir)
    return RunFiles(
        run=run.read(RUN_JSON),
        proportions=run.read(PROPORTIONS),
        profiles=run.read(PROFILES),
        elbow=run.read_if_present(ELBOW),
        pca=run.read(PCA),
        pca_loadings=run.read(PCA_LOADINGS),
        quality_columns=run.read(QUALITY_COLUMNS),
        quality_rows=run.read(QUALITY_ROWS),
        name=_run_name(Path(run_dir)),
        stability=run.read_if_present(STABILITY),
        outputs=tuple(entry for entry in CATALOG if entry.reported and run.exists(entry)),
    )


def _run_name(run_dir: Path) -> str:
    """The run's name: its folder's, except while the job still writes it into a temporary folder
    (``.NAME.tmp-*``, see docs/run-folder.md)."""
    name = run_dir.resolve().name
    if name.startswith(".") and ".tmp-" in name:
        return name[1:].split(".tmp-")[0]
    return name


def _require(run: dict, *keys: str):
    value = run
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"run.json lacks {'.'.join(keys)}")
        value = value[key]
    return value
