"""Dependencies: ranges, not pins, in pyproject.toml; environment.yml agrees; the lock lies inside the ranges."""

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(entries: list[str]) -> dict[str, SpecifierSet]:
    parsed = (Requirement(entry) for entry in entries)
    return {canonicalize_name(r.name): r.specifier for r in parsed}


def _all_requirements() -> dict[str, SpecifierSet]:
    entries = PROJECT["dependencies"] + [
        r for extra in PROJECT["optional-dependencies"].values() for r in extra
    ]
    return _requirements(entries)


def test_dependencies_are_ranges_with_a_lower_bound_and_no_exact_pins():
    for name, specifier in _all_requirements().items():
        operators = {s.operator for s in specifier}
        assert "==" not in operators and "===" not in operators, f"{name} is pinned: {specifier}"
        assert ">=" in operators, f"{name} has no lower bound: {specifier}"


def test_environment_yml_declares_the_same_ranges():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [e for e in environment["dependencies"] if isinstance(e, str) and e not in ("pip",)]
    python = [e for e in conda if e.startswith("python")]
    assert python == ["python" + PROJECT["requires-python"]]
    declared = _requirements([e for e in conda if not e.startswith("python")])
    expected = {name: spec for name, spec in _requirements(PROJECT["dependencies"]).items()}
    assert declared == expected


def test_every_lock_pin_lies_inside_its_range():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = match[2]
    for name, specifier in _all_requirements().items():
        assert name in pins, f"{name} is missing from requirements.lock (run `make lock`)"
        assert specifier.contains(pins[name], prereleases=True), (
            f"lock pins {name}=={pins[name]} outside {specifier}"
        )


def test_console_script_is_declared():
    assert PROJECT["scripts"]["segmentation"] == "segmentation.cli:main"
