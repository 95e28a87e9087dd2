"""Property tests: any attributes file valid by the documented format (segmentation/schema.py) works on any
matching data file, and a malformed one is refused when loaded, naming its line.

Hypothesis draws attributes files (every feature kind; codes as ranges, lists or mixes; numeric or text codes;
numeric or text unknown codes; wide sentinels; ``tables``; ``derive``) and data files (valid codes, unknown
codes, invalid values, empty cells, integers as ``4`` or ``4.0``, columns in any order). Each runs the
per-partition path in-process (read -> code -> clean -> encode -> impute/scale), no cluster.
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.clean import Cleaner, merge_statistics
from segmentation.codes import Codebook, storage_dtype
from segmentation.decompose import block_moments
from segmentation.encode import Encoder, feature_names
from segmentation.io import code_partition, read_table
from segmentation.model import SegmentationModel
from segmentation.scale import ImputeScaler
from segmentation.schema import SchemaError, parse_attributes

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEATURE_KINDS = ("ordinal", "numeric", "binary", "categorical", "mixed", "date")
TEXT_CODES = ("A", "B", "C", "1A", "2B", "J", "N", "ja", "nein", "hoch")
TEXT_UNKNOWN = ("X", "XX", "unbekannt", "?")
INT_UNKNOWN = (-1, 0, -9, 9, 99, -99999)


@dataclass
class Spec:
    """One drawn attribute: what the attributes file says and what the data may hold."""

    name: str
    kind: str
    codes_text: str = ""
    unknown_text: str = ""
    valid: list[str] = field(default_factory=list)  # canonical valid codes ([] = any number or date)
    unknown: list[str] = field(default_factory=list)
    bounds: tuple[int, int] | None = None  # numeric range
    tables: str = ""
    derive: str = ""

    def row(self) -> list[str]:
        return [self.name, self.kind, self.codes_text, self.unknown_text, self.tables, self.derive]


@st.composite
def code_expression(draw, codes: list[int]) -> str:
    """Sorted integer codes written as the file allows: ranges, lists, mixes, ``4.0`` or ``04``."""
    parts, run = [], [codes[0]]
    for code in codes[1:]:
        if code == run[-1] + 1:
            run.append(code)
        else:
            parts.append(run)
            run = [code]
    parts.append(run)
    out = []
    for run in parts:
        if len(run) > 1 and draw(st.booleans()):
            out.append(f"{run[0]}..{run[-1]}")
        else:
            out += [draw(st.sampled_from([str(c), f"{c}.0", f"0{c}" if c >= 0 else str(c)])) for c in run]
    return ";".join(out)


@st.composite
def attribute_spec(draw, name: str) -> Spec:
    kind = draw(st.sampled_from(FEATURE_KINDS))
    spec = Spec(name, kind)
    text_coded = kind in ("binary", "categorical", "mixed") and draw(st.booleans())
    if kind == "date":
        pass
    elif kind == "numeric":
        if draw(st.booleans()):
            low = draw(st.integers(-5, 50))
            high = low + draw(st.sampled_from([1, 10, 100, 5000]))
            spec.bounds, spec.codes_text = (low, high), f"{low}..{high}"
    elif text_coded:
        size = 2 if kind == "binary" else draw(st.integers(1, 5))
        spec.valid = draw(st.lists(st.sampled_from(TEXT_CODES), min_size=size, max_size=size, unique=True))
        spec.codes_text = ";".join(spec.valid)
    else:
        size = 2 if kind == "binary" else draw(st.integers(1, 8))
        start = draw(st.integers(-3, 20))
        ints = sorted(
            draw(st.lists(st.integers(start, start + 12), min_size=size, max_size=size, unique=True))
        )
        spec.valid = [str(c) for c in ints]
        spec.codes_text = draw(code_expression(ints))
        if kind in ("categorical", "mixed") and draw(st.booleans()):  # a mix: 1..5;7;X
            spec.valid.append(draw(st.sampled_from(TEXT_CODES)))
            spec.codes_text += f";{spec.valid[-1]}"
    unknown = draw(
        st.lists(st.sampled_from(TEXT_UNKNOWN + tuple(map(str, INT_UNKNOWN))), max_size=2, unique=True)
    )
    spec.unknown = [u for u in unknown if u not in spec.valid and not _in_bounds(u, spec.bounds)]
    spec.unknown_text = ";".join(spec.unknown)
    if kind == "mixed":
        # one or two derived columns mapping some (not always all) codes to numbers
        entries = []
        for part in ("P", "Q")[: draw(st.integers(1, 2))]:
            mapped = draw(st.lists(st.sampled_from(spec.valid), min_size=1, unique=True))
            entries.append(f"{part}=" + ",".join(f"{c}:{draw(st.integers(0, 5))}" for c in mapped))
        spec.derive = "|".join(entries)
    return spec


def _in_bounds(code: str, bounds: tuple[int, int] | None) -> bool:
    return bounds is not None and code.lstrip("-").isdigit() and bounds[0] <= int(code) <= bounds[1]


def attributes_text(specs: list[Spec]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["attribute", "kind", "codes", "unknown_codes", "tables", "derive"])
    writer.writerows(spec.row() for spec in specs)
    return out.getvalue()


@st.composite
def schemas(draw) -> list[Spec]:
    """An id column, 1-5 features, sometimes a customers-only extra and a column in some tables only."""
    specs = [draw(attribute_spec(f"F{i}")) for i in range(draw(st.integers(1, 5)))]
    specs.insert(draw(st.integers(0, len(specs))), Spec("ID", "id"))
    if draw(st.booleans()):
        specs.append(Spec("GROUP", "extra", "G1;G2", "", ["G1", "G2"], tables="customers"))
    if draw(st.booleans()):
        some = draw(attribute_spec("SOME_TABLES"))  # not in every table: read and checked, not a feature
        some.tables = draw(st.sampled_from(["customers", "population", "population;customers"]))
        specs.append(some)
    return specs


def cell(draw, spec: Spec, row_id: int) -> tuple[str, str]:
    """One cell and what it is: valid, unknown, invalid or empty."""
    if spec.kind == "id":
        return str(row_id), "valid"
    what = draw(st.sampled_from(["valid"] * 5 + ["unknown", "invalid", "empty"]))
    if what == "unknown" and spec.unknown:
        return draw(st.sampled_from(spec.unknown)), "unknown"
    if what == "empty":
        return "", "empty"
    if what == "invalid":
        integers = [int(c) for c in spec.valid + spec.unknown if _is_int(c)]
        if spec.valid and integers and draw(st.booleans()):
            return str(max(integers) + 10**6), "invalid"  # an integer that no code stands for
        if spec.bounds:
            value, taken = spec.bounds[1] + 1, set(integers)
            while value in taken:
                value += 1
            return str(value), "invalid"  # just above the numeric range
        return "zzz", "invalid"
    if spec.kind == "date":
        return draw(st.sampled_from(["2015-06-01", "2001-12-31 00:00:00", "1999-01-15"])), "valid"
    if spec.valid:
        code = draw(st.sampled_from(spec.valid))
    elif spec.bounds:
        code = str(draw(st.integers(*spec.bounds)))
    else:
        code = str(draw(st.integers(-1000, 1000)))
        if code in spec.unknown:
            return code, "unknown"
    if _is_int(code) and draw(st.booleans()):
        code += ".0"
    return code, "valid"


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


@st.composite
def tables(draw, specs: list[Spec]):
    """Population and customers files (text) and, per table and column, the count of each kind of cell."""
    out, kinds = {}, {}
    for table, first in (("population", 1), ("customers", 10_001)):
        columns = [s for s in specs if not s.tables or table in s.tables]
        columns = draw(st.permutations(columns))
        n = draw(st.integers(1, 40))
        rows, counts = [], {s.name: {"valid": 0, "unknown": 0, "invalid": 0, "empty": 0} for s in columns}
        for i in range(n):
            row = []
            for spec in columns:
                value, what = cell(draw, spec, first + i)
                counts[spec.name][what] += 1
                row.append(value)
            rows.append(row)
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
        writer.writerow([s.name for s in columns])
        writer.writerows(rows)
        out[table], kinds[table] = buffer.getvalue(), counts
    return out, kinds


def in_process(schema, paths: dict[str, Path], blocksize: int | None):
    """The job's per-partition path without a cluster: coded blocks, a fitted model, and per table the
    (blocks, invalid counts, set-aside masks and features)."""
    codebook = Codebook(schema)
    coded = {}
    for table, path in paths.items():
        read = read_table(path, schema, table, blocksize=blocksize)
        raws = [read.read_part(i) for i in range(len(read.parts))]
        coded[table] = [code_partition(raw, codebook, str(path)) for raw in raws]
    population = [block for block, _ in coded["population"]]
    missing = sum(
        (codebook.missing_counts(b) for b in population[1:]), codebook.missing_counts(population[0])
    )
    cleaner = Cleaner(schema, column_missing_threshold=1.0).fit(None, missing=missing)
    encoder = Encoder(schema, cleaner.kept_columns_).fit()
    counts = merge_statistics(*[cleaner.block_statistics(codebook, b) for b in population])[0]
    dtypes = {c: storage_dtype(schema[c]) for c in cleaner.kept_columns_}
    scaler = ImputeScaler(encoder).fit_histograms(cleaner.value_histograms_from_counts(counts, dtypes))
    model = SegmentationModel(schema, cleaner, encoder, scaler, codebook=codebook)
    results = {
        table: [(block, invalid, *model.standardize_block(block)) for block, invalid in parts]
        for table, parts in coded.items()
    }
    return model, missing, results


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@SETTINGS
@given(data=st.data())
def test_any_valid_attributes_file_gives_finite_features_for_every_row(folder, data):
    specs = data.draw(schemas())
    schema = parse_attributes(attributes_text(specs), source="drawn.csv")
    texts, cells = data.draw(tables(specs))
    paths = {}
    for table, text in texts.items():
        paths[table] = folder / f"{table}.csv"
        paths[table].write_text(text)
    # Several blocks per file, each longer than any line (a line longer than the block size gives an empty
    # block, which the parser refuses; the job's block size is at least 1 MB).
    blocksize = data.draw(st.sampled_from([None, 512]))
    model, missing, results = in_process(schema, paths, blocksize)
    width = sum(len(feature_names(schema[c])) for c in model.cleaner.kept_columns_)
    features_declared = [s.name for s in specs if s.kind not in ("id", "extra") and not s.tables]
    assert model.cleaner.kept_columns_ == features_declared  # nothing dropped at threshold 1.0
    assert model.scaler.feature_names_ == [f for c in features_declared for f in feature_names(schema[c])]
    for table, parts in results.items():
        counts = cells[table]
        n = counts["ID"]["valid"]
        ids = np.concatenate([block.ids for block, *_ in parts])
        assert sorted(ids.tolist()) == list(range(ids.min(), ids.min() + n))  # every row read once
        assert sum(int(aside.sum()) + len(features) for *_, aside, features in parts) == n
        for block, _, aside, features in parts:
            assert features.shape == (int((~aside).sum()), width)
            assert np.isfinite(features).all()
            # the PCA's moments, summed exactly from the codes, are those of the float32 features
            rows, mean, scatter = model.moments_block(block)
            expected = block_moments(features)
            assert rows == expected[0]
            np.testing.assert_allclose(mean, expected[1], atol=1e-5)
            np.testing.assert_allclose(scatter, expected[2], atol=1e-5 * max(1.0, np.abs(expected[2]).max()))
        invalid = sum(invalid for _, invalid, *_ in parts)
        for spec in specs:
            if spec.name not in counts:
                continue
            planted = counts[spec.name]
            assert invalid[spec.name] == planted["invalid"], (table, spec.name)
            if table == "population" and spec.name in features_declared:
                assert missing[spec.name] == n - planted["valid"], spec.name


def _spoil(**fields: str | None):
    """A change to one attributes row: a column set (``extra`` appends a field)."""
    columns = {"kind": 1, "codes": 2, "unknown_codes": 3, "derive": 5}

    def apply(row: list[str]) -> None:
        for name, value in fields.items():
            if name == "extra":
                row.append(value)
            else:
                row[columns[name]] = value

    return apply


MALFORMED = [
    (_spoil(kind="shape"), "kind 'shape' is not one of"),
    (_spoil(kind="ordinal", codes="5..1", unknown_codes="", derive=""), "runs backwards"),
    (_spoil(kind="ordinal", codes="1.5..3", unknown_codes="", derive=""), "LOW..HIGH with integers"),
    (_spoil(extra="surplus"), "7 fields, the header has 6"),
    (_spoil(kind="ordinal", codes="1..3", unknown_codes="", derive="P=1:1"), "derive is for mixed"),
    (_spoil(kind="binary", codes="1;2;3", unknown_codes="", derive=""), "exactly two codes"),
    (_spoil(kind="ordinal", codes="A;B", unknown_codes="", derive=""), "ordinal codes must be integers"),
    (_spoil(kind="categorical", codes="1..3", unknown_codes="3", derive=""), "both valid and unknown"),
    (_spoil(kind="mixed", codes="1;2", unknown_codes="", derive=""), "needs a derive entry"),
    (_spoil(kind="mixed", codes="1;2", unknown_codes="", derive="P=1:1,7:2"), "derive maps code.* 7 not in"),
]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(specs=schemas(), case=st.sampled_from(MALFORMED), data=st.data())
def test_malformed_attributes_file_is_refused_naming_its_line(specs, case, data):
    spoil, message = case
    rows = [spec.row() for spec in specs]
    target = data.draw(st.sampled_from([i for i, s in enumerate(specs) if s.kind not in ("id", "extra")]))
    spoil(rows[target])
    text = attributes_text([]) + "".join(_csv_line(row) for row in rows)
    with pytest.raises(SchemaError, match=rf"^drawn\.csv, line {target + 2}\b.*{message}") as refused:
        parse_attributes(text, source="drawn.csv")
    assert "\n" not in str(refused.value)


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()
