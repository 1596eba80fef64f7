"""The fixed list of diagnosis categories, and where each seed root cause falls in it.

An agent's ``submit`` names one category; the diagnosis oracle compares it with the variant's ground
truth. Categories name the *mechanism* (what went wrong), not the component (localization scores
that) nor the symptom (every scenario is "slow" or "wrong"). ``SEED_ROOT_CAUSES`` maps every root
cause listed in the seed document (and the faults its reproduction steps inject) to one category, as
data, so scenario files and the tests can check that the list covers the seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sockdrill.errors import OracleError, did_you_mean


@dataclass(frozen=True)
class Category:
    id: str
    description: str


CATEGORIES: dict[str, Category] = {c.id: c for c in (
    Category("resource_saturation",
             "a component runs out of CPU, memory, I/O or connections (DB CPU, pool exhaustion, limits)"),
    Category("capacity_overload",
             "demand exceeds provisioned capacity: too few replicas for a traffic peak, gateway overload"),
    Category("network_latency", "delay, jitter or low bandwidth on a network link between components"),
    Category("network_partition",
             "a link drops, resets or blackholes traffic: a component cannot reach another"),
    Category("query_inefficiency",
             "a missing index, an inefficient query or validation path doing far more work than needed"),
    Category("misconfiguration",
             "a wrong setting: timeouts, retries, circuit breaker, pool sizes, TTLs, other config values"),
    Category("cache_staleness",
             "a cache serves data after the source changed: TTL too long, invalidation lost"),
    Category("cache_eviction", "data evicted from a cache or store under memory pressure (maxmemory, policy)"),
    Category("traffic_routing",
             "requests routed to the wrong or an old backend: bad mesh weights, stale endpoints"),
    Category("dependency_failure",
             "a dependency (third-party API or a downstream backend) is slow or failing on its own"),
    Category("data_consistency",
             "views or services disagree: eventual-consistency lag, failed state transitions or sync, "
             "non-atomic multi-step transactions"),
    Category("concurrency_conflict", "concurrent modifications overwrite each other (lost updates)"),
    Category("data_validation", "valid input is rejected by a validation rule or a database constraint"),
    Category("data_quality", "wrong reference data gives wrong answers: geocoder table, stale rate table"),
    Category("process_crash", "instances crash, are killed, crash-loop or are unhealthy"),
    Category("message_queue_failure",
             "a queue stops delivering: poison or failed message, consumer down, backlog"),
)}

# Words agents use for a category, mapped to its id (after normalisation: lower case, '_' separators).
ALIASES: dict[str, str] = {
    "missing_index": "query_inefficiency", "slow_query": "query_inefficiency",
    "cpu_saturation": "resource_saturation", "memory_pressure": "resource_saturation",
    "connection_pool_exhaustion": "resource_saturation", "resource_exhaustion": "resource_saturation",
    "overload": "capacity_overload", "traffic_spike": "capacity_overload",
    "latency": "network_latency", "network_delay": "network_latency",
    "partition": "network_partition", "network_loss": "network_partition",
    "config": "misconfiguration", "configuration": "misconfiguration", "config_error": "misconfiguration",
    "stale_cache": "cache_staleness", "eviction": "cache_eviction",
    "routing": "traffic_routing", "third_party": "dependency_failure", "upstream_failure": "dependency_failure",
    "inconsistency": "data_consistency", "eventual_consistency": "data_consistency",
    "lost_update": "concurrency_conflict", "race_condition": "concurrency_conflict",
    "validation": "data_validation", "bad_data": "data_quality",
    "crash": "process_crash", "pod_crash": "process_crash", "crashloop": "process_crash",
    "queue_failure": "message_queue_failure", "poison_message": "message_queue_failure",
}


def normalise(value: str | None) -> str | None:
    """An agent's category text as a category id, or None when it names none of them.

    >>> normalise("Missing-Index"), normalise("cache staleness"), normalise("gremlins")
    ('query_inefficiency', 'cache_staleness', None)
    """
    if not value:
        return None
    key = re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")
    if key in CATEGORIES:
        return key
    return ALIASES.get(key)


def get_category(category_id: str) -> Category:
    try:
        return CATEGORIES[category_id]
    except KeyError:
        raise OracleError(f"unknown diagnosis category {category_id!r}{did_you_mean(category_id, CATEGORIES)}"
                          ) from None


@dataclass(frozen=True)
class SeedRootCause:
    scenario: int
    cause: str
    category: str
    source: str = "root cause"  # or "reproduction": a fault the seed's reproduction steps inject


SEED_ROOT_CAUSES: tuple[SeedRootCause, ...] = (
    # 1. High login latency during peak traffic
    SeedRootCause(1, "MongoDB user database CPU saturation", "resource_saturation"),
    SeedRootCause(1, "Inefficient authentication queries", "query_inefficiency"),
    SeedRootCause(1, "Missing database indexes on user collection", "query_inefficiency"),
    SeedRootCause(1, "Service mesh/API gateway overload", "capacity_overload"),
    SeedRootCause(1, "Network latency between front-end and user", "network_latency", "reproduction"),
    # 2. Failed order processing (order appears to fail but payment is processed)
    SeedRootCause(2, "Payment service timeout", "misconfiguration"),
    SeedRootCause(2, "Inconsistent transaction handling", "data_consistency"),
    SeedRootCause(2, "Failed message in RabbitMQ queue", "message_queue_failure"),
    SeedRootCause(2, "Insufficient retry logic", "misconfiguration"),
    SeedRootCause(2, "Network partition to payment service", "network_partition", "reproduction"),
    # 3. Shopping cart data loss
    SeedRootCause(3, "Session timeout too short", "misconfiguration"),
    SeedRootCause(3, "Cart service database connection issues", "resource_saturation"),
    SeedRootCause(3, "Data eviction from cache", "cache_eviction"),
    SeedRootCause(3, "Failed cart synchronization between services", "data_consistency"),
    # 4. Product catalog staleness
    SeedRootCause(4, "CDN cache TTL too high", "cache_staleness"),
    SeedRootCause(4, "Cache invalidation failures", "cache_staleness"),
    SeedRootCause(4, "Eventual consistency delays", "data_consistency"),
    SeedRootCause(4, "Service mesh routing issues", "traffic_routing"),
    # 5. Payment processing timeout
    SeedRootCause(5, "Third-party payment gateway latency", "dependency_failure"),
    SeedRootCause(5, "Circuit breaker tripping", "misconfiguration"),
    SeedRootCause(5, "Connection pool exhaustion", "resource_saturation"),
    SeedRootCause(5, "Inefficient payment validation", "query_inefficiency"),
    SeedRootCause(5, "Network latency to payment processor", "network_latency", "reproduction"),
    # 6. Search functionality degradation
    SeedRootCause(6, "Missing search indexes", "query_inefficiency"),
    SeedRootCause(6, "Search cluster health issues", "process_crash"),
    SeedRootCause(6, "Query optimization needed", "query_inefficiency"),
    SeedRootCause(6, "Resource constraints", "resource_saturation"),
    # 7. Checkout page timeout
    SeedRootCause(7, "Frontend service overload", "capacity_overload"),
    SeedRootCause(7, "API gateway timeouts", "misconfiguration"),
    SeedRootCause(7, "Backend service degradation", "dependency_failure"),
    SeedRootCause(7, "Resource exhaustion", "resource_saturation"),
    # 8. Order status inconsistency
    SeedRootCause(8, "Eventual consistency delays", "data_consistency"),
    SeedRootCause(8, "Failed state transitions", "data_consistency"),
    SeedRootCause(8, "Cache invalidation issues", "cache_staleness"),
    SeedRootCause(8, "Service communication failures", "network_partition"),
    # 9. User profile update failures
    SeedRootCause(9, "Data validation failures", "data_validation"),
    SeedRootCause(9, "Service timeouts", "misconfiguration"),
    SeedRootCause(9, "Database constraint violations", "data_validation"),
    SeedRootCause(9, "Concurrent modification issues", "concurrency_conflict"),
    # 10. Shipping calculation errors
    SeedRootCause(10, "Third-party shipping API failures", "dependency_failure"),
    SeedRootCause(10, "Cached shipping rates", "cache_staleness"),
    SeedRootCause(10, "Geocoding inaccuracies", "data_quality"),
    SeedRootCause(10, "Service configuration errors", "misconfiguration"),
)


def category_of(scenario: int, cause: str) -> str:
    """The category of one seed root cause, looked up by scenario number and (case-insensitive) text."""
    wanted = cause.strip().lower()
    for rc in SEED_ROOT_CAUSES:
        if rc.scenario == scenario and rc.cause.lower() == wanted:
            return rc.category
    known = [rc.cause for rc in SEED_ROOT_CAUSES if rc.scenario == scenario]
    if not known:
        raise OracleError(f"seed scenario {scenario} does not exist (1 to 10)")
    raise OracleError(f"seed scenario {scenario} lists no root cause {cause!r}{did_you_mean(cause, known)}")


__all__ = ["ALIASES", "CATEGORIES", "SEED_ROOT_CAUSES", "Category", "SeedRootCause", "category_of",
           "get_category", "normalise"]
