"""The Customer Segmentation Report: figures, HTML and PDF, from a finished run folder.

``write_report(run_dir)`` reads only the run folder (docs/run-folder.md) and writes ``report.html`` (one
self-contained file: inline CSS, every figure a base64 PNG) and ``Customer Segmentation Report.pdf``
(A4 portrait pages). Each figure is a pure function ``figure_<name>(small frames) -> Figure``, drawn
with matplotlib's Agg canvas without touching pyplot's global state, one A4 page each. The text
(headline, recommendations, segment descriptions, run facts) is built once as a list of blocks that both
the HTML and the PDF renderers lay out, so the two show the same numbers, formatted the same way:
shares as percentages with one decimal, ratios with two decimals, counts with thousands separators.

``elbow.csv`` is optional: a job given k explicitly may skip the elbow, and the report then says that k was
fixed where the choice-of-k figure would be.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import logging
import math
import os
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator, PercentFormatter

from .compare import wilson_interval
from .wording import (
    representation_grade,
    representation_phrase,
    stability_label,
    structure_warning,
)

logger = logging.getLogger(__name__)

REPORT_TITLE = "Customer Segmentation Report"
HTML_NAME = "report.html"
PDF_NAME = f"{REPORT_TITLE}.pdf"
INSUFFICIENT = "insufficient_data"
# Section titles, in report order; each appears in both the HTML and the PDF ("Who responds" only when the
# run had a mail-out with responses).
SECTIONS = (
    "Headline",
    "Segment shares",
    "Recommendations",
    "Who responds",
    "Segment profiles",
    "Segments",
    "Choice of k",
    "Principal components",
    "Data quality",
    "Run facts",
)
# The figures, in report order (figure_<name> below); the HTML embeds one PNG for each (the gains chart only
# when run.json holds the response model's cross-validated gains, the elbow only with elbow.csv).
FIGURES = (
    "segment_shares",
    "gains",
    "segment_profiles",
    "elbow",
    "pca_variance",
    "pca_loadings",
    "column_missing",
    "row_missing",
)
# Files of the run folder the report names, with what each holds (docs/run-folder.md).
OUTPUT_FILES = {
    "targets.parquet": "every assigned row ranked for targeting (by predicted response with a mail-out, else lift)",
    "targets_top.csv": "the first rows of that ranking, to mail",
    "proportions.csv": "segment shares, ratios, intervals and tests (and response rates)",
    "profiles.csv": "every segment's mean of every feature, its name and persona",
    "stability.csv": "each segment's bootstrap stability",
    "mailout_scores.parquet": "the mail-out test rows with their predicted response and rank",
    "submission.csv": "LNR,RESPONSE for the mail-out test rows",
    "assignments/": "the segment of every row of every table",
    "model/": "the fitted model, to segment new files with `segmentation assign`",
}
# Segment descriptions name at most this many attributes, each at least MIN_DIFFERENCE sd from the mean.
DESCRIBED_ATTRIBUTES = 5
MIN_DIFFERENCE = 0.2
REPRESENTATION_WORDS = {
    "over": "over-represented",
    "under": "under-represented",
    "similar": "no clear difference",
}

A4_PORTRAIT = (8.27, 11.69)  # inches
_PNG_DPI = 115  # HTML figures: about the width of the page column, heatmap text readable
_MARGIN = 0.7  # inches, left and right, on figure pages
_COLOURS = {
    "population": "#4C72B0",
    "customers": "#DD8452",
    "over": "#1B7837",
    "under": "#B2182B",
    "similar": "#7F7F7F",
    "kept": "#4C72B0",
    "dropped": "#9A9A9A",  # left out (dropped columns, set-aside rows): grey beside the table's own colour
    "set_aside": "#9A9A9A",
}
_STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,  # TrueType, so the PDF's text can be searched and extracted
}


# ---------------------------------------------------------------------------------------------- formats


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


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RunFiles:
    """The small files of a run folder that the report reads; ``elbow`` is None without elbow.csv."""

    run: dict
    proportions: pd.DataFrame
    profiles: pd.DataFrame
    elbow: pd.DataFrame | None
    pca: pd.DataFrame
    pca_loadings: pd.DataFrame
    quality_columns: pd.DataFrame
    quality_rows: pd.DataFrame
    name: str = ""
    stability: pd.DataFrame | None = None  # stability.csv, absent in runs made before it existed
    outputs: tuple[str, ...] = ()  # the files of OUTPUT_FILES present in the run folder


def read_run_files(run_dir: str | os.PathLike) -> RunFiles:
    """Read run.json and the CSVs of a run folder; segment names stay strings ("0", not 0).

    Every file is required except elbow.csv (None when absent: the job fixed k and skipped the elbow) and
    stability.csv.
    """
    run_dir = Path(run_dir)
    text = {"segment": str, "attribute": str, "label": str, "column": str, "table": str}

    def csv(name: str, required: bool = True) -> pd.DataFrame | None:
        path = run_dir / name
        if not path.exists():
            if not required:
                return None
            raise FileNotFoundError(f"{path}: the run folder lacks {name}")
        frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=[""])
        if "label" in frame:
            frame["label"] = frame["label"].fillna("")
        return frame

    run_json = run_dir / "run.json"
    if not run_json.exists():
        raise FileNotFoundError(f"{run_json}: the run folder lacks run.json")
    return RunFiles(
        run=json.loads(run_json.read_text()),
        proportions=csv("proportions.csv"),
        profiles=csv("profiles.csv"),
        elbow=csv("elbow.csv", required=False),
        pca=csv("pca.csv"),
        pca_loadings=csv("pca_loadings.csv"),
        quality_columns=csv("quality/columns.csv"),
        quality_rows=csv("quality/rows.csv"),
        name=_run_name(run_dir),
        stability=csv("stability.csv", required=False),
        outputs=tuple(name for name in OUTPUT_FILES if (run_dir / name).exists()),
    )


def _run_name(run_dir: Path) -> str:
    """The run's name: its folder's, except while the job still writes it into a temporary folder
    (``.NAME.tmp-*``, see docs/run-folder.md)."""
    name = run_dir.resolve().name
    if name.startswith(".") and ".tmp-" in name:
        return name[1:].split(".tmp-")[0]
    return name


def _require(run: dict, *keys: str):
    value = run
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"run.json lacks {'.'.join(keys)}")
        value = value[key]
    return value


# ---------------------------------------------------------------------------------------------- numbers


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


def describe_segment(
    profile_rows: pd.DataFrame, top_attributes: int = 5, min_difference: float = MIN_DIFFERENCE
) -> str:
    """One sentence saying how a segment differs from the population, from its rows of profiles.csv.

    Takes the ``top_attributes`` most distinguishing attributes (by ``rank``), keeps those at least
    ``min_difference`` standard deviations from the population mean, and names them by label with the
    direction and size: 'much' from 1 sd, 'slightly' below 0.5 sd.

    >>> describe_segment(profiles[profiles["segment"] == "3"])  # doctest: +SKIP
    "Compared with the population, segment 3 scores much higher on 'Financial type score: saver'
    (FINANZ_SPARER, +1.2 sd); and lower on 'Affinity score: event-oriented' (SEMIO_ERL, -0.8 sd)."
    """
    segments = profile_rows["segment"].astype(str).unique()
    if len(segments) != 1:
        raise ValueError(f"profile_rows must hold exactly one segment, got {len(segments)}: {list(segments)}")
    who = _segment_word(segments[0])
    top = profile_rows.sort_values("rank").head(top_attributes)
    top = top[top["standardized_difference"].abs() >= min_difference]
    if top.empty:
        return (
            f"Compared with the population, {who} shows no marked difference: none of its "
            f"{top_attributes} most distinguishing attributes is {min_difference:.1f} sd or more from "
            "the population mean."
        )

    def phrase(row) -> str:
        label = row["label"] or row["attribute"]
        name = "" if label == row["attribute"] else f"{row['attribute']}, "
        return f"'{label}' ({name}{format_sd(row['standardized_difference'])})"

    clauses = []
    for direction, sign in (("higher", 1), ("lower", -1)):
        side = top[np.sign(top["standardized_difference"]) == sign]
        side = side.reindex(side["standardized_difference"].abs().sort_values(ascending=False).index)
        size = side["standardized_difference"].abs()
        adverb = np.where(size >= 1.0, "much ", np.where(size >= 0.5, "", "slightly "))
        for word in dict.fromkeys(adverb):
            items = [phrase(row) for (_, row), a in zip(side.iterrows(), adverb, strict=True) if a == word]
            clauses.append(f"{word}{direction} on {_join(items)}")
    joined = clauses[0] if len(clauses) == 1 else "; ".join(clauses[:-1]) + "; and " + clauses[-1]
    return f"Compared with the population, {who} scores {joined}."


def _grade(row: pd.Series) -> str:
    """The wording grade of a proportions.csv row: 'in proportion' unless the test flags it
    (``representation``), else 'slightly'/'strongly' over/under by the ratio (``wording``)."""
    if row["representation"] not in ("over", "under"):
        return "in proportion"
    grade = representation_grade(row["ratio"], row["ratio_ci_low"], row["ratio_ci_high"])
    return grade if grade.endswith(row["representation"]) else "in proportion"


def headline(proportions: pd.DataFrame, run: dict, warning: str | None = None) -> list[str]:
    """The few sentences a reader needs: how far to trust the segments (``warning``, from
    ``wording.structure_warning``), who is over- and under-represented and how strongly, on what data."""
    table = _ordered(proportions)
    segments = table.drop(index=INSUFFICIENT, errors="ignore")
    lines = [warning] if warning else []
    for representation, name, lead in (
        ("over", "lift", "Over-represented among customers"),
        ("under", "ratio", "Under-represented among customers"),
    ):
        chosen = segments[segments["representation"] == representation].sort_values(
            "ratio", ascending=representation == "under"
        )
        items = [
            f"segment {s} ({_grade(r).split()[0]}: {name} {format_ratio(r.ratio)}; "
            f"{format_share(r.customers_share)} of customers vs {format_share(r.population_share)} of the "
            "population)"
            for s, r in chosen.iterrows()
        ]
        lines.append(f"{lead}: {_join(items)}." if items else f"{lead}: none at the 5% level.")
    if INSUFFICIENT in table.index and table.loc[INSUFFICIENT, "representation"] != "similar":
        row = table.loc[INSUFFICIENT]
        more = "more" if row["representation"] == "over" else "less"
        lines.append(
            f"Customer records are {more} often incomplete than population records: {INSUFFICIENT} holds "
            f"{format_share(row['customers_share'])} of customers vs {format_share(row['population_share'])} "
            f"of the population (ratio {format_ratio(row['ratio'])})."
        )
    rows = run.get("rows", {})
    if "population" in rows and "customers" in rows:
        pca = run.get("pca", {})
        method = ""
        if "n_components" in pca and "explained_variance" in pca:
            method = (
                f" (k-means on {pca['n_components']} principal components keeping "
                f"{format_share(pca['explained_variance'])} of the variance)"
            )
        lines.append(
            f"{len(segments)} segments{method}, from {format_count(rows['population']['read'])} "
            f"population and {format_count(rows['customers']['read'])} customer rows, of which "
            f"{format_count(rows['population']['set_aside'])} and "
            f"{format_count(rows['customers']['set_aside'])} were set aside as {INSUFFICIENT}."
        )
    return lines


def _shares_and_ratio(row: pd.Series) -> dict[str, str]:
    """One proportions.csv row's numbers, formatted for sentences."""
    return {
        "customers": format_share(row["customers_share"]),
        "population": format_share(row["population_share"]),
        "ratio": format_ratio(row["ratio"]),
        "ci": f"95% CI {format_ratio(row['ratio_ci_low'])} to {format_ratio(row['ratio_ci_high'])}",
    }


def recommendations(proportions: pd.DataFrame, row_missing: float) -> list[str]:
    """Paragraphs written from the numbers: whom to target, who is under-served, what insufficient_data is."""
    table = _ordered(proportions)
    segments = table.drop(index=INSUFFICIENT, errors="ignore")
    grades = segments.apply(_grade, axis=1) if len(segments) else pd.Series(dtype=str)
    paragraphs = []
    over = segments[grades.str.endswith("over")].sort_values("ratio", ascending=False)
    for segment, row in over.iterrows():
        n = _shares_and_ratio(row)
        if grades[segment] == "strongly over":
            paragraphs.append(
                f"Target segment {segment}: it holds {n['customers']} of customers but {n['population']} of "
                f"the population, a lift of {n['ratio']} ({n['ci']}). For its size it holds {n['ratio']} "
                "times as many customers as the population would suggest; rank mail-out candidates from it "
                "first."
            )
        else:
            paragraphs.append(
                f"Segment {segment} is slightly over-represented: {n['customers']} of customers against "
                f"{n['population']} of the population, a lift of {n['ratio']} ({n['ci']}). A real but modest "
                "lead: a second choice after the strongly over-represented segments."
            )
    if over.empty:
        paragraphs.append(
            "No segment is over-represented among customers at the 5% level (two-sided, "
            "Bonferroni-corrected): the segmentation singles out no target group."
        )
    under = segments[grades.str.endswith("under")].sort_values("ratio")
    for segment, row in under.iterrows():
        n = _shares_and_ratio(row)
        if grades[segment] == "strongly under":
            paragraphs.append(
                f"Segment {segment} is under-served: {n['customers']} of customers against {n['population']} "
                f"of the population (ratio {n['ratio']}, {n['ci']}). People like these are rarely customers "
                "today: a low priority for a mail-out, or a group that needs a different offer."
            )
        else:
            paragraphs.append(
                f"Segment {segment} is slightly under-represented: {n['customers']} of customers against "
                f"{n['population']} of the population (ratio {n['ratio']}, {n['ci']}). Somewhat fewer "
                "customers than its size suggests: not a priority, but no gap either."
            )
    similar = segments[grades == "in proportion"]
    # a segment empty (or nearly) in one table has no finite interval: too small to judge, not "similar"
    small = similar[~(np.isfinite(similar["ratio_ci_high"]) & (similar["ratio_ci_low"] > 0))]
    similar = similar.drop(index=small.index)
    if not similar.empty:
        names = _join([str(s) for s in similar.index])
        low, high = format_ratio(similar["ratio"].min()), format_ratio(similar["ratio"].max())
        paragraphs.append(
            f"{'Segments' if len(similar) > 1 else 'Segment'} {names} "
            f"{'hold' if len(similar) > 1 else 'holds'} customers in proportion to the "
            f"population (ratios {low} to {high}): neither a priority nor a gap."
        )
    for segment, row in small.iterrows():
        paragraphs.append(
            f"Segment {segment} is too small to judge: {format_count(row['population_count'])} population "
            f"and {format_count(row['customers_count'])} customer rows."
        )
    if INSUFFICIENT in table.index:
        row = table.loc[INSUFFICIENT]
        n = _shares_and_ratio(row)
        words = REPRESENTATION_WORDS.get(row["representation"], "not tested")
        text = (
            f"{INSUFFICIENT}: rows with more than {format_share(row_missing)} of their attributes missing "
            f"are set aside rather than forced into a segment. They are {n['population']} of the population "
            f"and {n['customers']} of customers (ratio {n['ratio']}, {words}). They stay in every count, so "
            "the shares add up to 100%, but they have no profile and are left out of the ranked target list."
        )
        if row["representation"] == "over":
            text += (
                " Customer records are incomplete more often than population records: that says more about "
                "how the data were collected than about who the customers are, so it is no reason to target "
                "people with incomplete records."
            )
        elif row["representation"] == "under":
            text += " Customer records are more complete than population records."
        paragraphs.append(text)
    return paragraphs


def distinguishing_attributes(
    profiles: pd.DataFrame, top_attributes: int = 8, max_rows: int = 40
) -> tuple[list[str], int]:
    """Attributes for the profile heatmap: the union of each segment's top ``m`` by rank, grouped by the
    segment they first distinguish; ``m`` is ``top_attributes``, lowered until the union fits ``max_rows``.
    Returns (attributes in order, m)."""
    profiles = profiles[profiles["segment"] != INSUFFICIENT]
    order = {s: i for i, s in enumerate(segment_order(profiles["segment"]))}
    for top in range(top_attributes, 0, -1):
        chosen = profiles[profiles["rank"] <= top]
        if chosen["attribute"].nunique() <= max_rows or top == 1:
            break
    chosen = chosen.assign(_segment=chosen["segment"].map(order)).sort_values(["_segment", "rank"])
    return list(dict.fromkeys(chosen["attribute"])), top


# ---------------------------------------------------------------------------------------------- figures


def _styled(figure_function: Callable[..., Figure]) -> Callable[..., Figure]:
    """Draw a figure under the report's matplotlib style, leaving the caller's rcParams alone."""

    @functools.wraps(figure_function)
    def wrapper(*args, **kwargs) -> Figure:
        with mpl.rc_context(_STYLE):
            return figure_function(*args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=4096)
def _text_width(text: str, size: float, weight: str = "normal", family: str = "sans-serif") -> float:
    """Width in points of ``text`` set in the report's font."""
    prop = FontProperties(size=size, weight=weight, family=family)
    return TextToPath().get_text_width_height_descent(text, prop, ismath=False)[0]


def _wrap(text: str, width: float, size: float, weight: str = "normal") -> list[str]:
    """Greedy word wrap of ``text`` to ``width`` points; each word measured once."""
    space = _text_width("a b", size, weight) - _text_width("ab", size, weight)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line, used = "", 0.0
        for word in paragraph.split():
            extent = _text_width(word, size, weight)
            if line and used + space + extent > width * 0.97:
                lines.append(line)
                line, used = word, extent
            else:
                line, used = (f"{line} {word}", used + space + extent) if line else (word, extent)
        lines.append(line)
    return lines


def _shorten(text: str, length: int) -> str:
    """``text`` in at most ``length`` characters, cut at a word boundary when one is near (not mid-word)."""
    if len(text) <= length:
        return text
    cut = text[: length - 1]
    space = cut.rfind(" ")
    if space >= length // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-(/") + "…"


def _short_code(code: str, length: int = 26) -> str:
    """Shorten an attribute code, keeping the value of a one-hot code: 'D19_LETZTER_K…=D19_BUCH_CD'."""
    if len(code) <= length:
        return code
    name, sep, value = code.partition("=")
    if not sep:
        return _shorten(code, length)
    return f"{_shorten(name, max(6, length - len(value) - 1))}={_shorten(value, length - 7)}"


def _attribute_label(attribute: str, label: str, length: int = 56) -> str:
    """'Financial type score: saver (FINANZ_SPARER)' in at most about ``length`` characters: the code
    always shows; the label is shortened (in a 'kind: detail' label the kind, so the detail that tells
    attributes apart stays whole), and drops a one-hot value the code already shows."""
    code = _short_code(attribute)
    if not label or label == attribute:
        return code
    base, sep, value = label.rpartition(" = ")
    if not sep or not attribute.endswith(f"={value}"):
        base = label
    suffix = f" ({code})"
    room = max(12, length - len(suffix))
    kind, colon, detail = base.partition(": ")
    if len(base) > room and colon and room - len(detail) - 2 >= 8:
        base = f"{_shorten(kind, room - len(detail) - 2)}: {detail}"
    return f"{_shorten(base, room)}{suffix}"


def _page(title: str, caption: str) -> Figure:
    """An A4 portrait figure with a title above and a caption below the area left to the axes."""
    width, height = A4_PORTRAIT
    lines = _wrap(caption, (width - 2 * _MARGIN) * 72, 9)
    # inches kept free for the title, and for the caption above the page number (0.6 in from the edge)
    top, bottom = 1.05, max(1.45, len(lines) * 9 * 1.45 / 72 + 0.8)
    fig = Figure(
        figsize=A4_PORTRAIT,
        layout=ConstrainedLayoutEngine(
            rect=(_MARGIN / width, bottom / height, 1 - 2 * _MARGIN / width, 1 - (top + bottom) / height),
            h_pad=0.08,
            w_pad=0.08,
            hspace=0.06,
        ),
    )
    FigureCanvasAgg(fig)
    fig.set_label(title)
    fig.text(_MARGIN / width, 1 - 0.6 / height, title, fontsize=14, weight="bold", va="top")
    fig.text(
        _MARGIN / width, (bottom - 0.2) / height, "\n".join(lines), fontsize=9, va="top", linespacing=1.45
    )
    _CAPTIONS[fig] = caption
    return fig


# Each page figure's caption, for the HTML (which sets title and caption as text, not in the picture).
_CAPTIONS: weakref.WeakKeyDictionary[Figure, str] = weakref.WeakKeyDictionary()


def _segment_tick(segment: str) -> str:
    return "insufficient\ndata" if segment == INSUFFICIENT else segment


@_styled
def figure_segment_shares(proportions: pd.DataFrame) -> Figure:
    """Headline: each segment's share of population and customers (95% Wilson intervals from the counts),
    and the customer/population ratio on a log scale with its interval, coloured by representation."""
    table = _ordered(proportions)
    segments = list(table.index)
    x = np.arange(len(segments))
    fig = _page(
        "Segment shares: customers against the population",
        "Top: the share of each table's rows that fall in each segment; whiskers are 95% Wilson intervals "
        "computed from the counts. Bottom: customer share divided by population share (log scale) with its "
        "95% interval; above 1 the segment holds more customers than its size suggests. Colour marks a ratio "
        "that differs from 1 (two-sided test at the 5% level, Bonferroni-corrected over segments).",
    )
    shares_ax, ratio_ax = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1.1, 1.0]})

    width = 0.4
    for offset, table_name, name in (
        (-width / 2, "population", "Population"),
        (width / 2, "customers", "Customers"),
    ):
        counts = table[f"{table_name}_count"].to_numpy()
        share = table[f"{table_name}_share"].to_numpy()
        low, high = wilson_interval(counts, counts.sum())
        shares_ax.bar(
            x + offset,
            share * 100,
            width,
            color=_COLOURS[table_name],
            label=f"{name} ({format_count(counts.sum())} rows)",
        )
        errors = np.clip([(share - low) * 100, (high - share) * 100], 0, None)
        shares_ax.errorbar(
            x + offset, share * 100, yerr=errors, fmt="none", ecolor="#222222", capsize=2.5, lw=0.9
        )
    shares_ax.set_xticks(x, [_segment_tick(s) for s in segments])
    shares_ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    shares_ax.set_ylabel("share of the table's rows")
    shares_ax.set_xlabel("segment")
    shares_ax.set_title("Share of rows per segment, with 95% intervals")
    shares_ax.legend(loc="best")
    shares_ax.margins(y=0.12)

    # A log axis shows no zero or infinite ratio (a segment empty in one table): those get a note instead.
    ratio = table["ratio"].to_numpy(dtype=float)
    plotted = np.isfinite(ratio) & (ratio > 0)
    low = table["ratio_ci_low"].to_numpy(dtype=float)
    high = table["ratio_ci_high"].to_numpy(dtype=float)
    finite_ends = np.concatenate(
        [ratio[plotted], low[plotted & (low > 0)], high[plotted & np.isfinite(high)]]
    )
    floor = min(float(finite_ends.min()) / 1.25, 0.8) if len(finite_ends) else 0.5
    ceiling = max(float(finite_ends.max()) * 1.25, 1.25) if len(finite_ends) else 2.0
    for i, segment in enumerate(segments):
        colour = _COLOURS.get(table.loc[segment, "representation"], _COLOURS["similar"])
        if not plotted[i]:
            ratio_ax.annotate(
                f"ratio {format_ratio(ratio[i])}",
                (x[i], 1.0),
                ha="center",
                va="bottom",
                fontsize=8.5,
                color=colour,
                rotation=90,
                xytext=(0, 4),
                textcoords="offset points",
            )
            continue
        below = ratio[i] - (low[i] if low[i] > 0 else floor)
        above = (high[i] if np.isfinite(high[i]) else ceiling) - ratio[i]
        ratio_ax.errorbar(
            x[i], ratio[i], yerr=[[below], [above]], fmt="o", color=colour, ms=7, capsize=4, lw=1.6
        )
        ratio_ax.annotate(
            format_ratio(ratio[i]),
            (x[i], ratio[i]),
            xytext=(9, 0),
            textcoords="offset points",
            va="center",
            fontsize=8.5,
            color=colour,
        )
    ratio_ax.axhline(1.0, color="#555555", lw=0.8, ls="--")
    ratio_ax.set_yscale("log")
    ratio_ax.set_ylim(floor, ceiling)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20) if floor <= t <= ceiling] or [1]
    ratio_ax.yaxis.set_major_locator(mpl.ticker.FixedLocator(ticks))
    ratio_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ratio_ax.yaxis.set_minor_locator(NullLocator())
    ratio_ax.set_xticks(x, [_segment_tick(s) for s in segments])
    ratio_ax.set_xlim(-0.6, len(segments) - 0.2)
    ratio_ax.set_xlabel("segment")
    ratio_ax.set_ylabel("customer share ÷ population share")
    ratio_ax.set_title("Customer/population ratio (log scale), with 95% intervals")
    ratio_ax.legend(
        handles=[
            Line2D([], [], marker="o", ls="", color=_COLOURS[key], label=REPRESENTATION_WORDS[key])
            for key in ("over", "under", "similar")
        ],
        loc="best",
    )
    return fig


@_styled
def figure_segment_profiles(
    profiles: pd.DataFrame, proportions: pd.DataFrame, top_attributes: int = 8
) -> Figure:
    """Heatmap of standardized differences (segment mean - population mean, in population sd) for the
    most distinguishing attributes of every segment; diverging colours centred on 0."""
    attributes, top = distinguishing_attributes(profiles, top_attributes)
    assigned = profiles[profiles["segment"] != INSUFFICIENT]
    segments = segment_order(assigned["segment"])
    values = assigned.pivot(index="attribute", columns="segment", values="standardized_difference")
    values = values.loc[attributes, segments]
    labels = assigned.drop_duplicates("attribute").set_index("attribute")["label"]
    representation = proportions.set_index("segment")["representation"]

    fig = _page(
        "Segment profiles: the most distinguishing attributes",
        f"Each column is a segment, each row one of the {top} most distinguishing attributes of some "
        "segment. Colour and number give the segment mean minus the population mean, in population standard "
        "deviations (sd): red is higher than the population, blue lower. Column headers give the segment; ▲ "
        "marks a segment over-represented among customers, ▼ one under-represented.",
    )
    ax = fig.subplots()
    # Colours saturate at 2 sd, so one extreme cell does not wash out the rest; the numbers stay exact.
    limit = min(2.0, max(1.0, math.ceil(float(np.nanmax(np.abs(values.to_numpy()))) * 2) / 2))
    image = ax.imshow(values.to_numpy(), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    row_size = 8 if len(attributes) <= 30 else 7
    ax.set_yticks(range(len(attributes)), [_attribute_label(a, labels.get(a, "")) for a in attributes])
    ax.tick_params(axis="y", labelsize=row_size, length=0)
    # One short mark under each number: the words 'over'/'under' ran together over narrow columns.
    marks = {"over": "\n▲", "under": "\n▼"}
    ax.set_xticks(range(len(segments)), [f"{s}{marks.get(representation.get(s, ''), '')}" for s in segments])
    ax.tick_params(axis="x", top=True, labeltop=True, bottom=False, labelbottom=False, length=0, labelsize=9)
    for tick, segment in zip(ax.get_xticklabels(), segments, strict=True):
        tick.set_color(_COLOURS.get(representation.get(segment, ""), "black"))
        if representation.get(segment, "") in marks:
            tick.set_fontweight("bold")
    for spine in ax.spines.values():
        spine.set_visible(False)
    for (row, column), value in np.ndenumerate(values.to_numpy()):
        if np.isfinite(value):
            ax.text(
                column,
                row,
                f"{value:+.1f}" if abs(value) >= 0.05 else "0.0",
                ha="center",
                va="center",
                fontsize=row_size - 0.5,
                color="white" if abs(value) > 0.55 * limit else "#222222",
            )
    fig.colorbar(
        image,
        ax=ax,
        location="bottom",
        shrink=0.5,
        aspect=30,
        pad=0.015,
        extend="both" if limit == 2.0 else "neither",
        label="standardized difference (sd)",
    )
    return fig


@_styled
def figure_elbow(elbow: pd.DataFrame, k: int, k_recommended: int | None = None) -> Figure:
    """Choice of k: the sum of squares relative to the smallest k (an axis from 0, so a drop of a few
    percent looks like one), the silhouette against the 0.1 below which segments overlap, and the
    bootstrap stability per k when the elbow measured it; the chosen k marked."""
    elbow = elbow.sort_values("k")
    if k_recommended is None and "recommended" in elbow and elbow["recommended"].astype(bool).any():
        k_recommended = int(elbow.loc[elbow["recommended"].astype(bool), "k"].iloc[0])
    recommended = "" if k_recommended in (None, k) else f" The elbow method recommended k = {k_recommended}."
    sse = pd.to_numeric(elbow["sse"], errors="coerce") if "sse" in elbow else pd.Series(dtype=float)
    drop = ""
    if sse.notna().sum() >= 2:
        first, last = sse.dropna().iloc[0], sse.dropna().iloc[-1]
        drop = (
            f" From k = {int(elbow['k'].iloc[0])} to {int(elbow['k'].iloc[-1])} the SSE falls by "
            f"{format_share(1 - last / first)}."
        )
    has_stability = "stability" in elbow and pd.to_numeric(elbow["stability"], errors="coerce").notna().any()
    fig = _page(
        "Choice of k: sum of squares, silhouette" + (" and stability" if has_stability else ""),
        "k-means was fitted for every k shown. Top: the sum of squared distances to the nearest centre (SSE) "
        "as a share of the SSE at the smallest k; it always falls as k grows, and a bend (elbow) marks where "
        f"more segments stop paying.{drop} Middle: the mean silhouette (1: well separated; below 0.1 the "
        "segments overlap)."
        + (
            " Bottom: the mean bootstrap stability of the segments (Jaccard; 0.85 and more: stable, below "
            "0.6: unstable), which the recommendation weighs."
            if has_stability
            else ""
        )
        + f" The run used k = {k}.{recommended}",
    )
    panels = [("sse", "SSE, % of the smallest k's"), ("silhouette", "mean silhouette")]
    if has_stability:
        panels.append(("stability", "mean stability (Jaccard)"))
    axes = np.atleast_1d(fig.subplots(len(panels), 1, sharex=True))
    for ax, (column, label) in zip(axes, panels, strict=True):
        values = pd.to_numeric(elbow[column], errors="coerce") if column in elbow else None
        if values is None or values.isna().all():
            ax.text(0.5, 0.5, f"{column} not recorded", transform=ax.transAxes, ha="center", color="grey")
            continue
        if column == "sse":
            values = values / values.dropna().iloc[0] * 100
            ax.set_ylim(0, 105)
            ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        elif column == "silhouette":
            ax.axhline(0.1, color="#B2182B", lw=0.9, ls=":", label="0.1: weak below")
            ax.set_ylim(min(0.0, float(values.min()) * 1.2), max(0.2, float(values.max()) * 1.2))
        else:
            ax.axhspan(0.85, 1.02, color=_COLOURS["over"], alpha=0.08, lw=0)
            ax.axhspan(0.0, 0.6, color=_COLOURS["under"], alpha=0.08, lw=0)
            ax.set_ylim(0, 1.02)
        ax.plot(elbow["k"], values, "o-", color=_COLOURS["population"], ms=5)
        chosen = elbow["k"] == k
        ax.plot(elbow.loc[chosen, "k"], values[chosen], "o", color=_COLOURS["customers"], ms=11, zorder=3)
        ax.axvline(k, color=_COLOURS["customers"], lw=1.2, ls="--", label=f"chosen k = {k}")
        if recommended:
            ax.axvline(k_recommended, color="grey", lw=1.0, ls=":", label=f"recommended k = {k_recommended}")
        ax.set_ylabel(label)
        ax.legend(loc="lower right" if column != "silhouette" else "upper right")
    titles = {
        "sse": "Within-cluster sum of squares (SSE), relative",
        "silhouette": "Silhouette",
        "stability": "Stability",
    }
    for ax, (column, _) in zip(axes, panels, strict=True):
        ax.set_title(titles[column])
    axes[-1].set_xlabel("number of segments k")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


@_styled
def figure_gains(gains: dict) -> Figure:
    """Cumulative gains of the response model's out-of-fold scores on the mail-out training rows: the
    share of responses reached by mailing the top x% of the ranking, against random mailing."""
    mailed = np.asarray(gains["share_mailed"], dtype=float) * 100
    reached = np.asarray(gains["share_responses"], dtype=float) * 100
    lift = gains.get("top_decile_lift")
    fig = _page(
        "Who responds: cumulative gains of the response model",
        "The mail-out training rows ranked by the response model's cross-validated (out-of-fold) scores: "
        "mailing the top x% of the ranking reaches the share of all responses on the vertical axis. The "
        "diagonal is random mailing. "
        + (f"The top 10% hold {lift:.1f} times the base response rate." if lift is not None else ""),
    )
    ax = fig.subplots()
    ax.plot(mailed, reached, "o-", color=_COLOURS["customers"], lw=2, label="response model")
    ax.plot([0, 100], [0, 100], "--", color="#777777", lw=1, label="random mailing")
    for x, y in zip(mailed[1:-1], reached[1:-1], strict=True):
        ax.annotate(f"{y:.0f}%", (x, y), xytext=(-4, 6), textcoords="offset points", fontsize=8, ha="right")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 102)
    ax.set_aspect("equal")
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlabel("share of the mail-out mailed, best scores first")
    ax.set_ylabel("share of all responses reached")
    ax.set_title("Cumulative gains (out-of-fold, 5 folds)")
    ax.legend(loc="lower right")
    return fig


@_styled
def figure_pca_variance(
    pca: pd.DataFrame, n_components: int, explained_variance: float | None = None
) -> Figure:
    """Scree (variance per component) and cumulative explained variance, the kept number marked."""
    pca = pca.sort_values("component")
    if explained_variance is None:
        explained_variance = float(pca.loc[pca["component"] == n_components, "cumulative"].iloc[0])
    fig = _page(
        "Principal components: explained variance",
        f"Top: the share of the standardized features' variance that each principal component explains "
        f"(scree plot). Bottom: the cumulative share. The run kept the first {n_components} components, "
        f"which explain {format_share(explained_variance)} of the variance; k-means ran on them.",
    )
    scree_ax, cumulative_ax = fig.subplots(2, 1, sharex=True)
    kept = pca["component"] <= n_components
    scree_ax.bar(
        pca.loc[kept, "component"],
        pca.loc[kept, "explained_variance_ratio"] * 100,
        width=0.9,
        color=_COLOURS["kept"],
        label=f"kept ({n_components})",
    )
    scree_ax.bar(
        pca.loc[~kept, "component"],
        pca.loc[~kept, "explained_variance_ratio"] * 100,
        width=0.9,
        color="#BBBBBB",
        label=f"not kept ({int((~kept).sum())})",
    )
    scree_ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    scree_ax.set_ylabel("variance explained")
    scree_ax.set_title("Variance explained by each component")
    scree_ax.legend(loc="upper right")

    cumulative_ax.plot(pca["component"], pca["cumulative"] * 100, color=_COLOURS["population"], lw=2)
    cumulative_ax.axvline(n_components, color=_COLOURS["customers"], ls="--", lw=1.2)
    cumulative_ax.axhline(explained_variance * 100, color=_COLOURS["customers"], ls=":", lw=1.0)
    cumulative_ax.plot([n_components], [explained_variance * 100], "o", color=_COLOURS["customers"], ms=8)
    cumulative_ax.annotate(
        f"{n_components} components: {format_share(explained_variance)}",
        (n_components, explained_variance * 100),
        xytext=(10, -18),
        textcoords="offset points",
        fontsize=9.5,
        color=_COLOURS["customers"],
    )
    cumulative_ax.set_ylim(0, 102)
    cumulative_ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    cumulative_ax.set_ylabel("cumulative variance explained")
    cumulative_ax.set_xlabel("component")
    cumulative_ax.set_title("Cumulative variance explained")
    cumulative_ax.set_xlim(0, pca["component"].max() + 1)
    return fig


@_styled
def figure_pca_loadings(
    pca_loadings: pd.DataFrame, pca: pd.DataFrame, components: int = 4, top: int = 8
) -> Figure:
    """The heaviest attributes (by absolute loading, labelled) of the first principal components."""
    shown = sorted(pca_loadings["component"].unique())[:components]
    variance = pca.set_index("component")["explained_variance_ratio"]
    fig = _page(
        "Principal components: heaviest attributes",
        f"For each of the first {len(shown)} components, the {top} attributes with the largest absolute "
        "loadings. Attributes pulling the same way share a colour; the sign of a component is arbitrary, so "
        "read each bar against the others in its panel.",
    )
    axes = np.atleast_1d(fig.subplots(len(shown), 1, sharex=True))
    limit = pca_loadings.loc[pca_loadings["component"].isin(shown), "loading"].abs().max() * 1.1
    for ax, component in zip(axes, shown, strict=True):
        rows = pca_loadings[pca_loadings["component"] == component]
        rows = rows.reindex(rows["loading"].abs().sort_values(ascending=False).index).head(top)[::-1]
        colours = np.where(rows["loading"] >= 0, _COLOURS["population"], _COLOURS["customers"])
        ax.barh(np.arange(len(rows)), rows["loading"], color=colours, height=0.7)
        ax.set_yticks(
            np.arange(len(rows)),
            [_attribute_label(a, b) for a, b in zip(rows["attribute"], rows["label"], strict=True)],
        )
        ax.tick_params(axis="y", labelsize=8, length=0)
        ax.axvline(0, color="#555555", lw=0.8)
        ax.set_xlim(-limit, limit)
        share = f" ({format_share(variance[component])} of variance)" if component in variance else ""
        ax.set_title(f"Component {component}{share}", fontsize=10)
    axes[-1].set_xlabel("loading")
    return fig


@_styled
def figure_column_missing(quality_columns: pd.DataFrame, column_missing: float, top: int = 20) -> Figure:
    """Missing share per column for each table, sorted, dropped columns in another colour; the most
    missing columns by name."""
    tables = [t for t in ("population", "customers") if t in set(quality_columns["table"])]
    tables += sorted(set(quality_columns["table"]) - set(tables))
    fig = _page(
        "Data quality: missing values per column",
        f"Share of missing values in each column after unknown codes were turned into missing values. "
        f"Upper panels: every column, sorted; columns dropped by the job (more than "
        f"{format_share(column_missing)} missing in the population) in grey. Bottom: the {top} columns "
        "with the most missing values, by name.",
    )
    # Subfigures, so the long names of the bottom panel do not push the upper panels to the right.
    overview, named = fig.subfigures(2, 1, height_ratios=[1.1 * len(tables), 2.4], hspace=0.02)
    for ax, table_name in zip(np.atleast_1d(overview.subplots(len(tables), 1)), tables, strict=True):
        rows = quality_columns[quality_columns["table"] == table_name].sort_values(
            "missing_share", ascending=False
        )
        dropped = rows["dropped"].astype(bool).to_numpy()
        kept_colour = _COLOURS.get(table_name, _COLOURS["kept"])
        colours = np.where(dropped, _COLOURS["dropped"], kept_colour)
        ax.bar(np.arange(len(rows)), rows["missing_share"] * 100, width=1.0, color=colours)
        ax.axhline(column_missing * 100, color="#333333", ls="--", lw=0.9)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_ylim(0, 100)
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_ylabel("missing")
        ax.set_xlabel(f"{len(rows)} columns, sorted by missing share")
        ax.xaxis.set_major_locator(NullLocator())
        ax.set_title(f"{table_name.capitalize()}: missing share per column")
        ax.legend(
            handles=[
                Patch(color=kept_colour, label=f"kept ({int((~dropped).sum())})"),
                Patch(color=_COLOURS["dropped"], label=f"dropped ({int(dropped.sum())})"),
                Line2D(
                    [],
                    [],
                    color="#333333",
                    ls="--",
                    lw=0.9,
                    label=f"threshold {format_share(column_missing)}",
                ),
            ],
            loc="upper right",
        )
    wide = quality_columns.pivot_table(
        index="column", columns="table", values="missing_share", aggfunc="first"
    )
    wide = wide.reindex(columns=tables)
    wide = wide.loc[wide.max(axis=1).sort_values(ascending=False).index[:top]][::-1]
    dropped_columns = set(quality_columns.loc[quality_columns["dropped"].astype(bool), "column"])
    labels = quality_columns.drop_duplicates("column").set_index("column")["label"]
    ax = named.subplots()
    height = 0.8 / len(tables)
    for i, table_name in enumerate(tables[:2] if len(tables) > 2 else tables):
        positions = np.arange(len(wide)) + (i - (len(tables) - 1) / 2) * height
        ax.barh(
            positions,
            wide[table_name] * 100,
            height=height,
            color=_COLOURS.get(table_name, "grey"),
            label=table_name,
        )
    ax.set_yticks(
        np.arange(len(wide)),
        [
            f"{_attribute_label(c, labels.get(c, ''))}{' ✕' if c in dropped_columns else ''}"
            for c in wide.index
        ],
    )
    ax.tick_params(axis="y", labelsize=8, length=0)
    ax.axvline(column_missing * 100, color="#333333", ls="--", lw=0.9)
    ax.set_xlim(0, 100)
    ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
    ax.set_xlabel("missing share")
    # A subfigure title, placed from the page margin: the axes title would start after the long names.
    named.suptitle(
        f"The {len(wide)} columns with the most missing values (✕ = dropped)",
        x=0.0,
        ha="left",
        fontsize=_STYLE["axes.titlesize"],
        weight="bold",
    )
    ax.legend(loc="lower right")
    return fig


@_styled
def figure_row_missing(quality_rows: pd.DataFrame, row_missing: float, rows: dict | None = None) -> Figure:
    """Histogram of each row's missing share per table, the set-aside threshold marked."""
    tables = [t for t in ("population", "customers") if t in set(quality_rows["table"])]
    tables += sorted(set(quality_rows["table"]) - set(tables))
    fig = _page(
        "Data quality: missing values per row",
        f"How many rows miss how much of the kept columns (rows on a log scale, so both the nearly complete "
        f"rows and the sparse ones show). Rows missing more than {format_share(row_missing)} (dashed line) "
        f"are set aside as {INSUFFICIENT}: counted in every share, but not assigned to a segment.",
    )
    axes = np.atleast_1d(fig.subplots(len(tables), 1, sharex=True))
    for ax, table_name in zip(axes, tables, strict=True):
        histogram = quality_rows[quality_rows["table"] == table_name].sort_values("missing_share_low")
        low = histogram["missing_share_low"].to_numpy()
        widths = histogram["missing_share_high"].to_numpy() - low
        above = low >= row_missing - 1e-12
        assigned_colour = _COLOURS.get(table_name, _COLOURS["kept"])
        colours = np.where(above, _COLOURS["set_aside"], assigned_colour)
        ax.bar(
            low * 100,
            histogram["rows"],
            width=widths * 100,
            align="edge",
            color=colours,
            edgecolor="white",
            linewidth=0.4,
        )
        ax.axvline(row_missing * 100, color="#333333", ls="--", lw=1.0)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_ylabel("rows (log scale)")
        ax.set_title(f"{table_name.capitalize()}: missing share per row")
        aside = "set aside"
        if rows and table_name in rows:
            accounting = rows[table_name]
            aside += f": {format_count(accounting['set_aside'])} of {format_count(accounting['read'])} rows"
        handles = [
            Patch(color=assigned_colour, label="assigned to a segment"),
            Patch(color=_COLOURS["set_aside"], label=aside),
        ]
        # headroom on the log axis keeps the legend clear of the tallest bars
        ax.set_ylim(0.7, max(float(histogram["rows"].max()), 1.0) * 25)
        ax.legend(handles=handles, loc="upper left")
        ax.set_xlim(0, 100)
    axes[-1].xaxis.set_major_formatter(PercentFormatter(decimals=0))
    axes[-1].set_xlabel("share of the row's kept columns that are missing")
    return fig


# ---------------------------------------------------------------------------------------------- the document


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    id: str
    numeric: list[bool] = field(default_factory=list)  # right-aligned columns


@dataclass
class Preformatted:
    """Shown in the HTML only (e.g. the whole configuration), folded away."""

    summary: str
    text: str


@dataclass
class FigureBlock:
    name: str
    figure: Figure


@dataclass
class PageBreak:
    """The PDF starts a new page here (a page per segment); the HTML ignores it."""


Block = Heading | Paragraph | Bullets | Table | Preformatted | FigureBlock | PageBreak


def _shares_table(proportions: pd.DataFrame) -> Table:
    rows = []
    for segment, row in _ordered(proportions).iterrows():
        rows.append(
            [
                segment,
                format_count(row["population_count"]),
                format_share(row["population_share"]),
                format_count(row["customers_count"]),
                format_share(row["customers_share"]),
                format_ratio(row["ratio"]),
                f"{format_ratio(row['ratio_ci_low'])} – {format_ratio(row['ratio_ci_high'])}",
                format_p(row["p_value"]),
                _grade(row),
            ]
        )
    header = [
        "Segment",
        "Population\nrows",
        "Population\nshare",
        "Customer\nrows",
        "Customer\nshare",
        "Ratio",
        "Ratio\n95% CI",
        "p-value",
        "Reading",
    ]
    numeric = [False, True, True, True, True, True, True, True, False]
    return Table(header, rows, "segment-shares", numeric)


def _run_facts(run: dict, name: str) -> list[Block]:
    blocks: list[Block] = [Heading("Run facts")]
    facts = [["Run folder", name]]
    for key, label in (
        ("segmentation_version", "segmentation version"),
        ("started", "Started"),
        ("finished", "Finished"),
    ):
        if key in run:
            facts.append([label[0].upper() + label[1:], str(run[key])])
    if "peak_worker_memory" in run:
        facts.append(["Peak worker memory", _format_bytes(run["peak_worker_memory"])])
    blocks.append(Table(["Fact", "Value"], facts, "run"))

    if run.get("inputs"):
        rows = [[key, file_name(value)] for key, value in run["inputs"].items()]
        blocks += [Heading("Inputs", 3), Table(["Input", "File"], rows, "inputs")]
    if run.get("rows"):
        rows = [
            [
                table,
                format_count(r.get("read", 0)),
                format_count(r.get("assigned", 0)),
                format_count(r.get("set_aside", 0)),
            ]
            for table, r in run["rows"].items()
        ]
        blocks += [
            Heading("Row accounting", 3),
            Table(["Table", "Rows read", "Assigned", "Set aside"], rows, "rows", [False, True, True, True]),
        ]

    method = []
    thresholds = run.get("thresholds", {})
    if "column_missing" in thresholds:
        method.append(["Column dropped when missing more than", format_share(thresholds["column_missing"])])
    if "row_missing" in thresholds:
        method.append(["Row set aside when missing more than", format_share(thresholds["row_missing"])])
    columns = run.get("columns", {})
    if "input" in columns:
        method.append(["Input columns", format_count(columns["input"])])
    if "dropped" in columns:
        method.append(
            [
                "Columns dropped",
                f"{len(columns['dropped'])}: {', '.join(columns['dropped'])}" if columns["dropped"] else "0",
            ]
        )
    if "features" in columns:
        method.append(["Encoded features", format_count(columns["features"])])
    pca = run.get("pca", {})
    for key, label in (("solver", "PCA solver"), ("n_components", "Principal components kept")):
        if key in pca:
            method.append([label, str(pca[key])])
    if "explained_variance" in pca:
        method.append(["Variance explained by them", format_share(pca["explained_variance"])])
    kmeans = _clustering(run)
    for key, label in (
        ("algorithm", "Clustering algorithm"),
        ("k", "Segments k"),
        ("k_recommended", "k recommended by the elbow"),
    ):
        if kmeans.get(key) is not None:  # k_recommended is null when the job skipped the elbow
            method.append([label, str(kmeans[key])])
    if "sse" in kmeans:
        method.append(["Within-cluster sum of squares", f"{kmeans['sse']:,.0f}"])
    if method:
        blocks += [Heading("Method", 3), Table(["Setting", "Value"], method, "method")]

    timings = run.get("timings", {})
    if timings:
        rows = [[stage, _format_seconds(seconds)] for stage, seconds in timings.items()]
        rows.append(["total", _format_seconds(sum(timings.values()))])
        blocks += [Heading("Timings per stage", 3), Table(["Stage", "Time"], rows, "timings", [False, True])]
    invalid = [
        [table, column, format_count(count)]
        for table, counts in run.get("invalid_values", {}).items()
        for column, count in counts.items()
    ]
    if invalid:
        blocks += [
            Heading("Invalid values (turned into missing values)", 3),
            Table(["Table", "Column", "Values"], invalid, "invalid-values", [False, False, True]),
        ]
    if run.get("versions"):
        blocks += [
            Heading("Versions", 3),
            Table(["Package", "Version"], [[k, str(v)] for k, v in run["versions"].items()], "versions"),
        ]
    # The scheduler address and dashboard link are dead once the run ends: left out.
    cluster = {k: v for k, v in run.get("cluster", {}).items() if k not in ("scheduler", "dashboard")}
    if cluster:
        rows = [
            [key.replace("_", " "), _format_bytes(value) if key.startswith("memory") else str(value)]
            for key, value in cluster.items()
        ]
        blocks += [Heading("Cluster", 3), Table(["Setting", "Value"], rows, "cluster")]
    if run.get("config"):
        blocks.append(
            Preformatted(
                "Configuration as run (paths by file name)",
                json.dumps(_file_names(run["config"]), indent=2, sort_keys=True),
            )
        )
    return blocks


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


def _outputs(files: RunFiles) -> list[Block]:
    """The files a reader acts on, by name, with what each holds."""
    if not files.outputs:
        return []
    rows = [[name, OUTPUT_FILES[name]] for name in files.outputs]
    return [Heading("Files of this run", 3), Table(["File", "What it holds"], rows, "outputs")]


def fixed_k_note(k: int) -> str:
    """What the report says instead of the choice-of-k figure when the run folder has no elbow."""
    return (
        f"k was fixed at {k} in the job configuration: no other number of segments was fitted, so there is "
        "no elbow (sum of squares and silhouette per k) to show. To compare values of k, run the "
        "segmentation elbow command on the same job."
    )


def build_report(files: RunFiles, top_attributes: int = 8) -> list[Block]:
    """The report as a list of blocks (headings, text, tables, figures), in reading order."""
    run = files.run
    clustering = _clustering(run)
    k = int(_require({"clustering": clustering}, "clustering", "k"))
    n_components = int(_require(run, "pca", "n_components"))
    row_missing = float(_require(run, "thresholds", "row_missing"))
    column_missing = float(_require(run, "thresholds", "column_missing"))
    explained = run["pca"].get("explained_variance")
    proportions, profiles = files.proportions, files.profiles

    subtitle = f"Run {files.name}"
    if "finished" in run:
        subtitle += f", finished {run['finished']}"
    blocks: list[Block] = [
        Heading(REPORT_TITLE, 1),
        Paragraph(subtitle),
        Heading("Headline"),
        Bullets(headline(proportions, run, _warning(files, k))),
        Heading("Segment shares"),
        FigureBlock("segment_shares", figure_segment_shares(proportions)),
        _shares_table(proportions),
        Heading("Recommendations"),
        *[Paragraph(p) for p in recommendations(proportions, row_missing)],
        *_outputs(files),
        *_response_section(proportions, run.get("response")),
        Heading("Segment profiles"),
        FigureBlock("segment_profiles", figure_segment_profiles(profiles, proportions, top_attributes)),
    ]
    described = min(top_attributes, DESCRIBED_ATTRIBUTES)
    descriptions: list[Block] = []
    table = _ordered(proportions)
    for representation in ("over", "under"):
        chosen = table[(table["representation"] == representation) & (table.index != INSUFFICIENT)]
        for segment, row in chosen.sort_values("ratio", ascending=representation == "under").iterrows():
            rows = profiles[profiles["segment"] == segment]
            if rows.empty:
                continue
            lift = f"{'lift' if representation == 'over' else 'ratio'} {format_ratio(row['ratio'])}"
            descriptions += [
                Heading(f"Segment {segment}: {REPRESENTATION_WORDS[representation]} ({lift})", 3),
                Paragraph(describe_segment(rows, described)),
            ]
    if descriptions:
        blocks.append(
            Paragraph(
                "In words: how each over- and under-represented segment differs from the population, "
                f"from its {described} most distinguishing attributes (those at least {MIN_DIFFERENCE:.1f} "
                "sd away)."
            )
        )
    blocks += descriptions
    blocks += _segment_pages(files)
    blocks.append(Heading("Choice of k"))
    if files.elbow is None or files.elbow.empty:
        blocks.append(Paragraph(fixed_k_note(k)))
    else:
        blocks.append(FigureBlock("elbow", figure_elbow(files.elbow, k, clustering.get("k_recommended"))))
    blocks += [
        Heading("Principal components"),
        FigureBlock("pca_variance", figure_pca_variance(files.pca, n_components, explained)),
        FigureBlock("pca_loadings", figure_pca_loadings(files.pca_loadings, files.pca)),
        Heading("Data quality"),
        FigureBlock("column_missing", figure_column_missing(files.quality_columns, column_missing)),
        FigureBlock("row_missing", figure_row_missing(files.quality_rows, row_missing, run.get("rows"))),
        *_run_facts(run, files.name),
    ]
    return blocks


def _clustering(run: dict) -> dict:
    """run.json's clustering block (``clustering``, or ``kmeans`` in runs made before it was renamed)."""
    return run.get("clustering") or run.get("kmeans") or {}


def _warning(files: RunFiles, k: int) -> str | None:
    """The headline's weak-structure warning, from the silhouette at the run's k and the stabilities."""
    silhouette = None
    if files.elbow is not None and "silhouette" in files.elbow:
        at_k = pd.to_numeric(
            files.elbow.loc[files.elbow["k"].astype(int) == k, "silhouette"], errors="coerce"
        )
        silhouette = float(at_k.iloc[0]) if len(at_k) and at_k.notna().all() else None
    stabilities = [] if files.stability is None else files.stability["jaccard_mean"].astype(float).tolist()
    return structure_warning(silhouette, stabilities)


SEGMENT_ATTRIBUTES = 6  # rows of each segment page's attribute table


def _segment_pages(files: RunFiles) -> list[Block]:
    """A page per segment: name, persona, shares with intervals, lift, response rate, stability, and its
    most distinguishing attributes with labels, segment and population values."""
    blocks: list[Block] = [
        Heading("Segments"),
        Paragraph(
            "One page per segment: its name and profile in words (from its most distinguishing documented "
            "attributes), its numbers with 95% intervals, how stable it is under bootstrap refits of the "
            "clustering, and the attributes that set it apart."
        ),
    ]
    table = _ordered(files.proportions)
    stability = files.stability.set_index("segment") if files.stability is not None else pd.DataFrame()
    totals = {t: table[f"{t}_count"].sum() for t in ("population", "customers")}
    for segment, row in table.drop(index=INSUFFICIENT, errors="ignore").iterrows():
        rows = files.profiles[files.profiles["segment"] == segment]
        name = rows["segment_name"].iloc[0] if "segment_name" in rows and len(rows) else ""
        blocks += [PageBreak(), Heading(f"Segment {segment}" + (f": {name}" if name else ""), 3)]
        if "persona" in rows and len(rows):
            blocks.append(Paragraph(rows["persona"].iloc[0]))
        facts = []
        for t, label in (("population", "Share of the population"), ("customers", "Share of customers")):
            low, high = wilson_interval(row[f"{t}_count"], totals[t])
            facts.append(
                [label, f"{format_share(row[f'{t}_share'])} ({format_share(low)} – {format_share(high)})"]
            )
        facts.append(
            [
                "Customer/population ratio (lift)",
                f"{format_ratio(row['ratio'])} ({format_ratio(row['ratio_ci_low'])} – "
                f"{format_ratio(row['ratio_ci_high'])}): "
                f"{representation_phrase(row['ratio'], row['ratio_ci_low'], row['ratio_ci_high'])}",
            ]
        )
        if "response_rate" in row and row.get("mailout_count", 0):
            facts.append(
                [
                    "Mail-out response rate",
                    f"{row['response_rate']:.2%} ({row['response_ci_low']:.2%} – {row['response_ci_high']:.2%}),"
                    f" {int(row['mailout_responses']):,} of {int(row['mailout_count']):,}",
                ]
            )
        if segment in stability.index:
            jaccard = stability.loc[segment]
            facts.append(
                [
                    "Stability (bootstrap Jaccard)",
                    f"{jaccard['jaccard_mean']:.2f} ({jaccard['jaccard_low']:.2f} – "
                    f"{jaccard['jaccard_high']:.2f}): {stability_label(float(jaccard['jaccard_mean']))}",
                ]
            )
        blocks.append(Table(["Measure", "Value (95% interval)"], facts, f"segment-{segment}"))
        top = rows.sort_values("rank").head(SEGMENT_ATTRIBUTES)
        if len(top):
            attributes = [
                [
                    _attribute_label(r.attribute, r.label, 72),
                    f"{r.segment_mean:.2f}",
                    f"{r.population_mean:.2f}",
                    format_sd(r.standardized_difference),
                ]
                for r in top.itertuples()
            ]
            blocks.append(
                Table(
                    ["Attribute", "Segment", "Population", "Difference"],
                    attributes,
                    f"segment-{segment}-attributes",
                    [False, True, True, True],
                )
            )
    return blocks


def _response_section(proportions: pd.DataFrame, response: dict | None) -> list[Block]:
    """Response rate per segment next to its lift, and the response model's files (runs with a mail-out)."""
    if not response or "response_rate" not in proportions.columns:
        return []
    test = response["rate_test"]
    text = (
        f"Mail-out responses by segment (Wilson 95% intervals); chi-square p = {test['p_value']:.2g}."
        if test["p_value"] is not None
        else "Mail-out responses by segment (Wilson 95% intervals)."
    )
    cv = response.get("cross_validation")
    if cv:
        text += (
            f" Response model, 5-fold ROC AUC {cv['model']['roc_auc']['mean']:.3f} "
            f"(± {cv['model']['roc_auc']['std']:.3f}; segment rate alone {cv['segment_rate']['roc_auc']['mean']:.3f},"
            f" lift alone {cv['segment_lift']['roc_auc']['mean']:.3f})."
        )
    gains = (cv or {}).get("model", {}).get("gains")
    if gains:
        text += (
            f" Ranked by the model, the top 10% of the mail-out hold {gains['top_decile_lift']:.1f} times the "
            "base response rate (out-of-fold)."
        )
    files = ", ".join((response.get("files") or {}).values())
    rows = [
        [str(r.segment), format_ratio(r.ratio), f"{r.mailout_count:,}", f"{r.mailout_responses:,}",
         f"{r.response_rate:.2%} ({r.response_ci_low:.2%}-{r.response_ci_high:.2%})" if r.mailout_count else "-"]
        for r in proportions.itertuples()
    ]  # fmt: skip
    header = ["segment", "lift", "mail-out rows", "responses", "response rate (95% CI)"]
    return [
        Heading("Who responds"),
        Paragraph(
            text
            + (f" Files: {files}." if files else "")
            + (f" {response['warning']}." if "warning" in response else "")
        ),
        Table(header, rows, "response", [False, True, True, True, True]),
        *([FigureBlock("gains", figure_gains(gains))] if gains else []),
    ]


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f6f4; line-height: 1.5; }
main { max-width: 880px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.9em; margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #4C72B0; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-bottom: 0.3em; }
nav ul { columns: 2; padding-left: 1.2em; }
figure { margin: 1em 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f0f0ee; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure h3 { text-align: left; margin: 0 0 0.4em; }
figcaption { text-align: left; font-size: 0.9em; color: #444; margin-top: 0.4em; }
pre { background: #f6f6f4; padding: 12px; overflow-x: auto; font-size: 0.85em; }
"""


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def figure_png(figure: Figure, dpi: int = _PNG_DPI) -> bytes:
    """The figure alone as PNG bytes: without the page's title, caption and running header (the HTML sets
    them as text) and cropped to what is drawn, so no picture of a whole page."""
    hidden = [text for text in figure.texts if text.get_visible()]
    for text in hidden:
        text.set_visible(False)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    finally:
        for text in hidden:
            text.set_visible(True)
    return buffer.getvalue()


def _html_cell(tag: str, text: str, right: bool) -> str:
    attribute = ' class="num"' if right else ""
    return f"<{tag}{attribute}>{html.escape(text)}</{tag}>"


def render_html(blocks: Sequence[Block]) -> str:
    """One self-contained HTML page: inline CSS, figures as base64 PNG, no external resource."""
    escape = html.escape
    sections = [b.text for b in blocks if isinstance(b, Heading) and b.level == 2]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(REPORT_TITLE)}</title><style>{_CSS}</style></head><body><main>",
    ]
    navigation_done = False
    for block in blocks:
        if isinstance(block, Heading):
            if block.level == 2 and not navigation_done:
                links = "".join(f'<li><a href="#{_slug(s)}">{escape(s)}</a></li>' for s in sections)
                parts.append(f"<nav><ul>{links}</ul></nav>")
                navigation_done = True
            parts.append(f'<h{block.level} id="{_slug(block.text)}">{escape(block.text)}</h{block.level}>')
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            numeric = block.numeric or [False] * len(block.header)
            head = "".join(
                _html_cell("th", h.replace("-\n", "").replace("\n", " "), r)
                for h, r in zip(block.header, numeric, strict=True)
            )
            body = "".join(
                "<tr>" + "".join(_html_cell("td", c, r) for c, r in zip(row, numeric, strict=True)) + "</tr>"
                for row in block.rows
            )
            parts.append(
                f'<table id="{block.id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            )
        elif isinstance(block, Preformatted):
            parts.append(
                f"<details><summary>{escape(block.summary)}</summary><pre>{escape(block.text)}</pre></details>"
            )
        elif isinstance(block, FigureBlock):
            png = figure_png(block.figure)
            width, height = (int.from_bytes(png[i : i + 4], "big") for i in (16, 20))
            data = base64.b64encode(png).decode("ascii")
            title = escape(block.figure.get_label() or block.name)
            image = (
                f'<img alt="{title}" width="{width}" height="{height}" src="data:image/png;base64,{data}">'
            )
            caption = _CAPTIONS.get(block.figure, "")
            parts.append(
                f'<figure id="figure-{block.name}"><h3>{title}</h3>{image}'
                + (f"<figcaption>{escape(caption)}</figcaption>" if caption else "")
                + "</figure>"
            )
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------- PDF


class _PdfLayout:
    """Lays text blocks out on A4 pages (flowing from page to page) and adds figure pages as they are;
    every page gets a running header (report and section) and a page number."""

    width, height = (72 * s for s in A4_PORTRAIT)  # points
    left, right, top, bottom = 72 * _MARGIN, 72 * _MARGIN, 68.0, 62.0

    def __init__(self, pdf: PdfPages):
        self.pdf = pdf
        self.page: Figure | None = None
        self.y = 0.0  # points from the top of the page
        self.number = 0
        self.section = ""
        self.pending: list[Heading] = []  # section headings waiting for the text that follows them

    @property
    def text_width(self) -> float:
        return self.width - self.left - self.right

    def _decorate(self, figure: Figure) -> None:
        self.number += 1
        header = REPORT_TITLE + (f"  ·  {self.section}" if self.section else "")
        grey = {"fontsize": 8, "color": "#777777"}
        figure.text(self.left / self.width, 1 - 26 / self.height, header, va="top", **grey)
        figure.text(1 - self.right / self.width, 24 / self.height, f"page {self.number}", ha="right", **grey)

    def _flush(self) -> None:
        if self.page is not None:
            self.pdf.savefig(self.page)
            self.page = None

    def _room(self, needed: float) -> None:
        if self.page is None or self.y + needed > self.height - self.bottom:
            self._flush()
            self.page = Figure(figsize=A4_PORTRAIT)
            self._decorate(self.page)
            self.y = self.top

    def _text(self, x: float, text: str, size: float, **style) -> None:
        self.page.text(x / self.width, 1 - self.y / self.height, text, fontsize=size, va="top", **style)

    def _lines(
        self,
        lines: list[str],
        size: float,
        indent: float = 0.0,
        weight: str = "normal",
        before: float = 0.0,
        after: float = 6.0,
        keep: int = 2,
    ) -> None:
        step = size * 1.45
        self._room(before + step * min(len(lines), keep))
        self.y += before if self.y > self.top else 0
        for line in lines:
            self._room(step)
            self._text(self.left + indent, line, size, weight=weight)
            self.y += step
        self.y += after

    def heading(self, block: Heading) -> None:
        if block.level == 2:
            # a section made only of figures leaves its heading unprinted (its pages' header names it)
            self.section = block.text
            self.pending = [block]
        else:
            self._emit_pending()
            self._heading(block)

    def _heading(self, block: Heading) -> None:
        size = {1: 24.0, 2: 15.0}.get(block.level, 11.5)
        lines = _wrap(block.text, self.text_width, size, "bold")
        # keep a heading with at least three lines of what follows it
        self._room(size * 1.45 * len(lines) + 14 + 5 * 14.5)
        self._lines(lines, size, weight="bold", before=14 if block.level > 1 else 0, after=6, keep=len(lines))

    def _emit_pending(self) -> None:
        for heading in self.pending:
            self._heading(heading)
        self.pending.clear()

    def paragraph(self, text: str) -> None:
        self._emit_pending()
        self._lines(_wrap(text, self.text_width, 10), 10)

    def bullets(self, items: list[str]) -> None:
        self._emit_pending()
        for item in items:
            lines = _wrap(item, self.text_width - 14, 10)
            self._room(14.5 * min(2, len(lines)))
            self._text(self.left + 2, "•", 10)
            self._lines(lines, 10, indent=14, after=4)

    def table(self, block: Table) -> None:
        self._emit_pending()
        numeric = block.numeric or [False] * len(block.header)
        size, gap = 9.0, 12.0
        header = [h.split("\n") for h in block.header]

        def widths(size: float) -> list[float]:
            return [
                max(
                    [_text_width(line, size, "bold") for line in header[i]]
                    + [_text_width(row[i], size) for row in block.rows]
                )
                for i in range(len(block.header))
            ]

        column_widths = widths(size)
        gaps = gap * (len(column_widths) - 1)
        # A long last column (paths, lists) wraps; a table too wide for other reasons gets a smaller font.
        wrap_last = (
            sum(column_widths[:-1]) + gaps + min(column_widths[-1], 0.35 * self.text_width) <= self.text_width
        )
        if sum(column_widths) + gaps > self.text_width and not wrap_last:
            size = max(6.5, size * (self.text_width - gaps) / sum(column_widths))
            column_widths = widths(size)
        wrap_last = sum(column_widths) + gaps > self.text_width
        if wrap_last:
            column_widths[-1] = self.text_width - sum(column_widths[:-1]) - gaps
        table_right = self.left + sum(column_widths) + gaps
        starts = np.concatenate([[0.0], np.cumsum(np.array(column_widths[:-1]) + gap)]) + self.left
        step = size * 1.45

        def draw_header() -> None:
            lines = max(len(h) for h in header)
            for i, cell in enumerate(header):
                for j, line in enumerate(cell):
                    x = starts[i] + (column_widths[i] if numeric[i] else 0)
                    self.page.text(
                        x / self.width,
                        1 - (self.y + (lines - len(cell) + j) * step) / self.height,
                        line,
                        fontsize=size,
                        weight="bold",
                        va="top",
                        ha="right" if numeric[i] else "left",
                    )
            self.y += lines * step + 2
            self.page.add_artist(
                Line2D(
                    [self.left / self.width, table_right / self.width],
                    [1 - self.y / self.height] * 2,
                    color="#444444",
                    lw=0.6,
                )
            )
            self.y += 3

        self._room(step * (max(len(h) for h in header) + 2) + 5)
        self.y += 4
        draw_header()
        for row in block.rows:
            cells = [[c] for c in row]
            if wrap_last:
                cells[-1] = _wrap(row[-1], column_widths[-1], size)
            needed = step * max(len(c) for c in cells)
            if self.y + needed > self.height - self.bottom:
                self._room(self.height)  # new page, header again
                draw_header()
            for i, cell in enumerate(cells):
                for j, line in enumerate(cell):
                    x = starts[i] + (column_widths[i] if numeric[i] else 0)
                    self.page.text(
                        x / self.width,
                        1 - (self.y + j * step) / self.height,
                        line,
                        fontsize=size,
                        va="top",
                        ha="right" if numeric[i] else "left",
                    )
            self.y += needed
        self.y += 8

    def page_break(self) -> None:
        self._emit_pending()
        self._flush()

    def figure(self, figure: Figure) -> None:
        self._flush()
        self._decorate(figure)
        self.pdf.savefig(figure)

    def finish(self) -> None:
        self._emit_pending()
        self._flush()


def render_pdf(blocks: Sequence[Block], path: str | os.PathLike) -> int:
    """Write the blocks as an A4 portrait PDF; figures get a page each, text flows. Returns the page count."""
    # fontTools logs every font subset at INFO; keep a verbose job log readable
    font_logger = logging.getLogger("fontTools")
    font_level = font_logger.level
    font_logger.setLevel(max(font_level, logging.WARNING))
    try:
        return _write_pdf(blocks, path)
    finally:
        font_logger.setLevel(font_level)


def _write_pdf(blocks: Sequence[Block], path: str | os.PathLike) -> int:
    with (
        mpl.rc_context(_STYLE),
        PdfPages(path, metadata={"Title": REPORT_TITLE, "Creator": "segmentation"}) as pdf,
    ):
        layout = _PdfLayout(pdf)
        for block in blocks:
            if isinstance(block, Heading):
                layout.heading(block)
            elif isinstance(block, Paragraph):
                layout.paragraph(block.text)
            elif isinstance(block, Bullets):
                layout.bullets(block.items)
            elif isinstance(block, Table):
                layout.table(block)
            elif isinstance(block, FigureBlock):
                layout.figure(block.figure)
            elif isinstance(block, PageBreak):
                layout.page_break()
        layout.finish()
        return layout.number


# ---------------------------------------------------------------------------------------------- writing


@contextmanager
def replace_when_done(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it onto ``path``
    (atomic on one file system), otherwise delete it, so ``path`` is never half-written."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_report(run_dir: str | os.PathLike, top_attributes: int = 8) -> tuple[Path, Path]:
    """Write ``report.html`` and ``Customer Segmentation Report.pdf`` into the run folder.

    Parameters
    ----------
    run_dir : a finished run folder (docs/run-folder.md).
    top_attributes : int, default 8. Attributes per segment in the profile heatmap and the descriptions.

    Both files are rendered in full to temporary files in the run folder and only then renamed into place;
    after an error neither is touched. Returns (html path, pdf path).
    """
    run_dir = Path(run_dir)
    started = time.perf_counter()
    blocks = build_report(read_run_files(run_dir), top_attributes)
    page = render_html(blocks)
    html_path, pdf_path = run_dir / HTML_NAME, run_dir / PDF_NAME
    with ExitStack() as stack:
        pdf_temporary = stack.enter_context(replace_when_done(pdf_path))
        html_temporary = stack.enter_context(replace_when_done(html_path))
        pages = render_pdf(blocks, pdf_temporary)
        html_temporary.write_text(page, encoding="utf-8")
    logger.info(
        "report: %s and %s (%d pages) in %.1f s",
        html_path,
        pdf_path.name,
        pages,
        time.perf_counter() - started,
    )
    return html_path, pdf_path
