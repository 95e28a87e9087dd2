"""PCA on row-blocked Dask arrays: exact solvers whose only results on the client are small matrices.

Three solvers share one contract (see :class:`GramPCA`) and differ in how they reach the spectrum:

- ``gram``: one pass; each block contributes its row count, mean and centred scatter (float64), merged
  pairwise in a tree, then ``numpy.linalg.eigh`` of the small covariance. The default: exact, one read.
- ``incremental``: dask-ml's ``IncrementalPCA`` tuned to be exact (full SVD, one partition per batch, every
  component kept). Sequential over batches and reads each batch twice; kept as an independent cross-check.
- ``tsqr``: two passes (means, then a tall-skinny QR/SVD of the centred data with ``dask.array.linalg.svd``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
from dask import delayed
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _daskml
from ._estimators import (
    SavedEstimator,
    as_row_blocked,
    block_row_counts,
    is_lazy,
    load_fitted,
    log_duration,
    restore,
    tree_reduce,
    validated,
    with_known_row_chunks,
)

logger = logging.getLogger(__name__)

# Rows converted to float64 at a time in block_moments.
_GRAM_ROWS = 4096
_NOT_FINITE = "X contains NaN or infinite values; impute and scale before PCA"


def block_moments(block: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Row count, column means and centred scatter ``(B - mean).T @ (B - mean)`` of one block, in float64.

    A float32 block is converted ``_GRAM_ROWS`` rows at a time, so the float64 copy stays small. (Products
    in float32 are ~10x faster but lose the 1e-5 agreement with scikit-learn on the smallest eigenvalues.)
    """
    block = np.asarray(block)
    n_rows, n_features = block.shape
    if n_rows == 0:
        return 0, np.zeros(n_features), np.zeros((n_features, n_features))
    mean = block.mean(axis=0, dtype=np.float64)
    scatter = np.zeros((n_features, n_features))
    for start in range(0, n_rows, _GRAM_ROWS):
        centred = block[start : start + _GRAM_ROWS].astype(np.float64) - mean
        scatter += centred.T @ centred
    return n_rows, mean, scatter


def merge_moments(*parts: tuple[int, np.ndarray, np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Combine block moments exactly (Chan, Golub and LeVeque's pairwise update), in float64."""
    n_rows, mean, scatter = parts[0]
    for n_other, mean_other, scatter_other in parts[1:]:
        total = n_rows + n_other
        if n_other == 0:
            continue
        delta = mean_other - mean
        scatter = scatter + scatter_other + np.outer(delta, delta) * (n_rows * n_other / total)
        mean = mean + delta * (n_other / total)
        n_rows = total
    return n_rows, mean, scatter


def mean_and_scatter(X: Any) -> tuple[int, np.ndarray, np.ndarray]:
    """Row count, column means and centred scatter matrix of ``X`` in one pass (tree reduction, float64).

    Centring each block before its Gram product and merging with the pairwise update avoids the cancellation
    of ``X.T @ X - n * outer(mean, mean)`` when means are large relative to spreads; the cost is the same.
    """
    X = as_row_blocked(X)
    parts = [delayed(block_moments)(block) for block in X.to_delayed().ravel()]
    n_rows, mean, scatter = dask.compute(tree_reduce(parts, merge_moments))[0]
    return int(n_rows), mean, scatter


def n_components_for_variance(ratios: np.ndarray, target: float) -> int:
    """Smallest count of leading components whose cumulative explained-variance ratio reaches ``target``."""
    cumulative = np.cumsum(np.asarray(ratios, dtype=np.float64))
    count = int(np.searchsorted(cumulative, target, side="left")) + 1
    if count > len(cumulative):
        reached = cumulative[-1] if len(cumulative) else 0.0
        raise ValueError(
            f"explained-variance target {target} not reached by the {len(cumulative)} components computed "
            f"(cumulative {reached:.6f})"
        )
    return count


def flip_signs(components: np.ndarray) -> np.ndarray:
    """Components with the largest-magnitude entry of each row positive (scikit-learn's ``svd_flip`` rule)."""
    components = np.asarray(components, dtype=np.float64)
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), largest])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def project(X: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``(X - mean) @ components.T`` of one in-memory block, as float32."""
    mean = np.asarray(mean, dtype=np.float32)
    components = np.asarray(components, dtype=np.float32)
    return np.asarray((np.asarray(X) - mean) @ components.T, dtype=np.float32)


def _check_n_components(n_components: Any, n_features: int) -> None:
    if isinstance(n_components, bool) or not isinstance(n_components, Real):
        raise TypeError(
            "n_components must be an int (components kept) or a float in (0, 1) (explained-variance target), "
            f"got {n_components!r}"
        )
    if isinstance(n_components, Integral):
        if not 1 <= n_components <= n_features:
            raise ValueError(f"n_components={n_components} must be between 1 and n_features={n_features}")
    elif not 0.0 < n_components < 1.0:
        raise ValueError(
            f"a float n_components is an explained-variance target and must be in (0, 1), got {n_components}"
        )


def _check_rows(n_rows: int) -> None:
    if n_rows < 2:
        raise ValueError(f"PCA needs at least 2 samples (rows), got n_samples={n_rows}")


@dataclass(frozen=True)
class _Spectrum:
    """What a solver computes: variances (descending) with their components, and the total variance."""

    n_samples: int
    mean: np.ndarray
    variances: np.ndarray
    components: np.ndarray
    total_variance: float


class _BasePCA(SavedEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """The contract shared by every solver: fitting, component choice, transform, persistence.

    Input is a Dask array (or Dask DataFrame) processed block by block, or in-memory data (NumPy, pandas),
    validated as scikit-learn does; ``transform`` answers in kind (lazy Dask, or NumPy), always float32.
    """

    _fitted = (
        "n_samples_",
        "n_features_in_",
        "n_components_",
        "mean_",
        "components_",
        "explained_variance_",
        "explained_variance_ratio_",
        "all_explained_variance_ratio_",
    )

    def __init__(self, n_components: int | float = 0.9):
        self.n_components = n_components

    def _spectrum(self, X: da.Array) -> _Spectrum:
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # float32 in, float32 out (any input: float32)
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def fit(self, X: Any, y: None = None) -> _BasePCA:
        """Fit on ``X`` of shape (n_rows, n_features), Dask or in memory; returns ``self``."""
        X = as_row_blocked(validated(self, X, reset=True))
        n_features = int(X.shape[1])
        _check_n_components(self.n_components, n_features)
        with log_duration(logger, f"{type(self).__name__}.fit ({n_features} features)"):
            spectrum = self._spectrum(X)
        return self._keep(spectrum, n_features)

    def _keep(self, spectrum: _Spectrum, n_features: int) -> _BasePCA:
        """Set the fitted attributes from a solver's spectrum: the components the target keeps."""
        if not (np.isfinite(spectrum.total_variance) and np.isfinite(spectrum.variances).all()):
            raise ValueError(_NOT_FINITE)
        if spectrum.total_variance <= 0:
            raise ValueError("X has zero total variance: nothing to decompose")
        ratios = spectrum.variances / spectrum.total_variance
        if isinstance(self.n_components, Integral):
            kept = int(self.n_components)
            if kept > len(ratios):
                raise ValueError(
                    f"n_components={kept} exceeds the {len(ratios)} components this solver computed"
                )
        else:
            kept = n_components_for_variance(ratios, float(self.n_components))
        self.n_samples_ = int(spectrum.n_samples)
        self.n_features_in_ = n_features
        self.n_components_ = kept
        self.mean_ = np.asarray(spectrum.mean, dtype=np.float64)
        self.components_ = flip_signs(spectrum.components[:kept])
        self.explained_variance_ = np.asarray(spectrum.variances[:kept], dtype=np.float64)
        self.explained_variance_ratio_ = np.asarray(ratios[:kept], dtype=np.float64)
        self.all_explained_variance_ratio_ = np.asarray(ratios, dtype=np.float64)
        logger.info(
            "%s: kept %d of %d components, explained variance %.4f",
            type(self).__name__,
            kept,
            n_features,
            self.explained_variance_ratio_.sum(),
        )
        return self

    def _check_width(self, n_columns: int, expected: int, what: str) -> None:
        if n_columns != expected:
            raise ValueError(f"{what} has {n_columns} columns; this PCA expects {expected}")

    def transform_array(self, X: np.ndarray) -> np.ndarray:
        """Project one in-memory block: ``(X - mean_) @ components_.T`` as float32."""
        check_is_fitted(self, "components_")
        self._check_width(np.shape(X)[1], self.n_features_in_, "X")
        return project(X, self.mean_, self.components_)

    def transform(self, X: Any) -> da.Array | np.ndarray:
        """Project ``X`` on the components, float32 of shape (n_rows, n_components_): a lazy Dask array
        (block by block) for Dask input, a NumPy array for in-memory input."""
        check_is_fitted(self, "components_")
        X = validated(self, X, reset=False)
        if not is_lazy(X):
            return project(X, self.mean_, self.components_)
        return X.map_blocks(
            project,
            mean=self.mean_.astype(np.float32),
            components=self.components_.astype(np.float32),
            chunks=(X.chunks[0], (self.n_components_,)),
            dtype=np.float32,
        )

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map small in-memory coordinates (e.g. cluster centres) back to feature space, as float64."""
        check_is_fitted(self, "components_")
        if dask.is_dask_collection(X):
            raise TypeError("inverse_transform takes small in-memory arrays (e.g. cluster centres), not Dask")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (rows, components), got {X.ndim} dimension(s)")
        self._check_width(X.shape[1], self.n_components_, "X")
        return X @ self.components_ + self.mean_


class GramPCA(_BasePCA):
    """Exact PCA from the covariance matrix, accumulated in one pass over the blocks.

    Parameters
    ----------
    n_components : int or float, default=0.9
        Components to keep (int), or the explained-variance target in (0, 1): the smallest count whose
        cumulative explained-variance ratio reaches it.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
    components_ : ndarray of shape (n_components_, n_features)
        Unit principal axes, largest variance first; the largest-magnitude entry of each is positive.
    explained_variance_ : ndarray of shape (n_components_,)
    explained_variance_ratio_ : ndarray of shape (n_components_,)
        Of the kept components, relative to the total variance.
    all_explained_variance_ratio_ : ndarray of shape (n_features,)
        The whole spectrum (for a scree plot).
    n_components_, n_samples_, n_features_in_ : int

    Example
    -------
    >>> pca = GramPCA(n_components=0.9).fit(X)  # doctest: +SKIP
    >>> scores = pca.transform(X)  # lazy float32, (n_rows, pca.n_components_)  # doctest: +SKIP
    """

    def _spectrum(self, X: da.Array) -> _Spectrum:
        return self._eigen(*mean_and_scatter(X))

    def fit_moments(self, n_rows: int, mean: np.ndarray, scatter: np.ndarray) -> GramPCA:
        """Fit from the row count, column means and centred scatter matrix of the data (what
        :func:`mean_and_scatter` computes), when they come from elsewhere: the job adds up each block's
        exactly from its codes (``SegmentationModel.moments_block``), without the float32 features."""
        mean, scatter = np.asarray(mean, dtype=np.float64), np.asarray(scatter, dtype=np.float64)
        n_features = len(mean)
        if scatter.shape != (n_features, n_features):
            raise ValueError(f"scatter has shape {scatter.shape}; expected ({n_features}, {n_features})")
        _check_n_components(self.n_components, n_features)
        return self._keep(self._eigen(int(n_rows), mean, scatter), n_features)

    def _eigen(self, n_rows: int, mean: np.ndarray, scatter: np.ndarray) -> _Spectrum:
        _check_rows(n_rows)
        if not np.isfinite(scatter).all():
            raise ValueError(_NOT_FINITE)
        covariance = scatter / (n_rows - 1)
        variances, vectors = np.linalg.eigh(covariance)
        order = np.argsort(variances)[::-1]
        # Rounding can leave the smallest eigenvalues of a rank-deficient covariance slightly negative.
        variances = np.clip(variances[order], 0.0, None)
        return _Spectrum(n_rows, mean, variances, vectors[:, order].T, float(np.trace(covariance)))


class IncrementalPCA(_BasePCA):
    """Exact PCA with dask-ml's ``IncrementalPCA``, tuned: one partition per batch, full SVD, all components.

    dask-ml's defaults lose accuracy and time: a batch of ``5 * n_features`` rows means hundreds of
    sequential steps, and ``svd_solver="auto"`` may pick a randomized SVD without power iterations. Keeping
    ``min(n_features, batch rows)`` components (all of them when partitions have at least as many rows as
    there are features) makes the incremental SVD exact, nothing being truncated between batches, and gives
    the whole spectrum; the variance target is applied afterwards. Data is cast to float64 per block. Needs
    known chunk sizes (computed with one extra pass when unknown), runs batch after batch and reads each
    batch twice (statistics, then SVD): persist ``X`` first, or prefer :class:`GramPCA`.

    Parameters and attributes are those of :class:`GramPCA`; ``all_explained_variance_ratio_`` has
    ``min(n_features, rows per batch)`` entries.
    """

    def _spectrum(self, X: da.Array) -> _Spectrum:
        X = with_known_row_chunks(X).astype(np.float64)
        n_rows, n_features = (int(size) for size in X.shape)
        _check_rows(n_rows)
        batch_rows = min(max(X.chunks[0]), n_rows)
        solver = _daskml.incremental_pca(n_components=min(n_features, batch_rows), batch_size=batch_rows)
        logger.info("IncrementalPCA: batches of %d rows, %d components", batch_rows, solver.n_components)
        try:
            with warnings.catch_warnings():
                # dask-ml's first running-variance update divides 0 by 0 before discarding the result.
                warnings.filterwarnings("ignore", "invalid value encountered in divide", RuntimeWarning)
                solver.fit(X)
        except np.linalg.LinAlgError as error:
            raise ValueError(_NOT_FINITE) from error
        # dask-ml's var_ is the population variance (ddof=0); scikit-learn's ratios use ddof=1.
        total_variance = float(np.sum(solver.var_)) * n_rows / (n_rows - 1)
        return _Spectrum(n_rows, solver.mean_, solver.explained_variance_, solver.components_, total_variance)


class TsqrPCA(_BasePCA):
    """Exact PCA from the SVD of the centred data by tall-skinny QR (``dask.array.linalg.svd``), two passes.

    Not ``dask_ml.decomposition.PCA(svd_solver="tsqr")``: its ``fit`` gathers the whole centred array into one
    NumPy array (``delayed(lambda x: x.shape)(X)``), which defeats out-of-core work. Means are computed first
    (pass one), so blocks stream through the QR (pass two) instead of all being held until the mean is known.

    Parameters and attributes are those of :class:`GramPCA`.
    """

    def _spectrum(self, X: da.Array) -> _Spectrum:
        X = X.astype(np.float64)
        n_rows, column_sums = dask.compute(block_row_counts(X).sum(), X.sum(axis=0))
        n_rows = int(n_rows)
        _check_rows(n_rows)
        mean = column_sums / n_rows
        if not np.isfinite(mean).all():
            raise ValueError(_NOT_FINITE)
        _, singular_values, components = da.linalg.svd(X - mean)
        singular_values, components = dask.compute(singular_values, components)
        variances = singular_values**2 / (n_rows - 1)
        return _Spectrum(n_rows, mean, variances, components, float(variances.sum()))


_SOLVERS: dict[str, type[_BasePCA]] = {"gram": GramPCA, "incremental": IncrementalPCA, "tsqr": TsqrPCA}


def make_pca(solver: str = "gram", n_components: int | float = 0.9) -> _BasePCA:
    """An unfitted PCA by solver name: ``"gram"`` (default), ``"incremental"`` or ``"tsqr"``."""
    if solver not in _SOLVERS:
        raise ValueError(f"unknown PCA solver {solver!r}; valid choices are {', '.join(map(repr, _SOLVERS))}")
    return _SOLVERS[solver](n_components=n_components)


def load(directory: str | Path) -> _BasePCA:
    """A fitted PCA saved with ``save(directory)``."""
    description = load_fitted(directory)
    classes = {cls.__name__: cls for cls in _SOLVERS.values()}
    if description.get("estimator") not in classes:
        raise ValueError(f"{directory}: {description.get('estimator')!r} is not a PCA solver of this module")
    return restore(classes[description["estimator"]], description)


def explained_variance_table(pca: Any) -> pd.DataFrame:
    """pca.csv: every component's explained variance ratio (1-based), the cumulative ratio, and whether the
    fitted PCA keeps it."""
    ratios = np.asarray(pca.all_explained_variance_ratio_, dtype="float64")
    return pd.DataFrame(
        {
            "component": np.arange(1, len(ratios) + 1),
            "explained_variance_ratio": ratios,
            "cumulative": np.cumsum(ratios),
            "kept": np.arange(len(ratios)) < pca.n_components_,
        }
    )


def top_loadings(
    pca: Any, feature_names: list[str], label: Callable[[str], str], components: int = 5, top: int = 10
) -> pd.DataFrame:
    """pca_loadings.csv: the ``top`` heaviest features (by absolute loading) of each of the first
    ``components`` components, with their ``label``."""
    rows = []
    for component in range(min(components, pca.n_components_)):
        weights = np.asarray(pca.components_[component])
        for index in np.argsort(-np.abs(weights))[:top]:
            rows.append(
                {
                    "component": component + 1,
                    "attribute": feature_names[index],
                    "label": label(feature_names[index]),
                    "loading": float(weights[index]),
                }
            )
    return pd.DataFrame(rows)
