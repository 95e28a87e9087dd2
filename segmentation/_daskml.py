"""Every use of dask-ml, behind one module.

dask-ml is in maintenance mode (last release 2025.1.0) and imports private scikit-learn names, so a new
scikit-learn or Dask release can break it. The job calls these three functions only; if a release breaks one,
it is mended here (``tests/test_daskml.py`` checks each against scikit-learn, and that no other module
imports dask-ml). dask-ml is imported when one of them is first called, not with this module: the
default job (k-means from a sample, Gram PCA) needs none of them, and the import costs about half a second
in the client and in every worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
from sklearn.base import BaseEstimator

if TYPE_CHECKING:
    from dask_ml.decomposition import IncrementalPCA
    from dask_ml.wrappers import Incremental


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
    from dask_ml.cluster.k_means import k_init

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
    from dask_ml.wrappers import Incremental

    return Incremental(estimator, shuffle_blocks=shuffle_blocks)


def incremental_pca(n_components: int, batch_size: int) -> IncrementalPCA:
    """dask-ml's IncrementalPCA with a full SVD per batch (its randomized default loses variance)."""
    from dask_ml.decomposition import IncrementalPCA

    return IncrementalPCA(n_components=n_components, batch_size=batch_size, svd_solver="full")
