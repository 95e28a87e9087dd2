"""PCA solvers against scikit-learn's exact PCA on a small low-rank-plus-noise sample."""

import json

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pytest
from sklearn.decomposition import PCA

from segmentation import decompose
from segmentation.decompose import (
    GramPCA,
    IncrementalPCA,
    TsqrPCA,
    flip_signs,
    make_pca,
    mean_and_scatter,
    n_components_for_variance,
)

SOLVERS = ["gram", "incremental", "tsqr"]
N_ROWS, N_FEATURES, RANK = 3000, 40, 6


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    """Rank-6 structure with distinct variances, isotropic noise and a non-zero mean, as float32."""
    rng = np.random.default_rng(0)
    loadings = rng.normal(size=(RANK, N_FEATURES)) * np.linspace(4.0, 1.5, RANK)[:, None]
    signal = rng.normal(size=(N_ROWS, RANK)) @ loadings
    return (signal + 0.5 * rng.normal(size=(N_ROWS, N_FEATURES)) + 3.0).astype(np.float32)


@pytest.fixture(scope="module")
def reference(X) -> PCA:
    return PCA(svd_solver="full").fit(X.astype(np.float64))


def unknown_chunks(X: da.Array) -> da.Array:
    """The array as a DataFrame would hand it over: row chunk sizes unknown (nan)."""
    return dd.from_dask_array(X).to_dask_array()


def as_input(X: np.ndarray, kind: str):
    if kind == "numpy":
        return X
    blocked = da.from_array(X, chunks=((1000, 700, 1300), N_FEATURES))
    return unknown_chunks(blocked) if kind == "unknown-chunks" else blocked


def assert_same_up_to_sign(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    signs = np.sign(np.sum(actual * expected, axis=0 if actual.ndim == 1 else 1, keepdims=actual.ndim > 1))
    np.testing.assert_allclose(actual * signs, expected, atol=atol)


@pytest.mark.parametrize("kind", ["numpy", "dask", "unknown-chunks"])
@pytest.mark.parametrize("n_components", [0.9, 8])
@pytest.mark.parametrize("solver", SOLVERS)
def test_spectrum_and_components_match_sklearn(X, reference, solver, n_components, kind):
    pca = make_pca(solver, n_components).fit(as_input(X, kind))
    kept = pca.n_components_
    assert pca.components_.shape == (kept, N_FEATURES)
    np.testing.assert_allclose(
        pca.explained_variance_ratio_, reference.explained_variance_ratio_[:kept], atol=1e-5
    )
    np.testing.assert_allclose(pca.explained_variance_, reference.explained_variance_[:kept], rtol=1e-5)
    np.testing.assert_allclose(
        pca.all_explained_variance_ratio_, reference.explained_variance_ratio_, atol=1e-5
    )
    np.testing.assert_allclose(pca.mean_, reference.mean_, atol=1e-5)
    assert_same_up_to_sign(pca.components_, reference.components_[:kept], atol=1e-5)
    assert pca.n_samples_ == N_ROWS and pca.n_features_in_ == N_FEATURES


@pytest.mark.parametrize("solver", SOLVERS)
def test_signs_follow_sklearn_convention(X, reference, solver):
    pca = make_pca(solver, RANK).fit(X)
    np.testing.assert_allclose(pca.components_, reference.components_[:RANK], atol=1e-5)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("solver", SOLVERS)
def test_variance_target_picks_sklearn_count(X, reference, solver, target):
    expected = int(np.argmax(np.cumsum(reference.explained_variance_ratio_) >= target)) + 1
    pca = make_pca(solver, target).fit(X)
    assert pca.n_components_ == expected
    assert (
        pca.n_components_
        == PCA(n_components=target, svd_solver="full").fit(X.astype(np.float64)).n_components_
    )
    assert pca.explained_variance_ratio_.sum() >= target


@pytest.mark.parametrize("solver", SOLVERS)
def test_transform_matches_sklearn_up_to_sign(X, reference, solver):
    pca = make_pca(solver, 0.9).fit(X)
    scores = pca.transform(unknown_chunks(da.from_array(X, chunks=(500, N_FEATURES))))
    assert isinstance(scores, da.Array) and scores.dtype == np.float32
    computed = scores.compute()
    assert computed.shape == (N_ROWS, pca.n_components_) and computed.dtype == np.float32
    expected = reference.transform(X.astype(np.float64))[:, : pca.n_components_]
    assert_same_up_to_sign(computed.T, expected.T, atol=1e-4)
    in_memory = pca.transform(X)  # NumPy in, NumPy out
    assert isinstance(in_memory, np.ndarray) and in_memory.dtype == np.float32
    np.testing.assert_array_equal(pca.transform_array(X), in_memory)
    np.testing.assert_array_equal(in_memory, computed)


@pytest.mark.parametrize("solver", SOLVERS)
def test_inverse_transform_round_trips(X, reference, solver):
    full = make_pca(solver, N_FEATURES).fit(X)
    np.testing.assert_allclose(full.inverse_transform(full.transform(X)), X, atol=1e-4)
    kept = make_pca(solver, 0.9).fit(X)
    centres = np.random.default_rng(1).normal(size=(5, kept.n_components_))
    back = kept.inverse_transform(centres)
    assert back.shape == (5, N_FEATURES) and back.dtype == np.float64
    np.testing.assert_allclose(kept.transform_array(back), centres, atol=1e-4)
    sklearn_kept = PCA(n_components=kept.n_components_, svd_solver="full").fit(X.astype(np.float64))
    scores = kept.transform_array(X[:10])
    np.testing.assert_allclose(
        kept.inverse_transform(scores), sklearn_kept.inverse_transform(scores), atol=1e-4
    )


def test_inverse_transform_rejects_dask_and_wrong_width(X):
    pca = GramPCA(3).fit(X)
    with pytest.raises(TypeError, match="small in-memory arrays"):
        pca.inverse_transform(da.zeros((2, 3)))
    with pytest.raises(ValueError, match="has 4 columns; this PCA expects 3"):
        pca.inverse_transform(np.zeros((2, 4)))


@pytest.mark.parametrize(
    ("n_components", "error", "match"),
    [
        (0, ValueError, "between 1 and n_features=40"),
        (-2, ValueError, "between 1 and n_features=40"),
        (41, ValueError, "between 1 and n_features=40"),
        (0.0, ValueError, r"must be in \(0, 1\)"),
        (1.0, ValueError, r"must be in \(0, 1\)"),
        (1.5, ValueError, r"must be in \(0, 1\)"),
        (float("nan"), ValueError, r"must be in \(0, 1\)"),
        ("0.9", TypeError, "must be an int"),
        (None, TypeError, "must be an int"),
        (True, TypeError, "must be an int"),
    ],
)
@pytest.mark.parametrize("solver", SOLVERS)
def test_bad_n_components(X, solver, n_components, error, match):
    with pytest.raises(error, match=match):
        make_pca(solver, n_components).fit(X)


def test_unknown_solver_names_the_choices():
    with pytest.raises(
        ValueError, match="unknown PCA solver 'svd'; valid choices are 'gram', 'incremental', 'tsqr'"
    ):
        make_pca("svd")


@pytest.mark.parametrize("solver", SOLVERS)
def test_non_finite_input_is_refused(X, solver):
    dirty = X.copy()
    dirty[7, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        make_pca(solver).fit(da.from_array(dirty, chunks=(1000, N_FEATURES)))


def test_constant_and_tiny_input_are_refused():
    with pytest.raises(ValueError, match="zero total variance"):
        GramPCA(2).fit(np.ones((10, 3), dtype=np.float32))
    for one_row in (np.ones((1, 3), dtype=np.float32), da.ones((1, 3), dtype=np.float32)):
        with pytest.raises(ValueError, match="at least 2 samples .rows., got n_samples=1"):
            TsqrPCA(1).fit(one_row)
    with pytest.raises(ValueError, match="Expected 2D array"):
        GramPCA().fit(np.ones(5))
    with pytest.raises(ValueError, match="2-D"):
        GramPCA().fit(da.ones(5))


def test_transform_checks_width_and_fit(X):
    with pytest.raises(Exception, match="not fitted"):
        GramPCA().transform(X)
    pca = GramPCA().fit(X)
    with pytest.raises(ValueError, match="X has 39 features, but GramPCA is expecting 40 features"):
        pca.transform(X[:, :-1])
    with pytest.raises(ValueError, match="X has 39 features, but GramPCA is expecting 40 features"):
        pca.transform(da.from_array(X[:, :-1]))
    with pytest.raises(ValueError, match="X has 39 columns; this PCA expects 40"):
        pca.transform_array(X[:, :-1])


def test_refit_forgets_the_earlier_fit(X):
    pca = GramPCA(10).fit(X)
    pca.set_params(n_components=2).fit(X[:, :5])
    assert pca.n_components_ == 2 and pca.components_.shape == (2, 5) and pca.mean_.shape == (5,)


@pytest.mark.parametrize("solver", SOLVERS)
def test_save_load_round_trip(X, solver, tmp_path):
    pca = make_pca(solver, 0.9).fit(X)
    pca.save(tmp_path / "pca")
    saved = json.loads((tmp_path / "pca" / "estimator.json").read_text())
    assert saved["params"] == {"n_components": 0.9}
    assert sorted(p.suffix for p in (tmp_path / "pca").iterdir()) == [".json"] + [".npy"] * 5
    loaded = decompose.load(tmp_path / "pca")
    assert type(loaded) is type(pca) and loaded.get_params() == pca.get_params()
    for name, value in pca.to_dict()["attributes"].items():
        np.testing.assert_array_equal(getattr(loaded, name), value)
        assert type(getattr(loaded, name)) is type(value)
    np.testing.assert_array_equal(loaded.transform(X), pca.transform(X))


def test_load_refuses_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved estimator"):
        decompose.load(tmp_path)
    (tmp_path / "estimator.json").write_text(
        '{"estimator": "KMeansSegmenter", "params": {}, "attributes": {}, "arrays": []}'
    )
    with pytest.raises(ValueError, match="not a PCA solver"):
        decompose.load(tmp_path)


def test_mean_and_scatter_is_exact_with_large_offsets_and_uneven_blocks():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1000, 6)) * np.arange(1, 7) + 1e4
    blocks = da.from_array(X, chunks=((1, 0, 299, 200, 500), 6))
    for array in (blocks, unknown_chunks(blocks)):
        n_rows, mean, scatter = mean_and_scatter(array)
        assert n_rows == 1000
        np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(scatter / (n_rows - 1), np.cov(X, rowvar=False), rtol=1e-9, atol=1e-9)


def test_incremental_with_partitions_narrower_than_the_data():
    """Batches shorter than the width keep only `rows per batch` components: exact for the leading signal,
    not for the noise tail (documented)."""
    rng = np.random.default_rng(0)
    loadings = rng.normal(size=(RANK, N_FEATURES)) * np.linspace(4.0, 1.5, RANK)[:, None]
    X = rng.normal(size=(600, RANK)) @ loadings + 0.5 * rng.normal(size=(600, N_FEATURES))
    reference = PCA(svd_solver="full").fit(X)
    pca = IncrementalPCA(RANK).fit(da.from_array(X, chunks=(30, N_FEATURES)))
    assert len(pca.all_explained_variance_ratio_) == 30
    np.testing.assert_allclose(
        pca.explained_variance_ratio_, reference.explained_variance_ratio_[:RANK], atol=1e-5
    )
    assert_same_up_to_sign(pca.components_, reference.components_[:RANK], atol=1e-5)


def test_variance_target_helpers():
    ratios = np.array([0.5, 0.3, 0.15, 0.05])
    assert [n_components_for_variance(ratios, t) for t in (0.4, 0.5, 0.8, 0.81, 0.99)] == [1, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="target 0.9 not reached by the 2 components computed"):
        n_components_for_variance(ratios[:2], 0.9)
    flipped = flip_signs(np.array([[0.1, -0.9], [0.0, 0.0], [0.6, 0.2]]))
    np.testing.assert_array_equal(flipped, [[-0.1, 0.9], [0.0, 0.0], [0.6, 0.2]])


@pytest.mark.parametrize("n_components", [0.9, 8])
def test_gram_fit_from_moments_matches_sklearn(X, reference, n_components):
    ours = GramPCA(n_components).fit_moments(*mean_and_scatter(X))
    kept = ours.n_components_
    assert kept == (
        8 if n_components == 8 else PCA(0.9, svd_solver="full").fit(X.astype(np.float64)).n_components_
    )
    np.testing.assert_allclose(ours.explained_variance_, reference.explained_variance_[:kept], rtol=1e-5)
    assert_same_up_to_sign(ours.components_, reference.components_[:kept], atol=1e-4)
    np.testing.assert_allclose(
        ours.transform(X),
        reference.transform(X)[:, :kept]
        * np.sign(np.sum(ours.components_ * reference.components_[:kept], axis=1)),
        atol=1e-3,
    )
    with pytest.raises(ValueError, match=r"scatter has shape \(3, 3\); expected \(40, 40\)"):
        GramPCA().fit_moments(10, np.zeros(N_FEATURES), np.eye(3))
