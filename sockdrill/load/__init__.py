"""Load: Locust journeys against the shop, run headless in their own process; client-side SLIs.

Importing this package (or ``runner``, ``sli``, ``shapes``, ``config``, ``choices``, ``cli``) never imports
locust or gevent: only ``journeys`` and ``locustfile`` do, and they run inside the Locust process.
"""

from sockdrill.load.runner import LoadError, LoadRun, run_load, start_load
from sockdrill.load.sli import JOURNEYS, LoadSummary

__all__ = ["JOURNEYS", "LoadError", "LoadRun", "LoadSummary", "run_load", "start_load"]
