"""The figures: each a pure function ``figure_<name>(small frames) -> Figure``, one A4 page with
its title and caption, drawn with matplotlib's Agg canvas without touching pyplot's global state."""

from __future__ import annotations

import functools
import logging
import math
import weakref
from collections.abc import Callable

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator, PercentFormatter

from ..compare import wilson_interval
from .formats import INSUFFICIENT, _ordered, format_count, format_ratio, format_share, segment_order
from .text import REPRESENTATION_WORDS, distinguishing_attributes

logger = logging.getLogger(__name__)


A4_PORTRAIT = (8.27, 11.69)  # inches


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


def _tables_in(quality: pd.DataFrame) -> list[str]:
    """The tables of a quality frame: population and customers first, then the others by name."""
    present = set(quality["table"])
    first = [t for t in ("population", "customers") if t in present]
    return first + sorted(present - set(first))


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
        "Every k shown was fitted on the seeding sample and scored on all rows. Top: the sum of squared distances to the nearest centre (SSE) "
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
    tables = _tables_in(quality_columns)
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
    tables = _tables_in(quality_rows)
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
