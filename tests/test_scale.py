import numpy as np
import pandas as pd
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
    ours = ImputeScaler(encoder).fit(frame)
    most_frequent = frame["REGION"].mode()[0]
    assert ours.fill_values_.tolist() == [1.0 if c == most_frequent else 0.0 for c in "NSEW"]
    encoded = encoder.transform(frame)
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
