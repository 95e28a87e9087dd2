"""Ranked target lists from a fake run folder: accounting, order, lift, atomic writes."""

from __future__ import annotations

import json

import dask
import dask.dataframe as dd
import pandas as pd
import pytest

from segmentation.target import rank_targets, segment_lift, write_targets
from tests.fake_run import write_fake_run


@pytest.fixture(autouse=True)
def synchronous_scheduler():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_fake_run(tmp_path_factory.mktemp("targets") / "run")


@pytest.fixture(scope="module")
def written(run_dir):
    with dask.config.set(scheduler="synchronous"):
        return write_targets(run_dir, top_n=50)


@pytest.fixture(scope="module")
def targets(written):
    return pd.read_parquet(written[0])


@pytest.fixture(scope="module")
def assignments(run_dir):
    return pd.read_parquet(run_dir / "assignments")


@pytest.fixture(scope="module")
def proportions(run_dir):
    return pd.read_csv(run_dir / "proportions.csv", dtype={"segment": str})


def test_files_are_written_without_leftovers(run_dir, written):
    assert written == (run_dir / "targets.parquet", run_dir / "targets_top.csv")
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_every_assigned_population_row_appears_exactly_once(run_dir, targets, assignments):
    run = json.loads((run_dir / "run.json").read_text())
    population = targets[targets["table"] == "population"]
    assigned = assignments[
        (assignments["table"] == "population") & (assignments["segment"] != "insufficient_data")
    ]
    assert population["LNR"].is_unique
    assert sorted(population["LNR"]) == sorted(assigned["LNR"])
    assert len(population) == run["rows"]["population"]["assigned"]


def test_only_requested_tables_that_exist_are_ranked(targets, assignments):
    mailout = assignments[
        (assignments["table"] == "mailout_train") & (assignments["segment"] != "insufficient_data")
    ]
    assert set(targets["table"]) == {"population", "mailout_train"}  # no customers; mailout_test absent
    assert (targets["table"] == "mailout_train").sum() == len(mailout)
    assert "insufficient_data" not in set(targets["segment"])


def test_columns_and_types(targets):
    assert list(targets.columns) == ["LNR", "table", "segment", "lift"]
    assert targets["LNR"].dtype == "int64" and targets["lift"].dtype == "float64"


def test_ranked_by_lift_then_lnr(targets):
    assert targets["lift"].is_monotonic_decreasing
    for _, group in targets.groupby("lift"):
        keys = list(zip(group["LNR"], group["table"], strict=True))
        assert keys == sorted(keys)


def test_lift_is_the_segment_ratio(targets, proportions):
    ratio = proportions.set_index("segment")["ratio"]
    assert targets["lift"].to_numpy() == pytest.approx(targets["segment"].map(ratio).to_numpy())
    assert targets["segment"].iloc[0] == proportions.loc[proportions["ratio"].iloc[:-1].idxmax(), "segment"]


def test_top_csv_is_the_head_of_the_ranking(written, targets):
    top = pd.read_csv(written[1], dtype={"segment": str, "table": str})
    assert len(top) == 50
    expected = targets.head(50).astype({"table": object, "segment": object})
    pd.testing.assert_frame_equal(top, expected, check_dtype=False)


def test_insufficient_data_rows_are_counted_as_left_out(run_dir, proportions):
    frame = dd.read_parquet(run_dir / "assignments")
    ranked, left_out = rank_targets(frame, segment_lift(proportions), ["population", "customers"])
    run = json.loads((run_dir / "run.json").read_text())
    for table in ("population", "customers"):
        assert left_out[table] == run["rows"][table]["set_aside"]
        assert (ranked["table"] == table).sum() == run["rows"][table]["assigned"]


def _frame(rows: list[tuple[int, str, str]]) -> dd.DataFrame:
    return dd.from_pandas(pd.DataFrame(rows, columns=["LNR", "table", "segment"]), npartitions=2)


def test_ties_are_broken_by_lnr_across_tables():
    frame = _frame(
        [(5, "population", "1"), (3, "mailout_train", "1"), (3, "population", "1"), (9, "population", "0")]
    )
    ranked, _ = rank_targets(frame, {"0": 2.0, "1": 0.5}, ["population", "mailout_train"])
    assert list(zip(ranked["LNR"], ranked["table"], strict=True)) == [
        (9, "population"),
        (3, "mailout_train"),
        (3, "population"),
        (5, "population"),
    ]


def test_a_segment_without_a_ratio_is_an_error():
    with pytest.raises(ValueError, match=r"segment\(s\) 7 that proportions.csv has no ratio for"):
        rank_targets(_frame([(1, "population", "7"), (2, "population", "0")]), {"0": 1.0}, ["population"])


def test_a_row_listed_twice_is_an_error():
    with pytest.raises(ValueError, match="more than once"):
        rank_targets(_frame([(1, "population", "0"), (1, "population", "0")]), {"0": 1.0}, ["population"])


def test_hive_partitioned_assignments_give_the_same_list(tmp_path, run_dir, targets, assignments):
    other = tmp_path / "run"
    other.mkdir()
    (other / "proportions.csv").write_bytes((run_dir / "proportions.csv").read_bytes())
    assignments.to_parquet(other / "assignments", partition_cols=["table"], index=False)
    parquet_path, _ = write_targets(other)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet_path), targets, check_dtype=False)


def test_a_failed_write_leaves_neither_file(tmp_path, run_dir, monkeypatch):
    other = tmp_path / "run"
    other.mkdir()
    (other / "proportions.csv").write_bytes((run_dir / "proportions.csv").read_bytes())
    pd.read_parquet(run_dir / "assignments").to_parquet(other / "assignments.parquet")
    (other / "assignments").mkdir()
    (other / "assignments.parquet").rename(other / "assignments" / "part.0.parquet")

    def failing_csv(self, path, **kwargs):
        with open(path, "w") as handle:
            handle.write("LNR,table\n1,")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_csv)
    with pytest.raises(OSError, match="disk full"):
        write_targets(other)
    assert sorted(p.name for p in other.iterdir()) == ["assignments", "proportions.csv"]


def test_ranked_by_predicted_response_then_lift_then_lnr():
    rows = [
        (5, "population", "1", 0.02),
        (3, "mailout_train", "0", 0.02),
        (4, "population", "1", 0.02),
        (9, "population", "0", 0.01),
        (7, "population", "insufficient_data", float("nan")),
    ]
    frame = dd.from_pandas(
        pd.DataFrame(rows, columns=["LNR", "table", "segment", "probability"]), npartitions=2
    )
    ranked, left_out = rank_targets(frame, {"0": 2.0, "1": 0.5}, ["population", "mailout_train"])
    assert list(ranked.columns) == ["LNR", "table", "segment", "lift", "probability"]
    # 0.02 ties: segment 0 (lift 2.0) first, then LNR 4 before 5; the lower probability last, whatever its lift.
    assert ranked["LNR"].tolist() == [3, 4, 5, 9]
    assert left_out["population"] == 1


def test_write_targets_uses_response_scores_when_present(tmp_path, run_dir, assignments):
    other = tmp_path / "run"
    other.mkdir()
    (other / "proportions.csv").write_bytes((run_dir / "proportions.csv").read_bytes())
    scores = assignments.assign(probability=(assignments["LNR"] % 97) / 970.0)
    scores.loc[scores["segment"] == "insufficient_data", "probability"] = float("nan")
    (other / "response_scores").mkdir()
    scores.to_parquet(other / "response_scores" / "population-00000.parquet", index=False)
    ranked = pd.read_parquet(write_targets(other)[0])
    assert ranked["probability"].is_monotonic_decreasing
    kept = scores[
        (scores["segment"] != "insufficient_data") & scores["table"].isin(["population", "mailout_train"])
    ]
    assert len(ranked) == len(kept) and not ranked.duplicated(["table", "LNR"]).any()
