"""Job files -> JobConfig: values, command-line overrides, and messages naming the file, key and value."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.decomposition import PCA

from segmentation.config import ConfigError, JobConfig, load_job
from segmentation.decompose import make_pca

INPUTS = "inputs: {population: p.csv, customers: c.csv}\n"


def write_job(tmp_path, text: str):
    path = tmp_path / "job.yml"
    path.write_text(INPUTS + text)
    return path


@pytest.mark.parametrize("solver", ["gram", "incremental"])
@pytest.mark.parametrize(("written", "kept"), [("12", 12), ("1", 1), ("0.5", None)])
def test_n_components_is_a_count_when_an_integer_and_a_variance_share_when_a_fraction(
    tmp_path, solver, written, kept
):
    """An integer (12) was rejected: it was turned into 12.0 before the check for a share in (0, 1)."""
    config = load_job(write_job(tmp_path, f"reduce: {{n_components: {written}, solver: {solver}}}\n"))
    assert config.reduce.n_components == float(written)
    assert isinstance(config.reduce.n_components, int) == (kept is not None)
    X = np.random.default_rng(0).normal(size=(600, 20)) * np.linspace(3, 0.5, 20)
    pca = make_pca(config.reduce.solver, config.reduce.n_components).fit(X)
    expected = kept or PCA(n_components=0.5, svd_solver="full").fit(X).n_components_
    assert pca.n_components_ == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nmae: x\n", r"job\.yml: unknown key 'nmae' \(did you mean 'name'\?\); known keys: name, inputs, "),
        (
            "clean: {column_missing_treshold: 0.2}\n",
            r"job\.yml\.clean: unknown key 'column_missing_treshold'",
        ),
        ("clean: 5\n", r"job\.yml\.clean: expected a mapping of keys, got int$"),
        ("seed: x\n", r"job\.yml\.seed: expected int, got 'x'$"),
        ("clustering: {k: 8.0}\n", r"job\.yml\.clustering\.k: expected int, got 8\.0$"),
        (
            "reduce: {n_components: 12.0}\n",
            r"job\.yml: reduce\.n_components must be an integer >= 1 or a variance",
        ),
        (
            "reduce: {n_components: 0}\n",
            r"job\.yml: reduce\.n_components must be an integer >= 1 or a variance",
        ),
        (
            "reduce: {n_components: half}\n",
            r"n_components: 'half' is not a valid value \(expected float or int\)",
        ),
        ("reduce: {solver: svd}\n", r"job\.yml: reduce\.solver must be gram, incremental or tsqr$"),
        (
            "clustering: {k_min: 9, k_max: 4}\n",
            r"clustering\.k_min \(9, --k-min\) must be >= 2 and <= clustering",
        ),
        ("sep: ab\n", r"job\.yml: sep must be one character other than a quote or line end, got 'ab'$"),
        ("kmeans: 5\n", r"job\.yml: kmeans: expected a mapping of keys, got int$"),
    ],
)
def test_mistakes_are_named_with_the_file_key_and_value(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_job(write_job(tmp_path, text))


def test_missing_inputs_and_files(tmp_path):
    with pytest.raises(ConfigError, match=r"inputs\.population and inputs\.customers are required"):
        load_job(None)
    with pytest.raises(ConfigError, match=r"nope\.yml: job file not found"):
        load_job(tmp_path / "nope.yml")
    (tmp_path / "list.yml").write_text("- a\n")
    with pytest.raises(ConfigError, match=r"list\.yml: a job file is a mapping of keys"):
        load_job(tmp_path / "list.yml")


def test_overrides_take_dotted_keys_and_ignore_none(tmp_path):
    path = write_job(tmp_path, "seed: 3\nclustering: {k: 5}\n")
    config = load_job(
        path, {"seed": None, "clustering.k": 7, "reduce.n_components": 4, "inputs.customers": "x"}
    )
    assert (config.seed, config.clustering.k, config.reduce.n_components) == (3, 7, 4)
    assert (config.inputs.population, config.inputs.customers) == ("p.csv", "x")
    assert (
        config.to_dict()["clean"] == JobConfig().to_dict()["clean"]
    )  # sections left out keep their defaults


def test_the_kmeans_section_is_read_into_clustering_with_a_warning(tmp_path, caplog):
    path = write_job(tmp_path, "kmeans: {k: 4, k_max: 3}\nclustering: {k_max: 9}\n")
    with caplog.at_level(logging.WARNING, logger="segmentation.config"):
        config = load_job(path)
    assert (config.clustering.k, config.clustering.k_max) == (4, 9)  # clustering's own keys win
    assert "the 'kmeans:' section is deprecated" in caplog.text
