import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from segmentation.clean import Cleaner, row_missing_histogram, unknown_to_missing
from segmentation.codes import Codebook
from segmentation.io import read_table


@pytest.fixture
def population(other_vendor_files, other_schema):
    with dask.config.set(scheduler="sync"):
        yield read_table(other_vendor_files / "population.csv", other_schema, blocksize=20_000).frame


def pandas_reference(path, schema):
    """The notebook way: read with pandas, replace each column's unknown codes by NaN."""
    frame = pd.read_csv(path, sep=";")
    for attribute in schema.features():
        unknown = list(attribute.unknown_codes)
        as_numbers = [float(c) for c in unknown if c.lstrip("-").isdigit()]
        frame[attribute.name] = frame[attribute.name].replace(unknown + as_numbers, np.nan)
    return frame


def test_unknown_codes_become_missing_like_pandas(population, other_vendor_files, other_schema):
    ours = unknown_to_missing(population.compute(), other_schema).reset_index(drop=True)
    reference = pandas_reference(other_vendor_files / "population.csv", other_schema)
    for column in ("INCOME", "REGION", "URBAN", "AGE", "LIFESTAGE", "SCORE"):
        assert ours[column].isna().tolist() == reference[column].isna().tolist(), column
        present = ours[column].notna()
        assert (
            ours.loc[present, column].astype(str).str.replace(".0", "").tolist()
            == reference.loc[present, column].astype(str).str.replace(".0", "").tolist()
        )


def test_fit_drops_mostly_missing_columns(population, other_schema, other_vendor_files):
    with dask.config.set(scheduler="sync"):
        cleaner = Cleaner(other_schema, column_missing_threshold=0.15).fit(population)
    reference = pandas_reference(other_vendor_files / "population.csv", other_schema)
    features = [a.name for a in other_schema.features()]
    expected_share = reference[features].isna().mean()
    np.testing.assert_allclose(cleaner.missing_share_[features].to_numpy(), expected_share.to_numpy())
    assert cleaner.dropped_columns_ == [c for c in features if expected_share[c] > 0.15]
    assert cleaner.kept_columns_ == [c for c in features if expected_share[c] <= 0.15]
    assert cleaner.n_rows_ == 3000


def test_set_aside_rows_match_reference(population, other_schema, other_vendor_files):
    with dask.config.set(scheduler="sync"):
        cleaner = Cleaner(other_schema).fit(population)
    recoded = unknown_to_missing(population.compute(), other_schema).reset_index(drop=True)
    reference = pandas_reference(other_vendor_files / "population.csv", other_schema)
    expected = reference[cleaner.kept_columns_].isna().mean(axis=1) > 0.5
    assert cleaner.set_aside_mask(recoded).tolist() == expected.tolist()
    assert 0.05 < expected.mean() < 0.3  # the mostly-empty rows exist and are set aside, not dropped


@pytest.mark.parametrize("name", ["column_missing_threshold", "row_missing_threshold"])
def test_bad_thresholds(other_schema, name):
    frame = dd.from_pandas(pd.DataFrame({"CUST_ID": [1]}), npartitions=1)
    with pytest.raises(ValueError, match=f"{name} must lie in"):
        Cleaner(other_schema, **{name: 1.5}).fit(frame)


def test_row_missing_histogram_counts_every_row():
    share = pd.Series([0.0, 0.05, 0.5, 0.99, 1.0])
    counts = row_missing_histogram(share, bins=4)
    assert counts.tolist() == [2, 0, 1, 2] and counts.sum() == 5


def test_partition_statistics_equal_recoded_value_counts(population, other_schema):
    from segmentation.clean import merge_statistics, partition_missing_counts
    from segmentation.scale import value_histograms

    with dask.config.set(scheduler="sync"):
        cleaner = Cleaner(other_schema).fit(population)
        partitions = [p.compute() for p in population.to_delayed()]
    merged, rows, kept_rows = merge_statistics(*[cleaner.partition_statistics(p) for p in partitions])
    whole = pd.concat(partitions)
    histograms = cleaner.value_histograms_from_counts(merged, whole.dtypes.to_dict())
    from_codebook = cleaner.value_histograms_from_counts(
        merged, whole.dtypes.to_dict(), Codebook(other_schema)
    )
    assert from_codebook.keys() == histograms.keys()
    for column, histogram in histograms.items():
        pd.testing.assert_series_equal(from_codebook[column], histogram)
    recoded = unknown_to_missing(whole, other_schema)
    kept = recoded[~cleaner.set_aside_mask(recoded)]
    expected = value_histograms(kept, cleaner.kept_columns_)
    for column in cleaner.kept_columns_:
        ours = histograms[column][histograms[column] > 0]
        theirs = expected[column][expected[column] > 0]
        assert dict(zip(ours.index.astype(str), ours, strict=False)) == dict(
            zip(theirs.index.astype(str), theirs, strict=False)
        ), column
    assert rows.sum() == len(whole)
    assert kept_rows.tolist() == [
        int((~cleaner.set_aside_mask(unknown_to_missing(p, other_schema))).sum()) for p in partitions
    ]
    assert kept_rows.sum() == len(kept)
    counts = partition_missing_counts(whole, other_schema).iloc[0]
    assert counts.drop("__rows__").to_dict() == recoded.isna().sum().to_dict()
