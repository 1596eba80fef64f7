"""Hand-drawn SVG plots for reports: SLI timelines with the incident's moments marked.

No plotting library and no external assets: each function returns one self-contained ``<svg>``
string that can be inlined in HTML or written to a ``.svg`` file that Markdown viewers show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

from sockdrill.evaluate.journal import Journal
from sockdrill.slo.slo import SLO

PALETTE = {"p50": "#7fb3d5", "p95": "#1f618d", "p99": "#154360", "errors": "#c0392b", "threshold": "#e67e22"}
MARK_COLORS = {"fault_onset": "#c0392b", "detection": "#2471a3", "action": "#7f8c8d", "recovery": "#1e8449",
               "fault_revert": "#d68910", "symptom_verified": "#922b21", "agent_start": "#5d6d7e",
               "false_detection": "#8e44ad"}


@dataclass
class Series:
    name: str
    points: list[tuple[float, float | None]]
    color: str
    dash: str = ""


@dataclass
class Mark:
    """A vertical line at ``x`` (seconds on the chart's axis) with a short label."""

    x: float
    label: str
    kind: str
    tick_only: bool = False  # agent actions: a short tick with a number, not a full-height line


@dataclass
class Chart:
    title: str
    y_label: str
    series: list[Series]
    marks: list[Mark] = field(default_factory=list)
    x_range: tuple[float, float] | None = None
    thresholds: list[tuple[float, str]] = field(default_factory=list)
    width: int = 760
    height: int = 200


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0, 10)
    [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    """
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(float(t), 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.2g}"


def render(chart: Chart) -> str:
    """The chart as an ``<svg>`` element (lines broken where a value is missing)."""
    left, right, top, bottom = 56, 16, 28, 34
    w, h = chart.width, chart.height
    pw, ph = w - left - right, h - top - bottom
    xs = [x for s in chart.series for x, _ in s.points] + [m.x for m in chart.marks]
    x0, x1 = chart.x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if x1 <= x0:
        x1 = x0 + 1
    ys = [y for s in chart.series for _, y in s.points if y is not None] + [t for t, _ in chart.thresholds]
    y1 = max(ys) * 1.1 if ys and max(ys) > 0 else 1.0
    yt = nice_ticks(0.0, y1)
    y1 = max(y1, yt[-1])

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (y / y1) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">',
           f'<title>{escape(chart.title)}</title>',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{escape(chart.title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fbfcfc" stroke="#d5d8dc"/>']
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaeded"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1, 8):
        x = px(t)
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 4}" text-anchor="middle">seconds</text>')
    out.append(f'<text transform="translate(12 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(chart.y_label)}</text>')
    for value, label in chart.thresholds:
        y = py(value)
        out.append(f'<line class="threshold" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="{PALETTE["threshold"]}" stroke-dasharray="6 3"/>')
        out.append(f'<text x="{left + pw - 4}" y="{y - 4:.1f}" text-anchor="end" '
                   f'fill="{PALETTE["threshold"]}">{escape(label)}</text>')
    for s in chart.series:
        segment: list[str] = []
        segments: list[list[str]] = []
        for x, yv in sorted(s.points, key=lambda p: p[0]):
            if yv is None:
                if segment:
                    segments.append(segment)
                segment = []
            else:
                segment.append(f"{px(x):.1f},{py(min(yv, y1)):.1f}")
        if segment:
            segments.append(segment)
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        for seg in segments:
            if len(seg) == 1:
                cx, cy = seg[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="{s.color}"/>')
            else:
                out.append(f'<polyline class="series" data-series="{escape(s.name)}" fill="none" '
                           f'stroke="{s.color}" stroke-width="1.5"{dash} points="{" ".join(seg)}"/>')
    full = 0  # full-height marks stagger their labels so neighbours stay readable
    last_tick_label = -math.inf  # dense action ticks: label only those with room for their number
    for m in chart.marks:
        if not x0 <= m.x <= x1:
            continue
        x = px(m.x)
        color = MARK_COLORS.get(m.kind, "#34495e")
        if m.tick_only:
            out.append(f'<line class="mark" data-mark="{m.kind}" x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph - 12}" '
                       f'y2="{top + ph}" stroke="{color}" stroke-width="2"/>')
            if x - last_tick_label >= 6 * len(m.label) + 4:
                out.append(f'<text x="{x:.1f}" y="{top + ph - 14}" text-anchor="middle" fill="{color}" '
                           f'font-size="9">{escape(m.label)}</text>')
                last_tick_label = x
        else:
            out.append(f'<line class="mark" data-mark="{m.kind}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                       f'y2="{top + ph}" stroke="{color}" stroke-width="1.5" stroke-dasharray="3 2"/>')
            out.append(f'<text x="{x + 3:.1f}" y="{top + 10 + 11 * (full % 3)}" fill="{color}">'
                       f'{escape(m.label)}</text>')
            full += 1
    legend_x = left + 8
    for s in chart.series:
        out.append(f'<rect x="{legend_x}" y="{h - 9}" width="10" height="3" fill="{s.color}"/>')
        out.append(f'<text x="{legend_x + 13}" y="{h - 5}">{escape(s.name)}</text>')
        legend_x += 20 + 7 * len(s.name)
    out.append("</svg>")
    return "\n".join(out)


def incident_marks(journal: Journal, origin: float, restored_at: float | None, detected: bool,
                   false_detection: bool) -> list[Mark]:
    """Fault onset, detection, each agent action (numbered), recovery and revert on a chart's axis."""
    marks: list[Mark] = []
    onset = journal.onset
    if onset is not None:
        marks.append(Mark(onset - origin, "fault onset", "fault_onset"))
    sub = journal.submission
    if sub is not None and (detected or false_detection):
        marks.append(Mark(sub.time - origin, "false detection" if false_detection else "detection",
                          "false_detection" if false_detection else "detection"))
    for i, a in enumerate(journal.actions, start=1):
        marks.append(Mark(a.time - origin, str(i), "action", tick_only=True))
    if restored_at is not None:
        marks.append(Mark(restored_at - origin, "recovery", "recovery"))
    revert = journal.first("fault_revert")
    if revert is not None:
        marks.append(Mark(revert - origin, "fault revert", "fault_revert"))
    return marks


def journey_charts(journal: Journal, journey: str, origin: float, marks: list[Mark]) -> list[str]:
    """Latency (p50/p95/p99) and error-rate charts for one journey, SLO thresholds drawn dashed."""
    rows = sorted(journal.samples.get(journey, []), key=lambda s: s.time)
    slos: list[SLO] = [s for s in journal.slos + journal.guard_slos if s.journey == journey]
    xs = [s.time - origin for s in rows] + [m.x for m in marks]
    x_range = (min(xs), max(xs)) if xs else None
    lat = Chart(title=f"{journey}: latency", y_label="seconds", x_range=x_range, marks=marks, series=[
        Series(name, [(s.time - origin, getattr(s, name)) for s in rows], PALETTE[name])
        for name in ("p50", "p95", "p99")])
    lat.thresholds = [(s.threshold, f"SLO {s.sli.removeprefix('latency_')} < {s.threshold:g}s") for s in slos
                      if s.sli.startswith("latency_")]
    err = Chart(title=f"{journey}: errors", y_label="error rate %", x_range=x_range, marks=marks, height=160,
                series=[Series("errors", [(s.time - origin, None if not s.requests else 100.0 * s.failures / s.requests)
                                          for s in rows], PALETTE["errors"])])
    err.thresholds = [(100 * s.threshold, f"SLO < {100 * s.threshold:g}%") for s in slos if s.sli == "error_rate"]
    return [render(lat), render(err)]


__all__ = ["Chart", "Mark", "Series", "incident_marks", "journey_charts", "nice_ticks", "render"]
