"""The attributes file -> a typed schema: each column's kind, valid codes, unknown codes and label.

The schema is the only place that knows a vendor's columns. The Arvato schema ships as
``segmentation/data/arvato_attributes.csv``; a user passes another vendor's file with ``--attributes``.

File format (CSV, ``,``-separated, one row per column, in the order the columns appear in the data):

- required: ``attribute, kind, codes, unknown_codes``
- optional: ``label, information_level, theme, tables, derive, missing_share_population,
  missing_share_customers, missing_share_recoded, note`` (``theme`` groups attributes in the segment
  personas: age and life stage, wealth and income, family, ...; see ``describe.attribute_theme``)

``kind`` is one of ``id, categorical, ordinal, numeric, binary, mixed, date, extra``; ``extra`` columns
(e.g. the customers' ``CUSTOMER_GROUP``) are carried aside and never used as features. ``codes`` is
``1..9`` (a range of integers), ``1;2;5`` or ``1A;1B`` (a list), mixes of both (``1..5;7;X``), or empty
(numeric, date, id); ordinal and numeric codes are integers, and a numeric column's range gives its valid
bounds. ``unknown_codes`` uses the same syntax (``-1;0``, ``X``, ``-9;unbekannt``). A code is matched as
text, except that integers are matched as numbers: ``4``, ``04`` and ``4.0`` are one code, in the attributes
file and in the data alike. ``tables`` limits a column to some tables (``customers``); empty means every
table; a feature must be in every table. ``derive`` re-encodes a mixed column into new ordinal columns:
``DECADE=1..2:40,3..4:50|MOVEMENT=1:0,2:1`` makes ``<attribute>_DECADE`` and ``<attribute>_MOVEMENT``;
codes not listed become missing. Dates read as ISO 8601 (``2016-03-01`` or ``2016-03-01 00:00:00``); a date
column's unknown codes (``0``, ``unbekannt``) read as missing.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

KINDS = ("id", "categorical", "ordinal", "numeric", "binary", "mixed", "date", "extra")
REQUIRED_COLUMNS = ("attribute", "kind", "codes", "unknown_codes")
OPTIONAL_COLUMNS = (
    "label",
    "information_level",
    "theme",
    "tables",
    "derive",
    "missing_share_population",
    "missing_share_customers",
    "missing_share_recoded",
    "note",
)
TABLES = ("population", "customers", "mailout_train", "mailout_test")
# Smallest nullable integer dtypes, in the order tried.
_INT_DTYPES = (("Int8", -(2**7), 2**7 - 1), ("Int16", -(2**15), 2**15 - 1), ("Int32", -(2**31), 2**31 - 1))
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_INT = re.compile(r"^-?\d+$")
# Integer codes spanning more values than this are stored as text categories (non-numeric kinds) or
# without a code domain (numeric): a dense domain (codes.CodeIndex) of a sentinel like -99999 next to
# 1..5 would hold 100,000 positions.
MAX_INTEGER_SPAN = 4096


class SchemaError(ValueError):
    """A malformed attributes file; the message names the file, line and what is wrong."""


def canonical_code(value: object) -> str | None:
    """The code a raw cell stands for: ``4``, ``4.0`` and ``'4'`` are all ``'4'``; empty/NaN is None."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text or text.lower() in ("nan", "<na>"):
        return None
    if text.endswith(".0") and _INT.match(text[:-2]):
        text = text[:-2]
    if _INT.match(text):
        return str(int(text))  # "04", "-0" -> "4", "0"
    return text


def parse_codes(text: str) -> tuple[str, ...]:
    """``'1..3;7;X'`` -> ``('1', '2', '3', '7', 'X')``. Raises ValueError on a reversed range."""
    codes: list[str] = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        match = _RANGE.match(part)
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            if low > high:
                raise ValueError(f"range {part!r} runs backwards")
            if high - low >= 1_000_000:
                raise ValueError(f"range {part!r} lists more than a million codes")
            codes.extend(str(c) for c in range(low, high + 1))
        elif ".." in part:
            raise ValueError(f"range {part!r} should read LOW..HIGH with integers (e.g. 1..9)")
        else:
            codes.append(canonical_code(part) or part)
    return tuple(dict.fromkeys(codes))


@dataclass(frozen=True)
class Derived:
    """A column derived from a mixed attribute: ``name`` and its map from source code to value."""

    name: str
    mapping: dict[str, float]


@dataclass(frozen=True)
class Attribute:
    """One column of the data, as the attributes file describes it."""

    name: str
    kind: str
    codes: tuple[str, ...] = ()
    unknown_codes: tuple[str, ...] = ()
    label: str = ""
    information_level: str = ""
    theme: str = ""
    tables: tuple[str, ...] = ()
    derive: tuple[Derived, ...] = ()
    missing_share_population: float | None = None
    missing_share_customers: float | None = None
    missing_share_recoded: float | None = None
    note: str = ""

    @property
    def is_feature(self) -> bool:
        """Whether the column feeds the model (ids and extras never do)."""
        return self.kind not in ("id", "extra")

    @property
    def integer_unknown_codes(self) -> tuple[str, ...]:
        """The unknown codes that are integers (a numeric column's text sentinels are not stored)."""
        return tuple(c for c in self.unknown_codes if _INT.match(c))

    @property
    def text_unknown_codes(self) -> tuple[str, ...]:
        """The unknown codes that are not integers (``X``, ``unbekannt``)."""
        return tuple(c for c in self.unknown_codes if not _INT.match(c))

    @property
    def integer_coded(self) -> bool:
        """Whether the column is stored as a nullable integer: every valid and unknown code is an integer
        (a numeric column's text unknown codes read as missing) and, but for numeric columns, they span
        at most ``MAX_INTEGER_SPAN`` values; otherwise the codes are stored as text categories."""
        if self.kind == "date":
            return False
        if self.kind in ("numeric", "id"):
            return all(_INT.match(c) for c in self.codes)
        codes = self.codes + self.unknown_codes
        if not all(_INT.match(c) for c in codes):
            return False
        values = [int(c) for c in codes] or [0]
        return max(values) - min(values) < MAX_INTEGER_SPAN

    @property
    def value_range(self) -> tuple[int, int] | None:
        """For numeric columns with codes: the valid (low, high) bounds."""
        if self.kind != "numeric" or not self.codes:
            return None
        values = [int(c) for c in self.codes]
        return min(values), max(values)

    @property
    def storage_dtype(self) -> str:
        """The smallest pandas dtype that holds every valid and unknown code, missing included."""
        if self.kind == "id":
            return "Int64"
        if self.kind == "date" or not self.integer_coded:
            return "string"
        values = [int(c) for c in self.codes + self.integer_unknown_codes] or [0]
        if self.kind == "numeric" and not self.codes:
            return "Int32"
        low, high = min(values), max(values)
        for name, dtype_low, dtype_high in _INT_DTYPES:
            if dtype_low <= low and high <= dtype_high:
                return name
        return "Int64"

    def in_table(self, table: str) -> bool:
        return not self.tables or table in self.tables

    def is_valid(self, code: str) -> bool:
        """Whether a canonical code is a valid (not unknown) value of this column."""
        if self.kind in ("id", "date"):
            return True
        if self.kind == "numeric":
            if not _INT.match(code) and not _is_number(code):
                return False
            bounds = self.value_range
            return bounds is None or bounds[0] <= float(code) <= bounds[1]
        return code in self.codes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Schema:
    """The ordered attributes of a dataset, with lookups by name and kind."""

    attributes: tuple[Attribute, ...]
    source: str = ""
    _by_name: dict[str, Attribute] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({a.name: a for a in self.attributes})

    @functools.cached_property
    def _token(self) -> str:
        return hashlib.sha256(repr((self.attributes, self.source)).encode("utf-8")).hexdigest()

    def __dask_tokenize__(self) -> str:
        """Dask's name for the schema, made once from its repr: Dask's own walk of ~370 attributes field by
        field took 0.05 s, ~10 times as ``read_table`` builds a table's graph (0.4 s a table)."""
        return self._token

    def __getitem__(self, name: str) -> Attribute:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Attribute]:
        return iter(self.attributes)

    def __len__(self) -> int:
        return len(self.attributes)

    @property
    def id_column(self) -> str:
        """The row id column (``LNR`` for Arvato)."""
        return next(a.name for a in self.attributes if a.kind == "id")

    def columns(self, table: str = "population") -> list[str]:
        """The columns of ``table`` in file order."""
        return [a.name for a in self.attributes if a.in_table(table)]

    def features(self) -> list[Attribute]:
        """Attributes that feed the model (in every table), in file order."""
        return [a for a in self.attributes if a.is_feature and all(a.in_table(t) for t in TABLES)]

    def extras(self, table: str) -> list[str]:
        """Columns of ``table`` carried aside (not features, not the id)."""
        return [a.name for a in self.attributes if a.kind == "extra" and a.in_table(table)]

    def label(self, column: str) -> str:
        """A human label for a column, derived ones included (``PRAEGENDE_JUGENDJAHRE_DECADE``)."""
        if column in self._by_name:
            return self._by_name[column].label or column
        for attribute in self.attributes:
            for derived in attribute.derive:
                if derived.name == column:
                    suffix = derived.name[len(attribute.name) + 1 :].replace("_", " ").lower()
                    return f"{attribute.label or attribute.name}: {suffix}"
            if column.startswith(attribute.name + "=") and attribute.kind in ("categorical", "binary"):
                return f"{attribute.label or attribute.name} = {column[len(attribute.name) + 1 :]}"
        return column


def _parse_derive(text: str, attribute: str) -> tuple[Derived, ...]:
    derived = []
    for spec in (s.strip() for s in text.split("|") if s.strip()):
        name, sep, body = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"derive entry {spec!r} should read NAME=code:value,...")
        mapping: dict[str, float] = {}
        for item in (i.strip() for i in body.split(",") if i.strip()):
            codes, sep, value = item.rpartition(":")
            if not sep:
                raise ValueError(f"derive item {item!r} should read code:value")
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"derive value {value!r} in {item!r} is not a number") from None
            for code in parse_codes(codes):
                mapping[code] = number
        derived.append(Derived(f"{attribute}_{name.strip()}", mapping))
    return tuple(derived)


def _optional_share(text: str, column: str) -> float | None:
    if not text.strip():
        return None
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{column} must lie between 0 and 1, got {text!r}")
    return value


def parse_attributes(text: str, source: str = "<attributes>") -> Schema:
    """Parse an attributes file's text into a Schema; errors name the source and line."""
    if not text.strip():
        raise SchemaError(f"{source}: the attributes file is empty")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        hint = " (is it ';'-separated? the attributes file uses ',')" if len(header) == 1 else ""
        raise SchemaError(f"{source}, line 1: missing required column(s) {', '.join(missing)}{hint}")
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise SchemaError(
            f"{source}, line 1: unknown column(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
        )
    attributes: list[Attribute] = []
    seen: set[str] = set()
    lines: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num  # the physical line where this row ends (quoted fields may span lines)
        if None in raw:
            raise SchemaError(
                f"{source}, line {line}: {len(header) + len(raw[None])} fields, the header has {len(header)}"
            )
        row = {k.strip(): (v or "").strip() for k, v in raw.items()}
        if not any(row.values()):
            continue  # a blank line
        name = row["attribute"]
        where = f"{source}, line {line} ({name or 'no attribute name'})"
        lines[name] = line
        if not name:
            raise SchemaError(f"{where}: the attribute name is empty")
        if name in seen:
            raise SchemaError(f"{where}: attribute {name} is listed twice")
        seen.add(name)
        kind = row["kind"].lower()
        if kind not in KINDS:
            raise SchemaError(f"{where}: kind {row['kind']!r} is not one of {', '.join(KINDS)}")
        try:
            codes = parse_codes(row["codes"])
            unknown_codes = parse_codes(row["unknown_codes"])
            derive = _parse_derive(row.get("derive", ""), name)
            shares = {
                c: _optional_share(row.get(c, ""), c)
                for c in ("missing_share_population", "missing_share_customers", "missing_share_recoded")
            }
        except ValueError as error:
            raise SchemaError(f"{where}: {error}") from None
        if kind in ("categorical", "ordinal", "binary", "mixed") and not codes:
            raise SchemaError(f"{where}: a {kind} column needs its valid codes (e.g. 1..5 or A;B)")
        if kind == "binary" and len(codes) != 2:
            raise SchemaError(f"{where}: a binary column needs exactly two codes, got {len(codes)}")
        if kind == "ordinal" and not all(_INT.match(c) for c in codes):
            raise SchemaError(f"{where}: ordinal codes must be integers, got {';'.join(codes)}")
        if kind == "numeric" and codes and not all(_INT.match(c) for c in codes):
            raise SchemaError(f"{where}: numeric codes give a range like 0..100")
        if kind == "mixed" and not derive:
            raise SchemaError(f"{where}: a mixed column needs a derive entry saying how to split it")
        if derive and kind != "mixed":
            raise SchemaError(f"{where}: derive is for mixed columns, this one is {kind}")
        stray = [c for d in derive for c in d.mapping if c not in codes]
        if stray:
            raise SchemaError(f"{where}: derive maps code(s) {';'.join(dict.fromkeys(stray))} not in codes")
        overlap = set(codes) & set(unknown_codes)
        if overlap and kind != "numeric":
            raise SchemaError(f"{where}: code(s) {';'.join(sorted(overlap))} are both valid and unknown")
        tables = tuple(t.strip() for t in row.get("tables", "").split(";") if t.strip())
        bad_tables = [t for t in tables if t not in TABLES]
        if bad_tables:
            raise SchemaError(f"{where}: unknown table(s) {', '.join(bad_tables)}; use {', '.join(TABLES)}")
        attributes.append(
            Attribute(
                name=name,
                kind=kind,
                codes=codes,
                unknown_codes=unknown_codes,
                label=row.get("label", ""),
                information_level=row.get("information_level", ""),
                theme=row.get("theme", ""),
                tables=tables,
                derive=derive,
                note=row.get("note", ""),
                **shares,
            )
        )
    ids = [a.name for a in attributes if a.kind == "id"]
    if len(ids) > 1:
        raise SchemaError(
            f"{source}, line {lines[ids[1]]} ({ids[1]}): a second id column (the first is {ids[0]})"
        )
    if not ids:
        raise SchemaError(f"{source}: exactly one column must have kind 'id', found none")
    schema = Schema(tuple(attributes), source=source)
    if not schema.features():
        raise SchemaError(
            f"{source}: no feature columns (every column is an id, an extra or in some tables only)"
        )
    owners: dict[str, str] = {}
    for attribute in attributes:
        for feature in _feature_names(attribute):
            if feature in owners and owners[feature] != attribute.name:
                raise SchemaError(
                    f"{source}, line {lines[attribute.name]} ({attribute.name}): its feature {feature} "
                    f"clashes with a feature of {owners[feature]}"
                )
            owners[feature] = attribute.name
    return schema


def _feature_names(attribute: Attribute) -> list[str]:
    """The names an attribute's features and columns take (``encode.feature_names`` plus the column)."""
    names = [attribute.name]
    if attribute.kind == "categorical":
        names += [f"{attribute.name}={c}" for c in attribute.codes]
    names += [d.name for d in attribute.derive]
    return names


def default_attributes_path() -> Path:
    """The Arvato attributes file shipped with the package."""
    return Path(str(resources.files("segmentation") / "data" / "arvato_attributes.csv"))


def load_schema(path: str | Path | None = None, storage_options: dict | None = None) -> Schema:
    """Load an attributes file (local path or fsspec URL); None loads the packaged Arvato schema."""
    if path is None:
        path = default_attributes_path()
    import fsspec

    try:
        with fsspec.open(str(path), "rt", encoding="utf-8-sig", **(storage_options or {})) as handle:
            text = handle.read()
    except FileNotFoundError:
        raise SchemaError(f"{path}: attributes file not found") from None
    return parse_attributes(text, source=str(path))


def format_codes(codes: Iterable[str]) -> str:
    """Codes back to the file syntax, collapsing integer runs: ``('1','2','3','X')`` -> ``'1..3;X'``."""
    out: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if len(run) > 2:
            out.append(f"{run[0]}..{run[-1]}")
        else:
            out.extend(str(r) for r in run)
        run.clear()

    for code in codes:
        if _INT.match(code) and (not run or int(code) == run[-1] + 1):
            run.append(int(code))
            continue
        flush()
        if _INT.match(code):
            run.append(int(code))
        else:
            out.append(code)
    flush()
    return ";".join(out)
