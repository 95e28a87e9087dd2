"""A realistic fake run folder (see docs/run-folder.md), so report and target tests do not need the job.

The fake has k = 8 segments plus ``insufficient_data``; segments 2 and 5 are over-represented among
customers, 0 and 6 under-represented; segment 7 is unstable (bootstrap Jaccard below 0.6). The mail-out
training table has responses (response rates per segment, the response model's cross-validation and
gains in run.json). Column names and labels come from the packaged Arvato
attributes file. Every file agrees with every other: proportions.csv counts the assignments, run.json's
row accounting matches both, and quality/rows.csv puts exactly the set-aside rows above the threshold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from segmentation.compare import wilson_interval
from segmentation.describe import with_personas
from segmentation.schema import load_schema

K = 8
OVER = ("2", "5")
UNDER = ("0", "6")
SEGMENTS = tuple(str(s) for s in range(K)) + ("insufficient_data",)
ROWS = {"population": 3000, "customers": 1500, "mailout_train": 600}
COLUMN_MISSING = 0.3
ROW_MISSING = 0.5
N_COMPONENTS = 60
# Population shares per segment (last: insufficient_data) and the customer/population ratio planted.
POPULATION_SHARES = (0.14, 0.12, 0.11, 0.13, 0.12, 0.10, 0.13, 0.10, 0.05)
PLANTED_RATIOS = (0.30, 1.05, 2.40, 0.95, 1.00, 2.00, 0.40, 1.05, 1.10)
# Per segment: (attribute, standardized difference) planted on top of small noise.
PLANTED_PROFILES = {
    "0": [("FINANZ_MINIMALIST", 1.4), ("HH_EINKOMMEN_SCORE", 0.9), ("FINANZ_SPARER", -1.1)],
    "1": [("SEMIO_ERL", 0.8), ("ONLINE_AFFINITAET", 0.7)],
    "2": [("FINANZ_SPARER", 1.2), ("SEMIO_PFLICHT", 0.9), ("ALTERSKATEGORIE_GROB", 0.7), ("SEMIO_ERL", -0.8)],
    "3": [("KBA13_HERST_BMW_BENZ", 0.9), ("PLZ8_ANTG1", -0.7)],
    "4": [("D19_GESAMT_ANZ_12", 1.0), ("SEMIO_KULT", 0.6)],
    "5": [("HH_EINKOMMEN_SCORE", -1.3), ("FINANZ_VORSORGER", 1.0), ("ONLINE_AFFINITAET", -0.6)],
    "6": [("ALTERSKATEGORIE_GROB", -1.2), ("SEMIO_REL", -0.9), ("SEMIO_LUST", 0.8)],
    "7": [("KBA05_ANTG1", 0.8), ("SEMIO_RAT", -0.7)],
}


def write_fake_run(run_dir: str | Path, seed: int = 0) -> Path:
    """Write every file the report and the targets read into ``run_dir``; returns it as a Path."""
    run_dir = Path(run_dir)
    (run_dir / "quality").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    schema = load_schema()
    columns = _quality_columns(schema)
    dropped = columns.loc[columns["table"].eq("population") & columns["dropped"], "column"].tolist()
    columns.to_csv(run_dir / "quality" / "columns.csv", index=False)

    counts = _counts()
    _write_assignments(run_dir / "assignments", counts, rng)
    proportions = _proportions(counts)
    proportions = pd.concat([proportions, _response(counts["mailout_train"])], axis=1)
    proportions.to_csv(run_dir / "proportions.csv", index=False)
    set_aside = {t: int(counts[t][-1]) for t in ("population", "customers")}
    _row_histogram(set_aside).to_csv(run_dir / "quality" / "rows.csv", index=False)

    features = _encoded_features(schema, set(dropped))
    with_personas(_profiles(features, rng), schema).to_csv(run_dir / "profiles.csv", index=False)
    _stability().to_csv(run_dir / "stability.csv", index=False)
    pca = _pca()
    pca.to_csv(run_dir / "pca.csv", index=False)
    _pca_loadings(features, rng).to_csv(run_dir / "pca_loadings.csv", index=False)
    elbow = _elbow()
    elbow.to_csv(run_dir / "elbow.csv", index=False)

    run = {
        "segmentation_version": "0.1.0",
        "started": "2026-11-26T17:00:00+00:00",
        "finished": "2026-11-26T17:03:10+00:00",
        "config": {"name": "fake", "k": K, "row_missing": ROW_MISSING, "column_missing": COLUMN_MISSING},
        "inputs": {
            "population": "data/demo/population.csv",
            "customers": "data/demo/customers.csv",
            "attributes": "segmentation/data/arvato_attributes.csv",
        },
        "versions": {
            "python": "3.11.7",
            "dask": "2025.5.1",
            "distributed": "2025.5.1",
            "dask_ml": "2025.1.0",
            "scikit-learn": "1.6.1",
            "pandas": "2.2.3",
            "numpy": "2.2.6",
        },
        "cluster": {
            "profile": "local",
            "scheduler": "tcp://127.0.0.1:40321",
            "dashboard": "http://127.0.0.1:8787/status",
            "workers": 2,
            "threads_per_worker": 1,
            "memory_limit_per_worker": 4000000000,
        },
        "timings": {
            "read": 1.23,
            "clean": 3.41,
            "encode": 0.12,
            "scale": 2.05,
            "reduce": 5.4,
            "cluster": 10.37,
            "assign": 3.0,
            "compare": 0.48,
            "describe": 1.02,
            "write": 2.1,
        },
        "rows": {
            t: {"read": ROWS[t], "assigned": ROWS[t] - set_aside[t], "set_aside": set_aside[t]}
            for t in ("population", "customers")
        },
        "columns": {"input": 366, "dropped": dropped, "features": len(features)},
        "thresholds": {"column_missing": COLUMN_MISSING, "row_missing": ROW_MISSING},
        "pca": {
            "solver": "gram",
            "n_components": N_COMPONENTS,
            "explained_variance": float(pca.loc[N_COMPONENTS - 1, "cumulative"]),
        },
        "clustering": {
            "algorithm": "kmeans",
            "k": K,
            "k_recommended": K,
            "sse": float(elbow.loc[elbow["k"].eq(K), "sse"].iloc[0]),
        },
        "invalid_values": {"population": {"KBA05_MODTEMP": 3}, "customers": {}},
        "response": {
            "rate_test": {"test": "chi-square", "statistic": 40.1, "dof": 8, "p_value": 3.1e-6},
            "cross_validation": {
                "folds": 5,
                "model": {
                    "roc_auc": {"mean": 0.74, "std": 0.02},
                    "pr_auc": {"mean": 0.05, "std": 0.01},
                    "gains": {
                        "share_mailed": [i / 10 for i in range(11)],
                        "share_responses": [0, 0.31, 0.48, 0.6, 0.7, 0.78, 0.85, 0.9, 0.95, 0.98, 1.0],
                        "top_decile_lift": 3.1,
                    },
                },
                "segment_rate": {"roc_auc": {"mean": 0.66, "std": 0.03}},
                "segment_lift": {"roc_auc": {"mean": 0.64, "std": 0.03}},
            },
            "files": {"mailout_scores": "mailout_scores.parquet", "submission": "submission.csv"},
        },
        "peak_worker_memory": 812000000,
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir


def _counts() -> dict[str, np.ndarray]:
    """Rows per segment (SEGMENTS order) for each table; exact, so the planted effects are not noise."""
    population = np.array(POPULATION_SHARES)
    customers = population * np.array(PLANTED_RATIOS)
    shares = {"population": population, "customers": customers / customers.sum(), "mailout_train": population}
    counts = {}
    for table, share in shares.items():
        table_counts = np.floor(share / share.sum() * ROWS[table]).astype(int)
        table_counts[4] += ROWS[table] - table_counts.sum()  # a "similar" segment takes the remainder
        counts[table] = table_counts
    return counts


def _write_assignments(folder: Path, counts: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    first_lnr = {"population": 191_653, "customers": 1, "mailout_train": 1_100_000}
    for number, (table, table_counts) in enumerate(counts.items()):
        segments = np.repeat(np.array(SEGMENTS, dtype=object), table_counts)
        rng.shuffle(segments)
        lnr = first_lnr[table] + rng.choice(3 * len(segments), size=len(segments), replace=False)
        frame = pd.DataFrame({"LNR": lnr.astype("int64"), "table": table, "segment": segments})
        # Two files per table, as a job writing several partitions would.
        half = len(frame) // 2
        frame.iloc[:half].to_parquet(folder / f"part.{2 * number}.parquet", index=False)
        frame.iloc[half:].to_parquet(folder / f"part.{2 * number + 1}.parquet", index=False)


def _proportions(counts: dict[str, np.ndarray]) -> pd.DataFrame:
    population, customers = counts["population"], counts["customers"]
    p_share = population / population.sum()
    c_share = customers / customers.sum()
    ratio = c_share / p_share
    se = np.sqrt(1 / customers - 1 / customers.sum() + 1 / population - 1 / population.sum())
    z = np.log(ratio) / se
    p_value = np.array([math.erfc(abs(v) / math.sqrt(2)) for v in z])
    significant = p_value * len(SEGMENTS) < 0.05
    representation = np.where(significant & (ratio > 1), "over", np.where(significant, "under", "similar"))
    return pd.DataFrame(
        {
            "segment": SEGMENTS,
            "population_count": population,
            "population_share": p_share,
            "customers_count": customers,
            "customers_share": c_share,
            "ratio": ratio,
            "ratio_ci_low": ratio * np.exp(-1.96 * se),
            "ratio_ci_high": ratio * np.exp(1.96 * se),
            "p_value": p_value,
            "representation": representation,
        }
    )


def _quality_columns(schema) -> pd.DataFrame:
    frames = []
    for table, scale in (("population", 1.0), ("customers", 2.4)):
        rows = []
        for attribute in schema:
            if not attribute.in_table("population"):
                continue
            raw = attribute.missing_share_population or 0.0
            recoded = attribute.missing_share_recoded
            population_share = recoded if recoded is not None else raw
            share = (
                population_share if table == "population" else min(0.999, max(population_share, raw * scale))
            )
            rows.append((table, attribute.name, attribute.label, share, population_share > COLUMN_MISSING))
        frames.append(pd.DataFrame(rows, columns=["table", "column", "label", "missing_share", "dropped"]))
    return pd.concat(frames, ignore_index=True)


def _row_histogram(set_aside: dict[str, int]) -> pd.DataFrame:
    """50 bins of width 2%: most rows nearly complete, a second mode around 60% missing (bimodal)."""
    edges = np.linspace(0.0, 1.0, 51)
    centres = (edges[:-1] + edges[1:]) / 2
    low_mode = np.exp(-centres / 0.04)
    high_mode = np.exp(-(((centres - 0.62) / 0.05) ** 2))
    rows = []
    for table in ("population", "customers"):
        below, above = centres < ROW_MISSING, centres >= ROW_MISSING
        counts = np.zeros(len(centres), dtype=int)
        counts[below] = _spread(ROWS[table] - set_aside[table], low_mode[below] + 0.02 * high_mode[below])
        counts[above] = _spread(set_aside[table], high_mode[above] + 1e-3)
        rows += [(table, lo, hi, n) for lo, hi, n in zip(edges[:-1], edges[1:], counts, strict=True)]
    return pd.DataFrame(rows, columns=["table", "missing_share_low", "missing_share_high", "rows"])


def _spread(total: int, weights: np.ndarray) -> np.ndarray:
    counts = np.floor(weights / weights.sum() * total).astype(int)
    counts[np.argmax(weights)] += total - counts.sum()
    return counts


def _encoded_features(schema, dropped: set[str]) -> list[tuple[str, str]]:
    """About 400 encoded attributes with labels: kept columns, one-hots for categoricals, derived splits."""
    features = []
    for attribute in schema.features():
        if attribute.name in dropped or attribute.kind == "date":
            continue
        if attribute.kind == "categorical" and len(attribute.codes) > 2:
            names = [f"{attribute.name}={code}" for code in attribute.codes]
        elif attribute.kind == "mixed":
            names = [derived.name for derived in attribute.derive]
        else:
            names = [attribute.name]
        features += [(name, schema.label(name)) for name in names]
    planted = {name for rows in PLANTED_PROFILES.values() for name, _ in rows}
    kept = [f for f in features if f[0] in planted] + [f for f in features if f[0] not in planted]
    return kept[:400]


def _profiles(features: list[tuple[str, str]], rng: np.random.Generator) -> pd.DataFrame:
    frames = []
    population_mean = rng.uniform(1.5, 4.5, len(features))
    population_std = rng.uniform(0.5, 1.5, len(features))
    index = {name: i for i, (name, _) in enumerate(features)}
    for segment in SEGMENTS:
        difference = rng.normal(0.0, 0.12, len(features))
        for name, value in PLANTED_PROFILES.get(segment, []):
            difference[index[name]] = value
        frame = pd.DataFrame(
            {
                "segment": segment,
                "attribute": [name for name, _ in features],
                "label": [label for _, label in features],
                "segment_mean": population_mean + difference * population_std,
                "population_mean": population_mean,
                "population_std": population_std,
                "standardized_difference": difference,
            }
        )
        frame["rank"] = (
            frame["standardized_difference"].abs().rank(ascending=False, method="first").astype(int)
        )
        frames.append(frame.sort_values("rank"))
    return pd.concat(frames, ignore_index=True)


def _pca(total: int = 150) -> pd.DataFrame:
    raw = 1.0 / np.arange(1, total + 1) ** 0.9
    raw[:3] *= (3.0, 2.0, 1.4)
    ratio = raw / raw.sum() * 0.999
    return pd.DataFrame(
        {
            "component": np.arange(1, total + 1),
            "explained_variance_ratio": ratio,
            "cumulative": np.cumsum(ratio),
            "kept": np.arange(1, total + 1) <= N_COMPONENTS,
        }
    )


def _pca_loadings(features: list[tuple[str, str]], rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for component in range(1, 6):
        picks = rng.choice(len(features), size=10, replace=False)
        loadings = rng.uniform(0.08, 0.25, 10) * rng.choice([-1, 1], 10)
        for pick, loading in zip(picks, loadings, strict=True):
            rows.append((component, features[pick][0], features[pick][1], loading))
    frame = pd.DataFrame(rows, columns=["component", "attribute", "label", "loading"])
    order = frame["loading"].abs().rank(ascending=False)
    return frame.assign(_order=order).sort_values(["component", "_order"]).drop(columns="_order")


# Per segment (0..7): the bootstrap Jaccard planted; segment 7 unstable.
STABILITY = (0.93, 0.88, 0.95, 0.81, 0.86, 0.9, 0.87, 0.52)
RESPONSE_RATES = (0.004, 0.011, 0.03, 0.012, 0.01, 0.025, 0.005, 0.012, 0.008)


def _stability() -> pd.DataFrame:
    mean = np.array(STABILITY)
    return pd.DataFrame(
        {
            "segment": [str(s) for s in range(K)],
            "jaccard_mean": mean,
            "jaccard_low": mean - 0.08,
            "jaccard_high": np.minimum(mean + 0.04, 1.0),
            "stability": ["stable" if m >= 0.85 else "fuzzy" if m >= 0.6 else "unstable" for m in mean],
        }
    )


def _response(mailout: np.ndarray) -> pd.DataFrame:
    responses = np.round(mailout * np.array(RESPONSE_RATES)).astype(int)
    low, high = wilson_interval(responses, mailout)
    return pd.DataFrame(
        {
            "mailout_count": mailout,
            "mailout_responses": responses,
            "response_rate": responses / mailout,
            "response_ci_low": low,
            "response_ci_high": high,
        }
    )


def _elbow() -> pd.DataFrame:
    k = np.arange(2, 16)
    sse = 1.8e6 * (0.55 + 0.9 / k) - np.where(k >= K, 6e4, 0)
    silhouette = 0.11 + 0.035 * np.exp(-(((k - K) / 2.5) ** 2))
    stability = np.clip(0.95 - 0.03 * (k - 2), 0, 1)
    return pd.DataFrame(
        {"k": k, "sse": sse, "silhouette": silhouette, "recommended": k == K, "stability": stability}
    )
