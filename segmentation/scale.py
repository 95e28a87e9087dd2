"""Impute and standardize, fitted in one pass from per-column value histograms.

Every attribute holds few distinct values (codes, years, small counts), so one pass that counts values per
source column gives everything: the exact median (not an approximate quantile) or the most frequent
category to impute, and the mean and standard deviation of each encoded feature *after* imputation. The
features a histogram stands for are found by encoding its distinct values with the same ``encode_column``
used on the data, so the statistics can never disagree with the transform.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._estimators import schema_of
from .encode import Encoder, encode_column, feature_names
from .schema import Schema


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


def _fill_mean_scale(
    values: np.ndarray, weights: np.ndarray, one_hot: bool, fill: float | None = None
) -> tuple[float, float, float]:
    """Fill value, mean and scale of one feature from its distinct values (NaN for missing) and their
    counts. The fill is the weighted median of the known values unless given (one-hot dummies)."""
    known = ~np.isnan(values)
    total = weights.sum()
    if not known.any() or total == 0:
        fill = 0.0
    elif fill is None:
        fill = _weighted_median(values[known], weights[known])
    imputed = np.where(known, values, fill)
    mean = float(np.dot(weights, imputed) / total) if total else 0.0
    variance = float(np.dot(weights, (imputed - mean) ** 2) / total) if total else 0.0
    # One-hot dummies are centred, not scaled: a categorical attribute then carries a total variance of
    # 1 - sum(p^2) < 1, like one standardized attribute, instead of one unit per category (which lets rare
    # categories' noise dominate PCA and k-means).
    scaled = not one_hot and variance > 1e-12
    return float(fill), mean, float(np.sqrt(variance)) if scaled else 1.0


class ImputeScaler(TransformerMixin, BaseEstimator):
    """Impute (median, or most frequent category for one-hot blocks) and standardize encoded features.

    Two ways to fit, with the same result: ``fit`` on the encoded frame (``Encoder.transform``'s output,
    what a scikit-learn ``Pipeline`` passes), or ``fit_histograms`` on value histograms of the encoder's
    source columns (what the job reduces across partitions in one pass).

    Parameters
    ----------
    encoder : Encoder, default=None
        A fitted encoder: its features are the ones fitted, its schema tells the one-hot blocks (the job's
        route, needed by ``fit_histograms``).
    schema : Schema, str or path, default=None
        Without ``encoder``: the schema (or attributes file path; None: the packaged Arvato attributes)
        that tells which features are one-hot dummies; every column of the frame is fitted.

    Attributes
    ----------
    feature_names_ : list of str
    fill_values_ : ndarray of shape (n_features,)
        What a missing value becomes (in encoded units).
    mean_, scale_ : ndarray of shape (n_features,)
        Mean and standard deviation after imputation (scale 1 for constant features and one-hot dummies,
        which are only centred).

    Example
    -------
    >>> scaled = ImputeScaler(schema="attributes.csv").fit_transform(encoded)  # float32 NumPy  # doctest: +SKIP
    """

    def __init__(self, encoder: Encoder | None = None, schema: Schema | str | os.PathLike | None = None):
        self.encoder = encoder
        self.schema = schema

    def _schema(self) -> Schema:
        return schema_of(self.encoder.schema if self.encoder is not None else self.schema)

    def _set(self, rows: list[tuple[str, float, float, float]]) -> ImputeScaler:
        self.feature_names_ = [name for name, _, _, _ in rows]
        self.fill_values_ = np.asarray([fill for _, fill, _, _ in rows], dtype=np.float64)
        self.mean_ = np.asarray([mean for _, _, mean, _ in rows], dtype=np.float64)
        self.scale_ = np.asarray([scale for _, _, _, scale in rows], dtype=np.float64)
        return self

    def fit_histograms(self, histograms: dict[str, pd.Series]) -> ImputeScaler:
        """Fit from value histograms of the encoder's source columns (see ``value_histograms``)."""
        if self.encoder is None:
            raise ValueError("fit_histograms needs ImputeScaler(encoder=...): a fitted Encoder")
        schema = self._schema()
        rows = []
        for source, features in self.encoder.sources_.items():
            counts = histograms[source]
            attribute = schema[source]
            distinct = pd.Series(counts.index)
            encoded = encode_column(distinct, attribute)
            weights = counts.to_numpy(dtype="float64")
            one_hot = attribute.kind == "categorical"
            mode_row = None
            if one_hot:
                present = distinct.notna().to_numpy()
                if present.any():
                    mode_row = int(np.flatnonzero(present)[np.argmax(weights[present])])
            for feature in features:
                values = encoded[feature].to_numpy(dtype="float64")
                fill = (float(values[mode_row]) if mode_row is not None else 0.0) if one_hot else None
                rows.append((feature, *_fill_mean_scale(values, weights, one_hot, fill)))
        return self._set(rows)

    def fit(self, encoded: pd.DataFrame, y=None) -> ImputeScaler:
        """Fit on an encoded pandas frame (``Encoder.transform``'s output, missing as NaN)."""
        if not isinstance(encoded, pd.DataFrame):
            raise TypeError(f"ImputeScaler.fit takes the encoded pandas frame, got {type(encoded).__name__}")
        schema = self._schema()
        names = self.encoder.feature_names_out_ if self.encoder is not None else list(encoded.columns)
        one_hot_blocks = {
            feature: attribute.name
            for attribute in schema.features()
            if attribute.kind == "categorical"
            for feature in feature_names(attribute)
        }
        # The most frequent category of each one-hot block: the dummy with the largest count of ones.
        ones = encoded[[n for n in names if n in one_hot_blocks]].sum()
        modes = {}
        for feature, count in ones.items():
            block = one_hot_blocks[feature]
            if count > 0 and count > ones.get(modes.get(block), 0):
                modes[block] = feature
        rows = []
        for name in names:
            counts = encoded[name].astype("float64").value_counts(dropna=False, sort=False)
            values, weights = counts.index.to_numpy(dtype="float64"), counts.to_numpy(dtype="float64")
            one_hot = name in one_hot_blocks
            fill = float(modes.get(one_hot_blocks[name]) == name) if one_hot else None
            rows.append((name, *_fill_mean_scale(values, weights, one_hot, fill)))
        return self._set(rows)

    def transform(self, encoded: pd.DataFrame) -> np.ndarray:
        """Encoded features (with NaN) -> imputed, standardized float32 array."""
        check_is_fitted(self, "feature_names_")
        values = encoded[self.feature_names_].to_numpy(dtype="float64", na_value=np.nan)
        values = np.where(np.isnan(values), self.fill_values_, values)
        return ((values - self.mean_) / self.scale_).astype("float32")

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        """Standardized values back to encoded units."""
        return np.asarray(scaled, dtype="float64") * self.scale_ + self.mean_

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The imputed, standardized features (the encoder's)."""
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)
