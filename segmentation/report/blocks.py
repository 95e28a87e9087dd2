"""The report as a list of blocks (headings, text, tables, figures, page breaks) in reading order,
which the HTML and the PDF renderers both lay out, so the two show the same numbers."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.figure import Figure

from ..compare import wilson_interval
from ..wording import (
    representation_phrase,
    stability_label,
    structure_warning,
)
from .figures import (
    _attribute_label,
    figure_column_missing,
    figure_elbow,
    figure_gains,
    figure_pca_loadings,
    figure_pca_variance,
    figure_row_missing,
    figure_segment_profiles,
    figure_segment_shares,
)
from .files import RunFiles, _require
from .formats import (
    INSUFFICIENT,
    _file_names,
    _format_bytes,
    _format_seconds,
    _ordered,
    file_name,
    format_count,
    format_p,
    format_ratio,
    format_sd,
    format_share,
)
from .text import (
    DESCRIBED_ATTRIBUTES,
    MIN_DIFFERENCE,
    _grade,
    describe_segment,
    fixed_k_note,
    headline,
    recommendations,
)

logger = logging.getLogger(__name__)


REPORT_TITLE = "Customer Segmentation Report"


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
        ("how_k_was_chosen", "How k was chosen"),
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


def _outputs(files: RunFiles) -> list[Block]:
    """The files a reader acts on, by name, with what each holds."""
    if not files.outputs:
        return []
    rows = [[entry.name, entry.holds] for entry in files.outputs]
    return [Heading("Files of this run", 3), Table(["File", "What it holds"], rows, "outputs")]


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
                Heading(f"Segment {segment}: {_grade_words(row)} ({lift})", 3),
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


def _grade_words(row: pd.Series) -> str:
    """'strongly over-represented', 'slightly under-represented' or 'in proportion'."""
    grade = _grade(row)
    return grade if grade == "in proportion" else f"{grade}-represented"


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
