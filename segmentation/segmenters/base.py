"""The segmenter contract, its registry, and the per-block functions every segmenter shares.

A segmenter partitions PCA coordinates into ``n_clusters`` segments. Like the PCA solvers of
``decompose.py`` it is a scikit-learn estimator that works over row-blocked Dask arrays and brings only
small results (sums, centres) to the client:

- ``fit(X, sample=None)``: ``X`` the coordinates (Dask, or in memory), ``sample`` rows of ``X`` already drawn
  uniformly (in memory) to seed from; returns ``self``.
- ``predict(X)``: int32 labels, lazy for Dask input (``predict_block`` on each block), NumPy otherwise.
- ``centres_`` (also ``cluster_centers_``, scikit-learn's name): one row per segment, in PCA coordinates.
- ``score_``: the fitted objective, named by ``objective`` (``"sse"``: lower is better; ``"log_likelihood"``:
  higher is better).
- ``save(directory)`` / :func:`load`: JSON plus ``.npy`` files, never pickle.
- for the elbow: ``fit_sweep(ks, rows)``, a fit per k on in-memory rows only, and
  ``block_statistics(block)`` / ``figures_from_statistics``, the sums over one block that the elbow's
  figures are made of, so that :func:`statistics_over` scores every k in one pass over all rows.

A module of this package registers its class with :func:`register`; :func:`make_segmenter` builds one by
name. The package imports every module it holds, so a new segmenter is one new module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from numbers import Integral, Real
from pathlib import Path
from typing import Any, ClassVar

import dask
import dask.array as da
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin, clone
from sklearn.cluster import KMeans
from sklearn.utils.validation import check_is_fitted

from .._estimators import (
    SavedEstimator,
    as_row_blocked,
    is_lazy,
    load_fitted,
    map_in_threads,
    restore,
    tree_reduce,
    validated,
    with_known_row_chunks,
)

logger = logging.getLogger(__name__)

SEED_LIMIT = 2**31 - 1
# Rows made float64 at a time when rows are scored (5 MB at 311 components, so they stay in cache).
STATISTICS_ROWS = 2048


# ---------------------------------------------------------------- the contract


class Segmenter(SavedEstimator, ClusterMixin, BaseEstimator):
    """Base class of every segmenter (see the module docstring for the contract).

    A subclass implements ``fit`` (setting its ``_fitted`` attributes, ``cluster_centers_`` and ``sse_`` (the
    sum of squared distances of the rows to their segment's centre) among them) and
    ``predict_block``, and names its objective (``objective``) and the attribute holding it
    (``_score_attribute``). ``elbow_columns`` are extra per-k figures for the elbow table
    (:meth:`elbow_figures` of a fit, :meth:`figures_from_statistics` of a fit scored on other rows), and
    :meth:`recommend` picks k from that table. The elbow's methods (:meth:`fit_in_memory`,
    :meth:`fit_sweep`, :meth:`block_statistics`) have defaults built on ``fit`` and ``predict_block``; a
    subclass overrides them to be faster.
    """

    objective: ClassVar[str] = "sse"
    _score_attribute: ClassVar[str] = "sse_"
    elbow_columns: ClassVar[tuple[str, ...]] = ()
    # True when the class has ``predict_proba_block`` (membership probabilities per row).
    has_probability: ClassVar[bool] = False
    # True when ``fit_sweep`` fits once for every k: the elbow then seeds it as fully as a fit of one k.
    elbow_fits_once: ClassVar[bool] = False

    n_clusters: int
    random_state: int | None

    def fit(self, X: Any, y: None = None, sample: np.ndarray | None = None) -> Segmenter:
        raise NotImplementedError

    def predict_block(self, block: np.ndarray) -> np.ndarray:
        """Labels (int32) of one in-memory block of rows."""
        raise NotImplementedError

    @property
    def centres_(self) -> np.ndarray:
        """Segment centres in the coordinates fitted on, shape (n_clusters, n_features)."""
        check_is_fitted(self, "cluster_centers_")
        return self.cluster_centers_

    @property
    def score_(self) -> float:
        """The fitted objective (``objective`` names it)."""
        check_is_fitted(self, self._score_attribute)
        return float(getattr(self, self._score_attribute))

    def predict(self, X: Any) -> da.Array | np.ndarray:
        """Labels of ``X``, int32: a lazy Dask array (block by block) for Dask input, else NumPy."""
        check_is_fitted(self, "cluster_centers_")
        X = validated(self, X, reset=False)
        if is_lazy(X):
            return X.map_blocks(self.predict_block, drop_axis=1, dtype=np.int32)
        return self.predict_block(X)

    def fit_predict(self, X: Any, y: None = None, sample: np.ndarray | None = None) -> da.Array | np.ndarray:
        """``fit(X)``, then the labels of its rows."""
        return self.fit(X, sample=sample).predict(X)

    def elbow_figures(self) -> dict[str, float]:
        """The figures of ``elbow_columns`` for this fit (one row of the elbow table)."""
        return {}

    def fit_in_memory(self, rows: np.ndarray) -> Segmenter:
        """Fit on the in-memory ``rows`` alone, seeding from them too, on this process (no Dask cluster):
        how the elbow fits each k. Here ``fit(rows, sample=rows)`` on Dask's synchronous scheduler; it may
        centre ``rows`` in place for a while (scikit-learn's ``copy_x=False``)."""
        with dask.config.set(scheduler="sync"):
            return self.fit(rows, sample=rows)

    def fit_sweep(self, ks: Iterable[int], rows: np.ndarray) -> Iterator[Segmenter]:
        """Copies of this segmenter with ``n_clusters`` each of ``ks``, fitted on the in-memory ``rows``
        alone (:meth:`fit_in_memory`), yielded in the order of ``ks`` as they are done. Here each k is
        fitted on a copy of ``rows`` in threads (``map_in_threads``); Dask computations inside run on the
        synchronous scheduler, also for code run between the yields."""

        def fit(k: int) -> Segmenter:
            return clone(self).set_params(n_clusters=k).fit_in_memory(rows.copy())

        with dask.config.set(scheduler="sync"):
            yield from map_in_threads(fit, ks)

    def block_statistics(self, block: np.ndarray) -> np.ndarray:
        """Sums over the rows of one in-memory block that :meth:`figures_from_statistics` makes this fit's
        elbow figures of (1-D, float64; blocks' sums are added up). Here the SSE of the rows to their
        segment's centre."""
        block = np.asarray(block, dtype=np.float64)
        return np.array([np.square(block - self.centres_[self.predict_block(block)]).sum()])

    def figures_from_statistics(self, statistics: np.ndarray, n_rows: int) -> dict[str, float]:
        """This fit's row of the elbow table (``sse`` and ``elbow_columns``) on ``n_rows`` rows, from their
        :meth:`block_statistics` summed."""
        return {"sse": float(statistics[0])}

    @classmethod
    def recommend(cls, table: pd.DataFrame) -> int:
        """The recommended k of an elbow table (columns ``k``, ``sse`` and ``elbow_columns``): the SSE
        curve's elbow (:func:`recommend_k`)."""
        return recommend_k(table["k"], table["sse"])


# ---------------------------------------------------------------- the registry

# name -> (class, parameters fixed by the name)
_REGISTRY: dict[str, tuple[type[Segmenter], dict[str, Any]]] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, aliases: Iterable[str] = (), **fixed: Any) -> Callable[[type], type]:
    """Class decorator: make the class available to :func:`make_segmenter` as ``name`` (and ``aliases``),
    built with the ``fixed`` parameters. A class may be registered under several names."""

    def decorate(cls: type[Segmenter]) -> type[Segmenter]:
        if not (isinstance(cls, type) and issubclass(cls, Segmenter)):
            raise TypeError(f"{cls!r} is not a Segmenter subclass")
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"segmenter name {key!r} is already registered")
        _REGISTRY[name] = (cls, dict(fixed))
        _ALIASES.update({alias: name for alias in aliases})
        return cls

    return decorate


def algorithms() -> tuple[str, ...]:
    """Registered segmenter names (without aliases), in registration order."""
    return tuple(_REGISTRY)


def canonical_name(name: str) -> str:
    """The registered name ``name`` stands for (itself, or the name it is an alias of)."""
    name = _ALIASES.get(name, name)
    if name not in _REGISTRY:
        raise ValueError(f"unknown clustering algorithm {name!r}; valid choices are {', '.join(_REGISTRY)}")
    return name


def segmenter_class(name: str) -> type[Segmenter]:
    """The class registered as ``name``."""
    return _REGISTRY[canonical_name(name)][0]


def make_segmenter(name: str, **params: Any) -> Segmenter:
    """An unfitted segmenter by registered name, e.g. ``make_segmenter("gmm", n_clusters=8)``."""
    cls, fixed = _REGISTRY[canonical_name(name)]
    clashing = sorted(key for key in params if key in fixed and params[key] != fixed[key])
    if clashing:
        raise ValueError(f"{name!r} fixes {', '.join(f'{key}={fixed[key]!r}' for key in clashing)}")
    return cls(**{**params, **fixed})


def algorithm_name(segmenter: Segmenter) -> str:
    """The registered name a segmenter answers to (the first whose fixed parameters it has)."""
    params = segmenter.get_params()
    for name, (cls, fixed) in _REGISTRY.items():
        if type(segmenter) is cls and all(params.get(key) == value for key, value in fixed.items()):
            return name
    raise ValueError(f"{type(segmenter).__name__} is not registered")


def load(directory: str | Path) -> Segmenter:
    """A fitted segmenter saved with ``save(directory)``, of whichever registered class."""
    description = load_fitted(directory)
    classes = {cls.__name__: cls for cls, _ in _REGISTRY.values()}
    if description.get("estimator") not in classes:
        raise ValueError(
            f"{directory}: {description.get('estimator')!r} is not a saved segmenter "
            f"(one of {', '.join(sorted(classes))})"
        )
    return restore(classes[description["estimator"]], description)


# ---------------------------------------------------------------- validation


def check_int(name: str, value: Any, minimum: int) -> None:
    """``value`` must be an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_number(name: str, value: Any, minimum: float = 0.0) -> None:
    """``value`` must be a finite real number of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not minimum <= value < np.inf:
        raise ValueError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")


def check_random_state(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
        raise ValueError(f"random_state must be None or an int, got {value!r}")


def check_sample(sample: Any, n_clusters: int, n_features: int) -> None:
    if np.ndim(sample) != 2 or np.shape(sample)[1] != n_features or len(sample) < n_clusters:
        raise ValueError(
            f"sample must have at least n_clusters={n_clusters} rows of X's {n_features} "
            f"features, got shape {np.shape(sample)}"
        )


def check_centers(centers: Any, n_features: int) -> np.ndarray:
    centers = np.asarray(centers, dtype=np.float64)
    if centers.ndim != 2 or len(centers) == 0:
        raise ValueError(f"centers must be a non-empty 2-D array (k, n_features), got shape {centers.shape}")
    if centers.shape[1] != n_features:
        raise ValueError(f"centers have {centers.shape[1]} features; X has {n_features}")
    if not np.isfinite(centers).all():
        raise ValueError("centers contain NaN or infinite values")
    return centers


def without_empty_blocks(X: da.Array) -> da.Array:
    """``X`` (known row chunks) without empty blocks: scikit-learn's distance functions refuse them."""
    if min(X.chunks[0]) == 0:
        return X.rechunk({0: tuple(size for size in X.chunks[0] if size)})
    return X


# ---------------------------------------------------------------- per-block functions


def squared_distances(rows: np.ndarray, centres: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(start, chunk, squared)`` for each run of ``STATISTICS_ROWS`` rows: the rows made float64 and their
    squared Euclidean distances to every centre less ``|x|^2``, as ``|c|^2 - 2 x.c`` (one matrix product, so
    many centres cost little more than one: ``cdist`` was 2.7x slower at 119 centres and 2.6x at 8).
    Chunks of 2,048 rows stay in cache (twice as fast as all at once for 20,000 rows). k-means labels and
    scores rows with it only, so the last Lloyd pass and ``predict`` give the same labels to the bit."""
    centres = np.asarray(centres, dtype=np.float64)
    centre_norms, across = np.einsum("ij,ij->i", centres, centres), -2.0 * centres.T
    for start in range(0, len(rows), STATISTICS_ROWS):
        chunk = np.asarray(rows[start : start + STATISTICS_ROWS], dtype=np.float64)
        squared = chunk @ across
        squared += centre_norms
        yield start, chunk, squared


def nearest_centre(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each row of one in-memory block (int32; ties go to the lower index)."""
    labels = np.empty(len(X), dtype=np.int32)
    for start, chunk, squared in squared_distances(X, centers):
        labels[start : start + len(chunk)] = squared.argmin(axis=1)
    return labels


def min_squared_distances(rows: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each row to its nearest centre (float64; negative rounding residues of
    :func:`squared_distances` clipped to 0)."""
    nearest = np.empty(len(rows))
    for start, chunk, squared in squared_distances(rows, centres):
        nearest[start : start + len(chunk)] = squared.min(axis=1) + np.einsum("ij,ij->i", chunk, chunk)
    return np.maximum(nearest, 0.0)


def lloyd_block(block: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block's share of a Lloyd iteration against ``centres``: (sums of its rows per nearest centre
    (k, n_features), rows per centre (k,), [sum of squared distances to the nearest centre]), float64.
    The sums per centre are one matrix product with the rows' one-hot labels."""
    k = len(centres)
    sums, counts, sse = np.zeros(np.shape(centres)), np.zeros(k), 0.0
    for _, chunk, squared in squared_distances(block, centres):
        labels = squared.argmin(axis=1)
        at = np.arange(len(chunk))
        sse += np.maximum(squared[at, labels] + np.einsum("ij,ij->i", chunk, chunk), 0.0).sum()
        onehot = np.zeros((len(chunk), k))
        onehot[at, labels] = 1.0
        sums += onehot.T @ chunk
        counts += onehot.sum(axis=0)
    return sums, counts, np.array([sse])


def lloyd(X: da.Array, centres: np.ndarray, max_iter: int, tolerance: float) -> tuple[np.ndarray, int, float]:
    """Lloyd's k-means over the blocks of ``X`` from ``centres``: (centres, passes, their SSE).

    Each pass measures every row against the current centres and sums the rows per nearest centre
    (:func:`lloyd_block`, added up in a tree); the loop stops when the squared shift of the centres is at
    most ``tolerance`` (scikit-learn's rule), or after ``max_iter`` passes. The centres returned are the
    last ones measured, so their SSE and labels come from the same pass and no pass is spent on the SSE
    (scikit-learn's Lloyd moves them once more, then recomputes labels and inertia: one more pass over the
    data). A centre that loses all its rows stays where it was. NaN or infinite rows raise ``ValueError``.
    """
    blocks = without_empty_blocks(with_known_row_chunks(as_row_blocked(X))).to_delayed().ravel()
    centres, passes = np.asarray(centres, dtype=np.float64), 0
    while True:
        passes += 1
        shared = dask.delayed(centres, traverse=False)
        sums, counts, sse = block_sums([dask.delayed(lloyd_block)(b, shared) for b in blocks], add_up)
        if not np.isfinite(sse).all():
            raise ValueError("X contains NaN or infinite values")
        moved = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        shift = float(np.sum((moved - centres) ** 2))
        logger.debug("Lloyd pass %d: SSE %.6g, squared centre shift %.3g", passes, sse[0], shift)
        if shift <= tolerance or passes >= max_iter:
            return centres, passes, float(sse[0])
        centres = moved


def block_sse(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Sum of squared distances of one block's rows to their nearest centre, as a 1-element array."""
    return np.array([min_squared_distances(X, centers).sum()])


def lazy_sse(X: da.Array, centers: np.ndarray) -> da.Array:
    """:func:`block_sse` summed over the blocks of ``X``, lazily (a 0-d Dask array)."""
    per_block = X.map_blocks(
        block_sse, centers=centers, drop_axis=1, chunks=((1,) * X.numblocks[0],), dtype=np.float64
    )
    return per_block.sum()


def sum_of_squared_distances(X: Any, centers: Any) -> float:
    """Sum over rows of the squared Euclidean distance to the nearest centre, in one pass (float64)."""
    X = as_row_blocked(X)
    centers = check_centers(centers, X.shape[1])
    return float(lazy_sse(X, centers).compute())


def predict_segments(X: Any, centers: Any) -> da.Array:
    """Nearest-centre labels of ``X``, block by block; a lazy int32 Dask array of shape (n_rows,)."""
    X = as_row_blocked(X)
    centers = check_centers(centers, X.shape[1])
    return X.map_blocks(nearest_centre, centers=centers, drop_axis=1, dtype=np.int32)


def block_sums(parts: list, combine: Callable) -> Any:
    """Compute delayed per-block statistics and add them up (a tree of ``combine``), on the client."""
    return dask.compute(tree_reduce(parts, combine))[0]


def add_up(*parts: tuple) -> tuple:
    """Element-wise sum of tuples of arrays (sufficient statistics of several blocks)."""
    return tuple(sum(values[1:], values[0]) for values in zip(*parts, strict=True))


def block_statistics_of(segmenters: list[Segmenter], block: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every segmenter's :meth:`~Segmenter.block_statistics` of one block (add blocks' results up with
    :func:`add_up`). The rows are made float64 ``STATISTICS_ROWS`` at a time, once for all segmenters."""
    totals: list = [0.0] * len(segmenters)
    for start in range(0, max(len(block), 1), STATISTICS_ROWS):
        rows = np.asarray(block[start : start + STATISTICS_ROWS], dtype=np.float64)
        totals = [total + s.block_statistics(rows) for total, s in zip(totals, segmenters, strict=True)]
    return tuple(totals)


def statistics_over(X: Any, segmenters: list[Segmenter]) -> list[np.ndarray]:
    """Every segmenter's :meth:`~Segmenter.block_statistics` summed over all rows of ``X`` (Dask or in
    memory): one pass, however many segmenters (the elbow scores every k at once)."""
    X = without_empty_blocks(with_known_row_chunks(as_row_blocked(X)))
    # One key holds the segmenters, so the graph carries them once, not once per block.
    shared = dask.delayed(list(segmenters), traverse=False)
    parts = [dask.delayed(block_statistics_of)(shared, block) for block in X.to_delayed().ravel()]
    return list(block_sums(parts, add_up))


# ---------------------------------------------------------------- sampling and seeding


def seeds(random_state: int | None, n: int) -> list[int]:
    """``n`` seeds from ``random_state`` (the first is the same whatever ``n``)."""
    return [int(seed) for seed in np.random.default_rng(random_state).integers(0, SEED_LIMIT, n)]


def sample_positions(block_rows: Iterable[int], size: int, random_state: int | None) -> list[np.ndarray]:
    """``size`` rows drawn uniformly without replacement from blocks of ``block_rows`` rows: the positions
    taken in each block, in row order."""
    bounds = np.cumsum([0, *block_rows])
    n_rows = int(bounds[-1])
    rows = np.sort(np.random.default_rng(random_state).choice(n_rows, size=min(size, n_rows), replace=False))
    cuts = np.searchsorted(rows, bounds)
    return [rows[cuts[i] : cuts[i + 1]] - bounds[i] for i in range(len(bounds) - 1)]


def subsample(rows: np.ndarray, size: int, random_state: int | None) -> np.ndarray:
    """``size`` of ``rows`` drawn uniformly without replacement, in their order (all when there are fewer)."""
    if len(rows) <= size:
        return rows
    return rows[np.sort(np.random.default_rng(random_state).choice(len(rows), size, replace=False))]


def row_sample(X: da.Array, size: int, random_state: int | None) -> np.ndarray:
    """``size`` rows drawn uniformly without replacement, in row order. Each block gives its rows to the
    client directly (no worker gathers the whole sample)."""
    taken = sample_positions(X.chunks[0], size, random_state)
    blocks = X.to_delayed().ravel()
    pieces = [
        dask.delayed(np.take)(block, rows, axis=0)
        for block, rows in zip(blocks, taken, strict=True)
        if len(rows)
    ]
    return np.concatenate(dask.compute(*pieces))


def mean_variance(sample: np.ndarray, rows: int = 8192) -> float:
    """Mean over features of the sample's variance (float64, a few rows at a time: no float64 copy)."""
    mean = sample.mean(axis=0, dtype=np.float64)
    squares = sum(
        np.square(sample[start : start + rows] - mean).sum(axis=0) for start in range(0, len(sample), rows)
    )
    return float(np.mean(squares) / len(sample))


def leading_axes(X: np.ndarray, n_axes: int) -> np.ndarray:
    """Coordinates of the rows of ``X`` (centred) on its ``n_axes`` leading principal axes (float64); for
    more axes than features, the centred rows unrotated (the same distances, no eigendecomposition)."""
    X = np.asarray(X, dtype=np.float64)
    centred = X - X.mean(axis=0)
    if n_axes > X.shape[1]:
        return centred
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return centred @ vectors[:, ::-1][:, :n_axes]


def search_space(
    sample: np.ndarray, search_size: int, search_axes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``sample`` that :func:`search_and_polish` searches seedings on (``search_size`` drawn with
    ``seed``), and their coordinates on their ``search_axes`` leading principal axes, in the sample's
    precision (scikit-learn's k-means on float32 is over twice as fast as on float64). A search on fewer
    axes takes the leading columns, so the elbow computes this once for every k (with ``search_axes`` at
    most the features: :func:`leading_axes` leaves more unrotated)."""
    search = subsample(sample, search_size, seed)
    return search, leading_axes(search, search_axes).astype(search.dtype, copy=False)


def search_and_polish(
    sample: np.ndarray,
    k: int,
    n_init: int,
    search_size: int,
    search_axes: int,
    max_iter: int,
    tol: float,
    seed: int,
    space: tuple[np.ndarray, np.ndarray] | None = None,
    in_place: bool = True,
) -> tuple[np.ndarray, int]:
    """The best of ``n_init`` k-means++/Lloyd runs on ``search_size`` rows of ``sample`` projected on their
    ``search_axes`` leading principal axes, lifted back (the means of its clusters' rows in every
    feature) and refined by Lloyd on the whole sample: the centres, and the refinement's iterations.

    Many cheap restarts find the better of nearby optima more often than a few costly ones, and the
    leading axes carry the clusters' separation (the centres span roughly the first k - 1 principal axes:
    Ding and He, ICML 2004) while the trailing ones add noise to the k-means++ draws and cost.

    ``space``: :func:`search_space` of the same ``sample``, ``search_size`` and ``seed``, on at least
    ``search_axes`` axes, computed once for several k. ``in_place``: the sample is centred in place and
    restored during the refinement (scikit-learn's ``copy_x=False``, 125 MB saved at the default size), so
    no other thread may read it meanwhile."""
    search, projected = space or search_space(sample, search_size, search_axes, seed)
    if search_axes < projected.shape[1]:
        projected = projected[:, :search_axes]
    labels = KMeans(k, n_init=n_init, max_iter=max_iter, tol=tol, random_state=seed).fit(projected).labels_
    counts = np.bincount(labels, minlength=k)
    centers = (np.eye(k)[labels].T @ search) / np.maximum(counts, 1)[:, None]
    polish = KMeans(k, init=centers, n_init=1, max_iter=max_iter, tol=tol, copy_x=not in_place).fit(sample)
    return polish.cluster_centers_, int(polish.n_iter_)


def recommend_k(ks: Iterable[int], sse: Iterable[float]) -> int:
    """The elbow of an SSE curve: the k farthest below the chord joining its first and last points.

    This is the kneedle rule (the distance is taken on the curve normalised to the unit square, where it is
    proportional to the vertical gap used here). With no point below the chord, the smallest k.
    """
    ks = np.asarray(list(ks), dtype=np.float64)
    sse = np.asarray(list(sse), dtype=np.float64)
    if ks.ndim != 1 or ks.shape != sse.shape:
        raise ValueError(f"ks and sse must be 1-D of the same length, got {ks.shape} and {sse.shape}")
    if len(ks) < 3:
        raise ValueError(f"an elbow needs at least 3 values of k, got {len(ks)}")
    if not (np.isfinite(ks).all() and np.isfinite(sse).all()):
        raise ValueError("ks and sse must be finite")
    if not (np.diff(ks) > 0).all():
        raise ValueError("ks must be strictly increasing")
    chord = sse[0] + (sse[-1] - sse[0]) * (ks - ks[0]) / (ks[-1] - ks[0])
    return int(ks[int(np.argmax(chord - sse))])
