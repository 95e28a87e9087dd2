"""The report, from a fake run folder: self-contained HTML, A4 PDF, numbers that match the run folder."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from segmentation import report
from segmentation.report import (
    FIGURES,
    SECTIONS,
    describe_segment,
    format_count,
    format_ratio,
    format_share,
    read_run_files,
    wilson_interval,
    write_report,
)
from tests.fake_run import OVER, UNDER, write_fake_run

A4_POINTS = (595.4, 841.7)
# Title, segment shares figure, shares table + recommendations + response table, gains figure, profiles
# figure, descriptions, a page for each of the 8 segments, elbow, two PCA figures, two data-quality figures,
# two pages of run facts.
EXPECTED_PAGES = 22


class _ReportParser(HTMLParser):
    """Collects images, external references, section texts (by h2) and tables (by id)."""

    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.external: list[str] = []
        self.figure_ids: list[str] = []
        self.headings: list[str] = []
        self.sections: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._section = ""
        self._in_h2 = False
        self._table = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)
        if tag in ("script", "link", "iframe", "object"):
            self.external.append(tag)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "figure":
            self.figure_ids.append(attrs.get("id", ""))
        elif tag == "h2":
            self._in_h2 = True
            self.headings.append("")
        elif tag == "table":
            self._table = attrs.get("id", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
            self._section = self.headings[-1]
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in_h2:
            self.headings[-1] += data
            return
        if self._cell is not None:
            self._cell.append(data)
        self.sections[self._section] = self.sections.get(self._section, "") + " " + data


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_fake_run(tmp_path_factory.mktemp("run") / "fake-run")


@pytest.fixture(scope="module")
def written(run_dir):
    return write_report(run_dir)


@pytest.fixture(scope="module")
def parsed(written):
    parser = _ReportParser()
    parser.feed(written[0].read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def pdf_pages(written):
    return [page.extract_text() for page in PdfReader(written[1]).pages]


@pytest.fixture(scope="module")
def files(run_dir):
    return read_run_files(run_dir)


def test_report_files_are_written_without_leftovers(run_dir, written):
    html_path, pdf_path = written
    assert html_path == run_dir / "report.html"
    assert pdf_path == run_dir / "Customer Segmentation Report.pdf"
    assert pdf_path.read_bytes().startswith(b"%PDF")
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_html_is_self_contained_with_one_png_per_figure(parsed):
    assert parsed.external == []
    assert len(parsed.images) == len(FIGURES)
    assert parsed.figure_ids == [f"figure-{name}" for name in FIGURES]
    for image in parsed.images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix)
        assert base64.b64decode(image["src"][len(prefix) :]).startswith(b"\x89PNG\r\n\x1a\n")
        assert image["alt"]


def test_html_has_every_section_in_order(parsed):
    assert parsed.headings == list(SECTIONS)


def test_pdf_is_a4_with_expected_pages_and_sections(written, pdf_pages):
    reader = PdfReader(written[1])
    assert len(reader.pages) == EXPECTED_PAGES
    for page in reader.pages:
        assert (float(page.mediabox.width), float(page.mediabox.height)) == pytest.approx(A4_POINTS, abs=1)
    text = "\n".join(pdf_pages)
    for section in SECTIONS:
        assert section in text
    assert "Customer Segmentation Report" in pdf_pages[0]
    # every figure page carries its figure's title
    for title in (
        "Segment shares: customers against the population",
        "Choice of k: sum of squares",
        "Principal components: explained variance",
        "Data quality: missing values per row",
    ):
        assert sum(title in page for page in pdf_pages) == 1


def test_shares_table_equals_proportions_csv(parsed, files):
    header, *rows = parsed.tables["segment-shares"]
    assert header[:3] == ["Segment", "Population rows", "Population share"]
    expected = [
        [
            r.segment,
            format_count(r.population_count),
            format_share(r.population_share),
            format_count(r.customers_count),
            format_share(r.customers_share),
            format_ratio(r.ratio),
            f"{format_ratio(r.ratio_ci_low)} – {format_ratio(r.ratio_ci_high)}",
        ]
        for r in files.proportions.itertuples()
    ]
    assert [row[:7] for row in rows] == expected
    # the reading: graded by effect size where the test flags a difference (wording.representation_grade)
    assert [row[-1] for row in rows] == [
        "strongly under", "in proportion", "strongly over", "in proportion", "in proportion",
        "strongly over", "strongly under", "in proportion", "in proportion",
    ]  # fmt: skip


def test_row_accounting_equals_run_json(parsed, files):
    header, *rows = parsed.tables["rows"]
    assert header == ["Table", "Rows read", "Assigned", "Set aside"]
    expected = [
        [table, format_count(r["read"]), format_count(r["assigned"]), format_count(r["set_aside"])]
        for table, r in files.run["rows"].items()
    ]
    assert rows == expected


def test_numbers_in_headline_and_recommendations_come_from_the_run_folder(parsed, files):
    proportions, run = files.proportions, files.run
    shares = {format_share(v) for c in ("population_share", "customers_share") for v in proportions[c]}
    shares |= {format_share(run["thresholds"]["row_missing"]), format_share(run["pca"]["explained_variance"])}
    ratios = {format_ratio(v) for c in ("ratio", "ratio_ci_low", "ratio_ci_high") for v in proportions[c]}
    counts = {format_count(v) for r in run["rows"].values() for v in r.values()}
    counts |= {format_count(v) for c in ("population_count", "customers_count") for v in proportions[c]}
    for section in ("Headline", "Recommendations"):
        text = parsed.sections[section]
        found_shares = re.findall(r"\d+\.\d%", text)
        found_ratios = re.findall(r"(?<![\d.])\d+\.\d\d(?![\d%])", text)
        found_counts = re.findall(r"\d{1,3}(?:,\d{3})+|(?<![\d.,])\d{3,}(?![\d.,%])", text)
        assert found_shares and found_ratios
        assert set(found_shares) <= shares, section
        assert set(found_ratios) <= ratios, section
        assert set(found_counts) <= counts, section
    # the targets by name, with their lift and both shares
    indexed = proportions.set_index("segment")
    for segment in OVER:
        row = indexed.loc[segment]
        assert (
            f"Target segment {segment}: it holds {format_share(row.customers_share)} of customers but "
            f"{format_share(row.population_share)} of the population, a lift of {format_ratio(row.ratio)}"
        ) in parsed.sections["Recommendations"]
    for segment in UNDER:
        assert f"Segment {segment} is under-served" in parsed.sections["Recommendations"]
    assert (
        "insufficient_data: rows with more than 50.0% of their attributes missing"
        in parsed.sections["Recommendations"]
    )


def test_pdf_shows_the_same_numbers(pdf_pages, files):
    text = " ".join(pdf_pages)
    for r in files.proportions.itertuples():
        for value in (
            format_share(r.population_share),
            format_share(r.customers_share),
            format_ratio(r.ratio),
        ):
            assert value in text


def test_descriptions_for_over_and_under_represented_segments(parsed, files):
    text = parsed.sections["Segment profiles"]
    for segment in OVER + UNDER:
        rows = files.profiles[files.profiles["segment"] == segment]
        assert describe_segment(rows, 5) in text
    assert "Compared with the population, segment 1 " not in text  # similar segments are not described


def _profile(segment: str, differences: dict[str, float]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "segment": segment,
            "attribute": list(differences),
            "label": [f"Label of {name}" for name in differences],
            "standardized_difference": list(differences.values()),
        }
    )
    frame["rank"] = frame["standardized_difference"].abs().rank(ascending=False, method="first").astype(int)
    return frame.sample(frac=1.0, random_state=1)  # order must come from rank, not from row order


def test_describe_segment_names_top_attributes_with_directions():
    rows = _profile("3", {"SPARER": 1.24, "ONLINE": -0.62, "KULT": 0.31, "REL": -1.05, "NOISE": 0.04})
    text = describe_segment(rows, top_attributes=5)
    assert text == (
        "Compared with the population, segment 3 scores much higher on 'Label of SPARER' (SPARER, +1.2 sd); "
        "slightly higher on 'Label of KULT' (KULT, +0.3 sd); much lower on 'Label of REL' (REL, -1.1 sd); "
        "and lower on 'Label of ONLINE' (ONLINE, -0.6 sd)."
    )
    assert "NOISE" not in text


def test_describe_segment_keeps_only_the_top_attributes_and_falls_back_to_codes():
    rows = _profile("0", {"A": 2.0, "B": 1.5, "C": -1.4})
    rows.loc[rows["attribute"] == "B", "label"] = ""
    text = describe_segment(rows, top_attributes=2)
    assert "much higher on 'Label of A' (A, +2.0 sd) and 'B' (+1.5 sd)." in text
    assert "Label of C" not in text


def test_describe_segment_without_marked_differences_and_with_two_segments():
    assert "shows no marked difference" in describe_segment(_profile("4", {"A": 0.1, "B": -0.05}))
    with pytest.raises(ValueError, match="exactly one segment"):
        describe_segment(pd.concat([_profile("1", {"A": 1.0}), _profile("2", {"A": 1.0})]))


def test_fake_profiles_describe_the_planted_attributes(files):
    text = describe_segment(files.profiles[files.profiles["segment"] == "2"])
    assert text.startswith(
        "Compared with the population, segment 2 scores much higher on 'Financial type score: saver' "
        "(FINANZ_SPARER, +1.2 sd)"
    )
    assert "lower on 'Affinity score: event-oriented' (SEMIO_ERL, -0.8 sd)" in text


def test_wilson_interval_matches_reference_values():
    low, high = wilson_interval([5, 0, 20], [10, 20, 20])
    # Reference: Wilson (1927) score interval, z = 1.96; e.g. statsmodels proportion_confint(method="wilson").
    assert low == pytest.approx([0.236593, 0.0, 0.838875], abs=1e-6)
    assert high == pytest.approx([0.763407, 0.161125, 1.0], abs=1e-6)


def test_segment_order_is_numeric_with_insufficient_data_last():
    assert report.segment_order(["10", "insufficient_data", "2", "0", "2"]) == [
        "0",
        "2",
        "10",
        "insufficient_data",
    ]


def test_heatmap_attributes_are_capped_and_grouped_by_segment(files):
    attributes, top = report.distinguishing_attributes(files.profiles, top_attributes=8, max_rows=40)
    assert len(attributes) <= 40 and len(attributes) == len(set(attributes))
    assert top < 8  # 8 segments x 8 attributes do not fit in 40 rows
    assert attributes[0] == "FINANZ_MINIMALIST"  # segment 0's most distinguishing attribute comes first


@pytest.mark.parametrize(
    "name, arguments",
    [
        ("segment_shares", lambda f: (f.proportions,)),
        ("segment_profiles", lambda f: (f.profiles, f.proportions, 8)),
        ("elbow", lambda f: (f.elbow, 8)),
        ("pca_variance", lambda f: (f.pca, 60)),
        ("pca_loadings", lambda f: (f.pca_loadings, f.pca)),
        ("column_missing", lambda f: (f.quality_columns, 0.3)),
        ("row_missing", lambda f: (f.quality_rows, 0.5, f.run["rows"])),
    ],
)
def test_figures_are_a4_pages_and_leave_their_inputs_alone(files, name, arguments):
    inputs = arguments(files)
    copies = [i.copy() if isinstance(i, pd.DataFrame) else i for i in inputs]
    figure = getattr(report, f"figure_{name}")(*inputs)
    assert tuple(figure.get_size_inches()) == pytest.approx(report.A4_PORTRAIT)
    assert figure.get_label()
    for before, after in zip(copies, inputs, strict=True):
        if isinstance(before, pd.DataFrame):
            pd.testing.assert_frame_equal(before, after)


def test_shares_figure_copes_with_a_segment_missing_from_one_table(files):
    proportions = files.proportions.copy()
    proportions.loc[0, ["customers_count", "customers_share", "ratio", "ratio_ci_low"]] = 0
    proportions.loc[1, ["ratio", "ratio_ci_low", "ratio_ci_high"]] = np.inf
    figure = report.figure_segment_shares(proportions)
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert "ratio 0.00" in texts and "ratio n/a" in texts


@pytest.mark.parametrize("highest", ["insufficient_data", "0"])
def test_shares_figure_legends_leave_the_points_and_bars_visible(files, highest):
    # The largest ratio (and customer share) at the right edge once hid under an upper-right legend.
    proportions = files.proportions.copy()
    row = proportions["segment"] == highest
    proportions.loc[row, ["ratio", "ratio_ci_low", "ratio_ci_high"]] = [3.0, 2.7, 3.3]
    proportions.loc[row, "customers_share"] = proportions["customers_share"].max() * 1.5
    figure = report.figure_segment_shares(proportions)
    figure.canvas.draw()
    shares_ax, ratio_ax = figure.axes
    ratio_legend = ratio_ax.get_legend().get_window_extent()
    points = [line for line in ratio_ax.lines if line.get_marker() == "o"]
    assert len(points) == len(proportions)
    for line in points:
        x, y = ratio_ax.transData.transform(line.get_xydata()[0])
        assert not ratio_legend.contains(x, y), line.get_xydata()[0]
    shares_legend = shares_ax.get_legend().get_window_extent()
    assert not any(shares_legend.overlaps(bar.get_window_extent()) for bar in shares_ax.patches)


def test_a_segment_too_small_to_test_is_not_called_similar(files):
    proportions = files.proportions.copy()
    small = proportions["segment"] == "4"
    proportions.loc[small, ["customers_count", "customers_share", "ratio", "ratio_ci_low"]] = 0
    proportions.loc[small, "ratio_ci_high"] = np.nan
    text = " ".join(report.recommendations(proportions, 0.5))
    assert "Segment 4 is too small to judge: 360 population and 0 customer rows." in text
    assert "Segments 1, 3 and 7 hold customers in proportion" in text


def test_recommendations_when_insufficient_data_is_over_represented_and_nothing_else(files):
    proportions = files.proportions.copy()
    proportions["representation"] = "similar"
    proportions.loc[proportions["segment"] == "insufficient_data", "representation"] = "over"
    text = " ".join(report.recommendations(proportions, 0.5))
    assert "No segment is over-represented among customers" in text
    assert "no reason to target people with incomplete records" in text
    assert "Target segment" not in text
    lines = report.headline(proportions, files.run)
    assert "Customer records are more often incomplete" in " ".join(lines)


def test_a_missing_run_json_field_is_named(files):
    run = json.loads(json.dumps(files.run))
    del run["pca"]["n_components"]
    with pytest.raises(ValueError, match=r"run.json lacks pca.n_components"):
        report.build_report(dataclasses.replace(files, run=run))


def test_a_missing_file_is_named(tmp_path):
    run_dir = write_fake_run(tmp_path / "run")
    (run_dir / "pca.csv").unlink()
    with pytest.raises(FileNotFoundError, match="pca.csv"):
        write_report(run_dir)


@pytest.mark.parametrize("elbow", ["absent", "header only"])
def test_a_run_with_k_fixed_and_no_elbow_gets_a_note_instead_of_the_k_figure(tmp_path, elbow):
    run_dir = write_fake_run(tmp_path / "run")
    if elbow == "absent":
        (run_dir / "elbow.csv").unlink()
    else:
        (run_dir / "elbow.csv").write_text("k,sse,silhouette,recommended\n")
    run = json.loads((run_dir / "run.json").read_text())
    run["clustering"]["k_recommended"] = None  # what a job that skipped the elbow records
    (run_dir / "run.json").write_text(json.dumps(run))

    html_path, pdf_path = write_report(run_dir)
    parser = _ReportParser()
    parser.feed(html_path.read_text(encoding="utf-8"))
    assert parser.headings == list(SECTIONS)
    assert parser.figure_ids == [f"figure-{name}" for name in FIGURES if name != "elbow"]
    assert len(parser.images) == len(FIGURES) - 1
    assert "k was fixed at 8" in parser.sections["Choice of k"]
    method = dict(map(tuple, parser.tables["method"][1:]))
    assert method["Segments k"] == "8" and "k recommended by the elbow" not in method

    pages = [page.extract_text() for page in PdfReader(pdf_path).pages]
    assert not any("Choice of k: sum of squares" in page for page in pages)
    assert sum("k was fixed at 8" in page for page in pages) == 1
    assert len(pages) == EXPECTED_PAGES - 1  # the note flows with the text; only the figure page goes


def test_a_failure_mid_way_leaves_no_report_and_no_temporary_file(tmp_path, monkeypatch):
    run_dir = write_fake_run(tmp_path / "run")

    def half_written_pdf(blocks, path):
        with open(path, "wb") as handle:
            handle.write(b"%PDF-1.4 half")
        raise RuntimeError("disk full")

    # the figures are not what fails here: a two-block report keeps the test quick
    monkeypatch.setattr(
        report, "build_report", lambda files, top: [report.Heading("Headline"), report.Paragraph("x")]
    )
    monkeypatch.setattr(report, "render_pdf", half_written_pdf)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(run_dir)
    assert not (run_dir / "report.html").exists()
    assert not (run_dir / "Customer Segmentation Report.pdf").exists()
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]

    # an earlier report survives a failed rewrite untouched
    (run_dir / "report.html").write_text("earlier report")
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(run_dir)
    assert (run_dir / "report.html").read_text() == "earlier report"


def test_pdf_table_too_wide_gets_a_smaller_font_not_wrapped_short_words(tmp_path):
    """The demo's shares table overflowed the page by a hair after its font was shrunk, so its last column
    was narrowed and "strongly under" broke over two lines."""
    from segmentation.report import render_pdf
    from segmentation.report.blocks import Table

    header = ["Segment", "Population\nrows", "Population\nshare", "Customer\nrows", "Customer\nshare", "Ratio",
              "Ratio\n95% CI", "p-value", "Reading"]  # fmt: skip
    rows = [
        [name, "18,917", "21.0%", "766", "3.8%", "0.18", "0.17 – 0.20", "<0.001", reading]
        for name, reading in [
            ("0", "slightly under"),
            ("1", "strongly under"),
            ("insufficient_data", "strongly over"),
        ]
    ]
    path = tmp_path / "table.pdf"
    render_pdf([Table(header, rows, "segment-shares", [False] + [True] * 7 + [False])], path)
    text = PdfReader(path).pages[0].extract_text()
    assert "strongly under" in text and "strongly over" in text and "slightly under" in text
