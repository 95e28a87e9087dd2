"""The compiled per-column lookups equal the estimator chain (Cleaner -> Encoder -> ImputeScaler)."""

import numpy as np
import pandas as pd
import pytest

import segmentation.model as model_module
from segmentation.clean import Cleaner, partition_missing_counts, unknown_to_missing
from segmentation.decompose import block_moments, make_pca
from segmentation.encode import Encoder
from segmentation.io import _csv_dtypes, normalize_partition, read_header
from segmentation.model import SegmentationModel
from segmentation.scale import ImputeScaler
from segmentation.schema import load_schema
from segmentation.synth import generate

from .conftest import other_vendor_frame


def fitted_chain(schema, typed):
    recoded = unknown_to_missing(typed, schema)
    cleaner = Cleaner(schema).fit(None, missing=partition_missing_counts(typed, schema).iloc[0])
    encoder = Encoder(schema, cleaner.kept_columns_).fit()
    kept = ~cleaner.set_aside_mask(recoded)
    scaler = ImputeScaler(encoder).fit(encoder.transform(recoded[kept]))
    reference = scaler.transform(encoder.transform(recoded[kept]))
    return SegmentationModel(schema, cleaner, encoder, scaler), kept.to_numpy(), reference


def test_lookup_equals_estimator_chain_on_arvato_data(tmp_path):
    generate(tmp_path, rows=3000, customers_rows=10, mailout_rows=10, seed=3)
    schema = load_schema()
    path = tmp_path / "population.csv"
    raw = pd.read_csv(path, sep=";", dtype=_csv_dtypes(schema, read_header(str(path))))
    typed = normalize_partition(raw, schema, str(path), strict=False)
    model, kept, reference = fitted_chain(schema, typed)
    aside, features = model.standardize_partition(typed)
    assert (aside == ~kept).all() and aside.any()
    np.testing.assert_allclose(features, reference, atol=1e-6)


def test_lookup_equals_estimator_chain_on_other_vendor(other_schema):
    typed = normalize_partition(other_vendor_frame(2000, seed=5), other_schema, "x", strict=False)
    model, kept, reference = fitted_chain(other_schema, typed)
    aside, features = model.standardize_partition(typed)
    assert (aside == ~kept).all()
    np.testing.assert_allclose(features, reference, atol=1e-6)


def vendor_rows(vendor: str, folder, other_schema, seed: int):
    """(schema, typed frame of 3,000 rows): generated Arvato rows, or the other vendor's."""
    if vendor == "other":
        return other_schema, normalize_partition(
            other_vendor_frame(3000, seed=seed), other_schema, "x", False
        )
    generate(folder, rows=3000, customers_rows=10, mailout_rows=10, seed=seed)
    schema = load_schema()
    path = folder / "population.csv"
    raw = pd.read_csv(path, sep=";", dtype=_csv_dtypes(schema, read_header(str(path))))
    return schema, normalize_partition(raw, schema, str(path), strict=False)


def float64_moments(schema, typed):
    """The fitted chain and the moments of its standardized features of the kept rows, in float64."""
    model, kept, _ = fitted_chain(schema, typed)
    encoded = model.encoder.transform(unknown_to_missing(typed, schema)[kept])
    scaler = model.scaler
    values = encoded[scaler.feature_names_].to_numpy(dtype="float64", na_value=np.nan)
    values = np.where(np.isnan(values), scaler.fill_values_, values)
    return model, block_moments((values - scaler.mean_) / scaler.scale_)


@pytest.mark.parametrize("exact_limit", [2**24, 2**13])  # 2**13: the float32 sums in chunks of a few rows
@pytest.mark.parametrize("vendor", ["arvato", "other"])
def test_moments_from_codes_equal_the_float64_chain(tmp_path, other_schema, monkeypatch, vendor, exact_limit):
    monkeypatch.setattr(model_module, "_EXACT_LIMIT", exact_limit)
    schema, typed = vendor_rows(vendor, tmp_path, other_schema, seed=4)
    model, (n, mean, scatter) = float64_moments(schema, typed)
    plan = model.compile().__dict__["_moments"]
    # every way of summing is taken: dummies by code, small whole values in float32, the rest in float64
    assert len(plan.dummies) and len(plan.small) and len(plan.large)
    assert plan.exact_rows < n if exact_limit < 2**24 else plan.exact_rows > n
    rows, ours_mean, ours_scatter = model.moments_block(model.codebook.encode(typed))
    assert rows == n
    np.testing.assert_allclose(ours_mean, mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours_scatter, scatter, rtol=0, atol=1e-9 * np.abs(scatter).max())


@pytest.mark.parametrize("solver", ["gram", "tsqr"])
@pytest.mark.parametrize("vendor", ["arvato", "other"])
def test_coordinates_from_codes_equal_the_projection_of_the_features(tmp_path, other_schema, vendor, solver):
    schema, typed = vendor_rows(vendor, tmp_path, other_schema, seed=5)
    model, _, _ = fitted_chain(schema, typed)
    block = model.codebook.encode(typed)
    features = model.features_block(block)
    model.pca = make_pca(solver, 0.95).fit(features)
    expected = model.pca.transform_array(features)
    coordinates = model.reduced_block(block)
    assert coordinates.dtype == np.float32 and coordinates.shape == expected.shape
    np.testing.assert_allclose(coordinates, expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    model.pca = make_pca(solver, 3).fit(features)  # another PCA: the projection follows it
    np.testing.assert_allclose(model.reduced_block(block), model.pca.transform_array(features), atol=1e-4)


def test_missing_scaler_feature_is_an_error(other_schema):
    typed = normalize_partition(other_vendor_frame(100), other_schema, "x", strict=False)
    model, _, _ = fitted_chain(other_schema, typed)
    model.scaler.feature_names_ = model.scaler.feature_names_[1:]
    with pytest.raises(ValueError):
        model.standardize_partition(typed)
