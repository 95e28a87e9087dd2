"""The command behaves like the tools its users know: --version, -v/-q anywhere, help text and an example
for every subcommand, only the options a subcommand uses, and `validate` that checks a job in under 3 s
without starting a cluster."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segmentation import __version__, cli
from segmentation.schema import load_schema

ROOT = Path(__file__).resolve().parents[1]


def quick_limit() -> float:
    """3 s, the bound for checks made before any cluster starts, on an idle machine; stretched by the
    load of a shared one (2 cores running 8 processes: 12 s), still far below a cluster start (~25 s)."""
    return 3 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "segmentation.cli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def job(tmp_path) -> Path:
    """A job file over two tiny tables (a header and one row each: all validate reads)."""
    columns = load_schema().columns("population")
    for table in ("population", "customers"):
        row = ["1"] + [""] * (len(columns) - 1)
        (tmp_path / f"{table}.csv").write_text(";".join(columns) + "\n" + ";".join(row) + "\n")
    path = tmp_path / "job.yml"
    path.write_text("inputs:\n  population: population.csv\n  customers: customers.csv\noutput: runs/x\n")
    return path


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"segmentation {__version__}"


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["-v", "validate", "job.yml"], 1, 0),
        (["validate", "job.yml", "-v"], 1, 0),
        (["validate", "-q", "job.yml"], 0, 1),
        (["-q", "validate", "job.yml"], 0, 1),
        (["validate", "job.yml", "-vv"], 2, 0),
        (["validate", "job.yml"], 0, 0),
    ],
)
def test_verbosity_before_or_after_the_subcommand(argv, verbose, quiet):
    args = cli.build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_and_every_subcommand_an_example(name):
    parser = subcommands()[name]
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert undocumented == []
    assert f"Example:\n  segmentation {name}" in parser.format_help()


def test_elbow_lists_only_the_options_it_uses():
    options = {o for a in subcommands()["elbow"]._actions for o in a.option_strings}
    for unused in ("--k", "--out", "--no-report", "--mailout-train", "--mailout-test"):
        assert unused not in options
    assert {"--k-min", "--k-max", "--population", "--customers", "--sep", "--cluster"} <= options
    run_options = {o for a in subcommands()["run"]._actions for o in a.option_strings}
    assert {"--k", "--out", "--no-report", "--mailout-train", "--sep", "--allow-duplicate-ids"} <= run_options


def test_validate_checks_a_good_job_quickly_without_a_cluster(job):
    started = time.perf_counter()
    result = run_cli("validate", job, "-q", cwd=job.parent)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert "population: population.csv: header of 366 columns" in result.stdout
    assert "no cluster started" in result.stdout
    assert "Dask dashboard" not in result.stdout + result.stderr
    assert elapsed < quick_limit(), elapsed
    assert not (job.parent / "runs").exists()


def test_validate_finds_a_missing_column_quickly(job):
    path = job.parent / "customers.csv"
    header, row = path.read_text().splitlines()
    path.write_text(header.replace(";ZABEOTYP", "") + "\n" + row[:-1] + "\n")
    started = time.perf_counter()
    result = run_cli("validate", job, cwd=job.parent)
    elapsed = time.perf_counter() - started
    assert result.returncode == cli.EXIT_INPUT
    assert (
        result.stderr.strip()
        == "error: customers.csv: required column(s) missing for table customers: ZABEOTYP"
    )
    assert elapsed < quick_limit(), elapsed


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("inputs:\n  population: population.csv\n  customers: customers.csv\nkmeans:\n  k_mn: 3\n", "k_mn"),
        (
            "inputs:\n  population: population.csv\n  customers: customers.csv\ncluster: nowhere.yml\n",
            "cluster profile not found: nowhere.yml",
        ),
        ("inputs:\n  population: population.csv\n  customers: customers.csv\nsep: ';;'\n", "sep must be one"),
    ],
    ids=["unknown-key", "missing-profile", "bad-sep"],
)
def test_validate_configuration_errors_exit_2(job, capsys, content, expected, monkeypatch):
    job.write_text(content)
    monkeypatch.chdir(job.parent)
    assert cli.main(["validate", str(job)]) == cli.EXIT_CONFIG
    error = capsys.readouterr().err
    assert error.startswith("error: ") and expected in error and error.count("\n") == 1
