"""What a run shows while it works: stage progress, log verbosity, and the scheduler's task counts.

- ``configure_logging(verbosity)``: ``-q`` (-1) shows nothing but results and errors, the default (0) the job's
  own lines, ``-v`` (1) also distributed's warnings and the job's INFO log, ``-vv`` (2) distributed's INFO log.
  Worker processes of a local cluster follow the same level (``worker_setup``).
- ``StageDisplay``: on a terminal, one line per stage with its name, a bar, the percentage of its tasks done
  and the elapsed time (rich); off a terminal one line per finished stage (name and seconds); nothing when
  quiet. The percentage is tasks finished over tasks submitted since the stage opened, as counted by the
  scheduler (``TaskCounter``), not a timer.
- ``TaskCounter``: a scheduler plugin counting tasks submitted and finished, workers lost, and tasks computed
  again because the worker holding their result was lost (recorded in ``run.json``).

Example
-------
>>> display = StageDisplay(mode="lines")  # doctest: +SKIP
>>> with display.stage("report") as stage:  # doctest: +SKIP
...     stage.detail("writing the PDF")
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = [
    "LocalTaskCounter",
    "StageDisplay",
    "StageProgress",
    "TaskCounter",
    "configure_logging",
    "distributed_log_level",
    "local_worker_config",
]

logger = logging.getLogger(__name__)

# Level of distributed's loggers per verbosity: quiet and default hide its warnings ("Sizeof calculation ...
# failed", a worker restarted), -v shows them, -vv its INFO lines (every worker start and stop).
_DISTRIBUTED_LEVELS = {-1: "error", 0: "error", 1: "warning", 2: "info"}
_verbosity = 0
POLL_SECONDS = 0.2


def configure_logging(verbosity: int) -> None:
    """Set the log levels of the job and of distributed for a verbosity (-1 quiet .. 2 very verbose).

    Call before the cluster starts. distributed reads its level when imported, in this process and in each
    worker process, from ``DASK_LOGGING__DISTRIBUTED`` (a value the user set wins): set here for the worker
    processes, and on the loggers of this process, where distributed is imported already.
    """
    global _verbosity
    _verbosity = max(-1, min(2, verbosity))
    level = os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", _DISTRIBUTED_LEVELS[_verbosity])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("segmentation").setLevel(logging.INFO if _verbosity >= 1 else logging.WARNING)
    for name in ("distributed", "distributed.client"):  # distributed's defaults set both
        logging.getLogger(name).setLevel(level.upper())


def distributed_log_level() -> int:
    """The effective level of distributed's logger in this process (what workers should use too)."""
    return logging.getLogger("distributed").getEffectiveLevel()


def local_worker_config() -> dict[str, Any]:
    """The current Dask configuration plus what the worker processes of a local cluster need: to log at this
    process's level (the variable is set before each worker process starts, so it applies from its first
    line; a profile's own setting wins), and to ignore SIGINT (``dask_setup``): a Ctrl-C on the terminal
    reaches the whole process group, and the job, not each worker, decides how to stop."""
    import dask.config

    level = logging.getLevelName(distributed_log_level()).lower()
    environ = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    preload = list(dask.config.get("distributed.worker.preload", []) or [])
    return {
        "distributed.nanny.pre-spawn-environ": {"DASK_LOGGING__DISTRIBUTED": level, **environ},
        "distributed.worker.preload": [*preload, __name__] if __name__ not in preload else preload,
    }


def dask_setup(worker: Any) -> None:
    """Worker preload (``distributed.worker.preload``): ignore SIGINT in a local worker process."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# --- the scheduler's counts ----------------------------------------


class TaskCounter(SchedulerPlugin):
    """Counts, on the scheduler, what the progress bars and ``run.json`` report.

    Attributes
    ----------
    submitted : int
        Tasks that left the released state for the first time (plus each computation again after a loss).
    done : int
        Tasks that reached memory (or failed).
    workers_lost : int
        Workers that left the cluster.
    recomputed : int
        Tasks whose result was in memory on a worker that left and that were then computed again.
    client_bytes : int
        Bytes of the results a client asked for (the keys it wants, as they reach memory): what the
        computations bring to the client, by the workers' own size estimate of each result.
    """

    name = "segmentation-task-counter"
    _RUNNING = frozenset({"waiting", "queued", "processing", "no-worker"})

    def __init__(self) -> None:
        self.submitted = 0
        self.done = 0
        self.workers_lost = 0
        self.recomputed = 0
        self.client_bytes = 0
        self._scheduler: Any = None
        self._finished: dict[Any, bool] = {}  # key -> reached memory since it was (re)submitted
        self._released: dict[Any, str] = {}  # key -> stimulus that took its result out of memory
        self._lost: set[Any] = set()  # keys whose result went with a lost worker

    async def start(self, scheduler: Any) -> None:
        self._scheduler = scheduler

    def _count_client_bytes(self, key: Any) -> None:
        task = self._scheduler.tasks.get(key) if self._scheduler is not None else None
        if task is not None and task.who_wants:
            self.client_bytes += max(int(task.nbytes or 0), 0)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "memory":
            self._count_client_bytes(key)
        if finish == "forgotten":
            self._finished.pop(key, None)
            self._released.pop(key, None)
            self._lost.discard(key)
            return
        if start == "memory":
            self._released[key] = kwargs.get("stimulus_id", "")
        finished = self._finished.get(key)
        if finished is None:
            if finish != "released":
                self._finished[key] = finish in ("memory", "erred")
                self.submitted += 1
                self.done += finish in ("memory", "erred")
            return
        if finish in ("memory", "erred") and not finished:
            self._finished[key] = True
            self.done += 1
        elif finish in self._RUNNING and finished:
            self._finished[key] = False
            self.submitted += 1
            if key in self._lost:
                self._lost.discard(key)
                self.recomputed += 1

    def remove_worker(self, scheduler: Any, worker: str, *, stimulus_id: str = "", **kwargs: Any) -> None:
        # The scheduler has just released the results the worker held, under this same stimulus.
        self.workers_lost += 1
        lost = [key for key, stimulus in self._released.items() if stimulus == stimulus_id]
        for key in lost:
            del self._released[key]
            if self._finished.get(key) is False:  # already sent back to be computed, under this stimulus
                self.recomputed += 1
            else:
                self._lost.add(key)

    def counts(self) -> dict[str, int]:
        return {
            "submitted": self.submitted,
            "done": self.done,
            "workers_lost": self.workers_lost,
            "tasks_recomputed": self.recomputed,
            "client_bytes": self.client_bytes,
        }


def _scheduler_counts(dask_scheduler: Any) -> dict[str, int] | None:
    plugin = dask_scheduler.plugins.get(TaskCounter.name)
    return None if plugin is None else plugin.counts()


def install_task_counter(client: Any, cluster: Any | None) -> Callable[[], dict[str, int] | None]:
    """Add a ``TaskCounter`` to the scheduler; return a function reading its counts (``None`` if unavailable).

    The plugin is added through the scheduler's own event loop (``register_plugin``), never from this
    thread. A scheduler in this process (a local cluster) is then read directly; a remote one with
    ``run_on_scheduler``. Both need this package importable where the scheduler runs: without it there are
    no percentages and ``run.json`` records no losses, and the run goes on.
    """
    try:
        client.register_plugin(TaskCounter(), name=TaskCounter.name)
    except Exception as error:  # noqa: BLE001 - progress must not fail the run
        logger.info("no task counts from the scheduler (%s): progress without percentages", error)
        return lambda: None
    plugin = getattr(getattr(cluster, "scheduler", None), "plugins", {}).get(TaskCounter.name)
    if isinstance(plugin, TaskCounter):
        return plugin.counts

    def remote_counts() -> dict[str, int] | None:
        try:
            return client.run_on_scheduler(_scheduler_counts)
        except Exception as error:  # noqa: BLE001
            logger.debug("task counts unavailable: %s", error)
            return None

    return remote_counts


# --- the display -------------------------------------------------


class StageProgress:
    """One open stage of a ``StageDisplay``; ``detail`` sets a note shown after its bar (e.g. the elbow's k)."""

    def __init__(self, display: StageDisplay, name: str, task: Any, base: dict[str, int] | None) -> None:
        self.name = name
        self.started = time.perf_counter()
        self._display = display
        self._task = task
        self._base = base

    def detail(self, text: str) -> None:
        """Show ``text`` next to the stage's bar (terminal only)."""
        if self._display._bars is not None:
            self._display._bars.update(self._task, detail=text)

    def fraction(self, counts: dict[str, int] | None) -> tuple[int, int] | None:
        """(tasks done, tasks submitted) since the stage opened."""
        if counts is None or self._base is None:
            return None
        return counts["done"] - self._base["done"], counts["submitted"] - self._base["submitted"]


class StageDisplay:
    """Shows the stages of a run as they go: bars on a terminal, one line each off a terminal, or nothing.

    Parameters
    ----------
    mode : {"auto", "bars", "lines", "off"}, default "auto"
        "auto" draws bars when stderr is a terminal, else lines; nothing at all after ``-q``.
    counts : callable, optional
        Returns the scheduler's task counts (``install_task_counter``); without it bars have no percentage.
    """

    def __init__(self, mode: str = "auto", counts: Callable[[], dict[str, int] | None] | None = None) -> None:
        if mode == "auto":
            mode = "off" if _verbosity < 0 else ("bars" if sys.stderr.isatty() else "lines")
        self.mode = mode
        self._counts = counts or (lambda: None)
        self._bars: Any = None
        self._current: StageProgress | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[StageProgress]:
        """Show stage ``name`` while the block runs; on success its bar ends at 100% (or its line is printed)."""
        base = self._counts() if self.mode == "bars" else None
        task = self._open_bars().add_task(name, total=None, detail="") if self.mode == "bars" else None
        stage = StageProgress(self, name, task, base)
        with self._lock:
            self._current = stage
        completed = False
        try:
            yield stage
            completed = True
        finally:
            with self._lock:
                self._current = None
            seconds = time.perf_counter() - stage.started
            if self._bars is not None:
                self._refresh(stage, final=completed)
                self._bars.stop_task(task)
            elif self.mode == "lines" and completed:
                print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop drawing (the finished lines stay on the terminal)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=1)
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def _open_bars(self) -> Any:
        if self._bars is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bars = Progress(
                TextColumn("{task.description:<8}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}"),
                console=Console(file=sys.stderr),
                refresh_per_second=5,
            )
            self._bars.start()
            self._poller = threading.Thread(target=self._poll, name="segmentation-progress", daemon=True)
            self._poller.start()
        return self._bars

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with self._lock:
                stage = self._current
            if stage is not None:
                self._refresh(stage, final=False)

    def _refresh(self, stage: StageProgress, *, final: bool) -> None:
        bars = self._bars
        if bars is None:
            return
        fraction = stage.fraction(self._counts())
        if fraction is not None and fraction[1] > 0:
            done, submitted = fraction
            bars.update(stage._task, total=submitted, completed=submitted if final else min(done, submitted))
        elif final:
            bars.update(stage._task, total=1, completed=1)


class LocalTaskCounter:
    """Counts tasks of computations on Dask's local schedulers (threads, processes), for a ``StageDisplay``
    where no distributed scheduler runs (``segmentation assign``). Use as a context manager."""

    def __init__(self) -> None:
        from dask.callbacks import Callback

        counter = self
        self.submitted = 0
        self.done = 0

        class _Callback(Callback):
            def _start_state(self, dsk: Any, state: Any) -> None:
                counter.submitted += len(state["ready"]) + len(state["waiting"])

            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                counter.done += 1

        self._callback = _Callback()

    def __enter__(self) -> LocalTaskCounter:
        self._callback.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._callback.__exit__(*exc_info)

    def counts(self) -> dict[str, int]:
        return {"submitted": self.submitted, "done": self.done}
