import gzip

import dask
import numpy as np
import pandas as pd
import pytest

from segmentation.io import (
    InputError,
    RunFolder,
    _csv_dtypes,
    ingest,
    normalize_partition,
    read_header,
    read_table,
)
from segmentation.schema import load_schema
from segmentation.synth import generate

from .conftest import other_vendor_frame


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="sync"):
        yield


def test_reads_typed_by_schema(other_vendor_files, other_schema):
    table = read_table(other_vendor_files / "population.csv", other_schema, blocksize=20_000)
    assert table.frame.npartitions > 1
    frame = table.frame.compute()
    assert len(frame) == 3000
    assert str(frame["INCOME"].dtype) == "Int8"
    assert isinstance(frame["REGION"].dtype, pd.CategoricalDtype)
    assert set(frame["REGION"].cat.categories) == {"N", "S", "E", "W", "X"}
    assert str(frame["SIGNUP"].dtype).startswith("datetime64")
    assert table.invalid_counts.compute().sum() == 0


def test_customers_keep_extras_aside(other_vendor_files, other_schema):
    table = read_table(other_vendor_files / "customers.csv", other_schema, "customers")
    assert table.extra_columns == ["CHANNEL"]
    assert "CHANNEL" not in [a.name for a in other_schema.features()]


def test_invalid_values_counted_and_missing(tmp_path, other_schema):
    frame = other_vendor_frame(200)
    frame.loc[3, "INCOME"] = 7  # neither valid (1..5) nor unknown (0;9)
    frame.loc[5, "REGION"] = "Q"
    frame.loc[8, "AGE"] = 150  # out of the numeric range
    path = tmp_path / "population.csv"
    frame.to_csv(path, sep=";", index=False)
    table = read_table(path, other_schema)
    counts = table.invalid_counts.compute()
    assert counts[["INCOME", "REGION", "AGE"]].tolist() == [1, 1, 1]
    assert counts.sum() == 3
    typed = table.frame.compute()
    assert (
        pd.isna(typed.loc[3, "INCOME"]) and pd.isna(typed.loc[5, "REGION"]) and pd.isna(typed.loc[8, "AGE"])
    )


def test_strict_names_file_column_row_and_value(tmp_path, other_schema):
    frame = other_vendor_frame(50)
    frame.loc[7, "REGION"] = "Q"
    path = tmp_path / "population.csv"
    frame.to_csv(path, sep=";", index=False)
    table = read_table(path, other_schema, strict=True)
    with pytest.raises(
        InputError, match=r"population.csv: column REGION, row with CUST_ID=100008: value 'Q'"
    ):
        table.frame.compute()


def test_text_in_a_numeric_column_is_reported(tmp_path, other_schema):
    frame = other_vendor_frame(50)
    frame["SCORE"] = frame["SCORE"].astype(object)
    frame.loc[4, "SCORE"] = "abc"
    path = tmp_path / "population.csv"
    frame.to_csv(path, sep=";", index=False)
    assert read_table(path, other_schema).invalid_counts.compute()["SCORE"] == 1
    with pytest.raises(InputError, match="column SCORE, row with CUST_ID=100005: value 'abc'"):
        read_table(path, other_schema, strict=True).frame.compute()


def test_wrong_delimiter(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    other_vendor_frame(20).to_csv(path, sep=",", index=False)
    with pytest.raises(InputError, match=r"population.csv: reads as a single column .* looks ','-delimited"):
        read_table(path, other_schema)


def test_empty_file(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    path.write_text("")
    with pytest.raises(InputError, match="population.csv: the file is empty"):
        read_table(path, other_schema)


def test_missing_required_column(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    other_vendor_frame(20).drop(columns=["SCORE"]).to_csv(path, sep=";", index=False)
    with pytest.raises(InputError, match=r"population.csv: required column\(s\) missing: SCORE"):
        read_table(path, other_schema)


def test_no_such_file(tmp_path, other_schema):
    with pytest.raises(InputError, match="no such file"):
        read_table(tmp_path / "nope.csv", other_schema)


def test_leading_index_column_gzip_and_glob(tmp_path, other_schema):
    frame = other_vendor_frame(300)
    with gzip.open(tmp_path / "part1.csv.gz", "wt") as handle:
        frame.iloc[:100].to_csv(handle, sep=";")  # writes the unnamed index column
    frame.iloc[100:].to_csv(tmp_path / "part2.csv", sep=";", index=False)
    table = read_table(str(tmp_path / "part*"), other_schema)
    assert len(table.paths) == 2
    typed = table.frame.compute()
    assert list(typed.columns) == other_schema.columns("population")
    assert typed["CUST_ID"].tolist() == frame["CUST_ID"].tolist()


def test_parquet_round_trip_preserves_every_value(other_vendor_files, other_schema, tmp_path):
    table = read_table(other_vendor_files / "population.csv", other_schema, blocksize=20_000)
    summary, also = ingest(table, str(tmp_path / "population.parquet"), also={"n": table.frame.shape[0]})
    assert summary["rows"] == 3000 and also["n"] == 3000
    original = table.frame.compute().reset_index(drop=True)
    again = read_table(tmp_path / "population.parquet", other_schema).frame.compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(original, again)
    trusted = read_table(tmp_path / "population.parquet", other_schema, validate=False).frame.compute()
    pd.testing.assert_frame_equal(original, trusted.reset_index(drop=True))
    assert original["INCOME"].isna().sum() > 0  # missing values survived too
    assert not list(tmp_path.glob("*.tmp-*"))


def test_run_folder_appears_only_when_committed(tmp_path):
    folder = RunFolder(tmp_path / "runs" / "demo")
    folder.write_json("run.json", {"a": np.int64(1)})
    assert not (tmp_path / "runs" / "demo").exists()
    folder.commit()
    assert (tmp_path / "runs" / "demo" / "run.json").read_text().strip().startswith("{")
    failed = RunFolder(tmp_path / "runs" / "other")
    failed.write_json("run.json", {})
    failed.abandon()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo"]


def test_ragged_row_names_the_file(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    other_vendor_frame(20).to_csv(path, sep=";", index=False)
    with open(path, "a") as handle:
        handle.write("1;2;3\n")
    with pytest.raises(InputError, match=r"population.csv: malformed CSV: .*columns"):
        read_table(path, other_schema).frame.compute()


def test_code_partition_equals_the_typed_path(tmp_path):
    """The matrix check of integer codes gives the same positions and invalid counts as normalize + encode,
    with invalid values (out of range, not listed, fractional) in both integer and text columns."""
    from segmentation.codes import Codebook
    from segmentation.io import code_partition, invalid_value_counts

    generate(tmp_path, rows=2000, customers_rows=10, mailout_rows=10, seed=4)
    schema = load_schema()
    path = tmp_path / "population.csv"
    raw = pd.read_csv(path, sep=";", dtype=_csv_dtypes(schema, read_header(str(path))))
    raw = raw[[c for c in schema.columns("population") if c in raw.columns]]
    numeric = [c for c in raw.columns if raw[c].dtype.kind == "f" and schema[c].kind not in ("id",)]
    rng = np.random.default_rng(0)
    for column in rng.choice(numeric, 20, replace=False):
        rows = rng.choice(len(raw), 5, replace=False)
        raw.loc[rows[:2], column] = 1000.0  # out of every domain
        raw.loc[rows[2:4], column] = 1.5  # not a whole number
        raw.loc[rows[4], column] = -7.0  # below the domain
    text = next(c for c in raw.columns if raw[c].dtype == object and schema[c].kind not in ("date", "extra"))
    raw.loc[3, text] = "bogus"
    codebook = Codebook(schema)
    block, invalid = code_partition(raw, codebook, str(path))
    typed = normalize_partition(raw, schema, str(path), strict=False)
    expected = codebook.encode(typed)
    np.testing.assert_array_equal(block.positions, expected.positions)
    np.testing.assert_array_equal(block.ids, expected.ids)
    pd.testing.assert_frame_equal(block.rest, expected.rest)
    expected_invalid = invalid_value_counts(raw, typed).iloc[0]
    assert invalid.to_dict() == expected_invalid.to_dict()
    assert invalid.sum() >= 20 * 5 + 1
    with pytest.raises(InputError, match="column"):
        code_partition(raw, codebook, str(path), strict=True)
