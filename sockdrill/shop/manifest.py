"""The shop as deployments: who runs what, and who calls whom (the edges of the mesh).

Names follow upstream Sock Shop's Kubernetes manifests. Stores: one PostgreSQL per upstream database
(each its own failure domain), Redis for sessions (``session-db``) and for the shipping queue
(``queue``: streams with a consumer group; replaced by RabbitMQ when an AMQP URL is given), and for the
carts' write-behind cache (``carts-cache``).
"""

from __future__ import annotations

from sockdrill.cluster.spec import DeploymentSpec
from sockdrill.shop.modules import OPTIONAL_MODULES, SERVICE_MODULES

__all__ = ["EDGE_REGIONS", "FRONT_END_PORT", "OPTIONAL_MODULES", "SERVICE_MODULES", "service_names", "shop_deployments"]

EDGE_REGIONS = ("us", "eu")

FRONT_END_PORT = 8079


def shop_deployments(
    replicas: dict[str, int] | None = None,
    front_end_port: int = FRONT_END_PORT,
    amqp_url: str | None = None,
    external: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> list[DeploymentSpec]:
    """The whole shop. ``external`` maps a store name to a URL that replaces the embedded server."""
    replicas = replicas or {}
    external = dict(external or {})
    if amqp_url:
        external["queue"] = amqp_url
    common_env = dict(env or {})

    # Every pod has requests and limits, as in a real cluster (so a limit is no tell by itself). The limits
    # are generous for 2 cores: they bind only when someone lowers them.
    def svc(name: str, calls: list[str], role: str, module: str | None = None, optional: bool = False,
            extra_env: dict[str, str] | None = None, **kw: object) -> DeploymentSpec:
        return DeploymentSpec(name=name, kind="service", module=module or name,
                              replicas=replicas.get(name, 0 if optional else 1), optional=optional,
                              calls=calls, env={**common_env, **(extra_env or {})}, role=role, cpu_millicores=1000,
                              memory_bytes=1 << 30, cpu_request_millicores=100, memory_request_bytes=128 << 20,
                              **kw)  # type: ignore[arg-type]

    def store(name: str, kind: str, role: str, maxmemory: str = "0", optional: bool = False,
              replica_of: str | None = None) -> DeploymentSpec:
        ext = external.get(name)
        return DeploymentSpec(name=name, kind=kind, replicas=0 if optional else 1, role=role,  # type: ignore[arg-type]
                              optional=optional, replica_of=replica_of, calls=[replica_of] if replica_of else [],
                              external_url=ext, cpu_millicores=None if ext else 2000,
                              memory_bytes=None if ext else 2 << 30, cpu_request_millicores=None if ext else 250,
                              memory_request_bytes=None if ext else 256 << 20, maxmemory=maxmemory)

    edges = [svc(f"edge-{r}", ["front-end", "queue"], f"edge cache (CDN), region {r}", module="edge", optional=True,
                 extra_env={"SOCKDRILL_REGION": r}) for r in EDGE_REGIONS]

    # Seed scenario 4's eventual consistency: a streaming read replica of catalogue-db and catalogue pods that
    # read from it (a subset of the catalogue's route, 0 % unless a route says otherwise); asleep. None when
    # catalogue-db is an external server (we cannot stream from it).
    replica_subset: dict[str, str] = {}
    replica_reads: list[DeploymentSpec] = []
    if "catalogue-db" not in external:
        replica_subset = {"replica": "catalogue-ro"}
        replica_reads = [
            store("catalogue-db-replica", "postgres", "catalogue read replica (streaming)", optional=True,
                  replica_of="catalogue-db"),
            svc("catalogue-ro", ["catalogue-db-replica", "queue"], "product catalogue, replica reads",
                module="catalogue", optional=True, extra_env={"SOCKDRILL_CATALOGUE_STORE": "catalogue-db-replica"}),
        ]

    return [
        store("catalogue-db", "postgres", "catalogue database"),
        store("carts-db", "postgres", "carts database"),
        store("orders-db", "postgres", "orders database"),
        store("user-db", "postgres", "user database"),
        store("session-db", "redis", "front-end sessions"),
        # A budget it never reaches in normal use; full, it refuses writes (carts then writes through).
        store("carts-cache", "redis", "carts read/write cache (write-behind to carts-db)", maxmemory="64mb"),
        store("queue", "redis", "shipping queue (Redis streams, or RabbitMQ when an AMQP URL is given)"),
        # Seed scenario 6's search: two shards and the service over them, asleep unless a scenario wakes them.
        store("search-db-a", "postgres", "search shard a", optional=True),
        store("search-db-b", "postgres", "search shard b", optional=True),
        # Seed scenario 10's delivery pricing: the postcode directory and the carrier's rates cached; asleep.
        store("rates-db", "postgres", "shipping rates database (postcode directory)", optional=True),
        store("rates-cache", "redis", "carrier rates cache", optional=True),
        # The queue carries its product events (edge purges, search changes) besides shipments. Its reads may be
        # routed to the previous release too (subsets: all to the primary unless a route says otherwise).
        svc("catalogue", ["catalogue-db", "queue"], "product catalogue",
            subsets={"primary": "catalogue", **replica_subset, "v1": "catalogue-v1"},
            route={"primary": 100, **dict.fromkeys(replica_subset, 0), "v1": 0}),
        *replica_reads,
        # The previous release, kept for a rollback (it kept answers in memory for ten minutes): asleep.
        svc("catalogue-v1", ["catalogue-db", "queue"], "product catalogue, previous release (kept for rollback)",
            module="catalogue", optional=True, knobs={"product_cache_ttl_s": 600.0}),
        svc("user", ["user-db"], "customers, addresses, cards, login"),
        svc("carts", ["carts-db", "carts-cache"], "shopping carts"),
        svc("payment-gateway", [], "third-party payment processor"),
        # Seed scenario 5's failover: a second processor with its own ledger; asleep unless a scenario wakes it.
        svc("payment-gateway-b", [], "third-party payment processor, second provider", module="payment-gateway",
            optional=True),
        svc("payment", ["payment-gateway", "payment-gateway-b"], "payment authorisation"),
        svc("shipping", ["queue"], "publishes shipments to the queue, shows where they are"),
        svc("queue-master", ["queue"], "consumes shipments, tells orders they are delivered"),
        svc("orders", ["orders-db", "user", "carts", "payment", "shipping", "queue", "shipping-rates"],
            "checkout and orders; applies delivery events"),
        svc("search", ["search-db-a", "search-db-b", "queue", "catalogue"], "product search (shards a and b)",
            optional=True),
        svc("carrier-api", [], "third-party parcel carrier (rating API)", optional=True),
        svc("shipping-rates", ["rates-db", "rates-cache", "carrier-api"], "delivery options and prices by destination",
            optional=True),
        svc("front-end", ["catalogue", "carts", "orders", "user", "shipping", "session-db", "search", "shipping-rates"],
            "web UI and API gateway",
            host_port=front_end_port),
        # Seed scenario 4's regional entry points, each an edge cache in front of the front-end.
        *edges,
    ]


def service_names() -> set[str]:
    """Every service deployment of the shop (not the datastores), optional ones included."""
    return {d.name for d in shop_deployments() if d.kind == "service"}
