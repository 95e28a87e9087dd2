"""The run folder: one catalog of its files, the writer that makes it appear only when complete, and the
reader of a finished (or still staged) run, local or in object storage.

Every module that writes or reads a file of the run folder names it by its :class:`RunFile` entry here
(``PROPORTIONS``, ``ASSIGNMENTS``, ...), never by a literal: the job, the response stage, the targeting
list, the report, the command line and docs/run-folder.md (a test checks that it lists every entry) share
one contract. An entry's ``format`` decides how :meth:`RunFolder.write` writes it and :meth:`RunReader.read`
reads it back; ``by_workers`` marks the datasets the workers write straight to their destination.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from fsspec.core import url_to_fs


@dataclass(frozen=True)
class RunFile:
    """One file (or folder, ``name`` ending in ``/``) of the run folder.

    ``format``: ``json``, ``csv``, ``parquet`` (one file), ``dataset`` (a folder of Parquet files), ``model``
    (JSON + NumPy files), ``html`` or ``pdf``. ``writer``: the module that writes it. ``holds``: what it
    holds, in a phrase (the report's list of files). ``required``: every run folder has it. ``by_workers``:
    written by the workers straight to the destination, not staged on the client. ``reported``: the report
    names it among the files to use.
    """

    name: str
    format: str
    writer: str
    holds: str
    required: bool = False
    by_workers: bool = False
    reported: bool = False


RUN_JSON = RunFile(
    "run.json", "json", "job", "configuration, inputs, versions, timings, row accounting", True
)
PROPORTIONS = RunFile(
    "proportions.csv", "csv", "compare, response", "segment shares, ratios, intervals and tests (and response "
    "rates)", True, reported=True
)  # fmt: skip
PROFILES = RunFile(
    "profiles.csv", "csv", "describe", "every segment's mean of every feature, its name and persona", True,
    reported=True,
)  # fmt: skip
STABILITY = RunFile("stability.csv", "csv", "stability", "each segment's bootstrap stability", reported=True)
ELBOW = RunFile("elbow.csv", "csv", "cluster", "SSE, silhouette and stability per k, the recommended k")
PCA = RunFile("pca.csv", "csv", "decompose", "explained variance per principal component", True)
PCA_LOADINGS = RunFile(
    "pca_loadings.csv", "csv", "decompose", "heaviest attributes of the first components", True
)
QUALITY_COLUMNS = RunFile("quality/columns.csv", "csv", "clean", "missing share of every column", True)
QUALITY_ROWS = RunFile("quality/rows.csv", "csv", "clean", "histogram of the rows' missing shares", True)
MODEL = RunFile(
    "model/", "model", "model", "the fitted model, to segment new files with segmentation assign", True,
    reported=True,
)  # fmt: skip
RESPONSE_MODEL = RunFile("model/response/", "model", "response", "the response model (LightGBM text format)")
ASSIGNMENTS = RunFile(
    "assignments/", "dataset", "assign", "the segment of every row of every table", True, by_workers=True,
    reported=True,
)  # fmt: skip
RESPONSE_SCORES = RunFile(
    "response_scores/", "dataset", "response", "predicted response of every row", by_workers=True
)
MAILOUT_SCORES = RunFile(
    "mailout_scores.parquet", "parquet", "response",
    "the mail-out test rows with their predicted response and rank", reported=True,
)  # fmt: skip
SUBMISSION = RunFile(
    "submission.csv", "csv", "response", "LNR,RESPONSE for the mail-out test rows", reported=True
)
TARGETS = RunFile(
    "targets.parquet", "parquet", "target",
    "every assigned row ranked for targeting (by predicted response with a mail-out, else lift)", reported=True,
)  # fmt: skip
TARGETS_TOP = RunFile(
    "targets_top.csv", "csv", "target", "the first rows of that ranking, to mail", reported=True
)
PERFORMANCE_REPORT = RunFile(
    "performance_report.html", "html", "runtime", "Dask's performance report of the run", True
)
REPORT_HTML = RunFile("report.html", "html", "report", "the report")
REPORT_PDF = RunFile("Customer Segmentation Report.pdf", "pdf", "report", "the report, A4 pages")

CATALOG: tuple[RunFile, ...] = (
    RUN_JSON, PROPORTIONS, PROFILES, STABILITY, ELBOW, PCA, PCA_LOADINGS, QUALITY_COLUMNS, QUALITY_ROWS,
    MODEL, RESPONSE_MODEL, ASSIGNMENTS, RESPONSE_SCORES, MAILOUT_SCORES, SUBMISSION, TARGETS, TARGETS_TOP,
    PERFORMANCE_REPORT, REPORT_HTML, REPORT_PDF,
)  # fmt: skip

# Columns read as text, whatever they hold ("0" is a segment's name, not a number).
TEXT_COLUMNS = {"segment": str, "attribute": str, "label": str, "column": str, "table": str}


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` is in object storage (``s3://...``), not a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


# ------------------------------------------------------------------------------------------------ reading


class RunReader:
    """Reads the files of a run folder at ``location`` (a local path or a URL, with ``storage_options``).

    ``datasets_at``: where the ``by_workers`` datasets are, when not in ``location`` (a run still being
    written keeps its small files in a local staging folder and its datasets at the destination)."""

    def __init__(
        self,
        location: str | os.PathLike,
        storage_options: dict | None = None,
        datasets_at: str | None = None,
    ):
        self.location = str(location).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.datasets_at = datasets_at.rstrip("/") if datasets_at else None

    def url(self, entry: RunFile) -> str:
        """The path or URL of ``entry`` (without the trailing ``/`` of a folder)."""
        root = self.datasets_at if entry.by_workers and self.datasets_at else self.location
        return f"{root}/{entry.name.rstrip('/')}"

    def _options(self, url: str) -> dict:
        return self.storage_options if is_url(url) else {}

    def exists(self, entry: RunFile) -> bool:
        url = self.url(entry)
        fs, path = url_to_fs(url, **self._options(url))
        return fs.exists(path)

    def read(self, entry: RunFile, **options: Any) -> Any:
        """``entry`` read by its format: a dict (json), a pandas frame (csv, with ``TEXT_COLUMNS`` as text;
        parquet) or a Dask frame (dataset; ``options`` go to ``dask.dataframe.read_parquet``). A missing
        file is a ``FileNotFoundError`` naming it."""
        url = self.url(entry)
        storage = self._options(url)
        if entry.format == "dataset":
            import dask.dataframe as dd

            return dd.read_parquet(url, storage_options=storage or None, **options)
        if not self.exists(entry):
            raise FileNotFoundError(f"{url}: the run folder lacks {entry.name}")
        fs, path = url_to_fs(url, **storage)
        with fs.open(path, "rb") as handle:
            if entry.format == "json":
                return json.load(handle)
            if entry.format == "csv":
                frame = pd.read_csv(
                    handle, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""], **options
                )
                if "label" in frame:
                    frame["label"] = frame["label"].fillna("")
                return frame
            if entry.format == "parquet":
                return pd.read_parquet(handle, **options)
        raise ValueError(f"{entry.name}: a {entry.format} file is not read as a table")

    def read_if_present(self, entry: RunFile, **options: Any) -> Any:
        """``read(entry)``, or None when the run folder lacks it (an optional file)."""
        return self.read(entry, **options) if self.exists(entry) else None


# ------------------------------------------------------------------------------------------------ writing


class RunFolder:
    """A run folder built in a temporary sibling and moved into place only when complete.

    Small files (JSON, CSV, NumPy, the report) are written by the client into a local staging folder;
    datasets (``by_workers``: assignments, response scores) are written by the workers straight to
    ``url_for(entry)``. For a remote destination (``s3://...``) the staging folder lives in a private local
    temporary folder and is uploaded to the remote temporary folder ``.NAME.tmp-*`` next to the destination;
    object stores cannot rename a folder, so ``commit`` then copies the files into place, ``run.json`` last,
    and removes the temporary folder: a remote run folder that has a ``run.json`` is complete.
    """

    def __init__(self, destination: str | os.PathLike, storage_options: dict | None = None):
        self.destination = str(destination).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self._target = url_to_fs(self.destination, **self.storage_options)
        self.remote = is_url(self.destination)
        token = uuid.uuid4().hex[:8]
        name = posixpath.basename(self._target)
        if self.remote:
            # Named like a local staging folder, so that the report shows the run's name.
            self._local_root: Path | None = Path(tempfile.mkdtemp(prefix="segmentation-run-"))
            self.staging = self._local_root / f".{name}.tmp-{token}"
            self.staging.mkdir()
            self._remote_tmp = posixpath.join(posixpath.dirname(self._target), f".{name}.tmp-{token}")
        else:
            self._local_root = None
            parent = Path(self._target).parent
            parent.mkdir(parents=True, exist_ok=True)
            self.staging = parent / f".{name}.tmp-{token}"
            self.staging.mkdir()
        self._owner = process_owner()
        self._owner_file().write_text(json.dumps(self._owner))
        if self.remote:
            self.fs.pipe(f"{self._remote_tmp}/{OWNER_FILE}", json.dumps(self._owner).encode())

    def _owner_file(self) -> Path:
        return self.staging / OWNER_FILE

    @property
    def work_root(self) -> str:
        """Where the job keeps its work folders (coded blocks, PCA coordinates, stage checkpoints):
        ``.NAME.work`` next to the run folder, in object storage for a remote destination so remote
        workers reach it. The job removes its work folder when the run succeeds."""
        parent, name = posixpath.split(self._target) if self.remote else os.path.split(self._target)
        if self.remote:
            protocol = self.destination.split("://", 1)[0]
            return f"{protocol}://{parent}/.{name}.work"
        return str(Path(parent) / f".{name}.work")

    def remove_dead_runs(self) -> list[str]:
        """Remove the staging folders (``.NAME.tmp-*``) of runs whose process is gone from this host; those
        of live processes, of other hosts or without an owner file are left. Returns the folders removed."""
        parent, name = posixpath.split(self._target)
        own = self._remote_tmp if self.remote else str(self.staging)
        removed = []
        for path in self.fs.glob(posixpath.join(parent, f".{name}.tmp-*")):
            path = path.rstrip("/")
            owner = f"{path}/{OWNER_FILE}"
            if posixpath.basename(path) == posixpath.basename(own) or not self.fs.exists(owner):
                continue
            if owner_is_gone(json.loads(self.fs.cat_file(owner))):
                self.fs.rm(path, recursive=True)
                removed.append(path)
        return removed

    def path(self, entry: RunFile) -> Path:
        """The local path of a staged ``entry`` (parents created)."""
        if entry.by_workers:
            raise ValueError(f"{entry.name} is written by the workers: use url_for")
        target = self.staging / entry.name.rstrip("/")
        (target if entry.name.endswith("/") else target.parent).mkdir(parents=True, exist_ok=True)
        return target

    @property
    def _datasets_root(self) -> str:
        if self.remote:
            protocol = self.destination.split("://", 1)[0]
            return f"{protocol}://{self._remote_tmp}"
        return str(self.staging)

    def url_for(self, entry: RunFile) -> str:
        """Where workers write the dataset ``entry``."""
        return f"{self._datasets_root}/{entry.name.rstrip('/')}"

    def write(self, entry: RunFile, data: Any) -> Path:
        """Stage ``entry``: a dict as JSON, a frame as CSV (no index) or Parquet, by the entry's format."""
        target = self.path(entry)
        if entry.format == "json":
            target.write_text(json.dumps(data, indent=2, default=json_default) + "\n")
        elif entry.format == "csv":
            data.to_csv(target, index=False)
        elif entry.format == "parquet":
            data.to_parquet(target, index=False)
        else:
            raise ValueError(f"{entry.name}: a {entry.format} file is written by its own module")
        return target

    def reader(self) -> RunReader:
        """A reader of what is written so far: staged files from the staging folder, datasets from where
        the workers wrote them."""
        return RunReader(self.staging, self.storage_options, datasets_at=self._datasets_root)

    def commit(self) -> str:
        """Move the complete folder into place (replacing an earlier run of the same name)."""
        self._owner_file().unlink(missing_ok=True)
        if self.remote:
            self.fs.rm_file(f"{self._remote_tmp}/{OWNER_FILE}")
            self.fs.put(str(self.staging) + "/", self._remote_tmp, recursive=True)
            if self.fs.exists(self._target):
                self.fs.rm(self._target, recursive=True)
            self.fs.invalidate_cache()
            run_json = f"{self._remote_tmp}/{RUN_JSON.name}"
            for file in sorted(self.fs.find(self._remote_tmp), key=lambda f: f == run_json):
                self.fs.copy(file, self._target + file[len(self._remote_tmp) :])
            self.fs.rm(self._remote_tmp, recursive=True)
            shutil.rmtree(self._local_root, ignore_errors=True)
        else:
            target = Path(self._target)
            if target.exists():
                old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
                target.rename(old)
                self.staging.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self.staging.rename(target)
        return self.destination

    def abandon(self) -> None:
        """Remove everything written so far into the run folder (after a failure or Ctrl-C); the work
        folder is the job's to keep or remove."""
        shutil.rmtree(self.staging, ignore_errors=True)
        if self.remote:
            shutil.rmtree(self._local_root, ignore_errors=True)
            if self.fs.exists(self._remote_tmp):
                self.fs.rm(self._remote_tmp, recursive=True)


# ---------------------------------------------------------------------------------- owners of folders

OWNER_FILE = ".owner.json"


def process_owner() -> dict:
    """This process: pid, host and start time (so a reused pid is not taken for it)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": psutil.Process().create_time()}


def owner_is_gone(owner: dict) -> bool:
    """Whether the process ``process_owner`` described has ended; never for another host's."""
    if owner.get("host") != socket.gethostname():
        return False
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["started"])) > 1e-3
    except psutil.NoSuchProcess:
        return True


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default`` for NumPy scalars and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
