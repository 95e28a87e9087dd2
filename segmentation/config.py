"""Job specifications (YAML) -> small typed objects, validated on load (``settings.from_mapping``, as cluster
profiles are) with messages a user understands."""

from __future__ import annotations

import ast
import functools
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .settings import SettingsError, from_mapping

logger = logging.getLogger(__name__)

_SEGMENTERS = Path(__file__).parent / "segmenters"


@functools.lru_cache(maxsize=1)
def _declared_algorithms() -> tuple[str, ...]:
    """Names and aliases given to ``register(...)`` in the modules of ``segmentation/segmenters``, read from
    their source: importing the registry imports scikit-learn and Dask (2 s), too slow for checking a job."""
    names = []
    for path in sorted(_SEGMENTERS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register" and node.args:
                names.append(ast.literal_eval(node.args[0]))
                for keyword in node.keywords:
                    if keyword.arg == "aliases":
                        names.extend(ast.literal_eval(keyword.value))
    return tuple(names)


def algorithms() -> tuple[str, ...]:
    """The clustering algorithms a job may name: those the segmenter modules declare, and any registered
    since (e.g. by a plugin module already imported)."""
    registry = sys.modules.get("segmentation.segmenters.base")
    found = list(_declared_algorithms())
    if registry is not None:
        found += [name for name in (*registry.algorithms(), *registry._ALIASES) if name not in found]
    return tuple(found)


class ConfigError(SettingsError):
    """A job spec that does not validate; the message names the file and the key."""


@dataclass
class Inputs:
    population: str | None = None
    customers: str | None = None
    mailout_train: str | None = None
    mailout_test: str | None = None


@dataclass
class CleanConfig:
    column_missing_threshold: float = 0.3
    row_missing_threshold: float = 0.5


@dataclass
class ReduceConfig:
    solver: str = "gram"
    n_components: float | int = 0.9


@dataclass
class ClusterConfig:
    """The job file's ``clustering:`` section (formerly ``kmeans:``, still read with a warning)."""

    algorithm: str = "kmeans"
    k: int | None = None
    k_min: int = 2
    k_max: int = 15
    elbow: bool | None = None  # None: run the elbow only when k is not given
    # Rows the elbow's silhouettes are computed on (quadratic: 10,000 rows took 1.2 s per k, 5,000 0.2 s).
    silhouette_sample: int = 5_000
    covariance_type: str = "full"  # gmm only: full or diag
    refine: bool = True  # bisecting only: refine the leaves by Lloyd over all rows


@dataclass
class JobConfig:
    """Everything a run needs. Relative paths in a job file are taken relative to the working directory."""

    name: str = "segmentation"
    inputs: Inputs = field(default_factory=Inputs)
    attributes: str | None = None
    output: str = "runs/segmentation"
    cluster: str | None = None
    seed: int = 0
    strict: bool = False
    sep: str = ";"  # the CSV delimiter of every input table
    allow_duplicate_ids: bool = False  # keep rows whose id repeats within a table (counted in run.json)
    blocksize: int = 16_000_000
    work_dir: str | None = None
    clean: CleanConfig = field(default_factory=CleanConfig)
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
    clustering: ClusterConfig = field(default_factory=ClusterConfig)
    report: bool = True
    top_targets: int = 1000

    def validate(self, source: str = "job") -> JobConfig:
        checks = [
            (
                0 < self.clean.column_missing_threshold <= 1,
                "clean.column_missing_threshold must lie in (0, 1]",
            ),
            (0 < self.clean.row_missing_threshold <= 1, "clean.row_missing_threshold must lie in (0, 1]"),
            (
                self.reduce.solver in ("gram", "incremental", "tsqr"),
                "reduce.solver must be gram, incremental or tsqr",
            ),
            (
                _valid_components(self.reduce.n_components),
                "reduce.n_components must be an integer >= 1 or a variance share in (0, 1)",
            ),
            (
                self.clustering.algorithm in algorithms(),
                f"clustering.algorithm must be one of {', '.join(algorithms())}, "
                f"got {self.clustering.algorithm!r}",
            ),
            (
                self.clustering.covariance_type in ("full", "diag"),
                f"clustering.covariance_type must be full or diag, got {self.clustering.covariance_type!r}",
            ),
            (self.clustering.k is None or self.clustering.k >= 2, "clustering.k must be at least 2"),
            (
                2 <= self.clustering.k_min <= self.clustering.k_max,
                f"clustering.k_min ({self.clustering.k_min}, --k-min) must be >= 2 and <= clustering.k_max "
                f"({self.clustering.k_max}, --k-max)",
            ),
            (self.blocksize >= 1_000_000, "blocksize must be at least 1000000 bytes"),
            (self.top_targets >= 1, "top_targets must be at least 1"),
            (
                len(self.sep) == 1 and self.sep not in '\r\n"',
                f"sep must be one character other than a quote or line end, got {self.sep!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{source}: {message}")
        if not self.inputs.population or not self.inputs.customers:
            raise ConfigError(
                f"{source}: inputs.population and inputs.customers are required "
                "(in the job file or as --population / --customers)"
            )
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def _valid_components(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 1
    return isinstance(value, float) and 0 < value < 1


def load_job(path: str | os.PathLike | None, overrides: dict | None = None) -> JobConfig:
    """Load a job spec (None: defaults) and apply command-line overrides given as dotted keys."""
    data: dict = {}
    source = str(path) if path else "command line"
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: job file not found") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a job file is a mapping of keys")
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                node[parent] = {}
            node = node[parent]
        node[leaf] = value
    deprecated = _read_kmeans_section(data, source)
    config = from_mapping(JobConfig, data, source, error=ConfigError).validate(source)
    if deprecated:  # after validation, so that a rejected job prints its error alone
        logger.warning("%s: the 'kmeans:' section is deprecated; rename it 'clustering:'", source)
    return config


def _read_kmeans_section(data: dict, source: str) -> bool:
    """Fold the deprecated ``kmeans:`` section into ``clustering:`` (whose own keys win); True if there
    was one."""
    if "kmeans" not in data:
        return False
    old = data.pop("kmeans")
    if old is not None and not isinstance(old, dict):
        raise ConfigError(f"{source}: kmeans: expected a mapping of keys, got {type(old).__name__}")
    current = data.get("clustering")
    if current is not None and not isinstance(current, dict):
        raise ConfigError(f"{source}: clustering: expected a mapping of keys, got {type(current).__name__}")
    data["clustering"] = {**(old or {}), **(current or {})}
    return True
