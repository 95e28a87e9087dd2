"""The compiled per-column lookups equal the estimator chain (Cleaner -> Encoder -> ImputeScaler)."""

import numpy as np
import pytest

from segmentation.clean import Cleaner, partition_missing_counts, unknown_to_missing
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
    import pandas as pd

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


def test_missing_scaler_feature_is_an_error(other_schema):
    typed = normalize_partition(other_vendor_frame(100), other_schema, "x", strict=False)
    model, _, _ = fitted_chain(other_schema, typed)
    model.scaler.feature_names_ = model.scaler.feature_names_[1:]
    with pytest.raises(ValueError):
        model.standardize_partition(typed)
