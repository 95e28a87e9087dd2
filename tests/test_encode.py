"""encode_column: every kind from the storage dtypes the loader gives it, numbers or text categories."""

import numpy as np
import pandas as pd
import pytest

from segmentation.codes import storage_dtype
from segmentation.encode import encode_column
from segmentation.schema import parse_attributes

ATTRIBUTES = """attribute,kind,codes,unknown_codes,derive
ID,id,,,
T,ordinal,1..9,X,
N,numeric,0..20,unbekannt;XX,
I,ordinal,1..5,-1,
B,binary,J;N,unbekannt,
M,mixed,1A;2B,XX,"P=1A:1,2B:2"
"""


@pytest.fixture
def schema():
    return parse_attributes(ATTRIBUTES)


def _stored(schema, column, values):
    return pd.Series(values, dtype=storage_dtype(schema[column]))


def test_ordinal_held_as_text_categories_encodes_as_numbers(schema):
    # The reported crash: ordinal 1..9 with unknown code X is stored as text categories, and casting those
    # to float32 failed ("Cannot cast object dtype to float32").
    values = _stored(schema, "T", ["1", "9", None, "5"])
    assert isinstance(values.dtype, pd.CategoricalDtype)
    encoded = encode_column(values, schema["T"])
    np.testing.assert_array_equal(encoded["T"].to_numpy(), np.array([1, 9, np.nan, 5], dtype="float32"))
    assert encoded["T"].dtype == "float32"


def test_numeric_and_integer_ordinal_encode_as_numbers(schema):
    numbers = encode_column(_stored(schema, "N", [0, 20, None]), schema["N"])["N"]
    np.testing.assert_array_equal(numbers.to_numpy(), np.array([0, 20, np.nan], dtype="float32"))
    ordinal = encode_column(_stored(schema, "I", [1, None, 5]), schema["I"])["I"]
    np.testing.assert_array_equal(ordinal.to_numpy(), np.array([1, np.nan, 5], dtype="float32"))


def test_text_binary_and_mixed(schema):
    binary = encode_column(_stored(schema, "B", ["J", "N", None]), schema["B"])["B"]
    np.testing.assert_array_equal(binary.to_numpy(), np.array([0, 1, np.nan], dtype="float32"))
    mixed = encode_column(_stored(schema, "M", ["2B", "1A", None]), schema["M"])["M_P"]
    np.testing.assert_array_equal(mixed.to_numpy(), np.array([2, 1, np.nan], dtype="float32"))
