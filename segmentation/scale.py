"""Impute and standardize, fitted in one pass from per-column value histograms.

Every attribute holds few distinct values (codes, years, small counts), so one pass that counts values per
source column gives everything: the exact median (not an approximate quantile) or the most frequent
category to impute, and the mean and standard deviation of each encoded feature *after* imputation. The
features a histogram stands for are found by encoding its distinct values with the same ``encode_column``
used on the data, so the statistics can never disagree with the transform.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .encode import Encoder, encode_column


def value_histograms(frame: pd.DataFrame, columns: list[str]) -> dict[str, pd.Series]:
    """Per column, the count of each distinct value, missing included (a pure partition reduction)."""
    return {c: frame[c].value_counts(dropna=False, sort=False) for c in columns}


def merge_histograms(*parts: dict[str, pd.Series]) -> dict[str, pd.Series]:
    """Sum histograms from several partitions (used as a tree reduction); missing stays a key of its own."""
    columns = dict.fromkeys(column for part in parts for column in part)
    merged = {}
    for column in columns:
        pieces = [part[column] for part in parts if column in part]
        merged[column] = pd.concat(pieces).groupby(level=0, dropna=False, sort=False, observed=False).sum()
    return merged


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    cumulative = np.cumsum(weights)
    return float(values[np.searchsorted(cumulative, cumulative[-1] / 2.0)])


class ImputeScaler(BaseEstimator):
    """Impute (median, or most frequent category for one-hot blocks) and standardize encoded features.

    Parameters
    ----------
    encoder : Encoder
        A fitted encoder; its source columns are the ones histogrammed.

    Attributes
    ----------
    feature_names_ : list of str
    fill_values_ : ndarray of shape (n_features,)
        What a missing value becomes (in encoded units).
    mean_, scale_ : ndarray of shape (n_features,)
        Mean and standard deviation after imputation (scale 1 for constant features and one-hot dummies,
        which are only centred).
    """

    def __init__(self, encoder: Encoder):
        self.encoder = encoder

    def fit_histograms(self, histograms: dict[str, pd.Series]) -> ImputeScaler:
        """Fit from value histograms of the encoder's source columns (see ``value_histograms``)."""
        schema = self.encoder.schema
        fills, means, scales, names = [], [], [], []
        for source, features in self.encoder.sources_.items():
            counts = histograms[source]
            attribute = schema[source]
            distinct = pd.Series(counts.index)
            encoded = encode_column(distinct, attribute)
            weights = counts.to_numpy(dtype="float64")
            total = weights.sum()
            if attribute.kind == "categorical":
                present = distinct.notna().to_numpy()
                mode_row = (
                    int(np.flatnonzero(present)[np.argmax(weights[present])]) if present.any() else None
                )
            for feature in features:
                values = encoded[feature].to_numpy(dtype="float64")
                known = ~np.isnan(values)
                if not known.any() or total == 0:
                    fill = 0.0
                elif attribute.kind == "categorical":
                    fill = float(values[mode_row]) if mode_row is not None else 0.0
                else:
                    fill = _weighted_median(values[known], weights[known])
                imputed = np.where(known, values, fill)
                mean = float(np.dot(weights, imputed) / total) if total else 0.0
                variance = float(np.dot(weights, (imputed - mean) ** 2) / total) if total else 0.0
                fills.append(fill)
                means.append(mean)
                # One-hot dummies are centred, not scaled: a categorical attribute then carries a total
                # variance of 1 - sum(p^2) < 1, like one standardized attribute, instead of one unit per
                # category (which lets rare categories' noise dominate PCA and k-means).
                scaled = attribute.kind != "categorical" and variance > 1e-12
                scales.append(np.sqrt(variance) if scaled else 1.0)
                names.append(feature)
        self.feature_names_ = names
        self.fill_values_ = np.asarray(fills)
        self.mean_ = np.asarray(means)
        self.scale_ = np.asarray(scales)
        return self

    def fit(self, frame: pd.DataFrame, y=None) -> ImputeScaler:
        """Fit on an in-memory recoded frame (the job fits through ``fit_histograms`` on partitions)."""
        return self.fit_histograms(value_histograms(frame, list(self.encoder.sources_)))

    def transform(self, encoded: pd.DataFrame) -> np.ndarray:
        """Encoded features (with NaN) -> imputed, standardized float32 array."""
        values = encoded[self.feature_names_].to_numpy(dtype="float64", na_value=np.nan)
        values = np.where(np.isnan(values), self.fill_values_, values)
        return ((values - self.mean_) / self.scale_).astype("float32")

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        """Standardized values back to encoded units."""
        return np.asarray(scaled, dtype="float64") * self.scale_ + self.mean_
