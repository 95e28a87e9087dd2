"""The PDF renderer: text blocks flow over A4 pages, figures get a page each, every page a running
header and a page number; matplotlib's PDF backend, no other layout library."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .blocks import REPORT_TITLE, Block, Bullets, FigureBlock, Heading, PageBreak, Paragraph, Table
from .figures import _MARGIN, _STYLE, A4_PORTRAIT, _text_width, _wrap

logger = logging.getLogger(__name__)


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
            # 2% to spare: text widths do not scale exactly with the size, and a table that still overflowed
            # by a hair wrapped its last column's short words ("strongly / under").
            size = max(6.5, 0.98 * size * (self.text_width - gaps) / sum(column_widths))
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
