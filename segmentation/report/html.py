"""The HTML renderer: one self-contained page, text as HTML, tables as ``<table>``, each figure a
base64 PNG of the figure alone (its title and caption set as HTML text, not a picture of a page)."""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence

from matplotlib.figure import Figure

from .blocks import REPORT_TITLE, Block, Bullets, FigureBlock, Heading, Paragraph, Preformatted, Table
from .figures import _CAPTIONS

logger = logging.getLogger(__name__)


_PNG_DPI = 115  # HTML figures: about the width of the page column, heatmap text readable


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f6f4; line-height: 1.5; }
main { max-width: 980px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.9em; margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #4C72B0; padding-bottom: 4px; margin-top: 2em; }
h3 { margin-bottom: 0.3em; }
nav ul { columns: 2; padding-left: 1.2em; }
figure { margin: 1em 0; text-align: center; }
figure img { max-width: 100%; height: auto; }
div.table { overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
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
                f'<div class="table"><table id="{block.id}"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>"
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
