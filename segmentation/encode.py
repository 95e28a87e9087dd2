"""Re-encode attributes into numeric features, column by column, as the schema declares.

- ordinal and numeric: the code as a number;
- binary: 0 for the first valid code, 1 for the second (``OST_WEST_KZ``: O -> 0, W -> 1);
- categorical: one-hot over the valid codes the schema lists (known up front: no pass to find them);
- mixed: the derived columns the schema's ``derive`` entry declares (decade + movement, wealth + life stage);
- date: the year.

Missing stays missing here (a one-hot block is all-missing for a missing category); ``scale`` imputes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

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


class Encoder(BaseEstimator):
    """Turn the kept attribute columns into numeric features.

    Parameters
    ----------
    schema : Schema
    columns : list of str
        The source attributes to encode (the cleaner's kept columns).

    Attributes
    ----------
    feature_names_out_ : list of str
    sources_ : dict
        Source attribute -> the features it becomes.
    """

    def __init__(self, schema: Schema, columns: list[str]):
        self.schema = schema
        self.columns = columns

    def fit(self, frame=None, y=None) -> Encoder:
        """Nothing to learn from data: categories and splits come from the schema."""
        unknown = [c for c in self.columns if c not in self.schema]
        if unknown:
            raise ValueError(f"columns not in the schema: {', '.join(unknown)}")
        self.sources_ = {c: feature_names(self.schema[c]) for c in self.columns}
        self.feature_names_out_ = [f for features in self.sources_.values() for f in features]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Encode a recoded pandas partition (pure)."""
        parts = [encode_column(frame[c], self.schema[c]) for c in self.columns]
        return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
