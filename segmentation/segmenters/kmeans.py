"""K-means ('kmeans': Lloyd over all rows; 'minibatch': scikit-learn's MiniBatchKMeans through dask-ml), seeded
from a uniform row sample by default, not k-means||: see :class:`KMeansSegmenter`.

Every SSE is exact (squared distances in float64, summed across blocks): Lloyd's own passes measure it
(:func:`~segmentation.segmenters.base.lloyd`); after minibatch epochs, one pass of
:func:`~segmentation.segmenters.base.sum_of_squared_distances`. (dask-ml's ``KMeans.inertia_`` is not the
SSE: when its loop stops on the tolerance it is a sum of *unsquared* distances.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from numbers import Integral, Real
from typing import Any

import dask
import dask.array as da
import numpy as np
from sklearn.base import clone
from sklearn.cluster import MiniBatchKMeans
from sklearn.utils.validation import check_array, check_is_fitted

from .. import _daskml
from .._estimators import (
    as_row_blocked,
    is_lazy,
    log_duration,
    map_in_threads,
    validated,
    with_known_row_chunks,
)
from .base import (
    SEED_LIMIT,
    Segmenter,
    block_sse,
    check_int,
    lazy_sse,
    lloyd,
    mean_variance,
    min_squared_distances,
    nearest_centre,
    predict_segments,
    register,
    row_sample,
    search_and_polish,
    search_space,
    seeds,
    sum_of_squared_distances,
)

logger = logging.getLogger(__name__)

ALGORITHMS = ("kmeans||", "minibatch")
INITS = ("sample", "k-means||")
_AUTO_N_INIT = {"sample": 60, "k-means||": 3}
# Restarts of scikit-learn's k-means on the few k-means|| candidates (in memory, so cheap).
_CANDIDATE_N_INIT = 10


@register("kmeans", aliases=("kmeans||",), algorithm="kmeans||")
@register("minibatch", algorithm="minibatch")
class KMeansSegmenter(Segmenter):
    """K-means over row blocks: a seeding, then refinement over all rows, scored by the true SSE.

    ``X`` is a Dask array (or Dask DataFrame), processed block by block, or in-memory data (NumPy, pandas),
    validated as scikit-learn does; ``predict`` and ``labels_`` answer in kind (lazy Dask, or NumPy).

    Seeding (``init``):

    - ``"sample"`` (default): ``init_sample_size`` rows are drawn uniformly (one pass; the sample comes to
      the client). scikit-learn's ``KMeans`` (greedy k-means++ and Lloyd) searches ``n_init`` seedings on
      ``init_search_size`` of those rows, projected on their ``init_search_axes`` leading principal axes;
      the best, lifted back to every feature, is polished on the whole sample, and its centres seed one
      refinement over all rows, so restarts cost nothing on the full data.
    - ``"k-means||"``: dask-ml's scalable k-means++ over all rows, ``n_init`` times, each refined and compared
      by SSE (Lloyd's last pass measures it; after minibatch, one shared pass). dask-ml's
      ``oversampling_factor`` is absolute (expected candidates per round) and its default of 2 often leaves
      fewer candidates than clusters; ours is relative
      (``oversampling_factor * n_clusters`` per round, the paper's ~2k), and ``init_rounds`` replaces its
      ``log(initial cost)`` rounds (10-20, two passes each).

    ``"sample"`` is the default by measurement. On the planted-segment demo data (10.6k rows, 306 PCA
    components, k=8, 6 seeds) k-means|| samples rows by squared distance, so outlying rows become centres of
    near-empty clusters that Lloyd never leaves: SSE 1.005-1.008 x scikit-learn's ``KMeans(n_init=10)`` and an
    adjusted Rand index to the planted segments of 0.70-0.81 (3 to 8 rounds, weighted candidates and restarts
    did not cure it), against 1.000 and 0.94 for every seed from a 3,000-row sample. On blobs both match.
    The sample must not be too small: on the real-size generated population (785k kept rows, 312 components,
    k=8) there are two nearby optima, SSE 2.3410e8 (ARI 0.931) and 2.3432e8 (ARI 0.72). A 20,000-row sample
    settled on the worse one, and so did a 50,000-row sample drawn per block (seed 0, measured again after
    the sampling changed); 100,000-row samples reach the better one more often, but not always: on one
    100,000-row sample, 10 seedings found it for 1 seed of 3 (5-7 s each), while 60 seedings on 10,000 of
    its rows, the best polished on all 100,000, found it for 8 seeds of 8 (0-7) in 5.1-6.3 s (the whole job
    at seed 1 had ARI 0.724 before, 0.931 after). Searching on the 32 leading axes of those 10,000 rows
    (4 per cluster) found it for 24 seeds of 24 in 0.6 s; 16 axes did as well, 7 (k - 1) for none of 16.
    Hence the defaults: 100,000 rows (125 MB at 312 float32 components), 60 seedings on 10,000 of them,
    on ``4 * n_clusters`` axes.

    Refinement (``algorithm``; ``"kmeans||"`` keeps the job configuration's name):

    - ``"kmeans||"``: Lloyd iterations over all rows, one pass each (:func:`~.base.lloyd`: each pass sums the
      rows per nearest centre and their SSE, so the centres kept come with their SSE and no pass is spent
      on it; dask-ml's k-means took 1.5x as long a pass and one more pass for the SSE).
    - ``"minibatch"``: scikit-learn's ``MiniBatchKMeans.partial_fit`` fed one block (or ``batch_size`` rows)
      at a time through ``dask_ml.wrappers.Incremental``, blocks shuffled, for up to ``max_iter`` epochs.

    Both stop when the squared centre shift (per Lloyd iteration or per epoch) is at most
    ``tol * mean feature variance`` (scikit-learn's rule; dask-ml's own ``tol`` is absolute); with
    ``init="sample"`` that variance is the sample's.

    Parameters
    ----------
    n_clusters : int, default=8
    algorithm : {"kmeans||", "minibatch"}, default="kmeans||"
    random_state : int or None, default=None
    max_iter : int, default=100
        Lloyd iterations ("kmeans||") or epochs over the data ("minibatch").
    tol : float, default=1e-4
    init_rounds : int, default=2
        k-means|| sampling rounds (``init="k-means||"`` only).
    oversampling_factor : float, default=2
        Candidates per k-means|| round, as a multiple of ``n_clusters`` (``init="k-means||"`` only).
    batch_size : int or None, default=None
        Rows per mini-batch update ("minibatch" only); None uses each block as one batch.
    n_init : int or "auto", default="auto"
        Seedings tried: 60 on the search rows with ``init="sample"``, 3 full restarts with
        ``init="k-means||"``.
    init : {"sample", "k-means||"}, default="sample"
    init_sample_size : int, default=100000
        Rows drawn for ``init="sample"``.
    init_search_size : int, default=10000
        Rows of the sample the seedings are searched on (``init="sample"``).
    init_search_axes : int or "auto", default="auto"
        Leading principal axes of those rows the seedings are searched on (``init="sample"``): ``4 *
        n_clusters``, or all features when there are fewer.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features), float64
    sse_ : float
        Sum of squared distances of the fitted rows to their nearest centre.
    n_iter_ : int
        Lloyd passes (the last one measures the centres kept) or epochs of the kept refinement.
    n_features_in_ : int
    labels_ : ndarray or dask.array.Array of shape (n_rows,), int32
        Nearest-centre label of each fitted row: NumPy for in-memory ``X``; for Dask ``X`` a lazy Dask
        array (computing it is one more pass over ``X``). Not saved with the model.

    Example
    -------
    >>> segmenter = KMeansSegmenter(n_clusters=6, random_state=0).fit(scores)  # doctest: +SKIP
    >>> labels = segmenter.predict(scores)  # lazy int32  # doctest: +SKIP
    """

    _fitted = ("cluster_centers_", "sse_", "n_iter_", "n_features_in_")

    def __init__(
        self,
        n_clusters: int = 8,
        algorithm: str = "kmeans||",
        random_state: int | None = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        init_rounds: int = 2,
        oversampling_factor: float = 2,
        batch_size: int | None = None,
        n_init: int | str = "auto",
        init: str = "sample",
        init_sample_size: int = 100_000,
        init_search_size: int = 10_000,
        init_search_axes: int | str = "auto",
    ):
        self.n_clusters = n_clusters
        self.algorithm = algorithm
        self.random_state = random_state
        self.max_iter = max_iter
        self.tol = tol
        self.init_rounds = init_rounds
        self.oversampling_factor = oversampling_factor
        self.batch_size = batch_size
        self.n_init = n_init
        self.init = init
        self.init_sample_size = init_sample_size
        self.init_search_size = init_search_size
        self.init_search_axes = init_search_axes

    def _validate_params(self) -> None:
        check_int("n_clusters", self.n_clusters, 1)
        if self.algorithm not in ALGORITHMS:
            raise ValueError(
                f"algorithm must be one of {', '.join(map(repr, ALGORITHMS))}, got {self.algorithm!r}"
            )
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, INITS))}, got {self.init!r}")
        check_int("max_iter", self.max_iter, 1)
        check_int("init_rounds", self.init_rounds, 1)
        if self.n_init != "auto":
            check_int("n_init", self.n_init, 1)
        check_int("init_sample_size", self.init_sample_size, self.n_clusters)
        check_int("init_search_size", self.init_search_size, self.n_clusters)
        if self.init_search_axes != "auto":
            check_int("init_search_axes", self.init_search_axes, 1)
        if isinstance(self.tol, bool) or not isinstance(self.tol, Real) or not 0 <= self.tol < np.inf:
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}")
        factor = self.oversampling_factor
        if isinstance(factor, bool) or not isinstance(factor, Real) or not 0 < factor < np.inf:
            raise ValueError(f"oversampling_factor must be a finite number > 0, got {factor!r}")
        if self.batch_size is not None:
            if self.algorithm != "minibatch":
                raise ValueError("batch_size applies to algorithm='minibatch' only")
            check_int("batch_size", self.batch_size, 1)
        state = self.random_state
        if state is not None and (isinstance(state, bool) or not isinstance(state, Integral)):
            raise ValueError(f"random_state must be None or an int, got {state!r}")

    def fit(self, X: Any, y: None = None, sample: np.ndarray | None = None) -> KMeansSegmenter:
        """Fit on a row-blocked array ``X`` of shape (n_rows, n_features); returns ``self``.

        ``sample`` may give rows of ``X`` already drawn uniformly (e.g. by :func:`sample_positions` while
        ``X`` was written) to seed from with ``init="sample"``, instead of drawing ``init_sample_size`` rows
        with a pass over ``X``. It is centred in place and restored while the seeding is polished on it
        (scikit-learn's ``copy_x=False``, which saves a copy), so its values may change in the last bits.
        """
        self._validate_params()
        given = validated(self, X, reset=True)
        X = with_known_row_chunks(as_row_blocked(given))
        if min(X.chunks[0]) == 0:  # scikit-learn's distance functions refuse empty blocks
            X = X.rechunk({0: tuple(size for size in X.chunks[0] if size)})
        n_rows, n_features = int(X.shape[0]), int(X.shape[1])
        if n_rows < self.n_clusters:
            raise ValueError(f"n_samples={n_rows} should be >= n_clusters={self.n_clusters}")
        if self.batch_size is not None:
            X = X.rechunk({0: self.batch_size})
        name = f"KMeansSegmenter({self.algorithm}, init={self.init}, k={self.n_clusters})"
        n_init = _AUTO_N_INIT[self.init] if self.n_init == "auto" else self.n_init
        search_axes = self._search_axes()
        run_seeds = seeds(self.random_state, n_init)
        if self.init == "sample":
            if sample is None:
                with log_duration(logger, f"{name}: {self.init_sample_size} rows sampled (one pass)"):
                    sample = row_sample(X, self.init_sample_size, run_seeds[0])
            elif np.ndim(sample) != 2 or np.shape(sample)[1] != n_features or len(sample) < self.n_clusters:
                raise ValueError(
                    f"sample must have at least n_clusters={self.n_clusters} rows of X's {n_features} "
                    f"features, got shape {np.shape(sample)}"
                )
            # The stopping rule needs the mean feature variance only roughly: the sample's saves a pass.
            variance = mean_variance(sample)
        else:
            with log_duration(logger, f"{name}: feature variance (one pass)"):
                variance = float(X.var(axis=0, dtype=np.float64).mean().compute())
        if not np.isfinite(variance):
            raise ValueError("X contains NaN or infinite values")
        tolerance = self.tol * variance
        runs = []
        if self.init == "sample":
            with log_duration(
                logger, f"{name}: {n_init} seeding(s) on {self.init_search_size} rows, polished"
            ):
                centers, _ = search_and_polish(sample, self.n_clusters, n_init, self.init_search_size,
                                                search_axes, self.max_iter, self.tol, run_seeds[0])  # fmt: skip
            with log_duration(logger, f"{name}: refinement"):
                runs.append(self._refine(X, centers, run_seeds[0], tolerance))
        else:
            for restart, seed in enumerate(run_seeds, start=1):
                with log_duration(logger, f"{name}: restart {restart}/{n_init}"):
                    runs.append(self._refine(X, None, seed, tolerance))
        unscored = [i for i, (_, _, sse) in enumerate(runs) if sse is None]  # minibatch
        if unscored:
            with log_duration(logger, f"{name}: SSE of {len(unscored)} refinement(s) (one pass)"):
                scored = dask.compute(*[lazy_sse(X, runs[i][0]) for i in unscored])
            for i, sse in zip(unscored, scored, strict=True):
                runs[i] = (*runs[i][:2], float(sse))
        sses = [sse for _, _, sse in runs]
        if not np.isfinite(sses).all():
            raise ValueError("X contains NaN or infinite values")
        best = int(np.argmin(sses))
        logger.info("%s: SSE %s, kept %d", name, [f"{sse:.6g}" for sse in sses], best + 1)
        self.cluster_centers_ = np.asarray(runs[best][0], dtype=np.float64)
        self.n_iter_ = int(runs[best][1])
        self.sse_ = float(sses[best])
        self.n_features_in_ = n_features
        if is_lazy(given):
            self.labels_ = predict_segments(X, self.cluster_centers_)
        else:
            self.labels_ = nearest_centre(given, self.cluster_centers_)
        return self

    def _search_axes(self) -> int:
        return 4 * self.n_clusters if self.init_search_axes == "auto" else self.init_search_axes

    def fit_in_memory(self, rows: np.ndarray) -> KMeansSegmenter:
        """Fit on the in-memory ``rows`` alone (the elbow's fit of each k): the seeding of ``init="sample"``
        with ``rows`` as the sample, whose polish (Lloyd over all of ``rows``) is then the fit, for either
        ``algorithm``; ``init`` does not apply. No Dask, and ``rows`` are left untouched. Sets the fitted
        attributes of ``fit`` but ``labels_``."""
        return self._fit_rows(rows, None)

    def fit_sweep(self, ks: Iterable[int], rows: np.ndarray) -> Iterator[KMeansSegmenter]:
        """:meth:`fit_in_memory` for each k of ``ks``, in threads; every k searches its seedings on the same
        rows, so their leading principal axes are computed once, for the k taking the most."""
        ks = list(ks)
        self._validate_params()
        rows = check_array(rows, dtype=[np.float64, np.float32])
        axes = min(max(clone(self).set_params(n_clusters=k)._search_axes() for k in ks), rows.shape[1])
        space = search_space(rows, self.init_search_size, axes, seeds(self.random_state, 1)[0])
        yield from map_in_threads(lambda k: clone(self).set_params(n_clusters=k)._fit_rows(rows, space), ks)

    def _fit_rows(self, rows: np.ndarray, space: tuple[np.ndarray, np.ndarray] | None) -> KMeansSegmenter:
        self._validate_params()
        rows = validated(self, rows, reset=True)
        if len(rows) < self.n_clusters:
            raise ValueError(f"n_samples={len(rows)} should be >= n_clusters={self.n_clusters}")
        n_init = _AUTO_N_INIT["sample"] if self.n_init == "auto" else self.n_init
        centres, n_iter = search_and_polish(rows, self.n_clusters, n_init, self.init_search_size,
                                            self._search_axes(), self.max_iter, self.tol,
                                            seeds(self.random_state, 1)[0], space, in_place=False)  # fmt: skip
        self.cluster_centers_ = np.asarray(centres, dtype=np.float64)
        self.n_iter_ = n_iter
        self.sse_ = float(min_squared_distances(rows, self.cluster_centers_).sum())
        self.n_features_in_ = rows.shape[1]
        return self

    def block_statistics(self, block: np.ndarray) -> np.ndarray:
        """The SSE of the block's rows to their nearest centre (a 1-element float64 array)."""
        return np.array([min_squared_distances(block, self.cluster_centers_).sum()])

    def _refine(
        self, X: da.Array, centers: np.ndarray | None, seed: int, tolerance: float
    ) -> tuple[np.ndarray, int, float | None]:
        """Centres, passes and SSE (None for minibatch, whose last epoch measures no fixed centres) of one
        refinement over all rows (k-means|| seeding when ``centers`` is None)."""
        if centers is None:
            centers = _daskml.kmeans_parallel_init(
                X,
                self.n_clusters,
                random_state=seed,
                max_iter=self.init_rounds,
                oversampling_factor=self.oversampling_factor * self.n_clusters,
                n_init=_CANDIDATE_N_INIT,
            )
        if self.algorithm == "kmeans||":
            return lloyd(X, centers, self.max_iter, tolerance)
        model = _daskml.incremental(
            MiniBatchKMeans(self.n_clusters, init=centers, n_init=1, compute_labels=False, random_state=seed)
        )
        block_orders = np.random.default_rng(seed)
        for epoch in range(1, self.max_iter + 1):
            model.set_params(random_state=int(block_orders.integers(0, SEED_LIMIT)))
            model.partial_fit(X)
            shift = float(np.sum((model.estimator_.cluster_centers_ - centers) ** 2))
            centers = model.estimator_.cluster_centers_.copy()
            logger.debug("minibatch epoch %d: squared centre shift %.3g", epoch, shift)
            if shift <= tolerance:
                break
        return centers, epoch, None

    def predict_block(self, block: np.ndarray) -> np.ndarray:
        """Nearest-centre labels (int32) of one in-memory block."""
        return nearest_centre(block, self.cluster_centers_)

    def predict(self, X: Any) -> da.Array | np.ndarray:
        """Nearest-centre labels of ``X``, int32: a lazy Dask array for Dask input, else NumPy."""
        check_is_fitted(self, "cluster_centers_")
        X = validated(self, X, reset=False)
        if is_lazy(X):
            return predict_segments(X, self.cluster_centers_)
        return nearest_centre(X, self.cluster_centers_)

    def fit_predict(self, X: Any, y: None = None, sample: np.ndarray | None = None) -> da.Array | np.ndarray:
        """``fit(X)``, then the labels of its rows (``labels_``)."""
        return self.fit(X, sample=sample).labels_

    def score(self, X: Any, y: None = None) -> float:
        """Minus the sum of squared distances of ``X``'s rows to their nearest centre (higher is better,
        as scikit-learn's ``KMeans.score``); one pass for Dask input."""
        check_is_fitted(self, "cluster_centers_")
        X = validated(self, X, reset=False)
        if is_lazy(X):
            return -sum_of_squared_distances(X, self.cluster_centers_)
        return -float(block_sse(X, self.cluster_centers_)[0])
