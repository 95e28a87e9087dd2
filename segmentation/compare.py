"""The final reduce: segment shares in customers vs population, their ratio, and whether it is real.

For each segment (``insufficient_data`` included) the customer/population share ratio gets a Katz
log-normal 95% confidence interval and a two-sided two-proportion z-test; a segment is flagged ``over`` or
``under`` represented when the test rejects at 5% after a Bonferroni correction over the segments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = [
    "segment",
    "population_count",
    "population_share",
    "customers_count",
    "customers_share",
    "ratio",
    "ratio_ci_low",
    "ratio_ci_high",
    "p_value",
    "representation",
]


def compare_proportions(
    population_counts: pd.Series, customers_counts: pd.Series, segments: list[str], alpha: float = 0.05
) -> pd.DataFrame:
    """Counts per segment in both tables -> the proportions table (columns ``COLUMNS``), in ``segments`` order."""
    population = population_counts.reindex(segments, fill_value=0).astype("int64")
    customers = customers_counts.reindex(segments, fill_value=0).astype("int64")
    n_population, n_customers = int(population.sum()), int(customers.sum())
    if n_population == 0 or n_customers == 0:
        raise ValueError("both tables need at least one row to compare proportions")
    p_pop = population / n_population
    p_cust = customers / n_customers
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = p_cust / p_pop
        log_se = np.sqrt(1 / customers - 1 / n_customers + 1 / population - 1 / n_population)
        z = stats.norm.ppf(0.975)
        low, high = ratio * np.exp(-z * log_se), ratio * np.exp(z * log_se)
        pooled = (population + customers) / (n_population + n_customers)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_population + 1 / n_customers))
        p_value = 2 * stats.norm.sf(np.abs((p_cust - p_pop) / se))
    p_value = pd.Series(np.where(np.isfinite(p_value), p_value, 1.0), index=segments)
    significant = p_value < alpha / len(segments)
    representation = np.where(
        significant & (ratio > 1), "over", np.where(significant & (ratio < 1), "under", "similar")
    )
    return pd.DataFrame(
        {
            "segment": segments,
            "population_count": population.to_numpy(),
            "population_share": p_pop.to_numpy(),
            "customers_count": customers.to_numpy(),
            "customers_share": p_cust.to_numpy(),
            "ratio": ratio.to_numpy(),
            "ratio_ci_low": np.asarray(low),
            "ratio_ci_high": np.asarray(high),
            "p_value": p_value.to_numpy(),
            "representation": representation,
        },
        columns=COLUMNS,
    )
