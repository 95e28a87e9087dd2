"""Segment profiles in the original attributes: each k-means centre mapped back through the inverse PCA and
the inverse scaling, compared with the population in standard deviations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .schema import Schema


def segment_profiles(
    centres_scaled: np.ndarray,
    feature_names: list[str],
    population_mean: np.ndarray,
    population_std: np.ndarray,
    schema: Schema,
) -> pd.DataFrame:
    """One row per segment x feature, ranked within each segment by absolute standardized difference.

    ``centres_scaled`` holds the centres in standardized feature space (the inverse PCA of the k-means
    centres), where a coordinate *is* the difference from the population mean in population standard
    deviations; the inverse scaling gives the value in the attribute's own units.
    """
    rows = []
    for segment, centre in enumerate(np.asarray(centres_scaled, dtype="float64")):
        order = np.argsort(-np.abs(centre), kind="stable")
        rank = np.empty(len(centre), dtype="int64")
        rank[order] = np.arange(1, len(centre) + 1)
        rows.append(
            pd.DataFrame(
                {
                    "segment": str(segment),
                    "attribute": feature_names,
                    "label": [schema.label(f) for f in feature_names],
                    "segment_mean": centre * population_std + population_mean,
                    "population_mean": population_mean,
                    "population_std": population_std,
                    "standardized_difference": centre,
                    "rank": rank,
                }
            )
        )
    profiles = pd.concat(rows, ignore_index=True)
    return profiles.sort_values(["segment", "rank"], key=_segment_key, kind="stable").reset_index(drop=True)


def _segment_key(column: pd.Series) -> pd.Series:
    return column.astype(int) if column.name == "segment" else column
