"""Coded blocks: positions, missing masks and histograms equal the typed frame's; save/load round-trips."""

import numpy as np
import pandas as pd
import pytest

from segmentation.clean import unknown_to_missing
from segmentation.codes import Codebook, load_block, save_block
from segmentation.io import normalize_partition

from .conftest import other_vendor_frame


@pytest.fixture
def typed(other_schema):
    return normalize_partition(other_vendor_frame(1500, seed=7), other_schema, "x", strict=False)


def test_missing_counts_and_row_missing_equal_the_recoded_frame(other_schema, typed):
    codebook = Codebook(other_schema)
    block = codebook.encode(typed)
    recoded = unknown_to_missing(typed, other_schema)
    features = [a.name for a in other_schema.features()]
    counts = codebook.missing_counts(block)
    assert counts.drop("__rows__").to_dict() == recoded[features].isna().sum().to_dict()
    assert counts["__rows__"] == len(typed)
    some = ["INCOME", "REGION", "SIGNUP"]
    np.testing.assert_array_equal(codebook.row_missing(block, some), recoded[some].isna().sum(axis=1))


def test_histograms_equal_value_counts_of_the_chosen_rows(other_schema, typed):
    codebook = Codebook(other_schema)
    block = codebook.encode(typed)
    rows = np.random.default_rng(0).random(len(typed)) < 0.6
    histograms = codebook.histograms(block, rows, ["INCOME", "REGION", "SIGNUP"])
    recoded = unknown_to_missing(typed, other_schema)[rows]
    for column in ("INCOME", "REGION"):
        index = codebook.coded[codebook.column_index[column]]
        ours = index.value_histogram(histograms[column])
        theirs = recoded[column].value_counts(dropna=False)
        assert {str(k): v for k, v in ours[ours > 0].items()} == {str(k): v for k, v in theirs.items()}, (
            column
        )
    assert histograms["SIGNUP"].sum() == rows.sum()


def test_positions_of_numbers_flags_values_outside_the_listed_codes(other_schema):
    codebook = Codebook(other_schema)
    assert codebook.numeric_columns == ["INCOME", "AGE", "LIFESTAGE", "SCORE"]
    values = np.array(
        [
            [1, 18, 11, 1],  # valid
            [9, 99, 23, 7],  # unknown code 9, top of the ranges
            [7, 17, 14, 0],  # 7 is inside INCOME's domain (0..9) but not a listed code; the rest out of range
            [2.5, np.nan, -1, 1e12],  # fractional, empty, unknown code -1, huge
        ]
    )
    positions, invalid = codebook.positions_of_numbers(values)
    assert invalid.tolist() == [
        [False, False, False, False],
        [False, False, False, False],
        [True, True, True, True],
        [True, False, False, True],
    ]
    missing = codebook.sizes[codebook._numeric] - 1
    assert (positions[invalid] == np.broadcast_to(missing, invalid.shape)[invalid]).all()
    assert positions[1, 0] == 9  # INCOME: domain 0..9, so code 9 sits at position 9


def test_blocks_round_trip_through_npz(other_schema, typed, tmp_path):
    codebook = Codebook(other_schema)
    block = codebook.encode(typed)
    assert block.rest["SIGNUP"].isna().any()
    path = str(tmp_path / "b.npz")
    save_block(block, path)
    loaded = load_block(path, codebook.rest_dtypes)
    np.testing.assert_array_equal(loaded.ids, block.ids)
    np.testing.assert_array_equal(loaded.positions, block.positions)
    pd.testing.assert_frame_equal(loaded.rest, block.rest)
