"""Clustering helpers shared by the job: the elbow table over a range of k, and the names this module
had before the segmenters moved to :mod:`segmentation.segmenters` (one module per algorithm)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.metrics import silhouette_score

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
    "subsample",
    "sum_of_squared_distances",
]

logger = logging.getLogger(__name__)

SAMPLE_SIZE = KMeansSegmenter().init_sample_size


def _sample_silhouette(sample: np.ndarray | None, labels: np.ndarray | None) -> float:
    if sample is None:
        return float("nan")
    if not 2 <= len(np.unique(labels)) <= len(sample) - 1:
        return float("nan")
    # Distances in 64 MB row chunks: scikit-learn's default (1 GB) took +494 MB for 10,000 rows, this +52 MB
    # and less time (1.04 s vs 1.38 s).
    with sklearn.config_context(working_memory=64):
        return float(silhouette_score(sample, labels))


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

    Fits one segmenter of the registered ``algorithm`` per k (``params`` are passed on), all seeded from one
    uniform row sample: ``sample`` when given, else ``init_sample_size`` rows drawn once (the rows each fit
    would draw for itself). The silhouette is computed on ``silhouette_sample`` rows of that sample (None
    skips it: NaN). ``on_k(i, k)`` is called before the i-th fit (progress). Returns columns
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
    scored = None if silhouette_sample is None else subsample(sample, silhouette_sample, random_state)
    rows = []
    for i, k in enumerate(ks):
        if on_k is not None:
            on_k(i, k)
        with log_duration(logger, f"elbow: k={k}"):
            segmenter = make_segmenter(algorithm, n_clusters=k, random_state=random_state, **params)
            segmenter.fit(X, sample=sample)
            labels = None if scored is None else segmenter.predict(scored)
            rows.append(
                {
                    "k": k,
                    "sse": segmenter.sse_,
                    "silhouette": _sample_silhouette(scored, labels),
                    **segmenter.elbow_figures(),
                }
            )
    frame = pd.DataFrame(rows, columns=["k", "sse", "silhouette", *cls.elbow_columns])
    frame["recommended"] = frame["k"] == cls.recommend(frame)
    return frame


# ---------------------------------------------------------------------------------- the job's clustering

ELBOW_SEED_SAMPLE = 20_000


@dataclass
class Clustered:
    """The cluster stage's result: the fitted segmenter, and the elbow table when the elbow ran."""

    segmenter: Any
    elbow: pd.DataFrame | None

    @property
    def recommended(self) -> int | None:
        """The elbow's recommended k (None without an elbow)."""
        if self.elbow is None:
            return None
        return int(self.elbow.loc[self.elbow["recommended"].astype(bool), "k"].iloc[0])


def algorithm_params(clustering: ClusterConfig) -> dict:
    """The job's options of its clustering algorithm, beyond k and the seed."""
    return {"covariance_type": clustering.covariance_type} if clustering.algorithm == "gmm" else {}


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
    """The job's elbow table over ``k_min..k_max`` of its algorithm, with stability per k. Each k is seeded
    more cheaply than the final fit (10 seedings on 20,000 of the sampled rows): the elbow needs the
    curve's shape, and 14 full seedings would dominate the run."""
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
        init_search_size=ELBOW_SEED_SAMPLE,
        n_init=10,
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
    k = clustering.k or Clustered(None, table).recommended
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
        "objective": segmenter.objective,
        "score": segmenter.score_,
        "sse": float(segmenter.sse_),
        **segmenter.elbow_figures(),
    }
    if hasattr(segmenter, "tree_"):
        record["tree"] = segmenter.tree_
    return record
