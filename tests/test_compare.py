import numpy as np
import pandas as pd
import pytest

from segmentation.compare import (
    COLUMNS,
    RESPONSE_COLUMNS,
    compare_proportions,
    compare_response,
    response_rate_test,
    wilson_interval,
)

SEGMENTS = ["0", "1", "2", "insufficient_data"]


def test_shares_ratios_and_flags():
    population = pd.Series({"0": 4000, "1": 4000, "2": 1000, "insufficient_data": 1000})
    customers = pd.Series({"0": 3000, "1": 400, "2": 100, "insufficient_data": 500})
    table = compare_proportions(population, customers, SEGMENTS)
    assert list(table.columns) == COLUMNS
    assert table["segment"].tolist() == SEGMENTS
    np.testing.assert_allclose(table["population_share"], [0.4, 0.4, 0.1, 0.1])
    np.testing.assert_allclose(table["customers_share"], [0.75, 0.1, 0.025, 0.125])
    np.testing.assert_allclose(table["ratio"], [1.875, 0.25, 0.25, 1.25])
    assert table["representation"].tolist() == ["over", "under", "under", "over"]
    assert (table["ratio_ci_low"] < table["ratio"]).all() and (table["ratio"] < table["ratio_ci_high"]).all()
    assert table["population_count"].sum() == 10000 and table["customers_count"].sum() == 4000


def test_no_difference_is_not_flagged():
    population = pd.Series({"0": 500, "1": 500, "2": 0, "insufficient_data": 0})
    customers = pd.Series({"0": 52, "1": 48})
    table = compare_proportions(population, customers, SEGMENTS)
    assert table["representation"].tolist() == ["similar"] * 4
    assert table.loc[0, "ratio_ci_low"] < 1 < table.loc[0, "ratio_ci_high"]
    assert table.loc[2, "p_value"] == 1.0  # an empty segment is never significant


def test_p_value_matches_two_proportion_z_test():
    from scipy import stats

    population = pd.Series({"0": 300, "1": 700})
    customers = pd.Series({"0": 60, "1": 40})
    table = compare_proportions(population, customers, ["0", "1"])
    pooled = 360 / 1100
    z = (0.6 - 0.3) / np.sqrt(pooled * (1 - pooled) * (1 / 1000 + 1 / 100))
    assert table.loc[0, "p_value"] == pytest.approx(2 * stats.norm.sf(z))


def test_empty_table_is_an_error():
    with pytest.raises(ValueError, match="at least one row"):
        compare_proportions(pd.Series({"0": 5}), pd.Series({"0": 0}), ["0"])


def test_wilson_interval_matches_a_hand_computation():
    # 5 of 400, by hand: z^2 = 3.841459, 1 + z^2/400 = 1.0096036, centre = (0.0125 + 0.0048018) / 1.0096036
    # = 0.0171372, half = 1.959964 * sqrt(3.0859375e-5 + 6.00228e-6) / 1.0096036 = 0.0117865.
    low, high = wilson_interval([5], [400])
    assert low[0] == pytest.approx(0.0053507, abs=1e-6) and high[0] == pytest.approx(0.0289237, abs=1e-6)
    # statsmodels' proportion_confint(k, n, method="wilson"), formula written out.
    k, n, z = np.array([0, 3, 50]), np.array([120, 250, 60]), 1.959963984540054
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    low, high = wilson_interval(k, n)
    np.testing.assert_allclose(low, centre - half, rtol=1e-12)
    np.testing.assert_allclose(high, centre + half, rtol=1e-12)
    assert (
        low[0] == pytest.approx(0.0, abs=1e-15) and 0 < high[0] < 0.04
    )  # no responses: still an upper bound
    assert np.isnan(wilson_interval([0], [0])[0][0])


def test_response_by_segment_counts_rates_and_intervals():
    segments = pd.Series(["0"] * 200 + ["1"] * 300 + ["insufficient_data"] * 10)
    responses = pd.Series([1] * 10 + [0] * 190 + [1] * 3 + [0] * 297 + [0] * 10)
    table = compare_response(segments, responses, SEGMENTS)
    assert list(table.columns) == RESPONSE_COLUMNS and table.index.tolist() == SEGMENTS
    assert table["mailout_count"].tolist() == [200, 300, 0, 10]
    assert table["mailout_responses"].tolist() == [10, 3, 0, 0]
    np.testing.assert_allclose(table["response_rate"].iloc[:2], [0.05, 0.01])
    assert np.isnan(table.loc["2", "response_rate"])  # a segment with no mail-out rows has no rate
    inside = (table["response_ci_low"] <= table["response_rate"]) & (
        table["response_rate"] <= table["response_ci_high"]
    )
    assert inside.iloc[[0, 1, 3]].all()


def test_response_rate_test_against_scipy_and_with_no_difference():
    from scipy import stats

    segments = pd.Series(["0"] * 200 + ["1"] * 300)
    responses = pd.Series([1] * 10 + [0] * 190 + [1] * 3 + [0] * 297)
    result = response_rate_test(compare_response(segments, responses, ["0", "1"]))
    z = (0.05 - 0.01) / np.sqrt(13 / 500 * (1 - 13 / 500) * (1 / 200 + 1 / 300))
    assert result["statistic"] == pytest.approx(z**2) and result["dof"] == 1
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(z)) and result["p_value"] < 0.01
    same = compare_response(pd.Series(["0"] * 100 + ["1"] * 100), pd.Series(([1] + [0] * 49) * 4), ["0", "1"])
    assert response_rate_test(same)["p_value"] == pytest.approx(1.0)
    nothing = compare_response(pd.Series(["0", "1"]), pd.Series([0, 0]), ["0", "1"])
    assert response_rate_test(nothing)["p_value"] is None  # no responses at all: nothing to test


def test_cumulative_gains_by_hand():
    from segmentation.compare import cumulative_gains

    # 20 rows, 4 responses; the ranking puts 2 of them in its top 10% (2 rows)
    responses = [1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    gains = cumulative_gains(responses, -np.arange(20), points=4)
    assert gains["share_mailed"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert gains["share_responses"] == [0.0, 0.5, 0.75, 0.75, 1.0]
    assert gains["top_decile_lift"] == pytest.approx((2 / 2) / (4 / 20))
    assert np.isnan(cumulative_gains([0, 0], [1, 2])["top_decile_lift"])


def test_row_accounting_counts_set_aside_rows_and_refuses_lost_rows():
    from segmentation.compare import row_accounting

    counts = {"population": pd.Series({"0": 5, "1": 3, "insufficient_data": 2})}
    assert row_accounting({"population": 10}, counts) == {
        "population": {"read": 10, "assigned": 8, "set_aside": 2}
    }
    with pytest.raises(RuntimeError, match="read 11, assigned 8, aside 2"):
        row_accounting({"population": 11}, counts)
