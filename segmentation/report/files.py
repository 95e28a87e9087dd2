"""The run folder's small files that the report reads (docs/run-folder.md)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)


# Files of the run folder the report names, with what each holds (docs/run-folder.md).
OUTPUT_FILES = {
    "targets.parquet": "every assigned row ranked for targeting (by predicted response with a mail-out, else lift)",
    "targets_top.csv": "the first rows of that ranking, to mail",
    "proportions.csv": "segment shares, ratios, intervals and tests (and response rates)",
    "profiles.csv": "every segment's mean of every feature, its name and persona",
    "stability.csv": "each segment's bootstrap stability",
    "mailout_scores.parquet": "the mail-out test rows with their predicted response and rank",
    "submission.csv": "LNR,RESPONSE for the mail-out test rows",
    "assignments/": "the segment of every row of every table",
    "model/": "the fitted model, to segment new files with `segmentation assign`",
}


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
    outputs: tuple[str, ...] = ()  # the files of OUTPUT_FILES present in the run folder


def read_run_files(run_dir: str | os.PathLike) -> RunFiles:
    """Read run.json and the CSVs of a run folder; segment names stay strings ("0", not 0).

    Every file is required except elbow.csv (None when absent: the job fixed k and skipped the elbow) and
    stability.csv.
    """
    run_dir = Path(run_dir)
    text = {"segment": str, "attribute": str, "label": str, "column": str, "table": str}

    def csv(name: str, required: bool = True) -> pd.DataFrame | None:
        path = run_dir / name
        if not path.exists():
            if not required:
                return None
            raise FileNotFoundError(f"{path}: the run folder lacks {name}")
        frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""])
        if "label" in frame:
            frame["label"] = frame["label"].fillna("")
        return frame

    run_json = run_dir / "run.json"
    if not run_json.exists():
        raise FileNotFoundError(f"{run_json}: the run folder lacks run.json")
    return RunFiles(
        run=json.loads(run_json.read_text()),
        proportions=csv("proportions.csv"),
        profiles=csv("profiles.csv"),
        elbow=csv("elbow.csv", required=False),
        pca=csv("pca.csv"),
        pca_loadings=csv("pca_loadings.csv"),
        quality_columns=csv("quality/columns.csv"),
        quality_rows=csv("quality/rows.csv"),
        name=_run_name(run_dir),
        stability=csv("stability.csv", required=False),
        outputs=tuple(name for name in OUTPUT_FILES if (run_dir / name).exists()),
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
