"""Statistical root-cause ranking over telemetry, in the spirit of BARO and NSigma (RCAEval): no rule per
fault, only how far each component's metrics moved from their own healthy past, read along the call graph.

1. **Onset.** One change point for the whole system: the split of the common time grid that best separates
   "before" from "after" over every metric at once (each metric's two-segment mean-shift statistic in its
   robust spread, summed: BARO's multivariate idea with a least-squares split instead of its Bayesian
   online detector). Given an incident start, that is used instead.
2. **Scores.** Each metric's anomaly is its robust z-score after the onset: the largest move of its recent
   values from the median before, in units of the interquartile range before. A constant series (an
   idle queue, a counter that never moved) has no spread: a floor per metric kind (a share of the median,
   and an absolute minimum) stands in for it, so a flat line that moves scores by its meaning, not by
   division by zero (the failure that made CIRCA drop our exports' constant columns).
3. **Graph.** A component's score is its best metric's. Symptoms a caller inherits from a callee (its
   latency and errors, when a callee it calls is anomalous too) are discounted, so the ranking points at
   the deepest anomalous component on the path, as a call graph walk would; a component's own resources
   (CPU, memory, scans, sessions) are never inherited.
4. **Category.** The family of the top component's strongest metric, mapped onto the taxonomy.

Pure functions over plain data (``Series`` per component and metric, edges as pairs): the baseline agent
fills them from the tools, and the tests from synthetic telemetry.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Point = tuple[float, float]  # (unix time, value)

# Metric families: what a move of the metric means. Inherited ones travel up the call graph.
INHERITED = frozenset({"latency", "errors", "client_latency", "client_errors", "throughput"})
CATEGORY_OF_FAMILY = {
    "cpu": "resource_saturation", "throttling": "resource_saturation", "memory": "resource_saturation",
    "scan": "query_inefficiency", "sessions": "query_inefficiency",
    "cache_memory": "cache_eviction", "evictions": "cache_eviction",
    "edge_latency": "network_latency", "edge_loss": "network_partition",
    "config": "misconfiguration", "restarts": "process_crash",
    "demand": "capacity_overload", "queue": "message_queue_failure",
    "latency": "dependency_failure", "errors": "dependency_failure",
    "client_latency": "dependency_failure", "client_errors": "dependency_failure", "throughput": None,
}
# How small a spread may be before the floor takes over: (share of |median|, absolute) per family.
FLOORS = {
    "latency": (0.10, 0.02), "client_latency": (0.10, 0.02), "edge_latency": (0.10, 0.02),
    "errors": (0.10, 0.01), "client_errors": (0.10, 0.01), "edge_loss": (0.10, 0.01),
    "cpu": (0.10, 0.02), "throttling": (0.10, 0.05), "memory": (0.05, 8 << 20),
    "scan": (0.20, 500.0), "sessions": (0.20, 1.0), "cache_memory": (0.05, 1 << 20),
    "evictions": (0.20, 1.0), "queue": (0.20, 2.0), "demand": (0.20, 1.0), "throughput": (0.20, 1.0),
    "config": (0.0, 1.0), "restarts": (0.0, 1.0),
}
DEFAULT_FLOOR = (0.10, 1e-6)
INHERITED_DISCOUNT = 0.25  # what is left of an inherited symptom once a callee explains it


@dataclass(frozen=True)
class Metric:
    component: str
    name: str      # e.g. "p95", "cpu", "seq_tup_read:customers"
    family: str    # a key of CATEGORY_OF_FAMILY
    points: tuple[Point, ...]
    direction: int = 1  # +1: only a rise is bad (latency, errors); -1: only a fall; 0: either way


@dataclass
class Score:
    component: str
    metric: str
    family: str
    z: float
    before: float | None
    after: float | None


@dataclass
class Ranking:
    onset: float | None
    components: list[tuple[str, float]]       # best first
    evidence: dict[str, list[Score]] = field(default_factory=dict)  # per component, best first
    category: str | None = None

    @property
    def ranked(self) -> list[str]:
        return [c for c, _ in self.components]


def _median(values: Sequence[float]) -> float:
    vals = sorted(values)
    n = len(vals)
    return vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2


def _iqr(values: Sequence[float]) -> float:
    vals = sorted(values)
    if len(vals) < 2:
        return 0.0

    def q(p: float) -> float:
        pos = p * (len(vals) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(vals) - 1)
        return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)

    return q(0.75) - q(0.25)


def _finite(points: Iterable[Point]) -> list[Point]:
    return [(t, v) for t, v in points if v is not None and math.isfinite(v) and math.isfinite(t)]


def spread(before: Sequence[float], family: str) -> float:
    """The robust spread of the healthy past (IQR scaled to a standard deviation), floored per family."""
    rel, absolute = FLOORS.get(family, DEFAULT_FLOOR)
    med = abs(_median(before)) if before else 0.0
    return max(_iqr(before) / 1.349, rel * med, absolute)


def robust_z(metric: Metric, onset: float, recent: int = 3) -> Score | None:
    """How far the metric moved after ``onset``: the mean of its ``recent`` most anomalous values after the
    onset against the median before, in spreads. None without at least 3 points on each side."""
    pts = _finite(metric.points)
    before = [v for t, v in pts if t < onset]
    after = [v for t, v in pts if t >= onset]
    if len(before) < 3 or len(after) < 2:
        return None
    med = _median(before)
    s = spread(before, metric.family)
    devs = [(v - med) / s for v in after]
    if metric.direction > 0:
        devs = [max(0.0, d) for d in devs]
    elif metric.direction < 0:
        devs = [max(0.0, -d) for d in devs]
    else:
        devs = [abs(d) for d in devs]
    top = sorted(devs, reverse=True)[:recent]
    z = sum(top) / len(top)
    return Score(metric.component, metric.name, metric.family, z, med, _median(after))


def change_point(metrics: Sequence[Metric], min_side: int = 3) -> float | None:
    """The one time that best splits every metric into a before and an after (None: too little data).

    For every candidate split, each metric contributes the classic two-segment statistic
    ``n_before · n_after / n · (mean_after − mean_before)²`` in units of its robust spread before the split
    (largest exactly at a step, whatever its height); the split with the largest sum over metrics wins."""
    times = sorted({t for m in metrics for t, _ in _finite(m.points)})
    if len(times) < 2 * min_side:
        return None
    series = [(m, pts) for m in metrics if len(pts := _finite(m.points)) >= 2 * min_side]
    if not series:
        return None
    best, best_t = -1.0, None
    for t in times[min_side:len(times) - min_side + 1]:
        total = 0.0
        for m, pts in series:
            before = [v for ts, v in pts if ts < t]
            after = [v for ts, v in pts if ts >= t]
            if len(before) < min_side or len(after) < 2:
                continue
            shift = (sum(after) / len(after) - sum(before) / len(before)) / spread(before, m.family)
            if m.direction > 0:
                shift = max(0.0, shift)
            elif m.direction < 0:
                shift = max(0.0, -shift)
            total += len(before) * len(after) / len(pts) * shift * shift
        if total > best:
            best, best_t = total, t
    return best_t


def rank(metrics: Sequence[Metric], calls: Mapping[str, Iterable[str]], onset: float | None = None,
         components: Iterable[str] = (), min_z: float = 3.0) -> Ranking:
    """Rank components by anomaly, read along the call graph (``calls``: caller → callees)."""
    when = onset if onset is not None else change_point(metrics)
    out = Ranking(onset=when, components=[])
    if when is None:
        return out
    evidence: dict[str, list[Score]] = {}
    for m in metrics:
        sc = robust_z(m, when)
        if sc is not None and sc.z >= min_z:
            evidence.setdefault(m.component, []).append(sc)
    for scores in evidence.values():
        scores.sort(key=lambda s: -s.z)

    def total(comp: str) -> float:
        return max((s.z for s in evidence.get(comp, [])), default=0.0)

    callees = {c: list(d) for c, d in calls.items()}
    scored: dict[str, tuple[float, str | None]] = {}  # component → (score, the family it comes from)
    for comp in set(evidence) | set(components):
        scores = evidence.get(comp, [])
        mine = next((s for s in scores if s.family not in INHERITED), None)
        inherited = next((s for s in scores if s.family in INHERITED), None)
        # A callee anomalous on its own account (or itself showing the symptom further down) explains it.
        explained = any(total(d) >= min_z for d in callees.get(comp, []))
        weight = INHERITED_DISCOUNT if explained else 1.0
        candidates = [(mine.z, mine.family)] if mine else []
        if inherited:
            candidates.append((inherited.z * weight, inherited.family))
        scored[comp] = max(candidates, default=(0.0, None))
    out.components = sorted(((c, round(z, 3)) for c, (z, _f) in scored.items() if z > 0), key=lambda cz: -cz[1])
    out.evidence = evidence
    if out.components:
        family = scored[out.components[0][0]][1]
        out.category = CATEGORY_OF_FAMILY.get(family) if family else None
    return out
