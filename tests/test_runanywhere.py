"""Run anywhere Dask runs: the whole job on `dask scheduler` / `dask worker` processes, with its dashboard,
with inputs and outputs on S3 (moto), on the low-memory profile with data larger than its memory, and
interrupted with Ctrl-C.

The runs on the small generated data all use one seed, so all of them must find the same segments.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import boto3
import pandas as pd
import psutil
import pytest
import yaml

import segmentation.job
from segmentation.config import load_job
from segmentation.io import DEFAULT_BLOCKSIZE
from segmentation.job import run_job
from segmentation.run_folder import ASSIGNMENTS, ELBOW, QUALITY_ROWS, RUN_JSON, RunFolder
from segmentation.schema import default_attributes_path
from segmentation.synth import generate
from tests.clusters import (
    DASK,
    PROFILES,
    assert_gone,
    free_port,
    listening_addresses,
    start,
    stop,
    write_profile,
)

POPULATION, CUSTOMERS, SEGMENTS, SEED = 3_000, 800, 4, 11
COLUMNS = 366  # of the Arvato-shaped tables the generator writes
BUCKET = "segmentation-test"
# Variables through which boto3 or fsspec could find S3 settings other than those a test gives.
STORAGE_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL", "FSSPEC_S3_KEY", "FSSPEC_S3_SECRET", "FSSPEC_S3",
)  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    generate(
        out,
        rows=POPULATION,
        customers_rows=CUSTOMERS,
        mailout_rows=0,
        segments=SEGMENTS,
        seed=SEED,
        processes=1,
    )
    return out


def job(population: str, customers: str, output: str, cluster: Path, **overrides):
    """The job on the test data: k fixed, a tiny elbow, 1 MB blocks (several partitions per table)."""
    return load_job(None, {
        "inputs.population": population, "inputs.customers": customers, "output": output,
        "cluster": str(cluster), "seed": SEED, "kmeans.k": SEGMENTS, "kmeans.k_min": 3, "kmeans.k_max": 4,
        "blocksize": 1_000_000, "report": False, **overrides,
    })  # fmt: skip


def sorted_assignments(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["LNR", "table", "segment"]].astype({"LNR": "int64", "table": str, "segment": str})
    return frame.sort_values(["table", "LNR"]).reset_index(drop=True)


def assert_same_segments(result, reference, storage_options: dict | None = None) -> None:
    """Assignments identical per LNR, and the same proportions."""
    found = pd.read_parquet(f"{result.output}/assignments", storage_options=storage_options)
    expected = pd.read_parquet(f"{reference.output}/assignments")
    assert len(expected) == POPULATION + CUSTOMERS
    pd.testing.assert_frame_equal(sorted_assignments(found), sorted_assignments(expected))
    pd.testing.assert_frame_equal(result.proportions, reference.proportions)


# --- a local run, with its dashboard polled while it runs --------


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    return [
        address.address
        for addresses in psutil.net_if_addrs().values()
        for address in addresses
        if address.family.name == "AF_INET" and not address.address.startswith("127.")
    ]


class DashboardPoller(threading.Thread):
    """Requests /status every half second until stopped; records the answers and where the port listens."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.statuses: list[int | str] = []
        self.listening: set[str] = set()
        self.reachable_elsewhere: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=5) as response:
                    self.statuses.append(response.status)
            except (urllib.error.URLError, OSError) as error:
                self.statuses.append(type(error).__name__)
                continue
            ports = listening_addresses([psutil.Process()])
            if self.port in ports:
                self.listening.add(ports[self.port])
            for address in other_addresses():
                try:
                    urllib.request.urlopen(f"http://{address}:{self.port}/status", timeout=2).close()
                    self.reachable_elsewhere.append(address)
                except (urllib.error.URLError, OSError):
                    pass


@pytest.fixture(scope="module")
def local_run(dataset, tmp_path_factory):
    """The reference: a local profile on a fixed free dashboard port, polled while the job runs."""
    directory = tmp_path_factory.mktemp("local")
    port = free_port()
    profile = write_profile(
        directory, f"kind: local\nn_workers: 2\nmemory_limit: 2GiB\ndashboard_address: 127.0.0.1:{port}\n"
    )
    poller = DashboardPoller(port)
    poller.start()
    try:
        result = run_job(job(str(dataset / "population.csv"), str(dataset / "customers.csv"),
                             str(directory / "runs" / "local"), profile))  # fmt: skip
    finally:
        poller.done.set()
        poller.join()
    return result, poller


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dashboard_answers_on_localhost_only_while_the_job_runs(local_run):
    result, poller = local_run
    assert 200 in poller.statuses, poller.statuses
    assert poller.listening == {"127.0.0.1"}
    assert not poller.reachable_elsewhere
    recorded = json.loads(Path(result.output, "run.json").read_text())
    assert recorded["cluster"]["dashboard"] == f"http://127.0.0.1:{poller.port}/status"


# --- `dask scheduler` and `dask worker` processes ----------------


@contextmanager
def environment_without_storage_settings():
    """No S3 credentials or endpoint anywhere boto3 could look, and no instance-metadata lookups."""
    with pytest.MonkeyPatch.context() as patch:
        for name in STORAGE_ENVIRONMENT:
            patch.delenv(name, raising=False)
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield patch


@pytest.fixture(scope="module")
def remote_cluster(tmp_path_factory):
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1, started without any S3 settings."""
    directory = tmp_path_factory.mktemp("remote-cluster")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    with environment_without_storage_settings():
        processes = [start([*DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                            "--dashboard-address", "127.0.0.1:0"], directory)]  # fmt: skip
        try:
            worker = [*DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", "--memory-limit", "2GiB",
                      "--host", "127.0.0.1", "--no-dashboard", "--local-directory", str(directory)]  # fmt: skip
            processes += [start(worker, directory) for _ in range(2)]
            yield address, processes
        finally:
            stop(processes)


def remote_profile(directory: Path, address: str) -> Path:
    return write_profile(
        directory, f"kind: remote\naddress: {address}\nconnect_timeout: 30\nwait_for_workers: 2\n"
        "wait_timeout: 60\n", "remote.yml"
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_remote_scheduler_finds_the_same_segments_as_a_local_run(
    dataset, local_run, remote_cluster, tmp_path
):
    address, processes = remote_cluster
    result = run_job(job(str(dataset / "population.csv"), str(dataset / "customers.csv"),
                         str(tmp_path / "runs" / "remote"), remote_profile(tmp_path, address)))  # fmt: skip
    assert_same_segments(result, local_run[0])
    cluster = json.loads(Path(result.output, "run.json").read_text())["cluster"]
    assert cluster["kind"] == "remote" and cluster["scheduler"] == address and cluster["workers"] == 2
    assert all(process.poll() is None for process in processes), "the remote cluster is left running"


# --- S3 (moto in server mode) ------------------------------------


@pytest.fixture(scope="module")
def s3(dataset):
    """A moto S3 server on 127.0.0.1 with the inputs and the attributes file uploaded; yields its endpoint."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        client.create_bucket(Bucket=BUCKET)
        for name in ("population.csv", "customers.csv"):
            client.upload_file(str(dataset / name), BUCKET, f"data/{name}")
        client.upload_file(str(default_attributes_path()), BUCKET, "data/attributes.csv")
        yield endpoint, client
    finally:
        server.stop()


def keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def assert_complete_remote_run(client, name: str) -> list[str]:
    found = keys(client, "runs/")
    ours = [key for key in found if key.startswith(f"runs/{name}/")]
    for expected in ("run.json", "proportions.csv", "profiles.csv", "pca.csv",
                     "quality/columns.csv", "model/model.json", "performance_report.html"):  # fmt: skip
        assert f"runs/{name}/{expected}" in ours, expected
    assert any(key.startswith(f"runs/{name}/assignments/") and key.endswith(".parquet") for key in ours)
    assert not [key for key in found if ".tmp" in key], "nothing left under a temporary name"
    return ours


def local_run_staging() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "segmentation-run-*")))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_s3_inputs_and_outputs_with_settings_from_the_profile(local_run, s3, tmp_path, caplog):
    endpoint, client = s3
    profile = write_profile(tmp_path, f"""
        kind: local
        n_workers: 2
        memory_limit: 2GiB
        dashboard_address: 127.0.0.1:0
        storage:
          endpoint_url: {endpoint}
          key: testing
          secret: testing
          client_kwargs: {{region_name: us-east-1}}
        """)  # fmt: skip
    staging_before = local_run_staging()
    # Neither the client nor the workers it starts can find S3 settings anywhere but in the profile.
    with environment_without_storage_settings(), caplog.at_level("WARNING", logger="segmentation"):
        result = run_job(job(f"s3://{BUCKET}/data/population.csv", f"s3://{BUCKET}/data/customers.csv",
                             f"s3://{BUCKET}/runs/profile", profile,
                             attributes=f"s3://{BUCKET}/data/attributes.csv", report=True))  # fmt: skip
    assert result.output == f"s3://{BUCKET}/runs/profile"
    written = assert_complete_remote_run(client, "profile")
    assert {"runs/profile/report.html", "runs/profile/Customer Segmentation Report.pdf"} <= set(written)
    # The targeting list is ranked from the assignments the workers wrote to object storage.
    assert {"runs/profile/targets.parquet", "runs/profile/targets_top.csv"} <= set(written)
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    assert_same_segments(result, local_run[0], storage)
    targets = pd.read_parquet(f"s3://{BUCKET}/runs/profile/targets.parquet", storage_options=storage)
    assert len(targets) == result.run["rows"]["population"]["assigned"]
    recorded = json.loads(client.get_object(Bucket=BUCKET, Key="runs/profile/run.json")["Body"].read())
    assert recorded["inputs"]["attributes"] == f"s3://{BUCKET}/data/attributes.csv"
    report = client.get_object(Bucket=BUCKET, Key="runs/profile/report.html")["Body"].read().decode()
    assert "Run profile" in report and "segmentation-run-" not in report
    assert local_run_staging() == staging_before, "the local staging folder is removed"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_s3_with_settings_from_the_environment_reach_remote_workers(local_run, s3, remote_cluster, tmp_path):
    endpoint, client = s3
    address, _ = remote_cluster
    with environment_without_storage_settings() as environment:
        # Only this process has the settings: the workers were started without them.
        environment.setenv("AWS_ACCESS_KEY_ID", "testing")
        environment.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        environment.setenv("FSSPEC_S3_ENDPOINT_URL", endpoint)
        environment.setenv("AWS_REGION", "us-east-1")
        result = run_job(job(f"s3://{BUCKET}/data/population.csv", f"s3://{BUCKET}/data/customers.csv",
                             f"s3://{BUCKET}/runs/environment", remote_profile(tmp_path, address)))  # fmt: skip
    assert_complete_remote_run(client, "environment")
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    assert_same_segments(result, local_run[0], storage)


def test_a_remote_run_folder_is_copied_into_place_with_run_json_last(monkeypatch):
    destination = f"memory://runs/{uuid.uuid4().hex}/demo"
    earlier = RunFolder(destination)
    earlier.write(RUN_JSON, {"run": "earlier"})
    earlier.write(ELBOW, pd.DataFrame({"a": [1]}))
    earlier.commit()
    folder = RunFolder(destination)
    folder.write(RUN_JSON, {"run": "later"})
    folder.write(QUALITY_ROWS, pd.DataFrame({"a": [1]}))
    folder.fs.pipe(f"{folder.url_for(ASSIGNMENTS)}/part.0.parquet", b"written by a worker")
    copied = []
    real_copy = folder.fs.copy

    def recording_copy(source, target, **kwargs):
        copied.append(target)
        return real_copy(source, target, **kwargs)

    monkeypatch.setattr(folder.fs, "copy", recording_copy)
    assert folder.commit() == destination
    assert copied[-1].endswith("/demo/run.json") and len(copied) == 3
    parent = destination.rsplit("/", 1)[0]
    assert sorted(p.rsplit("/demo/", 1)[1] for p in folder.fs.find(parent)) == [
        "assignments/part.0.parquet",
        "quality/rows.csv",
        "run.json",
    ]
    assert json.loads(folder.fs.cat(f"{destination}/run.json")) == {"run": "later"}
    assert not folder.staging.exists()


def test_a_failed_s3_run_leaves_nothing_behind(s3, tmp_path):
    endpoint, client = s3
    storage = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    folder = RunFolder(f"s3://{BUCKET}/runs/failed", storage)
    folder.write(RUN_JSON, {"partial": True})
    pd.DataFrame({"LNR": [1], "table": ["population"], "segment": ["0"]}).to_parquet(
        f"{folder.url_for(ASSIGNMENTS)}/part.0.parquet", storage_options=storage
    )
    staging = folder.staging
    folder.abandon()
    assert not keys(client, "runs/failed") and not keys(client, "runs/.failed")
    assert not staging.exists()


# --- the low-memory profile --------------------------------------

# Rows of the generated population (customers are a fifth of that): as the float64 table an in-memory
# pipeline holds, 1.85M + 370k rows are 6.1 GiB, 3 x the two workers' 2 x 1 GiB. About two and a half
# minutes on 2 cores, and ~7 GB of disk for a while (CSV, then the job's scratch);
# SEGMENTATION_SPILL_ROWS changes it.
SPILL_ROWS = int(os.environ.get("SEGMENTATION_SPILL_ROWS", "1850000"))
# laptop-lowmem.yml as shipped: 1 GiB per worker. Less is not workable: a worker holding this job's
# libraries uses about 350 MiB before any data, and one whose memory does not fall below the pause
# threshold (80%) stays paused.
SPILL_MEMORY_LIMIT = 2**30


def restart_state(dask_worker) -> dict:
    return {"pid": os.getpid(),
            "spilled": dask_worker.data.cumulative_metrics.get(("disk-write", "bytes"), 0)}  # fmt: skip


@pytest.mark.slow
@pytest.mark.large
@pytest.mark.timeout(900)
def test_low_memory_profile_completes_on_data_larger_than_memory(tmp_path, monkeypatch):
    """The job is out of core: every pass streams blocks from the scratch folder, nothing is held in
    cluster memory between passes, so it finishes on data larger than the workers' memory with no worker
    restarted and each worker's peak below its limit (Dask's spilling stays configured as a safety net,
    and what it spilled is reported, but the job does not rely on it)."""
    # ~1.2 kB of CSV, 0.7 kB of coded block and 1.3 kB of PCA coordinates per row, with room to spare.
    needed = int((SPILL_ROWS + SPILL_ROWS // 5) * 3.2e3 * 1.5)
    free = shutil.disk_usage(tmp_path).free
    if free < needed:
        pytest.skip(f"needs {needed / 1e9:.1f} GB of free disk in {tmp_path}, has {free / 1e9:.1f} GB")
    data = tmp_path / "data"
    generate(data, rows=SPILL_ROWS, customers_rows=SPILL_ROWS // 5, mailout_rows=0, segments=SEGMENTS,
             seed=SEED, processes=2)  # fmt: skip
    settings = yaml.safe_load((PROFILES / "laptop-lowmem.yml").read_text())
    settings.update(memory_limit=SPILL_MEMORY_LIMIT, dashboard_address="127.0.0.1:0")
    profile = write_profile(tmp_path, yaml.safe_dump(settings), "lowmem.yml")

    workers_seen = {}
    real_open_cluster = segmentation.job.open_cluster

    @contextmanager
    def watched_open_cluster(profile, **kwargs):
        with real_open_cluster(profile, **kwargs) as session:
            workers_seen["start"] = session.client.run(restart_state)
            yield session
            workers_seen["end"] = session.client.run(restart_state)

    monkeypatch.setattr(segmentation.job, "open_cluster", watched_open_cluster)
    started = time.perf_counter()
    try:
        result = run_job(job(str(data / "population.csv"), str(data / "customers.csv"),
                             str(tmp_path / "runs" / "low"), profile, blocksize=DEFAULT_BLOCKSIZE))  # fmt: skip
    finally:
        shutil.rmtree(data, ignore_errors=True)
    seconds = time.perf_counter() - started

    start_state, end_state = workers_seen["start"], workers_seen["end"]
    assert len(start_state) == 2
    assert {a: s["pid"] for a, s in end_state.items()} == {a: s["pid"] for a, s in start_state.items()}, (
        "a worker was restarted"
    )
    recorded = json.loads(Path(result.output, "run.json").read_text())
    assert recorded["cluster"]["memory_limit_per_worker"] == SPILL_MEMORY_LIMIT
    rows = recorded["rows"]["population"]["read"] + recorded["rows"]["customers"]["read"]
    assert rows == SPILL_ROWS + SPILL_ROWS // 5
    table = rows * COLUMNS * 8
    if "SEGMENTATION_SPILL_ROWS" not in os.environ:
        assert table > 3 * (2 * SPILL_MEMORY_LIMIT), "the data must be several times the workers' memory"
    peak = recorded["peak_worker_memory"]
    assert 100 * 2**20 < peak < 0.95 * SPILL_MEMORY_LIMIT
    spilled = sum(state["spilled"] for state in end_state.values())
    print(
        f"\nlow-memory run: {rows} rows, {table / 2**30:.2f} GiB as float64 = "
        f"{table / (2 * SPILL_MEMORY_LIMIT):.2f} x the workers' 2 x {SPILL_MEMORY_LIMIT >> 20} MiB; "
        f"peak worker memory {peak / 2**20:.0f} MiB; spilled {spilled / 2**20:.0f} MiB; {seconds:.0f} s"
    )


# --- Ctrl-C ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_exits_130_and_leaves_no_processes_or_folders(dataset, tmp_path, signum):
    profile = write_profile(
        tmp_path, "kind: local\nn_workers: 2\nmemory_limit: 1GiB\ndashboard_address: 127.0.0.1:0\n"
    )
    runs = tmp_path / "runs"
    spec = tmp_path / "job.yml"
    spec.write_text(yaml.safe_dump({
        "inputs": {"population": str(dataset / "population.csv"), "customers": str(dataset / "customers.csv")},
        "output": str(runs / "interrupted"), "cluster": str(profile), "blocksize": 1_000_000,
        "kmeans": {"k": SEGMENTS, "k_min": 3, "k_max": 4}, "report": False,
    }))  # fmt: skip
    command = [sys.executable, "-m", "segmentation.cli", "run", str(spec)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Dask dashboard:"), line + process.stderr.read()
        deadline = time.monotonic() + 60
        while not list(runs.glob(".interrupted.work/*/population")):  # reading has begun
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.1)
        descendants = psutil.Process(process.pid).children(recursive=True)
        assert len(descendants) >= 2
        process.send_signal(signum)
        process.wait(timeout=60)
        stderr = process.stderr.read()
        assert process.returncode == 130, stderr
        assert "interrupted" in stderr
        assert_gone(descendants)
        assert not list(runs.iterdir()), "no run folder and no temporary folder"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
