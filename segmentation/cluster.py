"""Clustering helpers shared by the job: the elbow table over a range of k, and the names this module
had before the segmenters moved to :mod:`segmentation.segmenters` (one module per algorithm)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._estimators import as_row_blocked, log_duration, with_known_row_chunks
from .segmenters import algorithm_name, load, make_segmenter, segmenter_class
from .segmenters.base import (
    check_int,
    leading_axes,
    nearest_centre,
    predict_segments,
    recommend_k,
    row_sample,
    sample_positions,
    seeds,
    statistics_over,
    subsample,
    sum_of_squared_distances,
)
from .segmenters.kmeans import ALGORITHMS, INITS, KMeansSegmenter

if TYPE_CHECKING:
    from .config import ClusterConfig

__all__ = [
    "ALGORITHMS",
    "INITS",
    "KMeansSegmenter",
    "elbow",
    "leading_axes",
    "load",
    "nearest_centre",
    "predict_segments",
    "recommend_k",
    "sample_positions",
    "silhouettes",
    "subsample",
    "sum_of_squared_distances",
]

logger = logging.getLogger(__name__)

SAMPLE_SIZE = KMeansSegmenter().init_sample_size
# Rows per block of the silhouettes' distance matrix (32 MB of float64 distances).
SILHOUETTE_BLOCK = 2048


def silhouettes(rows: np.ndarray, labelings: list[np.ndarray]) -> list[float]:
    """The mean silhouette (scikit-learn's ``silhouette_score``, Euclidean) of each labelling of ``rows``,
    all from one matrix of distances, computed in float64 blocks of ``SILHOUETTE_BLOCK`` rows, each block
    above the diagonal standing for its mirror too: every block is multiplied by the labellings' cluster
    indicators, giving every row's distance sum to every cluster of every labelling. NaN for a labelling of
    fewer than 2 or more than ``len(rows) - 1`` clusters."""
    clusterings = [np.unique(labels, return_inverse=True, return_counts=True)[1:] for labels in labelings]
    indicators = np.concatenate([np.eye(len(sizes))[codes] for codes, sizes in clusterings], axis=1)
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.einsum("ij,ij->i", rows, rows)
    sums = np.zeros(indicators.shape)
    for a in range(0, len(rows), SILHOUETTE_BLOCK):
        for b in range(a, len(rows), SILHOUETTE_BLOCK):
            left, right = slice(a, a + SILHOUETTE_BLOCK), slice(b, b + SILHOUETTE_BLOCK)
            distances = norms[left, None] + norms[None, right] - 2.0 * rows[left] @ rows[right].T
            np.sqrt(np.maximum(distances, 0.0, out=distances), out=distances)
            if a == b:
                np.fill_diagonal(distances, 0.0)  # as scikit-learn: a row's distance to itself is 0
            sums[left] += distances @ indicators[right]
            if a != b:
                sums[right] += distances.T @ indicators[left]
    scores, start = [], 0
    for codes, sizes in clusterings:
        if 2 <= len(sizes) <= len(rows) - 1:
            scores.append(_mean_silhouette(sums[:, start : start + len(sizes)], codes, sizes))
        else:
            scores.append(float("nan"))
        start += len(sizes)
    return scores


def _mean_silhouette(sums: np.ndarray, code: np.ndarray, size: np.ndarray) -> float:
    """scikit-learn's ``silhouette_samples`` averaged, from each row's distance sum to each cluster
    (``sums``), its cluster (``code``) and the clusters' sizes: 0 for a row alone in its cluster."""
    rows = np.arange(len(code))
    with np.errstate(divide="ignore", invalid="ignore"):
        intra = sums[rows, code] / (size[code] - 1)
        means = sums / size
        means[rows, code] = np.inf
        inter = means.min(axis=1)
        silhouette = (inter - intra) / np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(silhouette)))


def elbow(
    X: Any,
    ks: Iterable[int] = range(2, 16),
    algorithm: str = "kmeans",
    random_state: int | None = None,
    silhouette_sample: int | None = 5_000,
    sample: np.ndarray | None = None,
    on_k: Callable[[int, int], None] | None = None,
    **params: Any,
) -> pd.DataFrame:
    """SSE and silhouette for each k (plus the algorithm's own figures, e.g. log-likelihood and BIC for
    ``"gmm"``), and the recommended k (the algorithm's ``recommend``: the SSE curve's elbow, or the
    lowest BIC for ``"gmm"``).

    Each k is fitted on the in-memory ``sample`` alone (the segmenter's ``fit_sweep``: in threads, or one
    fit cut at every k for ``"bisecting"``), then every k is scored on all rows of ``X`` in one pass
    (``statistics_over``): the SSE (and the log-likelihood) of every row under the fits of the sample. A
    fit per k refined over all rows cost 25 times one fit on the demo data (k-means), this 1.5 times; its
    SSEs were 0.01-0.16% higher, with the same recommended k, and the curve's shape is what the elbow needs. ``sample``: rows of ``X`` drawn uniformly;
    when None, ``init_sample_size`` rows are drawn once (one pass). ``params`` are passed on to
    ``make_segmenter``. The silhouettes are computed on ``silhouette_sample`` rows of the sample (None
    skips them: NaN). ``on_k(i, k)`` is called as the i-th k's fit is done (progress). Returns columns
    ``k, sse, silhouette``, the algorithm's ``elbow_columns``, then ``recommended``.
    """
    ks = [int(k) for k in ks]
    if len(ks) < 3 or not (np.diff(ks) > 0).all():
        raise ValueError(f"ks must be at least 3 strictly increasing values, got {ks}")
    if silhouette_sample is not None:
        check_int("silhouette_sample", silhouette_sample, 2)
    cls = segmenter_class(algorithm)
    X = with_known_row_chunks(as_row_blocked(X))
    if sample is None:
        size = params.get("init_sample_size", SAMPLE_SIZE)
        with log_duration(logger, f"elbow: sample of {size} rows"):
            sample = row_sample(X, max(size, silhouette_sample or 0), seeds(random_state, 1)[0])
    prototype = make_segmenter(algorithm, random_state=random_state, **params)
    fitted = []
    with log_duration(logger, f"elbow: k = {ks[0]}..{ks[-1]} fitted on {len(sample)} sampled rows"):
        for i, segmenter in enumerate(prototype.fit_sweep(ks, sample)):
            fitted.append(segmenter)
            if on_k is not None:
                on_k(i, ks[i])
    with log_duration(logger, f"elbow: every k scored on {X.shape[0]} rows (one pass)"):
        statistics = statistics_over(X, fitted)
    if silhouette_sample is None:
        scores = [float("nan")] * len(ks)
    else:
        scored = subsample(sample, silhouette_sample, random_state)
        with log_duration(logger, f"elbow: silhouettes on {len(scored)} rows"):
            scores = silhouettes(scored, [segmenter.predict(scored) for segmenter in fitted])
    rows = [
        {"k": k, "silhouette": score, **segmenter.figures_from_statistics(totals, int(X.shape[0]))}
        for k, segmenter, totals, score in zip(ks, fitted, statistics, scores, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["k", "sse", "silhouette", *cls.elbow_columns])
    frame["recommended"] = frame["k"] == cls.recommend(frame)
    return frame


# ---------------------------------------------------------------------------------- the job's clustering

# The elbow fits every k on this many of the sampled rows, each k searching 3 seedings on 10,000 of them
# (the final fit: 60 on 10,000 of 100,000). On the demo's coordinates (79,299 x 311), for 5 seeds each, this
# recommended k = 8 (the planted k) 5 times of 5 with the scores 0.08-0.17% above the full fits'; 20,000
# rows with 10 seedings on all of them did as well in 2.3x the time; 10,000 rows with 3 seedings, or 20,000
# with one, 4 and 3 times of 5. A segmenter that fits once for every k (``elbow_fits_once``: bisecting
# k-means) keeps its own seeding: with 3 seedings per split its curve's elbow moved from 7 to 6 at seed 42.
ELBOW_SEED_SAMPLE = 20_000
ELBOW_SEARCH = {"init_search_size": 10_000, "n_init": 3}


@dataclass
class Clustered:
    """The cluster stage's result: the fitted segmenter, and the elbow table when the elbow ran."""

    segmenter: Any
    elbow: pd.DataFrame | None

    @property
    def recommended(self) -> int | None:
        """The elbow's recommended k (None without an elbow)."""
        return None if self.elbow is None else recommended_k(self.elbow)


def recommended_k(table: pd.DataFrame) -> int:
    """The k of the elbow table's ``recommended`` row."""
    return int(table.loc[table["recommended"].astype(bool), "k"].iloc[0])


# The clustering section's keys that are the job's, not a segmenter's parameters.
_JOB_KEYS = frozenset({"algorithm", "k", "k_min", "k_max", "elbow", "silhouette_sample"})


def algorithm_params(clustering: ClusterConfig) -> dict:
    """The job's options of its clustering algorithm, beyond k and the seed: the clustering section's other
    keys that the algorithm's segmenter takes as parameters (e.g. ``covariance_type`` for ``gmm``)."""
    accepted = segmenter_class(clustering.algorithm)().get_params()
    return {
        item.name: getattr(clustering, item.name)
        for item in fields(clustering)
        if item.name not in _JOB_KEYS and item.name in accepted
    }


def check_k(clustering: ClusterConfig, population: str, kept: int, read: int) -> None:
    """k (or the elbow's largest k) must not exceed the population rows kept for clustering: a
    configuration error found before the PCA, not a traceback after it."""
    from .config import ConfigError

    asked = [("k", "--k", clustering.k)]
    if runs_elbow(clustering):
        asked.append(("clustering.k_max", "--k-max", clustering.k_max))
    for key, option, k in asked:
        if k is not None and k > kept:
            raise ConfigError(
                f"{population}: {key} = {k} ({option}) is more than the {kept:,} population rows kept for "
                f"clustering ({read:,} read, {read - kept:,} set aside as insufficient_data)"
            )


def runs_elbow(clustering: ClusterConfig) -> bool:
    """Whether the job runs the elbow: when asked, else when k is not given."""
    return clustering.elbow if clustering.elbow is not None else clustering.k is None


def job_elbow(
    clustering: ClusterConfig,
    X: Any,
    sample: np.ndarray,
    seed: int | None,
    detail: Callable[[str], None] = lambda text: None,
) -> pd.DataFrame:
    """The job's elbow table over ``k_min..k_max`` of its algorithm, with stability per k. Each k is fitted
    on ``ELBOW_SEED_SAMPLE`` of the sampled rows, and seeded more cheaply than the final fit
    (``ELBOW_SEARCH``, unless one fit serves every k): the elbow needs the curve's shape, and 14 full
    seedings would dominate the run."""
    from . import stability

    ks = list(range(clustering.k_min, clustering.k_max + 1))
    params = algorithm_params(clustering)
    table = elbow(
        X,
        ks,
        algorithm=clustering.algorithm,
        random_state=seed,
        silhouette_sample=clustering.silhouette_sample,
        sample=subsample(sample, ELBOW_SEED_SAMPLE, seed),
        **({} if segmenter_class(clustering.algorithm).elbow_fits_once else ELBOW_SEARCH),
        **params,
        on_k=lambda i, k: detail(f"elbow k={k} ({i + 1} of {len(ks)})"),
    )
    detail("elbow stability")
    return stability.with_stability(
        table, sample, stability.BOOTSTRAPS // 2, seed, clustering.algorithm, **params
    )


def fit_clustering(
    clustering: ClusterConfig,
    X: Any,
    sample: np.ndarray,
    seed: int | None,
    detail: Callable[[str], None] = lambda text: None,
) -> Clustered:
    """The elbow (when ``runs_elbow``) and the segmenter fitted at the given or recommended k."""
    table = job_elbow(clustering, X, sample, seed, detail) if runs_elbow(clustering) else None
    k = clustering.k or recommended_k(table)
    detail(f"k={k}")
    segmenter = make_segmenter(
        clustering.algorithm, n_clusters=k, random_state=seed, **algorithm_params(clustering)
    )
    return Clustered(segmenter.fit(X, sample=sample), table)


def clustering_record(clustered: Clustered, k_given: bool) -> dict:
    """run.json's ``clustering`` block: the algorithm, k and how it was chosen, and the fitted objective."""
    segmenter = clustered.segmenter
    record = {
        "algorithm": algorithm_name(segmenter),
        "k": int(segmenter.n_clusters),
        "k_recommended": clustered.recommended,
        "how_k_was_chosen": "given" if k_given else "elbow",
        "options": segmenter.get_params(),
        "objective": segmenter.objective,
        "score": segmenter.score_,
        "sse": float(segmenter.sse_),
        **segmenter.elbow_figures(),
    }
    if hasattr(segmenter, "tree_"):
        record["tree"] = segmenter.tree_
    return record
