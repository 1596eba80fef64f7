"""Run one shop service: ``python -m sockdrill.shop SERVICE`` (what the runtime starts for a pod).

``python -m sockdrill.shop SERVICE --routes`` prints the service's HTTP routes as JSON instead (method and
path template, built from the same ``build`` the pod runs, so the list cannot drift from the code); the
fuzz tests read it to reach every route of every service.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

from sockdrill.shop.modules import OPTIONAL_MODULES, SERVICE_MODULES

MODULES = {**SERVICE_MODULES, **OPTIONAL_MODULES}


def routes(name: str) -> list[dict[str, str]]:
    """Every (method, path) the service serves, without serving it."""
    from sockdrill.shop.common.service import Service

    # Building needs each store's URL to be set, not reachable: nothing connects before start-up.
    for store in ("SESSION_DB", "CATALOGUE_DB", "CARTS_DB", "ORDERS_DB", "USER_DB", "QUEUE", "SEARCH_DB_A",
                  "SEARCH_DB_B"):
        os.environ.setdefault(f"SOCKDRILL_URL_{store}", "unused://routes-only")
    module = importlib.import_module(MODULES[name])
    svc = Service(name, module.KNOBS)
    module.build(svc)
    found = {(r.method, r.resource.canonical) for r in svc.app.router.routes()
             if r.method != "HEAD" and r.resource is not None}
    return [{"method": m, "path": p} for m, p in sorted(found, key=lambda mp: (mp[1], mp[0]))]


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] not in MODULES or argv[1:] not in ([], ["--routes"]):
        print(f"usage: python -m sockdrill.shop {{{','.join(sorted(MODULES))}}} [--routes]", file=sys.stderr)
        return 2
    if argv[1:] == ["--routes"]:
        print(json.dumps(routes(argv[0]), indent=1))
        return 0
    module = importlib.import_module(MODULES[argv[0]])
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
