"""Shared fixtures: a tiny schema of another vendor, small tables written in the real file format, and TLS
certificates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation.schema import parse_attributes
from tests.clusters import make_certificates

OTHER_VENDOR_ATTRIBUTES = """attribute,kind,codes,unknown_codes,label,information_level,tables,derive
CUST_ID,id,,,Customer id,,,
INCOME,ordinal,1..5,0;9,Income band,household,,
REGION,categorical,N;S;E;W,X,Region,region,,
URBAN,binary,U;R,-1,Urban or rural,region,,
AGE,numeric,18..99,,Age in years,person,,
LIFESTAGE,mixed,11..13;21..23,-1,Wealth x life stage,person,,"WEALTH=11..13:1,21..23:2|STAGE=11:1,12:2,13:3,21:1,22:2,23:3"
SCORE,ordinal,1..7,-1,Affinity score,person,,
SIGNUP,date,,,Sign-up timestamp,,,
CHANNEL,extra,WEB;SHOP,,Purchase channel,,customers,
"""


@pytest.fixture(scope="session")
def other_schema():
    return parse_attributes(OTHER_VENDOR_ATTRIBUTES, source="other_vendor.csv")


def other_vendor_frame(n: int, seed: int = 0, customers: bool = False) -> pd.DataFrame:
    """Rows of the other vendor's format, with unknown codes, sentinels and missing values."""
    rng = np.random.default_rng(seed)
    income = rng.choice([1, 2, 3, 4, 5, 0, 9], n, p=[0.2, 0.2, 0.2, 0.15, 0.15, 0.05, 0.05]).astype(float)
    income[rng.random(n) < 0.05] = np.nan
    frame = pd.DataFrame(
        {
            "CUST_ID": np.arange(1, n + 1) + (0 if customers else 100_000),
            "INCOME": income,
            "REGION": rng.choice(["N", "S", "E", "W", "X"], n, p=[0.3, 0.3, 0.2, 0.15, 0.05]),
            "URBAN": rng.choice(["U", "R", "-1"], n, p=[0.6, 0.35, 0.05]),
            "AGE": rng.integers(18, 100, n).astype(float),
            "LIFESTAGE": rng.choice(["11", "12", "13", "21", "22", "23", "-1"], n),
            "SCORE": rng.integers(1, 8, n),
            "SIGNUP": np.where(rng.random(n) < 0.1, None, "2016-03-01 00:00:00"),
        }
    )
    frame.loc[rng.random(n) < 0.1, "AGE"] = np.nan
    mostly_empty = rng.random(n) < 0.1
    frame.loc[mostly_empty, ["INCOME", "REGION", "URBAN", "AGE", "LIFESTAGE"]] = None
    if customers:
        frame["CHANNEL"] = rng.choice(["WEB", "SHOP"], n)
    return frame


@pytest.fixture
def other_vendor_files(tmp_path, other_schema):
    """population.csv / customers.csv / attributes.csv of the other vendor in a temp folder."""
    (tmp_path / "attributes.csv").write_text(OTHER_VENDOR_ATTRIBUTES)
    other_vendor_frame(3000, seed=1).to_csv(tmp_path / "population.csv", sep=";", index=False)
    other_vendor_frame(800, seed=2, customers=True).to_csv(tmp_path / "customers.csv", sep=";", index=False)
    return tmp_path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A CA and certificates for 127.0.0.1 (``tests.clusters.make_certificates``)."""
    return make_certificates(tmp_path_factory.mktemp("certs"))
