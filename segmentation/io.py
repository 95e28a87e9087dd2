"""Reading tables from CSV or Parquet (local paths, globs or fsspec URLs), validation against the schema,
CSV -> Parquet ingest, and the atomic-write helper (the run folder is ``segmentation.run_folder``).

Reading a CSV parses each byte block once with pyarrow (integer-coded columns as float64, string columns as
text). The job then codes each raw partition straight into its block of code positions (``code_partition``);
``Table.frame`` offers the same partitions typed (``normalize_partition``: each column the smallest nullable
integer that holds its codes, or a categorical of its string codes) for ingest, ``assign`` and notebooks.
Either way the CAMEO ``X``/``XX`` columns never fail with mismatched dtypes.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import posixpath
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import dask
import fsspec
import numba
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.utils import read_block

from ._estimators import tree_reduce
from .codes import POSITION_DTYPE, Codebook, CodedBlock, save_block, storage_dtype

# The header checks live in preflight (light imports, run before a cluster starts); re-exported here.
from .preflight import InputError as InputError
from .preflight import expand_paths as expand_paths
from .preflight import is_parquet as is_parquet
from .preflight import read_header as read_header
from .preflight import table_columns
from .schema import Attribute, Schema, canonical_code, format_codes
from .scratch import Blocks, block_paths, scratch_folder

if TYPE_CHECKING:  # imported where a frame is built: 0.45 s a process that only codes blocks never spends
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

DEFAULT_BLOCKSIZE = 16_000_000  # dask splits into blocks of 1-2x this: ~13k-26k Arvato rows
_UNNAMED = ("", "Unnamed: 0", "index")
_INDEX = "__index__"  # the name a leading unnamed index column is read under, then dropped


class _HideInputErrors(logging.Filter):
    """Drops a worker's "Compute Failed" record (task, arguments, traceback) for an ``InputError``: the
    client prints the error's one line, which is all a user needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        failed = str(record.msg).startswith("Compute Failed")
        return not (failed and any(str(a).startswith(f"{InputError.__name__}(") for a in record.args or ()))


def hide_input_errors_in_worker_log() -> None:
    """Install the filter on distributed's worker logger of this process (run on every worker)."""
    worker_logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _HideInputErrors) for f in worker_logger.filters):
        worker_logger.addFilter(_HideInputErrors())


@dataclass
class Table:
    """A table read lazily: its partitions, and on first use the typed frame and the per-column count of
    values that were invalid (Dask DataFrames; the job's read pass codes ``parts`` without them)."""

    name: str
    paths: list[str]
    extra_columns: list[str] = field(default_factory=list)
    # Per partition: (source file, Delayed ``CsvBlocks`` or ``ParquetRowGroups`` of the file, selecting the
    # schema's columns, and the partition's number in it), for the read pass to read it in its own task.
    parts: list = field(default_factory=list)
    validate: bool = True
    strict: bool = False
    # Columns of the file that the schema does not know: read past, listed in run.json.
    ignored_columns: list[str] = field(default_factory=list)
    # () -> (frame, invalid_counts): building them costs 0.5 s a table (dask-expr, pandas metadata)
    frames: Callable[[], tuple[dd.DataFrame, dd.Series]] | None = field(default=None, repr=False)

    @functools.cached_property
    def _frames(self) -> tuple[dd.DataFrame, dd.Series]:
        return self.frames()

    @property
    def frame(self) -> dd.DataFrame:
        """The typed frame: the schema's columns, invalid values missing."""
        return self._frames[0]

    @property
    def invalid_counts(self) -> dd.Series:
        """Per column, the number of values that were neither valid nor an unknown code."""
        return self._frames[1]

    def read_part(self, i: int) -> pa.Table:
        """Partition ``i`` as parsed, of the schema's columns, read now in this process."""
        _, parts, number = self.parts[i]
        return parts.compute(scheduler="sync").read(number)


# ---------------------------------------------------------------------------------------------- reading


def _shown(value) -> str:
    """A cell value as a user wrote it: ``8.0``, ``'X'``; never ``np.float64(8.0)``."""
    if isinstance(value, (bytes, bytearray)):  # undecodable bytes shown as \xf6, quoted once
        return "'" + bytes(value).decode("utf-8", "backslashreplace") + "'"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    return repr(value)


def _lines_before(path: str, offset: int, storage_options: dict) -> int:
    """Lines of ``path`` before the byte block that starts at (the first line end after) ``offset``."""
    if offset == 0:
        return 0
    with fsspec.open(path, "rb", **storage_options) as f:
        return read_block(f, 0, offset, b"\n").count(b"\n")


def _malformed_row(error: str, block: bytes, names: list[str], sep: str, first: bool, invalid_row) -> tuple:
    """(line within the block, what is wrong) for a block pyarrow refused even as text."""
    start = 3 if first and block.startswith(b"\xef\xbb\xbf") else 0
    try:
        block[start:].decode("utf-8")
    except UnicodeDecodeError as bad:
        position = start + bad.start
        delimiter = sep.encode()
        line_start = block.rfind(b"\n", 0, position) + 1
        field_start = max(block.rfind(delimiter, line_start, position) + 1, line_start)
        ends = [i for i in (block.find(delimiter, position), block.find(b"\n", position)) if i >= 0]
        value = block[field_start : min(ends, default=len(block))].rstrip(b"\r")
        index = block.count(delimiter, line_start, position)
        column = names[index] if index < len(names) else f"field {index + 1}"
        return (
            block.count(b"\n", 0, position) + 1,
            f"column {column}: value {_shown(value)} has byte 0x{block[position]:02x}, which is not UTF-8 "
            "(save the file as UTF-8)",
        )
    if invalid_row is not None:
        fields = invalid_row.text.split(sep)
        if invalid_row.actual_columns > invalid_row.expected_columns:
            extra = fields[invalid_row.expected_columns :]
            what = f"value(s) {', '.join(_shown(v) for v in extra[:3])} after the last column {names[-1]}"
        else:
            absent = names[invalid_row.actual_columns :]
            what = f"no value for column(s) {', '.join(absent[:5])}" + (
                f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            )
        return (
            invalid_row.number,
            f"{invalid_row.actual_columns} fields where the header has {invalid_row.expected_columns}: {what}",
        )
    return None, f"malformed CSV: {error}"


def _csv_dtypes(schema: Schema, columns: Iterable[str]) -> dict[str, str]:
    dtypes = {}
    for column in columns:
        if column not in schema:
            dtypes[column] = "object"
            continue
        attribute = schema[column]
        dtypes[column] = "float64" if attribute.integer_coded else "object"
    return dtypes


# Arrow parses a block in chunks of this many bytes: one 16 MB chunk took 0.26-0.28 s per block of the real
# Arvato shape, 2 MB chunks 0.15 s (what a chunk parses into then stays in the CPU's caches); 128 KB 0.22 s.
PARSE_CHUNK_BYTES = 2 << 20


@functools.cache
def _parse_pool() -> pa.MemoryPool:
    """The memory pool of the CSV parse: Arrow's mimalloc pool where pyarrow has it, else the system's.

    A block parsed as text is ~9,000 small buffers (column chunks) and their combined copies. In glibc's
    heap they fragment it: with the workers' allocator setting (``profile.py``) a worker's heap grew to
    1.6 GB on text-parsed files. In mimalloc's own pages they do not touch that heap (40 blocks of the
    second layout, one process: 11.0 s and 562 MB at the peak, against 12.5 s and 1,305 MB in the system
    pool; 15.5 s / 425 MB against 17.7 s / 395 MB under Dask's default trimming). Arrow's jemalloc pool did
    as well (10.9 s, 548 MB) but is not in every build."""
    try:
        return pa.mimalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it
        return pa.system_memory_pool()


# Files of which this process met a block whose typed parse failed (text in an integer-coded column, such as
# an undeclared sentinel, which then is usually in every block): their later blocks are parsed as text at
# once rather than typed first (a failed typed parse costs 2 ms per MB). Only speed depends on it.
_TEXT_FILES: set[str] = set()


def _parse_block(
    block: bytes, layout: tuple[list[str], dict[str, str]], sep: str, first: bool, where: tuple
) -> pa.Table:
    """Parse one byte block of a CSV with pyarrow (4x pandas' C parser, one thread per block).

    A value the typed parse rejects (text in an integer-coded column) falls back to reading that block
    as text; ``normalize_partition`` then reports the value and its row. A block refused even as text
    raises ``InputError`` naming the line in the file (not in the block), the column and the value.
    ``layout`` is (column names, dtypes); ``where`` is (path, the block's byte offset, storage options).
    """
    names, dtypes = layout
    read_options = pacsv.ReadOptions(
        column_names=names,
        skip_rows=1 if first else 0,
        use_threads=False,
        block_size=PARSE_CHUNK_BYTES,
    )
    invalid_rows = []

    def first_invalid_row(row) -> str:
        invalid_rows.append(row)
        return "error"

    parse_options = pacsv.ParseOptions(delimiter=sep, invalid_row_handler=first_invalid_row)

    def parse(types: dict) -> pa.Table:
        convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        return pacsv.read_csv(
            io.BytesIO(block),
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert,
            memory_pool=_parse_pool(),
        )

    path, offset, storage_options = where
    if path not in _TEXT_FILES:
        try:
            return parse({n: pa.float64() if t == "float64" else pa.string() for n, t in dtypes.items()})
        except pa.ArrowInvalid:
            _TEXT_FILES.add(path)
            invalid_rows.clear()
    try:
        return parse({n: pa.string() for n in names})
    except pa.ArrowInvalid as error:
        line, what = _malformed_row(
            str(error), block, names, sep, first, invalid_rows[0] if invalid_rows else None
        )
        if line is None:
            raise InputError(f"{path}: {what}") from None
        line += _lines_before(path, offset, storage_options)
        raise InputError(f"{path}: line {line}: {what}") from None


def duplicate_id_locations(
    files: list[str], id_column: str, value: int, sep: str = ";", storage_options: dict | None = None
) -> str:
    """Where an id first occurs twice, for a message: ``FILE, lines 3 and 2001`` (CSV lines counted from
    the start of the file, header included) or ``FILE, rows 2 and 7`` (Parquet). Reads the files again:
    only called when a duplicate was found."""
    found: list[tuple[str, str, int]] = []
    for file in files:
        if is_parquet(file):
            ids = pd.read_parquet(file, columns=[id_column], storage_options=storage_options)[id_column]
            found += [(file, "row", int(r) + 1) for r in np.flatnonzero(ids.to_numpy() == value)[:2]]
        else:
            options = dict(storage_options or {})
            with fsspec.open(
                file, "rt", compression="infer", encoding="utf-8-sig", errors="replace", **options
            ) as f:
                index = [n.strip().strip('"') for n in f.readline().rstrip("\r\n").split(sep)].index(
                    id_column
                )
                for number, line in enumerate(f, start=2):
                    fields = line.split(sep, index + 1)
                    if len(fields) > index and canonical_code(fields[index].strip()) == str(value):
                        found.append((file, "line", number))
                        if len(found) == 2:
                            break
        if len(found) >= 2:
            break
    if len(found) < 2:  # e.g. an id written in a form the scan does not match
        return ", ".join(files)
    (file_a, kind_a, at_a), (file_b, kind_b, at_b) = found[:2]
    if file_a == file_b:
        return f"{file_a}, {kind_a}s {at_a} and {at_b}"
    return f"{file_a}, {kind_a} {at_a} and {file_b}, {kind_b} {at_b}"


@dataclass(frozen=True)
class CsvBlocks:
    """A CSV file's byte blocks, each read and parsed to an Arrow table by ``read(i)`` inside one task (so a
    block's bytes and its parsed table live only in the task that codes it). ``spans``: (byte offset,
    length) per block, cut at line ends as ``dask.bytes.read_bytes`` cuts; length None reads the whole
    (compressed) file. ``columns``: the columns kept, in order (all of the file's when None)."""

    path: str
    names: list[str]
    dtypes: dict[str, str]
    sep: str
    storage_options: dict
    spans: list[tuple[int, int | None]]
    columns: list[str] | None = None

    def __len__(self) -> int:
        return len(self.spans)

    def read(self, i: int) -> pa.Table:
        offset, length = self.spans[i]
        with fsspec.open(self.path, "rb", compression="infer", **self.storage_options) as handle:
            block = handle.read() if length is None else read_block(handle, offset, length, b"\n")
        where = (self.path, offset, self.storage_options)
        table = _parse_block(block, (self.names, self.dtypes), self.sep, i == 0, where)
        return table if self.columns is None else table.select(self.columns)


@dataclass(frozen=True)
class ParquetRowGroups:
    """A Parquet file's (or folder's) row groups, each read by ``read(i)`` inside one task; ``pieces`` are
    (file, row group, the file as the user named it), ``columns`` as for ``CsvBlocks``."""

    fs: fsspec.AbstractFileSystem
    pieces: list[tuple[str, int, str]]
    columns: list[str] | None = None

    def __len__(self) -> int:
        return len(self.pieces)

    def read(self, i: int) -> pa.Table:
        table = _read_row_group(self.pieces[i], self.fs)
        return table if self.columns is None else table.select(self.columns)


def _byte_spans(size: int, blocksize: int) -> list[tuple[int, int]]:
    """(offset, length) of each block of a ``size``-byte file, as ``dask.bytes.read_bytes`` places them
    (blocks of 1-2x ``blocksize``, spare bytes spread; none for an empty file)."""
    if size == 0:
        return []
    step = size / (size // blocksize) if size % blocksize and size > blocksize else blocksize
    offsets, place = [0], 0.0
    while size - place > step * 2 - 1:
        place += step
        offsets.append(int(place))
    return [(o, e - o) for o, e in zip(offsets, offsets[1:] + [size], strict=True)]


def _read_part(parts: CsvBlocks | ParquetRowGroups, i: int) -> pd.DataFrame:
    return parts.read(i).to_pandas()


def _csv_blocks(
    path: str, schema: Schema, table: str, storage_options: dict, blocksize, sep: str
) -> CsvBlocks:
    names = table_columns(path, schema, table, storage_options, sep)
    if names[0] in _UNNAMED:
        names = [_INDEX] + names[1:]
    dtypes = _csv_dtypes(schema, names)
    if blocksize is None or str(path).endswith((".gz", ".bz2", ".xz", ".zip")):
        spans = [(0, None)]  # compressed files cannot be split
    else:
        fs, local = url_to_fs(path, **storage_options)
        spans = _byte_spans(fs.size(local), int(blocksize))
    return CsvBlocks(str(path), names, dtypes, sep, storage_options, spans)


def _csv_frame(blocks: CsvBlocks) -> dd.DataFrame:
    """The file's blocks as a Dask DataFrame of their columns as parsed (a leading unnamed index dropped)."""
    empty = pd.read_csv(
        io.StringIO(blocks.sep.join(blocks.names) + "\n"), sep=blocks.sep, dtype=blocks.dtypes
    )
    raw = _partitions_frame(blocks, empty)
    return raw.drop(columns=_INDEX) if _INDEX in blocks.names else raw


def _partitions_frame(parts: CsvBlocks | ParquetRowGroups, meta: pd.DataFrame) -> dd.DataFrame:
    import dask.dataframe as dd

    shared = dask.delayed(parts, traverse=False)
    return dd.from_delayed(
        [dask.delayed(_read_part)(shared, i) for i in range(len(parts))], meta=meta, verify_meta=False
    )


@contextmanager
def replace_when_done(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it onto ``path``
    (atomic on one file system), otherwise delete it, so ``path`` is never half-written."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_row_group(piece: tuple[str, int, str], fs: fsspec.AbstractFileSystem) -> pa.Table:
    """One row group of a Parquet file; unreadable data (corrupt pages, a bad codec) is the input's fault and
    named as such, with the file and the row group, rather than a pyarrow traceback from a worker."""
    path, group, shown = piece
    try:
        with fs.open(path, "rb") as handle:
            return pq.ParquetFile(handle).read_row_group(group)
    except (OSError, pa.ArrowException) as error:
        reason = "".join(c if c.isprintable() else "?" for c in str(error))  # pyarrow quotes raw bytes
        raise InputError(f"{shown}: row group {group}: unreadable Parquet data ({reason})") from None


def _parquet_groups(path: str, storage_options: dict) -> tuple[ParquetRowGroups, pd.DataFrame]:
    """A Parquet file or folder as one task per row group (as ``_csv_blocks`` per block), and its columns
    as a zero-row frame. Only the footers are read here."""
    fs, local = url_to_fs(path, **storage_options)
    dataset = pads.dataset(local, format="parquet", filesystem=fs)
    folder = fs.isdir(local)
    pieces = [
        (f.path, g.id, f"{path.rstrip('/')}/{posixpath.relpath(f.path, local)}" if folder else path)
        for f in dataset.get_fragments()
        for g in f.row_groups
    ]
    return ParquetRowGroups(fs, pieces), dataset.schema.empty_table().to_pandas()


def read_table(
    path: str | os.PathLike,
    schema: Schema,
    table: str = "population",
    storage_options: dict | None = None,
    blocksize: int | None = DEFAULT_BLOCKSIZE,
    strict: bool = False,
    sep: str = ";",
    validate: bool = True,
) -> Table:
    """Read a table (CSV, optionally compressed, or Parquet; path, glob or URL) typed by the schema.

    Columns the schema does not know are ignored (logged); extras (``CUSTOMER_GROUP``...) are kept aside
    in the frame but never used as features. Invalid values (neither a valid nor an unknown code) become
    missing and are counted per column in ``Table.invalid_counts``; ``strict=True`` raises instead.
    ``validate=False`` trusts Parquet this project wrote (ingest) and only restores dtypes.
    """
    storage_options = dict(storage_options or {})
    paths = expand_paths(path, storage_options)
    files, ignored = [], []
    for file in paths:
        if is_parquet(file):
            table_columns(file, schema, table, storage_options)
            parsed, empty = _parquet_groups(file, storage_options)
            names, raw_frame = list(empty.columns), functools.partial(_partitions_frame, parsed, empty)
        else:
            # The parse tasks themselves, so the job's own pass skips dask's conversion of text columns.
            parsed = _csv_blocks(file, schema, table, storage_options, blocksize, sep)
            names, raw_frame = [n for n in parsed.names if n != _INDEX], functools.partial(_csv_frame, parsed)
        unknown = [c for c in names if c not in schema]
        if unknown:
            logger.warning(
                "%s: ignoring %d column(s) the schema does not know: %s", file, len(unknown), unknown[:5]
            )
            ignored += [c for c in unknown if c not in ignored]
        files.append((file, parsed, raw_frame, [c for c in names if c in schema]))
    columns = [c for c in schema.columns(table) if all(c in kept for *_, kept in files)]
    parts = []
    for file, parsed, _, _ in files:
        selected = dask.delayed(replace(parsed, columns=columns), traverse=False)
        parts += [(file, selected, i) for i in range(len(parsed))]
    extras = [c for c in columns if schema[c].kind == "extra"]

    def frames() -> tuple[dd.DataFrame, dd.Series]:
        import dask.dataframe as dd

        typed, invalids = [], []
        for file, _, raw_frame, _ in files:
            raw = raw_frame()[columns]
            if not validate:
                meta = empty_typed_frame(schema, columns)
                typed.append(raw.map_partitions(_restore_dtypes, meta, meta=meta))
                invalids.append(
                    raw.map_partitions(
                        lambda p: pd.DataFrame({c: [0] for c in p.columns}),
                        meta=pd.DataFrame({c: pd.Series(dtype="int64") for c in columns}),
                    )
                )
                continue
            frame = raw.map_partitions(
                normalize_partition, schema, file, strict, meta=empty_typed_frame(schema, columns)
            )
            typed.append(frame)
            counts_meta = pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
            invalids.append(
                dd.map_partitions(
                    invalid_value_counts, raw, frame, schema, meta=counts_meta, align_dataframes=False
                )
            )
        frame = typed[0] if len(typed) == 1 else dd.concat(typed)
        invalid = (invalids[0] if len(invalids) == 1 else dd.concat(invalids)).sum()
        return frame, invalid

    return Table(table, paths, extras, parts, validate, strict, ignored, frames)


def code_partition(
    raw: pa.Table | pd.DataFrame,
    codebook: Codebook,
    source: str,
    strict: bool = False,
    validate: bool = True,
) -> tuple[CodedBlock, pd.Series]:
    """A raw partition (an Arrow table as parsed, or a pandas frame as read from Parquet) -> (its coded
    block, invalid values per column), without a typed frame.

    Equivalent to ``codebook.encode(normalize_partition(raw))`` with ``invalid_value_counts``, but the
    integer-coded columns (nearly all) are checked against their code domains in one compiled pass
    (``Codebook.code_numbers``); the few others (ids, text codes, dates, extras) go through
    ``_classify``. A partition parsed as text (the fallback of ``_parse_block``), and any invalid value
    under ``strict`` or in the id column, take the column-by-column path, which names the value at fault.
    Integer-coded columns parsed as text (a block whose typed parse met a non-number, such as a vendor's
    undeclared sentinel) are turned into numbers first (``_text_numbers``), so such files stay on the
    compiled path: their cost per byte is that of clean files plus one text parse.
    """
    schema = codebook.schema
    if not validate:
        frame = raw.to_pandas() if isinstance(raw, pa.Table) else raw
        typed = _restore_dtypes(frame, empty_typed_frame(schema, list(frame.columns)))
        return codebook.encode(typed), pd.Series(0, index=frame.columns, dtype="int64")
    if isinstance(raw, pd.DataFrame):
        raw = pa.Table.from_pandas(raw, preserve_index=False)
    numeric = codebook.numeric_columns
    types = [raw.schema.field(c).type for c in numeric]
    text = [pa.types.is_string(t) for t in types]
    if not all(pa.types.is_string(t) or pa.types.is_floating(t) or pa.types.is_integer(t) for t in types):
        frame = raw.to_pandas()
        typed = normalize_partition(frame, schema, source, strict)
        return codebook.encode(typed), invalid_value_counts(frame, typed, schema).iloc[0]
    # Each column's numbers written straight into its row (the text ones by ``_text_numbers``): no array
    # per column in between (360 of them, 50 MB a 16 MB block of a file parsed as text).
    values, not_numbers = np.empty((len(numeric), raw.num_rows)), {}
    for row, column, is_text in zip(values, numeric, text, strict=True):
        if is_text:
            _, not_numbers[column] = _text_numbers(raw.column(column), schema[column].text_unknown_codes, row)
            continue
        start = 0
        for chunk in raw.column(column).chunks:  # empty: NaN
            row[start : start + len(chunk)] = chunk.to_numpy(zero_copy_only=False)
            start += len(chunk)
    positions = np.empty((raw.num_rows, len(codebook.coded)), dtype=POSITION_DTYPE)
    invalid = dict(zip(numeric, codebook.code_numbers(values, positions).tolist(), strict=True))
    for column, count in not_numbers.items():
        invalid[column] += count
    rest = raw.select([c for c in raw.column_names if c not in invalid]).to_pandas()
    others = {}
    for column in rest.columns:
        typed, bad = _classify(rest[column], schema[column])
        others[column] = typed
        invalid[column] = int(bad.sum())
    if (strict and any(invalid.values())) or invalid.get(schema.id_column):
        # Raises, naming the file, column, row and value.
        normalize_partition(raw.to_pandas(), schema, source, strict)
    block = codebook.encode(pd.DataFrame(others, index=rest.index), positions=positions)
    return block, pd.Series(invalid, dtype="int64")[raw.column_names]


# A number as pandas' ``to_numeric`` reads one (after trimming blanks): what the text path accepts.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


@numba.njit(nogil=True, cache=True)
def _parse_whole_numbers(data, offsets, validity, first_bit, out, other) -> int:
    """Parse each string of an Arrow string array (its data bytes, int32 offsets and validity bitmap, empty
    when every cell is valid, read from bit ``first_bit``) written as a whole number: blanks, a sign, digits,
    and ``.0...`` (``4``, ``-1``, `` 4.0 ``). Empty cells -> NaN. Anything else -> NaN, its index written to
    ``other`` for the general path; returns how many such."""
    found = 0
    for i in range(len(out)):
        out[i] = np.nan
        if len(validity) and not (validity[(first_bit + i) >> 3] >> ((first_bit + i) & 7)) & 1:
            continue
        start, end = offsets[i], offsets[i + 1]
        if end - start == 1 and 48 <= data[start] <= 57:  # one digit: most cells of coded files
            out[i] = data[start] - 48
            continue
        while start < end and data[start] == 32:
            start += 1
        while end > start and data[end - 1] == 32:
            end -= 1
        sign, value, digits = 1.0, 0.0, 0
        if start < end and (data[start] == 45 or data[start] == 43):  # - +
            sign = -1.0 if data[start] == 45 else 1.0
            start += 1
        while start < end and 48 <= data[start] <= 57:
            value = value * 10.0 + (data[start] - 48)
            digits += 1
            start += 1
        if start < end and data[start] == 46:  # . then zeros only
            start += 1
            while start < end and data[start] == 48:
                start += 1
        if start == end and 0 < digits <= 15:
            out[i] = sign * value
        else:
            other[found] = i
            found += 1
    return found


def _string_buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(data bytes, int32 offsets of its cells, validity bitmap or an empty array, the bitmap's first bit)."""
    validity, offsets, data = chunk.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    bits = np.frombuffer(validity, dtype=np.uint8) if chunk.null_count else np.zeros(0, np.uint8)
    return data, offsets, bits, chunk.offset


# Distinct words (``k.A.``, ``1.5``) that ``_group_words`` numbers per column; cells of more go one by one.
_WORDS = 64


@numba.njit(nogil=True, cache=True)
def _group_words(data, offsets, cells, starts, ends, ids) -> int:
    """Number the distinct strings among the ``cells`` of an Arrow string array: word ``j`` is
    ``data[starts[j]:ends[j]]``, ``ids[n]`` the word of ``cells[n]``, -1 once ``len(starts)`` words are
    taken; returns the number of words."""
    words = 0
    for n in range(len(cells)):
        start, end = offsets[cells[n]], offsets[cells[n] + 1]
        ids[n] = -1
        for j in range(words):
            if ends[j] - starts[j] == end - start:
                same = True
                for m in range(end - start):
                    if data[starts[j] + m] != data[start + m]:
                        same = False
                        break
                if same:
                    ids[n] = j
                    break
        if ids[n] < 0 and words < len(starts):
            starts[words], ends[words] = start, end
            ids[n] = words
            words += 1
    return words


def _text_numbers(
    text: pa.Array | pa.ChunkedArray, unknown: Iterable[str] = (), out: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """A text column as float64 numbers (missing, or not a number: NaN), written into ``out`` when given,
    and how many of its cells are invalid: present, not a number and not one of the ``unknown`` codes
    (``unbekannt``).

    Whole numbers (nearly every cell) are parsed by a compiled loop over the Arrow buffers; the other cells
    (``1e0``, ``1.5``, sentinels) are grouped by their text in another, and each distinct word is read once in
    Python. One by one in Python, the ~1% of such cells of a layout with an undeclared sentinel (264,000 a
    64 MB block) cost 0.26 s of its 0.47 s of coding; Arrow compute calls on them cost ~0.1 ms a column, a
    regex over every cell 0.45 s per 16 MB block."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()  # one compiled call
    out = np.empty(len(text)) if out is None else out
    other = np.empty(len(text), dtype=np.int64)
    data, offsets, bits, first_bit = _string_buffers(text)
    cells = other[: _parse_whole_numbers(data, offsets, bits, first_bit, out, other)]
    if not len(cells):
        return out, 0
    starts, ends, ids = np.empty(_WORDS, np.int64), np.empty(_WORDS, np.int64), np.empty(len(cells), np.int64)
    words = _group_words(data, offsets, cells, starts, ends, ids)
    unknown = set(unknown)
    read = [_read_word(bytes(data[starts[j] : ends[j]]), unknown) for j in range(words)]
    values = np.array([value for value, _ in read], dtype=np.float64)
    wrong = np.array([bad for _, bad in read], dtype=np.int64)
    grouped = ids >= 0
    out[cells[grouped]] = values[ids[grouped]]
    bad = int(wrong[ids[grouped]].sum())
    seen: dict[bytes, tuple[float, bool]] = {}
    for i in cells[~grouped]:  # a column of more than _WORDS distinct words: still each word read once
        raw = bytes(data[offsets[i] : offsets[i + 1]])
        if raw not in seen:
            seen[raw] = _read_word(raw, unknown)
        out[i], wrong_cell = seen[raw]
        bad += wrong_cell
    return out, bad


def _read_word(raw: bytes, unknown: set[str]) -> tuple[float, bool]:
    """A cell that is not a whole number: its number (NaN if it is none), and whether it is invalid (neither
    a number nor one of the ``unknown`` codes)."""
    word = raw.decode("utf-8", "replace").strip()
    number = _NUMBER.fullmatch(word) is not None
    return (float(word) if number else np.nan), (not number and word not in unknown)


def _to_numbers(raw: pd.Series) -> np.ndarray:
    """A raw column as float64 numbers, NaN where missing or not a number (``pd.to_numeric(errors="coerce")``
    of its text): text through the compiled ``_text_numbers`` (to_numeric took 1.5 s of the 2.0 s a block of
    a layout with quoted codes cost in ``normalize_partition``), anything else through pandas."""
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.to_numpy(dtype="float64", na_value=np.nan)
    try:
        return _text_numbers(pa.array(raw.to_numpy(dtype=object), type=pa.string(), from_pandas=True))[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text (numbers among strings, say)
        return pd.to_numeric(raw.astype(object), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _restore_dtypes(frame: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    differ = {c: t for c, t in meta.dtypes.items() if frame[c].dtype != t}
    return frame.astype(differ) if differ else frame


def empty_typed_frame(schema: Schema, columns: list[str]) -> pd.DataFrame:
    """A zero-row frame with each column's storage dtype (dask's meta)."""
    return pd.DataFrame({c: pd.Series(dtype=storage_dtype(schema[c])) for c in columns})


def _classify(raw: pd.Series, attribute: Attribute) -> tuple[pd.Series, pd.Series]:
    """A raw column -> (typed column with invalid values missing, mask of invalid values)."""
    present = raw.notna()
    if attribute.kind == "date":
        # Dates read from Parquet are datetime64 already (to_datetime would box each one: 27 ms a block).
        if isinstance(raw.dtype, np.dtype) and raw.dtype.kind == "M":
            parsed = raw
        else:
            parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601")
        # pandas 3 parses years outside datetime64[ns] (0001, -1): invalid here, like pandas 2 makes them
        parsed = parsed.where(parsed.between(pd.Timestamp.min, pd.Timestamp.max))
        return parsed.astype("datetime64[ns]"), present & parsed.isna() & ~_unstored_unknowns(raw, attribute)
    if attribute.integer_coded:
        numbers = _to_numbers(raw)
        present_numbers = ~np.isnan(numbers)
        if attribute.kind in ("id", "numeric"):
            valid = present_numbers & (
                np.mod(numbers, 1, where=present_numbers, out=np.ones_like(numbers)) == 0
            )
            bounds = attribute.value_range
            if bounds is not None:
                unknown = np.array([float(c) for c in attribute.integer_unknown_codes])
                valid &= ((numbers >= bounds[0]) & (numbers <= bounds[1])) | np.isin(numbers, unknown)
            elif attribute.kind == "numeric":
                valid &= np.abs(numbers, where=present_numbers, out=np.zeros_like(numbers)) < 2**31
        else:
            valid = np.isin(numbers, np.array([float(c) for c in attribute.codes + attribute.unknown_codes]))
        data = np.where(valid, numbers, 0).astype(attribute.storage_dtype.lower())
        typed = pd.Series(pd.arrays.IntegerArray(data, ~valid), index=raw.index)
        return typed, present & ~valid & ~_unstored_unknowns(raw, attribute)
    # Text codes: canonicalise each distinct value once (a column holds a few dozen), then give each row the
    # category of its distinct value by number (a lookup of Python objects per row took 5-10 ms a block).
    numbers, distinct = pd.factorize(raw)  # -1: missing
    canonical = (
        pd.Series(np.asarray(distinct, dtype=object), dtype=object)
        .astype("string")
        .str.strip()
        .str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)
    )
    dtype = storage_dtype(attribute)  # categorical: values outside its categories are invalid
    category = dtype.categories.get_indexer(pd.Index(canonical, dtype=object))
    codes = np.append(category, -1)[numbers]
    typed = pd.Series(pd.Categorical.from_codes(codes, dtype=dtype), index=raw.index, name=raw.name)
    return typed, present & (codes < 0)


def normalize_partition(raw: pd.DataFrame, schema: Schema, source: str, strict: bool) -> pd.DataFrame:
    """Cast a raw partition to storage dtypes; invalid values become missing (or raise when strict)."""
    id_column = schema.id_column
    out = {}
    for column in raw.columns:
        attribute = schema[column]
        typed, invalid = _classify(raw[column], attribute)
        if invalid.any() and (strict or attribute.kind == "id"):
            position = int(np.flatnonzero(invalid.to_numpy())[0])
            row_id = raw[id_column].iloc[position] if id_column in raw.columns else "?"
            row_id = canonical_code(row_id) or "?"
            expected = (
                "an integer id"
                if attribute.kind == "id"
                else f"a valid code ({format_codes(attribute.codes) or 'a number'}) or an unknown code "
                f"({format_codes(attribute.unknown_codes) or 'none'})"
            )
            raise InputError(
                f"{source}: column {column}, row with {id_column}={row_id}: value {_shown(raw[column].iloc[position])} "
                f"is not {expected}"
            )
        out[column] = typed
    return pd.DataFrame(out, index=raw.index)


def _unstored_unknowns(raw: pd.Series, attribute: Attribute) -> np.ndarray:
    """Cells holding an unknown code that the typed column cannot hold (a numeric column's text code like
    ``unbekannt``, any unknown code of a date column): read as missing, not invalid."""
    codes = attribute.unknown_codes if attribute.kind == "date" else ()
    if attribute.integer_coded and attribute.kind != "date":
        codes = attribute.text_unknown_codes
    if not codes or pd.api.types.is_numeric_dtype(raw):
        return np.zeros(len(raw), dtype=bool)
    return raw.astype("string").str.strip().isin(codes).fillna(False).to_numpy(bool)


def invalid_value_counts(
    raw: pd.DataFrame, typed: pd.DataFrame, schema: Schema | None = None
) -> pd.DataFrame:
    """One row: per column, how many values were present in the raw partition but invalid (now missing);
    with ``schema``, unknown codes the typed column cannot hold (``_unstored_unknowns``) are not invalid."""
    invalid = raw.notna().to_numpy() & typed.isna().to_numpy()
    for j, column in enumerate(raw.columns if schema is not None else ()):
        invalid[:, j] &= ~_unstored_unknowns(raw[column], schema[column])
    return pd.DataFrame(invalid.sum(axis=0, keepdims=True), columns=raw.columns)


# ---------------------------------------------------------------------------------------------- ingest


def ingest(table: Table, out: str, storage_options: dict | None = None, also: dict | None = None):
    """Write a table to Parquet once (compact dtypes), counting invalid values in the same pass.

    ``also`` holds further lazy results over the same table (e.g. missing counts) computed in that pass,
    so the CSV is parsed once. Returns ``({"rows": n, "invalid_values": {column: count}}, also_results)``;
    the Parquet folder is written to a temporary sibling and moved into place when complete.
    """
    fs, target = url_to_fs(out, **(storage_options or {}))
    staging = f"{str(out).rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    write = table.frame.to_parquet(
        staging, write_index=False, compute=False, storage_options=storage_options, write_metadata_file=False
    )
    rows = table.frame.map_partitions(len).sum()
    try:
        _, invalid, n, extra = dask.compute(write, table.invalid_counts, rows, also or {})
    except BaseException:
        staged = url_to_fs(staging, **(storage_options or {}))[1]
        if fs.exists(staged):
            fs.rm(staged, recursive=True)
        raise
    if fs.exists(target):
        fs.rm(target, recursive=True)
    fs.mv(url_to_fs(staging, **(storage_options or {}))[1], target, recursive=True)
    counts = {c: int(v) for c, v in invalid.items() if v}
    return {"rows": int(n), "invalid_values": counts}, extra


# ------------------------------------------------------------------------------------------- the read pass


@dataclass
class FirstPass:
    """What the read pass counts of a table: missing values per column (and ``__rows__``, the rows read),
    invalid values per column, and the rows that repeat an id seen earlier."""

    missing: pd.Series
    invalid: dict[str, int]
    duplicate_ids: int

    @property
    def rows(self) -> int:
        return int(self.missing["__rows__"])

    def to_payload(self) -> dict:
        """JSON-ready (the read checkpoint)."""
        return {
            "missing": {str(c): int(v) for c, v in self.missing.items()},
            "invalid": self.invalid,
            "duplicate_ids": int(self.duplicate_ids),
        }

    @classmethod
    def from_payload(cls, payload: dict) -> FirstPass:
        return cls(pd.Series(payload["missing"], dtype="int64"), payload["invalid"], payload["duplicate_ids"])


def _code_and_save(
    reader: CsvBlocks | ParquetRowGroups,
    i: int,
    codebook: Codebook,
    source: str,
    checks: tuple,
    path: str,
    storage: dict,
):
    """Partition ``i`` of ``reader`` read, parsed, coded and saved at ``path``, in one task; returns ((missing
    counts, invalid counts), row ids). ``checks`` is (strict, validate)."""
    block, invalid = code_partition(reader.read(i), codebook, source, *checks)
    missing = codebook.missing_counts(block)  # also each row's, saved with the block
    save_block(block, path, storage)
    return (missing, invalid), block.ids


def _add_counts(*parts: tuple) -> tuple:
    return tuple(sum(values[1:], values[0]) for values in zip(*parts, strict=True))


# Ids of about this many blocks are checked for repeats together (one task per bucket of ids; ~20 MB of
# ids, block and row numbers at the default blocksize). Every block hands each bucket its share in a task of
# its own, so there are blocks x buckets of those, ~0.45 ms each (1x, 33 buckets vs 4: +1.2 s): with 16
# blocks a bucket, 40,500 at 10x the real size (~18 s of its read stage); with 64, 10,100.
BLOCKS_PER_ID_BUCKET = 64


def code_tables(
    tables: dict[str, Table],
    codebook: Codebook,
    work: str,
    storage_options: dict,
    allow_duplicate_ids: bool = False,
    sep: str = ";",
) -> tuple[dict[str, Blocks], dict[str, FirstPass]]:
    """The read pass: parse, validate and code every partition of every table in one computation, each
    coded block saved in the scratch folder ``work/TABLE/``; returns each table's ``Blocks`` and
    ``FirstPass``.

    An id that repeats within a table is an ``InputError`` naming it and both its lines, unless
    ``allow_duplicate_ids`` (then the repeats are counted). The ids stay on the workers: each block's ids are
    split into buckets by value, each bucket checked for repeats by one task, and only the count and the
    first repeated id come back, so what the client receives does not grow with the rows."""
    shared = dask.delayed(codebook, traverse=False)
    blocks, lazy = {}, {}
    for name, table in tables.items():
        paths = block_paths(scratch_folder(work, name, storage_options), len(table.parts))
        checks = (table.strict, table.validate)
        parts = [
            dask.delayed(_code_and_save, nout=2)(reader, i, shared, source, checks, path, storage_options)
            for (source, reader, i), path in zip(table.parts, paths, strict=True)
        ]
        buckets = max(1, len(parts) // BLOCKS_PER_ID_BUCKET)
        split = [dask.delayed(_split_ids)(ids, buckets, i) for i, (_, ids) in enumerate(parts)]
        repeats = [dask.delayed(_repeats_in_bucket)(*[s[b] for s in split]) for b in range(buckets)]
        lazy[name] = (tree_reduce([counts for counts, _ in parts], _add_counts), repeats)
        blocks[name] = Blocks(paths, codebook.rest_dtypes, storage_options)
    (computed,) = dask.compute(lazy)
    id_column = codebook.schema.id_column
    first_pass = {}
    for name, ((missing, invalid), repeats) in computed.items():
        found = _duplicate_ids(tables[name], repeats, id_column, allow_duplicate_ids, sep, storage_options)
        first_pass[name] = FirstPass(missing, {c: int(v) for c, v in invalid.items() if v}, found)
    return blocks, first_pass


def _split_ids(ids: np.ndarray, buckets: int, block: int) -> list[np.ndarray]:
    """A block's ids -> per bucket (id modulo ``buckets``) an int64 array of rows ``(id, block, row)``."""
    located = np.column_stack([ids, np.full(len(ids), block), np.arange(len(ids))]).astype("int64")
    bucket = np.mod(located[:, 0], buckets)
    return [located[bucket == b] for b in range(buckets)]


def _repeats_in_bucket(*parts: np.ndarray) -> tuple[int, tuple | None]:
    """Rows that repeat an id seen earlier, among ``parts`` (one per block, in block order); and the repeated
    id whose first row comes first, with the (block, row) of its first two rows (None without repeats)."""
    located = np.concatenate(parts) if parts else np.empty((0, 3), dtype="int64")
    ids = located[:, 0]
    unique, first, seen = np.unique(ids, return_index=True, return_counts=True)
    repeats = len(ids) - len(unique)
    if not repeats:
        return 0, None
    value = ids[first[seen > 1].min()]
    where = located[ids == value][:2, 1:]
    return repeats, (int(value), [(int(b), int(r)) for b, r in where])


def _duplicate_ids(
    table: Table, repeats: list[tuple], id_column: str, allowed: bool, sep: str, storage_options: dict
) -> int:
    """How many rows repeat an id seen earlier in the table (``repeats``: each bucket's count and first
    repeated id); raises ``InputError`` for the first repeated id (naming both its lines) unless duplicates
    are ``allowed``."""
    total = sum(count for count, _ in repeats)
    found = [first for _, first in repeats if first is not None]
    if total and not allowed:
        value, where = min(found, key=lambda first: first[1][0])
        files = list(dict.fromkeys(table.parts[block][0] for block, _ in where))
        at = duplicate_id_locations(files, id_column, value, sep, storage_options)
        raise InputError(
            f"{at}: {id_column} {value} is repeated ({total:,} repeated id(s) in table {table.name}; "
            "pass --allow-duplicate-ids to keep every row)"
        )
    return total
