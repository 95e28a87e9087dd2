import gzip

import dask
import numpy as np
import pandas as pd
import pytest

from segmentation.io import InputError, RunFolder, ingest, read_table

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
