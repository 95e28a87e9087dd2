"""Cluster profiles (YAML) -> a validated ``Profile``: the cluster to start or connect to, Dask settings, storage.

A profile is a small YAML file (see ``cluster_config/`` and ``docs/running.md``) of one of three kinds:

- ``local``: a ``LocalCluster`` on this machine, listening on 127.0.0.1;
- ``remote``: an existing scheduler (``tcp://`` or ``tls://``); the session connects and leaves it running;
- ``generic``: any cluster class given by import path (``dask_jobqueue.SLURMCluster``, ...) with its keyword
  arguments, then ``scale`` or ``adapt``.

The keys of a kind are the fields of its settings class (``LocalSettings``, ...) and those of ``Profile`` read
from the file (``name``, ``dask``, ``storage``), plus ``kind``; each field names the parser that checks its
value (``settings.from_mapping`` reads them, as it reads job files). ``runtime.open_cluster`` starts the
session a profile describes.

Example
-------
>>> profile = load_profile("cluster_config/laptop-lowmem.yml")  # doctest: +SKIP
>>> profile.kind, profile.cluster.memory_limit, profile.dask["distributed"]["worker"]["memory"]["target"]
('local', '1GiB', 0.5)
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import dask
import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

from .settings import (
    Parser,
    SettingsError,
    did_you_mean,
    field_names,
    from_mapping,
    parse_values,
    setting,
    show,
    unknown_key,
)

__all__ = [
    "GenericSettings",
    "LocalSettings",
    "Profile",
    "ProfileError",
    "RemoteSettings",
    "TLSSettings",
    "load_profile",
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
dask:
  distributed:
    nanny:
      pre-spawn-environ:      # glibc, in each worker: large arrays reuse freed memory instead of mapping
        MALLOC_MMAP_THRESHOLD_: 67108864    # fresh pages for every task (Dask trims at 64 KB): 15-25%
        MALLOC_TRIM_THRESHOLD_: 134217728   # faster, ~0.3 GiB more at the peak (docs/running.md)
"""

DEFAULT_CONNECT_TIMEOUT = 10.0

_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")

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

# Environment variables for worker processes: any name goes (MALLOC_MMAP_THRESHOLD_ is no typo of
# MALLOC_TRIM_THRESHOLD_).
_ENVIRONMENT_KEYS = {"distributed.nanny.pre-spawn-environ", "distributed.nanny.environ"}


class ProfileError(SettingsError):
    """A cluster profile is invalid, or the cluster it describes cannot be reached or started."""


# --- parsers: (value, file, key) -> the value to keep, or ProfileError naming the file and the key ---


def _fail(where: str, key: str, value: Any, expected: str) -> NoReturn:
    raise ProfileError(f"{where}: {key} must be {expected}, got {show(value)}")


def _integer(minimum: int) -> Parser:
    def parse(value: Any, where: str, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            _fail(where, key, value, f"an integer >= {minimum}")
        return value

    return parse


def _boolean(value: Any, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        _fail(where, key, value, "true or false")
    return value


def _text(nullable: bool = False) -> Parser:
    def parse(value: Any, where: str, key: str) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            _fail(where, key, value, "a non-empty string" + (" or null" if nullable else ""))
        return value.strip()

    return parse


def _seconds(value: Any, where: str, key: str) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        seconds = float(parse_timedelta(value, default="seconds"))
    except (TypeError, ValueError, KeyError):
        seconds = -1.0
    if seconds <= 0:
        _fail(where, key, value, 'a positive duration in seconds (e.g. 10 or "10s")')
    return seconds


def _memory(value: Any, where: str, key: str) -> int | str:
    if value == "auto":
        return value
    try:
        # parse_bytes fails with AttributeError on anything but a number or a string (null, a list).
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError
        if parse_bytes(value) <= 0:
            raise ValueError
    except (TypeError, ValueError):
        _fail(where, key, value, '"auto", a number of bytes or a size such as "4GiB"')
    return value


def _mapping(value: Any, where: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        _fail(where, key, value, "a mapping (key: value lines)")
    bad_keys = [k for k in value if not isinstance(k, str)]
    if bad_keys:
        raise ProfileError(f"{where}: {key} has a non-string key {bad_keys[0]!r}")
    return dict(value)


def _optional_mapping(value: Any, where: str, key: str) -> dict[str, Any] | None:
    return None if value is None else _mapping(value, where, key)


def _address(value: Any, where: str, key: str) -> str:
    address = _text()(value, where, key)
    scheme, _, rest = address.rpartition("://")
    if scheme and scheme not in _SCHEMES:
        raise ProfileError(
            f"{where}: {key} {address!r} has an unknown scheme {scheme!r}"
            f"{did_you_mean(scheme, _SCHEMES)}; use one of {', '.join(s + '://' for s in _SCHEMES)}"
        )
    if not rest:
        raise ProfileError(f"{where}: {key} {address!r} has no host; expected e.g. tls://scheduler:8786")
    return address


def _import_path(value: Any, where: str, key: str) -> str:
    path = _text()(value, where, key)
    if "." not in path or not all(part.isidentifier() for part in path.split(".")):
        raise ProfileError(
            f"{where}: {key} must be an import path such as dask_jobqueue.SLURMCluster, got {path!r}"
        )
    return path


def _scale(value: Any, where: str, key: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return {"n": value}
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    expected = "a number of workers or the arguments of cluster.scale() (e.g. {jobs: 4} or {n: 2})"
    _fail(where, key, value, expected)


def _file(nullable: bool = False) -> Parser:
    """A file that must exist; a relative path is read from the profile's folder (``where`` is its path)."""

    def parse(value: Any, where: str, key: str) -> Path | None:
        text = _text(nullable)(value, where, key)
        if text is None:
            return None
        path = (Path(where).resolve().parent / Path(text).expanduser()).resolve()
        if not path.is_file():
            raise ProfileError(f"{where}: {key}: file not found: {path}")
        return path

    return parse


def _tls(value: Any, where: str, key: str) -> TLSSettings | None:
    if value is None:
        return None
    names = field_names(TLSSettings)
    if not isinstance(value, Mapping):
        _fail(where, key, value, f"a mapping with {', '.join(names[:-1])} and {names[-1]}")
    for name in value:
        if name not in names:
            raise ProfileError(
                f"{where}: unknown key {key}.{name}{did_you_mean(str(name), names)}; "
                f"{key} takes {', '.join(names)}"
            )
    return from_mapping(
        TLSSettings, _in_field_order(TLSSettings, value), where, error=ProfileError, prefix=f"{key}."
    )


def _dask_section(value: Any, where: str, key: str) -> dict[str, Any]:
    """Nest the section as Dask's YAML files are: top-level keys are dotted paths (as in ``dask.config.set``),
    keys of nested mappings are taken as they are (``distributed.logging`` has keys with dots)."""
    import distributed  # noqa: F401  (loads distributed's configuration defaults, checked below)

    nested: dict[str, Any] = {}
    for path, item in _mapping(value, where, key).items():
        *parents, leaf = path.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ProfileError(f"{where}: {key}: {path} conflicts with another key that sets {part}")
        if isinstance(item, Mapping) and isinstance(node.get(leaf), dict):
            dask.config.update(node[leaf], item)
        else:
            node[leaf] = dict(item) if isinstance(item, Mapping) else item
    _check_dask_keys(nested, dask.config.config, [], f"{where}: {key}")
    return nested


def _check_dask_keys(
    section: Mapping[str, Any], known: Mapping[str, Any], path: list[str], where: str
) -> None:
    """Reject near misses of existing Dask keys (``targte``); other unknown keys pass, because many mappings
    are free-form (``distributed.logging``, ``distributed.worker.resources``) and other libraries
    (``jobqueue``, ``kubernetes``) add their own."""
    for key, value in section.items():
        name = dask.config.canonical_name(key, known)
        if name in known:
            free_form = ".".join([*path, name]) in _ENVIRONMENT_KEYS
            if isinstance(value, Mapping) and isinstance(known[name], Mapping) and not free_form:
                _check_dask_keys(value, known[name], [*path, name], where)
            continue
        close = difflib.get_close_matches(key, [str(k) for k in known], n=1, cutoff=0.8)
        if close:
            raise ProfileError(
                f"{where}: {'.'.join([*path, key])} is not a Dask setting "
                f"(did you mean {'.'.join([*path, close[0]])}?)"
            )


def _storage_section(value: Any, where: str, key: str) -> dict[str, Any]:
    section = _mapping(value, where, key)
    for name in section:
        hint = "" if name in _KNOWN_STORAGE_KEYS else did_you_mean(name, _KNOWN_STORAGE_KEYS, cutoff=0.75)
        if hint:
            raise ProfileError(f"{where}: unknown key {key}.{name}{hint}")
    return section


# --- settings ----------------------------------------------------


@dataclass(frozen=True)
class TLSSettings:
    """Client certificates for a ``tls://`` scheduler (paths resolved against the profile's folder)."""

    ca_file: Path = setting(parse=_file())
    cert: Path = setting(parse=_file())
    key: Path | None = setting(None, parse=_file(nullable=True))


@dataclass(frozen=True)
class LocalSettings:
    """Keyword arguments of the ``LocalCluster`` a ``kind: local`` profile starts."""

    kind: ClassVar[str] = "local"
    n_workers: int = setting(2, parse=_integer(1))
    threads_per_worker: int = setting(1, parse=_integer(1))
    memory_limit: int | str = setting("auto", parse=_memory)
    processes: bool = setting(True, parse=_boolean)
    host: str = setting("127.0.0.1", parse=_text())
    dashboard_address: str | None = setting("127.0.0.1:8787", parse=_text(nullable=True))
    local_directory: str | None = setting(None, parse=_text(nullable=True))


@dataclass(frozen=True)
class RemoteSettings:
    """An existing scheduler that a ``kind: remote`` profile connects to."""

    kind: ClassVar[str] = "remote"
    address: str = setting(parse=_address)
    tls: TLSSettings | None = setting(None, parse=_tls)
    connect_timeout: float = setting(DEFAULT_CONNECT_TIMEOUT, parse=_seconds)
    wait_for_workers: int = setting(0, parse=_integer(0))
    wait_timeout: float = setting(300.0, parse=_seconds)


@dataclass(frozen=True)
class GenericSettings:
    """Any cluster class by import path, with its keyword arguments and ``scale`` or ``adapt`` arguments."""

    kind: ClassVar[str] = "generic"
    cluster_class: str = setting(parse=_import_path)
    cluster_kwargs: dict[str, Any] = setting(default_factory=dict, parse=_mapping)
    scale: dict[str, Any] | None = setting(None, parse=_scale)
    adapt: dict[str, Any] | None = setting(None, parse=_optional_mapping)
    connect_timeout: float = setting(DEFAULT_CONNECT_TIMEOUT, parse=_seconds)
    wait_for_workers: int = setting(0, parse=_integer(0))
    wait_timeout: float = setting(300.0, parse=_seconds)


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

    name: str = setting(parse=_text())
    source: str
    cluster: ClusterSettings
    dask: dict[str, Any] = setting(default_factory=dict, parse=_dask_section)
    storage: dict[str, Any] = setting(default_factory=dict, parse=_storage_section)

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

    def dask_overrides(self) -> dict[str, Any]:
        """The top-level entries of Dask's configuration with the profile's ``dask:`` section merged in, for
        ``dask.config.set`` (which replaces whatever a key holds, so mappings are merged with the current
        values first)."""
        current = dask.config.config
        overrides = {}
        for key, value in self.dask.items():
            name = dask.config.canonical_name(key, current)
            if isinstance(value, Mapping) and isinstance(current.get(name), Mapping):
                overrides[name] = dask.config.merge(current[name], value)
            else:
                overrides[name] = value
        return overrides


_KINDS = {settings.kind: settings for settings in (LocalSettings, RemoteSettings, GenericSettings)}
# Keys of every kind: ``kind``, and the fields of Profile that have a parser (source and cluster are not
# read from the file).
_COMMON_KEYS = ("kind", *(spec.name for spec in fields(Profile) if "parse" in spec.metadata))


# --- loading -----------------------------------------------------


def load_profile(path: str | os.PathLike[str] | None = None) -> Profile:
    """Read and validate a cluster profile; ``None`` gives the packaged default local profile.

    Raises ``ProfileError`` naming the file, the key and what was expected.
    """
    if path is None:
        return _parse_profile(yaml.safe_load(DEFAULT_PROFILE_YAML), source="<default>")
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
    return _parse_profile({} if raw is None else raw, source=str(path))


def _parse_profile(raw: Any, *, source: str) -> Profile:
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{source}: a profile must be a mapping of keys to values, got {show(raw)}")
    kind = raw.get("kind", LocalSettings.kind)
    if kind not in tuple(_KINDS):
        _fail(source, "kind", kind, "one of " + ", ".join(_KINDS) + did_you_mean(str(kind), _KINDS))
    settings = _KINDS[kind]
    _reject_unknown_keys(raw, source, kind)
    # Checked in the order the fields are declared: the common keys, then the kind's.
    default_name = Path(source).stem if source != "<default>" else "local"
    common = parse_values(
        Profile, {"name": default_name, **_in_field_order(Profile, raw)}, source, error=ProfileError
    )
    cluster = from_mapping(settings, _in_field_order(settings, raw), source, error=ProfileError)
    _check_combination(cluster, source)
    return Profile(source=source, cluster=cluster, **common)


def _in_field_order(cls: type, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``raw`` that are fields of ``cls``, in the order the fields are declared."""
    return {name: raw[name] for name in field_names(cls) if name in raw}


def _reject_unknown_keys(raw: Mapping[str, Any], source: str, kind: str) -> None:
    allowed = _COMMON_KEYS + field_names(_KINDS[kind])
    for key in raw:
        if key in allowed:
            continue
        owners = [other for other, settings in _KINDS.items() if key in field_names(settings)]
        if owners:
            default_note = " (kind defaults to local)" if "kind" not in raw else ""
            raise ProfileError(
                f"{source}: key {key!r} does not apply to kind {kind!r}{default_note}; "
                f"it belongs to kind {' or '.join(owners)}"
            )
        raise ProfileError(unknown_key(source, key, allowed, listing=f"keys for kind {kind!r}"))


def _check_combination(cluster: ClusterSettings, source: str) -> None:
    """Checks of one key against another, once each is valid on its own."""
    if isinstance(cluster, RemoteSettings) and cluster.tls is not None:
        scheme = cluster.address.partition("://")[0] if "://" in cluster.address else "tcp"
        if scheme not in ("tls", "wss"):
            raise ProfileError(
                f"{source}: tls is set but address {cluster.address!r} is not encrypted; use tls://host:port"
            )
    if isinstance(cluster, GenericSettings) and cluster.scale is not None and cluster.adapt is not None:
        raise ProfileError(f"{source}: set either scale or adapt, not both")


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
