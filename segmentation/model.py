"""The fitted chain (clean -> encode -> impute/scale -> PCA -> k-means) as one object that transforms a
partition of any table and saves to / loads from a folder of JSON and NumPy files (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import cluster, decompose
from .clean import Cleaner, unknown_to_missing
from .encode import Encoder
from .scale import ImputeScaler
from .schema import Schema, load_schema

INSUFFICIENT = "insufficient_data"
MODEL_FORMAT = 1


def segment_names(k: int) -> list[str]:
    """Segment labels in report order: "0".."k-1", then insufficient_data."""
    return [str(i) for i in range(k)] + [INSUFFICIENT]


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
    def recode(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = [c for c in frame.columns if c in self.schema]
        return unknown_to_missing(frame[columns], self.schema)

    def scaled_partition(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardized features of the rows with enough data (a recoded partition)."""
        kept = frame[~self.cleaner.set_aside_mask(frame)]
        return self.scaler.transform(self.encoder.transform(kept))

    def features_partition(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw typed partition -> standardized float32 features of its kept rows."""
        return self.scaled_partition(self.recode(raw))

    def reduced_partition(self, raw: pd.DataFrame) -> np.ndarray:
        """Raw typed partition -> PCA coordinates of its kept rows."""
        return self.pca.transform_array(self.features_partition(raw))

    def assign_partition(self, raw: pd.DataFrame, table: str) -> pd.DataFrame:
        """Raw typed partition -> ``LNR, table, segment`` for every row (set-aside rows included)."""
        recoded = self.recode(raw)
        aside = self.cleaner.set_aside_mask(recoded).to_numpy()
        segment = np.full(len(raw), INSUFFICIENT, dtype=object)
        if (~aside).any():
            scaled = self.scaler.transform(self.encoder.transform(recoded[~aside]))
            labels = cluster.nearest_centre(self.pca.transform_array(scaled), self.kmeans.cluster_centers_)
            segment[~aside] = labels.astype(str)
        return pd.DataFrame(
            {
                "LNR": raw[self.schema.id_column].astype("int64").to_numpy(),
                "table": pd.Series([table] * len(raw), dtype="string").to_numpy(),
                "segment": segment,
            }
        ).astype({"table": "string", "segment": "string"})

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
        cleaner.missing_share_ = pd.Series(np.load(folder / "missing_share.npy"), index=c["missing_share_columns"])
        cleaner.kept_columns_, cleaner.dropped_columns_, cleaner.n_rows_ = (
            c["kept_columns"], c["dropped_columns"], c["n_rows"])
        encoder = Encoder(schema, description["encoder"]["columns"]).fit()
        scaler = ImputeScaler(encoder)
        scaler.feature_names_ = description["encoder"]["feature_names"]
        scaler.fill_values_ = np.load(folder / "scaler_fill.npy")
        scaler.mean_ = np.load(folder / "scaler_mean.npy")
        scaler.scale_ = np.load(folder / "scaler_scale.npy")
        return cls(schema, cleaner, encoder, scaler, decompose.load(folder / "pca"), cluster.load(folder / "kmeans"))
