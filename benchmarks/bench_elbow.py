"""The elbow over k = 2..15 against one fit of the chosen k, before and after it scored every k in one pass.

    python benchmarks/bench_elbow.py [--rows 90000 --customers-rows 20000] [--data DIR] [--seed 42]
                                     [--algorithms kmeans minibatch bisecting gmm] [--covariance-type diag]
                                     [--no-before] [--json OUT.json]

Generates Arvato-shaped data with planted segments (the demo's size by default; reused if ``--data`` already
holds it), runs the job's stages up to the PCA coordinates on the default local profile, then for each
algorithm, in one session:

- one fit: the job's final fit (``make_segmenter(...).fit(X, sample=sample)``, the 100,000-row seeding
  sample) at the k the elbow recommends, once to warm up, then the quicker of two;
- before: the elbow as it was, one segmenter per k seeded from 20,000 sampled rows (10 seedings) and refined
  over all rows, a silhouette per k, then the stability per k (bootstrap refits with the libraries' default
  threads), reproduced here;
- after: ``cluster.job_elbow``, the job's elbow (every k fitted on the sample, scored in one pass; stability
  refits in threads, each on one core), timed in its two parts, the quicker of two runs.

Prints wall seconds, the ratios to one fit (also of CPU seconds of the whole process tree, which a shared
machine's load disturbs less), the recommended k each way (by the curve, and after stability) and how
far the after-curve lies from the before-curve (SSE, and log-likelihood for gmm). ``gmm`` runs with
``--covariance-type`` (diag by default; the job's default is full). The machine's load average is printed at
the start and the end: on a shared machine, only ratios from one quiet run mean much. Not a test.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import sklearn
from sklearn.metrics import silhouette_score

from segmentation import cluster, stability
from segmentation.checkpoint import Checkpoints
from segmentation.config import ClusterConfig, load_job
from segmentation.job import _prepare
from segmentation.preflight import preflight
from segmentation.runtime import open_cluster
from segmentation.segmenters import make_segmenter, segmenter_class
from segmentation.segmenters.base import subsample

ROOT = Path(__file__).resolve().parents[1]
# What the elbow passed to every k's fit before (cluster.job_elbow then).
BEFORE_SEED_SAMPLE, BEFORE_N_INIT = 20_000, 10


def elbow_before(X, sample: np.ndarray, clustering: ClusterConfig, seed: int) -> pd.DataFrame:
    """The elbow table as the job computed it before: a segmenter per k fitted over all rows of ``X``."""
    params = cluster.algorithm_params(clustering)
    seeding = subsample(sample, BEFORE_SEED_SAMPLE, seed)
    scored = subsample(seeding, clustering.silhouette_sample, seed)
    rows = []
    for k in range(clustering.k_min, clustering.k_max + 1):
        segmenter = make_segmenter(
            clustering.algorithm, n_clusters=k, random_state=seed, init_search_size=BEFORE_SEED_SAMPLE,
            n_init=BEFORE_N_INIT, **params,
        )  # fmt: skip
        segmenter.fit(X, sample=seeding)
        with sklearn.config_context(working_memory=64):
            silhouette = float(silhouette_score(scored, segmenter.predict(scored)))
        rows.append({"k": k, "sse": segmenter.sse_, "silhouette": silhouette, **segmenter.elbow_figures()})
    cls = segmenter_class(clustering.algorithm)
    table = pd.DataFrame(rows, columns=["k", "sse", "silhouette", *cls.elbow_columns])
    table["recommended"] = table["k"] == cls.recommend(table)
    return table


def stability_before(
    table: pd.DataFrame, sample: np.ndarray, clustering: ClusterConfig, seed: int
) -> pd.DataFrame:
    """``stability.with_stability`` as it was: every refit in turn, with the libraries' default threads."""
    rows = stability.subsample_rows(sample, stability.SAMPLE_SIZE // 2, seed)
    values = {}
    for k in table["k"]:
        fit_predict = stability.fit_predict_for(
            clustering.algorithm, int(k), seed, **cluster.algorithm_params(clustering)
        )
        labels = fit_predict(rows)
        rng = np.random.default_rng(seed)
        jaccards = []
        for _ in range(stability.BOOTSTRAPS // 2):
            drawn = rng.integers(0, len(rows), len(rows))
            refit = fit_predict(rows[drawn])
            distinct, first = np.unique(drawn, return_index=True)
            jaccards.append(stability.best_match_jaccard(labels[distinct], refit[first], np.unique(labels)))
        values[int(k)] = float(np.nanmean(jaccards))
    table = table.assign(stability=table["k"].map(values).to_numpy())
    table["recommended_by_sse"] = table["recommended"].astype(bool)
    table["recommended"] = table["k"] == stability.recommend_stable_k(table)
    return table


def recommended(table: pd.DataFrame, column: str = "recommended") -> int:
    return int(table.loc[table[column].astype(bool), "k"].iloc[0])


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and every process it started (scheduler, workers)."""
    tree = [psutil.Process(), *psutil.Process().children(recursive=True)]
    total = 0.0
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def timed(function, cpu: dict | None = None, key: str = ""):
    """``function()`` and its wall seconds; its CPU seconds of the process tree go to ``cpu[key]``."""
    started, started_cpu = time.perf_counter(), cpu_seconds()
    result = function()
    if cpu is not None:
        cpu[key] = cpu_seconds() - started_cpu
    return result, time.perf_counter() - started


def measure(X, sample, clustering: ClusterConfig, seed: int, before: bool) -> dict:
    """One algorithm: the elbow after (and before), and one fit of the recommended k."""
    cpu, runs = {}, []
    for run in range(2):  # the quicker of two (the first may be cold)
        marks: dict[str, float] = {}
        after, after_seconds = timed(
            lambda marks=marks: cluster.job_elbow(
                clustering, X, sample, seed, lambda text: marks.setdefault(text, time.perf_counter())
            ),
            cpu,
            f"after {run}",
        )
        runs.append((after_seconds, time.perf_counter() - marks["elbow stability"], cpu[f"after {run}"]))
    after_seconds, after_stability, cpu["after"] = min(runs)
    k = recommended(after)
    params = cluster.algorithm_params(clustering)
    fits = []
    for run in range(
        3
    ):  # the first warms up; the quicker of the others counts (a shared machine's load varies)
        _, seconds = timed(
            lambda: make_segmenter(clustering.algorithm, n_clusters=k, random_state=seed, **params).fit(
                X, sample=sample
            ),
            cpu,
            f"fit {run}",
        )
        fits.append(seconds)
    quicker = 1 + int(np.argmin(fits[1:]))
    result = {
        "algorithm": clustering.algorithm,
        "k_fitted": k,
        "fit_seconds_cold": fits[0],
        "fit_seconds": fits[quicker],
        "fit_cpu_seconds": cpu[f"fit {quicker}"],
        "after": {
            "seconds": after_seconds,
            "cpu_seconds": cpu["after"],
            "elbow_seconds": after_seconds - after_stability,
            "stability_seconds": after_stability,
            "k_by_curve": recommended(after, "recommended_by_sse"),
            "k": k,
            "table": after.to_dict("list"),
        },
    }
    if before:
        table, elbow_seconds = timed(lambda: elbow_before(X, sample, clustering, seed), cpu, "elbow")
        table, stability_seconds = timed(
            lambda: stability_before(table, sample, clustering, seed), cpu, "stab"
        )
        result["before"] = {
            "seconds": elbow_seconds + stability_seconds,
            "cpu_seconds": cpu["elbow"] + cpu["stab"],
            "elbow_seconds": elbow_seconds,
            "stability_seconds": stability_seconds,
            "k_by_curve": recommended(table, "recommended_by_sse"),
            "k": recommended(table),
            "table": table.to_dict("list"),
        }
        difference = after["sse"].to_numpy() / table["sse"].to_numpy() - 1
        result["sse_after_vs_before"] = [float(difference.min()), float(difference.max())]
        if "log_likelihood" in after:
            gap = (after["log_likelihood"] - table["log_likelihood"]).to_numpy() / np.abs(
                table["log_likelihood"]
            )
            result["log_likelihood_after_vs_before"] = [float(gap.min()), float(gap.max())]
    return result


def report(result: dict) -> None:
    fit, fit_cpu = result["fit_seconds"], result["fit_cpu_seconds"]
    print(
        f"\n{result['algorithm']}: one fit at k={result['k_fitted']}: {fit:.2f} s, {fit_cpu:.1f} CPU s "
        f"(the first, cold: {result['fit_seconds_cold']:.2f} s)"
    )
    print(
        f"  {'':7} {'elbow s':>8} {'stab. s':>8} {'total s':>8} {'elbow/fit':>9} {'total/fit':>9} "
        f"{'CPU/fit':>7} {'k curve':>7} {'k':>3}"
    )
    for when in ("before", "after"):
        if when in result:
            part = result[when]
            print(
                f"  {when:7} {part['elbow_seconds']:8.2f} {part['stability_seconds']:8.2f} {part['seconds']:8.2f} "
                f"{part['elbow_seconds'] / fit:9.2f} {part['seconds'] / fit:9.2f} "
                f"{part['cpu_seconds'] / fit_cpu:7.2f} {part['k_by_curve']:7d} {part['k']:3d}"
            )
    if "before" in result:
        low, high = result["sse_after_vs_before"]
        speedup = result["before"]["seconds"] / result["after"]["seconds"]
        print(
            f"  SSE after / before - 1 over k: {100 * low:+.3f}% .. {100 * high:+.3f}%; before / after: {speedup:.1f}x"
        )
        if "log_likelihood_after_vs_before" in result:
            low, high = result["log_likelihood_after_vs_before"]
            print(
                f"  log-likelihood (after - before) / |before| over k: {100 * low:+.3f}% .. {100 * high:+.3f}%"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=90_000)
    parser.add_argument("--customers-rows", type=int, default=20_000)
    parser.add_argument("--data", type=Path, help="folder of generated data (made if missing)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--algorithms", nargs="+", default=["kmeans", "minibatch", "bisecting", "gmm"])
    parser.add_argument("--covariance-type", default="diag", choices=["diag", "full"])
    parser.add_argument("--no-before", action="store_true", help="skip the elbow as it was (slow)")
    parser.add_argument("--json", type=Path, help="save the figures")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-elbow-") as scratch:
        data = args.data or Path(scratch) / "data"
        if not (data / "population.csv").exists():
            from segmentation.synth import generate

            print(f"generating {args.rows:,} + {args.customers_rows:,} rows into {data}", flush=True)
            generate(
                data, rows=args.rows, customers_rows=args.customers_rows, mailout_rows=1000, seed=args.seed
            )
        config = load_job(
            ROOT / "jobs" / "demo.yml",
            {
                "inputs.population": str(data / "population.csv"),
                "inputs.customers": str(data / "customers.csv"),
                "inputs.mailout_train": str(data / "mailout_train.csv"),
                "inputs.mailout_test": str(data / "mailout_test.csv"),
                "seed": args.seed,
            },
        )
        checked = preflight(config)
        results = {"load_average_start": os.getloadavg(), "rows": args.rows, "algorithms": []}
        with open_cluster(checked.profile, show_progress=False) as session:
            session.prepare_workers()
            prepared = _prepare(config, checked.schema, session, Checkpoints(scratch, "bench", {}))
            X, sample = prepared.for_clustering(), prepared.sample
            print(f"coordinates: {X.shape[0]:,} rows x {X.shape[1]}; seeding sample {len(sample):,} rows")
            print(f"load average at the start: {' '.join(f'{v:.1f}' for v in results['load_average_start'])}")
            for algorithm in args.algorithms:
                clustering = copy.deepcopy(config.clustering)
                clustering.algorithm, clustering.covariance_type = algorithm, args.covariance_type
                result = measure(X, sample, clustering, args.seed, not args.no_before)
                results["algorithms"].append(result)
                report(result)
        results["load_average_end"] = os.getloadavg()
        print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in results['load_average_end'])}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
