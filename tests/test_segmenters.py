"""The segmenter registry and its algorithms against scikit-learn: Gaussian mixture, bisecting k-means,
save/load, a toy segmenter registered from one module, and the deprecated ``kmeans:`` job section."""

from __future__ import annotations

import json
import logging

import dask.array as da
import numpy as np
import pytest
from sklearn.cluster import BisectingKMeans
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture

from segmentation import cluster, segmenters
from segmentation.config import ConfigError, load_job
from segmentation.segmenters import Segmenter, load, make_segmenter, register
from segmentation.segmenters.base import nearest_centre, statistics_over


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """4,000 x 6, five centres of unequal spread (a mixture with unequal covariances)."""
    X, _ = make_blobs(4000, n_features=6, centers=5, cluster_std=[1.0, 2.0, 1.5, 0.8, 2.5], random_state=0)
    return X


def blocked(X: np.ndarray) -> da.Array:
    return da.from_array(X, chunks=(700, -1))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_log_likelihood_matches_scikit_learn_from_the_same_start(blobs, covariance_type):
    ours = make_segmenter("gmm", n_clusters=5, covariance_type=covariance_type, random_state=0)
    ours.fit(blocked(blobs), sample=blobs)
    weights, means, covariances = ours.initial_parameters(blobs)
    precisions = 1 / covariances if covariance_type == "diag" else np.linalg.inv(covariances)
    reference = GaussianMixture(
        5, covariance_type=covariance_type, weights_init=weights, means_init=means, precisions_init=precisions
    ).fit(blobs)
    mean_log_likelihood = ours.score_ / len(blobs)
    print(
        f"{covariance_type}: log-likelihood per row {mean_log_likelihood:.6f}, scikit-learn {reference.score(blobs):.6f}"
    )
    assert ours.objective == "log_likelihood"
    assert mean_log_likelihood == pytest.approx(reference.score(blobs), rel=0.01)
    assert ours.bic_ == pytest.approx(reference.bic(blobs), rel=0.01)
    np.testing.assert_array_equal(ours.predict(blobs), reference.predict(blobs))
    probabilities = ours.predict_proba(blocked(blobs)).compute()
    np.testing.assert_allclose(probabilities, reference.predict_proba(blobs), atol=1e-4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    expected_sse = np.square(blobs - ours.centres_[probabilities.argmax(axis=1)]).sum()
    assert ours.sse_ == pytest.approx(expected_sse)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_gmm_scored_in_one_pass_as_scikit_learn_scores_the_same_mixture(blobs, covariance_type):
    """The elbow's per-k figures of mixtures fitted on a sample, scored on every row in one pass: the
    log-likelihood and BIC scikit-learn gives the same parameters, and the SSE to the most probable mean."""
    ks = [2, 5, 7]
    prototype = make_segmenter("gmm", covariance_type=covariance_type, random_state=0, n_init=2)
    fitted = list(prototype.fit_sweep(ks, blobs[::3]))
    statistics = statistics_over(blocked(blobs), fitted)
    for k, ours, totals in zip(ks, fitted, statistics, strict=True):
        reference = GaussianMixture(k, covariance_type=covariance_type)
        reference.weights_, reference.means_ = ours.weights_, ours.means_
        reference.covariances_, reference.precisions_cholesky_ = ours.covariances_, ours.precisions_cholesky_
        figures = ours.figures_from_statistics(totals, len(blobs))
        assert ours.n_clusters == k and ours.n_rows_ == len(blobs[::3])
        assert figures["log_likelihood"] == pytest.approx(reference.score_samples(blobs).sum(), rel=1e-9)
        assert figures["bic"] == pytest.approx(reference.bic(blobs), rel=1e-9)
        expected_sse = np.square(blobs - ours.means_[reference.predict(blobs)]).sum()
        assert figures["sse"] == pytest.approx(expected_sse, rel=1e-9)
    table = cluster.elbow(blocked(blobs), ks, "gmm", random_state=0, sample=blobs[::3], silhouette_sample=None,
                          covariance_type=covariance_type, n_init=2)  # fmt: skip
    expected = [
        f.figures_from_statistics(t, len(blobs))["bic"] for f, t in zip(fitted, statistics, strict=True)
    ]
    np.testing.assert_allclose(table["bic"], expected, rtol=1e-12)


def test_bisecting_cut_after_its_first_splits_is_the_fit_of_fewer_clusters(blobs):
    """The elbow fits bisecting k-means once, at the largest k, and cuts the tree for the others."""
    sample = blobs[::2]
    deep = make_segmenter("bisecting", n_clusters=7, random_state=0).fit(blocked(blobs), sample=sample)
    for k in (1, 3, 7):
        cut = deep.first_splits(k)
        alone = make_segmenter("bisecting", n_clusters=k, random_state=0, refine=False)
        alone.fit(blocked(blobs), sample=sample)
        assert cut.tree_ == alone.tree_ and cut.split_passes_ == alone.split_passes_
        assert (cut.n_clusters, cut.n_iter_, cut.leaves_) == (k, alone.n_iter_, alone.leaves_)
        np.testing.assert_array_equal(cut.cluster_centers_, alone.cluster_centers_)
        assert cut.sse_ == alone.sse_
        np.testing.assert_array_equal(cut.predict(blobs), alone.predict(blobs))
    with pytest.raises(ValueError, match="k=8 is more than the 7 clusters fitted"):
        deep.first_splits(8)


def test_gmm_without_a_sample_draws_one(blobs):
    ours = make_segmenter("gmm", n_clusters=5, covariance_type="diag", random_state=0, init_sample_size=1000)
    reference = GaussianMixture(5, covariance_type="diag", n_init=3, random_state=0).fit(blobs)
    assert ours.fit(blocked(blobs)).score_ / len(blobs) == pytest.approx(reference.score(blobs), rel=0.01)


@pytest.mark.parametrize("k", [3, 6])
@pytest.mark.parametrize("refine", [False, True])
def test_bisecting_sse_within_two_percent_of_scikit_learn(blobs, k, refine):
    """Unrefined, scikit-learn's algorithm; refined, Lloyd from its leaves can only lower the SSE."""
    ours = make_segmenter("bisecting", n_clusters=k, random_state=0, refine=refine)
    ours.fit(blocked(blobs), sample=blobs[::2])
    reference = BisectingKMeans(k, random_state=0).fit(blobs)
    print(f"k={k}: bisecting SSE {ours.sse_:.6g}, scikit-learn {reference.inertia_:.6g}")
    assert ours.objective == "sse" and ours.score_ == ours.sse_
    assert ours.sse_ <= 1.02 * reference.inertia_
    labels = ours.predict(blocked(blobs)).compute()
    assert ours.sse_ == pytest.approx(np.square(blobs - ours.centres_[labels]).sum())
    assert len(ours.tree_) == k - 1 and ours.tree_[0][:3] == [0, 1, 2]
    assert ours.tree_[0][3] == pytest.approx(np.square(blobs - blobs.mean(axis=0)).sum())
    split = {parent for parent, *_ in ours.tree_}
    assert sorted(ours.leaves_) == sorted(set(range(2 * k - 1)) - split)
    if refine:
        as_split = make_segmenter("bisecting", n_clusters=k, random_state=0, refine=False)
        as_split.fit(blocked(blobs), sample=blobs[::2])
        assert ours.tree_ == as_split.tree_ and ours.refine_passes_ >= 1
        assert ours.sse_ <= as_split.sse_ * (1 + 1e-9)
        np.testing.assert_array_equal(
            labels, np.square(blobs[:, None] - ours.centres_).sum(axis=2).argmin(axis=1)
        )


@pytest.mark.parametrize(
    ("name", "params"),
    [("kmeans", {}), ("minibatch", {}), ("gmm", {"covariance_type": "full"}), ("bisecting", {})],
)
def test_save_load_round_trip_gives_identical_predictions(blobs, tmp_path, name, params):
    fitted = make_segmenter(name, n_clusters=4, random_state=1, **params).fit(blocked(blobs), sample=blobs)
    fitted.save(tmp_path / name)
    assert not list((tmp_path / name).glob("*.pkl"))
    json.loads((tmp_path / name / "estimator.json").read_text())
    loaded = load(tmp_path / name)
    assert type(loaded) is type(fitted) and segmenters.algorithm_name(loaded) == name
    np.testing.assert_array_equal(loaded.predict(blocked(blobs)).compute(), fitted.predict(blobs))
    assert loaded.score_ == fitted.score_
    np.testing.assert_array_equal(loaded.cluster_centers_, fitted.centres_)


def test_unknown_algorithm_and_fixed_parameters():
    with pytest.raises(ValueError, match="unknown clustering algorithm 'kmedoids'; valid choices are"):
        make_segmenter("kmedoids")
    with pytest.raises(ValueError, match="'minibatch' fixes algorithm='minibatch'"):
        make_segmenter("minibatch", algorithm="kmeans||")
    assert make_segmenter("kmeans||").algorithm == "kmeans||"  # the old name still builds k-means
    with pytest.raises(ValueError, match="covariance_type must be one of 'full', 'diag', got 'tied'"):
        make_segmenter("gmm", covariance_type="tied").fit(np.zeros((10, 2)))


class _Toy(Segmenter):
    """A toy segmenter: k equal-width bands of the first coordinate."""

    _fitted = ("cluster_centers_", "edges_", "sse_", "n_features_in_")

    def __init__(self, n_clusters: int = 2, random_state: int | None = None):
        self.n_clusters = n_clusters
        self.random_state = random_state

    def fit(self, X, y=None, sample=None):
        X = np.asarray(X)
        self.n_features_in_ = X.shape[1]
        self.edges_ = np.linspace(X[:, 0].min(), X[:, 0].max(), self.n_clusters + 1)[1:-1]
        labels = self.predict_block(X)
        self.cluster_centers_ = np.stack([X[labels == i].mean(axis=0) for i in range(self.n_clusters)])
        self.sse_ = float(np.square(X - self.cluster_centers_[labels]).sum())
        return self

    def predict_block(self, block):
        return np.searchsorted(self.edges_, np.asarray(block)[:, 0]).astype(np.int32)


def test_a_segmenter_registered_from_one_module_is_usable_everywhere(blobs, tmp_path, monkeypatch):
    monkeypatch.setattr(segmenters.base, "_REGISTRY", dict(segmenters.base._REGISTRY))
    register("toy")(_Toy)
    assert "toy" in segmenters.algorithms()
    toy = make_segmenter("toy", n_clusters=3).fit(blobs)
    np.testing.assert_array_equal(toy.predict(blocked(blobs)).compute(), toy.predict(blobs))
    toy.save(tmp_path / "toy")
    np.testing.assert_array_equal(load(tmp_path / "toy").predict(blobs), toy.predict(blobs))
    table = cluster.elbow(blocked(blobs), ks=[2, 3, 4], algorithm="toy", silhouette_sample=500, sample=blobs)
    assert table["k"].tolist() == [2, 3, 4] and table["recommended"].sum() == 1
    job = tmp_path / "job.yml"
    job.write_text("inputs: {population: a.csv, customers: b.csv}\nclustering: {algorithm: toy, k: 3}\n")
    assert load_job(job).clustering.algorithm == "toy"


def test_elbow_for_gmm_adds_log_likelihood_and_bic_and_recommends_the_lowest_bic():
    X, _ = make_blobs(2000, centers=12.0 * np.eye(4, 5), cluster_std=1.0, random_state=0)
    table = cluster.elbow(
        blocked(X), ks=[2, 3, 4, 5, 6], algorithm="gmm", random_state=0, silhouette_sample=500,
        covariance_type="diag",
    )  # fmt: skip
    assert list(table.columns) == ["k", "sse", "silhouette", "log_likelihood", "bic", "recommended"]
    assert table.loc[table["recommended"], "k"].item() == 4 == table.loc[table["bic"].idxmin(), "k"]
    assert table["log_likelihood"].is_monotonic_increasing


def test_clustering_section_and_the_deprecated_kmeans_section(tmp_path, caplog):
    job = tmp_path / "job.yml"
    inputs = "inputs: {population: a.csv, customers: b.csv}\n"
    job.write_text(inputs + "clustering: {algorithm: gmm, k: 4, covariance_type: diag}\n")
    config = load_job(job)
    assert (config.clustering.algorithm, config.clustering.k, config.clustering.covariance_type) == (
        "gmm",
        4,
        "diag",
    )
    job.write_text(inputs + "kmeans: {algorithm: 'kmeans||', k: 5, k_max: 9}\n")
    with caplog.at_level(logging.WARNING, logger="segmentation.config"):
        config = load_job(job, {"clustering.k_min": 3})
    assert (config.clustering.algorithm, config.clustering.k, config.clustering.k_min) == ("kmeans||", 5, 3)
    assert config.clustering.k_max == 9
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == f"{job}: the 'kmeans:' section is deprecated; rename it 'clustering:'"
    job.write_text(inputs + "clustering: {algorithm: kmedoids}\n")
    with pytest.raises(
        ConfigError, match="clustering.algorithm must be one of bisecting, gmm, kmeans, .*'kmedoids'"
    ):
        load_job(job)


def test_nearest_centre_stays_importable_from_cluster(blobs):
    centres = blobs[:3]
    np.testing.assert_array_equal(cluster.nearest_centre(blobs, centres), nearest_centre(blobs, centres))
