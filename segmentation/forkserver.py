"""The local cluster's worker processes, forked from one process that has imported the job's modules and
was started before the client imports its own.

A spawned worker process starts Python afresh and imports Dask and the job's modules (2.5 s of one core),
and a job's client imports the same modules (1.7 s) before it starts the cluster: on two cores the first
5 s of a run went to importing the same modules three times, mostly in turn. ``start`` starts
multiprocessing's fork server first, with the job's modules imported in it, while the client imports its
own; the workers are then forked from it, already imported (2.6-2.9 s from the command to prepared workers,
against 4.7-5.2 s, measured side by side).

The server is started with the variables Dask sets before it starts a worker process
(``distributed.nanny.pre-spawn-environ``: one thread for BLAS and OpenMP, glibc's trim threshold, the log
level): they must be there before numpy is imported, so a worker forked from it has them as a spawned one
does. The first local cluster started after it takes it (``take``) when its workers need the same
variables; any other cluster's workers are spawned as usual.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dask.config

from .profile import LocalSettings, Profile
from .progress import local_worker_config

__all__ = ["start", "take", "worker_environment"]

# What the server imports before it forks the first worker: the modules of every task of the job.
PRELOAD = ["segmentation.job"]

# This process's variables and the workers' when ``start`` started the server, until a cluster takes it.
_waiting: tuple[dict[str, str], dict[str, str]] | None = None
_started = False


def worker_environment(profile: Profile) -> dict[str, str]:
    """The variables a local worker process of ``profile`` starts with: Dask's
    ``distributed.nanny.pre-spawn-environ`` with the profile's ``dask:`` section, and this process's log level."""
    with dask.config.set(profile.dask_overrides()):
        environ = local_worker_config()["distributed.nanny.pre-spawn-environ"]
    return {str(name): str(value) for name, value in environ.items()}


def start(profile: Profile) -> None:
    """Start the fork server of ``profile``'s local worker processes, with the job's modules imported in it,
    and return at once (it imports in the background). Once per process; nothing for a remote or generic
    cluster, a local one of threads, or where the platform has no fork server (Windows)."""
    global _waiting, _started
    settings = profile.cluster
    if (
        _started
        or not isinstance(settings, LocalSettings)
        or not settings.processes
        or "forkserver" not in multiprocessing.get_all_start_methods()
    ):
        return
    own, environment = dict(os.environ), worker_environment(profile)
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    with _environ_set(environment):
        multiprocessing.forkserver.ensure_running()
    _waiting, _started = (own, environment), True


def take(profile: Profile) -> str:
    """The start method of the worker processes of the local cluster of ``profile`` about to start:
    ``"forkserver"`` for the first one after ``start``, when it started the server for ``profile``'s worker
    variables, none of this process's variables of then has changed since (a forked worker has the server's,
    a spawned one those of the moment) and Dask is set to spawn them (its default); else Dask's setting."""
    global _waiting
    waiting, _waiting = _waiting, None
    configured = dask.config.get("distributed.worker.multiprocessing-method")
    if configured != "spawn" or waiting is None:
        return configured
    own, environment = waiting
    unchanged = all(os.environ.get(name) == value for name, value in own.items())
    return "forkserver" if unchanged and environment == worker_environment(profile) else configured


@contextmanager
def _environ_set(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` while the block runs (the server process copies it when it starts);
    this process's own variables are restored after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
