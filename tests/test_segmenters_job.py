"""End to end with ``clustering.algorithm: gmm`` and ``bisecting`` on generated data: planted segments
recovered, run.json's ``clustering`` block, the gmm membership probability, the model reloaded."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation.config import load_job
from segmentation.job import run_job
from segmentation.model import INSUFFICIENT, SegmentationModel
from segmentation.synth import generate

pytestmark = pytest.mark.slow

POPULATION, CUSTOMERS, SEGMENTS, SEED = 3_000, 800, 4, 11


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, rows=POPULATION, customers_rows=CUSTOMERS, mailout_rows=0, segments=SEGMENTS, seed=SEED)
    return out


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "local.yml"
    path.write_text(
        "kind: local\nn_workers: 1\nthreads_per_worker: 2\nmemory_limit: 2GiB\ndashboard_address: 127.0.0.1:0\n"
    )
    return path


@pytest.mark.parametrize(
    ("algorithm", "options"), [("gmm", {"clustering.covariance_type": "diag"}), ("bisecting", {})]
)
def test_job_recovers_the_planted_segments(dataset, profile, tmp_path, algorithm, options):
    config = load_job(
        None,
        {
            "inputs.population": str(dataset / "population.csv"),
            "inputs.customers": str(dataset / "customers.csv"),
            "output": str(tmp_path / algorithm),
            "cluster": str(profile),
            "seed": SEED,
            "blocksize": 1_000_000,
            "report": False,
            "clustering.algorithm": algorithm,
            "clustering.k": SEGMENTS,
            **options,
        },
    )
    result = run_job(config)
    recorded = json.loads((tmp_path / algorithm / "run.json").read_text())["clustering"]
    assert recorded["algorithm"] == algorithm and recorded["k"] == SEGMENTS
    assert recorded["how_k_was_chosen"] == "given"
    assert recorded["objective"] == ("log_likelihood" if algorithm == "gmm" else "sse")
    assert recorded["score"] == pytest.approx(result.model.segmenter.score_)
    found = pd.read_parquet(tmp_path / algorithm / "assignments").query("table == 'population'")
    kept = found[found["segment"] != INSUFFICIENT]
    truth = pd.read_csv(dataset / "truth" / "population.csv", sep=";").rename(columns={"segment": "planted"})
    merged = kept.merge(truth, on="LNR")
    ari = adjusted_rand_score(merged["planted"], merged["segment"])
    print(f"{algorithm}: ARI vs planted segments {ari:.3f}")
    # Bisecting k-means is greedy: a split, once made, is never undone. On these coordinates scikit-learn's
    # BisectingKMeans reaches ARI 0.781 (k-means 0.906); the job refines the leaves by Lloyd (the default).
    assert ari >= 0.85
    if algorithm == "gmm":
        assert "bic" in recorded and "log_likelihood" in recorded
        assert kept["membership_probability"].between(1 / SEGMENTS, 1).all()
        assert found.loc[found["segment"] == INSUFFICIENT, "membership_probability"].isna().all()
    else:
        assert "membership_probability" not in found.columns
        assert len(recorded["tree"]) == SEGMENTS - 1 and recorded["options"]["refine"] is True
    reloaded = SegmentationModel.load(tmp_path / algorithm / "model")
    assert type(reloaded.segmenter) is type(result.model.segmenter)
