"""The response model: save/load without code execution, cross-validation against the Bayes limit, ranking,
the submission and bad responses. The job's end-to-end response stage is at the end (slow)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from segmentation.io import InputError
from segmentation.response import (
    BOOSTER_FILE,
    ResponseModel,
    cross_validate,
    rank_scores,
    read_responses,
    submission,
)

REAL_MAILOUT_ROWS = 42_962


def planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A mail-out like the generator's: 4 segments with rates proportional to a lift, 3 ordinal attributes with
    a logistic effect, 40 noise columns, 10% of the attribute cells missing, ~1.2% responding. As in the
    generator, the probability is a function of what the file shows (a missing attribute counts as 0, the
    middle of its scale), so its AUC is the Bayes limit of a model of these columns; the segment columns (the
    job's membership) are never missing. Returns (X, y, segment, lift, probability)."""
    rng = np.random.default_rng(seed)
    lift = np.array([2.5, 1.0, 0.2, 1.0])
    segment = rng.integers(0, 4, n)
    attributes = np.hstack([rng.integers(0, 7, (n, 3)) / 3 - 1, rng.standard_normal((n, 40))])
    attributes[rng.random(attributes.shape) < 0.1] = np.nan
    shown = np.nan_to_num(attributes[:, :3], nan=0.0)
    linear = np.log(lift)[segment] - 5.2 + shown @ np.array([1.0, -1.1, 0.9])
    probability = 1 / (1 + np.exp(-linear))
    y = (rng.random(n) < probability).astype(np.int8)
    X = np.hstack([attributes, np.eye(4)[segment]]).astype("float32")
    return X, y, segment, lift, probability


@pytest.fixture(scope="module")
def fitted():
    X, y, *_ = planted(6_000)
    return ResponseModel(num_boost_round=60).fit(X, y), X


def test_round_trip_gives_identical_scores(fitted, tmp_path):
    model, X = fitted
    model.save(tmp_path / "response")
    loaded = ResponseModel.load(tmp_path / "response")
    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert (tmp_path / "response" / BOOSTER_FILE).read_text().startswith("tree\n")
    assert (
        loaded.feature_names_ == model.feature_names_ and loaded.scale_pos_weight_ == model.scale_pos_weight_
    )
    assert model.scale_pos_weight_ > 7  # sqrt of ~80 negatives per positive at ~1.2%


class _Payload:
    """Unpickling this would create a file: the proof that loading never unpickles."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_executes_a_pickle(fitted, tmp_path):
    model, _ = fitted
    folder = tmp_path / "response"
    model.save(folder)
    marker = tmp_path / "executed"
    for protocol in (0, pickle.HIGHEST_PROTOCOL):  # protocol 0 is plain ASCII text, so it decodes as UTF-8
        (folder / BOOSTER_FILE).write_bytes(pickle.dumps(_Payload(str(marker)), protocol=protocol))
        with pytest.raises(ValueError, match="not a"):
            ResponseModel.load(folder)
        assert not marker.exists()


def test_loading_refuses_a_mismatched_or_foreign_description(fitted, tmp_path):
    model, _ = fitted
    folder = tmp_path / "response"
    model.save(folder)
    description = json.loads((folder / "response_model.json").read_text())
    (folder / "response_model.json").write_text(json.dumps({**description, "format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        ResponseModel.load(folder)
    (folder / "response_model.json").write_text(json.dumps({**description, "feature_names": ["a", "b"]}))
    with pytest.raises(ValueError, match="different features"):
        ResponseModel.load(folder)
    with pytest.raises(FileNotFoundError, match="not a saved response model"):
        ResponseModel.load(tmp_path / "nothing")


def test_cross_validated_auc_is_within_reach_of_the_bayes_limit():
    X, y, segment, lift, probability = planted(REAL_MAILOUT_ROWS)
    bayes = roc_auc_score(y, probability)
    result = cross_validate(X, y, segment, lift, folds=5, seed=0)
    model, rate, by_lift = result["model"], result["segment_rate"], result["segment_lift"]
    assert len(model["roc_auc"]["folds"]) == 5 and model["roc_auc"]["std"] > 0
    # The acceptance at the real mail-out size. Measured (492 responses): Bayes 0.813, model 0.803 (fold
    # spread 0.020), segment rate 0.695; seeds 1-3 of planted(): 0.009, 0.006, 0.011 below Bayes. The former
    # settings (7-leaf trees on half the features and 80% of the rows) missed it: 0.792 (seeds 1-3: 0.013,
    # 0.011, 0.024 below). The job's features at this size: benchmarks/bench_response.py.
    assert model["roc_auc"]["mean"] >= bayes - 0.02
    assert model["roc_auc"]["mean"] > rate["roc_auc"]["mean"] + 0.05  # individual attributes matter
    assert by_lift["roc_auc"]["mean"] == pytest.approx(rate["roc_auc"]["mean"], abs=0.02)  # same ranking, ~
    assert 0 < model["pr_auc"]["mean"] < 1 and model["seconds_per_fold"] > 0


def test_rank_scores_orders_by_probability_then_lift_then_lnr():
    scores = pd.DataFrame(
        {
            "LNR": [10, 11, 12, 13, 14],
            "table": "mailout_test",
            "segment": ["0", "1", "1", "insufficient_data", "0"],
            "probability": [0.2, 0.2, 0.2, np.nan, 0.5],
        }
    )
    ranked = rank_scores(scores, {"0": 0.5, "1": 2.0})
    assert list(ranked.columns) == ["LNR", "segment", "probability", "rank"]
    assert ranked["LNR"].tolist() == [14, 11, 12, 10] and ranked["rank"].tolist() == [1, 2, 3, 4]
    rows_in = len(scores)
    assert rows_in == len(ranked) + int(scores["probability"].isna().sum())  # scored + set aside


def test_submission_has_every_row_in_the_leaderboard_format():
    scores = pd.DataFrame({"LNR": [3, 1, 2], "probability": [0.1, np.nan, 0.3]})
    frame = submission(scores, 0.004)
    assert list(frame.columns) == ["LNR", "RESPONSE"] and frame["LNR"].tolist() == [3, 1, 2]
    assert frame["RESPONSE"].tolist() == [0.1, 0.004, 0.3]


def test_read_responses_accepts_0_1_and_names_a_bad_value(tmp_path):
    good = tmp_path / "mailout_train.csv"
    good.write_text("LNR;A;RESPONSE\n5;1;0\n6;2;1.0\n7;;0\n")
    frame = read_responses(str(good), "LNR", "RESPONSE")
    assert frame["LNR"].tolist() == [5, 6, 7] and frame["response"].tolist() == [0, 1, 0]
    for value, shown in (("2", "'2'"), ("", "''"), ("yes", "'yes'")):
        bad = tmp_path / "bad.csv"
        bad.write_text(f"LNR;RESPONSE\n5;0\n6;{value}\n")
        with pytest.raises(
            InputError, match=rf"bad.csv: column RESPONSE, row with LNR=6: value {shown} is not 0 or 1"
        ):
            read_responses(str(bad), "LNR", "RESPONSE")
    parquet = tmp_path / "train.parquet"
    pd.DataFrame({"LNR": [1, 2], "RESPONSE": [1, 0]}).to_parquet(parquet)
    assert read_responses(str(parquet), "LNR", "RESPONSE")["response"].tolist() == [1, 0]


# ------------------------------------------------------------------------------ the job, end to end


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from segmentation.config import load_job
    from segmentation.job import run_job
    from segmentation.synth import generate

    data = tmp_path_factory.mktemp("data")
    generate(data, rows=4_000, customers_rows=1_000, mailout_rows=MAILOUT_ROWS, seed=7, processes=1)
    profile = data / "local.yml"
    profile.write_text(
        "kind: local\nn_workers: 2\nthreads_per_worker: 1\nmemory_limit: 2GiB\ndashboard_address: 127.0.0.1:0\n"
    )
    inputs = {
        f"inputs.{t}": str(data / f"{t}.csv")
        for t in ("population", "customers", "mailout_train", "mailout_test")
    }
    config = load_job(
        None,
        {
            **inputs,
            "output": str(data / "run"),
            "cluster": str(profile),
            "seed": 7,
            "kmeans.k": 8,
            "report": False,
        },
    )
    return data, run_job(config)


MAILOUT_ROWS = 8_000


def _truth(data, table: str) -> pd.DataFrame:
    return pd.read_csv(data / "truth" / f"{table}.csv", sep=";")


@pytest.mark.slow
def test_job_response_per_segment(job):
    data, result = job
    proportions, response = result.proportions, result.run["response"]
    train = pd.read_csv(data / "mailout_train.csv", sep=";", usecols=["LNR", "RESPONSE"])
    assert proportions["mailout_count"].sum() == len(train) == response["mailout_train"]["rows"]
    assert proportions["mailout_responses"].sum() == train["RESPONSE"].sum()
    assert (proportions["response_ci_low"] <= proportions["response_rate"]).all()
    assert response["rate_test"]["p_value"] < 0.01  # the planted rates differ 18-fold between segments


@pytest.mark.slow
def test_job_model_is_within_reach_of_the_bayes_limit(job):
    data, result = job
    cv = result.run["response"]["cross_validation"]
    every = pd.read_parquet(Path(result.output) / "response_scores")
    assigned = every[(every["table"] == "mailout_train") & every["probability"].notna()]
    train = _truth(data, "mailout_train").merge(assigned[["LNR"]], on="LNR")  # the rows the model saw
    assert len(train) == result.run["response"]["model"]["rows"]
    # Only the real size meets Bayes - 0.02 (0.016 below on the job's features, two generated mail-outs:
    # benchmarks/bench_response.py; the stand-in at that size: the test above). Here, 7,054 assigned rows
    # and 81 responses: Bayes 0.817 on them, model 0.698 (fold spread 0.057), segment rate 0.714, lift 0.721;
    # mail-out test AUC 0.691 against Bayes 0.790 on its scored rows, top decile 3.1x the base rate. The
    # tolerance: 16 draws of 7,054 rows from the real-size mail-outs put the model 0.101 below Bayes on
    # average (spread 0.031, worst 0.157); 0.18 is this fixture's 0.119 plus two spreads, room for other
    # library versions, while scores not aligned with their rows (AUC ~0.5) fail.
    bayes = roc_auc_score(train["response"], train["probability"])
    assert cv["model"]["roc_auc"]["mean"] >= bayes - 0.18
    assert cv["model"]["roc_auc"]["mean"] >= cv["segment_lift"]["roc_auc"]["mean"] - 0.05
    ranked = pd.read_parquet(Path(result.output) / "mailout_scores.parquet")
    scores = ranked.merge(_truth(data, "mailout_test"), on="LNR", suffixes=("", "_planted"))
    bayes_test = roc_auc_score(scores["response"], scores["probability_planted"])
    assert roc_auc_score(scores["response"], scores["probability"]) >= bayes_test - 0.18
    top = scores[scores["rank"] <= len(scores) // 10]
    assert top["response"].mean() >= 2 * scores["response"].mean()


@pytest.mark.slow
def test_job_outputs_account_for_every_mailout_row(job):
    data, result = job
    run = Path(result.output)
    rows = result.run["rows"]["mailout_test"]
    accounted = result.run["response"]["scores"]["mailout_test"]
    assert accounted == {"rows": rows["read"], "scored": rows["assigned"], "set_aside": rows["set_aside"]}
    ranked = pd.read_parquet(run / "mailout_scores.parquet")
    assert list(ranked.columns) == ["LNR", "segment", "probability", "rank"]
    assert len(ranked) + accounted["set_aside"] == rows["read"]  # rows in = rows scored + set aside
    assert (
        ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
        and ranked["probability"].is_monotonic_decreasing
    )
    sent = pd.read_csv(run / "submission.csv")
    assert list(sent.columns) == ["LNR", "RESPONSE"] and sent["RESPONSE"].notna().all()
    assert sorted(sent["LNR"]) == sorted(_truth(data, "mailout_test")["LNR"])
    every = pd.read_parquet(run / "response_scores")
    assert every.groupby("table").size().to_dict() == {
        t: result.run["rows"][t]["read"] for t in ("population", "mailout_train", "mailout_test")
    }


@pytest.mark.slow
def test_saved_model_scores_any_file_identically(job, tmp_path):
    from segmentation.response import score_file
    from segmentation.target import write_targets

    data, result = job
    run = Path(result.output)
    rows = score_file(str(run / "model"), str(data / "mailout_test.csv"), str(tmp_path / "scores.parquet"))
    again = pd.read_parquet(tmp_path / "scores.parquet")
    expected = pd.read_parquet(run / "mailout_scores.parquet")
    pd.testing.assert_frame_equal(again, expected, check_dtype=False)  # same probabilities, bit for bit
    assert rows["scored"] == len(expected)
    targets = pd.read_parquet(write_targets(run)[0])
    assert targets["probability"].is_monotonic_decreasing and set(targets["table"]) >= {
        "population",
        "mailout_test",
    }
