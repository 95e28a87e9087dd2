"""Coded blocks: positions, missing masks and histograms equal the typed frame's; save/load round-trips."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.clean import unknown_to_missing
from segmentation.codes import Codebook, load_block, save_block
from segmentation.io import code_partition, normalize_partition, read_table
from segmentation.schema import parse_attributes

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
    expected = recoded[some].isna().sum(axis=1)
    # counting recorded each row's missing values over all coded columns: the columns left out are taken
    # off them; a block without that count (an API caller's) counts the chosen columns
    np.testing.assert_array_equal(block.missing, recoded[[c.attribute.name for c in codebook.coded]].isna().sum(axis=1))
    np.testing.assert_array_equal(codebook.row_missing(block, some), expected)
    np.testing.assert_array_equal(codebook.row_missing(codebook.encode(typed), some), expected)


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


def test_code_numbers_flags_values_outside_the_listed_codes(other_schema):
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
    invalid = np.array(
        [
            [False, False, False, False],
            [False, False, False, False],
            [True, True, True, True],
            [True, False, False, True],
        ]
    )
    positions = np.full((len(values), len(codebook.coded)), 7777, dtype=np.uint16)
    assert codebook.code_numbers(values.T, positions).tolist() == invalid.sum(axis=0).tolist()
    numeric = positions[:, codebook._numeric]
    missing = np.broadcast_to(codebook.sizes[codebook._numeric] - 1, invalid.shape)
    assert (numeric[invalid] == missing[invalid]).all()
    assert numeric[3, 1] == missing[3, 1]  # empty: the missing position, not invalid
    low = np.array([codebook.coded[j].low for j in codebook._numeric])
    np.testing.assert_array_equal(numeric[:2], values[:2] - low)
    assert numeric[1, 0] == 9  # INCOME: domain 0..9, so code 9 sits at position 9
    others = np.setdiff1d(np.arange(len(codebook.coded)), codebook._numeric)
    assert (positions[:, others] == 7777).all()  # only the integer-coded columns are written


def test_blocks_round_trip_through_their_files(other_schema, typed, tmp_path):
    codebook = Codebook(other_schema)
    block = codebook.encode(typed)
    assert block.rest["SIGNUP"].isna().any()
    path = str(tmp_path / "b.block")
    save_block(block, path)
    loaded = load_block(path, codebook.rest_dtypes)
    np.testing.assert_array_equal(loaded.ids, block.ids)
    np.testing.assert_array_equal(loaded.positions, block.positions)
    pd.testing.assert_frame_equal(loaded.rest, block.rest)
    assert loaded.missing is None
    codebook.missing_counts(block)  # the read pass's count per row travels with the block
    save_block(block, path)
    np.testing.assert_array_equal(load_block(path, codebook.rest_dtypes).missing, block.missing)
    data = open(path, "rb").read()
    for spoiled, message in [(data[:-1], "ends 1 bytes early"), (b"PK" + data, "not a coded block")]:
        with open(path, "wb") as handle:
            handle.write(spoiled)
        with pytest.raises(ValueError, match=message):
            load_block(path, codebook.rest_dtypes)


SENTINELS = """attribute,kind,codes,unknown_codes
ID,id,,
AGE,numeric,18..99,-9;unbekannt;50
COUNT,numeric,,-1
WIDE,numeric,0..100000,-1
RANK,ordinal,1..5,-99999
SINCE,date,,0;unbekannt
"""


def _coded(text: str):
    """SENTINELS' schema, a raw partition of ``text`` (;-separated) and its coded block via the loader."""
    schema = parse_attributes(SENTINELS, "sentinels.csv")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        path.write_text(text)
        raw = read_table(path, schema, blocksize=None).read_part(0)
        codebook = Codebook(schema)
        block, invalid = code_partition(raw, codebook, str(path))
    return codebook, block, invalid


def test_unknown_codes_are_missing_not_invalid_whatever_their_form():
    codebook, block, invalid = _coded(
        "ID;AGE;COUNT;WIDE;RANK;SINCE\n"
        "1;unbekannt;-1;-1;-99999;2016-03-01\n"
        "2;-9;7;70000;3;2016-03-01 10:00:00\n"
        "3;50;7.0;5;3.0;\n"
        "4;30;8;5;2;nicht\n"
        "5;30;8;5;2;0001-01-01\n"  # outside datetime64[ns]: pandas 3 parsed it, then failed to store it
        "6;30;8;5;2;unbekannt\n"
        "7;30;8;5;2;0\n"
    )
    assert invalid.to_dict() == {"ID": 0, "AGE": 0, "COUNT": 0, "WIDE": 0, "RANK": 0, "SINCE": 2}
    # AGE: a text sentinel, an integer one, and an unknown code inside the valid range (50) are missing
    assert codebook.missing_counts(block).to_dict() == {
        "AGE": 3, "COUNT": 1, "WIDE": 1, "RANK": 1, "SINCE": 5, "__rows__": 7,
    }  # fmt: skip
    # WIDE spans 100,001 values: no code domain, kept as numbers; COUNT has no range
    assert codebook.rest == ["COUNT", "WIDE", "SINCE"]
    assert block.rest["WIDE"].tolist()[1:] == [70000, 5, 5, 5, 5, 5]
    assert block.rest["SINCE"].dt.year.tolist()[:2] == [2016, 2016]  # ISO dates with or without a time
