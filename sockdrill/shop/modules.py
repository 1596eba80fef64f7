"""Which module runs which service, in a module with no imports: every pod reads it at start-up
(``python -m sockdrill.shop NAME``), and the manifest's deployment specs (pydantic) are the runtime's
business, not the pods' (~0.1 s of each pod's start)."""

from __future__ import annotations

# service name → module whose ``main()`` runs it (``python -m sockdrill.shop NAME``).
SERVICE_MODULES: dict[str, str] = {
    "front-end": "sockdrill.shop.frontend.app",
    "catalogue": "sockdrill.shop.catalogue",
    "carts": "sockdrill.shop.carts",
    "orders": "sockdrill.shop.orders",
    "payment": "sockdrill.shop.payment",
    "payment-gateway": "sockdrill.shop.payment_gateway",
    "shipping": "sockdrill.shop.shipping",
    "queue-master": "sockdrill.shop.queue_master",
    "user": "sockdrill.shop.user",
}

# Modules of optional deployments: components only some scenarios wake (DeploymentSpec.optional: 0 pods in the
# manifest, so that every other run pays nothing for them). Several deployments may run one module (the regions'
# edges). ``python -m sockdrill.shop edge`` runs one by hand.
OPTIONAL_MODULES: dict[str, str] = {
    "edge": "sockdrill.shop.edge",
    "search": "sockdrill.shop.search",
    "shipping-rates": "sockdrill.shop.shipping_rates",
    "carrier-api": "sockdrill.shop.carrier_api",
}
