"""The one validator of job files and cluster profiles: mappings -> dataclasses, and its messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from segmentation.settings import (
    SettingsError,
    defaults,
    did_you_mean,
    field_names,
    field_types,
    from_mapping,
    parse_values,
    setting,
    show,
    unknown_key,
)


class CheckError(SettingsError):
    """The error class a caller asks for."""


@dataclass
class Inner:
    share: float = 0.5
    count: int | None = None


@dataclass
class Outer:
    label: str
    tags: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)
    size: float | int = 0.9
    flag: bool = False


def _positive(value, where, key):
    if not isinstance(value, int) or value <= 0:
        raise CheckError(f"{where}: {key} must be positive, got {show(value)}")
    return value * 10


@dataclass(frozen=True)
class Parsed:
    kind: ClassVar[str] = "parsed"
    needed: int = setting(parse=_positive)
    optional: int = setting(1, parse=_positive)


def test_field_helpers_read_the_dataclass():
    assert field_names(Parsed) == ("needed", "optional")  # class variables are not keys
    assert field_types(Outer) == {
        "label": str,
        "tags": list[str],
        "inner": Inner,
        "size": float | int,
        "flag": bool,
    }
    assert defaults(Outer) == {"tags": [], "inner": Inner(), "size": 0.9, "flag": False}  # label is required
    assert defaults(Parsed) == {"optional": 1}


def test_a_mapping_becomes_nested_dataclasses_with_conversions():
    built = from_mapping(
        Outer,
        {"label": Path("a/b"), "tags": "one", "inner": {"share": 1, "count": None}, "flag": True},
        "job.yml",
    )
    assert built == Outer(label="a/b", tags=["one"], inner=Inner(share=1.0, count=None), flag=True)
    assert type(built.inner.share) is float  # an int is taken for a float


@pytest.mark.parametrize(("value", "expected"), [(12, 12), (1, 1), (0.9, 0.9), (1.0, 1.0)])
def test_in_a_union_the_exact_type_wins(value, expected):
    """12 components stay the int 12: converted to 12.0 first, it turned into a variance share (and the job
    rejected it)."""
    size = from_mapping(Outer, {"label": "x", "size": value}, "job.yml").size
    assert size == expected and type(size) is type(expected)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"label": "x", "flga": True},
            r"^job\.yml: unknown key 'flga' \(did you mean 'flag'\?\); known keys: label, tags, inner, size, flag$",
        ),
        (
            {"label": "x", "inner": {"shares": 1}},
            r"^job\.yml\.inner: unknown key 'shares' \(did you mean 'share'",
        ),
        ({"label": "x", "inner": 5}, r"^job\.yml\.inner: expected a mapping of keys, got int$"),
        ({"label": "x", "flag": "yes"}, r"^job\.yml\.flag: expected bool, got 'yes'$"),
        ({"label": "x", "inner": {"count": True}}, r"^job\.yml\.inner\.count: expected int, got True$"),
        (
            {"label": "x", "size": True},
            r"^job\.yml\.size: True is not a valid value \(expected float or int\)$",
        ),
        ({"label": "x", "tags": ["a", 3]}, r"^job\.yml\.tags\[1\]: expected str, got 3$"),
        ({"label": "x", "tags": 3}, r"^job\.yml\.tags: expected a list, got 3$"),
        ({}, r"^job\.yml: missing required key label$"),
    ],
)
def test_bad_values_are_named_with_the_file_and_key(data, message):
    with pytest.raises(CheckError, match=message):
        from_mapping(Outer, data, "job.yml", error=CheckError)


def test_not_a_mapping_and_none():
    with pytest.raises(SettingsError, match=r"^job\.yml: expected a mapping of keys, got list$"):
        from_mapping(Inner, ["share"], "job.yml")
    assert from_mapping(Inner, None, "job.yml") == Inner()


def test_fields_with_a_parser_are_read_by_it_with_the_prefixed_key():
    assert from_mapping(Parsed, {"needed": 2}, "p.yml") == Parsed(needed=20, optional=1)
    with pytest.raises(CheckError, match=r"^p\.yml: tls\.optional must be positive, got 0 \(int\)$"):
        from_mapping(Parsed, {"needed": 2, "optional": 0}, "p.yml", prefix="tls.")
    with pytest.raises(SettingsError, match=r"^p\.yml: missing required key tls\.needed$"):
        from_mapping(Parsed, {"optional": 0}, "p.yml", prefix="tls.")  # reported before the values


def test_parse_values_reads_only_the_keys_given():
    assert parse_values(Parsed, {"optional": 3}, "p.yml") == {"optional": 30}
    with pytest.raises(SettingsError, match=r"unknown key 'other'; known keys: needed, optional$"):
        parse_values(Parsed, {"other": 3}, "p.yml")


def test_hints_and_messages():
    assert did_you_mean("n_worker", ["n_workers", "host"]) == " (did you mean 'n_workers'?)"
    assert did_you_mean("zzz", ["n_workers", "host"]) == ""
    assert did_you_mean("n_wrk", ["n_workers"]) == " (did you mean 'n_workers'?)"  # close: 0.71
    assert did_you_mean("n_wrk", ["n_workers"], cutoff=0.75) == ""
    assert unknown_key("p.yml", "hots", ["host", "port"], listing="keys for kind 'local'") == (
        "p.yml: unknown key 'hots' (did you mean 'host'?); keys for kind 'local': host, port"
    )
    assert (show(None), show("two"), show(1.5)) == ("nothing (null)", "'two' (str)", "1.5 (float)")
