import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info

from segmentation._estimators import map_in_threads
from segmentation.stability import (
    COLUMNS,
    best_match_jaccard,
    bootstrap_jaccard,
    kmeans_fit_predict,
    recommend_stable_k,
    segment_stability,
    with_stability,
)


@pytest.fixture(scope="module")
def planted():
    rows, truth = make_blobs(n_samples=1500, centers=5, n_features=6, cluster_std=1.0, random_state=3)
    return rows, truth


def test_planted_segments_are_stable(planted):
    rows, truth = planted
    fit_predict = kmeans_fit_predict(5, random_state=0)
    table = segment_stability(rows, fit_predict(rows), fit_predict, bootstraps=20, random_state=1)
    assert list(table.columns) == COLUMNS
    assert len(table) == 5
    assert (table["jaccard_mean"] >= 0.85).all(), table
    assert (table["stability"] == "stable").all()
    assert (table["jaccard_low"] <= table["jaccard_mean"]).all()
    assert (table["jaccard_mean"] <= table["jaccard_high"]).all()


def test_random_partition_is_unstable():
    rows = np.random.default_rng(0).uniform(size=(1200, 4))
    labels = np.random.default_rng(1).integers(0, 4, len(rows))  # unrelated to any structure
    table = segment_stability(
        rows, labels, kmeans_fit_predict(4, random_state=0), bootstraps=20, random_state=2
    )
    assert (table["jaccard_mean"] < 0.6).all(), table
    assert (table["stability"] == "unstable").all()


def test_any_clusterer_can_refit(planted):
    rows, truth = planted
    calls = []

    def gmm(sample: np.ndarray) -> np.ndarray:
        calls.append(len(sample))
        return GaussianMixture(5, random_state=0).fit_predict(sample)

    table = segment_stability(rows, truth, gmm, bootstraps=3, random_state=0)
    assert calls == [len(rows)] * 3
    assert (table["jaccard_mean"] >= 0.85).all()


def test_best_match_jaccard_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1])
    refit = np.array([5, 5, 7, 7, 7, 7])
    # segment 0 vs cluster 5: 2 shared of 3 -> 2/3; segment 1 vs cluster 7: 3 of 4 -> 3/4
    assert best_match_jaccard(labels, refit, np.array([0, 1, 2])) == pytest.approx(
        [2 / 3, 3 / 4, np.nan], nan_ok=True
    )


@pytest.mark.parametrize(
    ("stability", "expected"),
    [
        ([0.9, 0.8, 0.7, 0.5, 0.4], 4),  # the elbow's pick (4) is stable enough: kept
        ([0.9, 0.7, 0.3, 0.5, 0.4], 3),  # 4 is unstable: the nearest stable k, the smaller on a tie
        ([0.5, 0.5, 0.3, 0.5, 0.7], 6),
        ([0.5, 0.5, 0.3, 0.5, 0.4], 4),  # none stable: the elbow's pick
    ],
)
def test_recommend_stable_k(stability, expected):
    elbow = pd.DataFrame({"k": [2, 3, 4, 5, 6], "recommended": [False, False, True, False, False]})
    assert recommend_stable_k(elbow.assign(stability=stability)) == expected


def test_with_stability_moves_the_recommendation_to_a_stable_k(planted):
    rows, _ = planted
    # an elbow that recommends k = 12 on data with 5 planted segments: 12 splits them arbitrarily
    elbow = pd.DataFrame({"k": [3, 5, 12], "sse": [3.0, 2.0, 1.0], "recommended": [False, False, True]})
    result = with_stability(elbow, rows, bootstraps=5, random_state=0).set_index("k")
    assert result.loc[5, "stability"] >= 0.85
    assert result.loc[12, "stability"] < 0.6
    assert result["recommended_by_sse"].tolist() == [False, False, True]
    assert result["recommended"].tolist() == [False, True, False]


def test_refits_in_threads_give_the_sequential_result(planted):
    rows, _ = planted
    fit_predict = kmeans_fit_predict(7, random_state=0)  # 7 for 5 planted segments: not all Jaccards are 1
    labels = fit_predict(rows)
    segments, jaccards = bootstrap_jaccard(rows, None, fit_predict, bootstraps=6, random_state=2)
    rng = np.random.default_rng(2)
    for b in range(6):
        drawn = rng.integers(0, len(rows), len(rows))
        distinct, first = np.unique(drawn, return_index=True)
        expected = best_match_jaccard(labels[distinct], fit_predict(rows[drawn])[first], segments)
        np.testing.assert_array_equal(jaccards[b], expected)
    assert (jaccards < 1).any()


def test_map_in_threads_keeps_the_order_and_gives_each_thread_one_core():
    def threads(item: int) -> tuple[int, set]:
        return item, {pool["num_threads"] for pool in threadpool_info()}

    before = threadpool_info()
    results = list(map_in_threads(threads, range(6)))
    assert [item for item, _ in results] == list(range(6))
    assert all(counts == {1} for _, counts in results)
    assert threadpool_info() == before
