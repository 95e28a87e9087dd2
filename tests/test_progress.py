"""What a run shows: a bar with the share of tasks done per stage on a terminal, one line per stage off a
terminal, nothing of distributed's log at default verbosity (also from worker processes), and the scheduler's
counts of tasks, lost workers and recomputed tasks."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import pytest
import yaml

from segmentation.progress import LocalTaskCounter, StageDisplay, TaskCounter, configure_logging
from segmentation.synth import generate

REPO = Path(__file__).resolve().parents[1]
STAGES = ("read", "clean", "scale", "reduce", "project", "cluster", "assign", "compare", "describe", "write")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def small_job(tmp_path_factory):
    """A job on 3,000 + 800 generated rows in 1 MB blocks, with a three-k elbow."""
    root = tmp_path_factory.mktemp("progress")
    generate(root / "data", rows=3_000, customers_rows=800, mailout_rows=0, segments=4, seed=11, processes=1)
    profile = root / "local.yml"
    profile.write_text("kind: local\nn_workers: 2\nmemory_limit: 1GiB\ndashboard_address: 127.0.0.1:0\n")

    def spec(name: str) -> Path:
        path = root / f"{name}.yml"
        path.write_text(yaml.safe_dump({
            "inputs": {"population": str(root / "data" / "population.csv"),
                       "customers": str(root / "data" / "customers.csv")},
            "output": str(root / "runs" / name), "cluster": str(profile), "seed": 11, "blocksize": 1_000_000,
            "clustering": {"k": None, "k_min": 3, "k_max": 5}, "report": False,
        }))  # fmt: skip
        return path

    return spec


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_on_a_terminal_each_stage_shows_a_bar_with_the_share_of_its_tasks_done(small_job):
    """Under a pseudo-terminal: every stage's name, percentages strictly between 0 and 100 while stages
    run, the elapsed time, and the elbow's k; and no distributed log line."""
    controller, terminal = os.openpty()
    command = [sys.executable, "-m", "segmentation.cli", "run", str(small_job("terminal"))]
    process = subprocess.Popen(
        command, stdin=terminal, stdout=terminal, stderr=terminal, env=environment(), close_fds=True
    )
    os.close(terminal)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the job has exited
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=60) == 0, output.decode(errors="replace")[-3000:]
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
    text = ANSI.sub(b"", output).decode(errors="replace")
    # Each redraw starts with a carriage return or a cursor move (removed above), not always a new line.
    bar = re.compile(rf"\b({'|'.join(STAGES)}) +[━╸╺ ]+(\d+)%")
    shown = {(stage, int(share)) for stage, share in bar.findall(text)}
    for stage in STAGES:
        assert (stage, 100) in shown, stage
    in_between = {stage for stage, share in shown if 0 < share < 100}
    # The read stage has the most tasks and is caught mid-way by the 5-a-second redraws; on 3,000 rows each
    # Lloyd pass of the cluster stage is a few tasks done within one redraw (caught in 2 runs of 3).
    assert "read" in in_between, sorted(shown)
    assert re.search(r"\bcluster +━+ 100% \d+:\d\d:\d\d k=\d+", text)  # name, bar, share, elapsed time
    # The elbow fits every k on the in-memory sample in threads, quicker than the display redraws: some of
    # its details are shown, not necessarily each k's.
    assert re.search(r"elbow (k=[345] \([123] of 3\)|stability)", text)
    assert "distributed." not in text and "Traceback" not in text
    assert "Run folder:" in text


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_off_a_terminal_one_line_per_stage_and_nothing_from_distributed(small_job):
    """Default verbosity off a terminal: stderr holds one line per stage and nothing else. (Before,
    distributed's "Sizeof calculation ... failed" warnings from the worker processes appeared here.)"""
    command = [sys.executable, "-m", "segmentation.cli", "run", str(small_job("lines"))]
    result = subprocess.run(command, capture_output=True, text=True, env=environment(), timeout=280)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == list(STAGES), result.stderr
    assert all(re.fullmatch(r"\w+: \d+\.\d s", line) for line in lines), result.stderr
    assert "Run folder:" in result.stdout


SIZEOF_SCRIPT = """\
import sys

from segmentation.progress import configure_logging


class Unmeasurable:
    def __sizeof__(self):
        raise RuntimeError("no size")


def make():
    return Unmeasurable()


def main():
    configure_logging(int(sys.argv[1]))
    from segmentation.profile import load_profile
    from segmentation.runtime import open_cluster

    with open_cluster(load_profile(sys.argv[2]), show_progress=False) as session:
        session.client.submit(make).result()  # the worker warns that it cannot measure the result
        print("done", flush=True)


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("verbosity", "shown"), [(0, False), (1, True)], ids=["default", "-v"])
def test_worker_processes_warnings_reach_stderr_only_with_v(tmp_path, verbosity, shown):
    """distributed's warning is logged in a worker process, not in the client's: the worker processes of a
    local cluster log at the job's level."""
    script = tmp_path / "sizeof_warning.py"
    script.write_text(SIZEOF_SCRIPT)
    profile = tmp_path / "local.yml"
    profile.write_text("kind: local\nn_workers: 1\nmemory_limit: 1GiB\ndashboard_address: 127.0.0.1:0\n")
    result = subprocess.run(
        [sys.executable, str(script), str(verbosity), str(profile)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=170,
    )
    assert result.stdout.strip() == "done", result.stderr
    assert ("Sizeof calculation" in result.stderr) is shown, result.stderr
    if not shown:
        assert "distributed" not in result.stderr, result.stderr


def test_quiet_shows_nothing_and_default_off_a_terminal_shows_lines(capsys, monkeypatch):
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "error")
    try:
        configure_logging(-1)
        display = StageDisplay()
        assert display.mode == "off"
        with display.stage("read"):
            pass
        display.close()
        assert capsys.readouterr().err == ""
        configure_logging(0)
        display = StageDisplay()
        assert display.mode == "lines"  # pytest's stderr is no terminal
        with display.stage("read"):
            time.sleep(0.05)
        with pytest.raises(RuntimeError), display.stage("scale"):
            raise RuntimeError("failed")
        display.close()
        assert re.fullmatch(r"read: 0\.\d s\n", capsys.readouterr().err)
    finally:
        configure_logging(0)


def test_bars_show_the_share_of_the_stage_tasks_from_the_counts(capsys):
    counts = {"submitted": 10, "done": 10}
    display = StageDisplay("bars", lambda: dict(counts))
    with display.stage("scale") as stage:
        counts.update(submitted=14, done=12)  # 4 tasks submitted in the stage, 2 done
        stage.detail("step two")
        display._refresh(display._current, final=False)
        task = display._bars.tasks[0]
        assert (task.description, task.completed, task.total) == ("scale", 2, 4)
        assert task.fields["detail"] == "step two"
    assert (task.completed, task.total) == (4, 4)
    display.close()
    assert "scale" in capsys.readouterr().err


def test_local_task_counter_counts_the_tasks_of_local_computations():
    counter = LocalTaskCounter()
    array = da.ones(100, chunks=10)
    with counter:
        assert array.sum().compute(scheduler="threads") == 100
    counts = counter.counts()
    assert counts["submitted"] == counts["done"] >= 10


# --- the scheduler plugin, transition by transition -------------------


def run_task(counter: TaskCounter, key: str, stimulus: str = "compute") -> None:
    for start, finish in (("released", "waiting"), ("waiting", "processing"), ("processing", "memory")):
        counter.transition(key, start, finish, stimulus_id=stimulus)


def test_task_counter_counts_submitted_and_done_tasks():
    counter = TaskCounter()
    run_task(counter, "a")
    counter.transition("b", "released", "waiting", stimulus_id="s")
    assert counter.counts() == {
        "submitted": 2, "done": 1, "workers_lost": 0, "tasks_recomputed": 0, "client_bytes": 0
    }  # fmt: skip
    counter.transition("b", "waiting", "processing", stimulus_id="s")
    counter.transition("b", "processing", "erred", stimulus_id="s")
    assert counter.counts()["done"] == 2


def test_task_counter_counts_results_lost_with_a_worker_and_computed_again():
    counter = TaskCounter()
    run_task(counter, "kept")
    run_task(counter, "lost")
    run_task(counter, "done-with")
    # the client releases a result: not a loss, even if the same key is computed later
    counter.transition("done-with", "memory", "released", stimulus_id="client-releases-keys")
    counter.transition("done-with", "released", "forgotten", stimulus_id="client-releases-keys")
    # a worker dies: the scheduler releases what it held, then tells the plugins under the same stimulus
    counter.transition("lost", "memory", "released", stimulus_id="handle-worker-cleanup-1")
    counter.remove_worker(None, "tcp://127.0.0.1:1", stimulus_id="handle-worker-cleanup-1")
    run_task(counter, "lost")
    run_task(counter, "done-with")
    assert counter.counts() == {
        "submitted": 5, "done": 5, "workers_lost": 1, "tasks_recomputed": 1, "client_bytes": 0
    }  # fmt: skip


def test_configure_logging_sets_the_level_for_worker_processes(monkeypatch):
    from segmentation.progress import local_worker_config

    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    try:
        configure_logging(2)
        assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "info"
        config = local_worker_config()
        assert config["distributed.nanny.pre-spawn-environ"]["DASK_LOGGING__DISTRIBUTED"] == "info"
        assert "segmentation.progress" in config["distributed.worker.preload"]
    finally:
        monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "error")
        configure_logging(0)


def test_task_counter_counts_the_bytes_a_client_gathers_not_those_that_stay_on_workers():
    import dask.array as da
    from distributed import Client, LocalCluster

    from segmentation.progress import install_task_counter

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            counts = install_task_counter(client, cluster)
            x = da.ones((400_000, 10), chunks=(50_000, 10))  # 32 MB in 8 blocks
            before = counts()["client_bytes"]
            x.sum().compute()
            reduced = counts()["client_bytes"] - before
            x.compute()
            gathered = counts()["client_bytes"] - before - reduced
    assert reduced < 10_000
    assert 0.9 * x.nbytes <= gathered <= 1.1 * x.nbytes
