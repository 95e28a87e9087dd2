"""K-means segmenter, SSE, labels and elbow against scikit-learn and NumPy brute force."""

import json
import re

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from segmentation import cluster
from segmentation.cluster import (
    KMeansSegmenter,
    elbow,
    nearest_centre,
    predict_segments,
    recommend_k,
    sum_of_squared_distances,
)
from segmentation.segmenters import make_segmenter
from segmentation.segmenters.base import lloyd, lloyd_block, min_squared_distances, statistics_over


def unknown_chunks(X: da.Array) -> da.Array:
    """The array as a DataFrame would hand it over: row chunk sizes unknown (nan)."""
    return dd.from_dask_array(X).to_dask_array()


def brute_force_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    X, centres = np.asarray(X, dtype=np.float64), np.asarray(centres, dtype=np.float64)
    return ((X[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """5,000 x 10, six centres with enough overlap that a single k-means run can land in a worse optimum."""
    X, _ = make_blobs(n_samples=5000, n_features=10, centers=6, cluster_std=3.5, random_state=0)
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def blocked_blobs(blobs) -> da.Array:
    return da.from_array(blobs, chunks=(1000, 10))


@pytest.fixture(scope="module")
def reference_sse(blobs) -> float:
    reference = KMeans(n_clusters=6, n_init=10, random_state=0).fit(blobs.astype(np.float64))
    return float(brute_force_distances(blobs, reference.cluster_centers_).min(axis=1).sum())


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.normal(size=(700, 4)).astype(np.float32), rng.normal(size=(3, 4))


def test_sum_of_squared_distances_matches_brute_force(small):
    X, centres = small
    expected = brute_force_distances(X, centres).min(axis=1).sum()
    blocked = da.from_array(X, chunks=((300, 0, 400), 4))
    for array in (X, blocked, unknown_chunks(da.from_array(X, chunks=(250, 4)))):
        assert sum_of_squared_distances(array, centres) == pytest.approx(expected, rel=1e-12)


def test_predict_segments_matches_numpy_argmin(small):
    X, centres = small
    labels = predict_segments(unknown_chunks(da.from_array(X, chunks=(250, 4))), centres)
    assert isinstance(labels, da.Array) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels.compute(), brute_force_distances(X, centres).argmin(axis=1))
    assert nearest_centre(np.zeros((0, 4), dtype=np.float32), centres).shape == (0,)


def test_centres_are_checked(small):
    X, centres = small
    with pytest.raises(ValueError, match="centers have 3 features; X has 4"):
        sum_of_squared_distances(X, centres[:, :3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        predict_segments(X, np.full((2, 4), np.nan))


@pytest.mark.parametrize("init", cluster.INITS)
def test_kmeans_parallel_is_within_one_percent_of_sklearn(blocked_blobs, blobs, reference_sse, init):
    """Measured on these blobs: 1.0000 with either seeding (k-means|| with n_init=1 reached 1.22 once in 20
    seeds; three restarts, the default, never)."""
    segmenter = KMeansSegmenter(n_clusters=6, init=init, random_state=0).fit(blocked_blobs)
    assert segmenter.cluster_centers_.shape == (6, 10) and segmenter.cluster_centers_.dtype == np.float64
    assert segmenter.sse_ <= 1.01 * reference_sse
    expected_sse = brute_force_distances(blobs, segmenter.cluster_centers_).min(axis=1).sum()
    assert segmenter.sse_ == pytest.approx(expected_sse, rel=1e-10)
    assert 1 <= segmenter.n_iter_ <= segmenter.max_iter


@pytest.mark.parametrize(("init", "batch_size"), [("sample", None), ("sample", 400), ("k-means||", None)])
def test_minibatch_is_close_to_sklearn(blocked_blobs, reference_sse, init, batch_size):
    """Measured: at most 1.0005 x scikit-learn over 20 seeds. Mini-batch updates weight every batch by the
    running counts, so centres stop a little short of the Lloyd fixed point: a 0.5% bound."""
    segmenter = KMeansSegmenter(6, algorithm="minibatch", init=init, batch_size=batch_size, random_state=0)
    assert segmenter.fit(blocked_blobs).sse_ <= 1.005 * reference_sse


@pytest.fixture(scope="module")
def blobs_with_outliers() -> np.ndarray:
    """Six unit-spread clusters in 40 dimensions, plus 15 rows (0.5%) three times farther out than typical."""
    rng = np.random.default_rng(0)
    centres = np.zeros((6, 40))
    centres[:, :6] = 4.0 * np.eye(6)
    X = centres[rng.integers(6, size=3000)] + rng.normal(size=(3000, 40))
    outliers = rng.normal(size=(15, 40))
    X[:15] = 3.0 * np.sqrt(40) * outliers / np.linalg.norm(outliers, axis=1, keepdims=True)
    return X.astype(np.float32)


@pytest.mark.parametrize("algorithm", cluster.ALGORITHMS)
def test_outlying_rows_do_not_capture_centres(blobs_with_outliers, algorithm):
    """Why init="sample" is the default: k-means|| samples by squared distance, so a few outlying rows become
    centres of one-row clusters that Lloyd never leaves (dask-ml, 3 restarts: 1.03-1.06 x scikit-learn's SSE,
    smallest cluster 1 row, in every seed tried). Seeding on a uniform sample matches scikit-learn."""
    X = blobs_with_outliers
    reference = KMeans(n_clusters=6, n_init=10, random_state=0).fit(X.astype(np.float64))
    reference_sse = brute_force_distances(X, reference.cluster_centers_).min(axis=1).sum()
    blocked = da.from_array(X, chunks=(1000, 40))
    segmenter = KMeansSegmenter(6, algorithm=algorithm, random_state=0).fit(blocked)
    assert segmenter.sse_ <= 1.001 * reference_sse
    assert np.bincount(segmenter.predict(blocked).compute(), minlength=6).min() > 400
    parallel = KMeansSegmenter(6, init="k-means||", random_state=0).fit(blocked)
    assert (
        parallel.sse_ > 1.02 * reference_sse
    )  # if this fails, dask-ml's k-means|| improved: revisit the default


def test_sample_positions_draw_distinct_rows_block_by_block():
    blocks = [300, 0, 450, 250]
    taken = cluster.sample_positions(blocks, 400, random_state=1)
    assert [len(t) for t in taken][1] == 0 and sum(len(t) for t in taken) == 400
    starts = np.cumsum([0, *blocks[:-1]])
    rows = np.concatenate([start + t for start, t in zip(starts, taken, strict=True)])
    assert all((0 <= t).all() and (t < n).all() for t, n in zip(taken, blocks, strict=True))
    assert len(np.unique(rows)) == 400 and (np.diff(rows) > 0).all()
    # Uniform over the table: each block's share is close to its share of the rows.
    many = cluster.sample_positions(blocks, 1000 - 1, random_state=2)
    assert abs(len(many[2]) - 450 / 1000 * 999) <= 1
    assert cluster.sample_positions(blocks, 5000, random_state=0)[2].tolist() == list(range(450))


def test_a_given_sample_replaces_the_sampling_pass(blocked_blobs, blobs, reference_sse):
    sample = blobs[np.sort(np.random.default_rng(0).choice(len(blobs), 1500, replace=False))]
    segmenter = KMeansSegmenter(n_clusters=6, random_state=0).fit(blocked_blobs, sample=sample.copy())
    assert segmenter.sse_ <= 1.001 * reference_sse
    with pytest.raises(ValueError, match=r"sample must have at least n_clusters=6 rows of X's 10 features"):
        KMeansSegmenter(n_clusters=6).fit(blocked_blobs, sample=sample[:, :4])


def test_leading_axes_are_scikit_learn_pca_scores(blobs):
    from sklearn.decomposition import PCA

    ours = cluster.leading_axes(blobs, 3)
    theirs = PCA(3, svd_solver="full").fit_transform(blobs.astype(np.float64))
    signs = np.sign((ours * theirs).sum(axis=0))
    np.testing.assert_allclose(ours * signs, theirs, atol=1e-6 * np.abs(theirs).max())
    as_float64 = blobs.astype(np.float64)
    np.testing.assert_allclose(cluster.leading_axes(blobs, 50), as_float64 - as_float64.mean(axis=0))


def test_seeding_on_leading_axes_reaches_scikit_learn(blocked_blobs, reference_sse):
    """Ten features, six clusters: the search on 2 leading axes still lands in scikit-learn's optimum once
    the centres are lifted back and polished (the default, 4 axes per cluster, uses all ten)."""
    segmenter = KMeansSegmenter(n_clusters=6, init_search_axes=2, random_state=0).fit(blocked_blobs)
    assert segmenter.sse_ <= 1.001 * reference_sse


@pytest.mark.parametrize("init", cluster.INITS)
@pytest.mark.parametrize("algorithm", cluster.ALGORITHMS)
def test_same_random_state_same_result(blocked_blobs, algorithm, init):
    first = KMeansSegmenter(6, algorithm=algorithm, init=init, random_state=3, n_init=2).fit(blocked_blobs)
    second = KMeansSegmenter(6, algorithm=algorithm, init=init, random_state=3, n_init=2).fit(blocked_blobs)
    np.testing.assert_array_equal(first.cluster_centers_, second.cluster_centers_)
    assert first.sse_ == second.sse_ and first.n_iter_ == second.n_iter_


@pytest.mark.parametrize("algorithm", cluster.ALGORITHMS)
def test_unknown_chunks_and_numpy_input(blobs, algorithm):
    from_frame = unknown_chunks(da.from_array(blobs[:2000], chunks=(500, 10)))
    segmenter = KMeansSegmenter(4, algorithm=algorithm, random_state=0, n_init=1).fit(from_frame)
    labels = segmenter.predict(blobs[:2000])  # NumPy in, NumPy out
    assert isinstance(labels, np.ndarray) and labels.shape == (2000,)
    np.testing.assert_array_equal(labels, segmenter.predict(from_frame).compute())
    assert np.isnan(from_frame.chunks[0]).all()  # the caller's array is left as it was


def test_predict_labels_nearest_centre(blocked_blobs, blobs):
    segmenter = KMeansSegmenter(6, random_state=0, n_init=1).fit(blocked_blobs)
    labels = segmenter.predict(blocked_blobs)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(
        labels.compute(), brute_force_distances(blobs, segmenter.cluster_centers_).argmin(axis=1)
    )


def test_save_load_round_trip(blocked_blobs, tmp_path):
    segmenter = KMeansSegmenter(6, algorithm="minibatch", random_state=1, n_init=1, tol=1e-3).fit(
        blocked_blobs
    )
    segmenter.save(tmp_path / "kmeans")
    saved = json.loads((tmp_path / "kmeans" / "estimator.json").read_text())
    assert saved["params"]["algorithm"] == "minibatch" and saved["arrays"] == ["cluster_centers_"]
    loaded = cluster.load(tmp_path / "kmeans")
    assert loaded.get_params() == segmenter.get_params()
    np.testing.assert_array_equal(loaded.cluster_centers_, segmenter.cluster_centers_)
    assert (loaded.sse_, loaded.n_iter_, loaded.n_features_in_) == (segmenter.sse_, segmenter.n_iter_, 10)
    np.testing.assert_array_equal(
        loaded.predict(blocked_blobs).compute(), segmenter.predict(blocked_blobs).compute()
    )


def test_load_refuses_other_estimators(tmp_path):
    (tmp_path / "estimator.json").write_text(
        '{"estimator": "GramPCA", "params": {}, "attributes": {}, "arrays": []}'
    )
    with pytest.raises(ValueError, match="not a saved segmenter"):
        cluster.load(tmp_path)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_clusters": 0}, "n_clusters must be an int >= 1, got 0"),
        ({"n_clusters": 2.5}, "n_clusters must be an int >= 1"),
        ({"algorithm": "lloyd"}, re.escape("algorithm must be one of 'kmeans||', 'minibatch', got 'lloyd'")),
        ({"max_iter": 0}, "max_iter must be an int >= 1"),
        ({"tol": -1.0}, "tol must be a finite number >= 0"),
        ({"init_rounds": 0}, "init_rounds must be an int >= 1"),
        ({"oversampling_factor": 0}, "oversampling_factor must be a finite number > 0"),
        ({"n_init": 0}, "n_init must be an int >= 1"),
        ({"n_init": "many"}, "n_init must be an int >= 1"),
        ({"init": "random"}, re.escape("init must be one of 'sample', 'k-means||', got 'random'")),
        ({"init_sample_size": 5}, "init_sample_size must be an int >= 8, got 5"),
        ({"init_search_axes": 0}, "init_search_axes must be an int >= 1, got 0"),
        ({"batch_size": 100}, "batch_size applies to algorithm='minibatch' only"),
        ({"algorithm": "minibatch", "batch_size": 0}, "batch_size must be an int >= 1"),
        ({"random_state": np.random.RandomState(0)}, "random_state must be None or an int"),
        ({"n_clusters": 701}, "n_samples=700 should be >= n_clusters=701"),
    ],
)
def test_bad_parameters(small, params, match):
    with pytest.raises(ValueError, match=match):
        KMeansSegmenter(**params).fit(small[0])


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_non_finite_input_is_refused(small):
    X = small[0].copy()
    X[3, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        KMeansSegmenter(2).fit(da.from_array(X))
    with pytest.raises(ValueError, match="Input X contains infinity"):  # scikit-learn's validation
        KMeansSegmenter(2).fit(X)


def test_predict_needs_fit(small):
    with pytest.raises(Exception, match="not fitted"):
        KMeansSegmenter().predict(small[0])


@pytest.mark.parametrize(
    ("ks", "sse", "expected"),
    [
        (range(1, 11), [100, 60, 30, 10, 9, 8, 7, 6, 5, 4], 4),
        (range(2, 16), [1000 / k**0.2 if k < 6 else 1000 / 6**0.2 - (k - 6) for k in range(2, 16)], 6),
        ([2, 3, 5, 8, 13], [50.0, 20.0, 5.0, 4.0, 3.5], 5),
    ],
)
def test_recommend_k_finds_the_obvious_elbow(ks, sse, expected):
    assert recommend_k(ks, sse) == expected
    assert recommend_k(ks, [1e6 * s + 7 for s in sse]) == expected


def test_recommend_k_without_a_bend_and_bad_curves():
    assert recommend_k([2, 3, 4, 5], [4.0, 3.0, 2.0, 1.0]) == 2
    with pytest.raises(ValueError, match="at least 3 values of k"):
        recommend_k([2, 3], [2.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        recommend_k([2, 3, 4], [2.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        recommend_k([2, 4, 3], [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        recommend_k([2, 3, 4], [3.0, np.nan, 1.0])


@pytest.fixture(scope="module")
def five_clear_blobs() -> da.Array:
    """Five well-separated centres (pairwise distance about 17, unit spread): the elbow must be at 5."""
    centres = 12.0 * np.eye(5, 8)
    X, _ = make_blobs(n_samples=2500, centers=centres, cluster_std=1.0, random_state=0)
    return da.from_array(X.astype(np.float32), chunks=(500, 8))


@pytest.mark.parametrize("algorithm", cluster.ALGORITHMS)
def test_elbow_recommends_the_true_number_of_clusters(five_clear_blobs, algorithm):
    table = elbow(
        five_clear_blobs, ks=range(2, 10), algorithm=algorithm, random_state=0, silhouette_sample=800
    )
    assert list(table.columns) == ["k", "sse", "silhouette", "recommended"]
    assert table["k"].tolist() == list(range(2, 10))
    assert table["recommended"].sum() == 1
    assert table.loc[table["recommended"], "k"].item() == 5
    assert table.loc[table["silhouette"].idxmax(), "k"] == 5
    expected = KMeansSegmenter(5, algorithm=algorithm, random_state=0).fit(five_clear_blobs).sse_
    assert table.loc[table["k"] == 5, "sse"].item() == pytest.approx(expected)


def test_elbow_without_silhouette_and_bad_ks(five_clear_blobs):
    table = elbow(five_clear_blobs, ks=[2, 5, 8], random_state=0, silhouette_sample=None, n_init=1)
    assert table["silhouette"].isna().all()
    assert table.loc[table["recommended"], "k"].item() == 5
    with pytest.raises(ValueError, match="at least 3 strictly increasing"):
        elbow(five_clear_blobs, ks=[3, 2, 4])


# ---------------------------------------------------------------- the elbow: fits on the sample, one pass


def test_min_squared_distances_match_brute_force():
    rng = np.random.default_rng(0)
    rows = (100.0 + rng.normal(size=(5000, 7))).astype(np.float32)  # far from the origin; several chunks
    centres = 100.0 + rng.normal(size=(5, 7))
    expected = brute_force_distances(rows, centres).min(axis=1)
    np.testing.assert_allclose(min_squared_distances(rows, centres), expected, rtol=1e-9, atol=1e-9)
    assert min_squared_distances(rows[:0], centres).shape == (0,)


def test_lloyd_takes_scikit_learns_steps_and_returns_the_sse_of_the_centres_it_returns(blobs, blocked_blobs):
    """From the same start, each pass moves the centres as one iteration of scikit-learn's Lloyd; the SSE
    returned is the exact SSE of the centres returned (no extra pass), and a converged run keeps them."""
    X = blobs.astype(np.float64)
    start = X[[0, 1, 2, 3, 4, 5]]
    for passes in (1, 2, 5):  # max_iter passes measure max_iter centres: the start and passes - 1 moves
        centres, n_passes, sse = lloyd(blocked_blobs, start, max_iter=passes, tolerance=0.0)
        assert n_passes == passes
        if passes > 1:
            reference = KMeans(6, init=start, n_init=1, max_iter=passes - 1, tol=0.0, algorithm="lloyd").fit(
                X
            )
            # scikit-learn moves the centres max_iter times, then relabels: the centres of its last move
            np.testing.assert_allclose(centres, reference.cluster_centers_, rtol=1e-6, atol=1e-6)
        assert sse == pytest.approx(brute_force_distances(X, centres).min(axis=1).sum(), rel=1e-9)
    converged, n_passes, sse = lloyd(
        blocked_blobs, start, max_iter=300, tolerance=1e-4 * X.var(axis=0).mean()
    )
    reference = KMeans(6, init=start, n_init=1, max_iter=300, tol=1e-4, algorithm="lloyd").fit(X)
    assert n_passes < 300
    assert sse == pytest.approx(reference.inertia_, rel=1e-4)
    np.testing.assert_allclose(converged, reference.cluster_centers_, atol=0.05)


def test_lloyd_block_sums_counts_and_sse_by_brute_force_and_lloyd_keeps_an_empty_centre(small):
    rows, centres = small
    sums, counts, sse = lloyd_block(np.vstack([rows] * 3), centres)  # several STATISTICS_ROWS chunks
    distances = brute_force_distances(rows, centres)
    labels = distances.argmin(axis=1)
    for c in range(len(centres)):
        np.testing.assert_allclose(sums[c], 3 * rows[labels == c].astype(np.float64).sum(axis=0), rtol=1e-9)
        assert counts[c] == 3 * (labels == c).sum()
    assert sse[0] == pytest.approx(3 * distances.min(axis=1).sum(), rel=1e-9)
    far = np.vstack([centres, np.full((1, rows.shape[1]), 1e3)])  # no row is nearest to it
    moved, _, _ = lloyd(da.from_array(rows, chunks=100), far, max_iter=2, tolerance=0.0)
    np.testing.assert_array_equal(moved[-1], far[-1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        lloyd(
            da.from_array(np.where(np.arange(700)[:, None] == 5, np.nan, rows), chunks=100), centres, 5, 0.0
        )


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch", "bisecting"])
def test_one_pass_scores_every_k_as_brute_force_on_all_rows(blobs, blocked_blobs, algorithm):
    """Each k is fitted on a sample; the one pass over all rows gives each fit's SSE on every row, as
    NumPy computes it from the same centres (bisecting k-means: to the leaf each row reaches)."""
    sample = blobs[::4]
    ks = [2, 3, 6, 9]
    fitted = list(make_segmenter(algorithm, random_state=0, n_init=2).fit_sweep(ks, sample))
    assert [segmenter.n_clusters for segmenter in fitted] == ks
    statistics = statistics_over(blocked_blobs, fitted)
    for segmenter, totals in zip(fitted, statistics, strict=True):
        centres = segmenter.cluster_centers_
        if algorithm == "bisecting":
            labels = segmenter.predict(blobs)
            expected = np.square(blobs.astype(np.float64) - centres[labels]).sum()
        else:
            expected = brute_force_distances(blobs, centres).min(axis=1).sum()
        assert segmenter.figures_from_statistics(totals, len(blobs)) == {
            "sse": pytest.approx(expected, rel=1e-9)
        }
        # fitted on the sample alone: its SSE there is the fit's own
        assert segmenter.sse_ == pytest.approx(
            np.square(sample.astype(np.float64) - centres[segmenter.predict(sample)]).sum(), rel=1e-6
        )
    table = elbow(
        blocked_blobs, ks, algorithm, random_state=0, sample=sample, silhouette_sample=None, n_init=2
    )
    expected = [brute_force_distances(blobs, s.cluster_centers_).min(axis=1).sum() for s in fitted]
    if algorithm != "bisecting":
        np.testing.assert_allclose(table["sse"], expected, rtol=1e-9)


def test_the_sweep_shares_the_search_axes_and_fits_as_each_k_alone():
    """Twelve features, the clusters in the last four: k = 2..4 search on 8, 12 and 16 axes, so one
    projection on all twelve leading axes (rotated, so that k = 2 takes the leading eight, not the first
    eight features, which are noise) serves every k, with the fits of each k alone."""
    rng = np.random.default_rng(1)
    structure, _ = make_blobs(n_samples=3000, n_features=4, centers=6, cluster_std=1.0, random_state=1)
    X = np.hstack([rng.normal(size=(3000, 8)), 3 * structure]).astype(np.float32)
    prototype = KMeansSegmenter(random_state=0, n_init=1, init_search_size=1000)
    for swept in prototype.fit_sweep([2, 3, 4], X):
        alone = KMeansSegmenter(swept.n_clusters, random_state=0, n_init=1, init_search_size=1000)
        alone.fit_in_memory(X)
        np.testing.assert_allclose(swept.cluster_centers_, alone.cluster_centers_, rtol=1e-5, atol=1e-5)
        assert swept.sse_ == pytest.approx(alone.sse_, rel=1e-9)


def test_silhouettes_of_every_labelling_at_once_match_scikit_learn(blobs, monkeypatch):
    from sklearn.metrics import silhouette_score

    monkeypatch.setattr(cluster, "SILHOUETTE_BLOCK", 128)  # blocks above the diagonal, and a short last one
    rows = blobs[:600]
    labellings = [KMeans(k, n_init=1, random_state=0).fit_predict(rows) for k in (2, 5, 9)]
    singleton = labellings[1].copy()
    singleton[0] = 7  # a cluster of one row: its silhouette is 0
    labellings += [singleton, np.zeros(len(rows), dtype=int)]
    scores = cluster.silhouettes(rows, labellings)
    expected = [silhouette_score(rows, labels) for labels in labellings[:4]]
    np.testing.assert_allclose(scores[:4], expected, rtol=1e-6)
    assert np.isnan(scores[4])  # one cluster


@pytest.fixture(scope="module")
def six_planted() -> tuple[da.Array, np.ndarray]:
    """30,000 rows in 10 features from six planted centres (pairwise distance about 14, unit spread), and a
    4,000-row sample of them."""
    X, _ = make_blobs(n_samples=30_000, centers=10.0 * np.eye(6, 10), cluster_std=1.0, random_state=4)
    X = X.astype(np.float32)
    return da.from_array(X, chunks=(7000, 10)), X[
        np.random.default_rng(0).choice(len(X), 4000, replace=False)
    ]


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch", "bisecting", "gmm"])
def test_the_elbow_recommends_the_planted_k(six_planted, algorithm):
    X, sample = six_planted
    params = {"covariance_type": "diag"} if algorithm == "gmm" else {}
    table = elbow(X, range(2, 12), algorithm, random_state=0, sample=sample, silhouette_sample=1000,
                  **cluster.ELBOW_SEARCH, **params)  # fmt: skip
    assert table.loc[table["recommended"], "k"].item() == 6
    assert table.loc[table["silhouette"].idxmax(), "k"] == 6
