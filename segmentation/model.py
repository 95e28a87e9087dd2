"""The fitted chain (clean -> encode -> impute/scale -> PCA -> k-means) as one object that transforms a
partition of any table and saves to / loads from a folder of JSON and NumPy files (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cluster, decompose
from .clean import Cleaner
from .encode import Encoder, encode_column
from .scale import ImputeScaler
from .schema import Schema, load_schema

INSUFFICIENT = "insufficient_data"
MODEL_FORMAT = 1


def segment_names(k: int) -> list[str]:
    """Segment labels in report order: "0".."k-1", then insufficient_data."""
    return [str(i) for i in range(k)] + [INSUFFICIENT]


class _ColumnLookup:
    """One source column compiled: raw storage value -> standardized features (unknown codes -> missing row).

    Integer codes index a dense table over [offset, offset + size); categorical codes index by category
    position; dates and unbounded numbers fall back to arithmetic (year, then impute and scale).
    """

    def __init__(self, attribute, dtype, features: slice, scaler: ImputeScaler, encoder_features: list[str]):
        self.attribute, self.features = attribute, features
        positions = [scaler.feature_names_.index(f) for f in encoder_features]
        self.fill = scaler.fill_values_[positions]
        self.mean = scaler.mean_[positions]
        self.scale = scaler.scale_[positions]
        self.offset = None
        if isinstance(dtype, pd.CategoricalDtype):
            domain = pd.Series(list(dtype.categories), dtype=dtype)
            self.offset = 0
        elif attribute.kind != "date" and (attribute.kind != "numeric" or attribute.value_range):
            codes = [int(c) for c in attribute.codes + attribute.unknown_codes]
            low, high = min(codes), max(codes)
            domain = pd.Series(np.arange(low, high + 1), dtype=str(dtype))
            self.offset = low
        if self.offset is None:
            return
        unknown = domain.astype("string").isin(attribute.unknown_codes).to_numpy()
        if not isinstance(dtype, pd.CategoricalDtype):
            unknown |= ~domain.astype("string").isin(attribute.codes + attribute.unknown_codes).to_numpy()
        recoded = domain.mask(unknown)
        encoded = encode_column(
            pd.concat([recoded, pd.Series([None], dtype=domain.dtype)], ignore_index=True), attribute
        )
        self.table = self._standardize(encoded.to_numpy(dtype="float64", na_value=np.nan))
        self.missing = np.append(unknown, True)

    def _standardize(self, values: np.ndarray) -> np.ndarray:
        values = np.where(np.isnan(values), self.fill, values)
        return ((values - self.mean) / self.scale).astype("float32")

    def index(self, values: pd.Series) -> np.ndarray:
        """Rows of the table for each value; the last row stands for missing."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy().astype("int64")
            return np.where(codes < 0, len(self.table) - 1, codes)
        array = values.array
        data = np.asarray(array._data, dtype="int64") - self.offset
        return np.where(np.asarray(array._mask), len(self.table) - 1, data)

    def missing_of(self, values: pd.Series, index: np.ndarray | None) -> np.ndarray:
        if index is not None:
            return self.missing[index]
        return values.isna().to_numpy()

    def features_of(self, values: pd.Series, index: np.ndarray | None) -> np.ndarray:
        if index is not None:
            return self.table[index]
        encoded = encode_column(values, self.attribute).to_numpy(dtype="float64", na_value=np.nan)
        return self._standardize(encoded)


@dataclass
class SegmentationModel:
    """Everything fitted, in the order data flows."""

    schema: Schema
    cleaner: Cleaner
    encoder: Encoder
    scaler: ImputeScaler
    pca: object | None = None
    kmeans: object | None = None

    # ---------------------------------------------------------------- pure partition transforms
    def _lookups(self, frame: pd.DataFrame) -> list[_ColumnLookup]:
        key = tuple(str(frame[c].dtype) for c in self.encoder.columns)
        cache = self.__dict__.setdefault("_lookup_cache", {})
        if key not in cache:
            lookups, start = [], 0
            for column in self.encoder.columns:
                features = self.encoder.sources_[column]
                lookups.append(
                    _ColumnLookup(
                        self.schema[column],
                        frame[column].dtype,
                        slice(start, start + len(features)),
                        self.scaler,
                        features,
                    )
                )
                start += len(features)
            cache[key] = lookups
        return cache[key]

    def standardize_partition(self, raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw typed partition -> (set-aside mask of every row, standardized float32 features of the others).

        Equivalent to recode -> set-aside -> encode -> impute -> scale (``Cleaner``, ``Encoder``,
        ``ImputeScaler``), compiled into one table lookup per column.
        """
        lookups = self._lookups(raw)
        indexes = [
            lookup.index(raw[lookup.attribute.name]) if lookup.offset is not None else None
            for lookup in lookups
        ]
        missing = np.zeros(len(raw), dtype="int64")
        for lookup, index in zip(lookups, indexes, strict=True):
            missing += lookup.missing_of(raw[lookup.attribute.name], index)
        aside = missing / max(len(lookups), 1) > self.cleaner.row_missing_threshold
        kept = ~aside
        out = np.empty((int(kept.sum()), len(self.scaler.feature_names_)), dtype="float32")
        for lookup, index in zip(lookups, indexes, strict=True):
            values = raw[lookup.attribute.name]
            if index is not None:
                out[:, lookup.features] = lookup.table[index[kept]]
            else:
                out[:, lookup.features] = lookup.features_of(values[kept], None)
        return aside, out

    def features_partition(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw typed partition -> standardized float32 features of its kept rows."""
        return self.standardize_partition(raw)[1]

    def reduced_partition(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw typed partition -> PCA coordinates of its kept rows."""
        return self.pca.transform_array(self.features_partition(raw))

    def assign_partition(self, raw: pd.DataFrame, table: str) -> pd.DataFrame:
        """Raw typed partition -> ``LNR, table, segment`` for every row (set-aside rows included)."""
        aside, features = self.standardize_partition(raw)
        segment = np.full(len(raw), INSUFFICIENT, dtype=object)
        if len(features):
            labels = cluster.nearest_centre(self.pca.transform_array(features), self.kmeans.cluster_centers_)
            segment[~aside] = labels.astype(str)
        return pd.DataFrame(
            {
                "LNR": raw[self.schema.id_column].to_numpy(dtype="int64"),
                "table": pd.array([table] * len(raw), dtype="string"),
                "segment": pd.array(segment, dtype="string"),
            }
        )

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
        self.kmeans.save(folder / "kmeans")
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
        return cls(
            schema, cleaner, encoder, scaler, decompose.load(folder / "pca"), cluster.load(folder / "kmeans")
        )
