"""The fitted chain (clean -> encode -> impute/scale -> PCA -> segmenter) as one object that transforms a
partition of any table and saves to / loads from a folder of JSON and NumPy files (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import decompose, segmenters
from .clean import Cleaner
from .codes import (
    Codebook,
    CodedBlock,
    CodeIndex,
    add_code_rows,
    cross_products,
    gather_rows,
    position_pairs,
    position_sums,
)
from .encode import Encoder, encode_column
from .scale import ImputeScaler
from .schema import Schema, load_schema
from .segmenters import Segmenter

INSUFFICIENT = "insufficient_data"
MODEL_FORMAT = 1


def segment_names(k: int) -> list[str]:
    """Segment labels in report order: "0".."k-1", then insufficient_data."""
    return [str(i) for i in range(k)] + [INSUFFICIENT]


class _ColumnLookup:
    """One source column compiled: stored value -> standardized features, through its ``CodeIndex``.

    The table holds, for every position of the code domain, the encoded, imputed and standardized
    features (built with the same ``encode_column`` as the estimator chain); dates and unbounded numbers
    fall back to arithmetic.
    """

    def __init__(self, codes: CodeIndex, features: slice, scaler: ImputeScaler, encoder_features: list[str]):
        self.codes, self.features = codes, features
        positions = [scaler.feature_names_.index(f) for f in encoder_features]
        self.fill = scaler.fill_values_[positions]
        self.mean = scaler.mean_[positions]
        self.scale = scaler.scale_[positions]
        self.table = self.imputed = None
        if codes.low is not None:
            encoded = encode_column(codes.recoded, codes.attribute)
            self.imputed = self._impute(encoded.to_numpy(dtype="float64", na_value=np.nan))
            self.table = self._scale(self.imputed)

    def _impute(self, values: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(values), self.fill, values)

    def _scale(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.scale).astype("float32")

    def imputed_of(self, values: pd.Series) -> np.ndarray:
        """Encoded, imputed float64 features of a column without a code domain (no table), by arithmetic."""
        return self._impute(
            encode_column(values, self.codes.attribute).to_numpy(dtype="float64", na_value=np.nan)
        )

    def features_of(self, values: pd.Series) -> np.ndarray:
        """Standardized features of a column without a code domain (no table), by arithmetic."""
        return self._scale(self.imputed_of(values))


# Integer features within this distance of their offset go into the float32 product, where every sum of
# products stays an integer below 2**24 (exact) for blocks of up to 2**24 / 32**2 = 16,384 rows at a time.
_EXACT_REACH = 32
_EXACT_LIMIT = 2**24


def _gather_arguments(tables: list[tuple[int, np.ndarray]], dtype, columns: list[int] | None = None) -> tuple:
    """``gather_rows``' (source, offset, flat, columns) for per-position tables of features: feature f reads
    ``flat[offset[f] + position in its source column]`` into output column ``columns[f]`` (default f)."""
    offsets = np.cumsum([0] + [len(values) for _, values in tables])[:-1]
    flat = [values for _, values in tables]
    return (
        np.asarray([j for j, _ in tables], dtype=np.intp),
        np.asarray(offsets, dtype=np.int64),
        np.concatenate(flat).astype(dtype) if flat else np.zeros(0, dtype=dtype),
        np.asarray(range(len(tables)) if columns is None else columns, dtype=np.intp),
    )


class _MomentsPlan:
    """How ``SegmentationModel.moments_block`` sums a block's standardized features exactly, from its codes.

    A feature is ``(v - mean) / scale`` of its imputed value ``v``, so the moments of ``v`` give the
    feature's. Three kinds of features, each summed the cheapest exact way:

    - one-hot dummies of a categorical column depend only on its code: their products with any feature
      are sums per code (``position_sums``) and with each other contingency tables of code pairs
      (``position_pairs``), mapped to features by the column's table of imputed values;
    - the other features that take few small whole values (ordinal codes, binary, small counts), shifted
      by a whole offset to within ``_EXACT_REACH``: their products are summed in float32, exact while
      every sum stays a whole number below 2**24;
    - the rest (decimals, years, large counts; dates and unbounded numbers, by arithmetic) in float64,
      shifted by their mean.

    On a real-size block (11.7k kept rows, 526 features) this takes 61 ms of one core, against 108 ms to
    standardize in float32 and sum the products in float64 (``decompose.block_moments``), and agrees with
    float64 standardization to 1e-9 (the float32 features to 7e-8).
    """

    def __init__(self, lookups: list, codebook: Codebook, scaler: ImputeScaler):
        n_features = len(scaler.feature_names_)
        small, large, rest = [], [], []  # small and large: (feature, source column, shift, imputed values)
        grouped = []  # categorical: (source column, its lookup)
        for lookup in lookups:
            j = codebook.column_index.get(lookup.codes.attribute.name)
            if lookup.table is not None and lookup.codes.attribute.kind == "categorical":
                grouped.append((j, lookup))
                continue
            for local, feature in enumerate(range(lookup.features.start, lookup.features.stop)):
                if lookup.table is None:
                    rest.append((feature, lookup, local))
                    continue
                values = lookup.imputed[:, local]
                middle = float(np.round((values.min() + values.max()) / 2))
                whole = np.isfinite(values).all() and np.array_equal(values, np.round(values))
                if whole and np.abs(values - middle).max() <= _EXACT_REACH:
                    small.append((feature, j, middle, values))
                else:
                    large.append((feature, j, float(scaler.mean_[feature]), values))
        self.small = np.asarray([entry[0] for entry in small], dtype=np.intp)
        self.large = np.asarray([entry[0] for entry in large + rest], dtype=np.intp)
        self.small_gather = self._gather(small, np.float32)
        self.large_gather = self._gather(large, np.float64)
        self.rest = [(len(large) + i, lookup, local) for i, (_, lookup, local) in enumerate(rest)]
        # Categorical columns: codes numbered end to end, and the block-diagonal table code -> dummies.
        sizes = [len(lookup.imputed) for _, lookup in grouped]
        self.group_columns = np.asarray([j for j, _ in grouped], dtype=np.intp)
        self.group_offsets = np.cumsum([0, *sizes])[:-1].astype(np.int64)
        self.dummies = np.concatenate(
            [np.arange(lookup.features.start, lookup.features.stop) for _, lookup in grouped] or [[]]
        ).astype(np.intp)
        self.dummy_table = np.zeros((sum(sizes), len(self.dummies)))
        column = 0
        for (_, lookup), offset, size in zip(grouped, self.group_offsets, sizes, strict=True):
            width = lookup.imputed.shape[1]
            self.dummy_table[offset : offset + size, column : column + width] = lookup.imputed
            column += width
        # feature = (summed value + shift) / scale; a rest column is summed less its mean (shift 0).
        self.shift, self.scale = np.zeros(n_features), scaler.scale_.astype(np.float64)
        for feature, _, offset, _ in small + large:
            self.shift[feature] = offset - scaler.mean_[feature]
        self.shift[self.dummies] = -scaler.mean_[self.dummies]
        reach = max((np.abs(values - offset).max() for _, _, offset, values in small), default=1.0)
        self.exact_rows = int(_EXACT_LIMIT // max(reach * reach, 1.0))

    @staticmethod
    def _gather(entries: list, dtype) -> tuple:
        """``gather_rows`` arguments for these features, shifted, as columns 0.. of the output."""
        return _gather_arguments(
            [(j, np.asarray(v, dtype=np.float64) - shift) for _, j, shift, v in entries], dtype
        )

    def values(self, block: CodedBlock, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shifted values of the small (float32) and large (float64) features of the rows ``kept``."""
        small = np.empty((len(kept), len(self.small)), dtype=np.float32)
        gather_rows(block.positions, kept, *self.small_gather, small)
        large = np.empty((len(kept), len(self.large)), dtype=np.float64)
        gather_rows(block.positions, kept, *self.large_gather, large)
        for column, lookup, local in self.rest:
            values = block.rest[lookup.codes.attribute.name].iloc[kept]
            large[:, column] = lookup.imputed_of(values)[:, local] - lookup.mean[local]
        return small, large

    def moments(self, block: CodedBlock, kept: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """(rows, mean, centred scatter) of the standardized features of the block's rows ``kept``."""
        n, n_features = len(kept), len(self.shift)
        if n == 0:
            return 0, np.zeros(n_features), np.zeros((n_features, n_features))
        small, large = self.values(block, kept)
        table = self.dummy_table
        pairs = np.zeros((len(table), len(table)))
        position_pairs(block.positions, kept, self.group_columns, self.group_offsets, pairs)
        pairs += np.triu(pairs, 1).T
        by_code_large = np.zeros((len(table), len(self.large)))
        position_sums(block.positions, kept, self.group_columns, self.group_offsets, large, by_code_large)
        small_by_large = np.zeros((len(self.small), len(self.large)))
        cross_products(small, large, small_by_large)
        # float32 sums of the small features are exact up to exact_rows rows at a time
        small_by_small = np.zeros((len(self.small), len(self.small)))
        by_code_small = np.zeros((len(table), len(self.small)))
        for start in range(0, n, self.exact_rows):
            chunk = small[start : start + self.exact_rows]
            small_by_small += chunk.T @ chunk
            exact = np.zeros(by_code_small.shape, dtype=np.float32)
            position_sums(
                block.positions,
                kept[start : start + len(chunk)],
                self.group_columns,
                self.group_offsets,
                chunk,
                exact,
            )
            by_code_small += exact

        sums, products = np.zeros(n_features), np.zeros((n_features, n_features))
        parts = [
            (self.small, self.small, small_by_small),
            (self.small, self.large, small_by_large),
            (self.large, self.large, large.T @ large),
            (self.dummies, self.small, table.T @ by_code_small),
            (self.dummies, self.large, table.T @ by_code_large),
            (self.dummies, self.dummies, table.T @ pairs @ table),
        ]
        for rows, columns, values in parts:
            products[np.ix_(rows, columns)] = values
            products[np.ix_(columns, rows)] = values.T
        sums[self.small] = small.sum(axis=0, dtype=np.float64)
        sums[self.large] = large.sum(axis=0)
        sums[self.dummies] = table.T @ np.diag(pairs)
        mean = sums / n
        scatter = products - n * np.outer(mean, mean)
        return n, (mean + self.shift) / self.scale, scatter / np.outer(self.scale, self.scale)


class _Projection:
    """``(features - pca.mean_) @ pca.components_.T`` of a block's kept rows, from its codes as the
    ``_MomentsPlan`` splits them: the small features in one float32 product, each categorical column's
    dummies as one row added per code (its codes' coordinates, precomputed), the few large ones in a
    product of their own. 51 vs 66 ms a real-size block on one core (standardized features, then the
    product over all 526), the same coordinates to float32 rounding."""

    def __init__(self, plan: _MomentsPlan, pca):
        self.plan, self.pca = plan, pca
        components = np.asarray(pca.components_, dtype=np.float64)
        weights = components / plan.scale  # per unit of a summed value
        self.small = np.ascontiguousarray(weights[:, plan.small].T, dtype=np.float32)
        self.large = np.ascontiguousarray(weights[:, plan.large].T, dtype=np.float32)
        self.by_code = np.ascontiguousarray(plan.dummy_table @ weights[:, plan.dummies].T, dtype=np.float32)
        self.bias = (weights @ plan.shift - components @ np.asarray(pca.mean_, dtype=np.float64)).astype(
            np.float32
        )

    def project(self, block: CodedBlock, kept: np.ndarray) -> np.ndarray:
        plan = self.plan
        small, large = plan.values(block, kept)
        out = small @ self.small
        out += large.astype(np.float32) @ self.large
        add_code_rows(block.positions, kept, plan.group_columns, plan.group_offsets, self.by_code, out)
        out += self.bias
        return out


MEMBERSHIP = "membership_probability"  # the assignments' column of a segmenter with probabilities


def assignments(
    ids: np.ndarray, aside: np.ndarray, labels: np.ndarray, table: str, probability: np.ndarray | None = None
) -> pd.DataFrame:
    """``LNR, table, segment``: set-aside rows get ``insufficient_data``, the others their label; with
    ``probability`` (of the kept rows) also ``membership_probability``, the probability of the row's segment
    (NaN when set aside; named apart from the response model's ``probability``)."""
    segment = np.full(len(ids), INSUFFICIENT, dtype=object)
    segment[~aside] = np.asarray(labels).astype(str)
    frame = pd.DataFrame(
        {
            "LNR": ids,
            "table": pd.array([table] * len(ids), dtype="string"),
            "segment": pd.array(segment, dtype="string"),
        }
    )
    if probability is not None:
        full = np.full(len(ids), np.nan)
        full[~aside] = probability
        frame[MEMBERSHIP] = full
    return frame


def segment_of(segmenter: Segmenter, reduced: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels of a block of PCA coordinates, and the membership probability of each row in its segment
    when the segmenter gives one (else None)."""
    if not segmenter.has_probability:
        return segmenter.predict_block(reduced), None
    probabilities = segmenter.predict_proba_block(reduced)
    labels = probabilities.argmax(axis=1).astype(np.int32) if len(reduced) else np.zeros(0, dtype=np.int32)
    return labels, probabilities.max(axis=1) if len(reduced) else np.zeros(0)


@dataclass
class SegmentationModel:
    """Everything fitted, in the order data flows."""

    schema: Schema
    cleaner: Cleaner
    encoder: Encoder
    scaler: ImputeScaler
    pca: object | None = None
    segmenter: Segmenter | None = None
    codebook: Codebook | None = None  # built from the schema when not given

    def __post_init__(self):
        if self.codebook is None:
            self.codebook = Codebook(self.schema)

    @property
    def kmeans(self) -> Segmenter | None:
        """The segmenter, by its name from when it could only be k-means."""
        return self.segmenter

    @kmeans.setter
    def kmeans(self, segmenter: Segmenter | None) -> None:
        self.segmenter = segmenter

    # ---------------------------------------------------------------- pure block transforms
    def compile(self) -> SegmentationModel:
        """Build the lookup tables (done once on the client, so tasks receive them ready)."""
        if "_gather" in self.__dict__:
            return self
        codebook, names = self.codebook, self.scaler.feature_names_
        lookups = []
        for column in self.encoder.columns:
            features = self.encoder.sources_[column]
            index = (
                codebook.coded[codebook.column_index[column]]
                if column in codebook.column_index
                else CodeIndex(self.schema[column], None)
            )
            first = names.index(features[0])
            lookups.append(_ColumnLookup(index, slice(first, first + len(features)), self.scaler, features))
        # One gather for every coded feature, each to its own column of the standardized features.
        tables, columns = [], []
        for lookup in lookups:
            if lookup.table is not None:
                j = codebook.column_index[lookup.codes.attribute.name]
                for local, feature in enumerate(range(lookup.features.start, lookup.features.stop)):
                    tables.append((j, lookup.table[:, local]))
                    columns.append(feature)
        source, offset, flat, columns = _gather_arguments(tables, np.float32, columns)
        self.__dict__["_moments"] = _MomentsPlan(lookups, codebook, self.scaler)
        self.__dict__["_gather"] = (
            source,
            offset,
            columns,
            flat,
            [lookup for lookup in lookups if lookup.table is None],
        )
        return self

    def set_aside_block(self, block: CodedBlock) -> np.ndarray:
        """The set-aside mask of a coded block's rows."""
        return self.cleaner.set_aside_from_missing(
            self.codebook.row_missing(block, self.cleaner.kept_columns_)
        )

    def standardize_block(self, block: CodedBlock) -> tuple[np.ndarray, np.ndarray]:
        """Coded block -> (set-aside mask of every row, standardized float32 features of the others).

        Equivalent to recode -> set-aside -> encode -> impute -> scale (``Cleaner``, ``Encoder``,
        ``ImputeScaler``), compiled into one gather from per-column lookup tables.
        """
        source, offset, columns, flat, rest = self.compile().__dict__["_gather"]
        aside = self.set_aside_block(block)
        kept = ~aside
        out = np.empty((int(kept.sum()), len(self.scaler.feature_names_)), dtype="float32")
        gather_rows(block.positions, np.flatnonzero(kept), source, offset, flat, columns, out)
        for lookup in rest:
            out[:, lookup.features] = lookup.features_of(block.rest[lookup.codes.attribute.name][kept])
        return aside, out

    def moments_block(self, block: CodedBlock) -> tuple[int, np.ndarray, np.ndarray]:
        """Coded block -> (rows, mean, centred scatter) of the standardized features of its kept rows, in
        float64: ``decompose.block_moments(self.features_block(block))`` without the float32 rounding of
        the features, and in half the time (``_MomentsPlan``)."""
        plan = self.compile().__dict__["_moments"]
        return plan.moments(block, np.flatnonzero(~self.set_aside_block(block)))

    def features_block(self, block: CodedBlock) -> np.ndarray:
        """Coded block -> standardized float32 features of its kept rows."""
        return self.standardize_block(block)[1]

    def reduced_block(self, block: CodedBlock) -> np.ndarray:
        """Coded block -> PCA coordinates of its kept rows."""
        return self._reduced(block, self.set_aside_block(block))

    def _reduced(self, block: CodedBlock, aside: np.ndarray) -> np.ndarray:
        projection = self.__dict__.get("_projection")
        if projection is None or projection.pca is not self.pca:  # built once per process and PCA
            projection = self.__dict__["_projection"] = _Projection(
                self.compile().__dict__["_moments"], self.pca
            )
        return projection.project(block, np.flatnonzero(~aside))

    def assign_block(self, block: CodedBlock, table: str) -> pd.DataFrame:
        """Coded block -> ``LNR, table, segment`` for every row (set-aside rows included)."""
        aside = self.set_aside_block(block)
        labels, probability = segment_of(self.segmenter, self._reduced(block, aside))
        return assignments(block.ids, aside, labels, table, probability)

    def standardize_partition(self, raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``standardize_block`` of a typed pandas partition."""
        return self.standardize_block(self.codebook.encode(raw))

    def assign_partition(self, raw: pd.DataFrame, table: str) -> pd.DataFrame:
        """``assign_block`` of a typed pandas partition."""
        return self.assign_block(self.codebook.encode(raw), table)

    def assign_reduced(
        self, ids: np.ndarray, aside: np.ndarray, reduced: np.ndarray, table: str
    ) -> pd.DataFrame:
        """Row ids, the set-aside mask and the PCA coordinates of the kept rows -> assignments."""
        labels, probability = segment_of(self.segmenter, reduced)
        return assignments(ids, aside, labels, table, probability)

    # ---------------------------------------------------------------- persistence
    def save(self, folder: str | Path, attributes_text: str) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "attributes.csv").write_text(attributes_text)
        np.save(folder / "missing_share.npy", self.cleaner.missing_share_.to_numpy())
        np.save(folder / "scaler_fill.npy", self.scaler.fill_values_)
        np.save(folder / "scaler_mean.npy", self.scaler.mean_)
        np.save(folder / "scaler_scale.npy", self.scaler.scale_)
        self.pca.save(folder / "pca")
        self.segmenter.save(folder / "segmenter")
        description = {
            "format": MODEL_FORMAT,
            "cleaner": {
                "column_missing_threshold": self.cleaner.column_missing_threshold,
                "row_missing_threshold": self.cleaner.row_missing_threshold,
                "missing_share_columns": list(self.cleaner.missing_share_.index),
                "kept_columns": self.cleaner.kept_columns_,
                "dropped_columns": self.cleaner.dropped_columns_,
                "n_rows": self.cleaner.n_rows_,
            },
            "encoder": {"columns": self.encoder.columns, "feature_names": self.encoder.feature_names_out_},
        }
        (folder / "model.json").write_text(json.dumps(description, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> SegmentationModel:
        folder = Path(folder)
        description_path = folder / "model.json"
        if not description_path.exists():
            raise FileNotFoundError(f"{folder}: not a saved model (no model.json)")
        description = json.loads(description_path.read_text())
        if description.get("format") != MODEL_FORMAT:
            raise ValueError(f"{folder}: model format {description.get('format')} is not {MODEL_FORMAT}")
        schema = load_schema(folder / "attributes.csv")
        c = description["cleaner"]
        cleaner = Cleaner(schema, c["column_missing_threshold"], c["row_missing_threshold"])
        cleaner.missing_share_ = pd.Series(
            np.load(folder / "missing_share.npy"), index=c["missing_share_columns"]
        )
        cleaner.kept_columns_, cleaner.dropped_columns_, cleaner.n_rows_ = (
            c["kept_columns"],
            c["dropped_columns"],
            c["n_rows"],
        )
        encoder = Encoder(schema, description["encoder"]["columns"]).fit()
        scaler = ImputeScaler(encoder)
        scaler.feature_names_ = description["encoder"]["feature_names"]
        scaler.fill_values_ = np.load(folder / "scaler_fill.npy")
        scaler.mean_ = np.load(folder / "scaler_mean.npy")
        scaler.scale_ = np.load(folder / "scaler_scale.npy")
        # Models saved before the segmenter registry keep their k-means in kmeans/.
        segmenter = folder / "segmenter" if (folder / "segmenter").exists() else folder / "kmeans"
        return cls(
            schema, cleaner, encoder, scaler, decompose.load(folder / "pca"), segmenters.load(segmenter)
        )
