"""The cluster session: start or connect to the cluster a profile describes, a client, the dashboard link, stage
progress and timings, peak worker memory, the performance report, and a clean shutdown (also on Ctrl-C).

Profiles are read and validated by ``profile.load_profile``.

Example
-------
>>> profile = load_profile("cluster_config/local.yml")  # doctest: +SKIP
>>> with open_cluster(profile) as session:  # doctest: +SKIP
...     with session.stage("sum"):
...         total = dask.array.ones(1000, chunks=100).sum().compute()
...     (session.describe()["workers"], session.timings["sum"] > 0)
(2, True)
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import importlib
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import dask
import dask.config
import psutil
from distributed import Client, LocalCluster, Security
from distributed import performance_report as dask_performance_report
from distributed.client import AllExit
from distributed.core import Status

from . import forkserver
from .profile import GenericSettings, LocalSettings, Profile, ProfileError, RemoteSettings, load_profile
from .progress import (
    StageDisplay,
    StageProgress,
    distributed_log_level,
    install_task_counter,
    local_worker_config,
)
from .settings import did_you_mean

logger = logging.getLogger(__name__)

__all__ = [
    "ClusterSession",
    "Stage",
    "check_interrupt",
    "exit_interrupted",
    "handle_interrupts",
    "open_cluster",
]

MEMORY_POLL_SECONDS = 30.0

# The distribution that provides each module, for "pip install ..." hints when a cluster class is missing.
_PACKAGE_OF_MODULE = {
    "dask_jobqueue": "dask-jobqueue",
    "dask_kubernetes": "dask-kubernetes",
    "dask_cloudprovider": "dask-cloudprovider",
    "dask_gateway": "dask-gateway",
    "dask_yarn": "dask-yarn",
    "coiled": "coiled",
}


@dataclass
class Stage:
    """One timed stage of a run; ``seconds`` is set when the stage ends."""

    name: str
    started: float
    seconds: float | None = None
    progress: StageProgress | None = None

    def detail(self, text: str) -> None:
        """Show ``text`` next to the stage's progress bar (e.g. the elbow's current k)."""
        if self.progress is not None:
            self.progress.detail(text)


_interrupted = threading.Event()
_raise_again = threading.Event()
RAISE_AGAIN_DELAY = 0.05  # seconds
_deferring = threading.Event()


def _on_interrupt(signum: int, frame: Any) -> None:
    if _raise_again.is_set():  # the first one was dropped (see handle_interrupts): raise it now
        _raise_again.clear()
        raise KeyboardInterrupt
    if _interrupted.is_set():  # already stopping: a second Ctrl-C must not break the cleanup
        return
    _interrupted.set()
    # Before anything is raised: distributed's sync() hands the event loop a callback that cancels what it
    # waited for, and that callback itself fails (a NameError, logged with a traceback by tornado) when
    # the interrupt lands before the loop started the work; 1 in 10 Ctrl-C tests printed it.
    _silence_distributed()
    if not _deferring.is_set():
        raise KeyboardInterrupt


@contextmanager
def handle_interrupts() -> Iterator[None]:
    """While open, SIGINT and SIGTERM raise ``KeyboardInterrupt`` once (main thread only); later ones are
    ignored so that they cannot break the cleanup.

    Python drops an exception raised inside a garbage-collector callback and prints it with a traceback
    ("Exception ignored in ..."); distributed registers such a callback, and a Ctrl-C landing there was lost
    (the job ran to the end) or printed tracebacks. Such a dropped interrupt is not printed but raised again
    in the main thread as soon as it runs Python code outside the callback; ``check_interrupt`` also raises
    it at each stage boundary and before a run folder is committed.
    """
    _interrupted.clear()
    _raise_again.clear()
    previous = {signum: signal.signal(signum, _on_interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    previous_hook = sys.unraisablehook

    main_thread = threading.main_thread().ident

    def unraisable(report: Any) -> None:
        if isinstance(report.exc_value, KeyboardInterrupt) and _interrupted.is_set():
            # Signalled from another thread, a moment later: raised inside this hook, it would be dropped.
            _raise_again.set()
            threading.Timer(RAISE_AGAIN_DELAY, signal.pthread_kill, (main_thread, signal.SIGINT)).start()
        else:
            previous_hook(report)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_interrupted(code: int) -> NoReturn:
    """End the process at once with ``code``, once an interrupted job has cleaned up.

    Only what still matters is finished (multiprocessing's finalizers, which unlink its semaphores, the log
    and the standard streams); the rest of the interpreter's shutdown, tearing down pandas, Dask and the like,
    took 1-2 s on a loaded 2-core machine and would push the exit past the 2 s an interrupt may take.
    """
    import multiprocessing.util

    multiprocessing.util._exit_function()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Under ``handle_interrupts``, an interrupt inside the block is only remembered (``check_interrupt``
    raises it after the block)."""
    _deferring.set()
    try:
        yield
    finally:
        _deferring.clear()


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if an interrupt arrived under ``handle_interrupts`` (even if swallowed)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


class ClusterSession:
    """A client on a started or connected cluster, with the run's diagnostics.

    Made by ``open_cluster``; do not create directly.

    Attributes
    ----------
    profile : Profile
    client : distributed.Client
    cluster : distributed.deploy.Cluster or None
        The cluster this session started (``None`` when connected to a remote scheduler).
    timings : dict of str to float
        Seconds per stage, from ``stage``.
    stage_costs : dict of str to dict
        Per stage, the tasks the scheduler ran (``tasks``) and the bytes of the results brought to the
        client (``client_bytes``), from the scheduler's ``TaskCounter`` (absent when it gives no counts);
        and the bytes the workers and the client read from and wrote to storage (``disk_read_bytes``,
        ``disk_write_bytes``: the kernel's per-process counts, so page-cache hits are not reads).
    """

    def __init__(
        self, profile: Profile, client: Client, cluster: Any | None, *, show_progress: bool | None
    ) -> None:
        self.profile = profile
        self.client = client
        self.cluster = cluster
        self.timings: dict[str, float] = {}
        self.stage_costs: dict[str, dict[str, int]] = {}
        self._counts = install_task_counter(client, cluster)
        mode = "auto" if show_progress is None else ("bars" if show_progress else "off")
        self._display = StageDisplay(mode, self._counts)
        self._memory = _MemorySampler(client)
        self._preparing: threading.Thread | None = None
        self._prepare_error: BaseException | None = None

    @property
    def dashboard_link(self) -> str | None:
        """The scheduler's dashboard (``http://127.0.0.1:PORT/status`` for a local profile), or None."""
        try:
            return self.client.dashboard_link
        except (KeyError, AttributeError, TypeError):
            return None

    @contextmanager
    def stage(self, name: str) -> Iterator[Stage]:
        """Time a stage and show its progress (``progress.StageDisplay``); add its seconds to
        ``timings[name]`` (also on failure). An interrupt that was swallowed meanwhile is raised at either
        end (``check_interrupt``)."""
        check_interrupt()
        before, disk_before = self._counts() or {}, self._disk_bytes()
        with self._display.stage(name) as progress:
            stage = Stage(name=name, started=progress.started, progress=progress)
            try:
                yield stage
                check_interrupt()
                # Only when the stage succeeded: an interrupted run must not wait on the workers.
                self._add_disk_bytes(name, disk_before, self._disk_bytes())
                self._release_free_heap()
            finally:
                stage.seconds = time.perf_counter() - stage.started
                self.timings[name] = self.timings.get(name, 0.0) + stage.seconds
                after = self._counts() or {}
                if "submitted" in before and "submitted" in after:
                    costs = self.stage_costs.setdefault(name, {})
                    costs["tasks"] = costs.get("tasks", 0) + after["submitted"] - before["submitted"]
                    costs["client_bytes"] = (costs.get("client_bytes", 0) + after.get("client_bytes", 0)
                                             - before.get("client_bytes", 0))  # fmt: skip

    def _disk_bytes(self) -> dict[str, tuple[int, int]]:
        """Bytes each worker process and this client have read from and written to storage so far (the
        kernel's count: reads served from the page cache are not in it); empty where the OS does not
        tell."""
        try:
            counts = self.client.run(_process_disk_bytes, on_error="ignore")
        except Exception as error:  # noqa: BLE001 - diagnostics must not fail the run
            logger.debug("no disk counts from the workers: %s", error)
            counts = {}
        counts = {worker: value for worker, value in counts.items() if value is not None}
        own = _process_disk_bytes()
        return counts if own is None else {**counts, "client": own}

    def _release_free_heap(self) -> None:
        """Hand the free memory of the workers' heaps back to the operating system between stages.

        The local profile lets glibc keep up to 128 MB of freed memory per worker, so that a stage's tasks
        reuse their large arrays instead of mapping fresh pages (docs/running.md); between stages that memory
        is only held. Released, the workers' RSS falls to what they use while the client does the stages'
        own work (the seeding and stability of the clustering, ~250 MB)."""
        try:
            self.client.run(release_free_heap, on_error="ignore")
        except Exception as error:  # noqa: BLE001 - memory housekeeping must not fail the run
            logger.debug("could not release the workers' free heap: %s", error)

    def _add_disk_bytes(self, name: str, before: dict, after: dict) -> None:
        """Add to ``stage_costs[name]`` the disk bytes read and written meanwhile, over the processes
        counted at both ends (a restarted worker's counts start again, so a fall counts as none)."""
        both = before.keys() & after.keys()
        if not both:
            return
        costs = self.stage_costs.setdefault(name, {})
        for i, key in enumerate(("disk_read_bytes", "disk_write_bytes")):
            costs[key] = costs.get(key, 0) + sum(max(after[p][i] - before[p][i], 0) for p in both)

    def recovery(self) -> dict[str, int | None]:
        """Workers lost and tasks computed again (their result was lost with a worker) since the session
        started; ``None`` when the scheduler gives no counts (see ``progress.install_task_counter``)."""
        counts = self._counts()
        if counts is None:
            return {"workers_lost": None, "tasks_recomputed": None}
        return {"workers_lost": counts["workers_lost"], "tasks_recomputed": counts["tasks_recomputed"]}

    @contextmanager
    def performance_report(self, path: str | os.PathLike[str]) -> Iterator[None]:
        """Save Dask's performance report (task stream, profiles) of the block as HTML at ``path``.

        ``path`` may be a URL (written with the profile's storage options). A report that cannot be written
        is logged, not raised: it must not fail a finished run. Nothing is written when the block fails.
        """
        path = str(path)
        if "://" in path:
            report = dask_performance_report(filename=path, storage_options=self.profile.storage_options)
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            report = dask_performance_report(filename=path)
        report.__enter__()
        yield
        try:
            report.__exit__(None, None, None)
        except Exception as error:  # noqa: BLE001 - diagnostics only
            logger.warning("could not write the performance report %s: %s", path, error)

    def prepare_workers(self) -> None:
        """Start importing the job's modules on every worker, in the background; ``workers_prepared`` waits.

        Otherwise each worker imports them while its first tasks queue up, and one worker then held
        1.0-1.2 GB for a few seconds in 3 of 5 real-size runs (in none of 4 with this). In the background,
        so that the client meanwhile imports its own modules and lays out the tables (the workers' imports
        took 1.4 s of a job's first 5 s, with the client waiting). Also keeps an expected ``InputError`` out
        of the workers' log (the client prints its one line). Calling it again does nothing."""
        if self._preparing is None:
            self._preparing = threading.Thread(
                target=self._prepare, name="segmentation-prepare-workers", daemon=True
            )
            self._preparing.start()

    def _prepare(self) -> None:
        try:
            self.client.run(_prepare_worker)
            if isinstance(self.cluster, LocalCluster):  # its nannies wait for their workers' processes to end
                self.client.run(no_collection_at_exit)
        except BaseException as error:  # noqa: BLE001 - raised again by workers_prepared, in the caller
            self._prepare_error = error

    def workers_prepared(self) -> None:
        """Wait for ``prepare_workers`` (started now if it was not); raise what it raised."""
        self.prepare_workers()
        self._preparing.join()
        if self._prepare_error is not None:
            error, self._prepare_error = self._prepare_error, None
            raise error

    def describe(self) -> dict[str, Any]:
        """What ran the job, for run.json.

        ``threads_per_worker`` and ``memory_limit_per_worker`` are lists when workers differ.
        """
        info = self.client.scheduler_info(n_workers=-1)
        workers = list(info.get("workers", {}).values())
        return {
            "profile": self.profile.name,
            "kind": self.profile.kind,
            "scheduler": self.client.scheduler.address,
            "dashboard": self.dashboard_link,
            "workers": len(workers),
            "threads_per_worker": _one_or_all(w.get("nthreads") for w in workers),
            "memory_limit_per_worker": _one_or_all(w.get("memory_limit") for w in workers),
        }

    def peak_worker_memory(self) -> int | None:
        """The largest process memory (RSS, bytes) any worker reached since the session started.

        Each worker's own system monitor samples its RSS every 500 ms (``distributed.admin.system-monitor``);
        the session reads the maximum of those samples every 30 seconds and once more now, and keeps the
        maximum per worker, so workers that have left still count. ``None`` when no worker answered.
        """
        return self._memory.peak()

    def _close(self) -> None:
        self._display.close()
        self._memory.stop()


def _one_or_all(values: Any) -> Any:
    distinct = sorted({v for v in values if v is not None})
    if not distinct:
        return None
    return distinct[0] if len(distinct) == 1 else distinct


def _peak_process_memory(dask_worker: Any, seconds: float) -> int:
    """On a worker: the largest RSS sample of the last ``seconds`` seconds, by the worker's own clock."""
    monitor = dask_worker.monitor
    since = time.time() - seconds
    samples = [
        m
        for t, m in zip(monitor.quantities["time"], monitor.quantities["memory"], strict=False)
        if t >= since
    ]
    return int(max(samples, default=monitor.get_process_memory()))


def _prepare_worker() -> None:
    from .codes import warm_up_kernels
    from .io import hide_input_errors_in_worker_log

    importlib.import_module("segmentation.job")
    warm_up_kernels()
    hide_input_errors_in_worker_log()


def no_collection_at_exit() -> None:
    """Let this process end without the cyclic garbage collector's passes over every live object.

    Python's shutdown collects while it clears the ~2,600 modules a run imports: 0.8-1.0 s for a client or
    a worker after a run, at the end of every job. ``gc.freeze`` (at exit, after the other exit handlers
    registered later) exempts what is alive then; the operating system takes the memory back anyway.
    Garbage in reference cycles at exit is then not finalized: files are written in ``with`` blocks."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def release_free_heap() -> None:
    """``malloc_trim(0)``: return the free pages of glibc's heap to the operating system (a no-op where the C
    library is not glibc)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def versions() -> dict:
    """Versions of Python and the libraries whose behaviour shapes the results (run.json)."""
    from . import __version__

    packages = ("dask", "distributed", "dask-ml", "scikit-learn", "pandas", "numpy", "pyarrow", "matplotlib")
    found = {"python": platform.python_version(), "segmentation": __version__}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _process_disk_bytes(dask_worker: Any = None) -> tuple[int, int] | None:
    """This process's bytes read from and written to storage (``/proc/self/io``), or None where the OS
    does not count them (macOS)."""
    try:
        counts = psutil.Process().io_counters()
    except (AttributeError, NotImplementedError, psutil.Error):
        return None
    return int(counts.read_bytes), int(counts.write_bytes)


class _MemorySampler:
    """Polls the workers' peak memory in a background thread (see ``ClusterSession.peak_worker_memory``)."""

    def __init__(self, client: Client, interval: float = MEMORY_POLL_SECONDS) -> None:
        self._client = client
        self._started = time.monotonic()
        self._peaks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(interval,), name="segmentation-memory-sampler", daemon=True
        )
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.poll()

    def poll(self) -> None:
        # Elapsed seconds rather than a timestamp, so that clock skew between machines does not matter.
        elapsed = time.monotonic() - self._started + 1.0
        try:
            results = self._client.run(_peak_process_memory, seconds=elapsed, on_error="ignore")
        except Exception as error:  # noqa: BLE001 - diagnostics must not fail the run
            logger.debug("memory sampling failed: %s", error)
            return
        with self._lock:
            for worker, peak in results.items():
                self._peaks[worker] = max(peak, self._peaks.get(worker, 0))

    def peak(self) -> int | None:
        if not self._stopped.is_set():
            self.poll()
        with self._lock:
            return max(self._peaks.values(), default=None)

    def stop(self, timeout: float = 5) -> None:
        self._stopped.set()
        self._thread.join(timeout=timeout)


@contextmanager
def open_cluster(
    profile: Profile | None = None, *, show_progress: bool | None = None
) -> Iterator[ClusterSession]:
    """Start or connect to the cluster a profile describes; close all that was started on exit.

    Parameters
    ----------
    profile : Profile, optional
        From ``load_profile``; ``None`` uses the packaged default local profile.
    show_progress : bool, optional
        Draw a progress bar per stage (True), nothing (False); by default bars when stderr is a terminal,
        else one line per finished stage, and nothing after ``progress.configure_logging(-1)`` (``-q``).

    The profile's ``dask:`` section is set for the session's lifetime. On exit, also after an exception or
    Ctrl-C, the client is closed and a cluster the session started is shut down; a remote cluster is left
    running. After Ctrl-C (``KeyboardInterrupt``) a local cluster's worker processes are killed, so that the
    session ends within about a second. Connection failures raise ``ProfileError``.
    """
    profile = load_profile(None) if profile is None else profile
    closing = _Closing()
    with ExitStack() as stack:
        stack.enter_context(dask.config.set(profile.dask_overrides()))
        stack.enter_context(_unretrieved_gather_waits_dropped())
        settings = profile.cluster
        # An interrupt while processes start is acted on once they have started and can be stopped:
        # raised inside LocalCluster(), it left a half-made cluster that printed tracebacks at exit.
        with _interrupts_deferred():
            if isinstance(settings, LocalSettings):
                client, cluster = _start_local(settings, profile, stack, closing)
            elif isinstance(settings, RemoteSettings):
                client, cluster = _connect_remote(settings, profile, stack), None
            else:
                client, cluster = _start_generic(settings, profile, stack)
            session = ClusterSession(profile, client, cluster, show_progress=show_progress)
            stack.callback(session._close)
        try:
            check_interrupt()
            logger.info(
                "cluster %s (%s): scheduler %s, dashboard %s",
                profile.name,
                profile.kind,
                client.scheduler.address,
                session.dashboard_link,
            )
            yield session
        except KeyboardInterrupt:
            _stop_at_once(session, closing)
            raise
        except Exception:
            _quiet_for_teardown(session)
            raise


CLOSE_TIMEOUT = 30  # seconds to wait for the client and a started cluster to close
INTERRUPTED_CLOSE_TIMEOUT = 1  # the same after an interrupt, when a local cluster's workers were killed


@contextmanager
def _main_hidden_from_workers() -> Iterator[None]:
    """Hide ``__main__``'s file and module name from spawned worker processes while the block runs.

    A spawned process re-imports the parent's ``__main__`` from them, so a script calling ``run_job`` without
    an ``if __name__ == "__main__":`` guard would start a cluster again in every worker and fail with
    "start a new process before the current process has finished its bootstrapping phase". Workers need
    nothing from the script: the job's tasks import ``segmentation`` (cloudpickle ships ``__main__``'s
    functions by value).
    """
    main = sys.modules["__main__"]
    hidden = {name: main.__dict__.pop(name) for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(hidden)


class _Closing:
    """Closes what a session started: within ``CLOSE_TIMEOUT``, or once interrupted within
    ``INTERRUPTED_CLOSE_TIMEOUT`` and without raising (what could not close in time goes with the process)."""

    def __init__(self) -> None:
        self.timeout = CLOSE_TIMEOUT
        self.interrupted = False

    def close(self, closable: Any) -> None:
        try:
            closable.close(timeout=self.timeout)
        except Exception as error:
            if not self.interrupted:
                raise
            logger.debug("after the interrupt, %s did not close: %r", type(closable).__name__, error)


_SILENT = logging.CRITICAL + 1


class _DropGatherWaitExits(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" records for ``distributed.client.AllExit``.

    ``Client.gather`` waits on each future in a task of its own; when the futures are released at once (an
    interrupt, an error in another task) those tasks end with ``AllExit`` and nobody retrieves it, so the
    event loop logs a traceback that says nothing about the job, sometimes before the interrupt is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], AllExit))


@contextmanager
def _unretrieved_gather_waits_dropped() -> Iterator[None]:
    """``_DropGatherWaitExits`` on the ``asyncio`` logger for the session's lifetime."""
    log, drop = logging.getLogger("asyncio"), _DropGatherWaitExits()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def _silence_distributed() -> None:
    """No more log lines from distributed and its event loop in this process (run on workers too).

    Children with a level of their own are set too: Dask's configuration gives ``tornado.application``
    (where the event loop reports a failed callback) and ``distributed.client`` levels of their own."""
    roots = ("distributed", "tornado", "asyncio")
    own_level = [
        name
        for name, found in list(logging.Logger.manager.loggerDict.items())
        if isinstance(found, logging.Logger) and found.level and name.split(".", 1)[0] in roots
    ]
    for name in {*roots, *own_level}:
        logging.getLogger(name).setLevel(_SILENT)


def _quiet_for_teardown(session: ClusterSession) -> None:
    """After an error (bad input found in a task): silence distributed here and on a local cluster's workers
    before it closes. Workers torn down mid-transfer log "failed during get data" with a traceback, which must
    not bury the job's one-line error. A remote cluster is shared and keeps its logging."""
    _silence_distributed()
    if isinstance(session.cluster, LocalCluster):
        try:
            session.client.run(_silence_distributed, on_error="ignore")
        except Exception as error:  # a lost worker must not hide the error being raised
            logger.debug("could not quiet the workers: %r", error)


def _stop_at_once(session: ClusterSession, closing: _Closing) -> None:
    """After an interrupt: no more log lines from distributed and its event loop (connections now break
    everywhere, which it reports with tracebacks), and the processes of a local cluster are killed rather
    than asked to finish their tasks, so that the job exits within a second or two."""
    closing.timeout, closing.interrupted = INTERRUPTED_CLOSE_TIMEOUT, True
    _silence_distributed()
    session._memory.stop(timeout=0.1)
    cluster = session.cluster
    if not isinstance(cluster, LocalCluster):
        return
    for nanny in list(cluster.workers.values()):
        process = getattr(getattr(nanny, "process", None), "process", None)
        pid = getattr(process, "pid", None)
        if pid:
            nanny.status = Status.closing_gracefully  # so that it closes rather than restart the worker
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _start_local(
    settings: LocalSettings, profile: Profile, stack: ExitStack, closing: _Closing
) -> tuple[Client, LocalCluster]:
    if settings.processes:
        stack.enter_context(_main_hidden_from_workers())  # restored after the cluster has closed
    try:
        method = {"distributed.worker.multiprocessing-method": forkserver.take(profile)}
        with dask.config.set({**local_worker_config(), **method}):
            cluster = LocalCluster(
                n_workers=settings.n_workers,
                threads_per_worker=settings.threads_per_worker,
                memory_limit=settings.memory_limit,
                processes=settings.processes,
                host=settings.host,
                protocol="tcp://",  # also for threads (processes: false), so that host applies
                dashboard_address=settings.dashboard_address,
                local_directory=settings.local_directory,
                silence_logs=distributed_log_level(),
            )
    except (OSError, RuntimeError) as error:  # RuntimeError("Cluster failed to start: ...") wraps OSErrors
        raise ProfileError(f"{profile.source}: could not start a local cluster: {error}") from error
    # Bounded waits: after Ctrl-C a paused or busy worker must not keep the job from exiting.
    stack.callback(closing.close, cluster)
    client = Client(cluster, set_as_default=True)
    stack.callback(closing.close, client)
    return client, cluster


def _connect_remote(settings: RemoteSettings, profile: Profile, stack: ExitStack) -> Client:
    security = None
    if settings.tls is not None:
        security = Security(
            tls_ca_file=str(settings.tls.ca_file),
            tls_client_cert=str(settings.tls.cert),
            tls_client_key=str(settings.tls.key) if settings.tls.key else None,
            require_encryption=True,
        )
    elif settings.address.startswith(("tls://", "wss://")) and not dask.config.get(
        "distributed.comm.tls.ca-file", None
    ):
        raise ProfileError(
            f"{profile.source}: address {settings.address!r} is encrypted but the profile has no tls: "
            "section (ca_file, cert, key) and Dask's configuration sets no distributed.comm.tls files"
        )
    client = _connect(settings.address, profile, settings.connect_timeout, security=security)
    stack.callback(client.close)
    _wait_for_workers(client, settings, profile)
    return client


def _start_generic(settings: GenericSettings, profile: Profile, stack: ExitStack) -> tuple[Client, Any]:
    cluster_class = _import_cluster_class(settings.cluster_class, profile.source)
    try:
        cluster = cluster_class(**settings.cluster_kwargs)
    except TypeError as error:
        raise ProfileError(
            f"{profile.source}: {settings.cluster_class} rejected cluster_kwargs: {error}"
        ) from error
    stack.callback(cluster.close)
    try:
        if settings.scale is not None:
            cluster.scale(**settings.scale)
        if settings.adapt is not None:
            cluster.adapt(**settings.adapt)
    except TypeError as error:
        which = "scale" if settings.scale is not None else "adapt"
        raise ProfileError(f"{profile.source}: {which} arguments rejected by the cluster: {error}") from error
    client = _connect(cluster, profile, settings.connect_timeout)
    stack.callback(client.close)
    _wait_for_workers(client, settings, profile)
    return client, cluster


def _connect(address: Any, profile: Profile, timeout: float, security: Security | None = None) -> Client:
    shown = address if isinstance(address, str) else getattr(address, "scheduler_address", address)
    try:
        return Client(address, security=security, timeout=timeout, set_as_default=True)
    except (OSError, TimeoutError) as error:
        raise ProfileError(
            f"{profile.source}: could not connect to the scheduler at {shown} within {timeout:g} s "
            f"(connect_timeout): {error}"
        ) from error


def _wait_for_workers(client: Client, settings: RemoteSettings | GenericSettings, profile: Profile) -> None:
    if settings.wait_for_workers == 0:
        return
    try:
        client.wait_for_workers(settings.wait_for_workers, timeout=settings.wait_timeout)
    except TimeoutError as error:
        raise ProfileError(
            f"{profile.source}: fewer than {settings.wait_for_workers} workers (wait_for_workers) joined "
            f"within {settings.wait_timeout:g} s (wait_timeout)"
        ) from error


def _import_cluster_class(path: str, source: str) -> Any:
    module_name, _, class_name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        top = module_name.partition(".")[0]
        package = _PACKAGE_OF_MODULE.get(top, top.replace("_", "-"))
        raise ProfileError(
            f"{source}: cluster_class {path} cannot be imported ({error}); "
            f"install it with: pip install {package}"
        ) from error
    cluster_class = getattr(module, class_name, None)
    if not isinstance(cluster_class, type):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ProfileError(
            f"{source}: cluster_class {path}: {module_name} has no class {class_name!r}"
            f"{did_you_mean(class_name, names)}"
        )
    return cluster_class
