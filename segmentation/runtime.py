"""Cluster profiles -> a Dask client: start or connect, dashboard, stage progress and timings, performance report.

A profile is a small YAML file (see ``cluster_config/`` and ``docs/running.md``) of one of three kinds:

- ``local``: a ``LocalCluster`` on this machine, listening on 127.0.0.1;
- ``remote``: an existing scheduler (``tcp://`` or ``tls://``); the session connects and leaves it running;
- ``generic``: any cluster class given by import path (``dask_jobqueue.SLURMCluster``, ...) with its keyword
  arguments, then ``scale`` or ``adapt``.

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

import difflib
import importlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import dask
import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta
from distributed import Client, LocalCluster, Security
from distributed import performance_report as dask_performance_report
from distributed.core import Status

from .progress import (
    StageDisplay,
    StageProgress,
    distributed_log_level,
    install_task_counter,
    local_worker_config,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ClusterSession",
    "GenericSettings",
    "LocalSettings",
    "Profile",
    "ProfileError",
    "RemoteSettings",
    "Stage",
    "TLSSettings",
    "load_profile",
    "open_cluster",
]

# The packaged default, identical to cluster_config/local.yml (a test keeps them in step). It lives here
# rather than in a data file so that it ships with the module.
DEFAULT_PROFILE_YAML = """\
# A LocalCluster for a 2-core laptop: one single-threaded worker process per core.
kind: local
name: local
n_workers: 2
threads_per_worker: 1
memory_limit: auto            # per worker: the machine's memory divided by n_workers
processes: true
host: 127.0.0.1
dashboard_address: 127.0.0.1:8787   # another free port is used when 8787 is taken
"""

DEFAULT_CONNECT_TIMEOUT = 10.0
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

# Options of s3fs.S3FileSystem and common fsspec options: storage keys are passed to fsspec unchanged, but a
# key that is a near miss of one of these is taken for a typo.
_KNOWN_STORAGE_KEYS = (
    "anon",
    "endpoint_url",
    "key",
    "secret",
    "token",
    "use_ssl",
    "client_kwargs",
    "config_kwargs",
    "requester_pays",
    "s3_additional_kwargs",
    "profile",
    "default_block_size",
    "version_aware",
    "skip_instance_cache",
    "use_listings_cache",
)


class ProfileError(ValueError):
    """A cluster profile is invalid, or the cluster it describes cannot be reached or started."""


@dataclass(frozen=True)
class TLSSettings:
    """Client certificates for a ``tls://`` scheduler (paths resolved against the profile's folder)."""

    ca_file: Path
    cert: Path
    key: Path | None = None


@dataclass(frozen=True)
class LocalSettings:
    """Keyword arguments of the ``LocalCluster`` a ``kind: local`` profile starts."""

    kind: ClassVar[str] = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: int | str = "auto"
    processes: bool = True
    host: str = "127.0.0.1"
    dashboard_address: str | None = "127.0.0.1:8787"
    local_directory: str | None = None


@dataclass(frozen=True)
class RemoteSettings:
    """An existing scheduler that a ``kind: remote`` profile connects to."""

    kind: ClassVar[str] = "remote"
    address: str
    tls: TLSSettings | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    wait_for_workers: int = 0
    wait_timeout: float = 300.0


@dataclass(frozen=True)
class GenericSettings:
    """Any cluster class by import path, with its keyword arguments and ``scale`` or ``adapt`` arguments."""

    kind: ClassVar[str] = "generic"
    cluster_class: str
    cluster_kwargs: dict[str, Any] = field(default_factory=dict)
    scale: dict[str, Any] | None = None
    adapt: dict[str, Any] | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    wait_for_workers: int = 0
    wait_timeout: float = 300.0


ClusterSettings = LocalSettings | RemoteSettings | GenericSettings


@dataclass(frozen=True)
class Profile:
    """A validated cluster profile.

    Attributes
    ----------
    name : str
        ``name:`` from the file, else the file's stem.
    source : str
        The file it was read from (``"<default>"`` for the packaged default).
    cluster : LocalSettings | RemoteSettings | GenericSettings
        What to start or connect to.
    dask : dict
        Dask configuration (nested, as in Dask's YAML files) set for the session's lifetime.
    storage : dict
        fsspec storage options as written in the profile; see ``storage_options``.
    """

    name: str
    source: str
    cluster: ClusterSettings
    dask: dict[str, Any] = field(default_factory=dict)
    storage: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.cluster.kind

    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options for inputs and outputs: the profile's ``storage:``, then the environment.

        Keys the profile sets win. Missing ones come from ``FSSPEC_S3_*`` variables, then from
        ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL_S3`` /
        ``AWS_ENDPOINT_URL`` and ``AWS_REGION`` / ``AWS_DEFAULT_REGION``. Credentials are taken as a group
        from one place, and never when the profile sets ``anon: true``. The result travels with the tasks,
        so remote workers need no such variables; it holds secrets: do not log it.
        """
        return _merge_storage_options(self.storage, os.environ)


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


# --- loading -----------------------------------------------------


def load_profile(path: str | os.PathLike[str] | None = None) -> Profile:
    """Read and validate a cluster profile; ``None`` gives the packaged default local profile.

    Raises ``ProfileError`` naming the file, the key and what was expected.
    """
    if path is None:
        return _parse_profile(yaml.safe_load(DEFAULT_PROFILE_YAML), source="<default>", base_dir=Path.cwd())
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"cluster profile not found: {path}") from None
    except OSError as error:
        raise ProfileError(f"cannot read cluster profile {path}: {error.strerror}") from error
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ProfileError(f"{path}: not valid YAML: {error}") from error
    return _parse_profile({} if raw is None else raw, source=str(path), base_dir=path.resolve().parent)


_COMMON_KEYS = ("kind", "name", "dask", "storage")
_KIND_KEYS = {
    "local": (
        "n_workers",
        "threads_per_worker",
        "memory_limit",
        "processes",
        "host",
        "dashboard_address",
        "local_directory",
    ),
    "remote": ("address", "tls", "connect_timeout", "wait_for_workers", "wait_timeout"),
    "generic": (
        "cluster_class",
        "cluster_kwargs",
        "scale",
        "adapt",
        "connect_timeout",
        "wait_for_workers",
        "wait_timeout",
    ),
}
_TLS_KEYS = ("ca_file", "cert", "key")
_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def _parse_profile(raw: Any, *, source: str, base_dir: Path) -> Profile:
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{source}: a profile must be a mapping of keys to values, got {_show(raw)}")
    fields = _Fields(raw, source)
    kind = fields.choice("kind", tuple(_KIND_KEYS), default="local")
    _reject_unknown_keys(raw, source, kind)
    name = fields.text("name", default=Path(source).stem if source != "<default>" else "local")
    dask_config = _parse_dask_section(fields.mapping("dask"), source)
    storage = _parse_storage_section(fields.mapping("storage"), source)
    if kind == "local":
        cluster: ClusterSettings = LocalSettings(
            n_workers=fields.integer("n_workers", default=2, minimum=1),
            threads_per_worker=fields.integer("threads_per_worker", default=1, minimum=1),
            memory_limit=fields.memory("memory_limit", default="auto"),
            processes=fields.boolean("processes", default=True),
            host=fields.text("host", default="127.0.0.1"),
            dashboard_address=fields.text("dashboard_address", default="127.0.0.1:8787", nullable=True),
            local_directory=fields.text("local_directory", default=None, nullable=True),
        )
    elif kind == "remote":
        cluster = RemoteSettings(
            address=_parse_address(fields.text("address", required=True), source),
            tls=_parse_tls(raw.get("tls"), source, base_dir),
            **_connection_fields(fields),
        )
        _check_address_matches_tls(cluster, source)
    else:
        cluster = GenericSettings(
            cluster_class=_parse_import_path(fields.text("cluster_class", required=True), source),
            cluster_kwargs=fields.mapping("cluster_kwargs"),
            scale=_parse_scale(raw.get("scale"), source),
            adapt=fields.mapping("adapt") if raw.get("adapt") is not None else None,
            **_connection_fields(fields),
        )
        if cluster.scale is not None and cluster.adapt is not None:
            raise ProfileError(f"{source}: set either scale or adapt, not both")
    return Profile(name=name, source=source, cluster=cluster, dask=dask_config, storage=storage)


def _connection_fields(fields: _Fields) -> dict[str, Any]:
    return {
        "connect_timeout": fields.seconds("connect_timeout", default=DEFAULT_CONNECT_TIMEOUT),
        "wait_for_workers": fields.integer("wait_for_workers", default=0, minimum=0),
        "wait_timeout": fields.seconds("wait_timeout", default=300.0),
    }


class _Fields:
    """Reads typed values out of one mapping of a profile; errors name the file and the key."""

    def __init__(self, raw: Mapping[str, Any], source: str, prefix: str = "") -> None:
        self.raw = raw
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, expected: str) -> NoReturn:
        raise ProfileError(
            f"{self.source}: {self.prefix}{key} must be {expected}, got {_show(self.raw.get(key))}"
        )

    def _get(self, key: str, default: Any, required: bool) -> Any:
        if key not in self.raw:
            if required:
                raise ProfileError(f"{self.source}: missing required key {self.prefix}{key}")
            return default
        return self.raw[key]

    def integer(self, key: str, *, default: int, minimum: int) -> int:
        value = self._get(key, default, required=False)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(key, f"an integer >= {minimum}")
        return value

    def boolean(self, key: str, *, default: bool) -> bool:
        value = self._get(key, default, required=False)
        if not isinstance(value, bool):
            self.fail(key, "true or false")
        return value

    def text(
        self, key: str, *, default: str | None = None, required: bool = False, nullable: bool = False
    ) -> str | None:
        value = self._get(key, default, required)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "a non-empty string" + (" or null" if nullable else ""))
        return value.strip()

    def choice(self, key: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self._get(key, default, required=False)
        if value not in choices:
            hint = _did_you_mean(str(value), choices)
            self.fail(key, "one of " + ", ".join(choices) + hint)
        return value

    def seconds(self, key: str, *, default: float) -> float:
        value = self._get(key, default, required=False)
        try:
            if isinstance(value, bool):
                raise TypeError
            seconds = float(parse_timedelta(value, default="seconds"))
        except (TypeError, ValueError, KeyError):
            seconds = -1.0
        if seconds <= 0:
            self.fail(key, 'a positive duration in seconds (e.g. 10 or "10s")')
        return seconds

    def memory(self, key: str, *, default: int | str) -> int | str:
        value = self._get(key, default, required=False)
        if value == "auto":
            return value
        try:
            if isinstance(value, bool):
                raise TypeError
            if parse_bytes(value) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            self.fail(key, '"auto", a number of bytes or a size such as "4GiB"')
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key, None, required=False)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(key, "a mapping (key: value lines)")
        bad_keys = [k for k in value if not isinstance(k, str)]
        if bad_keys:
            raise ProfileError(f"{self.source}: {self.prefix}{key} has a non-string key {bad_keys[0]!r}")
        return dict(value)


def _show(value: Any) -> str:
    return "nothing (null)" if value is None else f"{value!r} ({type(value).__name__})"


def _did_you_mean(word: str, candidates: Any) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _reject_unknown_keys(raw: Mapping[str, Any], source: str, kind: str) -> None:
    allowed = _COMMON_KEYS + _KIND_KEYS[kind]
    for key in raw:
        if key in allowed:
            continue
        owners = [other for other, keys in _KIND_KEYS.items() if key in keys]
        if owners:
            default_note = " (kind defaults to local)" if "kind" not in raw else ""
            raise ProfileError(
                f"{source}: key {key!r} does not apply to kind {kind!r}{default_note}; "
                f"it belongs to kind {' or '.join(owners)}"
            )
        raise ProfileError(
            f"{source}: unknown key {key!r}{_did_you_mean(str(key), allowed)}; "
            f"keys for kind {kind!r}: {', '.join(allowed)}"
        )


def _parse_address(address: str, source: str) -> str:
    scheme, _, rest = address.rpartition("://")
    if scheme and scheme not in _SCHEMES:
        raise ProfileError(
            f"{source}: address {address!r} has an unknown scheme {scheme!r}"
            f"{_did_you_mean(scheme, _SCHEMES)}; use one of {', '.join(s + '://' for s in _SCHEMES)}"
        )
    if not rest:
        raise ProfileError(f"{source}: address {address!r} has no host; expected e.g. tls://scheduler:8786")
    return address


def _parse_tls(raw: Any, source: str, base_dir: Path) -> TLSSettings | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{source}: tls must be a mapping with ca_file, cert and key, got {_show(raw)}")
    for key in raw:
        if key not in _TLS_KEYS:
            raise ProfileError(
                f"{source}: unknown key tls.{key}{_did_you_mean(str(key), _TLS_KEYS)}; "
                f"tls takes {', '.join(_TLS_KEYS)}"
            )
    fields = _Fields(raw, source, prefix="tls.")

    def existing_file(key: str, required: bool) -> Path | None:
        value = fields.text(key, required=required, nullable=not required)
        if value is None:
            return None
        path = (base_dir / Path(value).expanduser()).resolve()
        if not path.is_file():
            raise ProfileError(f"{source}: tls.{key}: file not found: {path}")
        return path

    return TLSSettings(
        ca_file=existing_file("ca_file", True),  # type: ignore[arg-type]
        cert=existing_file("cert", True),  # type: ignore[arg-type]
        key=existing_file("key", False),
    )


def _check_address_matches_tls(remote: RemoteSettings, source: str) -> None:
    scheme = remote.address.partition("://")[0] if "://" in remote.address else "tcp"
    if remote.tls is not None and scheme not in ("tls", "wss"):
        raise ProfileError(
            f"{source}: tls is set but address {remote.address!r} is not encrypted; use tls://host:port"
        )


def _parse_import_path(path: str, source: str) -> str:
    if "." not in path or not all(part.isidentifier() for part in path.split(".")):
        raise ProfileError(
            f"{source}: cluster_class must be an import path such as dask_jobqueue.SLURMCluster, got {path!r}"
        )
    return path


def _parse_scale(raw: Any, source: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return {"n": raw}
    if isinstance(raw, Mapping) and all(isinstance(k, str) for k in raw):
        return dict(raw)
    raise ProfileError(
        f"{source}: scale must be a number of workers or the arguments of cluster.scale() "
        f"(e.g. {{jobs: 4}} or {{n: 2}}), got {_show(raw)}"
    )


def _parse_dask_section(section: dict[str, Any], source: str) -> dict[str, Any]:
    """Nest the section as Dask's YAML files are: top-level keys are dotted paths (as in ``dask.config.set``),
    keys of nested mappings are taken as they are (``distributed.logging`` has keys with dots)."""
    import distributed  # noqa: F401  (loads distributed's configuration defaults, checked below)

    nested: dict[str, Any] = {}
    for path, value in section.items():
        *parents, leaf = path.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ProfileError(f"{source}: dask: {path} conflicts with another key that sets {part}")
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            dask.config.update(node[leaf], value)
        else:
            node[leaf] = dict(value) if isinstance(value, Mapping) else value
    _check_dask_keys(nested, dask.config.config, [], source)
    return nested


# Environment variables for worker processes: any name goes (MALLOC_MMAP_THRESHOLD_ is no typo of
# MALLOC_TRIM_THRESHOLD_).
_ENVIRONMENT_KEYS = {"distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"}


def _check_dask_keys(
    section: Mapping[str, Any], known: Mapping[str, Any], path: list[str], source: str
) -> None:
    """Reject near misses of existing Dask keys (``targte``); other unknown keys pass, because many mappings
    are free-form (``distributed.logging``, ``distributed.worker.resources``) and other libraries
    (``jobqueue``, ``kubernetes``) add their own."""
    for key, value in section.items():
        name = dask.config.canonical_name(key, known)
        if name in known:
            free_form = ".".join([*path, name]) in _ENVIRONMENT_KEYS
            if isinstance(value, Mapping) and isinstance(known[name], Mapping) and not free_form:
                _check_dask_keys(value, known[name], [*path, name], source)
            continue
        close = difflib.get_close_matches(key, [str(k) for k in known], n=1, cutoff=0.8)
        if close:
            raise ProfileError(
                f"{source}: dask: {'.'.join([*path, key])} is not a Dask setting "
                f"(did you mean {'.'.join([*path, close[0]])}?)"
            )


def _dask_config_overrides(section: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level entries of Dask's configuration with the profile's section merged in.

    ``dask.config.set`` replaces whatever a key holds, so mappings are merged with the current values first.
    """
    current = dask.config.config
    overrides = {}
    for key, value in section.items():
        name = dask.config.canonical_name(key, current)
        if isinstance(value, Mapping) and isinstance(current.get(name), Mapping):
            overrides[name] = dask.config.merge(current[name], value)
        else:
            overrides[name] = value
    return overrides


def _parse_storage_section(section: dict[str, Any], source: str) -> dict[str, Any]:
    for key in section:
        if key in _KNOWN_STORAGE_KEYS:
            continue
        close = difflib.get_close_matches(key, _KNOWN_STORAGE_KEYS, n=1, cutoff=0.75)
        if close:
            raise ProfileError(f"{source}: unknown key storage.{key} (did you mean {close[0]!r}?)")
    return section


def _merge_storage_options(profile_options: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    from fsspec.config import set_conf_env

    fsspec_conf: dict[str, dict[str, Any]] = {}
    set_conf_env(fsspec_conf, envdict=environ)
    fsspec_s3 = fsspec_conf.get("s3", {})
    aws = {
        "key": environ.get("AWS_ACCESS_KEY_ID"),
        "secret": environ.get("AWS_SECRET_ACCESS_KEY"),
        "token": environ.get("AWS_SESSION_TOKEN"),
        "endpoint_url": environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL"),
    }
    credentials = ("key", "secret", "token")
    options = dict(profile_options)
    for fallback in (fsspec_s3, aws):
        for key, value in fallback.items():
            if key not in credentials and value is not None and key not in options:
                options[key] = value
        if not options.get("anon") and not any(options.get(k) for k in credentials):
            options.update({k: fallback[k] for k in credentials if fallback.get(k)})
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    client_kwargs = dict(options.get("client_kwargs") or {})
    if region and "region_name" not in client_kwargs:
        options["client_kwargs"] = {**client_kwargs, "region_name": region}
    return options


# --- session -----------------------------------------------------


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
        client (``client_bytes``), from the scheduler's ``TaskCounter``; empty when it gives no counts.
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
        before = self._counts() or {}
        with self._display.stage(name) as progress:
            stage = Stage(name=name, started=progress.started, progress=progress)
            try:
                yield stage
                check_interrupt()
            finally:
                stage.seconds = time.perf_counter() - stage.started
                self.timings[name] = self.timings.get(name, 0.0) + stage.seconds
                after = self._counts() or {}
                if "submitted" in before and "submitted" in after:
                    costs = self.stage_costs.setdefault(name, {"tasks": 0, "client_bytes": 0})
                    costs["tasks"] += after["submitted"] - before["submitted"]
                    costs["client_bytes"] += after.get("client_bytes", 0) - before.get("client_bytes", 0)

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
        stack.enter_context(dask.config.set(_dask_config_overrides(profile.dask)))
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


def _silence_distributed() -> None:
    """No more log lines from distributed and its event loop in this process (run on workers too)."""
    for name in ("distributed", "tornado", "asyncio"):
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
        with dask.config.set(local_worker_config()):
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
            f"{_did_you_mean(class_name, names)}"
        )
    return cluster_class
