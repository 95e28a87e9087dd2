"""The dask-ml seam: each function against scikit-learn on the same data, and no other module imports dask-ml."""

import ast
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from segmentation import _daskml

PACKAGE = Path(_daskml.__file__).parent


@pytest.fixture(scope="module")
def blobs():
    X, labels = make_blobs(n_samples=3000, n_features=6, centers=4, cluster_std=0.6, random_state=3)
    return X, labels, da.from_array(X, chunks=500)


def _sse(X, centers):
    return float(((X[:, None, :] - centers[None]) ** 2).sum(-1).min(1).sum())


def test_kmeans_parallel_init_gives_one_centre_per_blob(blobs):
    X, labels, dX = blobs
    centers = _daskml.kmeans_parallel_init(dX, 4, random_state=0, max_iter=3, oversampling_factor=8, n_init=1)
    nearest = ((X[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
    assert adjusted_rand_score(labels, nearest) > 0.95


def test_incremental_minibatch_equals_block_by_block_partial_fit(blobs):
    X, _, dX = blobs
    init = X[:4]
    wrapped = _daskml.incremental(
        MiniBatchKMeans(4, init=init, n_init=1, random_state=0), shuffle_blocks=False
    )
    wrapped.partial_fit(dX)
    reference = MiniBatchKMeans(4, init=init, n_init=1, random_state=0)
    for start in range(0, len(X), 500):
        reference.partial_fit(X[start : start + 500])
    np.testing.assert_allclose(wrapped.estimator_.cluster_centers_, reference.cluster_centers_, rtol=1e-10)


def test_incremental_pca_matches_scikit_learn(blobs):
    X, _, dX = blobs
    solver = _daskml.incremental_pca(n_components=6, batch_size=500).fit(dX)
    reference = PCA(6).fit(X)
    np.testing.assert_allclose(solver.explained_variance_, reference.explained_variance_, rtol=1e-8)
    np.testing.assert_allclose(np.abs(solver.components_), np.abs(reference.components_), atol=1e-6)


def test_only_the_seam_imports_dask_ml():
    importers = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "dask_ml" for name in names):
                importers.append(path.name)
    assert set(importers) == {"_daskml.py"}


def test_the_default_job_does_not_import_dask_ml():
    """Half a second in the client and in every worker, for what only minibatch, k-means|| seeding and the
    incremental PCA use."""
    import subprocess
    import sys

    code = "import sys, segmentation.job, segmentation.cli; print('dask_ml' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "False\n"
    )
