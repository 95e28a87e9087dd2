"""`segmentation report RUN_DIR` on a fake run folder: report, PDF and target lists written, exit code 0."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation import cli
from segmentation.run_folder import REPORT_HTML, REPORT_PDF, TARGETS, TARGETS_TOP
from tests.fake_run import ROWS, write_fake_run


@pytest.mark.parametrize("with_elbow", [True, False], ids=["elbow", "k-fixed-no-elbow"])
def test_report_command_writes_report_pdf_and_targets(tmp_path, capsys, with_elbow):
    run_dir = write_fake_run(tmp_path / "fake-run")
    if not with_elbow:
        (run_dir / "elbow.csv").unlink()

    assert cli.main(["report", str(run_dir)]) == 0

    html = (run_dir / REPORT_HTML.name).read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert ('id="figure-elbow"' in html) == with_elbow
    assert ("k was fixed at 8" in html) != with_elbow
    assert (run_dir / REPORT_PDF.name).read_bytes().startswith(b"%PDF")

    targets = pd.read_parquet(run_dir / TARGETS.name)
    assert list(targets.columns) == ["LNR", "table", "segment", "lift"]
    assert set(targets["table"]) == {"population", "mailout_train"}  # customers are not targets
    assert "insufficient_data" not in set(targets["segment"])
    assert targets["lift"].is_monotonic_decreasing
    top = pd.read_csv(run_dir / TARGETS_TOP.name, dtype={"segment": str, "table": str})
    assert len(top) == min(1000, len(targets)) and len(targets) < ROWS["population"] + ROWS["mailout_train"]
    pd.testing.assert_frame_equal(
        top, targets.head(len(top)).astype({"table": str, "segment": str}), check_dtype=False
    )

    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]
    printed = capsys.readouterr().out
    assert str(run_dir / REPORT_HTML.name) in printed and str(run_dir / REPORT_PDF.name) in printed


def test_report_command_on_a_folder_that_is_not_a_run_names_the_file(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path)]) == cli.EXIT_INPUT
    assert "proportions.csv" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
