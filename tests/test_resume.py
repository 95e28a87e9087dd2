"""Resume and cleanup: a run whose client is SIGKILLed in any stage leaves checkpoints that the same command
takes up again, giving the undisturbed run's assignments and proportions; other inputs, another
configuration or ``--fresh`` never reuse them; a successful run leaves nothing beside its run folder and
removes the staging folders of dead runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from segmentation.checkpoint import Checkpoints, checkpoint_key
from segmentation.config import load_job
from segmentation.run_folder import OWNER_FILE, RunFolder, process_owner
from segmentation.synth import generate

ROOT = Path(__file__).resolve().parents[1]
SEGMENTS = 4


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume-data")
    generate(folder, rows=2_500, customers_rows=600, mailout_rows=50, seed=3, processes=1)
    return folder


def write_job(folder: Path, data: Path, name: str = "x") -> Path:
    spec = folder / f"{name}.yml"
    spec.write_text(yaml.safe_dump({
        "inputs": {"population": str(data / "population.csv"), "customers": str(data / "customers.csv")},
        "output": str(folder / "runs" / name), "blocksize": 1_000_000, "kmeans": {"k": SEGMENTS},
        "report": False,
    }))  # fmt: skip
    return spec


def command(spec: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "segmentation.cli", "-q", "run", str(spec), *options]


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def run(spec: Path, *options: str) -> tuple[dict, float]:
    """Run to the end; returns run.json and the seconds taken."""
    started = time.perf_counter()
    done = subprocess.run(
        command(spec, *options), env=environment(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    output = load_job(spec).output
    return json.loads((Path(output) / "run.json").read_text()), time.perf_counter() - started


def kill_when(spec: Path, ready) -> None:
    """Start the run and SIGKILL the client (then what it started) as soon as ``ready(work root)``."""
    work = spec.parent / "runs" / f".{spec.stem}.work"
    process = subprocess.Popen(
        command(spec), env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not ready(work):
            assert process.poll() is None, f"the run ended before the kill: {process.stderr.read()}"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        descendants = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for child in descendants:  # the cluster the client started: killed too, as `kill -9 -PGID` would
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=30)


def markers(work: Path) -> set[str]:
    return {p.stem for p in work.glob("*/*.done")}


def results(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    assignments = pd.read_parquet(run_dir / "assignments")
    assignments = assignments.sort_values(["table", "LNR"], ignore_index=True)
    return assignments, pd.read_csv(run_dir / "proportions.csv")


@pytest.fixture(scope="module")
def undisturbed(data, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("undisturbed")
    spec = write_job(folder, data)
    found, seconds = run(spec)
    print(f"\nundisturbed run: {seconds:.1f} s")
    assert found["resumed"] == []
    assert sorted(p.name for p in (folder / "runs").iterdir()) == ["x"], "nothing beside the run folder"
    return {"run": found, "results": results(folder / "runs" / "x"), "seconds": seconds}


def assert_same_results(run_dir: Path, undisturbed: dict) -> None:
    assignments, proportions = results(run_dir)
    expected_assignments, expected_proportions = undisturbed["results"]
    pd.testing.assert_frame_equal(assignments, expected_assignments)
    pd.testing.assert_frame_equal(proportions, expected_proportions)


def assert_nothing_beside(runs: Path) -> None:
    assert sorted(p.name for p in runs.iterdir()) == ["x"], "no staging or work folder left"


def during_read(work: Path) -> bool:
    return any(work.glob("*/population")) and "read" not in markers(work)


def during_reduce(work: Path) -> bool:
    return "scale" in markers(work)


def during_cluster(work: Path) -> bool:
    return "project" in markers(work)


@pytest.mark.parametrize(
    ("ready", "stages_done", "expected"),
    [
        (during_read, set(), []),
        (during_reduce, {"read", "scale"}, ["read", "scale"]),
        (during_cluster, {"read", "scale", "reduce", "project"}, ["read", "scale", "reduce", "project"]),
    ],
    ids=["read", "reduce", "cluster"],
)
def test_a_killed_run_resumes_after_its_last_completed_stage(
    data, undisturbed, tmp_path, ready, stages_done, expected
):
    spec = write_job(tmp_path, data)
    runs = tmp_path / "runs"
    kill_when(spec, ready)
    assert markers(runs / ".x.work") == stages_done, "killed in the stage meant"
    assert list(runs.glob(".x.tmp-*")), "the killed run's staging folder is left"
    found, seconds = run(spec)
    print(
        f"\nrerun after a kill in {ready.__name__}: {seconds:.1f} s (full run {undisturbed['seconds']:.1f} s)"
    )
    assert found["resumed"] == expected
    assert found["checkpoint_key"] == undisturbed["run"]["checkpoint_key"]
    computed = sum(undisturbed["run"]["timings"][stage] for stage in expected)
    loaded = sum(found["timings"][stage] for stage in expected)
    print(f"stages {expected}: {loaded:.1f} s from checkpoints vs {computed:.1f} s computed")
    assert_same_results(runs / "x", undisturbed)
    assert_nothing_beside(runs)


def test_fresh_does_not_reuse_checkpoints(data, undisturbed, tmp_path):
    """``--fresh`` after a killed run starts over under the same key (another seed giving another key is
    checked without processes in the next test)."""
    spec = write_job(tmp_path, data)
    runs = tmp_path / "runs"
    kill_when(spec, during_cluster)
    found, _ = run(spec, "--fresh")
    assert found["resumed"] == [] and found["checkpoint_key"] == undisturbed["run"]["checkpoint_key"]
    assert_same_results(runs / "x", undisturbed)
    assert_nothing_beside(runs)


def test_the_key_changes_with_an_input_or_the_configuration_only(data, tmp_path):
    spec = write_job(tmp_path, data)
    config = load_job(spec)
    key = checkpoint_key(config, "attributes")
    assert checkpoint_key(config, "attributes") == key
    assert checkpoint_key(config, "other attributes") != key
    for change in ({"seed": 1}, {"sep": ","}, {"strict": True}, {"blocksize": 2_000_000}):
        assert checkpoint_key(load_job(spec, change), "attributes") != key, change
    for change in ({"output": str(tmp_path / "elsewhere")}, {"report": True}):
        assert checkpoint_key(load_job(spec, change), "attributes") == key, change
    copy = tmp_path / "customers.csv"
    copy.write_bytes((data / "customers.csv").read_bytes())
    assert checkpoint_key(load_job(spec, {"inputs.customers": str(copy)}), "attributes") != key
    stat = copy.stat()
    moved = load_job(spec, {"inputs.customers": str(copy)})
    before = checkpoint_key(moved, "attributes")
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched: same bytes, newer
    assert checkpoint_key(moved, "attributes") != before


def test_a_marker_is_trusted_only_when_complete_and_stages_only_without_a_gap(tmp_path):
    checkpoints = Checkpoints(tmp_path / "work", "key")
    checkpoints.mark("read", {"a": 1})
    (tmp_path / "work" / "key" / ".scale.done.tmp").write_text('{"half')  # killed while writing
    checkpoints.mark("reduce")
    assert checkpoints.completed() == ["read"]
    assert checkpoints.payload("read") == {"a": 1}
    assert Checkpoints(tmp_path / "work", "key", fresh=True).completed() == []
    checkpoints.remove()
    assert not (tmp_path / "work").exists()


def test_staging_folders_of_dead_runs_are_removed_and_others_left(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = {"pid": finished.pid, "host": socket.gethostname(),
            "started": psutil.Process(finished.pid).create_time()}  # fmt: skip
    finished.wait()
    owners = {
        ".x.tmp-dead0001": dead,
        ".x.tmp-live0001": process_owner(),
        ".x.tmp-away0001": {**dead, "host": "another-host"},
    }
    runs = tmp_path / "runs"
    for name, owner in owners.items():
        (runs / name).mkdir(parents=True)
        (runs / name / OWNER_FILE).write_text(json.dumps(owner))
    (runs / ".x.tmp-noowner1").mkdir()
    folder = RunFolder(runs / "x")
    folder.remove_dead_runs()
    left = sorted(p.name for p in runs.iterdir())
    assert left == sorted([".x.tmp-live0001", ".x.tmp-away0001", ".x.tmp-noowner1", folder.staging.name])
    folder.abandon()


def test_checkpoints_in_object_storage(tmp_path):
    root = f"memory://work/{uuid.uuid4().hex}/.x.work"
    checkpoints = Checkpoints(root, "key")
    with checkpoints.writing("pca") as local:
        np.save(local / "components.npy", np.arange(3.0))
    checkpoints.mark("read", {"blocks": 2})
    assert checkpoints.completed() == ["read"] and checkpoints.payload("read") == {"blocks": 2}
    loaded = checkpoints.read("pca", lambda local: np.load(local / "components.npy"))
    assert loaded.tolist() == [0.0, 1.0, 2.0]
    checkpoints.remove()
    assert not checkpoints.fs.exists(root.removeprefix("memory://") + "/key")
