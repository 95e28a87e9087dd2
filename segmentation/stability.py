"""Would a segment come back if the analysis were repeated? Hennig's clusterboot on an in-memory sample.

For each of ``B`` bootstrap draws of the sample, the clusterer is refitted on the drawn rows; each original
segment, restricted to the distinct drawn rows, is matched with the refitted cluster of highest Jaccard
similarity (|A n B| / |A u B|). A segment's stability is the mean of those best-match Jaccards over the
draws (Hennig 2007, "Cluster-wise assessment of cluster stability"): >= 0.85 stable, 0.6-0.85 fuzzy,
< 0.6 unstable (``wording.stability_label``).

The refit is any callable ``fit_predict(rows) -> labels``, so the measure works with every clusterer; the
default is scikit-learn's ``KMeans`` with the job's k and seed. The job passes k-means' seeding sample (the
PCA coordinates of uniformly drawn population rows, already in memory), subsampled to ``SAMPLE_SIZE`` rows
so that B refits cost seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from ._estimators import map_in_threads
from .wording import stability_label

BOOTSTRAPS = 20
SAMPLE_SIZE = 3_000
COLUMNS = ["segment", "jaccard_mean", "jaccard_low", "jaccard_high", "stability"]

FitPredict = Callable[[np.ndarray], np.ndarray]


def kmeans_fit_predict(
    k: int, random_state: int | None = None, n_init: int = 2, max_iter: int = 100
) -> FitPredict:
    """The default refit: scikit-learn ``KMeans`` (k-means++, ``n_init`` starts) on the given rows. Two
    starts of at most 100 iterations: 20 refits on 3,000 rows of 300 components then take seconds, where
    4 starts to convergence took 70 s on a loaded 2-core machine."""

    def fit_predict(rows: np.ndarray) -> np.ndarray:
        return KMeans(k, n_init=n_init, max_iter=max_iter, random_state=random_state).fit_predict(rows)

    return fit_predict


def fit_predict_for(algorithm: str, k: int, random_state: int | None = None, **params) -> FitPredict:
    """The in-memory refit for a clustering algorithm of the registry: scikit-learn's counterpart
    (``GaussianMixture`` for ``gmm``, ``BisectingKMeans`` for ``bisecting``), k-means for the others."""
    if algorithm == "gmm":
        from sklearn.mixture import GaussianMixture

        covariance = params.get("covariance_type", "diag")

        def fit_predict(rows: np.ndarray) -> np.ndarray:
            model = GaussianMixture(k, covariance_type=covariance, max_iter=100, random_state=random_state)
            return model.fit_predict(rows)

        return fit_predict
    if algorithm == "bisecting":
        from sklearn.cluster import BisectingKMeans

        def fit_predict(rows: np.ndarray) -> np.ndarray:
            return BisectingKMeans(k, n_init=2, max_iter=100, random_state=random_state).fit_predict(rows)

        return fit_predict
    return kmeans_fit_predict(k, random_state)


def best_match_jaccard(labels: np.ndarray, refit: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """For each of ``segments`` (labels of ``labels``), the highest Jaccard similarity with any cluster of
    ``refit`` over the same rows; NaN for a segment with no row here."""
    labels, refit = np.asarray(labels), np.asarray(refit)
    clusters = np.unique(refit)
    sizes = np.array([(refit == c).sum() for c in clusters])
    best = np.full(len(segments), np.nan)
    for i, segment in enumerate(segments):
        members = labels == segment
        n = int(members.sum())
        if n == 0:
            continue
        overlap = np.array([(refit[members] == c).sum() for c in clusters])
        best[i] = float(np.max(overlap / (n + sizes - overlap)))
    return best


def bootstrap_jaccard(
    sample: np.ndarray,
    labels: np.ndarray | None,
    fit_predict: FitPredict,
    bootstraps: int = BOOTSTRAPS,
    random_state: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(segments, Jaccards of shape (bootstraps, segments)): each segment's best-match Jaccard per draw.

    ``labels`` is the clustering under test on ``sample``'s rows (None: ``fit_predict(sample)``);
    duplicates a draw repeats count once in the Jaccard (as in clusterboot), while the refit sees the draw
    with its duplicates. The fits run in threads (``map_in_threads``), each on one core."""
    sample = np.asarray(sample)
    if labels is not None and len(sample) != len(labels):
        raise ValueError(f"sample has {len(sample)} rows but labels has {len(labels)}")
    if bootstraps < 1:
        raise ValueError(f"bootstraps must be at least 1, got {bootstraps}")
    rng = np.random.default_rng(random_state)
    draws = [rng.integers(0, len(sample), len(sample)) for _ in range(bootstraps)]
    fits = map_in_threads(fit_predict, ([sample] if labels is None else []) + [sample[d] for d in draws])
    labels = np.asarray(next(fits) if labels is None else labels)
    segments = np.unique(labels)
    jaccards = np.empty((bootstraps, len(segments)))
    for b, (drawn, refit) in enumerate(zip(draws, fits, strict=True)):
        distinct, first = np.unique(drawn, return_index=True)
        jaccards[b] = best_match_jaccard(labels[distinct], np.asarray(refit)[first], segments)
    return segments, jaccards


def segment_stability(
    sample: np.ndarray,
    labels: np.ndarray,
    fit_predict: FitPredict,
    bootstraps: int = BOOTSTRAPS,
    random_state: int | None = None,
) -> pd.DataFrame:
    """The ``stability.csv`` table: per segment the mean best-match Jaccard over ``bootstraps`` refits,
    its 2.5% and 97.5% quantiles over the refits, and its label (stable / fuzzy / unstable)."""
    segments, jaccards = bootstrap_jaccard(sample, labels, fit_predict, bootstraps, random_state)
    mean = np.nanmean(jaccards, axis=0)
    table = pd.DataFrame(
        {
            "segment": [str(s) for s in segments],
            "jaccard_mean": mean,
            "jaccard_low": np.nanquantile(jaccards, 0.025, axis=0),
            "jaccard_high": np.nanquantile(jaccards, 0.975, axis=0),
            "stability": [stability_label(m) for m in mean],
        },
        columns=COLUMNS,
    )
    table.attrs.update(bootstraps=bootstraps, sample_rows=len(sample))
    return table


def stability_by_k(
    sample: np.ndarray,
    ks: list[int],
    bootstraps: int = 10,
    random_state: int | None = None,
    algorithm: str = "kmeans",
    **params,
) -> pd.Series:
    """Mean segment stability of ``algorithm`` (refitted as ``fit_predict_for``) on ``sample`` for each k
    (the elbow table's ``stability``): the clustering fitted on the whole sample, tested against
    ``bootstraps`` refits."""
    values = {}
    for k in ks:
        fit_predict = fit_predict_for(algorithm, k, random_state, **params)
        _, jaccards = bootstrap_jaccard(sample, None, fit_predict, bootstraps, random_state)
        values[k] = float(np.nanmean(jaccards))
    return pd.Series(values, name="stability", dtype="float64").rename_axis("k")


def recommend_stable_k(elbow: pd.DataFrame, minimum: float = 0.6) -> int:
    """The elbow's recommended k, unless its stability is below ``minimum``: then the k nearest to it
    (the smaller on a tie) whose stability reaches ``minimum``; the elbow's pick when none does.

    ``elbow`` has columns ``k``, ``recommended`` (one True) and ``stability``."""
    chosen = int(elbow.loc[elbow["recommended"].astype(bool), "k"].iloc[0])
    stability = elbow.set_index("k")["stability"]
    if stability.get(chosen, np.nan) >= minimum:
        return chosen
    stable = [int(k) for k, s in stability.items() if s >= minimum]
    if not stable:
        return chosen
    return min(stable, key=lambda k: (abs(k - chosen), k))


def with_stability(
    elbow: pd.DataFrame,
    sample: np.ndarray,
    bootstraps: int,
    random_state: int | None,
    algorithm: str = "kmeans",
    **params,
):
    """The elbow table with its ``stability`` column (``stability_by_k``) and ``recommended`` moved by
    ``recommend_stable_k``; the elbow's own pick stays in ``recommended_by_sse``."""
    rows = subsample_rows(sample, SAMPLE_SIZE // 2, random_state)
    ks = [int(k) for k in elbow["k"]]
    stability = stability_by_k(rows, ks, bootstraps, random_state, algorithm, **params)
    elbow = elbow.assign(stability=elbow["k"].map(stability).to_numpy())
    elbow["recommended_by_sse"] = elbow["recommended"].astype(bool)
    elbow["recommended"] = elbow["k"] == recommend_stable_k(elbow)
    return elbow


def subsample_rows(rows: np.ndarray, size: int, random_state: int | None) -> np.ndarray:
    """``size`` of ``rows`` drawn uniformly without replacement (all of them when there are fewer)."""
    if len(rows) <= size:
        return rows
    return rows[np.sort(np.random.default_rng(random_state).choice(len(rows), size, replace=False))]


def summary(table: pd.DataFrame) -> dict:
    """The run.json ``stability`` block: the method and each segment's mean Jaccard and label."""
    return {
        "method": "bootstrap best-match Jaccard (Hennig's clusterboot)",
        "bootstraps": table.attrs.get("bootstraps"),
        "sample_rows": table.attrs.get("sample_rows"),
        "segments": {
            str(row.segment): {"jaccard_mean": round(float(row.jaccard_mean), 4), "stability": row.stability}
            for row in table.itertuples()
        },
    }


def of_segmenter(
    sample: np.ndarray, segmenter, algorithm: str, random_state: int | None, **params
) -> pd.DataFrame:
    """stability.csv of a fitted segmenter: each segment's bootstrap stability on (a subsample of) the seeding
    ``sample``, refitted in memory by scikit-learn's counterpart of ``algorithm`` at its k."""
    rows = subsample_rows(sample, SAMPLE_SIZE, random_state)
    labels = np.asarray(segmenter.predict(rows))
    fit_predict = fit_predict_for(algorithm, int(segmenter.n_clusters), random_state, **params)
    return segment_stability(rows, labels, fit_predict, BOOTSTRAPS, random_state)
