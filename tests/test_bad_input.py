"""The bad-input matrix: the `segmentation` command, run as a user runs it (a subprocess), on small
generated files changed one way each.

Files that must work give exit 0 with every row accounted for; files that must fail give exit 3 (input)
or 2 (configuration) with one line naming the file, the column, the line (or LNR) and the value as
written, no traceback, no "Compute Failed" block from a worker, and no output folder (nor ``.NAME.tmp-*``
folder) left behind.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = {"population": 3000, "customers": 800, "mailout_train": 300, "mailout_test": 300}


def quick_limit() -> float:
    """3 s, the bound for checks made before any cluster starts, on an idle machine; stretched by the
    load of a shared one (2 cores running 8 processes: 12 s), still far below a cluster start (~25 s)."""
    return 3 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "segmentation.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """population/customers/mailout CSVs of the generator, written once for the module."""
    folder = tmp_path_factory.mktemp("bad-input")
    result = cli(
        "generate",
        "--out",
        folder / "data",
        "--rows",
        ROWS["population"],
        "--customers-rows",
        ROWS["customers"],
        "--mailout-rows",
        ROWS["mailout_train"],
        "--seed",
        3,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    return folder


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def write_lines(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def assert_fails_cleanly(
    result: subprocess.CompletedProcess, code: int, *fragments: str, out: Path | None = None
):
    """Exit ``code``, one ``error:`` line holding every fragment, no traceback, nothing left behind."""
    stderr = result.stderr
    assert result.returncode == code, f"exit {result.returncode}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert "Compute Failed" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(errors) == 1, stderr
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    if out is not None:
        assert not out.exists()
        assert not [p.name for p in out.parent.glob(f".{out.name}.tmp-*")]
        assert not (out.parent / f".{out.name}.work").exists(), "an input error removes the checkpoints"
    return errors[0]


def run(data: Path, out: str, *options: str, population=None, customers=None, timeout: float = 300):
    return cli(
        "run",
        "--population",
        population or data / "data" / "population.csv",
        "--customers",
        customers or data / "data" / "customers.csv",
        "--out",
        data / "runs" / out,
        "--no-report",
        *options,
        cwd=data,
        timeout=timeout,
    )


# ------------------------------------------------------------------------------------------ must work


@pytest.fixture(scope="module")
def variants_run(data) -> dict:
    """One run whose four tables each come in another layout: population with a UTF-8 byte-order mark,
    customers with Windows line endings, mail-out train gzipped, mail-out test with its columns in
    another order and two columns the schema does not know."""
    source, variants = data / "data", data / "variants"
    variants.mkdir()
    (variants / "population.csv").write_bytes(b"\xef\xbb\xbf" + (source / "population.csv").read_bytes())
    (variants / "customers.csv").write_bytes((source / "customers.csv").read_bytes().replace(b"\n", b"\r\n"))
    with gzip.open(variants / "mailout_train.csv.gz", "wb") as handle:
        handle.write((source / "mailout_train.csv").read_bytes())
    frame = pd.read_csv(source / "mailout_test.csv", sep=";", dtype=str, keep_default_na=False)
    frame = frame[list(reversed(frame.columns))]
    frame.insert(3, "VENDOR_NOTE", "x")
    frame["SCORE_2025"] = "1"
    frame.to_csv(variants / "mailout_test.csv", sep=";", index=False)
    result = cli(
        "run",
        "--population",
        variants / "population.csv",
        "--customers",
        variants / "customers.csv",
        "--mailout-train",
        variants / "mailout_train.csv.gz",
        "--mailout-test",
        variants / "mailout_test.csv",
        "--out",
        data / "runs" / "variants",
        "--k",
        3,
        "--no-report",
        cwd=data,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    run_json = json.loads((data / "runs" / "variants" / "run.json").read_text())
    return {"stdout": result.stdout, "stderr": result.stderr, "run": run_json}


def assert_accounted(variants_run: dict, table: str) -> None:
    counts = variants_run["run"]["rows"][table]
    assert counts["read"] == ROWS[table] if table != "mailout_test" else counts["read"] > 0
    assert counts["read"] == counts["assigned"] + counts["set_aside"]
    assert counts["assigned"] > 0
    assert variants_run["run"]["invalid_values"][table] == {}  # no value misread (a BOM, a trailing \r)
    printed = (
        f"{table}: {counts['read']:,} rows read = {counts['assigned']:,} assigned + {counts['set_aside']:,}"
    )
    assert printed in variants_run["stdout"]


def test_byte_order_mark_works(variants_run):
    assert_accounted(variants_run, "population")


def test_windows_line_endings_work(variants_run):
    assert_accounted(variants_run, "customers")


def test_gzip_works(variants_run):
    assert_accounted(variants_run, "mailout_train")


def test_columns_in_another_order_work(variants_run, data):
    assert_accounted(variants_run, "mailout_test")
    source = pd.read_csv(data / "data" / "mailout_test.csv", sep=";", usecols=["LNR"])
    assert variants_run["run"]["rows"]["mailout_test"]["read"] == len(source)


def test_extra_columns_are_warned_and_listed_in_run_json(variants_run):
    assert variants_run["run"]["ignored_columns"]["mailout_test"] == ["SCORE_2025", "VENDOR_NOTE"] or sorted(
        variants_run["run"]["ignored_columns"]["mailout_test"]
    ) == ["SCORE_2025", "VENDOR_NOTE"]
    assert variants_run["run"]["ignored_columns"]["population"] == []
    assert "VENDOR_NOTE" in variants_run["stderr"] and "ignoring 2 column(s)" in variants_run["stderr"]


# ------------------------------------------------------------------ must fail before any cluster starts


def test_wrong_delimiter_advises_sep(data):
    frame = pd.read_csv(data / "data" / "customers.csv", sep=";", dtype=str, keep_default_na=False)
    comma = data / "customers-comma.csv"
    frame.to_csv(comma, sep=",", index=False)
    out = data / "runs" / "comma"
    assert_fails_cleanly(run(data, "comma", customers=comma), 3, str(comma), "--sep ','", "sep: ','", out=out)

    # What the message advises works: the same files pass the checks with --sep ',' (reading a whole
    # table with another delimiter: test_io.test_other_delimiter).
    result = cli("validate", "--population", comma, "--customers", comma, "--sep", ",", cwd=data)
    assert result.returncode == 0, result.stderr


def test_required_column_missing_is_named_before_the_cluster_starts(data):
    rows = [line.split(";") for line in lines(data / "data" / "population.csv")]
    drop = rows[0].index("ALTERSKATEGORIE_GROB")
    path = write_lines(data / "no-column.csv", [";".join(r[:drop] + r[drop + 1 :]) for r in rows])
    started = time.perf_counter()
    result = run(data, "no-column", population=path)
    elapsed = time.perf_counter() - started
    assert_fails_cleanly(result, 3, str(path), "ALTERSKATEGORIE_GROB", out=data / "runs" / "no-column")
    assert "Dask dashboard" not in result.stdout
    assert elapsed < quick_limit(), elapsed


def test_missing_path_fails_before_the_cluster_starts(data):
    started = time.perf_counter()
    result = run(data, "no-file", customers=data / "nowhere" / "customers.csv")
    elapsed = time.perf_counter() - started
    assert_fails_cleanly(result, 3, "nowhere/customers.csv", "no such file", out=data / "runs" / "no-file")
    assert "Dask dashboard" not in result.stdout
    assert elapsed < quick_limit(), elapsed


def test_empty_file(data):
    path = data / "empty.csv"
    path.write_bytes(b"")
    assert_fails_cleanly(
        run(data, "empty", customers=path), 3, str(path), "empty", out=data / "runs" / "empty"
    )


@pytest.mark.parametrize("table", ["population", "customers", "mailout_test"])
def test_header_only_table(data, table):
    header = lines(data / "data" / f"{table}.csv")[0]
    path = write_lines(data / f"{table}-header-only.csv", [header])
    option = {"population": [], "customers": [], "mailout_test": ["--mailout-test", str(path)]}[table]
    kwargs = {"population": {"population": path}, "customers": {"customers": path}, "mailout_test": {}}[table]
    out = data / "runs" / f"header-{table}"
    assert_fails_cleanly(run(data, out.name, *option, **kwargs), 3, str(path), "no data rows", out=out)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "pages"])
def test_corrupt_parquet(data, damage):
    """A bad footer is found before the cluster starts; data pages that do not decode under a good footer
    are found by the worker reading them, and named with the file and the row group all the same."""
    good = data / f"population-{damage}-source.parquet"
    pd.read_csv(data / "data" / "population.csv", sep=";", nrows=200).to_parquet(good, row_group_size=100)
    content = good.read_bytes()
    path = data / f"population-{damage}.parquet"
    path.write_bytes(
        content[: len(content) // 2]
        if damage == "truncated"
        else b"PAR1" + os.urandom(2000)
        if damage == "garbage"
        else content[:4] + b"\xff" * (len(content) // 3) + content[4 + len(content) // 3 :]
    )
    expected = (
        ["row group", "unreadable Parquet data"] if damage == "pages" else ["not a readable Parquet file"]
    )
    out = data / "runs" / f"parquet-{damage}"
    assert_fails_cleanly(run(data, out.name, population=path), 3, str(path), *expected, out=out)


def test_parquet_folder_without_rows_is_refused_and_one_with_rows_in_a_later_file_is_not(data):
    from segmentation.preflight import InputError, table_columns
    from segmentation.schema import load_schema

    frame = pd.read_csv(data / "data" / "population.csv", sep=";", nrows=50)
    folder = data / "population-empty-files.parquet"
    folder.mkdir()
    for i in range(3):
        frame.iloc[:0].to_parquet(folder / f"part.{i}.parquet")
    with pytest.raises(
        InputError, match=r"population-empty-files\.parquet: the Parquet file has columns but no"
    ):
        table_columns(str(folder), load_schema(), "population")
    frame.to_parquet(folder / "part.3.parquet")
    assert table_columns(str(folder), load_schema(), "population") == list(frame.columns)


def test_k_min_above_k_max_is_a_configuration_error_before_reading(data):
    started = time.perf_counter()
    result = cli(
        "elbow",
        "--population",
        data / "data" / "population.csv",
        "--customers",
        data / "data" / "customers.csv",
        "--k-min",
        10,
        "--k-max",
        3,
        cwd=data,
    )
    assert_fails_cleanly(result, 2, "--k-min", "10", "--k-max", "3")
    assert "Dask dashboard" not in result.stdout
    assert time.perf_counter() - started < quick_limit()


def test_attributes_line_with_extra_fields(data):
    from segmentation.schema import default_attributes_path

    rows = default_attributes_path().read_text(encoding="utf-8").splitlines()
    rows[5] = rows[5] + ",surplus"
    path = write_lines(data / "attributes-extra.csv", rows)
    name = rows[5].split(",")[0]
    out = data / "runs" / "attributes"
    assert_fails_cleanly(
        run(data, "attributes", "--attributes", path), 2, str(path), "line 6", name, "'surplus'", out=out
    )


def test_report_on_a_folder_that_is_not_a_run(data):
    folder = data / "not-a-run"
    folder.mkdir()
    assert_fails_cleanly(cli("report", folder, cwd=data), 3, "proportions.csv")
    assert list(folder.iterdir()) == []


def test_ingest_unknown_table(data):
    out = data / "ingested.parquet"
    result = cli("ingest", data / "data" / "customers.csv", out, "--table", "custmers", cwd=data)
    assert_fails_cleanly(result, 2, "--table", "'custmers'", "customers", out=out)


def test_generate_zero_rows(data):
    out = data / "zero"
    assert_fails_cleanly(cli("generate", "--out", out, "--rows", 0, cwd=data), 2, "--rows", "0", out=out)


# ------------------------------------------------------------------------ must fail in the read pass


@pytest.fixture(scope="module")
def small_blocks(data) -> Path:
    """A job file that reads the population in 1 MB blocks (4 of them), so that a line number counted
    from the start of a block would differ from the line in the file."""
    job = data / "small-blocks.yml"
    job.write_text("blocksize: 1000000\nkmeans:\n  k: 3\n")
    return job


@pytest.mark.parametrize("fields", ["too-many", "too-few"])
def test_row_with_wrong_number_of_fields_names_the_file_line(data, small_blocks, fields):
    rows = lines(data / "data" / "population.csv")
    line = 2900  # in the last of the four blocks
    cells = rows[line - 1].split(";")
    rows[line - 1] = ";".join(cells + ["77"] if fields == "too-many" else cells[:-2])
    path = write_lines(data / f"population-{fields}.csv", rows)
    out = data / "runs" / f"fields-{fields}"
    names = rows[0].split(";")
    expected = (
        [f"{len(cells) + 1} fields", "'77'", names[-1]] if fields == "too-many" else [names[-2], names[-1]]
    )
    result = cli(
        "run",
        small_blocks,
        "--population",
        path,
        "--customers",
        data / "data" / "customers.csv",
        "--out",
        out,
        "--no-report",
        cwd=data,
    )
    assert_fails_cleanly(result, 3, str(path), f"line {line}:", *expected, out=out)


def test_non_utf8_byte_names_line_column_and_value(data, small_blocks):
    raw = (data / "data" / "population.csv").read_bytes().split(b"\n")
    line = 2500
    cells = raw[line - 1].split(b";")
    header = raw[0].decode().split(";")
    column = header.index("CAMEO_DEU_2015")
    cells[column] = b"K\xf6ln"
    raw[line - 1] = b";".join(cells)
    path = data / "population-latin1.csv"
    path.write_bytes(b"\n".join(raw))
    out = data / "runs" / "latin1"
    result = cli(
        "run",
        small_blocks,
        "--population",
        path,
        "--customers",
        data / "data" / "customers.csv",
        "--out",
        out,
        "--no-report",
        cwd=data,
    )
    assert_fails_cleanly(
        result, 3, str(path), f"line {line}", "column CAMEO_DEU_2015", r"'K\xf6ln'", "0xf6", "UTF-8", out=out
    )


def duplicated(data: Path) -> tuple[Path, str, int, int]:
    rows = lines(data / "data" / "customers.csv")
    first, second = 10, 700
    lnr = rows[first - 1].split(";")[0]
    cells = rows[second - 1].split(";")
    rows[second - 1] = ";".join([lnr] + cells[1:])
    return write_lines(data / "customers-duplicate.csv", rows), lnr, first, second


def test_duplicate_lnr_names_the_id_and_both_lines(data):
    path, lnr, first, second = duplicated(data)
    out = data / "runs" / "duplicate"
    result = run(data, "duplicate", "--k", "3", customers=path)
    assert_fails_cleanly(
        result, 3, str(path), f"lines {first} and {second}", f"LNR {lnr}", "--allow-duplicate-ids", out=out
    )


def test_allow_duplicate_ids_keeps_both_and_counts_them(data):
    path, lnr, _, _ = duplicated(data)
    result = run(data, "duplicate-allowed", "--k", "3", "--allow-duplicate-ids", customers=path)
    assert result.returncode == 0, result.stderr
    run_json = json.loads((data / "runs" / "duplicate-allowed" / "run.json").read_text())
    assert run_json["duplicate_ids"] == {"population": 0, "customers": 1}
    assert run_json["rows"]["customers"]["read"] == ROWS["customers"]
    assignments = pd.read_parquet(data / "runs" / "duplicate-allowed" / "assignments")
    kept = assignments[(assignments["table"] == "customers") & (assignments["LNR"] == int(lnr))]
    assert len(kept) == 2


def test_k_larger_than_the_kept_rows(data):
    out = data / "runs" / "big-k"
    result = run(data, "big-k", "--k", "2900")
    message = assert_fails_cleanly(result, 2, "population.csv", "k = 2900", "--k", "3,000 read", out=out)
    kept = int(re.search(r"the ([\d,]+) population rows kept", message).group(1).replace(",", ""))
    assert kept < 2900


def test_strict_shows_the_value_as_written(data):
    rows = lines(data / "data" / "customers.csv")
    header = rows[0].split(";")
    column = header.index("ALTERSKATEGORIE_GROB")  # valid 1..4 and 9, unknown 0 and -1
    cells = rows[41].split(";")
    cells[column] = "8.0"
    lnr = cells[0]
    rows[41] = ";".join(cells)
    path = write_lines(data / "customers-strict.csv", rows)
    out = data / "runs" / "strict"
    result = run(data, "strict", "--k", "3", "--strict", customers=path)
    message = assert_fails_cleanly(
        result, 3, str(path), "column ALTERSKATEGORIE_GROB", f"LNR={lnr}", "8.0", out=out
    )
    assert "np.float64" not in message
