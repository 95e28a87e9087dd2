"""The fitted chain (clean -> encode -> impute/scale -> PCA -> k-means) as one object that transforms a
partition of any table and saves to / loads from a folder of JSON and NumPy files (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cluster, decompose
from .clean import Cleaner, CodeIndex, code_indexes
from .encode import Encoder, encode_column
from .scale import ImputeScaler
from .schema import Schema, load_schema

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
        self.table = None
        if codes.low is not None:
            encoded = encode_column(codes.recoded, codes.attribute)
            self.table = self._standardize(encoded.to_numpy(dtype="float64", na_value=np.nan))

    def _standardize(self, values: np.ndarray) -> np.ndarray:
        values = np.where(np.isnan(values), self.fill, values)
        return ((values - self.mean) / self.scale).astype("float32")

    def features_of(self, values: pd.Series, positions: np.ndarray | None) -> np.ndarray:
        if positions is not None:
            return self.table[positions]
        encoded = encode_column(values, self.codes.attribute).to_numpy(dtype="float64", na_value=np.nan)
        return self._standardize(encoded)


def assignments(ids: np.ndarray, aside: np.ndarray, labels: np.ndarray, table: str) -> pd.DataFrame:
    """``LNR, table, segment``: set-aside rows get ``insufficient_data``, the others their label."""
    segment = np.full(len(ids), INSUFFICIENT, dtype=object)
    segment[~aside] = np.asarray(labels).astype(str)
    return pd.DataFrame(
        {
            "LNR": ids,
            "table": pd.array([table] * len(ids), dtype="string"),
            "segment": pd.array(segment, dtype="string"),
        }
    )


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
            for codes in code_indexes(self.schema, frame, self.encoder.columns):
                features = self.encoder.sources_[codes.attribute.name]
                lookups.append(
                    _ColumnLookup(codes, slice(start, start + len(features)), self.scaler, features)
                )
                start += len(features)
            cache[key] = lookups
        return cache[key]

    def _positions(self, raw: pd.DataFrame):
        lookups = self._lookups(raw)
        columns = [raw[lookup.codes.attribute.name] for lookup in lookups]
        positions = [lookup.codes.positions(values) for lookup, values in zip(lookups, columns, strict=True)]
        missing = sum(
            lookup.codes.missing(v, p) for lookup, v, p in zip(lookups, columns, positions, strict=True)
        )
        return lookups, columns, positions, self.cleaner.set_aside_from_missing(missing)

    def set_aside_partition(self, raw: pd.DataFrame) -> pd.DataFrame:
        """Raw typed partition -> ``LNR`` and the set-aside flag of every row (no features computed)."""
        aside = self._positions(raw)[3]
        return pd.DataFrame({"LNR": raw[self.schema.id_column].to_numpy(dtype="int64"), "aside": aside})

    def standardize_partition(self, raw: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw typed partition -> (set-aside mask of every row, standardized float32 features of the others).

        Equivalent to recode -> set-aside -> encode -> impute -> scale (``Cleaner``, ``Encoder``,
        ``ImputeScaler``), compiled into one table lookup per column.
        """
        lookups, columns, positions, aside = self._positions(raw)
        kept = ~aside
        out = np.empty((int(kept.sum()), len(self.scaler.feature_names_)), dtype="float32")
        for lookup, values, position in zip(lookups, columns, positions, strict=True):
            out[:, lookup.features] = lookup.features_of(
                values[kept], None if position is None else position[kept]
            )
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
        labels = cluster.nearest_centre(self.pca.transform_array(features), self.kmeans.cluster_centers_)
        return assignments(raw[self.schema.id_column].to_numpy(dtype="int64"), aside, labels, table)

    def assign_reduced(self, rows: pd.DataFrame, reduced: np.ndarray, table: str) -> pd.DataFrame:
        """``set_aside_partition`` rows plus the PCA coordinates of their kept rows -> assignments."""
        labels = cluster.nearest_centre(reduced, self.kmeans.cluster_centers_)
        return assignments(rows["LNR"].to_numpy(), rows["aside"].to_numpy(), labels, table)

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
