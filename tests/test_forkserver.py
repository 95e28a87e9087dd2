"""The local workers' fork server: started before the client's imports, the workers forked from it with the
variables a spawned worker gets, and used only for the profile it was started for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from segmentation import forkserver
from segmentation.profile import load_profile
from tests.clusters import write_profile

# In a process of its own: the fork server lives as long as the process that started it.
SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing.forkserver, os, sys
    import psutil
    from segmentation import forkserver
    from segmentation.profile import load_profile

    def worker_facts():
        import sys, os, psutil, threadpoolctl
        return {
            "parent": psutil.Process().ppid(),
            "imported": "segmentation.job" in sys.modules,
            "blas_threads": max(i["num_threads"] for i in threadpoolctl.threadpool_info()),
            "omp": os.environ.get("OMP_NUM_THREADS"),
            "log_level": os.environ.get("DASK_LOGGING__DISTRIBUTED"),
        }

    if __name__ == "__main__":
        profile = load_profile(sys.argv[1])
        forkserver.start(profile)
        server = multiprocessing.forkserver._forkserver._forkserver_pid
        own_omp = os.environ.get("OMP_NUM_THREADS")
        from segmentation.runtime import open_cluster
        with open_cluster(profile, show_progress=False) as session:
            facts = list(session.client.run(worker_facts).values())
        print(json.dumps({"server": server, "own_omp": own_omp, "workers": facts}))
    """
)


WORKER_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


def run_script(tmp_path, profile_text: str) -> dict:
    profile = write_profile(tmp_path, profile_text)
    script = write_profile(tmp_path, SCRIPT, "script.py")
    # Without the variables an earlier cluster in this process left (Dask sets them here before it spawns).
    environ = {name: value for name, value in os.environ.items() if name not in WORKER_VARIABLES}
    done = subprocess.run(
        [sys.executable, str(script), str(profile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environ,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_local_workers_are_forked_from_the_server_with_the_job_imported_and_one_blas_thread(tmp_path):
    facts = run_script(tmp_path, "kind: local\nn_workers: 2\nmemory_limit: 1GiB\n")
    assert facts["server"]
    assert facts["own_omp"] is None  # the variables were the server's, not this process's
    assert len(facts["workers"]) == 2
    for worker in facts["workers"]:
        assert worker["parent"] == facts["server"]
        assert worker["imported"]  # before any task asked for it
        assert worker["blas_threads"] == 1 and worker["omp"] == "1"
        assert worker["log_level"]


def waiting_for(profile) -> tuple[dict, dict]:
    """The state ``forkserver.start`` leaves for ``profile`` now (without starting a server)."""
    return dict(os.environ), forkserver.worker_environment(profile)


def test_the_server_goes_to_the_first_cluster_after_it_only(tmp_path, monkeypatch):
    profile = load_profile(write_profile(tmp_path, "kind: local\nn_workers: 1\n"))
    monkeypatch.setattr(forkserver, "_waiting", waiting_for(profile))
    assert forkserver.take(profile) == "forkserver"
    assert forkserver.take(profile) == "spawn"


def test_a_profile_that_sets_other_worker_variables_gets_spawned_workers(tmp_path, monkeypatch):
    started = load_profile(write_profile(tmp_path, "kind: local\nn_workers: 1\n"))
    other = load_profile(
        write_profile(
            tmp_path,
            """
            kind: local
            n_workers: 1
            dask:
              distributed:
                nanny:
                  pre-spawn-environ:
                    OMP_NUM_THREADS: 2
            """,
            "other.yml",
        )
    )
    assert forkserver.worker_environment(other)["OMP_NUM_THREADS"] == "2"
    monkeypatch.setattr(forkserver, "_waiting", waiting_for(started))
    assert forkserver.take(other) == "spawn"


def test_a_variable_changed_after_the_server_started_gets_spawned_workers(tmp_path, monkeypatch):
    profile = load_profile(write_profile(tmp_path, "kind: local\nn_workers: 1\n"))
    monkeypatch.setenv("SEGMENTATION_TEST_VARIABLE", "when the server started")
    monkeypatch.setattr(forkserver, "_waiting", waiting_for(profile))
    monkeypatch.setenv("SEGMENTATION_TEST_VARIABLE", "changed since")
    assert forkserver.take(profile) == "spawn"


def test_no_server_for_threads_or_a_remote_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(forkserver, "_started", False)
    monkeypatch.setattr(forkserver, "_waiting", None)
    for text in ("kind: local\nprocesses: false\n", "kind: remote\naddress: tcp://127.0.0.1:8786\n"):
        profile = load_profile(write_profile(tmp_path, text))
        forkserver.start(profile)
        assert not forkserver._started and forkserver._waiting is None
        assert forkserver.take(profile) == "spawn"
