import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import StandardScaler

from segmentation.clean import unknown_to_missing
from segmentation.encode import Encoder
from segmentation.io import normalize_partition
from segmentation.scale import ImputeScaler, merge_histograms, value_histograms

from .conftest import other_vendor_frame


def recoded(schema, n=2000, seed=3):
    raw = other_vendor_frame(n, seed=seed)
    return unknown_to_missing(normalize_partition(raw, schema, "test", strict=False), schema)


def test_encoding(other_schema):
    frame = recoded(other_schema, 500)
    encoder = Encoder(other_schema, ["INCOME", "REGION", "URBAN", "LIFESTAGE", "SIGNUP"]).fit()
    encoded = encoder.transform(frame)
    assert encoder.feature_names_out_ == [
        "INCOME",
        "REGION=N",
        "REGION=S",
        "REGION=E",
        "REGION=W",
        "URBAN",
        "LIFESTAGE_WEALTH",
        "LIFESTAGE_STAGE",
        "SIGNUP",
    ]
    row = frame.index[(frame["LIFESTAGE"] == 22) & (frame["REGION"] == "E") & (frame["URBAN"] == "R")][0]
    assert encoded.loc[
        row, ["REGION=N", "REGION=E", "URBAN", "LIFESTAGE_WEALTH", "LIFESTAGE_STAGE"]
    ].tolist() == [0, 1, 1, 2, 2]
    missing_region = frame["REGION"].isna()
    assert encoded.loc[missing_region, "REGION=N"].isna().all()
    assert set(encoded["SIGNUP"].dropna()) == {2016}
    assert (encoded.dtypes == "float32").all()


def test_impute_scale_matches_scikit_learn(other_schema):
    frame = recoded(other_schema)
    numeric = ["INCOME", "URBAN", "AGE", "LIFESTAGE", "SCORE"]
    encoder = Encoder(other_schema, numeric).fit()
    halves = [value_histograms(frame.iloc[:700], numeric), value_histograms(frame.iloc[700:], numeric)]
    ours = ImputeScaler(encoder).fit_histograms(merge_histograms(*halves))
    encoded = encoder.transform(frame)
    imputed = SimpleImputer(strategy="median").fit_transform(encoded)
    reference = StandardScaler().fit(imputed)
    np.testing.assert_allclose(ours.mean_, reference.mean_, rtol=1e-6)
    np.testing.assert_allclose(ours.scale_, reference.scale_, rtol=1e-6)
    np.testing.assert_allclose(ours.transform(encoded), reference.transform(imputed), atol=1e-5)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(encoded)), imputed, atol=1e-4)


def test_categorical_imputed_with_most_frequent(other_schema):
    frame = recoded(other_schema)
    encoder = Encoder(other_schema, ["REGION"]).fit()
    encoded = encoder.transform(frame)
    ours = ImputeScaler(encoder).fit(encoded)
    most_frequent = frame["REGION"].mode()[0]
    assert ours.fill_values_.tolist() == [1.0 if c == most_frequent else 0.0 for c in "NSEW"]
    imputed = SimpleImputer(strategy="most_frequent").fit_transform(frame[["REGION"]].astype(object))
    one_hot = pd.get_dummies(pd.Categorical(imputed[:, 0], categories=list("NSEW"))).to_numpy(dtype=float)
    # dummies are centred only, so the block's total variance is below one standardized attribute's
    np.testing.assert_allclose(ours.transform(encoded), one_hot - one_hot.mean(axis=0), atol=1e-5)
    assert ours.transform(encoded).var(axis=0).sum() < 1


def test_histograms_merge_across_partitions_with_missing(other_schema):
    frame = recoded(other_schema)
    columns = ["INCOME", "REGION", "AGE", "LIFESTAGE", "SIGNUP"]
    parts = [value_histograms(frame.iloc[i : i + 500], columns) for i in range(0, len(frame), 500)]
    merged = merge_histograms(merge_histograms(*parts[:2]), *parts[2:])
    whole = value_histograms(frame, columns)
    for column in columns:
        assert merged[column].sum() == len(frame)
        assert merged[column].sort_index().to_dict() == whole[column].sort_index().to_dict()


@pytest.mark.parametrize("route", ["encoder", "schema"])
def test_fit_on_encoded_frame_equals_fit_from_histograms(other_schema, route):
    frame = recoded(other_schema)
    encoder = Encoder(
        other_schema, ["INCOME", "REGION", "URBAN", "AGE", "LIFESTAGE", "SCORE", "SIGNUP"]
    ).fit()
    from_histograms = ImputeScaler(encoder).fit_histograms(value_histograms(frame, encoder.columns))
    scaler = ImputeScaler(encoder) if route == "encoder" else ImputeScaler(schema=other_schema)
    from_encoded = scaler.fit(encoder.transform(frame))
    assert from_encoded.feature_names_ == from_histograms.feature_names_
    assert list(from_encoded.get_feature_names_out()) == encoder.feature_names_out_
    for name in ("fill_values_", "mean_", "scale_"):
        np.testing.assert_allclose(getattr(from_encoded, name), getattr(from_histograms, name), rtol=1e-12)
    assert from_encoded.fill_values_[1:5].tolist() == [0.0, 1.0, 0.0, 0.0]  # REGION=S, the most frequent


def test_fit_histograms_needs_an_encoder_and_fit_a_frame(other_schema):
    with pytest.raises(ValueError, match="needs ImputeScaler.encoder="):
        ImputeScaler(schema=other_schema).fit_histograms({})
    with pytest.raises(TypeError, match="takes the encoded pandas frame, got ndarray"):
        ImputeScaler(schema=other_schema).fit(np.zeros((3, 2)))
