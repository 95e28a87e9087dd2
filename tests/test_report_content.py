"""The report's content beyond the numbers: figures as figures (not pages) in the HTML, no local paths,
the weak-structure warning, graded wording, a page per segment, the response model's gains."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from segmentation import report
from segmentation.report import read_run_files, write_report
from tests.fake_run import STABILITY, K, write_fake_run
from tests.test_report import _ReportParser

# Where a user's files and cluster lived: none of it may reach the report.
LOCAL = {
    "population": "/home/analyst/private/population.csv",
    "customers": "s3://acme-bucket/exports/customers.csv.gz",
    "attributes": "C:\\Users\\analyst\\attributes.csv",
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = write_fake_run(tmp_path_factory.mktemp("content") / "fake-run")
    run = json.loads((run_dir / "run.json").read_text())
    run["inputs"] = dict(LOCAL)
    run["config"]["inputs"] = dict(LOCAL)
    run["config"]["output"] = str(run_dir)
    (run_dir / "run.json").write_text(json.dumps(run))
    for name in ("targets.parquet", "targets_top.csv"):
        (run_dir / name).write_bytes(b"")
    return run_dir


@pytest.fixture(scope="module")
def written(run_dir):
    return write_report(run_dir)


@pytest.fixture(scope="module")
def html(written):
    return written[0].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def parsed(html):
    parser = _ReportParser()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def pdf_text(written):
    return "\n".join(page.extract_text() for page in PdfReader(written[1]).pages)


def test_html_shows_each_figure_alone_with_its_title_and_caption_as_text(run_dir, html, parsed):
    page = [round(side * report._PNG_DPI) for side in report.A4_PORTRAIT]
    figures = re.findall(r"<figure id=\"figure-(\w+)\"><h3>([^<]+)</h3><img [^>]*width=\"(\d+)\" "
                         r"height=\"(\d+)\"[^>]*>(<figcaption>[^<]+</figcaption>)?</figure>", html)  # fmt: skip
    assert [f[0] for f in figures] == list(report.FIGURES)
    for name, _title, width, height, caption in figures:
        # cropped to the drawing: a whole A4 page would be page[0] x page[1] pixels
        assert int(width) < page[0] * 0.9 and int(height) < page[1] * 0.85, name
        assert caption, name
    assert '<table id="segment-shares">' in html
    assert len(parsed.tables["segment-shares"]) == len(read_run_files(run_dir).proportions) + 1


@pytest.mark.parametrize("where", ["html", "pdf"])
def test_no_local_path_or_dead_address_in_the_report(run_dir, html, pdf_text, where):
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html) if where == "html" else pdf_text
    for fragment in ("/home/analyst", "s3://acme-bucket", "C:\\Users", "127.0.0.1", str(run_dir.parent)):
        assert fragment not in text, fragment
    assert not re.search(r"(?<![\w.<])/(?:[\w.-]+/)+[\w.-]+", text.replace("</", "<"))
    for name in ("population.csv", "customers.csv.gz", "attributes.csv"):
        assert name in text  # inputs named by their file names


def test_headline_warns_when_a_segment_is_unstable(parsed):
    headline = parsed.sections["Headline"]
    assert "Weak structure" in headline
    assert "1 segment would not reliably come back" in headline
    assert "mean silhouette" not in headline  # the fake's silhouette at k (0.145) is not weak


def test_targeting_files_are_named(parsed):
    files = dict(map(tuple, parsed.tables["outputs"][1:]))
    assert {"targets.parquet", "targets_top.csv", "stability.csv"} <= set(files)


def test_a_page_per_segment(run_dir, parsed, pdf_text):
    files = read_run_files(run_dir)
    text = parsed.sections["Segments"]
    for segment in range(K):
        rows = files.profiles[files.profiles["segment"] == str(segment)]
        assert f"Segment {segment}: {rows['segment_name'].iloc[0]}" in text
        assert rows["persona"].iloc[0] in text
        facts = dict(map(tuple, parsed.tables[f"segment-{segment}"][1:]))
        assert facts["Stability (bootstrap Jaccard)"].startswith(f"{STABILITY[segment]:.2f} (")
        assert facts["Stability (bootstrap Jaccard)"].endswith(
            "unstable" if STABILITY[segment] < 0.6 else ("stable" if STABILITY[segment] >= 0.85 else "fuzzy")
        )
        assert re.fullmatch(
            r"\d+\.\d\d% \(\d+\.\d\d% – \d+\.\d\d%\), \d+ of \d+", facts["Mail-out response rate"]
        )
        assert re.fullmatch(r"\d+\.\d% \(\d+\.\d% – \d+\.\d%\)", facts["Share of customers"])
        attributes = parsed.tables[f"segment-{segment}-attributes"]
        assert attributes[0] == ["Attribute", "Segment", "Population", "Difference"]
        assert len(attributes) == 1 + report.SEGMENT_ATTRIBUTES
        assert f"Segment {segment}: " in pdf_text


def test_response_evidence_and_gains(parsed):
    text = parsed.sections["Who responds"]
    assert "the top 10% of the mail-out hold 3.1 times the base response rate" in text
    header, *rows = parsed.tables["response"]
    assert header[1] == "lift" and header[-1] == "response rate (95% CI)"


def test_elbow_shows_sse_from_zero_silhouette_threshold_and_stability(run_dir):
    files = read_run_files(run_dir)
    figure = report.figure_elbow(files.elbow, K)
    sse, silhouette, stability = figure.axes[:3]
    assert sse.get_ylim()[0] == 0
    assert any(line.get_ydata()[0] == 0.1 for line in silhouette.lines if len(line.get_ydata()) == 2)
    assert stability.get_ylim() == (0, 1.02)


@pytest.mark.parametrize(
    ("ratio", "low", "high", "representation", "words"),
    [
        (0.30, 0.21, 0.36, "under", "Segment 4 is under-served"),
        (0.83, 0.78, 0.88, "under", "Segment 4 is slightly under-represented"),
        (1.30, 1.15, 1.45, "over", "Segment 4 is slightly over-represented"),
        (2.10, 1.80, 2.40, "over", "Target segment 4"),
        (0.90, 0.70, 1.10, "under", "hold customers in proportion"),  # flagged, but the interval covers 1
    ],
)
def test_recommendations_are_graded(run_dir, ratio, low, high, representation, words):
    proportions = read_run_files(run_dir).proportions.copy()
    row = proportions["segment"] == "4"
    proportions.loc[row, ["ratio", "ratio_ci_low", "ratio_ci_high", "representation"]] = [
        ratio, low, high, representation,
    ]  # fmt: skip
    text = " ".join(report.recommendations(proportions, 0.5))
    assert words in text
    if "in proportion" in words:
        assert "Segments 1, 3, 4 and 7 hold customers in proportion" in text


def test_a_run_folder_from_before_stability_and_personas_still_reports(tmp_path):
    run_dir = write_fake_run(tmp_path / "old")
    (run_dir / "stability.csv").unlink()
    profiles = read_run_files(run_dir).profiles.drop(columns=["segment_name", "persona"])
    profiles.to_csv(run_dir / "profiles.csv", index=False)
    files = read_run_files(run_dir)
    blocks = report.build_report(files)
    tables = {b.id: b for b in blocks if isinstance(b, report.Table)}
    assert "Stability (bootstrap Jaccard)" not in dict(tables["segment-0"].rows)
    headings = [b.text for b in blocks if isinstance(b, report.Heading)]
    assert "Segment 0" in headings
    assert not any(isinstance(b, report.Bullets) and "Weak structure" in " ".join(b.items) for b in blocks)


def _visible_texts(figure):
    from matplotlib.text import Text

    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("segment_shares", lambda f: (f.proportions,)),
        ("segment_profiles", lambda f: (f.profiles, f.proportions, 8)),
        ("elbow", lambda f: (f.elbow, K)),
        ("gains", lambda f: (f.run["response"]["cross_validation"]["model"]["gains"],)),
        ("pca_loadings", lambda f: (f.pca_loadings, f.pca)),
        ("column_missing", lambda f: (f.quality_columns, 0.3)),
    ],
)
def test_figure_text_is_inside_the_page_and_tick_labels_do_not_overlap(run_dir, name, arguments):
    figure = getattr(report, f"figure_{name}")(*arguments(read_run_files(run_dir)))
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    page = figure.bbox
    for text in _visible_texts(figure):
        box = text.get_window_extent(renderer)
        if not np.isfinite(box.extents).all():  # a tick outside its axis's limits: not drawn
            continue
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, (
            name,
            text.get_text(),
        )
    for ax in figure.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
            boxes = [b for b in boxes if np.isfinite(b.extents).all()]
            for first, second in zip(boxes, boxes[1:], strict=False):
                assert not first.overlaps(second), (name, ax.get_title())


def test_heatmap_headers_stay_apart_with_fifteen_segments(run_dir):
    files = read_run_files(run_dir)
    base = files.profiles[files.profiles["segment"] == "0"]
    profiles = pd.concat([base.assign(segment=str(s)) for s in range(15)], ignore_index=True)
    marks = ["over", "under", "similar"]
    proportions = pd.DataFrame({"segment": [str(s) for s in range(15)], "representation": marks * 5})
    figure = report.figure_segment_profiles(profiles, proportions, 3)
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    (ax, *_) = figure.axes
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    assert len(boxes) == 15
    for first, second in zip(boxes, boxes[1:], strict=False):
        assert first.x1 < second.x0
