"""The Python API: the README's snippet as a script, ``run_job``'s result, and scikit-learn's contract for the
fitted steps (``check_estimator``, and a ``Pipeline`` of them agreeing with ``run_job``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from segmentation.clean import Cleaner
from segmentation.cluster import KMeansSegmenter
from segmentation.config import load_job
from segmentation.decompose import GramPCA, IncrementalPCA, TsqrPCA
from segmentation.encode import Encoder
from segmentation.io import read_table
from segmentation.job import run_job
from segmentation.model import INSUFFICIENT, SegmentationModel
from segmentation.scale import ImputeScaler
from segmentation.schema import default_attributes_path, load_schema
from segmentation.synth import generate

README = Path(__file__).resolve().parents[1] / "README.md"
ROWS, CUSTOMERS, SEGMENTS, SEED = 3_000, 800, 4, 0


@parametrize_with_checks([GramPCA(), IncrementalPCA(), TsqrPCA(), KMeansSegmenter()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, rows=ROWS, customers_rows=CUSTOMERS, mailout_rows=0, segments=SEGMENTS, seed=1, processes=1)
    return out


@pytest.fixture(scope="module")
def result(dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("job")
    (folder / "local.yml").write_text(
        "kind: local\nn_workers: 1\nthreads_per_worker: 2\nprocesses: false\ndashboard_address: 127.0.0.1:0\n"
    )
    config = load_job(
        None,
        {
            "inputs.population": str(dataset / "population.csv"),
            "inputs.customers": str(dataset / "customers.csv"),
            "output": str(folder / "runs" / "api"),
            "cluster": str(folder / "local.yml"),
            "kmeans.k": SEGMENTS,
            "seed": SEED,
            "report": False,
        },
    )
    return run_job(config)


def test_run_job_returns_model_assignments_and_proportions(result):
    assert isinstance(result.model, SegmentationModel)
    assert result.model.kmeans.cluster_centers_.shape == (SEGMENTS, result.model.pca.n_components_)
    assert result.assignments == f"{result.output}/assignments"
    assigned = pd.read_parquet(result.assignments)
    assert len(assigned) == ROWS + CUSTOMERS
    population = assigned[assigned["table"] == "population"]["segment"].value_counts()
    assert population.to_dict() == dict(
        zip(result.proportions["segment"], result.proportions["population_count"], strict=True)
    )
    assert "model=" not in repr(result)  # the schema-sized model stays out of the repr


@pytest.mark.slow
def test_pipeline_of_the_steps_agrees_with_run_job(dataset, result):
    frame = read_table(dataset / "population.csv", load_schema(), "population").frame.compute()
    assigned = pd.read_parquet(result.assignments).set_index("LNR")
    job_labels = assigned.loc[frame["LNR"].to_numpy(), "segment"].to_numpy()
    # As the job: column missingness over all rows, and the rows with too little data set aside.
    cleaner = Cleaner(default_attributes_path()).fit(frame)
    aside = cleaner.set_aside(frame)
    np.testing.assert_array_equal(aside, job_labels == INSUFFICIENT)
    kept = frame[~aside]
    pipeline = make_pipeline(
        FrozenEstimator(cleaner),  # fitted above on every row: the pipeline does not refit it
        Encoder(),
        ImputeScaler(),
        GramPCA(n_components=0.9),
        KMeansSegmenter(n_clusters=SEGMENTS, random_state=SEED),
    )
    labels = pipeline.fit_predict(kept)
    assert isinstance(labels, np.ndarray) and labels.shape == (len(kept),)
    np.testing.assert_array_equal(pipeline.predict(kept), labels)
    assert adjusted_rand_score(job_labels[~aside], labels) > 0.9
    assert pipeline[-1].score(pipeline[:-1].transform(kept)) == pytest.approx(-pipeline[-1].sse_, rel=1e-6)
    names = pipeline[:-2].get_feature_names_out()
    assert list(names) == result.model.scaler.feature_names_
    assert pipeline[-2].n_components_ == result.model.pca.n_components_


def readme_python_snippet() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_snippet_runs_as_a_script(dataset, tmp_path):
    """Run as ``python script.py`` (no ``__main__`` guard) on a local cluster of worker *processes*: the
    spawned workers must not run the script again."""
    (tmp_path / "jobs").mkdir()
    (tmp_path / "cluster_config").mkdir()
    (tmp_path / "cluster_config" / "local.yml").write_text(
        "kind: local\nn_workers: 1\nthreads_per_worker: 1\nprocesses: true\nmemory_limit: 2GiB\n"
        "dashboard_address: 127.0.0.1:0\n"
    )
    (tmp_path / "jobs" / "demo.yml").write_text(
        f"inputs:\n  population: {dataset / 'population.csv'}\n  customers: {dataset / 'customers.csv'}\n"
        f"output: runs/demo\ncluster: cluster_config/local.yml\nseed: {SEED}\nreport: false\n"
        f"kmeans:\n  k: {SEGMENTS}\n"
    )
    script = tmp_path / "script.py"
    script.write_text(readme_python_snippet())
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert "bootstrapping phase" not in done.stderr
    assert done.returncode == 0, done.stderr[-2000:]
    assert INSUFFICIENT in done.stdout  # the proportions table was printed
    assert (tmp_path / "runs" / "demo" / "assignments").is_dir()
