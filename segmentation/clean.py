"""Unknown codes -> missing, column missingness in one reduction pass, rows with too little data set aside.

Rows whose missing share over the kept feature columns exceeds ``row_missing_threshold`` are not dropped:
they form their own segment, ``insufficient_data``, counted in every table of shares.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dask
import numpy as np
import pandas as pd
from dask.sizeof import sizeof
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._estimators import is_lazy, schema_of, tree_reduce
from .codes import Codebook, CodedBlock, CodeIndex, code_indexes
from .scale import merge_histograms
from .schema import Schema
from .scratch import Blocks

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

ROW_HISTOGRAM_BINS = 20


def partition_missing_counts(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """One row: recoded missing values per column (missing or unknown code), plus ``__rows__``."""
    counts = {}
    for index in code_indexes(schema, frame, list(frame.columns)):
        values = frame[index.attribute.name]
        if index.attribute.kind in ("id", "extra", "date") or not index.attribute.unknown_codes:
            counts[index.attribute.name] = int(values.isna().sum())
        else:
            counts[index.attribute.name] = int(index.missing(values, index.positions(values)).sum())
    counts["__rows__"] = len(frame)
    return pd.DataFrame([counts])


def unknown_to_missing(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Replace each column's documented unknown codes by missing (a pure partition transform)."""
    out = {}
    for column in frame.columns:
        attribute = schema[column]
        values = frame[column]
        if attribute.unknown_codes and attribute.kind not in ("id", "extra", "date"):
            if isinstance(values.dtype, pd.CategoricalDtype):
                values = values.cat.remove_categories(
                    [c for c in attribute.unknown_codes if c in values.cat.categories]
                )
            else:
                values = values.mask(values.isin([int(c) for c in attribute.integer_unknown_codes]))
        out[column] = values
    return pd.DataFrame(out, index=frame.index)


def row_missing_share(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row's share of missing values over ``columns``."""
    return frame[columns].isna().sum(axis=1) / max(len(columns), 1)


def row_missing_histogram(share: pd.Series, bins: int = ROW_HISTOGRAM_BINS) -> np.ndarray:
    """Counts of rows per missing-share bin on [0, 1] (the last bin includes 1)."""
    counts, _ = np.histogram(share.to_numpy(dtype="float64"), bins=bins, range=(0.0, 1.0))
    return counts


class Cleaner(TransformerMixin, BaseEstimator):
    """Map unknown codes to missing, drop mostly-missing columns, and flag rows with too little data.

    ``fit`` and ``transform`` take typed frames (``io.read_table(...).frame``, or its ``.compute()``), pandas
    or Dask. ``transform`` keeps every row (a scikit-learn step may not drop rows): ``set_aside(frame)``
    tells which rows the job sets aside as ``insufficient_data``.

    Parameters
    ----------
    schema : Schema, str or path, default=None
        The schema, or the path of an attributes file; None: the packaged Arvato attributes.
    column_missing_threshold : float, default 0.3
        Feature columns missing in more than this share of population rows are dropped.
    row_missing_threshold : float, default 0.5
        Rows missing more than this share of the kept feature columns are set aside.

    Attributes
    ----------
    missing_share_ : pd.Series
        Missing share per column after unknown codes became missing (population).
    dropped_columns_ : list of str
    kept_columns_ : list of str
        Feature columns kept, in file order.
    n_rows_ : int

    Example
    -------
    >>> cleaner = Cleaner("attributes.csv").fit(population)  # doctest: +SKIP
    >>> recoded = cleaner.transform(population)  # kept feature columns, unknown codes -> missing  # doctest: +SKIP
    """

    def __init__(
        self,
        schema: Schema | str | os.PathLike | None = None,
        column_missing_threshold: float = 0.3,
        row_missing_threshold: float = 0.5,
    ):
        self.schema = schema
        self.column_missing_threshold = column_missing_threshold
        self.row_missing_threshold = row_missing_threshold

    def _check_params(self) -> None:
        for name in ("column_missing_threshold", "row_missing_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {value!r}")

    def _schema(self) -> Schema:
        return schema_of(self.schema)

    def recode(self, frame: dd.DataFrame) -> dd.DataFrame:
        """Unknown codes -> missing, lazily, partition by partition."""
        schema = self._schema()
        return frame.map_partitions(unknown_to_missing, schema, meta=_recoded_meta(frame, schema))

    def missing_counts(self, frame: dd.DataFrame):
        """A lazy Series: missing values per column after recoding, with the row count in ``__rows__``."""
        meta = pd.DataFrame({c: pd.Series(dtype="int64") for c in [*frame.columns, "__rows__"]})
        return frame.map_partitions(partition_missing_counts, self._schema(), meta=meta).sum()

    def fit(self, frame: pd.DataFrame | dd.DataFrame | None, y=None, missing=None) -> Cleaner:
        """Fit on the population (pandas or Dask; columns not in the schema are ignored). ``missing`` may
        pass precomputed counts (from a shared pass) instead of ``frame``."""
        self._check_params()
        schema = self._schema()
        if missing is None:
            if frame is None:
                raise ValueError("Cleaner.fit needs the population frame (or its missing counts)")
            frame = frame[[c for c in frame.columns if c in schema]]
            if is_lazy(frame):
                (missing,) = dask.compute(self.missing_counts(frame))
            else:
                missing = partition_missing_counts(frame, schema).iloc[0]
        self.n_rows_ = int(missing["__rows__"])
        share = (missing.drop("__rows__") / max(self.n_rows_, 1)).astype("float64")
        self.missing_share_ = share
        features = [a.name for a in schema.features() if a.name in share.index]
        self.dropped_columns_ = [c for c in features if share[c] > self.column_missing_threshold]
        self.kept_columns_ = [c for c in features if c not in self.dropped_columns_]
        logger.info(
            "dropped %d of %d feature columns above %.0f%% missing",
            len(self.dropped_columns_),
            len(features),
            100 * self.column_missing_threshold,
        )
        return self

    def transform(self, frame: pd.DataFrame | dd.DataFrame) -> pd.DataFrame | dd.DataFrame:
        """The kept feature columns, unknown codes -> missing; every row kept (pandas in, pandas out; Dask
        in, lazy Dask out)."""
        check_is_fitted(self, "kept_columns_")
        absent = [c for c in self.kept_columns_ if c not in frame.columns]
        if absent:
            raise ValueError(f"columns missing from the frame: {', '.join(absent[:5])}")
        kept = frame[self.kept_columns_]
        return self.recode(kept) if is_lazy(kept) else unknown_to_missing(kept, self._schema())

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The kept feature columns, in file order."""
        check_is_fitted(self, "kept_columns_")
        return np.asarray(self.kept_columns_, dtype=object)

    def set_aside(self, frame: pd.DataFrame) -> np.ndarray:
        """True for the rows of a typed pandas frame that the job sets aside as ``insufficient_data``."""
        return self.set_aside_mask(self.transform(frame)).to_numpy()

    def set_aside_mask(self, recoded: pd.DataFrame) -> pd.Series:
        """True for rows with too little data (a pure function of a recoded partition)."""
        return row_missing_share(recoded, self.kept_columns_) > self.row_missing_threshold

    def set_aside_from_missing(self, missing_per_row: np.ndarray) -> np.ndarray:
        """The set-aside mask from each row's count of missing kept columns."""
        return np.asarray(missing_per_row) / max(len(self.kept_columns_), 1) > self.row_missing_threshold

    def block_statistics(self, codebook: Codebook, block: CodedBlock) -> tuple[dict, np.ndarray, np.ndarray]:
        """Value counts of the kept rows per kept column, the row missing-share histogram of all rows, and
        the count of kept rows (an array of one, so that ``merge_statistics`` lists it per block).

        Counts are per code position (``Codebook.histograms``) so blocks merge by addition; turn them into
        value histograms with ``value_histograms_from_counts``.
        """
        share = codebook.row_missing(block, self.kept_columns_) / max(len(self.kept_columns_), 1)
        kept = share <= self.row_missing_threshold
        counts = ColumnCounts(codebook.histograms(block, kept, self.kept_columns_))
        return counts, row_missing_histogram(pd.Series(share)), np.array([int(kept.sum())])

    def partition_statistics(self, frame: pd.DataFrame) -> tuple[dict, np.ndarray, np.ndarray]:
        """``block_statistics`` of a typed pandas partition."""
        codebook = Codebook(self._schema())
        return self.block_statistics(codebook, codebook.encode(frame))

    def value_histograms_from_counts(
        self, counts: dict, dtypes: dict, codebook: Codebook | None = None
    ) -> dict[str, pd.Series]:
        """Merged ``partition_statistics`` counts -> value histograms (what ``ImputeScaler`` fits on).
        ``codebook``: the one the counts were made with, whose code domains are then not built again."""
        known = codebook.column_index if codebook is not None else {}
        return {
            column: (
                codebook.coded[known[column]]
                if column in known
                else CodeIndex(self._schema()[column], dtypes[column])
            ).value_histogram(value)
            for column, value in counts.items()
        }


class ColumnCounts(dict):
    """Value counts per column (``block_statistics``): a dict whose size Dask measures exactly. Dask's
    ``sizeof`` of a plain dict samples 10 of its values and extrapolates, so the bytes run.json reports
    for this pass (``stage_costs``) varied 6x from run to run (132 KB or 779 KB, same data).

    It pickles its count arrays as one: ~350 arrays sent apart are ~350 frames for Dask, and each of the
    13 transfers of the real-size pass took 50-70 ms (0.66-0.93 s of the pass), against 5 ms as one."""

    def __reduce__(self):
        arrays = {k: v for k, v in self.items() if isinstance(v, np.ndarray) and v.dtype == np.int64}
        flat = np.concatenate(list(arrays.values())) if arrays else np.zeros(0, dtype=np.int64)
        others = {k: v for k, v in self.items() if k not in arrays}
        return _column_counts, (list(self), [(k, len(v)) for k, v in arrays.items()], flat, others)


def _column_counts(order: list, lengths: list, flat: np.ndarray, others: dict) -> ColumnCounts:
    ends = np.cumsum([n for _, n in lengths], dtype=np.int64)
    pieces = {k: flat[end - n : end] for (k, n), end in zip(lengths, ends, strict=True)}
    return ColumnCounts((k, pieces[k] if k in pieces else others[k]) for k in order)


@sizeof.register(ColumnCounts)
def _sizeof_column_counts(counts: ColumnCounts) -> int:
    return sys.getsizeof(counts) + sum(sizeof(key) + sizeof(value) for key, value in counts.items())


def merge_statistics(*parts: tuple[dict, np.ndarray, np.ndarray]) -> tuple[dict, np.ndarray, np.ndarray]:
    """Add ``block_statistics`` results (a tree reduction); kept-row counts are listed in block order."""
    merged = ColumnCounts()
    for counts, _, _ in parts:
        for column, value in counts.items():
            if column not in merged:
                merged[column] = value
            elif isinstance(value, pd.Series):
                merged[column] = merge_histograms({column: merged[column]}, {column: value})[column]
            else:
                merged[column] = merged[column] + value
    return merged, sum(part[1] for part in parts), np.concatenate([part[2] for part in parts])


def _recoded_meta(frame: dd.DataFrame, schema: Schema) -> pd.DataFrame:
    return unknown_to_missing(frame._meta, schema)


# ------------------------------------------------------------------------ the pass over the coded blocks


@dataclass
class KeptRows:
    """What the pass over a table's coded blocks counts (``Cleaner.block_statistics``, merged): value counts
    of the kept rows per kept column (None once the scaler is fitted), the histogram of every row's missing
    share, and the rows kept for clustering in each block."""

    counts: dict | None
    row_missing: np.ndarray
    per_block: np.ndarray

    def to_payload(self) -> dict:
        """JSON-ready, without the counts (the scale checkpoint keeps the scaler fitted on them)."""
        return {"row_missing": self.row_missing.tolist(), "kept_rows": self.per_block.tolist()}

    @classmethod
    def from_payload(cls, payload: dict) -> KeptRows:
        return cls(None, np.asarray(payload["row_missing"]), np.asarray(payload["kept_rows"]))


def kept_row_statistics(
    blocks: dict[str, Blocks], cleaner: Cleaner, codebook: Codebook
) -> dict[str, KeptRows]:
    """``KeptRows`` of each table of ``blocks`` (its coded blocks in the scratch folder), in one computation."""
    shared = dask.delayed(codebook, traverse=False)
    lazy = {
        name: tree_reduce(table.map(cleaner.block_statistics, shared), merge_statistics)
        for name, table in blocks.items()
    }
    (computed,) = dask.compute(lazy)
    return {name: KeptRows(*statistics) for name, statistics in computed.items()}


def column_quality(missing: dict[str, pd.Series], schema: Schema, cleaner: Cleaner) -> pd.DataFrame:
    """quality/columns.csv: each feature column's missing share per table (``missing``: the read pass's
    counts, with ``__rows__``) and whether it was dropped."""
    frames = []
    for table, counts in missing.items():
        share = counts.drop("__rows__") / max(int(counts["__rows__"]), 1)
        columns = [c for c in share.index if c in schema and schema[c].is_feature]
        frames.append(
            pd.DataFrame(
                {
                    "table": table,
                    "column": columns,
                    "label": [schema.label(c) for c in columns],
                    "missing_share": share[columns].to_numpy(dtype="float64"),
                    "dropped": [c in cleaner.dropped_columns_ for c in columns],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def row_quality(row_missing: dict[str, np.ndarray]) -> pd.DataFrame:
    """quality/rows.csv: per table, the histogram of the rows' missing shares over the kept columns."""
    frames = []
    for table, counts in row_missing.items():
        edges = np.linspace(0.0, 1.0, len(counts) + 1)
        frames.append(
            pd.DataFrame(
                {
                    "table": table,
                    "missing_share_low": edges[:-1],
                    "missing_share_high": edges[1:],
                    "rows": counts,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
