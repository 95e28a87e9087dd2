"""The final reduce: segment shares in customers vs population, their ratio, and whether it is real.

For each segment (``insufficient_data`` included) the customer/population share ratio gets a Katz
log-normal 95% confidence interval and a two-sided two-proportion z-test; a segment is flagged ``over`` or
``under`` represented when the test rejects at 5% after a Bonferroni correction over the segments.

With a mail-out that carries its responses, each segment also gets its response rate with a Wilson 95%
interval (``compare_response``; Wilson, not the normal approximation, because rates near 1% in segments of
a few hundred rows put the normal interval below zero), and a chi-square test that the rates differ
(``response_rate_test``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .model import INSUFFICIENT

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


RESPONSE_COLUMNS = [
    "mailout_count",
    "mailout_responses",
    "response_rate",
    "response_ci_low",
    "response_ci_high",
]


def wilson_interval(successes, trials, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, elementwise; NaN where ``trials`` is 0."""
    successes = np.asarray(successes, dtype="float64")
    trials = np.asarray(trials, dtype="float64")
    z = stats.norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = successes / trials
        denominator = 1 + z**2 / trials
        centre = (rate + z**2 / (2 * trials)) / denominator
        half = z / denominator * np.sqrt(rate * (1 - rate) / trials + z**2 / (4 * trials**2))
    # Clipped: at 0 or n successes the bound is exactly 0 or 1, up to rounding (-1e-18).
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def compare_response(segments: pd.Series, responses: pd.Series, order: list[str]) -> pd.DataFrame:
    """Mail-out rows' segments and 0/1 responses (aligned) -> per segment of ``order``: rows, responses,
    rate and its Wilson 95% interval (columns ``RESPONSE_COLUMNS``, indexed by segment)."""
    frame = pd.DataFrame({"segment": np.asarray(segments, dtype=str), "response": np.asarray(responses)})
    grouped = frame.groupby("segment")["response"]
    count = grouped.size().reindex(order, fill_value=0).astype("int64")
    positive = grouped.sum().reindex(order, fill_value=0).astype("int64")
    low, high = wilson_interval(positive, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = positive / count
    return pd.DataFrame(
        {
            "mailout_count": count,
            "mailout_responses": positive,
            "response_rate": rate.astype("float64"),
            "response_ci_low": low,
            "response_ci_high": high,
        },
        index=pd.Index(order, name="segment"),
    )[RESPONSE_COLUMNS]


def response_rate_test(response: pd.DataFrame, exclude: tuple[str, ...] = ()) -> dict:
    """Pearson chi-square test of independence between segment and response over the segments with rows
    (``exclude``: segments left out, e.g. insufficient_data). Returns statistic, dof, p_value and the
    smallest expected count (below 5 the approximation is rough)."""
    kept = response[(response["mailout_count"] > 0) & ~response.index.isin(exclude)]
    table = np.column_stack(
        [kept["mailout_responses"], kept["mailout_count"] - kept["mailout_responses"]]
    ).astype("float64")
    if len(kept) < 2 or (table.sum(axis=0) == 0).any():
        return {"test": "chi-square", "statistic": None, "dof": None, "p_value": None, "min_expected": None}
    statistic, p_value, dof, expected = stats.chi2_contingency(table, correction=False)
    return {
        "test": "chi-square",
        "statistic": float(statistic),
        "dof": int(dof),
        "p_value": float(p_value),
        "min_expected": float(expected.min()),
        "segments": kept.index.tolist(),
    }


def cumulative_gains(responses, scores, points: int = 10) -> dict:
    """Cumulative gains of a ranking: mailing the top ``i / points`` of rows by ``scores`` (ties broken by
    row order) reaches which share of the responses. Returns {"share_mailed", "share_responses",
    "top_decile_lift"} (lists of ``points + 1`` values from 0; the lift is the response rate of the top
    10% over the base rate, NaN without responses)."""
    responses = np.asarray(responses, dtype="float64")
    order = np.argsort(-np.asarray(scores, dtype="float64"), kind="stable")
    captured = np.concatenate([[0.0], np.cumsum(responses[order])])
    total = captured[-1]
    cuts = np.round(np.linspace(0, len(responses), points + 1)).astype(int)
    share = captured[cuts] / total if total else np.full(len(cuts), np.nan)
    top = max(1, int(round(0.1 * len(responses))))
    lift = (captured[top] / top) / (total / len(responses)) if total else float("nan")
    return {
        "share_mailed": (cuts / max(len(responses), 1)).tolist(),
        "share_responses": [float(v) for v in share],
        "top_decile_lift": float(lift),
    }


def row_accounting(read: dict[str, int], counts: dict[str, pd.Series]) -> dict:
    """Per table, from the rows ``read`` and the rows per segment ``counts`` (``insufficient_data`` among
    them): ``{"read", "assigned", "set_aside"}``. Raises RuntimeError unless read = assigned + set aside."""
    rows = {}
    for name, n in read.items():
        aside = int(counts[name].get(INSUFFICIENT, 0))
        assigned = int(counts[name].sum()) - aside
        if assigned + aside != n:
            raise RuntimeError(
                f"row accounting broken for {name}: read {n}, assigned {assigned}, aside {aside}"
            )
        rows[name] = {"read": n, "assigned": assigned, "set_aside": aside}
    return rows
