"""PCA solvers side by side on a synthetic low-rank-plus-noise float32 array, on a LocalCluster.

Compares our solvers (gram, incremental tuned, tsqr) with dask-ml's defaults (``IncrementalPCA`` with its
``5 * n_features`` batch and ``PCA`` with its randomized solver and no power iterations) and scikit-learn's
PCA in memory. Every method keeps the count our variance target picks; "captured" is the share of the exact
total variance its components really capture (``trace(C S C^T) / trace(S)``, ``S`` the exact covariance),
next to the share the method reports.

    python benchmarks/bench_pca.py [--rows 300000] [--features 400] [--chunk-rows 50000] [--target 0.9]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import dask.array as da
import dask_ml.decomposition
import numpy as np
from distributed import Client, LocalCluster, wait
from sklearn.decomposition import PCA

from segmentation.decompose import GramPCA, IncrementalPCA, TsqrPCA, mean_and_scatter


def synthetic(rows: int, features: int, chunk_rows: int, rank: int, seed: int = 0) -> da.Array:
    """Rank-``rank`` signal with slowly decaying scales plus unit noise, float32, chunked by rows."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(rank, features)) * (0.99 ** np.arange(rank))[:, None]
    generator = da.random.default_rng(seed)
    latent = generator.standard_normal((rows, rank), chunks=(chunk_rows, rank))
    noise = generator.standard_normal((rows, features), chunks=(chunk_rows, features))
    return (latent @ loadings + noise).astype(np.float32)


def captured_share(components: np.ndarray, covariance: np.ndarray) -> float:
    """Share of the total variance captured by the span of orthonormal ``components``."""
    return float(np.trace(components @ covariance @ components.T) / np.trace(covariance))


def timed(fit: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    fitted = fit()
    return fitted, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--features", type=int, default=400)
    parser.add_argument("--chunk-rows", type=int, default=50_000)
    parser.add_argument("--rank", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.9)
    args = parser.parse_args()

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="4GiB") as local,
        Client(local) as client,
    ):
        X = synthetic(args.rows, args.features, args.chunk_rows, args.rank).persist()
        wait(X)
        print(f"data: {args.rows} x {args.features} float32, chunks of {args.chunk_rows} rows, {client}")
        n_rows, _, scatter = mean_and_scatter(X)
        covariance = scatter / (n_rows - 1)

        results = []
        gram, seconds = timed(lambda: GramPCA(args.target).fit(X))
        k = gram.n_components_
        results.append(
            ("gram (ours, one pass)", gram.components_, gram.explained_variance_ratio_.sum(), seconds)
        )
        for name, solver in [
            ("incremental (ours, tuned)", IncrementalPCA),
            ("tsqr (ours, two passes)", TsqrPCA),
        ]:
            fitted, seconds = timed(lambda solver=solver: solver(k).fit(X))
            results.append((name, fitted.components_, fitted.explained_variance_ratio_.sum(), seconds))
        fitted, seconds = timed(lambda: dask_ml.decomposition.IncrementalPCA(n_components=k).fit(X))
        name = f"dask-ml IncrementalPCA defaults (batch {fitted.batch_size_})"
        results.append((name, fitted.components_, fitted.explained_variance_ratio_.sum(), seconds))
        fitted, seconds = timed(lambda: dask_ml.decomposition.PCA(n_components=k, random_state=0).fit(X))
        name = "dask-ml PCA defaults (randomized, 0 power iter.)"
        results.append((name, fitted.components_, fitted.explained_variance_ratio_.sum(), seconds))
        in_memory, gather_seconds = timed(X.compute)
        fitted, seconds = timed(lambda: PCA(n_components=k, svd_solver="full").fit(in_memory))
        name = f"scikit-learn PCA in memory (+{gather_seconds:.1f}s gather)"
        results.append((name, fitted.components_, fitted.explained_variance_ratio_.sum(), seconds))

    print(f"components kept: {k} (target {args.target})")
    print(f"{'method':<52}{'reported':>10}{'captured':>10}{'seconds':>10}")
    for name, components, reported, seconds in results:
        captured = captured_share(np.asarray(components, dtype=np.float64), covariance)
        print(f"{name:<52}{reported:>10.4f}{captured:>10.4f}{seconds:>10.1f}")


if __name__ == "__main__":
    main()
