"""The statistical ranking (sockdrill/agents/rca.py) on synthetic telemetry with a known answer: the onset
is found, the deepest anomalous component ranks first although its callers show the larger symptom, a
flat series that moves still scores (no division by a zero spread), and healthy noise ranks nothing."""

from __future__ import annotations

import random

from sockdrill.agents.rca import Metric, change_point, rank, robust_z

T0, STEP, N, ONSET = 1_000.0, 5.0, 24, 16  # 24 scrapes, the fault from the 16th on


Points = tuple[tuple[float, float], ...]


def series(base: float, after: float | None = None, noise: float = 0.05, seed: int = 1) -> Points:
    rng = random.Random(seed)
    out = []
    for i in range(N):
        level = after if after is not None and i >= ONSET else base
        out.append((T0 + i * STEP, level * (1 + rng.uniform(-noise, noise))))
    return tuple(out)


CALLS = {"front-end": ["user", "catalogue"], "user": ["user-db"], "catalogue": ["catalogue-db"]}


def shop(**moved: tuple[str, str, float, float]) -> list[Metric]:
    """Every component healthy, except the metrics named (component, family, before, after)."""
    metrics = []
    seed = 0
    for comp in ("front-end", "user", "catalogue"):
        for name, family, level in (("p95", "latency", 0.05), ("errors", "errors", 0.0), ("cpu", "cpu", 0.1)):
            seed += 1
            metrics.append(Metric(comp, name, family, series(level, seed=seed)))
    for comp in ("user-db", "catalogue-db"):
        for name, family, level in (("cpu", "cpu", 0.05), ("sessions", "sessions", 1.0)):
            seed += 1
            metrics.append(Metric(comp, name, family, series(level, seed=seed)))
    for key, (comp, family, before, after) in moved.items():
        metrics = [m for m in metrics if not (m.component == comp and m.name == key)]
        seed += 1
        metrics.append(Metric(comp, key, family, series(before, after, seed=seed)))
    return metrics


def test_the_onset_is_where_things_changed() -> None:
    metrics = shop(cpu=("user-db", "cpu", 0.05, 0.9))
    assert change_point(metrics) == T0 + ONSET * STEP


def test_the_deepest_anomalous_component_ranks_first() -> None:
    # user-db's CPU saturates; user and the front-end inherit far larger latency moves.
    metrics = shop(cpu=("user-db", "cpu", 0.05, 0.95), p95=("user", "latency", 0.05, 2.5))
    metrics.append(Metric("front-end", "p95_login", "latency", series(0.06, 2.6, seed=99)))
    ranking = rank(metrics, CALLS)
    assert ranking.ranked[0] == "user-db", ranking.components
    assert ranking.category == "resource_saturation"
    assert "front-end" in ranking.ranked and "catalogue" not in ranking.ranked


def test_a_symptom_with_no_anomalous_callee_stays_where_it_is() -> None:
    # The user service itself fails (a bad setting): nothing below it moved, so it is not discounted.
    metrics = shop(errors=("user", "errors", 0.0, 0.4))
    metrics.append(Metric("front-end", "errors_login", "errors", series(0.0, 0.35, seed=98)))
    ranking = rank(metrics, CALLS)
    assert ranking.ranked[0] == "user", ranking.components
    assert ranking.category == "dependency_failure"


def test_a_flat_series_that_moves_scores_by_its_floor() -> None:
    flat = Metric("queue", "depth", "queue", tuple((T0 + i * STEP, 0.0 if i < ONSET else 40.0) for i in range(N)))
    score = robust_z(flat, T0 + ONSET * STEP)
    assert score is not None and score.z >= 10  # 40 messages against a floor of 2
    still = Metric("queue", "depth", "queue", tuple((T0 + i * STEP, 0.0) for i in range(N)))
    unchanged = robust_z(still, T0 + ONSET * STEP)
    assert unchanged is not None and unchanged.z == 0


def test_healthy_noise_ranks_nothing() -> None:
    ranking = rank(shop(), CALLS, min_z=3.0)
    assert ranking.components == [], ranking.components


def test_a_fall_counts_only_where_a_fall_is_bad() -> None:
    fall = Metric("payment", "authorised", "throughput", series(10.0, 1.0), direction=-1)
    rise = Metric("payment", "p95", "latency", series(0.05, 0.01), direction=1)
    onset = T0 + ONSET * STEP
    assert (robust_z(fall, onset) or robust_z(rise, onset)) and robust_z(fall, onset).z > 3  # type: ignore[union-attr]
    assert robust_z(rise, onset).z == 0  # type: ignore[union-attr]
