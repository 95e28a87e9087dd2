"""A second data writer for the tests, independent of ``segmentation.synth``: the vendor "Nordwind".

Nordwind writes its own attributes file and its own layout: columns in an order of its own, integers
without ``.0``, ordinals and binaries coded as text (``J``/``N``, ``1``..``9`` with ``X``), other sentinels
for unknown (``-9``, ``unbekannt``, ``XX``), empty cells, a mixed column split by ``derive``, a numeric
column without a range, ISO dates without a time, and a customers-only column. Rows come from a few
well-separated planted segments; customers over-represent one of them. Files are ``;``-delimited CSV.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ATTRIBUTES = """attribute,kind,codes,unknown_codes,label,tables,derive
KUNDEN_NR,id,,,Kundennummer,,
REGION,categorical,N;O;S;W,XX,Region,,
KAUFKRAFT,ordinal,1..9,X,Kaufkraft,,
HAT_KARTE,binary,J;N,unbekannt,Kundenkarte,,
ALTER,numeric,18..99,-9;unbekannt,Alter in Jahren,,
LEBENSSTIL,mixed,11..13;21..23,-9,Lebensstil,,"STUFE=11..13:1,21..23:2|PHASE=11:1,12:2,13:3,21:1,22:2,23:3"
BONITAET,ordinal,1..5,0;unbekannt,Bonitaet,,
KUNDE_SEIT,date,,,Kunde seit,,
WOHNART,categorical,1;2;5;7,-9,Wohnart,,
ONLINE,binary,0;1,-1,Kauft online,,
ANZAHL_KAEUFE,numeric,,-1,Kaeufe im Jahr,,
INTERESSE,ordinal,1;2;3;4;5;6,9,Interesse,,
KANAL,extra,WEB;LADEN,,Kaufkanal,customers,
TREUE,ordinal,1..4,X,Treuestufe,customers,
"""
# Nordwind's files put the columns in this order (not the attributes file's).
COLUMN_ORDER = [
    "ALTER", "KUNDEN_NR", "ONLINE", "KAUFKRAFT", "KUNDE_SEIT", "REGION", "BONITAET",
    "LEBENSSTIL", "HAT_KARTE", "ANZAHL_KAEUFE", "WOHNART", "INTERESSE",
]  # fmt: skip
UNKNOWN = {
    "REGION": "XX", "KAUFKRAFT": "X", "HAT_KARTE": "unbekannt", "ALTER": "unbekannt",
    "LEBENSSTIL": "-9", "BONITAET": "0", "WOHNART": "-9", "ONLINE": "-1", "ANZAHL_KAEUFE": "-1",
    "INTERESSE": "9",
}  # fmt: skip
# Each planted segment's typical value per column (the code most of its rows take).
SEGMENTS = [
    {"REGION": "N", "KAUFKRAFT": 2, "HAT_KARTE": "N", "ALTER": 24, "LEBENSSTIL": "11", "BONITAET": 1,
     "WOHNART": "1", "ONLINE": "1", "ANZAHL_KAEUFE": 2, "INTERESSE": 1, "KUNDE_SEIT": 2019},
    {"REGION": "O", "KAUFKRAFT": 8, "HAT_KARTE": "J", "ALTER": 45, "LEBENSSTIL": "22", "BONITAET": 5,
     "WOHNART": "2", "ONLINE": "0", "ANZAHL_KAEUFE": 30, "INTERESSE": 6, "KUNDE_SEIT": 2005},
    {"REGION": "S", "KAUFKRAFT": 5, "HAT_KARTE": "J", "ALTER": 70, "LEBENSSTIL": "13", "BONITAET": 3,
     "WOHNART": "5", "ONLINE": "0", "ANZAHL_KAEUFE": 8, "INTERESSE": 3, "KUNDE_SEIT": 1995},
    {"REGION": "W", "KAUFKRAFT": 1, "HAT_KARTE": "N", "ALTER": 35, "LEBENSSTIL": "23", "BONITAET": 2,
     "WOHNART": "7", "ONLINE": "1", "ANZAHL_KAEUFE": 60, "INTERESSE": 5, "KUNDE_SEIT": 2012},
]  # fmt: skip
CATEGORIES = {"REGION": ["N", "O", "S", "W"], "HAT_KARTE": ["J", "N"], "LEBENSSTIL": ["11", "12", "13", "21", "22", "23"],
              "WOHNART": ["1", "2", "5", "7"], "ONLINE": ["0", "1"]}  # fmt: skip
ORDINAL_RANGE = {"KAUFKRAFT": (1, 9), "BONITAET": (1, 5), "INTERESSE": (1, 6)}
POPULATION_SHARES = [0.25, 0.25, 0.25, 0.25]
CUSTOMER_SHARES = [0.10, 0.60, 0.15, 0.15]  # segment 1 is over-represented among customers
OVER_REPRESENTED = 1


@dataclass
class NordwindFiles:
    """Where the files are and the planted truth: ``truth[table]`` is ``KUNDEN_NR, planted``."""

    folder: Path
    attributes: Path
    population: Path
    customers: Path
    truth: dict[str, pd.DataFrame]


def _column(name: str, typical: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cells (text, as Nordwind writes them) of one column for rows whose segment's typical value is given;
    90% of categorical rows take the typical code, numbers scatter around it."""
    n = len(typical)
    if name in CATEGORIES:
        other = rng.choice(CATEGORIES[name], n)
        return np.where(rng.random(n) < 0.9, typical.astype(str), other)
    if name in ORDINAL_RANGE:
        low, high = ORDINAL_RANGE[name]
        values = np.clip(typical.astype(int) + rng.integers(-1, 2, n), low, high)
        return values.astype(str)
    if name == "ALTER":
        return np.clip(typical.astype(int) + rng.integers(-5, 6, n), 18, 99).astype(str)
    if name == "ANZAHL_KAEUFE":
        return np.maximum(typical.astype(int) + rng.integers(-3, 4, n), 0).astype(str)
    if name == "KUNDE_SEIT":
        years = typical.astype(int) + rng.integers(-1, 2, n)
        months = rng.integers(1, 13, n)
        return np.array([f"{y}-{m:02d}-15" for y, m in zip(years, months, strict=True)])
    raise KeyError(name)


def nordwind_table(n: int, shares: list[float], first_id: int, seed: int, customers: bool = False):
    """(frame of text cells in Nordwind's column order, planted segment per row)."""
    rng = np.random.default_rng(seed)
    planted = rng.choice(len(SEGMENTS), n, p=shares)
    cells = {"KUNDEN_NR": (np.arange(n) + first_id).astype(str)}
    for name in COLUMN_ORDER:
        if name == "KUNDEN_NR":
            continue
        typical = np.array([SEGMENTS[s][name] for s in planted], dtype=object)
        column = _column(name, typical, rng).astype(object)
        if name in UNKNOWN:
            column[rng.random(n) < 0.03] = UNKNOWN[name]
        if name == "ALTER":
            column[rng.random(n) < 0.02] = "-9"  # Nordwind's second sentinel for age
        if name == "BONITAET":
            column[rng.random(n) < 0.02] = "unbekannt"
        column[rng.random(n) < 0.03] = ""  # empty cells
        cells[name] = column
    frame = pd.DataFrame(cells)[COLUMN_ORDER]
    # A few rows almost empty: the job sets them aside as insufficient_data.
    sparse = rng.random(n) < 0.02
    frame.loc[sparse, [c for c in COLUMN_ORDER if c not in ("KUNDEN_NR", "KUNDE_SEIT")]] = ""
    if customers:
        frame["KANAL"] = rng.choice(["WEB", "LADEN"], n)
        frame["TREUE"] = rng.choice(["1", "2", "3", "4", "X"], n)
    return frame, planted


def write_nordwind(folder: str | Path, population: int = 3000, customers: int = 1000, seed: int = 0):
    """Write ``attributes.csv``, ``population.csv`` and ``customers.csv`` of Nordwind into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "attributes.csv").write_text(ATTRIBUTES)
    truth = {}
    for table, n, shares, first_id, extra in (
        ("population", population, POPULATION_SHARES, 500_001, False),
        ("customers", customers, CUSTOMER_SHARES, 900_001, True),
    ):
        frame, planted = nordwind_table(n, shares, first_id, seed + (7 if extra else 0), customers=extra)
        frame.to_csv(folder / f"{table}.csv", sep=";", index=False)
        truth[table] = pd.DataFrame({"KUNDEN_NR": frame["KUNDEN_NR"].astype("int64"), "planted": planted})
    return NordwindFiles(
        folder, folder / "attributes.csv", folder / "population.csv", folder / "customers.csv", truth
    )
