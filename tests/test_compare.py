import numpy as np
import pandas as pd
import pytest

from segmentation.compare import COLUMNS, compare_proportions

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
