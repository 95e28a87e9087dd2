"""Every use of dask-ml, behind one module.

dask-ml is in maintenance mode (last release 2025.1.0) and imports private scikit-learn names, so a new
scikit-learn or Dask release can break it. The job calls these four functions only; if a release breaks one,
it is mended here (``tests/test_daskml.py`` checks each against scikit-learn, and that no other module
imports dask-ml).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask_ml.cluster.k_means import k_init
from dask_ml.cluster.k_means import k_means as _k_means
from dask_ml.decomposition import IncrementalPCA
from dask_ml.wrappers import Incremental
from sklearn.base import BaseEstimator


def lloyd_kmeans(
    X: da.Array,
    n_clusters: int,
    init: str | np.ndarray,
    *,
    oversampling_factor: float,
    init_max_iter: int | None,
    max_iter: int,
    tol: float,
    random_state: int,
    n_init: int,
) -> tuple[np.ndarray, int]:
    """Lloyd's k-means over all blocks of ``X``: (centres, iterations).

    dask-ml's algorithm without its estimator's wrapper: ``KMeans.fit`` adds a pass to scan for NaN and one
    for its ``inertia_`` (not the sum of squared distances); callers compute the SSE themselves.
    """
    _, centers, _, n_iter = _k_means(
        X,
        n_clusters,
        init=init,
        oversampling_factor=oversampling_factor,
        init_max_iter=init_max_iter,
        max_iter=max_iter,
        tol=tol,
        random_state=random_state,
        n_init=n_init,
        return_n_iter=True,
    )
    return np.asarray(centers), int(n_iter)


def kmeans_parallel_init(
    X: da.Array,
    n_clusters: int,
    *,
    random_state: int,
    max_iter: int | None,
    oversampling_factor: float,
    n_init: int,
) -> np.ndarray:
    """k-means|| seeding (Bahmani et al.) over all blocks of ``X``: the initial centres."""
    return np.asarray(
        k_init(
            X,
            n_clusters,
            init="k-means||",
            random_state=random_state,
            max_iter=max_iter,
            oversampling_factor=oversampling_factor,
            n_init=n_init,
        )
    )


def incremental(estimator: BaseEstimator, *, shuffle_blocks: bool = True) -> Incremental:
    """Wrap an estimator with ``partial_fit`` so that ``partial_fit(X)`` feeds it one Dask block at a time."""
    return Incremental(estimator, shuffle_blocks=shuffle_blocks)


def incremental_pca(n_components: int, batch_size: int) -> IncrementalPCA:
    """dask-ml's IncrementalPCA with a full SVD per batch (its randomized default loses variance)."""
    return IncrementalPCA(n_components=n_components, batch_size=batch_size, svd_solver="full")
