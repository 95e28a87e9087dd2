"""Number formats and small helpers shared by the report's text, figures and tables."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence

import pandas as pd

from ..model import INSUFFICIENT as INSUFFICIENT

logger = logging.getLogger(__name__)


def format_share(share: float) -> str:
    """0.1234 -> '12.3%'."""
    return f"{100 * share:.1f}%"


def format_ratio(ratio: float) -> str:
    """2.4051 -> '2.41'; 'n/a' when a segment is empty in the population (no finite ratio)."""
    return f"{ratio:.2f}" if math.isfinite(ratio) else "n/a"


def format_count(count: float) -> str:
    """12345 -> '12,345'."""
    return f"{int(count):,}"


def format_sd(difference: float) -> str:
    """A standardized difference: 1.23 -> '+1.2 sd'."""
    return f"{difference:+.1f} sd"


def format_p(p_value: float) -> str:
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _format_seconds(seconds: float) -> str:
    return f"{seconds:,.1f} s"


def _format_bytes(count: float) -> str:
    return f"{count / 1e9:.2f} GB"


def _segment_word(segment: str) -> str:
    return INSUFFICIENT if segment == INSUFFICIENT else f"segment {segment}"


def segment_order(segments: Iterable[str]) -> list[str]:
    """Segments in reading order: "0", "1", ..., "10", then insufficient_data."""

    def key(segment: str) -> tuple:
        return (segment == INSUFFICIENT, int(segment) if segment.isdigit() else math.inf, segment)

    return sorted(dict.fromkeys(str(s) for s in segments), key=key)


def _ordered(proportions: pd.DataFrame) -> pd.DataFrame:
    return proportions.set_index("segment").loc[segment_order(proportions["segment"])]


def _join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def file_name(path: object) -> str:
    """A path or URL by its file name ('/home/me/data/population.csv' -> 'population.csv'): the report
    travels, and a local absolute path means nothing on the reader's machine. None stays 'packaged'."""
    if path is None:
        return "packaged"
    text = str(path).rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] or text


def _file_names(value):
    """The configuration with every path-like string (one holding a slash) reduced to its file name."""
    if isinstance(value, dict):
        return {k: _file_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_file_names(v) for v in value]
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return file_name(value)
    return value
