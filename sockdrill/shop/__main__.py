"""Run one shop service: ``python -m sockdrill.shop SERVICE`` (what the runtime starts for a pod)."""

from __future__ import annotations

import importlib
import sys

from sockdrill.shop.manifest import SERVICE_MODULES


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SERVICE_MODULES:
        print(f"usage: python -m sockdrill.shop {{{','.join(sorted(SERVICE_MODULES))}}}", file=sys.stderr)
        return 2
    module = importlib.import_module(SERVICE_MODULES[argv[0]])
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
