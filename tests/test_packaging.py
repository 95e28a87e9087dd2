"""environment.yml (conda users) and pyproject.toml (pip) pin the same versions."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>]", requirement, maxsplit=1)[0].strip().lower()


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {_name(r): r.split("==")[1] for r in project["dependencies"]}
    assert all("==" in r for r in project["dependencies"]), "every runtime dependency is pinned"
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, str) and "=" in entry:
            name, version = entry.split("=", 1)
            conda[name.lower()] = version
    assert conda.pop("python") == project["requires-python"].split(",")[0].lstrip(">=")
    assert conda == pinned


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["segmentation"] == "segmentation.cli:main"
