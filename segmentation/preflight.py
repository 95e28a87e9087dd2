"""Checks that need only the configuration, the paths and the headers, run before any cluster starts.

``run``, ``elbow`` and ``validate`` call ``preflight(job)``: a wrong key, profile or attributes file, a
missing file, a wrong delimiter, an empty or header-only table or a missing column fails in a second or two
with the one-line message of ``ConfigError``/``ProfileError``/``SchemaError`` (exit 2) or ``InputError``
(exit 3), instead of after the cluster has started. Errors found only in the data (a malformed row, a
value, a duplicate id) are reported by the read pass.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import fsspec
from fsspec.core import url_to_fs

from .config import JobConfig
from .schema import Schema, SchemaError, default_attributes_path, parse_attributes

if TYPE_CHECKING:
    from .profile import Profile


class InputError(ValueError):
    """Bad input data; the message names the file, the column and the row (by id) or value at fault."""


def expand_paths(path: str | os.PathLike, storage_options: dict | None = None) -> list[str]:
    """A path, glob or URL -> the sorted list of files it names (full URLs for remote files)."""
    fs, _ = url_to_fs(str(path), **(storage_options or {}))
    matches = sorted(fs.glob(str(path))) if any(c in str(path) for c in "*?[") else [str(path)]
    if not matches or not all(fs.exists(m) for m in matches):
        raise InputError(f"{path}: no such file")
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    if protocol not in ("file", "local"):
        matches = [m if "://" in m else f"{protocol}://{m}" for m in matches]
    return matches


def is_parquet(path: str) -> bool:
    lowered = str(path).rstrip("/").lower()
    return lowered.endswith((".parquet", ".pq")) or lowered.endswith(".parquet/*")


def read_header(path: str, storage_options: dict | None = None, sep: str = ";") -> list[str]:
    """The column names of a delimited file (a UTF-8 byte-order mark and CRLF endings are accepted);
    errors for an empty file, a file with no data row, a wrong delimiter or bytes that are not UTF-8."""
    try:
        with fsspec.open(path, "rb", compression="infer", **(storage_options or {})) as f:
            first, second = f.readline(), f.readline()
    except (OSError, EOFError) as error:  # e.g. a truncated or non-gzip ``.gz``
        raise InputError(f"{path}: cannot be read: {error}") from None
    try:
        header = first.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: line 1 (the header): byte 0x{first[error.start]:02x} is not UTF-8; save the file as UTF-8"
        ) from None
    if not header.strip():
        raise InputError(f"{path}: the file is empty (no header line)")
    names = header.split(sep)
    if len(names) == 1:
        found = next((d for d in (",", "\t", "|", ";") if d != sep and d in header), None)
        hint = f" (it looks {found!r}-delimited: pass --sep {found!r} or set sep: {found!r} in the job file)"
        raise InputError(
            f"{path}: reads as a single column with delimiter {sep!r}"
            + (hint if found else "; pass --sep or set sep: in the job file")
        )
    if not second.strip():
        raise InputError(f"{path}: the file has a header but no data rows")
    return [n.strip().strip('"') for n in names]


def table_columns(
    path: str, schema: Schema, table: str, storage_options: dict | None = None, sep: str = ";"
) -> list[str]:
    """The columns of one file, checked from its header (CSV) or footer (Parquet) alone: readable, not
    empty, with a data row and every column the schema requires of ``table``. Cheap: no data is parsed."""
    storage_options = dict(storage_options or {})
    if is_parquet(path):
        import pyarrow as pa
        import pyarrow.dataset as pads

        fs, local = url_to_fs(path, **storage_options)
        try:
            dataset = pads.dataset(local, format="parquet", filesystem=fs)
            # The first file with rows ends the search: counting every file's rows read each footer of a
            # folder of files (0.3 s for the real-size population's 67, twice a run).
            names, rows = dataset.schema.names, any(f.count_rows() for f in dataset.get_fragments())
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"{path}: not a readable Parquet file ({error})") from None
        if not rows:
            raise InputError(f"{path}: the Parquet file has columns but no rows")
    else:
        names = read_header(path, storage_options, sep)
    required = [c for c in schema.columns(table) if schema[c].kind != "extra"]
    missing = [c for c in required if c not in names]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise InputError(f"{path}: required column(s) missing for table {table}: {shown}")
    return names


@dataclass
class Checked:
    """What the checks loaded, for the run to use rather than load again."""

    profile: Profile
    schema: Schema
    attributes_text: str
    # table -> file -> its column names, as in the header (CSV) or footer (Parquet)
    files: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def ignored_columns(self, table: str) -> list[str]:
        """Columns of a table's files that the schema does not know (read past)."""
        names = [c for columns in self.files.get(table, {}).values() for c in columns]
        return list(dict.fromkeys(c for c in names if c not in self.schema))


def input_paths(config: JobConfig) -> dict[str, str]:
    """The job's tables that have an input: ``{table: path, glob or URL}``."""
    paths = {
        "population": config.inputs.population,
        "customers": config.inputs.customers,
        "mailout_train": config.inputs.mailout_train,
        "mailout_test": config.inputs.mailout_test,
    }
    return {table: path for table, path in paths.items() if path}


def attributes_text(path: str | None, storage_options: dict | None = None) -> str:
    """The attributes file's text (``None``: the packaged Arvato file), checked line by line for a row
    with more fields than the header (``csv.DictReader`` would silently drop them)."""
    path = str(path or default_attributes_path())
    try:
        with fsspec.open(path, "rt", encoding="utf-8-sig", **(storage_options or {})) as handle:
            text = handle.read()
    except FileNotFoundError:
        raise SchemaError(f"{path}: attributes file not found") from None
    except UnicodeDecodeError as error:
        raise SchemaError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    for row in rows:
        if len(row) > len(header):
            extra = ", ".join(repr(v) for v in row[len(header) :])
            raise SchemaError(
                f"{path}, line {rows.line_num} ({row[0] or 'no attribute name'}): {len(row)} fields where "
                f"the header has {len(header)}: extra value(s) {extra} (quote a value that holds a comma)"
            )
    return text


def load_attributes(path: str | None, storage_options: dict | None = None) -> tuple[Schema, str]:
    """(schema, text) of an attributes file, with the checks of ``attributes_text``."""
    text = attributes_text(path, storage_options)
    return parse_attributes(text, source=str(path or default_attributes_path())), text


def preflight(config: JobConfig) -> Checked:
    """Check the profile, the attributes file and every input's paths and header; nothing is computed.

    Raises ``ProfileError``/``SchemaError`` (configuration) or ``InputError`` (a missing file, an empty
    or header-only table, a wrong delimiter, a missing column, an unreadable Parquet file).
    """
    from .profile import load_profile  # imports Dask and distributed: not needed by the header checks

    profile = load_profile(config.cluster)
    storage = profile.storage_options
    schema, text = load_attributes(config.attributes, storage)
    checked = Checked(profile, schema, text)
    for table, path in input_paths(config).items():
        checked.files[table] = {
            file: table_columns(file, schema, table, storage, config.sep)
            for file in expand_paths(path, storage)
        }
    return checked
