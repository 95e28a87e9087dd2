"""End to end on generated Arvato-shaped data: planted truth, row accounting, and scikit-learn as the oracle."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import psutil
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from segmentation.assign import assign_file
from segmentation.config import load_job
from segmentation.job import run_job
from segmentation.model import INSUFFICIENT
from segmentation.schema import load_schema
from segmentation.synth import generate

pytestmark = pytest.mark.slow

POPULATION, CUSTOMERS, SEGMENTS, SEED = 12_000, 3_000, 8, 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(out, rows=POPULATION, customers_rows=CUSTOMERS, mailout_rows=600, segments=SEGMENTS, seed=SEED)
    return out


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("profile") / "local.yml"
    path.write_text(
        "kind: local\nn_workers: 2\nthreads_per_worker: 1\nmemory_limit: 2GiB\n"
        "dashboard_address: 127.0.0.1:0\n"
    )
    return path


@pytest.fixture(scope="module")
def run(dataset, profile, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    config = load_job(
        None,
        {
            "inputs.population": str(dataset / "population.csv"),
            "inputs.customers": str(dataset / "customers.csv"),
            "inputs.mailout_train": str(dataset / "mailout_train.csv"),
            "output": str(out),
            "cluster": str(profile),
            "seed": SEED,
            "kmeans.k_min": 6,
            "kmeans.k_max": 10,
            "kmeans.k": SEGMENTS,
            "kmeans.elbow": True,
        },
    )
    return run_job(config)


def truth(dataset, table: str) -> pd.DataFrame:
    return pd.read_csv(dataset / "truth" / f"{table}.csv", sep=";").rename(columns={"segment": "planted"})


def assignments(run) -> pd.DataFrame:
    return pd.read_parquet(f"{run.output}/assignments")


def sklearn_notebook_pipeline(dataset, run):
    """The plain notebook pipeline on the same rows: impute, scale, PCA, KMeans(n_init=10)."""
    schema = load_schema()
    frame = pd.read_csv(dataset / "population.csv", sep=";", low_memory=False)
    model_dir = f"{run.output}/model/model.json"
    kept = json.loads(open(model_dir).read())["cleaner"]["kept_columns"]
    numeric = [c for c in kept if schema[c].kind in ("ordinal", "numeric")]
    values = frame[numeric].astype("float64")
    for column in numeric:
        unknown = [float(c) for c in schema[column].unknown_codes if c.lstrip("-").isdigit()]
        values[column] = values[column].where(~values[column].isin(unknown))
    keep = values.isna().mean(axis=1) <= 0.5
    scaled = StandardScaler().fit_transform(SimpleImputer(strategy="median").fit_transform(values[keep]))
    reduced = PCA(n_components=0.9, svd_solver="full").fit_transform(scaled)
    labels = KMeans(n_clusters=SEGMENTS, n_init=10, random_state=0).fit_predict(reduced)
    return frame.loc[keep, "LNR"].to_numpy(), labels


def test_rows_in_equal_rows_assigned_plus_set_aside(run, dataset):
    found = assignments(run)
    recorded = json.loads(open(f"{run.output}/run.json").read())["rows"]
    for table, expected in (("population", POPULATION), ("customers", CUSTOMERS), ("mailout_train", 600)):
        rows = found[found["table"] == table]
        assert len(rows) == expected == recorded[table]["read"]
        assert rows["LNR"].is_unique
        aside = int((rows["segment"] == INSUFFICIENT).sum())
        assert recorded[table]["set_aside"] == aside > 0
        assert recorded[table]["assigned"] == expected - aside
    proportions = run.proportions.set_index("segment")
    assert proportions["population_count"].sum() == POPULATION
    assert proportions["customers_count"].sum() == CUSTOMERS
    assert proportions.loc[INSUFFICIENT, "population_count"] == recorded["population"]["set_aside"]


def test_segments_recover_the_planted_truth(run, dataset):
    found = assignments(run).query("table == 'population' and segment != @INSUFFICIENT")
    merged = found.merge(truth(dataset, "population"), on="LNR")
    ours = adjusted_rand_score(merged["planted"], merged["segment"])
    lnr, labels = sklearn_notebook_pipeline(dataset, run)
    reference = pd.DataFrame({"LNR": lnr, "label": labels}).merge(truth(dataset, "population"), on="LNR")
    oracle = adjusted_rand_score(reference["planted"], reference["label"])
    print(f"ARI ours {ours:.3f}, scikit-learn notebook pipeline {oracle:.3f}")
    assert ours >= 0.9 or ours >= oracle - 0.01


def test_planted_over_and_under_representation_recovered(run, dataset):
    planted = json.loads((dataset / "truth" / "planted.json").read_text())
    found = assignments(run).query("table == 'population' and segment != @INSUFFICIENT")
    merged = found.merge(truth(dataset, "population"), on="LNR")
    # each found segment stands for the planted segment most of its rows come from
    majority = merged.groupby("segment")["planted"].agg(lambda s: s.mode()[0])
    proportions = run.proportions.set_index("segment")
    for segment, planted_segment in majority.items():
        expected = planted["representation"][int(planted_segment)]
        if expected in ("over", "under"):
            assert proportions.loc[segment, "representation"] == expected, (segment, planted_segment)


def test_run_folder_is_complete(run):
    from pathlib import Path

    folder = Path(run.output)
    for name in (
        "run.json",
        "proportions.csv",
        "profiles.csv",
        "elbow.csv",
        "pca.csv",
        "pca_loadings.csv",
        "quality/columns.csv",
        "quality/rows.csv",
        "model/model.json",
        "performance_report.html",
        "report.html",
        "Customer Segmentation Report.pdf",
        "targets.parquet",
        "targets_top.csv",
    ):
        assert (folder / name).exists(), name
    assert not list(folder.parent.glob(".*tmp*")), "no temporary folders left behind"
    recorded = json.loads((folder / "run.json").read_text())
    assert set(recorded["timings"]) >= {"read", "clean", "scale", "reduce", "cluster", "assign"}
    assert recorded["peak_worker_memory"] > 0
    assert recorded["cluster"]["dashboard"].startswith("http://127.0.0.1:")
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pickle"))


def test_saved_model_assigns_a_new_file_like_the_run(run, dataset, tmp_path):
    out = tmp_path / "mailout.parquet"
    counts = assign_file(
        f"{run.output}/model", str(dataset / "mailout_train.csv"), str(out), table="mailout_train"
    )
    again = pd.read_parquet(out).sort_values("LNR").reset_index(drop=True)
    original = assignments(run).query("table == 'mailout_train'").sort_values("LNR").reset_index(drop=True)
    assert again["segment"].tolist() == original["segment"].tolist()
    assert int(counts.sum()) == 600


def test_cli_exit_codes(dataset, tmp_path):
    bad = tmp_path / "comma.csv"
    pd.read_csv(dataset / "customers.csv", sep=";", nrows=20, low_memory=False).to_csv(bad, index=False)
    command = [
        sys.executable,
        "-m",
        "segmentation.cli",
        "run",
        "--population",
        str(bad),
        "--customers",
        str(dataset / "customers.csv"),
        "--out",
        str(tmp_path / "never"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "comma.csv: reads as a single column" in result.stderr
    assert not (tmp_path / "never").exists()
    job = tmp_path / "job.yml"
    job.write_text("inputs: {population: a.csv, customers: b.csv}\nkmeans: {kk: 3}\n")
    result = subprocess.run(
        [sys.executable, "-m", "segmentation.cli", "run", str(job)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown key 'kk' (did you mean 'k'?)" in result.stderr


def test_another_vendors_schema_end_to_end(other_vendor_files, profile, tmp_path):
    """The whole job on a different attributes file: nothing Arvato-specific is assumed."""
    config = load_job(
        None,
        {
            "inputs.population": str(other_vendor_files / "population.csv"),
            "inputs.customers": str(other_vendor_files / "customers.csv"),
            "attributes": str(other_vendor_files / "attributes.csv"),
            "output": str(tmp_path / "other"),
            "cluster": str(profile),
            "kmeans.k_min": 2,
            "kmeans.k_max": 4,
            "report": False,
        },
    )
    result = run_job(config)
    recorded = result.run
    assert recorded["rows"]["population"]["read"] == 3000 and recorded["rows"]["customers"]["read"] == 800
    assert recorded["clustering"]["k"] == recorded["clustering"]["k_recommended"] in (2, 3, 4)
    found = pd.read_parquet(f"{result.output}/assignments")
    assert len(found) == 3800
    profiles = pd.read_csv(f"{result.output}/profiles.csv")
    assert "LIFESTAGE_WEALTH" in set(profiles["attribute"]) and "REGION=N" in set(profiles["attribute"])


def test_loader_reads_generated_files_without_warnings(dataset):
    import warnings

    from segmentation.io import read_table

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_table(dataset / "customers.csv", load_schema(), "customers")
        frame = table.frame.compute(scheduler="sync")
    assert len(frame) == CUSTOMERS and int(table.invalid_counts.compute(scheduler="sync").sum()) == 0
    assert str(frame["CAMEO_INTL_2015"].dtype) == "category"


def test_elbow_command_reports_sse_silhouette_and_a_recommendation(dataset, profile, capsys):
    from segmentation.cli import main

    code = main(["elbow", "--population", str(dataset / "population.csv"), "--customers",
                 str(dataset / "customers.csv"), "--cluster", str(profile), "--k-min", "2", "--k-max", "12"])  # fmt: skip
    output = capsys.readouterr().out
    assert code == 0
    lines = [line.split() for line in output.splitlines() if line.strip()[:2].strip().isdigit()]
    ks = [int(line[0]) for line in lines]
    sse = [float(line[1]) for line in lines]
    assert ks == list(range(2, 13)) and sse == sorted(sse, reverse=True)
    flagged = [int(line[0]) for line in lines if line[3] == "True"]
    assert len(flagged) == 1 and f"recommended k: {flagged[0]}" in output


def test_missing_attributes_file_is_a_configuration_error(dataset, tmp_path):
    command = [sys.executable, "-m", "segmentation.cli", "run", "--population", str(dataset / "population.csv"),
               "--customers", str(dataset / "customers.csv"), "--attributes", str(tmp_path / "nope.csv"),
               "--out", str(tmp_path / "never")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "nope.csv: attributes file not found" in result.stderr
    assert not (tmp_path / "never").exists()


def test_bytes_brought_to_the_client_do_not_grow_with_rows(profile, tmp_path):
    """run.json's stage_costs at two population sizes (x4): every stage brings the client the same bytes,
    except the project stage, which gathers the seeding sample (all kept rows up to 100,000 here)."""
    costs = {}
    for rows in (3_000, 12_000):
        data = tmp_path / f"data-{rows}"
        generate(data, rows=rows, customers_rows=1_000, mailout_rows=300, segments=4, seed=SEED)
        config = load_job(None, {
            "inputs.population": str(data / "population.csv"), "inputs.customers": str(data / "customers.csv"),
            "inputs.mailout_train": str(data / "mailout_train.csv"), "output": str(tmp_path / f"run-{rows}"),
            "cluster": str(profile), "seed": SEED, "clustering.k": 4, "report": False,
        })  # fmt: skip
        result = run_job(config)
        kept, components = result.run["rows"]["population"]["assigned"], result.run["pca"]["n_components"]
        costs[rows] = (result.run["stage_costs"], kept * components * 4)
    (small, small_sample), (large, large_sample) = costs[3_000], costs[12_000]
    assert set(small) >= {"read", "scale", "reduce", "project", "cluster", "assign", "response"}
    for stage in small:
        assert small[stage]["tasks"] > 0 or stage in ("clean", "compare", "describe", "write")
        grown = large[stage]["client_bytes"] - small[stage]["client_bytes"]
        if stage == "project":
            assert grown == pytest.approx(large_sample - small_sample, rel=0.05)
        else:
            assert grown <= 0.1 * small[stage]["client_bytes"] + 20_000, (stage, small[stage], large[stage])
    if sys.platform == "linux":  # the kernel counts each process's storage bytes
        for stage_costs in [*small.values(), *large.values()]:
            assert stage_costs["disk_read_bytes"] >= 0 and stage_costs["disk_write_bytes"] >= 0
        if not _in_memory_filesystem(tmp_path):  # the coded blocks reach the disk (tmpfs keeps them in RAM)
            assert large["read"]["disk_write_bytes"] > small["read"]["disk_write_bytes"] > 0


def _in_memory_filesystem(path) -> bool:
    mounts = [p for p in psutil.disk_partitions(all=True) if str(path).startswith(p.mountpoint)]
    return max(mounts, key=lambda p: len(p.mountpoint)).fstype in ("tmpfs", "ramfs")
