"""Settings from YAML -> dataclasses: the one validator of job files (``config``) and cluster profiles (``profile``).

The keys a mapping may hold are the fields of a dataclass, read by ``from_mapping``: an unknown key gets a
did-you-mean hint, a missing required key is named, and each value is checked by its field's parser (a field
made with ``setting``) or else against its type annotation. Every message names the file, the key and the
value.

Example
-------
>>> from dataclasses import dataclass
>>> @dataclass
... class Reduce:
...     n_components: float | int = 0.9
>>> from_mapping(Reduce, {"n_components": 12}, "job.yml")
Reduce(n_components=12)
>>> from_mapping(Reduce, {"n_component": 12}, "job.yml")
Traceback (most recent call last):
...
segmentation.settings.SettingsError: job.yml: unknown key 'n_component' (did you mean 'n_components'?); known keys: n_components
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any

__all__ = [
    "Parser",
    "SettingsError",
    "defaults",
    "did_you_mean",
    "field_names",
    "field_types",
    "from_mapping",
    "parse_values",
    "setting",
    "show",
    "unknown_key",
]

# A field's parser: (value, file, key as shown) -> the value to store; raises the caller's error class.
Parser = Callable[[Any, str, str], Any]


class SettingsError(ValueError):
    """Settings that do not validate (a job file or a cluster profile); the message names the file and the
    key."""


def setting(default: Any = MISSING, *, parse: Parser, default_factory: Any = MISSING) -> Any:
    """A dataclass field whose value ``from_mapping`` reads with ``parse(value, where, key)``."""
    return field(default=default, default_factory=default_factory, metadata={"parse": parse})


def field_names(cls: type) -> tuple[str, ...]:
    """The keys a mapping for dataclass ``cls`` may hold, in declaration order (class variables excluded)."""
    return tuple(f.name for f in fields(cls))


def field_types(cls: type) -> dict[str, Any]:
    """Each field's type annotation, resolved (``int | None``, not the string of it)."""
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in field_names(cls)}


def defaults(cls: type) -> dict[str, Any]:
    """The default of every field that has one (default factories called); the others are required."""
    found = {}
    for spec in fields(cls):
        if spec.default is not MISSING:
            found[spec.name] = spec.default
        elif spec.default_factory is not MISSING:
            found[spec.name] = spec.default_factory()
    return found


def did_you_mean(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``candidates``, or ``""`` when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def unknown_key(where: str, key: Any, known: Iterable[str], listing: str = "known keys") -> str:
    """The message for a key that is not one of ``known``: a hint, then the keys that are."""
    known = list(known)
    return f"{where}: unknown key {key!r}{did_you_mean(str(key), known)}; {listing}: {', '.join(known)}"


def show(value: Any) -> str:
    """A value as a message quotes it, with its YAML type: ``'two' (str)``, ``nothing (null)``."""
    return "nothing (null)" if value is None else f"{value!r} ({type(value).__name__})"


def from_mapping(
    cls: type, data: object, where: str, *, error: type[SettingsError] = SettingsError, prefix: str = ""
) -> Any:
    """Build dataclass ``cls`` from a mapping (``None``: all defaults), with the checks of ``parse_values``.

    A missing required key is reported first, then the keys in the mapping's order. ``where`` names the
    file (nested sections add ``.section``); ``prefix`` is put before the keys a message names (``tls.``)
    and ``error`` is the class raised.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a mapping of keys, got {type(data).__name__}")
    optional = defaults(cls)
    for name in field_names(cls):
        if name not in data and name not in optional:
            raise error(f"{where}: missing required key {prefix}{name}")
    return cls(**parse_values(cls, data, where, error=error, prefix=prefix))


def parse_values(
    cls: type, data: Mapping, where: str, *, error: type[SettingsError] = SettingsError, prefix: str = ""
) -> dict[str, Any]:
    """The values of ``data`` read as the fields of dataclass ``cls`` (only the keys present).

    An unknown key is an error with a hint; a field made with ``setting`` is read by its parser, any other
    is checked against its annotation: an int is accepted for a float, a string for a list of strings,
    a mapping for a nested dataclass; in a union, an option that is the value's exact type wins (12 for
    ``float | int`` stays the int 12).
    """
    known = {spec.name: spec for spec in fields(cls)}
    hints = field_types(cls)
    values = {}
    for key, value in data.items():
        if key not in known:
            raise error(unknown_key(where, key, known))
        parse = known[key].metadata.get("parse")
        if parse is not None:
            values[key] = parse(value, where, f"{prefix}{key}")
        else:
            values[key] = _coerce(hints[key], value, f"{where}.{key}", error)
    return values


def _coerce(annotation: Any, value: Any, where: str, error: type[SettingsError]) -> Any:
    if is_dataclass(annotation):
        return from_mapping(annotation, value, where, error=error)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        if type(value) in options:  # an exact match first: converting 12 to 12.0 would change its meaning
            return _coerce(type(value), value, where, error)
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, where, error)
            except SettingsError as failure:
                errors.append(str(failure))
        raise error(
            errors[0]
            if len(errors) == 1
            else f"{where}: {value!r} is not a valid value "
            f"(expected {' or '.join(_type_name(o) for o in options)})"
        )
    if origin is list:
        (item,) = typing.get_args(annotation)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise error(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]", error) for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is str and isinstance(value, os.PathLike):
        return str(value)
    if annotation in (int, float, str, bool) and not (
        isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    ):
        raise error(f"{where}: expected {_type_name(annotation)}, got {value!r}")
    return value


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", str(annotation))
