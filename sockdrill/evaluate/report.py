"""Per-run reports: ``report.md`` (with ``sli-<journey>.svg`` plots beside it) and a self-contained
``report.html`` (plots inline, no scripts, no external assets).

Both show the same things: the run's identity and score, the composite's components, the timeline
of the incident, the agent's steps, the submission, mitigation figures, integrity checks, safety
penalties and efficiency, and one SLI timeline per journey with fault onset, detection, each agent
action (numbered as in the steps table), recovery and the fault's revert marked.
"""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from sockdrill.evaluate.journal import Journal, Marker, SubmitEvent
from sockdrill.evaluate.plots import incident_marks, journey_charts
from sockdrill.evaluate.score import Result, credits, weights

SHORT = 90


def _short(value: Any, limit: int = SHORT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _num(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:g}{unit}"


def _yes(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "no")


ORIGINS = (("fault_onset", "the fault's onset"), ("agent_start", "the agent's start"),
           ("run_start", "the run's start"), ("warmup_start", "the start of the load"))


def _origin_named(journal: Journal) -> tuple[float, str]:
    """t = 0 of every table and chart, and what it is: the fault's onset, else the agent's start, else the
    run's start (a run that ended before its agent), else the first sample. Never the epoch."""
    for kind, name in ORIGINS:
        t = journal.onset if kind == "fault_onset" else journal.first(kind)
        if t is not None:
            return t, name
    samples = journal.all_samples()
    if samples:
        return samples[0].time, "the first load sample"
    times = [e.time for e in journal.timeline()]
    return (min(times), "the first recorded event") if times else (0.0, "nothing (the run recorded no event)")


def _origin(journal: Journal) -> float:
    return _origin_named(journal)[0]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "journey"


def _rows(journal: Journal, result: Result) -> dict[str, list[list[str]]]:
    """Table rows shared by both renderings."""
    origin = _origin(journal)
    parts = credits(result, journal.control)
    weight = weights(parts)
    fp = ", FALSE POSITIVE" if result.detection.false_positive else ""
    unscored = "" if result.detection.scored else " (investigation mode: not scored)"
    details = {
        "detection": f"detected {_yes(result.detection.detected)}{fp}, ttd {_num(result.detection.ttd_s, ' s')}"
                     f"{unscored}",
        "localization": f"ranked {', '.join(result.localization.ranked) or '–'}; truth "
                        f"{', '.join(result.localization.truth) or '–'}; AC@1 {_yes(result.localization.ac1)}, "
                        f"AC@3 {_yes(result.localization.ac3)}"
                        + (f"; never examined: {', '.join(result.localization.unexamined)}"
                           if result.localization.unexamined else "")
                        + (f"; {result.localization.note}" if result.localization.note else ""),
        "diagnosis": f"{result.diagnosis.category or '–'} (truth {result.diagnosis.truth or '–'})",
        "mitigation": f"restored {_yes(result.mitigation.slo_restored)}, ttm {_num(result.mitigation.ttm_s, ' s')}",
    }
    scores = [[k, f"{weight[k]:.3g}" if k in weight else "–", _num(None if v is None else round(v, 3)), details[k]]
              for k, v in parts.items()]
    scores.append(["integrity", "−", "", f"ok {_yes(result.integrity.ok)}, {len(result.integrity.checks)} "
                   "check(s); a failed one is a data_loss penalty"])
    taken = f"−{result.safety.total:g}" if result.safety.total else "0"
    scores.append(["safety", "−", taken, f"{len(result.safety.penalties)} penalty(ies)"])
    scores.append(["**score**", "", "not scored (invalid run)" if result.score is None else f"**{result.score:g}**",
                   "control run" if journal.control
                   else "PRIVILEGED agent (given the ground truth)" if journal.privileged else ""])
    timeline, steps = [], []
    for e in journal.timeline():
        t = f"{e.time - origin:+.1f}"
        if isinstance(e, Marker):
            timeline.append([t, e.kind, _short(e.detail) if e.detail else ""])
        elif isinstance(e, SubmitEvent):
            timeline.append([t, "submit", f"detected={e.detected} ranked={e.ranked} category={e.category}"])
    for i, a in enumerate(journal.actions, start=1):
        steps.append([str(i), f"{a.time - origin:+.1f}", a.tool, _short(a.args), "ok" if a.ok else "failed",
                      _short(a.result) if a.result is not None else ""])
    m = result.mitigation
    mitigation = [["SLO restored", _yes(m.slo_restored)], ["time to mitigate", _num(m.ttm_s, " s")],
                  ["seconds in violation", _num(m.violation_s, " s")], ["failed requests", str(m.failed_requests)],
                  ["error budget burned", "–" if m.error_budget_burned is None
                   else f"{100 * m.error_budget_burned:.1f}%"]]
    integrity = [[c.name, {True: "pass", False: "FAIL", None: "n/a"}[c.ok], c.detail,
                  _short(c.violations[:3]) if c.violations else ""] for c in result.integrity.checks]
    safety = [[p.kind, f"{p.points:g}", "" if p.time is None else f"{p.time - origin:+.1f}", p.detail]
              for p in result.safety.penalties]
    eff = result.efficiency
    efficiency = [["steps", str(eff.steps)], ["wall time", _num(eff.wall_s, " s")],
                  ["tokens", "–" if eff.tokens is None else str(eff.tokens)]]
    return {"scores": scores, "timeline": timeline, "steps": steps, "mitigation": mitigation,
            "integrity": integrity, "safety": safety, "efficiency": efficiency}


HEADERS = {
    "scores": ["component", "weight", "credit", "detail"],
    "timeline": ["t (s)", "event", "detail"],
    "steps": ["#", "t (s)", "tool", "args", "status", "result"],
    "mitigation": ["figure", "value"],
    "integrity": ["check", "result", "detail", "violations (first 3)"],
    "safety": ["penalty", "points", "t (s)", "detail"],
    "efficiency": ["figure", "value"],
}
TITLES = {"scores": "Scores", "timeline": "Timeline", "steps": "Agent steps", "mitigation": "Mitigation",
          "integrity": "Data integrity", "safety": "Safety", "efficiency": "Efficiency"}


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "_none_\n"
    def cell(v: str) -> str:
        return v.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    def cell(v: str) -> str:
        v = escape(v)
        return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", v)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _identity(journal: Journal, result: Result) -> list[tuple[str, str]]:
    return [("scenario", result.scenario + (f" / {result.variant}" if result.variant else "")),
            ("agent", result.agent), ("seed", str(result.seed)), ("profile", result.profile),
            ("run", "control (no fault)" if journal.control else "fault"), ("valid", _yes(result.valid)),
            ("score", "not scored" if result.score is None else f"{result.score:g}")]


CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1c2833;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d5d8dc}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #d5d8dc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f3f4}.score{font-size:2rem;font-weight:bold}.chart{display:block;margin:.5rem 0}
.legend span{margin-right:1rem}
"""


def write_report(journal: Journal, result: Result, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``sli-<journey>.svg`` and ``report.html`` into ``out_dir``; return the two reports."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    origin = _origin(journal)
    restored_at = None
    if result.mitigation.ttm_s is not None and journal.onset is not None:
        restored_at = journal.onset + result.mitigation.ttm_s
    marks = incident_marks(journal, origin, restored_at, result.detection.detected, result.detection.false_positive)
    scenario_journeys = [s.journey for s in journal.slos]
    journeys = sorted(journal.samples, key=lambda j: (j not in scenario_journeys, j))
    charts = {j: journey_charts(journal, j, origin, marks) for j in journeys}
    rows = _rows(journal, result)
    sub = journal.submission
    title = f"sockdrill run: {result.scenario}" + (f" / {result.variant}" if result.variant else "")

    # ---- Markdown ----
    md = [f"# {title}", ""]
    md += [f"- **{k}**: {v}" for k, v in _identity(journal, result)]
    md.append("")
    md.append(f"Times are seconds relative to {_origin_named(journal)[1]}.")
    for key in ("scores", "timeline", "steps"):
        md += ["", f"## {TITLES[key]}", "", _md_table(HEADERS[key], rows[key])]
    md += ["", "## Submission", ""]
    if sub is None:
        md.append("_the agent did not submit_")
    else:
        md += [f"- detected: {sub.detected}", f"- ranked components: {', '.join(sub.ranked) or '–'}",
               f"- category: {sub.category or '–'}", f"- summary: {_short(sub.summary, 500) or '–'}"]
    for key in ("mitigation", "integrity", "safety", "efficiency"):
        md += ["", f"## {TITLES[key]}", "", _md_table(HEADERS[key], rows[key])]
    md += ["", "## SLI timelines", "",
           "Marks: fault onset (red), detection (blue), agent actions (numbered ticks), recovery (green), "
           "fault revert (orange). Dashed horizontal lines are SLO thresholds.", ""]
    for j in journeys:
        svg_name = f"sli-{_slug(j)}.svg"
        # One file per journey: both charts stacked in an outer SVG.
        inner = charts[j]
        heights = [int(re.search(r'height="(\d+)"', s).group(1)) for s in inner]  # type: ignore[union-attr]
        y, parts = 0, []
        for svg, hgt in zip(inner, heights, strict=True):
            parts.append(svg.replace("<svg ", f'<svg y="{y}" ', 1))
            y += hgt
        (out / svg_name).write_text(f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{y}">'
                                    + "".join(parts) + "</svg>\n")
        md += [f"### {j}", "", f"![{j} SLIs]({svg_name})", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n")

    # ---- HTML ----
    h = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{escape(title)}</title>",
         f"<style>{CSS}</style></head><body>", f"<h1>{escape(title)}</h1>"]
    score_text = "not scored" if result.score is None else f"{result.score:g}"
    h.append(f'<p class="score" id="score">score: {escape(score_text)}</p>')
    h.append(_html_table(["field", "value"], [[k, v] for k, v in _identity(journal, result)]))
    for key in ("scores", "timeline", "steps"):
        h += [f'<h2 id="{key}">{TITLES[key]}</h2>', _html_table(HEADERS[key], rows[key])]
    h.append('<h2 id="submission">Submission</h2>')
    if sub is None:
        h.append("<p><em>the agent did not submit</em></p>")
    else:
        h.append(_html_table(["field", "value"], [["detected", str(sub.detected)],
                                                  ["ranked components", ", ".join(sub.ranked) or "–"],
                                                  ["category", sub.category or "–"],
                                                  ["summary", _short(sub.summary, 500) or "–"]]))
    for key in ("mitigation", "integrity", "safety", "efficiency"):
        h += [f'<h2 id="{key}">{TITLES[key]}</h2>', _html_table(HEADERS[key], rows[key])]
    h.append('<h2 id="sli">SLI timelines</h2>')
    h.append('<p class="legend"><span style="color:#c0392b">┆ fault onset</span><span style="color:#2471a3">┆ '
             'detection</span><span style="color:#7f8c8d">▏agent action #</span><span style="color:#1e8449">┆ '
             'recovery</span><span style="color:#d68910">┆ fault revert</span>'
             '<span style="color:#e67e22">- - SLO threshold</span></p>')
    for j in journeys:
        h.append(f'<h3 id="sli-{_slug(j)}">{escape(j)}</h3>')
        h += charts[j]
    h.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(h) + "\n")
    return md_path, html_path


__all__ = ["write_report"]
