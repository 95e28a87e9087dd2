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

The package keeps one concern per module, in the order the report is made: ``files`` (what it reads),
``formats`` (numbers), ``text`` (sentences), ``figures``, ``blocks`` (the document), ``html`` and ``pdf``
(the two renderers). The names below are its public interface.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import ExitStack
from pathlib import Path

from ..compare import wilson_interval
from ..io import replace_when_done
from ..run_folder import REPORT_HTML, REPORT_PDF
from .blocks import (
    FIGURES,
    REPORT_TITLE,
    SECTIONS,
    SEGMENT_ATTRIBUTES,
    Block,
    Bullets,
    FigureBlock,
    Heading,
    PageBreak,
    Paragraph,
    Preformatted,
    Table,
    build_report,
)
from .figures import (
    A4_PORTRAIT,
    figure_column_missing,
    figure_elbow,
    figure_gains,
    figure_pca_loadings,
    figure_pca_variance,
    figure_row_missing,
    figure_segment_profiles,
    figure_segment_shares,
)
from .files import RunFiles, read_run_files
from .formats import (
    INSUFFICIENT,
    file_name,
    format_count,
    format_p,
    format_ratio,
    format_sd,
    format_share,
    segment_order,
)
from .html import _PNG_DPI, figure_png, render_html
from .pdf import render_pdf
from .text import (
    DESCRIBED_ATTRIBUTES,
    MIN_DIFFERENCE,
    REPRESENTATION_WORDS,
    describe_segment,
    distinguishing_attributes,
    fixed_k_note,
    headline,
    recommendations,
)

__all__ = [
    "A4_PORTRAIT", "DESCRIBED_ATTRIBUTES", "FIGURES", "INSUFFICIENT", "MIN_DIFFERENCE",
    "REPORT_TITLE", "REPRESENTATION_WORDS", "SECTIONS", "SEGMENT_ATTRIBUTES",
    "Block", "Bullets", "FigureBlock", "Heading", "PageBreak", "Paragraph", "Preformatted", "RunFiles",
    "Table", "_PNG_DPI", "build_report", "describe_segment", "distinguishing_attributes", "figure_column_missing",
    "figure_elbow", "figure_gains", "figure_pca_loadings", "figure_pca_variance", "figure_png",
    "figure_row_missing", "figure_segment_profiles", "figure_segment_shares", "file_name", "fixed_k_note",
    "format_count", "format_p", "format_ratio", "format_sd", "format_share", "headline", "read_run_files",
    "recommendations", "render_html", "render_pdf", "replace_when_done", "segment_order", "wilson_interval",
    "write_report", "write_with_targets",
]  # fmt: skip

logger = logging.getLogger(__name__)


def write_with_targets(folder, top_targets: int) -> None:
    """The targeting list and the HTML and PDF report, into a job's staged run folder
    (``run_folder.RunFolder``; the targeting list reads the assignments where the workers wrote them, in
    object storage for a remote run), shown as the ``report`` stage."""
    from ..progress import StageDisplay
    from ..target import write_targets

    display = StageDisplay()
    with display.stage("report") as stage:
        started = time.perf_counter()
        stage.detail("targeting list")
        write_targets(folder.staging, top_n=top_targets, source=folder.reader())
        stage.detail("HTML and PDF")
        write_report(folder.staging)
        logger.info("report written in %.1f s", time.perf_counter() - started)
    display.close()


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
    html_path, pdf_path = run_dir / REPORT_HTML.name, run_dir / REPORT_PDF.name
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
