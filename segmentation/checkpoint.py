"""Checkpoints of a run's stages, so that a rerun after a crash or kill resumes after the last completed stage.

A run works in ``<work root>/<key>/``, where the key is a hash of everything that shapes the results: each
input file (path, size and modification time, or the object store's ETag, from fsspec ``info``), the
attributes file's text, and the configuration (clean/reduce/clustering settings, seed, blocksize, sep,
strict, ...). The coded blocks and PCA coordinates live there anyway; each stage adds its small results
(JSON and NumPy files, never pickle) and then a marker ``<stage>.done``, written last and atomically (a
temporary file renamed), so a half-written stage is never trusted. Other inputs or another configuration
give another key, so their checkpoints are never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import socket
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fsspec.core import url_to_fs

from . import __version__, decompose, segmenters
from ._estimators import load_fitted, save_fitted
from .clean import KeptRows
from .cluster import Clustered
from .codes import BLOCK_MAGIC, Codebook
from .config import ConfigError, JobConfig
from .encode import Encoder
from .io import FirstPass
from .preflight import expand_paths, input_paths
from .run_folder import json_default, owner_is_gone, process_owner
from .scale import ImputeScaler
from .scratch import Blocks, block_paths

STAGES = ("read", "scale", "reduce", "project", "cluster")
# Configuration that does not change the results: where things go and what is written besides them.
_NOT_SHAPING = ("name", "inputs", "output", "cluster", "work_dir", "report", "top_targets")
_INFO_KEYS = ("size", "mtime", "ETag", "etag", "LastModified", "last_modified", "md5Hash", "generation")


def input_fingerprint(path: str, storage_options: dict | None = None) -> list[dict]:
    """Path, size and modification time (or ETag) of every file a path, glob or folder names."""
    storage_options = storage_options or {}
    fs, _ = url_to_fs(str(path), **storage_options)
    described = []
    for match in expand_paths(path, storage_options):
        name = url_to_fs(match, **storage_options)[1]
        files = sorted(fs.find(name)) if fs.isdir(name) else [name]
        for file in files:
            info = fs.info(file)
            described.append({"path": str(file), **{k: str(info[k]) for k in _INFO_KEYS if k in info}})
    return described


def checkpoint_key(config: JobConfig, attributes_text: str, storage_options: dict | None = None) -> str:
    """A hash of the inputs and of the configuration that shapes the results (16 hex digits)."""
    shaping = {k: v for k, v in config.to_dict().items() if k not in _NOT_SHAPING}
    description = {
        "segmentation": __version__,
        "scratch": BLOCK_MAGIC.decode().strip(),  # the block files' format
        "inputs": {t: input_fingerprint(p, storage_options) for t, p in input_paths(config).items()},
        "attributes": attributes_text,
        "config": shaping,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Checkpoints:
    """The work folder of one key: stage markers and the small files each stage saves.

    ``fresh`` ignores (and replaces) what an earlier run left. Other keys' folders under the same root
    whose owner process is gone are removed, so the work root holds the checkpoints of one configuration.
    """

    def __init__(self, root: str, key: str, storage_options: dict | None = None, fresh: bool = False):
        self.root, self.key = str(root).rstrip("/"), key
        self.folder = f"{self.root}/{key}"
        self.storage_options = dict(storage_options or {})
        self.fs, self._root_path = url_to_fs(self.root, **self.storage_options)
        self._path = posixpath.join(self._root_path, key) if self.remote else str(Path(self._root_path) / key)
        self._remove_dead_siblings()
        self._refuse_if_in_use()
        if fresh:
            self.remove()
        self.fs.makedirs(self._path, exist_ok=True)
        self.fs.pipe(self._file(OWNER), json.dumps(process_owner()).encode())

    @property
    def remote(self) -> bool:
        return "://" in self.root and not self.root.startswith("file://")

    def _file(self, name: str) -> str:
        return f"{self._path}/{name}"

    def url(self, name: str) -> str:
        """Where ``name`` lives in the work folder (what workers write to and read from)."""
        return f"{self.folder}/{name}"

    def done(self, stage: str) -> bool:
        """Whether ``stage`` completed (its marker exists)."""
        return self.fs.exists(self._file(f"{stage}.done"))

    def completed(self) -> list[str]:
        """The stages that can be taken from checkpoints: completed, in order, with no gap."""
        taken = []
        for stage in STAGES:
            if not self.done(stage):
                break
            taken.append(stage)
        return taken

    def mark(self, stage: str, payload: dict | None = None) -> None:
        """Write the stage's marker (with ``payload`` as JSON) last and atomically."""
        data = json.dumps(payload or {}, default=json_default).encode()
        if self.remote:  # an object is written whole or not at all
            self.fs.pipe(self._file(f"{stage}.done"), data)
            return
        temporary = Path(self._file(f".{stage}.done.tmp"))
        temporary.write_bytes(data)
        os.replace(temporary, self._file(f"{stage}.done"))

    def payload(self, stage: str) -> dict:
        """What ``mark`` recorded for ``stage``."""
        return json.loads(self.fs.cat_file(self._file(f"{stage}.done")))

    @contextmanager
    def writing(self, name: str):
        """A local folder to write ``name`` into (uploaded when the block ends, for a remote work folder)."""
        if not self.remote:
            target = Path(self._file(name))
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            yield target
            return
        with tempfile.TemporaryDirectory(prefix="segmentation-checkpoint-") as local:
            yield Path(local)
            self.fs.put(local + "/", self._file(name), recursive=True)

    def read(self, name: str, loader: Callable[[Path], Any]) -> Any:
        """``loader`` of a local copy of the folder ``name``."""
        if not self.remote:
            return loader(Path(self._file(name)))
        with tempfile.TemporaryDirectory(prefix="segmentation-checkpoint-") as local:
            self.fs.get(self._file(name) + "/", local, recursive=True)
            return loader(Path(local))

    def remove(self) -> None:
        """Remove this key's folder, and the work root if nothing else is left in it."""
        if self.fs.exists(self._path):
            self.fs.rm(self._path, recursive=True)
        if not self.remote and Path(self._root_path).is_dir() and not any(Path(self._root_path).iterdir()):
            Path(self._root_path).rmdir()

    def _refuse_if_in_use(self) -> None:
        """Two live runs of one key on this host would write the same files: the second one stops."""
        owner_file = self._file(OWNER)
        if not self.fs.exists(owner_file):
            return
        owner = json.loads(self.fs.cat_file(owner_file))
        if (
            owner != process_owner()
            and owner.get("host") == socket.gethostname()
            and not owner_is_gone(owner)
        ):
            raise ConfigError(
                f"{self.folder}: in use by another run of the same job and inputs (process {owner['pid']}); "
                "wait for it to finish"
            )

    def _remove_dead_siblings(self) -> None:
        if not self.fs.exists(self._root_path):
            return
        for sibling in self.fs.ls(self._root_path, detail=False):
            if posixpath.basename(sibling.rstrip("/")) == self.key:
                continue
            owner = f"{sibling.rstrip('/')}/{OWNER}"
            if self.fs.exists(owner) and owner_is_gone(json.loads(self.fs.cat_file(owner))):
                self.fs.rm(sibling, recursive=True)


OWNER = "owner.json"


# ------------------------------------------------------------------------------- what each stage keeps


def save_read(checkpoints: Checkpoints, blocks: dict[str, Blocks], first_pass: dict[str, FirstPass]) -> None:
    """The read stage: each table's block count and first-pass counts (the coded blocks are already in the
    work folder)."""
    payload = {name: {"blocks": len(blocks[name].paths), **p.to_payload()} for name, p in first_pass.items()}
    checkpoints.mark("read", payload)


def load_read(
    checkpoints: Checkpoints, codebook: Codebook, storage_options: dict
) -> tuple[dict[str, Blocks], dict[str, FirstPass]]:
    saved = checkpoints.payload("read")
    blocks = {
        name: Blocks(
            block_paths(checkpoints.url(name), table["blocks"]), codebook.rest_dtypes, storage_options
        )
        for name, table in saved.items()
    }
    return blocks, {name: FirstPass.from_payload(table) for name, table in saved.items()}


_SCALER_ATTRIBUTES = ("fill_values_", "mean_", "scale_")


def save_scale(checkpoints: Checkpoints, kept: dict[str, KeptRows], scaler: ImputeScaler) -> None:
    """The scale stage: the fitted scaler, and what later stages use of the kept-row statistics (the value
    histograms are not kept: only the scaler fitted on them is used)."""
    attributes = {name: getattr(scaler, name) for name in _SCALER_ATTRIBUTES}
    with checkpoints.writing("scaler") as saved:
        save_fitted(saved, {"estimator": "ImputeScaler", "params": {}, "attributes": attributes})
    tables = {name: rows.to_payload() for name, rows in kept.items()}
    checkpoints.mark("scale", {"feature_names": scaler.feature_names_, "tables": tables})


def load_scale(checkpoints: Checkpoints, encoder: Encoder) -> tuple[dict[str, KeptRows], ImputeScaler]:
    saved = checkpoints.payload("scale")
    scaler = ImputeScaler(encoder)
    scaler.feature_names_ = saved["feature_names"]
    for name, value in checkpoints.read("scaler", load_fitted)["attributes"].items():
        setattr(scaler, name, value)
    return {name: KeptRows.from_payload(table) for name, table in saved["tables"].items()}, scaler


def save_pca(checkpoints: Checkpoints, pca: Any) -> None:
    """The reduce stage: the fitted PCA (as in ``model/pca``)."""
    with checkpoints.writing("pca") as saved:
        pca.save(saved)
    checkpoints.mark("reduce")


def load_pca(checkpoints: Checkpoints) -> Any:
    return checkpoints.read("pca", decompose.load)


def save_sample(checkpoints: Checkpoints, sample: np.ndarray) -> None:
    """The project stage: the seeding sample (the coordinates are already in the work folder)."""
    with checkpoints.writing("sample") as saved:
        np.save(saved / "sample.npy", sample, allow_pickle=False)
    checkpoints.mark("project")


def load_sample(checkpoints: Checkpoints) -> np.ndarray:
    return checkpoints.read("sample", lambda saved: np.load(saved / "sample.npy", allow_pickle=False))


def save_cluster(checkpoints: Checkpoints, clustered: Clustered) -> None:
    """The cluster stage: the fitted segmenter (as in ``model/segmenter``) and the elbow table."""
    with checkpoints.writing("segmenter") as saved:
        clustered.segmenter.save(saved)
        if clustered.elbow is not None:
            clustered.elbow.to_csv(saved / "elbow.csv", index=False)
    checkpoints.mark("cluster", {"elbow": clustered.elbow is not None})


def load_cluster(checkpoints: Checkpoints) -> Clustered:
    def load(saved: Path) -> Clustered:
        elbow = pd.read_csv(saved / "elbow.csv") if checkpoints.payload("cluster")["elbow"] else None
        return Clustered(segmenters.load(saved), elbow)

    return checkpoints.read("segmenter", load)
