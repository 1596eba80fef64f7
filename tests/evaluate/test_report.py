"""Reports: report.md, report.html and SVG plots are written and show the incident's moments."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree

from sockdrill.evaluate.plots import Chart, Mark, Series, nice_ticks, render
from sockdrill.evaluate.report import write_report
from sockdrill.evaluate.score import score

from .journalkit import build, noop_run, oracle_run


def test_reports_for_a_fault_run(tmp_path: Path) -> None:
    journal = oracle_run()
    md_path, html_path = write_report(journal, score(journal), tmp_path / "out")
    md, html = md_path.read_text(), html_path.read_text()
    for marker in ("# sockdrill run: login-slow / no-index", "## Scores", "## Agent steps", "## Timeline",
                   "## Data integrity", "## Safety", "create_index", "get_metrics", "fault_onset",
                   "query_inefficiency", "![login SLIs](sli-login.svg)", "| mitigation | 0.611 |"):
        assert marker in md, marker
    for journey in ("login", "browse", "checkout"):
        svg = (tmp_path / "out" / f"sli-{journey}.svg").read_text()
        ElementTree.fromstring(svg)   # well-formed
    assert html.startswith("<!DOCTYPE html>")
    for marker in ('id="score"', "score: 0.908333", 'data-mark="fault_onset"', 'data-mark="detection"',
                   'data-mark="action"', 'data-mark="recovery"', 'data-mark="fault_revert"', "create_index",
                   'class="threshold"', 'data-series="p95"', "Agent steps"):
        assert marker in html, marker
    # Self-contained: no scripts, no external resources.
    assert "<script" not in html
    assert not re.search(r'(src|href)="https?://', html)
    assert html.count("<svg") == 6    # two charts per journey


def test_reports_for_noop_and_control_runs(tmp_path: Path) -> None:
    _, html = write_report(noop_run(), score(noop_run()), tmp_path / "noop")
    text = html.read_text()
    assert 'data-mark="recovery"' not in text and 'data-mark="fault_onset"' in text
    control = build("noop", control=True, submit={"t": 50, "detected": False})
    md, html = write_report(control, score(control), tmp_path / "control")
    assert "control (no fault)" in md.read_text() and 'data-mark="fault_onset"' not in html.read_text()
    invalid = build(markers=("warmup_start", "fault_onset", "end"))
    md, _ = write_report(invalid, score(invalid), tmp_path / "invalid")
    assert "not scored (invalid run)" in md.read_text()


def test_chart_rendering_breaks_lines_at_gaps() -> None:
    chart = Chart(title="t <&>", y_label="s", series=[Series("p95", [(0, 1.0), (1, 2.0), (2, None), (3, 1.0),
                                                                     (4, 1.5)], "#000")],
                  marks=[Mark(1.5, "fault onset", "fault_onset"), Mark(99, "outside", "recovery")],
                  thresholds=[(1.0, "SLO")], x_range=(0, 4))
    svg = render(chart)
    root = ElementTree.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2      # the gap at t = 2 splits the line
    assert 'data-mark="fault_onset"' in svg and 'data-mark="recovery"' not in svg   # outside the x range
    assert "t &lt;&amp;&gt;" in svg
    assert nice_ticks(0, 10) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert nice_ticks(0, 0.013)[:2] == [0.0, 0.005]
