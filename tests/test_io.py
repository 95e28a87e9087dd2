import gzip

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.io import (
    InputError,
    _byte_spans,
    _csv_dtypes,
    ingest,
    normalize_partition,
    read_header,
    read_table,
)
from segmentation.schema import load_schema
from segmentation.synth import generate

from .conftest import other_vendor_frame


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 1999, 2000, 2001, 16_384, 99_999])
@pytest.mark.parametrize("blocksize", [1000, 4096])
def test_blocks_are_placed_as_dask_places_them(tmp_path, size, blocksize):
    """The read pass reads its own blocks (one task each); they start where dask.bytes.read_bytes starts them,
    and, cut at line ends, hold every line exactly once."""
    from dask.bytes import read_bytes
    from fsspec.utils import read_block

    path = tmp_path / "t.csv"
    line = b"123;45\n"
    content = (line * (size // len(line) + 1))[:size]
    path.write_bytes(content)
    _, (blocks,) = read_bytes(str(path), delimiter=b"\n", blocksize=blocksize, sample=False)
    offsets = [int(str(b.key).split("-")[2]) for b in blocks]
    spans = _byte_spans(size, blocksize)
    assert [o for o, _ in spans] == offsets
    assert sum(length for _, length in spans) == size
    with path.open("rb") as handle:
        assert b"".join(read_block(handle, o, length, b"\n") for o, length in spans) == content


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
    with pytest.raises(
        InputError,
        match=r"population.csv: reads as a single column .* looks ','-delimited: pass --sep ','",
    ):
        read_table(path, other_schema)


def test_other_delimiter(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    frame = other_vendor_frame(3000)
    frame.to_csv(path, sep=",", index=False)
    table = read_table(path, other_schema, sep=",", blocksize=20_000)
    assert table.frame.npartitions > 1
    assert table.frame.compute()["CUST_ID"].tolist() == frame["CUST_ID"].tolist()
    assert table.invalid_counts.compute().sum() == 0


def test_empty_file(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    path.write_text("")
    with pytest.raises(InputError, match="population.csv: the file is empty"):
        read_table(path, other_schema)


def test_missing_required_column(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    other_vendor_frame(20).drop(columns=["SCORE"]).to_csv(path, sep=";", index=False)
    with pytest.raises(
        InputError, match=r"population.csv: required column\(s\) missing for table population: SCORE"
    ):
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


def test_ragged_row_names_the_file(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    other_vendor_frame(20).to_csv(path, sep=";", index=False)
    with open(path, "a") as handle:
        handle.write("1;2;3\n")
    with pytest.raises(
        InputError,
        match=r"population.csv: line 22: 3 fields where the header has 8: no value for column\(s\) URBAN",
    ):
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


def test_numbers_parsed_as_text_take_the_compiled_path_with_the_same_outcome(tmp_path, monkeypatch):
    """A block whose typed parse met a non-number is parsed as text; its integer-coded columns are then
    numbers again (one parse per distinct value) and give the positions and invalid counts of the
    column-by-column path, whatever the form: quoted, padded, signed, 4.0, an undeclared sentinel."""
    import pyarrow as pa

    from segmentation.codes import Codebook
    from segmentation.io import code_partition, invalid_value_counts

    generate(tmp_path, rows=1500, customers_rows=10, mailout_rows=10, seed=5)
    schema = load_schema()
    path = tmp_path / "population.csv"
    raw = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, na_values=[""])
    raw = raw[[c for c in schema.columns("population") if c in raw.columns]]
    codebook = Codebook(schema)
    rng = np.random.default_rng(1)
    forms = ["k.A.", " 4 ", "+4", "4.0", "1e0", "-1", "X", "4,0", "  ", "1.5"]
    for column in rng.choice(codebook.numeric_columns, 40, replace=False):
        rows = rng.choice(len(raw), len(forms), replace=False)
        for row, form in zip(rows, forms, strict=True):
            raw.loc[row, column] = form
    text = pa.Table.from_pandas(raw, pa.schema([(c, pa.string()) for c in raw.columns]), preserve_index=False)
    with monkeypatch.context() as patched:  # the column-by-column path must not be taken
        patched.setattr("segmentation.io.normalize_partition", None)
        block, invalid = code_partition(text, codebook, str(path))
    typed = normalize_partition(raw, schema, str(path), strict=False)
    expected = codebook.encode(typed)
    np.testing.assert_array_equal(block.positions, expected.positions)
    np.testing.assert_array_equal(block.ids, expected.ids)
    assert invalid.to_dict() == invalid_value_counts(raw, typed).iloc[0].to_dict()
    assert invalid.sum() >= 40 * 4  # k.A., X, 4,0 and blanks at least; 1.5 and 4 are column-dependent


def test_byte_order_mark_and_windows_line_endings(tmp_path, other_schema):
    frame = other_vendor_frame(500)
    path = tmp_path / "population.csv"
    text = frame.to_csv(sep=";", index=False, lineterminator="\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_header(str(path))[0] == "CUST_ID"
    table = read_table(path, other_schema, blocksize=5_000)
    assert table.frame.npartitions > 1
    typed = table.frame.compute()
    assert typed["CUST_ID"].tolist() == frame["CUST_ID"].tolist()
    assert table.invalid_counts.compute().sum() == 0  # no '\r' left on the last column's values


def test_header_only(tmp_path, other_schema):
    path = tmp_path / "population.csv"
    other_vendor_frame(0).to_csv(path, sep=";", index=False)
    with pytest.raises(InputError, match="population.csv: the file has a header but no data rows"):
        read_table(path, other_schema)


@pytest.mark.parametrize("change", ["too-many", "too-few", "latin-1"])
def test_malformed_row_is_named_by_its_line_in_the_file_not_in_the_block(tmp_path, other_schema, change):
    path = tmp_path / "population.csv"
    other_vendor_frame(3000).to_csv(path, sep=";", index=False)
    rows = path.read_bytes().split(b"\n")
    line = 2700
    cells = rows[line - 1].split(b";")
    if change == "too-many":
        cells.append(b"42")
    elif change == "too-few":
        cells = cells[:-2]
    else:
        cells[2] = b"S\xfcd"  # REGION
    rows[line - 1] = b";".join(cells)
    path.write_bytes(b"\n".join(rows))
    table = read_table(path, other_schema, blocksize=20_000)
    assert table.frame.npartitions > 3
    expected = {
        "too-many": r"line 2700: 9 fields where the header has 8: value\(s\) '42' after the last column SIGNUP",
        "too-few": r"line 2700: 6 fields where the header has 8: no value for column\(s\) SCORE, SIGNUP",
        "latin-1": r"line 2700: column REGION: value 'S\\xfcd' has byte 0xfc, which is not UTF-8",
    }[change]
    with pytest.raises(InputError, match=f"population.csv: {expected}"):
        table.frame.compute()


def test_strict_shows_a_number_as_written(tmp_path, other_schema):
    frame = other_vendor_frame(50)
    frame.loc[7, "INCOME"] = 8.0
    path = tmp_path / "population.csv"
    frame.to_csv(path, sep=";", index=False)
    with pytest.raises(
        InputError, match=r"column INCOME, row with CUST_ID=100008: value 8.0 is not"
    ) as error:
        read_table(path, other_schema, strict=True).frame.compute()
    assert "np." not in str(error.value)


@pytest.mark.parametrize("content", [b"", b"PAR1 not really parquet", b"PAR1"])
def test_unreadable_parquet_is_an_input_error(tmp_path, other_schema, content):
    path = tmp_path / "population.parquet"
    path.write_bytes(content)
    with pytest.raises(InputError, match="population.parquet: not a readable Parquet file"):
        read_table(path, other_schema)


def test_duplicate_id_locations(tmp_path):
    from segmentation.io import duplicate_id_locations

    path = tmp_path / "t.csv"
    path.write_text("A;LNR\nx;1.0\ny;2\nz;1\n")
    assert duplicate_id_locations([str(path)], "LNR", 1) == f"{path}, lines 2 and 4"
    frame = pd.DataFrame({"LNR": [5, 6, 5]})
    frame.to_parquet(tmp_path / "t.parquet")
    assert duplicate_id_locations([str(tmp_path / "t.parquet")], "LNR", 5).endswith("rows 1 and 3")


def test_worker_log_filter_drops_only_input_errors():
    import logging

    from segmentation.io import _HideInputErrors

    def record(exception_text: str) -> logging.LogRecord:
        return logging.LogRecord(
            "distributed.worker",
            logging.ERROR,
            "",
            0,
            "Compute Failed\nKey: %s\nException: %r\n",
            ("k", exception_text),
            None,
        )

    assert not _HideInputErrors().filter(record("InputError('x.csv: line 3: ...')"))
    assert _HideInputErrors().filter(record("ValueError('a bug')"))


def test_ingest_leaves_nothing_behind_on_bad_input(tmp_path, other_schema):
    frame = other_vendor_frame(200)
    frame["SCORE"] = frame["SCORE"].astype(object)
    frame.loc[150, "SCORE"] = "abc"
    path = tmp_path / "population.csv"
    frame.to_csv(path, sep=";", index=False)
    with pytest.raises(InputError, match="value 'abc'"):
        ingest(read_table(path, other_schema, strict=True), str(tmp_path / "out.parquet"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["population.csv"]


@pytest.mark.parametrize("buckets", [1, 2, 5])
@pytest.mark.parametrize("seed", range(5))
def test_repeated_ids_found_by_buckets_equal_those_of_all_ids_at_once(buckets, seed):
    from segmentation.io import _repeats_in_bucket, _split_ids

    rng = np.random.default_rng(seed)
    sizes = rng.integers(0, 30, size=6)
    blocks = [rng.integers(-20, 60, size=n) for n in sizes]
    every = np.concatenate(blocks)
    split = [_split_ids(ids, buckets, i) for i, ids in enumerate(blocks)]
    found = [_repeats_in_bucket(*[s[b] for s in split]) for b in range(buckets)]
    unique, first, seen = np.unique(every, return_index=True, return_counts=True)
    assert sum(count for count, _ in found) == len(every) - len(unique)
    value, where = min((f for _, f in found if f is not None), key=lambda f: f[1][0])
    assert value == every[first[seen > 1].min()]
    ends = np.cumsum(sizes)
    rows = np.flatnonzero(every == value)[:2]
    blocks_of = np.searchsorted(ends, rows, "right")
    assert where == [(int(b), int(r - (ends[b] - sizes[b]))) for b, r in zip(blocks_of, rows, strict=True)]


# A cell as a vendor writes a number or a sentinel: blanks around, none inside (pandas 3.1 reads "+0E 0" as 0).
_CELL = st.builds(
    lambda before, core, after: before + core + after,
    st.sampled_from(["", " ", "  ", "\t"]),
    st.text(alphabet="0123456789+-.eEkA", max_size=8),
    st.sampled_from(["", " ", "\t"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _CELL), max_size=40))
def test_text_columns_read_as_numbers_as_pandas_reads_them(cells):
    """The compiled reading of a text column agrees with ``pd.to_numeric(errors="coerce")`` (the oracle),
    sentinels, blanks, signs, exponents and missing cells included: to the last bit for whole numbers, to
    one unit in the last place otherwise (``3E23``: pandas' parser does not round correctly, Python's
    does); beyond float64's range (``2E308``) pandas reads NaN and this inf, both invalid as a code. Exponents
    past 308 are left out: pandas 2.2 reads ``0e999`` as NaN, pandas 3.1 and Python as 0."""
    import re

    from segmentation.io import _to_numbers

    huge = [c is not None and any(int(e) > 308 for e in re.findall(r"[eE][+-]?(\d+)", c)) for c in cells]
    raw = pd.Series([c for c, h in zip(cells, huge, strict=True) if not h], dtype=object)
    actual = _to_numbers(raw)
    expected = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    whole = np.isfinite(expected) & (np.abs(expected) < 2**53) & (np.floor(expected) == expected)
    np.testing.assert_array_equal(actual[whole], expected[whole])
    finite = np.where(np.isinf(actual), np.nan, actual)
    np.testing.assert_allclose(finite, np.where(np.isinf(expected), np.nan, expected), rtol=3e-16)


@pytest.mark.parametrize("words", [64, 2])
def test_the_cells_that_are_not_whole_numbers_are_read_once_per_word(words, monkeypatch):
    """Decimals, sentinels and text among whole numbers, more distinct ones than the compiled grouping takes
    (``_WORDS``, made 2 to reach it with few): each cell gets the number pandas reads, and the invalid count
    is the cells that are neither numbers nor the unknown code."""
    import pyarrow as pa

    from segmentation import io

    monkeypatch.setattr(io, "_WORDS", words)
    odd = (
        [f"{i}.5" for i in range(40)] + [f"w{i}" for i in range(40)] + [" k.A. ", "k.A.", "unbekannt", "1e1"]
    )
    cells = [str(i % 7) for i in range(300)] + odd + odd[::-1] + [None, " 3.0 "]
    numbers, invalid = io._text_numbers(pa.array(cells, type=pa.string()), ["unbekannt"])
    expected = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype="float64")
    np.testing.assert_array_equal(numbers, expected)
    assert invalid == 2 * (40 + 2)  # w0..w39 and the two k.A., twice; not unbekannt, nor the missing cell


def test_blocks_parsed_as_text_code_as_the_typed_parse_does(tmp_path):
    """Once a block of a file failed its typed parse, the process parses that file's later blocks as text
    (``_TEXT_FILES``): every block of a clean generated file, read either way, gives the same coded block
    and invalid counts. Small blocks, so Arrow's parse chunks and several blocks are both exercised."""
    from segmentation import io as reading
    from segmentation.codes import Codebook
    from segmentation.io import code_partition

    generate(tmp_path, rows=1500, customers_rows=10, mailout_rows=10, seed=6)
    schema = load_schema()
    path = str(tmp_path / "population.csv")
    table = read_table(path, schema, blocksize=400_000)
    codebook = Codebook(schema)
    assert len(table.parts) > 2
    reading._TEXT_FILES.discard(path)
    typed = [code_partition(table.read_part(i), codebook, path) for i in range(len(table.parts))]
    assert path not in reading._TEXT_FILES  # a clean file parses typed
    reading._TEXT_FILES.add(path)
    try:
        for i, (block, invalid) in enumerate(typed):
            raw = table.read_part(i)
            assert all(raw.column(c).type == "string" for c in codebook.numeric_columns)
            text_block, text_invalid = code_partition(raw, codebook, path)
            np.testing.assert_array_equal(text_block.positions, block.positions)
            np.testing.assert_array_equal(text_block.ids, block.ids)
            pd.testing.assert_frame_equal(text_block.rest, block.rest)
            pd.testing.assert_series_equal(text_invalid, invalid)
    finally:
        reading._TEXT_FILES.discard(path)


def test_parsed_blocks_live_in_the_parse_pool_not_in_the_system_heap(tmp_path):
    """Both parses (typed and text) allocate their buffers in ``_parse_pool`` (mimalloc where pyarrow has
    it): thousands of small column chunks in glibc's heap fragmented it under the workers' allocator
    setting. While a parsed block is alive the parse pool holds at least its bytes, the system pool none."""
    import pyarrow as pa

    from segmentation import io as reading

    generate(tmp_path, rows=600, customers_rows=10, mailout_rows=10, seed=7)
    path = str(tmp_path / "population.csv")
    table = read_table(path, load_schema(), blocksize=200_000)
    pool, system = reading._parse_pool(), pa.system_memory_pool()
    try:
        assert pool.backend_name == pa.mimalloc_memory_pool().backend_name == "mimalloc"
    except NotImplementedError:  # a pyarrow built without mimalloc
        assert pool.backend_name == "system"
    for as_text in (False, True):
        (reading._TEXT_FILES.add if as_text else reading._TEXT_FILES.discard)(path)
        try:
            before, system_before = pool.bytes_allocated(), system.bytes_allocated()
            raw = table.read_part(0)
            kind = "string" if as_text else "double"
            assert all(raw.column(c).type == kind for c in ("ALTER_HH", "KBA05_ANTG1"))
            assert pool.bytes_allocated() - before >= raw.nbytes
            if pool is not system:
                assert system.bytes_allocated() == system_before
            del raw
        finally:
            reading._TEXT_FILES.discard(path)
