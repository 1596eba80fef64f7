"""The load generator's own process (``load()`` in this package starts it), so that it never shares an
event loop with what it measures: ``python -m sockdrill.bench.loadgen URLS_JSON CONCURRENCY SECONDS``
prints its figures as JSON."""

from __future__ import annotations

import asyncio
import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m sockdrill.bench.loadgen URLS_JSON CONCURRENCY SECONDS", file=sys.stderr)
        return 2
    from sockdrill.bench import _loadgen

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    print(json.dumps(asyncio.run(_loadgen(json.loads(argv[0]), int(argv[1]), float(argv[2])))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
