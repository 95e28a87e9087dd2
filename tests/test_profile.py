"""Cluster profiles: loading, validation with messages naming the file, key and value, storage options."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil

import pytest

from segmentation.config import ConfigError
from segmentation.profile import (
    GenericSettings,
    LocalSettings,
    ProfileError,
    RemoteSettings,
    load_profile,
)
from segmentation.settings import SettingsError, field_names
from tests.clusters import PROFILES, REPO, write_profile

KINDS = (LocalSettings, RemoteSettings, GenericSettings)


def test_default_profile_is_cluster_config_local_yml():
    shipped = load_profile(PROFILES / "local.yml")
    assert dataclasses.replace(shipped, source="<default>") == load_profile(None)
    assert shipped.cluster == LocalSettings(n_workers=2, threads_per_worker=1, host="127.0.0.1")
    assert shipped.cluster.dashboard_address.startswith("127.0.0.1:")


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("local", LocalSettings),
        ("laptop-lowmem", LocalSettings),
        ("generic-slurm", GenericSettings),
        ("generic-kubernetes", GenericSettings),
        ("generic-coiled", GenericSettings),
    ],
)
def test_shipped_profiles_load(name, settings):
    profile = load_profile(PROFILES / f"{name}.yml")
    assert isinstance(profile.cluster, settings)


def test_shipped_remote_profile_loads_with_its_certificates(tmp_path, tls_files):
    shutil.copy(PROFILES / "remote.yml", tmp_path / "remote.yml")
    (tmp_path / "certs").mkdir()
    for source, target in [("ca", "ca.pem"), ("client", "client.pem"), ("client_key", "client-key.pem")]:
        shutil.copy(tls_files[source], tmp_path / "certs" / target)
    profile = load_profile(tmp_path / "remote.yml")
    assert isinstance(profile.cluster, RemoteSettings)
    assert profile.cluster.tls.ca_file == tmp_path / "certs" / "ca.pem"
    assert profile.cluster.address.startswith("tls://")


def test_shipped_remote_profile_without_certificates_names_the_missing_file():
    with pytest.raises(ProfileError, match=r"remote\.yml: tls\.ca_file: file not found: .*certs/ca\.pem"):
        load_profile(PROFILES / "remote.yml")


def test_laptop_lowmem_sets_memory_thresholds():
    profile = load_profile(PROFILES / "laptop-lowmem.yml")
    assert profile.cluster.memory_limit == "1GiB"
    memory = profile.dask["distributed"]["worker"]["memory"]
    assert memory == {"target": 0.5, "spill": False, "pause": 0.8, "terminate": 0.95}


BAD_PROFILES = [
    ("kind: local\nn_worker: 2\n", r"profile\.yml: unknown key 'n_worker' \(did you mean 'n_workers'\?\)"),
    ("n_workers: two\n", r"profile\.yml: n_workers must be an integer >= 1, got 'two' \(str\)"),
    ("n_workers: 0\n", r"n_workers must be an integer >= 1, got 0"),
    ("threads_per_worker: true\n", r"threads_per_worker must be an integer >= 1, got True \(bool\)"),
    ("memory_limit: lots\n", r"memory_limit must be \"auto\", a number of bytes or a size"),
    ("memory_limit: null\n", r"memory_limit must be \"auto\", .*, got nothing \(null\)"),
    ("memory_limit: [1GiB]\n", r"memory_limit must be \"auto\", .*, got \['1GiB'\] \(list\)"),
    ("processes: yes please\n", r"processes must be true or false"),
    (
        "kind: remot\naddress: tcp://127.0.0.1:8786\n",
        r"kind must be one of local, remote, generic \(did you mean",
    ),
    (
        "address: tcp://127.0.0.1:8786\n",
        r"key 'address' does not apply to kind 'local' \(kind defaults to local\)",
    ),
    ("kind: remote\n", r"missing required key address"),
    ("kind: remote\naddress: htp://host:8786\n", r"unknown scheme 'htp'"),
    (
        "kind: remote\naddress: tcp://127.0.0.1:8786\nconnect_timeout: -1\n",
        r"connect_timeout must be a positive",
    ),
    ("kind: remote\naddress: tcp://127.0.0.1:8786\nconnect_timeout: soon\n", r"connect_timeout must be"),
    (
        "kind: remote\naddress: tls://127.0.0.1:8786\ntls: {ca_file: ca.pem, cert: missing.pem}\n",
        r"profile\.yml: tls\.ca_file: file not found: .*ca\.pem",
    ),
    (
        "kind: remote\naddress: tls://127.0.0.1:8786\ntls: {ca_file: x, certfile: y}\n",
        r"tls\.certfile.*'cert'",
    ),
    ("kind: remote\naddress: tls://127.0.0.1:8786\ntls: [ca.pem]\n", r"tls must be a mapping"),
    (
        "dask:\n  distributed.worker.memory.targte: 0.5\n",
        r"dask: distributed\.worker\.memory\.targte is not a Dask setting "
        r"\(did you mean distributed\.worker\.memory\.target\?\)",
    ),
    (
        "dask:\n  distributd:\n    worker: {}\n",
        r"dask: distributd is not a Dask setting \(did you mean distributed\?\)",
    ),
    (
        "dask:\n  distributed:\n    worker:\n      memory: {spil: 0.6}\n",
        r"did you mean distributed\.worker\.memory\.spill\?",
    ),
    ("dask: 0.5\n", r"dask must be a mapping"),
    ("storage:\n  endpoint: http://127.0.0.1:9000\n", r"storage\.endpoint \(did you mean 'endpoint_url'\?\)"),
    ("kind: generic\n", r"missing required key cluster_class"),
    ("kind: generic\ncluster_class: LocalCluster\n", r"cluster_class must be an import path"),
    (
        "kind: generic\ncluster_class: distributed.LocalCluster\nscale: 2\nadapt: {maximum: 2}\n",
        r"either scale or adapt",
    ),
    (
        "kind: generic\ncluster_class: distributed.LocalCluster\nscale: lots\n",
        r"scale must be a number of workers",
    ),
    (
        "kind: generic\ncluster_class: distributed.LocalCluster\nn_workers: 2\n",
        r"'n_workers' does not apply to kind",
    ),
    ("- kind: local\n", r"profile\.yml: a profile must be a mapping"),
    ("kind: local\n  n_workers: 2\n", r"profile\.yml: not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_PROFILES)
def test_bad_profiles_are_rejected_with_a_clear_message(tmp_path, text, message):
    path = write_profile(tmp_path, text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_missing_profile_file(tmp_path):
    with pytest.raises(ProfileError, match=r"cluster profile not found: .*nope\.yml"):
        load_profile(tmp_path / "nope.yml")


def test_profile_error_is_a_settings_error_as_a_job_files_is():
    assert issubclass(ProfileError, SettingsError) and issubclass(ConfigError, SettingsError)
    assert issubclass(SettingsError, ValueError)


@pytest.mark.parametrize("settings", KINDS, ids=lambda s: s.kind)
def test_a_key_of_another_kind_is_named_with_its_kind(tmp_path, settings):
    """The keys of a kind are the fields of its settings class: each field of the other kinds is refused
    with the kind it belongs to."""
    foreign = {key for other in KINDS if other is not settings for key in field_names(other)}
    for key in sorted(foreign - set(field_names(settings))):
        owners = " or ".join(other.kind for other in KINDS if key in field_names(other))
        path = write_profile(tmp_path, f"kind: {settings.kind}\n{key}: 1\n")
        with pytest.raises(ProfileError, match=rf"key '{key}' does not apply to kind '{settings.kind}'; "
                           rf"it belongs to kind {owners}$"):  # fmt: skip
            load_profile(path)


def test_the_profile_reference_documents_every_key_of_every_kind():
    """docs/running.md has a table of keys for every kind, and one of the keys every kind takes."""
    reference = (REPO / "docs" / "running.md").read_text().split("## Profile reference")[1].split("\n## ")[0]
    tables = {}
    for block in re.split(r"\n(?=Keys for every kind:|`kind: \w+`)", reference)[1:]:
        title = re.match(r"`kind: (\w+)`|Keys for every kind", block)
        rows = re.findall(r"^\| ([^|]+) \|", block, flags=re.MULTILINE)
        tables[title.group(1) or "every"] = [key for row in rows for key in re.findall(r"`(\w+)`", row)]
    assert tables.pop("every") == ["kind", "name", "dask", "storage"]
    assert tables == {settings.kind: list(field_names(settings)) for settings in KINDS}


def test_dask_section_nests_dotted_keys_and_allows_free_form_and_other_libraries(tmp_path):
    path = write_profile(
        tmp_path,
        """
        dask:
          distributed.worker.memory.target: 0.4
          distributed:
            worker:
              memory: {spill: 0.5}
              resources: {GPU: 1}
            scheduler:
              default-task-durations: {read.csv-1: 2s}
          jobqueue.slurm.walltime: "01:00:00"
          distributed.nanny.pre-spawn-environ: {MALLOC_MMAP_THRESHOLD_: 16777216}
        """,
    )
    assert load_profile(path).dask == {
        "distributed": {
            "worker": {"memory": {"target": 0.4, "spill": 0.5}, "resources": {"GPU": 1}},
            "scheduler": {"default-task-durations": {"read.csv-1": "2s"}},
            "nanny": {"pre-spawn-environ": {"MALLOC_MMAP_THRESHOLD_": 16777216}},
        },
        "jobqueue": {"slurm": {"walltime": "01:00:00"}},
    }


def test_name_defaults_to_file_stem(tmp_path):
    assert load_profile(write_profile(tmp_path, "kind: local\n", "my-laptop.yml")).name == "my-laptop"


# --- storage options ---------------------------------------------


@pytest.fixture
def clean_storage_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("AWS_", "FSSPEC_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_storage_options_come_from_the_profile(tmp_path, clean_storage_env):
    path = write_profile(tmp_path, "storage:\n  endpoint_url: http://127.0.0.1:9000\n  anon: false\n")
    assert load_profile(path).storage_options == {"endpoint_url": "http://127.0.0.1:9000", "anon": False}
    assert load_profile(None).storage_options == {}


def test_storage_options_fall_back_to_the_environment(tmp_path, clean_storage_env):
    env = clean_storage_env
    env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    env.setenv("AWS_ENDPOINT_URL", "http://aws-endpoint:9000")
    env.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    env.setenv("FSSPEC_S3_ENDPOINT_URL", "http://fsspec-endpoint:9000")
    options = load_profile(write_profile(tmp_path, "kind: local\n")).storage_options
    assert options == {
        "endpoint_url": "http://fsspec-endpoint:9000",
        "key": "env-key",
        "secret": "env-secret",
        "client_kwargs": {"region_name": "eu-central-1"},
    }


def test_storage_options_in_the_profile_win_and_credentials_stay_together(tmp_path, clean_storage_env):
    env = clean_storage_env
    env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    env.setenv("AWS_SESSION_TOKEN", "env-token")
    env.setenv("AWS_ENDPOINT_URL", "http://aws-endpoint:9000")
    path = write_profile(
        tmp_path,
        "storage:\n  key: profile-key\n  secret: profile-secret\n  endpoint_url: http://minio:9000\n",
    )
    assert load_profile(path).storage_options == {
        "key": "profile-key",
        "secret": "profile-secret",
        "endpoint_url": "http://minio:9000",
    }


def test_anonymous_storage_takes_no_credentials_from_the_environment(tmp_path, clean_storage_env):
    clean_storage_env.setenv("AWS_ACCESS_KEY_ID", "env-key")
    clean_storage_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert load_profile(write_profile(tmp_path, "storage: {anon: true}\n")).storage_options == {"anon": True}
