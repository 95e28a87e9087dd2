"""A job spec -> the stages, wired: read, clean, scale, reduce, project, cluster, assign, compare, describe.

Passes over the population (each a Dask computation that brings only small results to the client):
1. read: parse, validate and code every partition (saved as blocks), counting invalid and missing values
   (``io.code_tables``);
2. value histograms of the kept rows (impute + scale statistics) and the per-row missing histogram
   (``clean.kept_row_statistics``);
3. the PCA fit (one pass for the exact Gram solver);
4. the projection, written to the scratch folder block by block (taking k-means' seeding sample on the way,
   ``scratch.write_coordinates``), which k-means reads once per iteration;
5. assignment of every row of every table, written as Parquet, with segment counts (the population's
   from the saved projection, without recomputing it; ``assign``).

The first pass codes every partition into a matrix of code positions saved in the scratch folder; the later
passes read those blocks, never the input again. Nothing is held in cluster memory between passes, so
memory does not grow with the table. Each stage up to clustering checkpoints its result (``checkpoint``).
This module only wires the stages and the configuration; run.json is assembled in ``_run_record``.
"""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dask
import dask.array as da
import numpy as np
import pandas as pd

from . import __version__, checkpoint, cluster, decompose, stability
from ._estimators import log_duration, tree_reduce
from .assign import TABLES, assign_file, table_assignments, write_assignments
from .checkpoint import Checkpoints, checkpoint_key
from .clean import Cleaner, KeptRows, column_quality, kept_row_statistics, row_quality
from .codes import Codebook, storage_dtype
from .compare import compare_proportions, row_accounting
from .config import ConfigError, JobConfig
from .describe import segment_profiles
from .encode import Encoder
from .io import FirstPass, InputError, Table, code_tables, read_table
from .model import SegmentationModel, segment_names
from .preflight import Checked, input_paths, preflight
from .response import response_stage
from .run_folder import (
    ASSIGNMENTS,
    ELBOW,
    MODEL,
    PCA,
    PCA_LOADINGS,
    PERFORMANCE_REPORT,
    PROFILES,
    PROPORTIONS,
    QUALITY_COLUMNS,
    QUALITY_ROWS,
    RUN_JSON,
    STABILITY,
    RunFolder,
    RunReader,
)
from .runtime import check_interrupt, open_cluster, versions
from .scale import ImputeScaler
from .schema import Schema, default_attributes_path
from .scratch import (
    KMEANS_CHUNK_BYTES,
    Blocks,
    Coordinates,
    block_array,
    block_paths,
    call_method,
    scratch_folder,
    write_coordinates,
)

logger = logging.getLogger(__name__)

__all__ = ["TABLES", "RunResult", "assign_file", "elbow_only", "run_job", "versions"]  # as before


@dataclass
class RunResult:
    """What ``run_job`` returns: where the run folder is, and its main results in memory."""

    output: str  # the run folder
    proportions: pd.DataFrame  # proportions.csv: each segment's share of population and customers
    run: dict  # run.json
    model: SegmentationModel = field(repr=False)  # the fitted chain: cleaner, encoder, scaler, pca, segmenter
    assignments: str  # folder of Parquet files: LNR, table, segment of every row of every table


@dataclass
class Prepared:
    """What the stages before clustering produce."""

    tables: dict[str, Table]
    blocks: dict[str, Blocks]
    first_pass: dict[str, FirstPass]
    kept: dict[str, KeptRows]  # population and customers
    model: SegmentationModel
    coordinates: Coordinates
    sample: np.ndarray | None  # uniform rows of the coordinates, to seed the clustering from
    resumed: list[str]  # the stages taken from checkpoints

    def for_clustering(self) -> da.Array:
        return self.coordinates.array(self.model.pca.n_components_, KMEANS_CHUNK_BYTES)


@dataclass
class Results:
    """What the stages from clustering on produce, beyond the files they write."""

    clustered: cluster.Clustered
    stability: pd.DataFrame
    counts: dict[str, pd.Series]  # rows per segment of each table
    response: dict | None  # run.json's response section


def run_job(config: JobConfig, checked: Checked | None = None, *, fresh: bool = False) -> RunResult:
    """Run the whole job; the run folder appears at ``config.output`` only when everything is written.

    Stages completed by an earlier run of the same inputs and configuration that crashed or was killed
    are taken from its checkpoints (``checkpoint.Checkpoints``), unless ``fresh``. The work folder is
    removed when the run succeeds, is interrupted, or its input or configuration is at fault; after a
    crash or kill it stays for the rerun. ``checked``: the result of ``preflight(config)`` when the caller
    ran it already."""
    checked = checked or preflight(config)  # before any cluster starts: paths, headers, profile, attributes
    profile = checked.profile
    folder = RunFolder(config.output, profile.storage_options)
    folder.remove_dead_runs()
    root = folder.work_root
    if config.work_dir:
        root = f"{config.work_dir.rstrip('/')}/{root.rstrip('/').rsplit('/', 1)[-1]}"
    key = checkpoint_key(config, checked.attributes_text, profile.storage_options)
    try:
        checkpoints = Checkpoints(root, key, profile.storage_options, fresh=fresh)
    except BaseException:
        folder.abandon()
        raise
    started = datetime.now(UTC)
    try:
        with open_cluster(profile) as session:
            session.prepare_workers()
            logger.info("Dask dashboard: %s", session.dashboard_link)
            print(f"Dask dashboard: {session.dashboard_link}", flush=True)
            with session.performance_report(folder.path(PERFORMANCE_REPORT)):
                prepared = _prepare(config, checked.schema, session, checkpoints)
                results = _run_stages(config, checked, prepared, session, folder, checkpoints)
            run = _run_record(config, checked.schema, prepared, results, session, checkpoints, started)
        folder.write(RUN_JSON, run)
        if config.report:
            from .report import write_with_targets  # matplotlib: only when a report is written

            write_with_targets(folder, config.top_targets)
        proportions = folder.reader().read(PROPORTIONS)
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
    return RunResult(output, proportions, run, prepared.model, RunReader(output).url(ASSIGNMENTS))


# ------------------------------------------------------------------------ up to the PCA coordinates


def _prepare(config: JobConfig, schema: Schema, session, checkpoints: Checkpoints) -> Prepared:
    """Read, clean, scale, reduce, project: everything up to the PCA coordinates saved in the work folder.

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
        session.workers_prepared()
        if "read" in resumed:
            blocks, first_pass = checkpoint.load_read(checkpoints, codebook, storage)
        else:
            blocks, first_pass = code_tables(
                tables, codebook, work, storage, config.allow_duplicate_ids, config.sep
            )
            checkpoint.save_read(checkpoints, blocks, first_pass)
    with session.stage("clean"):
        cleaner.fit(None, missing=first_pass["population"].missing)
        encoder = Encoder(schema, cleaner.kept_columns_).fit()
    with session.stage("scale"):
        if "scale" in resumed:
            kept, scaler = checkpoint.load_scale(checkpoints, encoder)
        else:
            kept = kept_row_statistics({n: blocks[n] for n in ("population", "customers")}, cleaner, codebook)
            dtypes = {c: storage_dtype(schema[c]) for c in cleaner.kept_columns_}
            histograms = cleaner.value_histograms_from_counts(kept["population"].counts, dtypes, codebook)
            scaler = ImputeScaler(encoder).fit_histograms(histograms)
            checkpoint.save_scale(checkpoints, kept, scaler)
    model = SegmentationModel(schema, cleaner, encoder, scaler, codebook=codebook)
    rows = [int(n) for n in kept["population"].per_block]
    cluster.check_k(config.clustering, config.inputs.population, sum(rows), first_pass["population"].rows)
    with session.stage("reduce"):
        if "reduce" in resumed:
            model.pca = checkpoint.load_pca(checkpoints)
        else:
            model.pca = _fit_pca(config, model, blocks["population"], rows)
            checkpoint.save_pca(checkpoints, model.pca)
    coordinates = Coordinates(
        block_paths(scratch_folder(work, "reduced", storage), len(rows), "npy"), rows, storage
    )
    with session.stage("project"):
        if "project" in resumed:
            sample = checkpoint.load_sample(checkpoints)
        else:
            taken = cluster.sample_positions(rows, cluster.SAMPLE_SIZE, config.seed)
            sample = write_coordinates(session.client, model, blocks["population"], coordinates, taken)
            checkpoint.save_sample(checkpoints, sample)
    return Prepared(tables, blocks, first_pass, kept, model, coordinates, sample, resumed)


def _fit_pca(config: JobConfig, model: SegmentationModel, blocks: Blocks, rows: list[int]):
    """The PCA fitted on the population's standardized features: from each block's moments, summed from
    its codes, for a solver that takes them (Gram); else from the features, block by block."""
    shared = dask.delayed(model.compile(), traverse=False)
    pca = decompose.make_pca(config.reduce.solver, config.reduce.n_components)
    if hasattr(pca, "fit_moments"):
        moments = tree_reduce(blocks.map(call_method, shared, "moments_block"), decompose.merge_moments)
        with log_duration(logger, f"{type(pca).__name__}: moments of {sum(rows)} rows"):
            (moments,) = dask.compute(moments)
        return pca.fit_moments(*moments)
    features = block_array(
        blocks.map(call_method, shared, "features_block"), rows, len(model.scaler.feature_names_)
    )
    return pca.fit(features)


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
        session.prepare_workers()
        checkpoints = Checkpoints(work, "elbow", checked.profile.storage_options)
        prepared = _prepare(config, checked.schema, session, checkpoints)
        with session.stage("cluster") as stage:
            return cluster.job_elbow(
                config.clustering, prepared.for_clustering(), prepared.sample, config.seed, stage.detail
            )


# ------------------------------------------------------------------------ from clustering on


def _run_stages(
    config: JobConfig,
    checked: Checked,
    prepared: Prepared,
    session,
    folder: RunFolder,
    checkpoints: Checkpoints,
) -> Results:
    """Cluster, assign, compare, (response), describe, and write the run folder's files but run.json."""
    schema, model = checked.schema, prepared.model
    with session.stage("cluster") as stage:
        if prepared.resumed == ["read", "scale", "reduce", "project"] and checkpoints.done("cluster"):
            clustered = checkpoint.load_cluster(checkpoints)
            prepared.resumed.append("cluster")
        else:
            clustered = cluster.fit_clustering(
                config.clustering, prepared.for_clustering(), prepared.sample, config.seed, stage.detail
            )
            checkpoint.save_cluster(checkpoints, clustered)
        model.segmenter = clustered.segmenter
        rows = stability.subsample_rows(prepared.sample, stability.SAMPLE_SIZE, config.seed)
        prepared.sample = None  # 125 MB at the real size, not needed any more
    # The bootstrap refits (in memory, here) run while the workers write the assignments: 0.9 s of the
    # client's at the real size, where the assignment left a fifth of the cores idle.
    with ThreadPoolExecutor(1, thread_name_prefix="segmentation-stability") as beside:
        refits = beside.submit(
            stability.of_segmenter,
            rows,
            model.segmenter,
            config.clustering.algorithm,
            config.seed,
            **cluster.algorithm_params(config.clustering),
        )
        with session.stage("assign"):
            url, storage = folder.url_for(ASSIGNMENTS), session.profile.storage_options
            parts = {
                name: table_assignments(
                    model, name, prepared.blocks[name], url, storage,
                    prepared.coordinates if name == "population" else None,
                )
                for name in prepared.tables
            }  # fmt: skip
            computed = write_assignments(parts, url, storage)
            stable = refits.result()
    with session.stage("compare"):
        segments = segment_names(int(model.segmenter.n_clusters))
        counts = {name: computed[name].reindex(segments, fill_value=0) for name in prepared.tables}
        proportions = compare_proportions(counts["population"], counts["customers"], segments)
        folder.write(PROPORTIONS, proportions)
    response = response_stage(
        session, model, prepared.tables, prepared.blocks, proportions, folder, config.seed
    )
    with session.stage("describe"):
        scaler = model.scaler
        centres_scaled = model.pca.inverse_transform(model.segmenter.centres_)
        profiles = segment_profiles(
            centres_scaled, scaler.feature_names_, scaler.mean_, scaler.scale_, schema
        )
        folder.write(PROFILES, profiles)
    with session.stage("write"):
        model.save(folder.path(MODEL), checked.attributes_text)
        if clustered.elbow is not None:
            folder.write(ELBOW, clustered.elbow)
        folder.write(STABILITY, stable)
        folder.write(PCA, decompose.explained_variance_table(model.pca))
        folder.write(PCA_LOADINGS, decompose.top_loadings(model.pca, scaler.feature_names_, schema.label))
        quality_tables = ("population", "customers")
        missing = {name: prepared.first_pass[name].missing for name in quality_tables}
        folder.write(QUALITY_COLUMNS, column_quality(missing, schema, model.cleaner))
        folder.write(
            QUALITY_ROWS, row_quality({name: prepared.kept[name].row_missing for name in quality_tables})
        )
    return Results(clustered, stable, counts, response)


# ------------------------------------------------------------------------------------------ run.json


def _run_record(
    config: JobConfig,
    schema: Schema,
    prepared: Prepared,
    results: Results,
    session,
    checkpoints: Checkpoints,
    started: datetime,
) -> dict:
    """run.json (docs/run-folder.md), assembled here and nowhere else."""
    model, first_pass = prepared.model, prepared.first_pass
    cleaner = model.cleaner
    return {
        "segmentation_version": __version__,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config.to_dict(),
        "inputs": {**input_paths(config), "attributes": str(config.attributes or default_attributes_path())},
        "versions": versions(),
        "cluster": session.describe(),
        "timings": dict(session.timings),
        "stage_costs": session.stage_costs,
        "rows": row_accounting({name: found.rows for name, found in first_pass.items()}, results.counts),
        "columns": {
            "input": len(schema.columns("population")),
            "dropped": cleaner.dropped_columns_,
            "kept": len(cleaner.kept_columns_),
            "features": len(model.scaler.feature_names_),
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
        "clustering": cluster.clustering_record(results.clustered, k_given=bool(config.clustering.k)),
        "stability": stability.summary(results.stability),
        "resumed": prepared.resumed,
        "checkpoint_key": checkpoints.key,
        "invalid_values": {name: found.invalid for name, found in first_pass.items()},
        "ignored_columns": {name: table.ignored_columns for name, table in prepared.tables.items()},
        "duplicate_ids": {name: found.duplicate_ids for name, found in first_pass.items()},
        "response": results.response,
        "peak_worker_memory": session.peak_worker_memory(),
        **session.recovery(),
    }
