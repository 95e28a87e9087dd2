"""Gaussian mixture ('gmm') by EM over row blocks: each E-step is one pass whose blocks return summed
sufficient statistics (responsibility sums, responsibility-weighted sums and squares or outer products),
each M-step is a few small matrix operations on the client.

The formulas are scikit-learn's ``GaussianMixture`` (log densities through the Cholesky factor of each
precision matrix, ``reg_covar`` added to every covariance diagonal, convergence on the change of the mean
log-likelihood per row), so on the same data and the same start both reach the same optimum.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import dask
import numpy as np
import pandas as pd
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from sklearn.utils.validation import check_is_fitted

from .._estimators import as_row_blocked, is_lazy, log_duration, validated, with_known_row_chunks
from .base import (
    Segmenter,
    add_up,
    block_sums,
    check_int,
    check_number,
    check_random_state,
    check_sample,
    nearest_centre,
    register,
    row_sample,
    search_and_polish,
    seeds,
    without_empty_blocks,
)

logger = logging.getLogger(__name__)

COVARIANCE_TYPES = ("full", "diag")
# Rows converted to float64 at a time in a block's E-step.
_ROWS = 4096
_NOT_FINITE = "X contains NaN or infinite values"


def precision_cholesky(covariances: np.ndarray, covariance_type: str) -> np.ndarray:
    """Cholesky factors of the precision matrices (full: (k, d, d) upper; diag: (k, d) 1/std)."""
    if covariance_type == "diag":
        if (covariances <= 0).any():
            raise ValueError("a component's variance is not positive: increase reg_covar")
        return 1.0 / np.sqrt(covariances)
    factors = np.empty_like(covariances)
    identity = np.eye(covariances.shape[1])
    for k, covariance in enumerate(covariances):
        try:
            lower = np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"component {k}'s covariance is not positive definite: increase reg_covar"
            ) from None
        factors[k] = solve_triangular(lower, identity, lower=True).T
    return factors


def weighted_log_prob(
    X: np.ndarray, weights: np.ndarray, means: np.ndarray, precision_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """``log(weight_k) + log N(x | mean_k, covariance_k)`` for each row of ``X`` and component k (float64)."""
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    if covariance_type == "diag":
        precisions = precision_chol**2
        log_det = np.log(precision_chol).sum(axis=1)
        squared = (
            (means**2 * precisions).sum(axis=1) - 2.0 * X @ (means * precisions).T + (X**2) @ precisions.T
        )
    else:
        log_det = np.log(np.diagonal(precision_chol, axis1=1, axis2=2)).sum(axis=1)
        squared = np.empty((len(X), len(means)))
        for k, (mean, factor) in enumerate(zip(means, precision_chol, strict=True)):
            y = X @ factor - mean @ factor
            squared[:, k] = np.square(y).sum(axis=1)
    return -0.5 * (n_features * np.log(2 * np.pi) + squared) + log_det + np.log(weights)


def responsibility_sums(X: np.ndarray, resp: np.ndarray, covariance_type: str) -> tuple[np.ndarray, ...]:
    """Sufficient statistics of rows ``X`` under responsibilities ``resp`` (n, k): their sums per component,
    the weighted sums of rows (k, d), and of squares (diag: (k, d)) or outer products (full: (k, d, d))."""
    X = np.asarray(X, dtype=np.float64)
    totals = resp.sum(axis=0)
    sums = resp.T @ X
    if covariance_type == "diag":
        squares = resp.T @ (X**2)
    else:
        squares = np.stack([(X * resp[:, k : k + 1]).T @ X for k in range(resp.shape[1])])
    return totals, sums, squares


def gmm_block_statistics(
    block: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    precision_chol: np.ndarray,
    covariance_type: str,
) -> tuple[np.ndarray, ...]:
    """One block's E-step: ``(log-likelihood sum, SSE to the most probable mean, resp sums, weighted sums,
    weighted squares or outer products)``, float64; add blocks' results up with ``add_up``."""
    k, d = means.shape
    shape = (k, d) if covariance_type == "diag" else (k, d, d)
    totals = [np.zeros(1), np.zeros(1), np.zeros(k), np.zeros((k, d)), np.zeros(shape)]
    for start in range(0, len(block), _ROWS):
        rows = np.asarray(block[start : start + _ROWS], dtype=np.float64)
        log_prob = weighted_log_prob(rows, weights, means, precision_chol, covariance_type)
        log_norm = logsumexp(log_prob, axis=1)
        resp = np.exp(log_prob - log_norm[:, None])
        nearest = means[log_prob.argmax(axis=1)]
        parts = (
            log_norm.sum(),
            np.square(rows - nearest).sum(),
            *responsibility_sums(rows, resp, covariance_type),
        )
        for total, part in zip(totals, parts, strict=True):
            total += part
    return tuple(totals)


def m_step(
    totals: np.ndarray,
    sums: np.ndarray,
    squares: np.ndarray,
    n_rows: int,
    covariance_type: str,
    reg_covar: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariances from summed responsibility statistics over ``n_rows`` rows."""
    totals = totals + 10 * np.finfo(np.float64).eps
    means = sums / totals[:, None]
    if covariance_type == "diag":
        covariances = np.maximum(squares / totals[:, None] - means**2, 0.0) + reg_covar
    else:
        covariances = squares / totals[:, None, None] - np.einsum("ki,kj->kij", means, means)
        covariances = (covariances + covariances.transpose(0, 2, 1)) / 2
        covariances[:, np.arange(means.shape[1]), np.arange(means.shape[1])] += reg_covar
    return totals / n_rows, means, covariances


def n_parameters(n_clusters: int, n_features: int, covariance_type: str) -> int:
    """Free parameters of the mixture (for BIC): covariances, means and k - 1 weights."""
    covariance = n_features if covariance_type == "diag" else n_features * (n_features + 1) // 2
    return n_clusters * (covariance + n_features) + n_clusters - 1


@register("gmm")
class GaussianMixtureSegmenter(Segmenter):
    """Gaussian mixture fitted by EM over row blocks; segments are the most probable components.

    Seeding: k-means on an in-memory uniform row sample (the search and polish of the 'kmeans' segmenter),
    whose hard labels give the starting weights, means and covariances (scikit-learn's
    ``init_params="kmeans"``, on the sample). Then each EM iteration is one pass over ``X``: an E-step per
    block (:func:`gmm_block_statistics`), summed, and an M-step (:func:`m_step`). It stops when the mean
    log-likelihood per row changes by at most ``tol``, and keeps the parameters that log-likelihood is of.

    Parameters
    ----------
    n_clusters : int, default=8
    covariance_type : {"full", "diag"}, default="full"
    random_state : int or None, default=None
    max_iter : int, default=100
        EM iterations (passes over ``X``).
    tol : float, default=1e-3
    reg_covar : float, default=1e-6
        Added to every covariance diagonal.
    n_init : int, default=10
        k-means seedings searched on the sample.
    init_sample_size : int, default=100000
        Rows drawn when ``fit`` is given no ``sample``.
    init_search_size : int, default=10000
        Rows of the sample the seedings are searched on.

    Attributes
    ----------
    cluster_centers_ (also ``centres_``, ``means_``) : ndarray of shape (n_clusters, n_features)
    weights_ : ndarray of shape (n_clusters,)
    covariances_ : ndarray of shape (n_clusters, n_features, n_features) or (n_clusters, n_features)
    precisions_cholesky_ : ndarray, the same shape as ``covariances_``
    log_likelihood_ : float
        Total log-likelihood of the fitted rows (``score_``); ``bic_`` : float.
    sse_ : float
        Sum of squared distances of the rows to the mean of their most probable component.
    n_iter_, n_rows_, n_features_in_ : int; converged_ : bool

    Example
    -------
    >>> gmm = make_segmenter("gmm", n_clusters=6, covariance_type="diag").fit(scores)  # doctest: +SKIP
    >>> gmm.predict_proba(scores)  # lazy (n_rows, 6)  # doctest: +SKIP
    """

    objective: ClassVar[str] = "log_likelihood"
    _score_attribute: ClassVar[str] = "log_likelihood_"
    elbow_columns: ClassVar[tuple[str, ...]] = ("log_likelihood", "bic")
    has_probability: ClassVar[bool] = True
    _fitted = (
        "cluster_centers_",
        "weights_",
        "covariances_",
        "precisions_cholesky_",
        "log_likelihood_",
        "bic_",
        "sse_",
        "n_iter_",
        "converged_",
        "n_rows_",
        "n_features_in_",
    )

    def __init__(
        self,
        n_clusters: int = 8,
        covariance_type: str = "full",
        random_state: int | None = None,
        max_iter: int = 100,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        n_init: int = 10,
        init_sample_size: int = 100_000,
        init_search_size: int = 10_000,
    ):
        self.n_clusters = n_clusters
        self.covariance_type = covariance_type
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.init_sample_size = init_sample_size
        self.init_search_size = init_search_size

    def _validate_params(self) -> None:
        check_int("n_clusters", self.n_clusters, 1)
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"covariance_type must be one of {', '.join(map(repr, COVARIANCE_TYPES))}, "
                f"got {self.covariance_type!r}"
            )
        check_int("max_iter", self.max_iter, 1)
        check_number("tol", self.tol)
        check_number("reg_covar", self.reg_covar)
        check_int("n_init", self.n_init, 1)
        check_int("init_sample_size", self.init_sample_size, self.n_clusters)
        check_int("init_search_size", self.init_search_size, self.n_clusters)
        check_random_state(self.random_state)

    @property
    def means_(self) -> np.ndarray:
        """scikit-learn's name for the component means (``cluster_centers_``)."""
        return self.centres_

    def initial_parameters(self, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights, means and covariances to start EM from: k-means on ``sample``, then the statistics of
        its hard clusters (scikit-learn's ``init_params="kmeans"``)."""
        seed = seeds(self.random_state, 1)[0]
        centres, _ = search_and_polish(
            sample, self.n_clusters, self.n_init, self.init_search_size, 4 * self.n_clusters, 300, 1e-4, seed
        )
        labels = nearest_centre(sample, centres)
        resp = np.zeros((len(sample), self.n_clusters))
        resp[np.arange(len(sample)), labels] = 1.0
        totals, sums, squares = responsibility_sums(sample, resp, self.covariance_type)
        return m_step(totals, sums, squares, len(sample), self.covariance_type, self.reg_covar)

    def fit(self, X: Any, y: None = None, sample: np.ndarray | None = None) -> GaussianMixtureSegmenter:
        """Fit on ``X`` of shape (n_rows, n_features), Dask or in memory; ``sample``: rows of ``X`` drawn
        uniformly, to seed from (else ``init_sample_size`` rows are drawn, one pass). Returns ``self``."""
        self._validate_params()
        X = without_empty_blocks(with_known_row_chunks(as_row_blocked(validated(self, X, reset=True))))
        n_rows, n_features = int(X.shape[0]), int(X.shape[1])
        if n_rows < self.n_clusters:
            raise ValueError(f"n_samples={n_rows} should be >= n_clusters={self.n_clusters}")
        name = f"GaussianMixtureSegmenter({self.covariance_type}, k={self.n_clusters})"
        if sample is None:
            with log_duration(logger, f"{name}: {self.init_sample_size} rows sampled (one pass)"):
                sample = row_sample(X, self.init_sample_size, seeds(self.random_state, 1)[0])
        check_sample(sample, self.n_clusters, n_features)
        if not np.isfinite(sample).all():
            raise ValueError(_NOT_FINITE)
        with log_duration(logger, f"{name}: k-means seeding on {len(sample)} rows"):
            weights, means, covariances = self.initial_parameters(sample)
        blocks = X.to_delayed().ravel()
        previous = -np.inf
        self.converged_ = False
        for iteration in range(1, self.max_iter + 1):
            factors = precision_cholesky(covariances, self.covariance_type)
            with log_duration(logger, f"{name}: EM iteration {iteration} (one pass)"):
                log_likelihood, sse, totals, sums, squares = self._e_step(blocks, weights, means, factors)
            if not np.isfinite(log_likelihood):
                raise ValueError(_NOT_FINITE)
            change = (log_likelihood - previous) / n_rows
            logger.debug(
                "%s: iteration %d, mean log-likelihood %.6g", name, iteration, log_likelihood / n_rows
            )
            if abs(change) < self.tol:
                self.converged_ = True
                break
            previous = log_likelihood
            if iteration == self.max_iter:
                # The last M-step's parameters get their own pass, so the kept log-likelihood is theirs.
                weights, means, covariances = m_step(
                    totals, sums, squares, n_rows, self.covariance_type, self.reg_covar
                )
                factors = precision_cholesky(covariances, self.covariance_type)
                log_likelihood, sse, *_ = self._e_step(blocks, weights, means, factors)
                logger.warning("%s: EM did not converge in max_iter=%d iterations", name, self.max_iter)
                break
            weights, means, covariances = m_step(
                totals, sums, squares, n_rows, self.covariance_type, self.reg_covar
            )
        self.weights_, self.cluster_centers_, self.covariances_ = weights, means, covariances
        self.precisions_cholesky_ = factors
        self.log_likelihood_ = float(log_likelihood)
        self.bic_ = float(
            -2 * log_likelihood
            + n_parameters(self.n_clusters, n_features, self.covariance_type) * np.log(n_rows)
        )
        self.sse_ = float(sse)
        self.n_iter_, self.n_rows_, self.n_features_in_ = iteration, n_rows, n_features
        logger.info(
            "%s: log-likelihood %.6g, BIC %.6g, %d iteration(s)",
            name,
            self.log_likelihood_,
            self.bic_,
            iteration,
        )
        return self

    def _e_step(self, blocks: list, weights, means, factors) -> tuple:
        parts = [
            dask.delayed(gmm_block_statistics)(block, weights, means, factors, self.covariance_type)
            for block in blocks
        ]
        log_likelihood, sse, totals, sums, squares = block_sums(parts, add_up)
        return float(log_likelihood[0]), float(sse[0]), totals, sums, squares

    def _log_prob(self, block: np.ndarray) -> np.ndarray:
        return weighted_log_prob(
            block, self.weights_, self.cluster_centers_, self.precisions_cholesky_, self.covariance_type
        )

    def predict_block(self, block: np.ndarray) -> np.ndarray:
        """Most probable component (int32) of each row of one in-memory block."""
        if len(block) == 0:
            return np.zeros(0, dtype=np.int32)
        return self._log_prob(block).argmax(axis=1).astype(np.int32)

    def predict_proba_block(self, block: np.ndarray) -> np.ndarray:
        """Membership probabilities (n_rows, n_clusters) of one in-memory block."""
        if len(block) == 0:
            return np.zeros((0, self.n_clusters))
        log_prob = self._log_prob(block)
        return np.exp(log_prob - logsumexp(log_prob, axis=1)[:, None])

    def predict_proba(self, X: Any):
        """Membership probabilities of ``X``'s rows, (n_rows, n_clusters): lazy for Dask input, else NumPy."""
        check_is_fitted(self, "cluster_centers_")
        X = validated(self, X, reset=False)
        if is_lazy(X):
            return X.map_blocks(
                self.predict_proba_block, chunks=(X.chunks[0], (self.n_clusters,)), dtype=np.float64
            )
        return self.predict_proba_block(X)

    def elbow_figures(self) -> dict[str, float]:
        return {"log_likelihood": self.log_likelihood_, "bic": self.bic_}

    def block_statistics(self, block: np.ndarray) -> np.ndarray:
        """The block's log-likelihood and the SSE of its rows to the mean of their most probable component."""
        if len(block) == 0:
            return np.zeros(2)
        block = np.asarray(block, dtype=np.float64)
        log_prob = self._log_prob(block)
        nearest = self.cluster_centers_[log_prob.argmax(axis=1)]
        return np.array([logsumexp(log_prob, axis=1).sum(), np.square(block - nearest).sum()])

    def figures_from_statistics(self, statistics: np.ndarray, n_rows: int) -> dict[str, float]:
        log_likelihood = float(statistics[0])
        parameters = n_parameters(self.n_clusters, self.n_features_in_, self.covariance_type)
        return {
            "sse": float(statistics[1]),
            "log_likelihood": log_likelihood,
            "bic": -2 * log_likelihood + parameters * float(np.log(n_rows)),
        }

    @classmethod
    def recommend(cls, table: pd.DataFrame) -> int:
        """The k of lowest BIC."""
        return int(table.loc[table["bic"].idxmin(), "k"])
