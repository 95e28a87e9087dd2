"""A job spec -> the stages, wired: read, clean, encode, scale, reduce, cluster, assign, compare, describe.

Passes over the population (each a Dask computation that brings only small results to the client):
1. read: parse, validate and code every partition (saved as blocks), counting invalid and missing values;
2. value histograms of the kept rows (impute + scale statistics) and the per-row missing histogram;
3. the PCA fit (one pass for the exact Gram solver);
4. the projection, written to the scratch folder block by block (taking k-means' seeding sample on the way),
   which k-means reads once per iteration;
5. assignment of every row of every table, written as Parquet, with segment counts (the population's
   from the saved projection, without recomputing it).

The first pass codes every partition into a matrix of code positions (``codes``) saved in the scratch
folder; the later passes read those blocks, never the input again. Nothing is held in cluster memory
between passes, so memory does not grow with the table.
"""

from __future__ import annotations

import copy
import importlib
import logging
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import dask
import dask.array as da
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
from distributed import as_completed
from fsspec.core import url_to_fs

from . import __version__, cluster, decompose, segmenters, stability
from ._estimators import load_fitted, save_fitted, tree_reduce
from .checkpoint import Checkpoints, checkpoint_key
from .clean import Cleaner, merge_statistics
from .codes import Codebook, load_block, save_block, storage_dtype
from .compare import compare_proportions
from .config import ConfigError, JobConfig
from .describe import segment_profiles
from .encode import Encoder
from .io import (
    InputError,
    RunFolder,
    Table,
    code_partition,
    duplicate_id_locations,
    hide_input_errors_in_worker_log,
    read_table,
)
from .model import INSUFFICIENT, SegmentationModel, segment_names
from .preflight import Checked, input_paths, preflight
from .progress import LocalTaskCounter, StageDisplay, StageProgress
from .runtime import Stage, check_interrupt, open_cluster
from .scale import ImputeScaler
from .schema import Schema, default_attributes_path

logger = logging.getLogger(__name__)

TABLES = ("population", "customers", "mailout_train", "mailout_test")
LOADINGS_COMPONENTS = 5
LOADINGS_TOP = 10


@dataclass
class RunResult:
    """What ``run_job`` returns: where the run folder is, and its main results in memory."""

    output: str  # the run folder
    proportions: pd.DataFrame  # proportions.csv: each segment's share of population and customers
    run: dict  # run.json
    model: SegmentationModel = field(repr=False)  # the fitted chain: cleaner, encoder, scaler, pca, segmenter
    assignments: str  # folder of Parquet files: LNR, table, segment of every row of every table


def versions() -> dict:
    """Versions of Python and the libraries whose behaviour shapes the results."""
    packages = ("dask", "distributed", "dask-ml", "scikit-learn", "pandas", "numpy", "pyarrow", "matplotlib")
    found = {"python": platform.python_version(), "segmentation": __version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


@dataclass
class Blocks:
    """A table's coded blocks (``codes.save_block`` files) in the run's scratch folder, in row order."""

    paths: list[str]
    rest_dtypes: dict
    storage_options: dict

    def load(self) -> list:
        """One lazy load per block (fresh tasks: every pass reads the files again, nothing stays in memory)."""
        return [
            dask.delayed(load_block, pure=False)(p, self.rest_dtypes, self.storage_options)
            for p in self.paths
        ]


def _scratch_folder(work: str, name: str, storage_options: dict) -> str:
    """``work/name``, created (object stores need nothing created)."""
    folder = f"{str(work).rstrip('/')}/{name}"
    fs, path = url_to_fs(folder, **storage_options)
    fs.makedirs(path, exist_ok=True)
    return folder


def _code_partition(
    raw: pd.DataFrame, codebook: Codebook, source: str, checks: tuple, path: str, storage: dict
):
    """Raw partition -> coded block saved at ``path``; returns ((missing counts, invalid counts), row ids).
    ``checks`` is (strict, validate) of the table."""
    block, invalid = code_partition(raw, codebook, source, *checks)
    save_block(block, path, storage)
    return (codebook.missing_counts(block), invalid), block.ids


def _add_counts(*parts: tuple) -> tuple:
    return tuple(sum(values[1:], values[0]) for values in zip(*parts, strict=True))


def _read_pass(
    tables: dict[str, Table], codebook: Codebook, work: str, storage: dict, config: JobConfig
) -> tuple[dict, dict]:
    """Parse, validate and code every partition of every table in one computation; returns
    ``({table: Blocks}, {table: {"missing": Series, "invalid": {column: count}, "duplicate_ids": n}})``.

    An id that repeats within a table is an ``InputError`` naming it and both its lines, unless
    ``config.allow_duplicate_ids`` (then the repeats are counted)."""
    shared = dask.delayed(codebook, traverse=False)
    blocks, lazy, ids = {}, {}, {}
    for name, table in tables.items():
        paths = _block_paths(_scratch_folder(work, name, storage), len(table.parts))
        checks = (table.strict, table.validate)
        parts = [
            dask.delayed(_code_partition, nout=2)(raw, shared, source, checks, path, storage)
            for (source, raw), path in zip(table.parts, paths, strict=True)
        ]
        lazy[name] = tree_reduce([counts for counts, _ in parts], _add_counts)
        ids[name] = [block_ids for _, block_ids in parts]
        blocks[name] = Blocks(paths, codebook.rest_dtypes, storage)
    counts, ids = dask.compute(lazy, ids)
    first_pass = {
        name: {
            "missing": missing,
            "invalid": {c: int(v) for c, v in invalid.items() if v},
            "duplicate_ids": _duplicate_ids(
                tables[name], ids[name], codebook.schema.id_column, config, storage
            ),
        }
        for name, (missing, invalid) in counts.items()
    }
    return blocks, first_pass


def _block_paths(folder: str, n: int) -> list[str]:
    return [f"{folder}/{i:05d}.npz" for i in range(n)]


def _duplicate_ids(
    table: Table, ids: list[np.ndarray], id_column: str, config: JobConfig, storage_options: dict
) -> int:
    """How many rows repeat an id seen earlier in the table; raises ``InputError`` for the first repeated
    id (naming both its lines) unless duplicates are allowed."""
    every = np.concatenate(ids) if ids else np.empty(0, dtype="int64")
    unique, first_seen, seen = np.unique(every, return_index=True, return_counts=True)
    repeats = len(every) - len(unique)
    if repeats and not config.allow_duplicate_ids:
        value = int(every[first_seen[seen > 1].min()])
        ends = np.cumsum([len(i) for i in ids])
        rows = np.flatnonzero(every == value)[:2]
        files = list(dict.fromkeys(table.parts[np.searchsorted(ends, r, "right")][0] for r in rows))
        where = duplicate_id_locations(files, id_column, value, config.sep, storage_options)
        raise InputError(
            f"{where}: {id_column} {value} is repeated ({repeats:,} repeated id(s) in table {table.name}; "
            "pass --allow-duplicate-ids to keep every row)"
        )
    return repeats


def _block_array(blocks: list, function, rows: list[int], n_columns: int) -> da.Array:
    """A row-blocked float32 Dask array: ``function(block)`` of each block, with its known row count."""
    arrays = [
        da.from_delayed(dask.delayed(function)(block), shape=(n, n_columns), dtype=np.float32)
        for block, n in zip(blocks, rows, strict=True)
    ]
    return da.concatenate(arrays, axis=0)


def _call(model: SegmentationModel, method: str, *args):
    return getattr(model, method)(*args)


def run_job(config: JobConfig, checked: Checked | None = None, *, fresh: bool = False) -> RunResult:
    """Run the whole job; the run folder appears at ``config.output`` only when everything is written.

    Stages completed by an earlier run of the same inputs and configuration that crashed or was killed
    are taken from its checkpoints (``checkpoint.Checkpoints``), unless ``fresh``. The work folder is
    removed when the run succeeds, is interrupted, or its input or configuration is at fault; after a
    crash or kill it stays for the rerun. ``checked``: the result of ``preflight(config)`` when the caller
    ran it already."""
    checked = checked or preflight(config)  # before any cluster starts: paths, headers, profile, attributes
    schema, attributes_text = checked.schema, checked.attributes_text
    profile = checked.profile
    folder = RunFolder(config.output, profile.storage_options)
    folder.remove_dead_runs()
    root = folder.work_root
    if config.work_dir:
        root = f"{config.work_dir.rstrip('/')}/{root.rstrip('/').rsplit('/', 1)[-1]}"
    key = checkpoint_key(config, attributes_text, profile.storage_options)
    try:
        checkpoints = Checkpoints(root, key, profile.storage_options, fresh=fresh)
    except BaseException:
        folder.abandon()
        raise
    started = datetime.now(UTC)
    try:
        with open_cluster(profile) as session:
            _import_on_workers(session.client)
            logger.info("Dask dashboard: %s", session.dashboard_link)
            print(f"Dask dashboard: {session.dashboard_link}", flush=True)
            with session.performance_report(folder.path("performance_report.html")):
                model, run = _run_stages(config, schema, attributes_text, session, folder, checkpoints)
            run["cluster"] = session.describe()
            run["peak_worker_memory"] = session.peak_worker_memory()
            run.update(session.recovery())
            run["timings"] = dict(session.timings)
        run.update(
            segmentation_version=__version__,
            started=started.isoformat(timespec="seconds"),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            config=config.to_dict(),
            inputs={**input_paths(config), "attributes": str(config.attributes or default_attributes_path())},
            versions=versions(),
        )
        folder.write_json("run.json", run)
        if config.report:
            _write_report(folder, config)
        proportions = pd.read_csv(folder.path("proportions.csv"), dtype={"segment": str})
        check_interrupt()
        output = folder.commit()
    except (InputError, ConfigError, KeyboardInterrupt):
        # A rerun would fail the same way; an interrupt (Ctrl-C, SIGTERM) is a deliberate stop that
        # promises nothing was written. Only a crash or a kill leaves the checkpoints for the rerun.
        folder.abandon()
        checkpoints.remove()
        raise
    except BaseException:
        folder.abandon()
        raise
    checkpoints.remove()
    return RunResult(output, proportions, run, model, f"{output.rstrip('/')}/assignments")


def _import_on_workers(client) -> None:
    """Import the job's modules on every worker before the first pass. Otherwise each worker imports them
    while its first tasks queue up, and one worker then held 1.0-1.2 GB for a few seconds in 3 of 5
    real-size runs (in none of 4 with this). Also keeps an expected ``InputError`` out of the workers'
    log (the client prints its one line)."""
    client.run(_prepare_worker)


def _prepare_worker() -> None:
    importlib.import_module(__name__)
    hide_input_errors_in_worker_log()


def _write_report(folder: RunFolder, config: JobConfig) -> None:
    display = StageDisplay()
    with display.stage("report") as stage:
        _write_report_files(folder, config, stage)
    display.close()


def _write_report_files(folder: RunFolder, config: JobConfig, stage: StageProgress) -> None:
    from .report import write_report
    from .target import write_targets

    started = time.perf_counter()
    if folder.remote:
        # write_targets reads the assignments from a local run folder; a remote run's are only in object
        # storage, so the targeting list is left out rather than downloading every assignment.
        logger.warning(
            "targets.parquet and targets_top.csv not written for the remote run folder %s: run "
            "`segmentation report` on a local copy of it to write them",
            folder.destination,
        )
    else:
        stage.detail("targeting list")
        write_targets(folder.staging, top_n=config.top_targets)
    stage.detail("HTML and PDF")
    write_report(folder.staging)
    logger.info("report written in %.1f s", time.perf_counter() - started)


@dataclass
class Reduced:
    """The population's PCA coordinates, one ``.npy`` file per coded block in the scratch folder.

    Every later pass reads them back (k-means iterations included): the coordinates stay on disk (or in
    object storage), never in cluster memory, whatever the size of the table.
    """

    paths: list[str]
    rows: list[int]
    storage_options: dict

    def array(self, n_components: int, target_bytes: int | None = None) -> da.Array:
        """A float32 Dask array: one chunk per file, or per run of files of about ``target_bytes``.

        k-means takes the larger chunks: each of its passes is several small tasks per chunk, and with
        ~15 MB chunks the scheduling cost about a third of an iteration at the real size (1.4-1.8 s vs
        1.0-1.2 s with ~60 MB chunks). ``KMEANS_CHUNK_BYTES`` is 32 MB, not 64: dask-ml's distance step
        copies each chunk to float64, and 64 MB chunks raised the job's peak from 2.08 to 2.37 GiB.
        """
        per_file = max(self.rows, default=1) * n_components * 4
        group = max(1, (target_bytes or 0) // max(per_file, 1))
        name = f"reduced-{group}-{dask.base.tokenize(self.paths)}"
        graph, chunks = {}, []
        for i in range(0, len(self.paths), group):
            graph[(name, len(chunks), 0)] = (_load_arrays, self.paths[i : i + group], self.storage_options)
            chunks.append(sum(self.rows[i : i + group]))
        return da.Array(graph, name, chunks=(tuple(chunks), (n_components,)), dtype=np.float32)


KMEANS_CHUNK_BYTES = 32 * 2**20


@dataclass
class Prepared:
    """What the passes before clustering produce."""

    tables: dict[str, Table]
    blocks: dict[str, Blocks]
    first_pass: dict
    statistics: dict
    model: SegmentationModel
    reduced: Reduced
    sample: np.ndarray  # uniform rows of ``reduced``, to seed k-means from
    resumed: list[str]  # the stages taken from checkpoints

    def for_kmeans(self) -> da.Array:
        return self.reduced.array(self.model.pca.n_components_, KMEANS_CHUNK_BYTES)


def _prepare(config: JobConfig, schema: Schema, session, checkpoints: Checkpoints) -> Prepared:
    """Read, clean, scale, reduce: everything up to the PCA coordinates saved in the work folder.

    Each stage ends with its checkpoint; the stages ``checkpoints`` holds are loaded, not computed."""
    storage = session.profile.storage_options
    work = checkpoints.folder
    resumed = [s for s in checkpoints.completed() if s != "cluster"]
    cleaner = Cleaner(schema, config.clean.column_missing_threshold, config.clean.row_missing_threshold)
    codebook = Codebook(schema)
    with session.stage("read"):
        tables: dict[str, Table] = {
            name: read_table(path, schema, name, storage, config.blocksize, config.strict, config.sep)
            for name, path in input_paths(config).items()
        }
        if "read" in resumed:
            blocks, first_pass = _load_read(checkpoints, codebook, storage)
        else:
            blocks, first_pass = _read_pass(tables, codebook, work, storage, config)
            checkpoints.mark("read", _read_payload(blocks, first_pass))
    with session.stage("clean"):
        cleaner.fit(None, missing=first_pass["population"]["missing"])
        encoder = Encoder(schema, cleaner.kept_columns_).fit()
    with session.stage("scale"):
        if "scale" in resumed:
            statistics, scaler = _load_scale(checkpoints, encoder)
        else:
            statistics, scaler = _scale(blocks, cleaner, codebook, encoder, schema)
            _save_scale(checkpoints, statistics, scaler)
    model = SegmentationModel(schema, cleaner, encoder, scaler, codebook=codebook)
    rows = [int(n) for n in statistics["population"][2]]
    _check_k(config, sum(rows), int(first_pass["population"]["missing"]["__rows__"]))
    with session.stage("reduce"):
        if "reduce" in resumed:
            model.pca = checkpoints.read("pca", decompose.load)
        else:
            model.pca = _reduce(config, model, blocks, rows)
            with checkpoints.writing("pca") as saved:
                model.pca.save(saved)
            checkpoints.mark("reduce")
    with session.stage("project"):
        paths = [f"{_scratch_folder(work, 'reduced', storage)}/{i:05d}.npy" for i in range(len(rows))]
        if "project" in resumed:
            sample = checkpoints.read(
                "sample", lambda saved: np.load(saved / "sample.npy", allow_pickle=False)
            )
        else:
            sample = _project(config, session, model, blocks, rows, paths)
            with checkpoints.writing("sample") as saved:
                np.save(saved / "sample.npy", sample, allow_pickle=False)
            checkpoints.mark("project")
    return Prepared(
        tables, blocks, first_pass, statistics, model, Reduced(paths, rows, storage), sample, resumed
    )


def _read_payload(blocks: dict[str, Blocks], first_pass: dict) -> dict:
    """The read stage's checkpoint: each table's block count and first-pass counts."""
    return {
        name: {
            "blocks": len(blocks[name].paths),
            "missing": {str(c): int(v) for c, v in counts["missing"].items()},
            "invalid": counts["invalid"],
            "duplicate_ids": int(counts["duplicate_ids"]),
        }
        for name, counts in first_pass.items()
    }


def _load_read(checkpoints: Checkpoints, codebook: Codebook, storage: dict) -> tuple[dict, dict]:
    """``_read_pass``'s results from the read checkpoint (the coded blocks are in the work folder)."""
    saved = checkpoints.payload("read")
    blocks = {
        name: Blocks(_block_paths(checkpoints.url(name), table["blocks"]), codebook.rest_dtypes, storage)
        for name, table in saved.items()
    }
    first_pass = {
        name: {
            "missing": pd.Series(table["missing"], dtype="int64"),
            "invalid": table["invalid"],
            "duplicate_ids": table["duplicate_ids"],
        }
        for name, table in saved.items()
    }
    return blocks, first_pass


def _scale(
    blocks: dict[str, Blocks], cleaner: Cleaner, codebook: Codebook, encoder: Encoder, schema: Schema
) -> tuple[dict, ImputeScaler]:
    """Value histograms of the kept rows (-> the fitted ``ImputeScaler``), row-missing histograms and the
    kept rows per block, of the population and the customers."""
    shared = dask.delayed(codebook, traverse=False)
    statistics = {
        name: tree_reduce(
            [dask.delayed(cleaner.block_statistics)(shared, b) for b in blocks[name].load()],
            merge_statistics,
        )
        for name in ("population", "customers")
    }
    (statistics,) = dask.compute(statistics)
    histograms = cleaner.value_histograms_from_counts(
        statistics["population"][0], {c: storage_dtype(schema[c]) for c in cleaner.kept_columns_}
    )
    return statistics, ImputeScaler(encoder).fit_histograms(histograms)


_SCALER_ATTRIBUTES = ("fill_values_", "mean_", "scale_")


def _save_scale(checkpoints: Checkpoints, statistics: dict, scaler: ImputeScaler) -> None:
    """The scale stage's checkpoint: the fitted scaler, and what later stages use of the statistics."""
    attributes = {name: getattr(scaler, name) for name in _SCALER_ATTRIBUTES}
    with checkpoints.writing("scaler") as saved:
        save_fitted(saved, {"estimator": "ImputeScaler", "params": {}, "attributes": attributes})
    payload = {
        "feature_names": scaler.feature_names_,
        "row_missing": {name: statistics[name][1].tolist() for name in statistics},
        "kept_rows": {name: statistics[name][2].tolist() for name in statistics},
    }
    checkpoints.mark("scale", payload)


def _load_scale(checkpoints: Checkpoints, encoder: Encoder) -> tuple[dict, ImputeScaler]:
    """``_scale``'s results from the scale checkpoint (the value histograms are not kept: only the
    scaler fitted on them is used)."""
    saved = checkpoints.payload("scale")
    scaler = ImputeScaler(encoder)
    scaler.feature_names_ = saved["feature_names"]
    for name, value in checkpoints.read("scaler", load_fitted)["attributes"].items():
        setattr(scaler, name, value)
    statistics = {
        name: (None, np.asarray(saved["row_missing"][name]), np.asarray(saved["kept_rows"][name]))
        for name in saved["row_missing"]
    }
    return statistics, scaler


def _reduce(config: JobConfig, model: SegmentationModel, blocks: dict[str, Blocks], rows: list[int]):
    """The PCA fitted on the population's standardized features."""
    shared_model = dask.delayed(model.compile(), traverse=False)
    features = _block_array(
        [dask.delayed(_call)(shared_model, "standardize_block", b) for b in blocks["population"].load()],
        lambda pair: pair[1],
        rows,
        len(model.scaler.feature_names_),
    )
    return decompose.make_pca(config.reduce.solver, config.reduce.n_components).fit(features)


def _project(
    config: JobConfig, session, model: SegmentationModel, blocks: dict[str, Blocks], rows: list[int], paths
) -> np.ndarray:
    """Write the population's PCA coordinates to ``paths``; return k-means' seeding sample of them (taken
    as the blocks are written, not with a pass of its own)."""
    storage = session.profile.storage_options
    shared_model = dask.delayed(model, traverse=False)
    taken = cluster.sample_positions(rows, cluster.SAMPLE_SIZE, config.seed)
    writes = [
        dask.delayed(_save_array)(dask.delayed(_call)(shared_model, "reduced_block", b), path, storage, t)
        for b, path, t in zip(blocks["population"].load(), paths, taken, strict=True)
    ]
    return _gather_rows(session.client, writes, [len(t) for t in taken], model.pca.n_components_)


def _check_k(config: JobConfig, kept: int, read: int) -> None:
    """k (or the elbow's largest k) must not exceed the population rows kept for clustering: a
    configuration error found before the PCA, not a traceback after it."""
    elbow = config.clustering.elbow if config.clustering.elbow is not None else config.clustering.k is None
    asked = [("k", "--k", config.clustering.k)] + (
        [("clustering.k_max", "--k-max", config.clustering.k_max)] if elbow else []
    )
    for key, option, k in asked:
        if k is not None and k > kept:
            raise ConfigError(
                f"{config.inputs.population}: {key} = {k} ({option}) is more than the {kept:,} population "
                f"rows kept for clustering ({read:,} read, {read - kept:,} set aside as insufficient_data)"
            )


def _save_array(array: np.ndarray, path: str, storage_options: dict, rows: np.ndarray) -> np.ndarray:
    """Write ``array`` to ``path``; return its ``rows``."""
    with fsspec.open(path, "wb", **storage_options) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    return array[rows]


def _gather_rows(client, pieces: list, counts: list[int], n_columns: int) -> np.ndarray:
    """Compute ``pieces`` (float32 row blocks of ``counts`` rows) into one array on the client, each copied
    into place as it arrives and then released, so the rows are held once."""
    out = np.empty((sum(counts), n_columns), dtype=np.float32)
    starts = np.cumsum([0, *counts])
    futures = client.compute(pieces)
    position = {future.key: i for i, future in enumerate(futures)}
    for future, piece in as_completed(futures, with_results=True):
        i = position[future.key]
        out[starts[i] : starts[i + 1]] = piece
        future.release()
    return out


def _load_arrays(paths: list[str], storage_options: dict) -> np.ndarray:
    arrays = []
    for path in paths:
        with fsspec.open(path, "rb", **storage_options) as handle:
            arrays.append(np.load(handle, allow_pickle=False))
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


ELBOW_SEED_SAMPLE = 20_000


def _segmenter_params(config: JobConfig) -> dict:
    """The job's options of its clustering algorithm, beyond k and the seed."""
    return (
        {"covariance_type": config.clustering.covariance_type} if config.clustering.algorithm == "gmm" else {}
    )


def _elbow(config: JobConfig, prepared: Prepared, stage: Stage) -> pd.DataFrame:
    """SSE (and the algorithm's own figures) per k over ``k_min..k_max``. Each k is seeded more cheaply
    than the final fit (10 seedings on 20,000 of the sampled rows): the elbow needs the curve's shape, and
    14 full seedings would dominate the run."""
    ks = list(range(config.clustering.k_min, config.clustering.k_max + 1))
    sample = cluster.subsample(prepared.sample, ELBOW_SEED_SAMPLE, config.seed)
    table = cluster.elbow(
        prepared.for_kmeans(),
        ks,
        algorithm=config.clustering.algorithm,
        random_state=config.seed,
        silhouette_sample=config.clustering.silhouette_sample,
        sample=sample,
        init_search_size=ELBOW_SEED_SAMPLE,
        n_init=10,
        **_segmenter_params(config),
        on_k=lambda i, k: stage.detail(f"elbow k={k} ({i + 1} of {len(ks)})"),
    )
    stage.detail("elbow stability")
    return stability.with_stability(
        table,
        prepared.sample,
        stability.BOOTSTRAPS // 2,
        config.seed,
        config.clustering.algorithm,
        **_segmenter_params(config),
    )


def elbow_only(config: JobConfig, checked: Checked | None = None) -> pd.DataFrame:
    """Fit the job's algorithm over ``k_min..k_max`` and return the elbow table (no run folder)."""
    import tempfile

    checked = checked or preflight(config)
    config = copy.deepcopy(config)
    config.clustering.elbow = True  # k_max is then checked against the rows kept
    with (
        tempfile.TemporaryDirectory(prefix="segmentation-elbow-") as work,
        open_cluster(checked.profile) as session,
    ):
        _import_on_workers(session.client)
        checkpoints = Checkpoints(work, "elbow", checked.profile.storage_options)
        prepared = _prepare(config, checked.schema, session, checkpoints)
        with session.stage("cluster") as stage:
            return _elbow(config, prepared, stage)


def assign_file(
    model_dir: str,
    input_path: str,
    out: str,
    table: str | None = None,
    storage_options: dict | None = None,
    sep: str = ";",
) -> pd.Series:
    """Segment a new table with a saved model; writes ``LNR, table, segment`` Parquet atomically."""
    import uuid

    from fsspec.core import url_to_fs

    model = SegmentationModel.load(model_dir)
    name = table or Path(str(input_path)).name.split(".")[0]
    source = read_table(
        input_path, model.schema, name if name in TABLES else "mailout_test", storage_options, sep=sep
    )
    assigned = source.frame.map_partitions(model.assign_partition, name, meta=_assignment_meta(model))
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


def _assignment_meta(model: SegmentationModel) -> pd.DataFrame:
    """The assignments' columns: ``LNR, table, segment``, and ``probability`` when the segmenter gives one."""
    columns = {
        "LNR": pd.Series(dtype="int64"),
        "table": pd.Series(dtype="string"),
        "segment": pd.Series(dtype="string"),
    }
    if model.segmenter.has_probability:
        columns["probability"] = pd.Series(dtype="float64")
    return pd.DataFrame(columns)


def _assign_population_block(model: SegmentationModel, block, reduced: np.ndarray) -> pd.DataFrame:
    return model.assign_reduced(block.ids, model.set_aside_block(block), reduced, "population")


def _assignments(prepared: Prepared, name: str) -> dd.DataFrame:
    """``LNR, table, segment`` of every row of a table; the population's from the PCA coordinates already
    saved for k-means (block i of ``reduced`` holds the kept rows of block i)."""
    shared = dask.delayed(prepared.model, traverse=False)
    blocks = prepared.blocks[name].load()
    if name == "population":
        reduced = prepared.reduced.array(prepared.model.pca.n_components_).to_delayed().ravel()
        parts = [
            dask.delayed(_assign_population_block)(shared, block, coordinates)
            for block, coordinates in zip(blocks, reduced, strict=True)
        ]
    else:
        parts = [dask.delayed(_call)(shared, "assign_block", block, name) for block in blocks]
    return dd.from_delayed(parts, meta=_assignment_meta(prepared.model), verify_meta=False)


def _run_stages(
    config: JobConfig,
    schema: Schema,
    attributes_text: str,
    session,
    folder: RunFolder,
    checkpoints: Checkpoints,
) -> tuple[SegmentationModel, dict]:
    prepared = _prepare(config, schema, session, checkpoints)
    tables, first_pass, statistics, model = (
        prepared.tables,
        prepared.first_pass,
        prepared.statistics,
        prepared.model,
    )
    cleaner, scaler = model.cleaner, model.scaler
    storage = session.profile.storage_options
    with session.stage("cluster") as stage:
        if prepared.resumed == ["read", "scale", "reduce", "project"] and checkpoints.done("cluster"):
            model.segmenter, elbow = _load_cluster(checkpoints)
            prepared.resumed.append("cluster")
        else:
            model.segmenter, elbow = _cluster(config, prepared, stage)
            _save_cluster(checkpoints, model.segmenter, elbow)
        recommended = int(elbow.loc[elbow["recommended"], "k"].iloc[0]) if elbow is not None else None
        k = int(model.segmenter.n_clusters)
        stage.detail("stability")
        stable = _segment_stability(prepared.sample, model.segmenter, config)
        prepared.sample = None  # 125 MB at the real size, not needed any more
    with session.stage("assign"):
        lazy = {}
        for name in tables:
            assigned = _assignments(prepared, name)
            lazy[name] = {
                "write": assigned.to_parquet(
                    folder.url_for("assignments"),
                    write_index=False,
                    compute=False,
                    name_function=lambda i, n=name: f"{n}-{i:05d}.parquet",
                    storage_options=storage,
                    write_metadata_file=False,
                ),
                "counts": assigned["segment"].value_counts(split_out=1),
            }
        (computed,) = dask.compute(lazy)
    with session.stage("compare"):
        segments = segment_names(k)
        counts = {name: computed[name]["counts"].reindex(segments, fill_value=0) for name in tables}
        proportions = compare_proportions(counts["population"], counts["customers"], segments)
        folder.write_csv("proportions.csv", proportions)
    response = _response_stage(config, prepared, proportions, folder, session)
    with session.stage("describe"):
        centres_scaled = model.pca.inverse_transform(model.segmenter.centres_)
        profiles = segment_profiles(
            centres_scaled, scaler.feature_names_, scaler.mean_, scaler.scale_, schema
        )
        folder.write_csv("profiles.csv", profiles)
    with session.stage("write"):
        model.save(folder.path("model"), attributes_text)
        if elbow is not None:
            folder.write_csv("elbow.csv", elbow)
        folder.write_csv("stability.csv", stable)
        folder.write_csv("pca.csv", _pca_table(model.pca))
        folder.write_csv("pca_loadings.csv", _loadings(model.pca, scaler.feature_names_, schema))
        folder.write_csv("quality/columns.csv", _quality_columns(first_pass, schema, cleaner))
        folder.write_csv("quality/rows.csv", _quality_rows(statistics))
    rows = {}
    for name in tables:
        read = int(first_pass[name]["missing"]["__rows__"])
        aside = int(counts[name].get(INSUFFICIENT, 0))
        assigned = int(counts[name].sum()) - aside
        if assigned + aside != read:
            raise RuntimeError(
                f"row accounting broken for {name}: read {read}, assigned {assigned}, aside {aside}"
            )
        rows[name] = {"read": read, "assigned": assigned, "set_aside": aside}
    return model, {
        "rows": rows,
        "columns": {
            "input": len(schema.columns("population")),
            "dropped": cleaner.dropped_columns_,
            "kept": len(cleaner.kept_columns_),
            "features": len(scaler.feature_names_),
        },
        "thresholds": {
            "column_missing": cleaner.column_missing_threshold,
            "row_missing": cleaner.row_missing_threshold,
        },
        "pca": {
            "solver": config.reduce.solver,
            "n_components": int(model.pca.n_components_),
            "explained_variance": float(np.sum(model.pca.explained_variance_ratio_)),
        },
        "clustering": _clustering_record(config, model.segmenter, recommended),
        "stability": stability.summary(stable),
        "resumed": prepared.resumed,
        "checkpoint_key": checkpoints.key,
        "invalid_values": {name: first_pass[name]["invalid"] for name in tables},
        "ignored_columns": {name: table.ignored_columns for name, table in tables.items()},
        "duplicate_ids": {name: first_pass[name]["duplicate_ids"] for name in tables},
        "response": response,
    }


def _segment_stability(sample: np.ndarray, segmenter, config: JobConfig) -> pd.DataFrame:
    """stability.csv: each segment's bootstrap stability on (a subsample of) the seeding sample, refitted
    in memory by scikit-learn's counterpart of the run's algorithm at its k (``segmentation.stability``)."""
    seed = config.seed
    rows = stability.subsample_rows(sample, stability.SAMPLE_SIZE, seed)
    labels = np.asarray(segmenter.predict(rows))
    fit_predict = stability.fit_predict_for(
        config.clustering.algorithm, int(segmenter.n_clusters), seed, **_segmenter_params(config)
    )
    return stability.segment_stability(rows, labels, fit_predict, stability.BOOTSTRAPS, seed)


def _response_stage(
    config: JobConfig, prepared: Prepared, proportions, folder: RunFolder, session
) -> dict | None:
    """With a ``mailout_train``: response per segment (rewriting proportions.csv with its columns), the response
    model and the scores (``segmentation.response``); the run.json ``response`` section, None without one."""
    if "mailout_train" not in prepared.tables:
        return None
    from .response import SCORED_TABLES, run_response

    with session.stage("response"):
        blocks = {name: prepared.blocks[name].load() for name in SCORED_TABLES if name in prepared.blocks}
        paths = prepared.tables["mailout_train"].paths
        storage = session.profile.storage_options
        proportions, response = run_response(
            prepared.model, blocks, paths, proportions, folder, storage, config.seed
        )
        folder.write_csv("proportions.csv", proportions)
    return response


def _cluster(
    config: JobConfig, prepared: Prepared, stage: Stage
) -> tuple[segmenters.Segmenter, pd.DataFrame | None]:
    """The elbow table (when asked, or when k is not given) and the segmenter at the given or recommended k."""
    run_elbow = (
        config.clustering.elbow if config.clustering.elbow is not None else config.clustering.k is None
    )
    elbow = _elbow(config, prepared, stage) if run_elbow else None
    k = config.clustering.k or int(elbow.loc[elbow["recommended"], "k"].iloc[0])
    stage.detail(f"k={k}")
    segmenter = segmenters.make_segmenter(
        config.clustering.algorithm, n_clusters=k, random_state=config.seed, **_segmenter_params(config)
    )
    return segmenter.fit(prepared.for_kmeans(), sample=prepared.sample), elbow


def _clustering_record(config: JobConfig, segmenter: segmenters.Segmenter, recommended: int | None) -> dict:
    """run.json's ``clustering`` block: the algorithm, k and how it was chosen, and the fitted objective."""
    record = {
        "algorithm": segmenters.algorithm_name(segmenter),
        "k": int(segmenter.n_clusters),
        "k_recommended": recommended,
        "how_k_was_chosen": "given" if config.clustering.k else "elbow",
        "objective": segmenter.objective,
        "score": segmenter.score_,
        "sse": float(segmenter.sse_),
        **segmenter.elbow_figures(),
    }
    if hasattr(segmenter, "tree_"):
        record["tree"] = segmenter.tree_
    return record


def _save_cluster(
    checkpoints: Checkpoints, segmenter: segmenters.Segmenter, elbow: pd.DataFrame | None
) -> None:
    with checkpoints.writing("segmenter") as saved:
        segmenter.save(saved)
        if elbow is not None:
            elbow.to_csv(saved / "elbow.csv", index=False)
    checkpoints.mark("cluster", {"elbow": elbow is not None})


def _load_cluster(checkpoints: Checkpoints) -> tuple[segmenters.Segmenter, pd.DataFrame | None]:
    def load(saved: Path) -> tuple[segmenters.Segmenter, pd.DataFrame | None]:
        elbow = pd.read_csv(saved / "elbow.csv") if checkpoints.payload("cluster")["elbow"] else None
        return segmenters.load(saved), elbow

    return checkpoints.read("segmenter", load)


def _pca_table(pca) -> pd.DataFrame:
    ratios = np.asarray(pca.all_explained_variance_ratio_, dtype="float64")
    return pd.DataFrame(
        {
            "component": np.arange(1, len(ratios) + 1),
            "explained_variance_ratio": ratios,
            "cumulative": np.cumsum(ratios),
            "kept": np.arange(len(ratios)) < pca.n_components_,
        }
    )


def _loadings(pca, feature_names: list[str], schema: Schema) -> pd.DataFrame:
    rows = []
    for component in range(min(LOADINGS_COMPONENTS, pca.n_components_)):
        weights = np.asarray(pca.components_[component])
        for index in np.argsort(-np.abs(weights))[:LOADINGS_TOP]:
            rows.append(
                {
                    "component": component + 1,
                    "attribute": feature_names[index],
                    "label": schema.label(feature_names[index]),
                    "loading": float(weights[index]),
                }
            )
    return pd.DataFrame(rows)


def _quality_columns(first_pass: dict, schema: Schema, cleaner: Cleaner) -> pd.DataFrame:
    frames = []
    for table in ("population", "customers"):
        missing = first_pass[table]["missing"]
        share = missing.drop("__rows__") / max(int(missing["__rows__"]), 1)
        columns = [c for c in share.index if c in schema and schema[c].is_feature]
        frames.append(
            pd.DataFrame(
                {
                    "table": table,
                    "column": columns,
                    "label": [schema.label(c) for c in columns],
                    "missing_share": share[columns].to_numpy(dtype="float64"),
                    "dropped": [c in cleaner.dropped_columns_ for c in columns],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _quality_rows(statistics: dict) -> pd.DataFrame:
    frames = []
    for table in ("population", "customers"):
        counts = statistics[table][1]
        edges = np.linspace(0.0, 1.0, len(counts) + 1)
        frames.append(
            pd.DataFrame(
                {
                    "table": table,
                    "missing_share_low": edges[:-1],
                    "missing_share_high": edges[1:],
                    "rows": counts,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
