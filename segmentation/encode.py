"""Re-encode attributes into numeric features, column by column, as the schema declares.

- ordinal and numeric: the code as a number;
- binary: 0 for the first valid code, 1 for the second (``OST_WEST_KZ``: O -> 0, W -> 1);
- categorical: one-hot over the valid codes the schema lists (known up front: no pass to find them);
- mixed: the derived columns the schema's ``derive`` entry declares (decade + movement, wealth + life stage);
- date: the year.

Missing stays missing here (a one-hot block is all-missing for a missing category); ``scale`` imputes.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._estimators import schema_of
from .schema import Attribute, Schema


def one_hot_name(attribute: str, code: str) -> str:
    return f"{attribute}={code}"


def feature_names(attribute: Attribute) -> list[str]:
    """The encoded feature columns one attribute becomes."""
    if attribute.kind == "categorical":
        return [one_hot_name(attribute.name, c) for c in attribute.codes]
    if attribute.kind == "mixed":
        return [d.name for d in attribute.derive]
    return [attribute.name]


def encode_column(values: pd.Series, attribute: Attribute) -> pd.DataFrame:
    """Encode one recoded column into its float32 feature columns (missing stays NaN)."""
    index = values.index
    if attribute.kind == "categorical":
        text = values.astype("string")
        present = text.notna().to_numpy()
        data = {}
        for code in attribute.codes:
            # fillna before to_numpy: pandas 3's Arrow-backed strings reject to_numpy(na_value=...) to float
            column = (text == code).fillna(False).to_numpy(dtype="float32")
            column[~present] = np.nan
            data[one_hot_name(attribute.name, code)] = column
        return pd.DataFrame(data, index=index)
    if attribute.kind == "mixed":
        text = values.astype("string")
        return pd.DataFrame(
            {d.name: text.map(d.mapping).astype("float32") for d in attribute.derive},
            index=index,
        )
    if attribute.kind == "binary":
        text = values.astype("string")
        encoded = (text == attribute.codes[1]).astype("float32")
        return pd.DataFrame({attribute.name: encoded.where(text.notna()).astype("float32")}, index=index)
    if attribute.kind == "date":
        return pd.DataFrame({attribute.name: values.dt.year.astype("float32")}, index=index)
    return pd.DataFrame({attribute.name: _numbers(values)}, index=index)


def _numbers(values: pd.Series) -> np.ndarray:
    """An ordinal or numeric column as float32 (NaN for missing), whether held as numbers or, when its
    unknown codes are text (``1..9`` with ``X``), as text categories."""
    if not pd.api.types.is_numeric_dtype(values.dtype):
        values = pd.to_numeric(values.astype("string"), errors="coerce")
    return values.to_numpy(dtype="float32", na_value=np.nan)


class Encoder(TransformerMixin, BaseEstimator):
    """Turn the kept attribute columns into numeric features.

    Parameters
    ----------
    schema : Schema, str or path, default=None
        The schema, or the path of an attributes file; None: the packaged Arvato attributes.
    columns : list of str, default=None
        The source attributes to encode (the cleaner's kept columns); None: the feature columns of the
        frame given to ``fit``, in its order.

    Attributes
    ----------
    feature_names_out_ : list of str
    sources_ : dict
        Source attribute -> the features it becomes, in the order encoded.

    Example
    -------
    >>> encoded = Encoder("attributes.csv").fit_transform(cleaner.transform(population))  # doctest: +SKIP
    """

    def __init__(self, schema: Schema | str | os.PathLike | None = None, columns: list[str] | None = None):
        self.schema = schema
        self.columns = columns

    def fit(self, frame: pd.DataFrame | None = None, y=None) -> Encoder:
        """Nothing to learn from the values: categories and splits come from the schema."""
        schema = schema_of(self.schema)
        if self.columns is not None:
            columns = list(self.columns)
        elif frame is not None:
            columns = [c for c in frame.columns if c in schema and schema[c].is_feature]
        else:
            raise ValueError("Encoder.fit needs columns=[...] or a frame whose columns to encode")
        unknown = [c for c in columns if c not in schema]
        if unknown:
            raise ValueError(f"columns not in the schema: {', '.join(unknown)}")
        self.sources_ = {c: feature_names(schema[c]) for c in columns}
        self.feature_names_out_ = [f for features in self.sources_.values() for f in features]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Encode a recoded pandas frame (pure): float32 features, missing stays NaN."""
        check_is_fitted(self, "sources_")
        schema = schema_of(self.schema)
        parts = [encode_column(frame[c], schema[c]) for c in self.sources_]
        return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The encoded feature names."""
        check_is_fitted(self, "sources_")
        return np.asarray(self.feature_names_out_, dtype=object)
