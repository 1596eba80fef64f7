"""``bench headroom``'s CPU split on the shared shop: every process is counted once, under the pod (or the
recorder, or the runtime) it belongs to, and work sent to one pod shows up under that pod."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import requests

from sockdrill.bench.headroom import RECORDER, RUNTIME, cpu_by_owner, measure_idle
from tests.conftest import Shop


def test_cpu_is_split_by_who_spends_it(shop: Shop) -> None:
    # Deployments asleep in this shop (optional ones, 0 pods) own no process, so no CPU.
    deployments = {d["name"] for d in shop.status()["deployments"] if d["pods"]}
    before = cpu_by_owner(shop.data_dir)
    owners = deployments | {RUNTIME} | ({RECORDER} if shop.client.record.get("recorder_url") else set())
    assert set(before) == owners

    # 400 catalogue pages straight to the catalogue pod (not through the front-end): a fixed amount of work.
    url = shop.addresses["catalogue"] + "/catalogue?size=50"
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: requests.get(url, timeout=30).status_code, range(400)))
    assert codes == [200] * 400
    after = cpu_by_owner(shop.data_dir)
    spent = {k: after[k] - before[k] for k in owners}
    assert all(v >= 0 for v in spent.values()), spent
    # Serving a page of 50 socks costs the catalogue most of a millisecond (0.8 ms measured); a pod nobody
    # called spent only what its metrics scrapes cost.
    assert spent["catalogue"] > 0.1, spent
    assert spent["catalogue-db"] > 0, spent
    uncalled = max(spent[d] for d in ("payment-gateway", "shipping"))  # no work of their own between requests
    assert spent["catalogue"] > 3 * uncalled, spent


def test_idle_report_names_its_biggest_spenders(shop: Shop) -> None:
    report, rates = measure_idle(shop.data_dir, 2.0)
    assert report["seconds"] >= 2.0
    assert report["cores"] > 0  # 16 pods (servers with timers) and the runtime: never 0 ticks in 2 s
    assert abs(report["cores"] - sum(report["by_owner_cores"].values())) < 0.01  # rounding only
    assert set(report["by_owner_cores"]) - {"others"} <= set(rates)
    assert len(report["by_owner_cores"]) <= 9


def test_scale_rows_come_from_the_replicas_asked_for(shop: Shop) -> None:
    """``bench scale`` on the shared shop: front-end and catalogue really run 2 pods for the measured row, the
    browse load is served without error, and its CPU is read from the shop's processes."""
    from sockdrill.bench import browse_urls
    from sockdrill.bench.scale import SCALED, measure

    urls = browse_urls(shop.url)
    row = measure(shop.client, shop.data_dir, 2, urls, concurrency=4, duration=2.0)
    pods = {d["name"]: d["pods"] for d in shop.status()["deployments"]}
    assert all(len(pods[name]) == 2 for name in SCALED), pods
    assert row["replicas"] == 2 and row["errors"] == 0 and row["rps"] > 10, row
    assert row["shop_cores"] > 0 and row["requests_per_core_s"] > 0, row
    assert row["p50_ms"] <= row["p99_ms"], row
    assert {"front-end", "catalogue"} <= set(row["by_owner_us_per_request"]), row


def test_browse_cpu_is_split_per_request(shop: Shop) -> None:
    """``bench shop``'s split: a browse request's CPU lands on the pods on its path (front-end, catalogue, its
    database, the mesh between them), each in µs per request, and adds up to the shop's total."""
    from sockdrill.bench import browse_urls, load_with_cpu

    figures = load_with_cpu(shop.data_dir, browse_urls(shop.url), 4, 2.0)
    assert figures["errors"] == 0 and figures["requests"] > 20, figures
    split = figures["cpu"]["by_owner_us_per_request"]
    on_path = {"front-end", "catalogue", "catalogue-db", RUNTIME}
    assert on_path <= set(split), split
    assert all(split[k] > 0 for k in on_path), split
    # The front-end and catalogue handle every request: each costs more than any pod that is off the path.
    off_path = [v for k, v in split.items() if k not in on_path | {"session-db", RECORDER}]
    assert min(split["front-end"], split["catalogue"]) > max(off_path, default=0.0), split
    assert sum(split.values()) <= figures["cpu"]["shop_us_per_request"] + 1, figures["cpu"]
    assert figures["cpu_us_per_request"] > 0, figures  # the load generator's own, reported beside


def testbudget_at_goal_is_what_is_left_of_the_cores() -> None:
    from sockdrill.bench import budget_at_goal

    # A relay at 4,000 req/s: the goal is 1,400 req/s, so each request may cost every process together the
    # machine's cores over 1,400 (1,428.6 µs on 2 cores); the generator takes 100 µs of it, the shop the rest.
    cores = os.cpu_count() or 1
    budget = budget_at_goal({"cpu_us_per_request": 100.0, "cpu": {"shop_us_per_request": 2000.0}},
                             {"rps": 4000.0})
    assert budget["rps"] == 1400
    assert budget["cpu_us_per_request_all_processes"] == round(cores * 1e6 / 1400, 1)
    assert budget["shop_us_per_request"] == round(cores * 1e6 / 1400 - 100, 1)
    expected_cut = max(0.0, 1 - (cores * 1e6 / 1400 - 100) / 2000)
    assert budget["cut_needed"] == f"{expected_cut:.0%}"
