"""The fault suite, fast cases: real processes, a chaotic Cortex, SIGKILL, then the count.

Each case runs benchmarks/chaos.py's harness at a small scale: a stand-in Cortex failing 30%
of calls in every way it knows (429 with Retry-After, 500/502/503, slow answers, connections
dropped before or after storing; some entities unknown: 404), signed webhooks posted while
processes are SIGKILLed and started again, then a drain. What must hold: every deploy
answered 2xx is in Cortex exactly once (by customData.bridge.idempotencyKey), no 5xx for
valid input, and dead letters only for the unknown entities. The long runs are
``python benchmarks/chaos.py`` (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks.chaos import Report, Spec, run, summary
from bridge.app import utcnow
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex, Fault
from bridge.worker import Deliverer, Worker
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import client_for, github_post, make_runtime

PG_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "")
NO_PG = "BRIDGE_TEST_POSTGRES_URL not set: the PostgreSQL fault case is skipped"

# Small and quick: short timeouts and leases, so a killed worker's events come back soon.
FAST = Spec(
    events=80,
    kills=2,
    chaos=0.3,
    rate=50.0,
    twins=0.05,
    redeliveries=0.05,
    ghosts=0.03,
    repositories=10,
    timeout_seconds=1.0,
    lease_seconds=3.0,
    # Cortex asks for whole seconds; a 429 here asks for a fifth of one, and the fleet's
    # budget is set far above what the run needs, so a 429 costs a moment, not a second.
    retry_after=0.2,
    requests_per_minute=60_000,
    send_timeout=30.0,
    drain_timeout=60.0,
)


def assert_held(report: Report) -> None:
    """Every check of the run held; else the summary says which did not."""
    text = summary(report)
    print(text)
    assert report.ok, text
    assert report.answers.acknowledged, text
    assert sum(report.mayhem.kills.values()) >= report.spec.kills, text
    assert sum(report.stand_in["faults"].values()) > 0, text


@pytest.mark.slow
def test_serve_on_sqlite_killed_twice_under_chaos(tmp_path: Path) -> None:
    spec = replace(FAST, backend="sqlite", receivers=1, serve_processes=2, workdir=tmp_path)
    assert_held(run(spec, log=print))


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=NO_PG)
def test_receivers_and_workers_on_postgres_killed_under_chaos(tmp_path: Path) -> None:
    spec = replace(
        FAST,
        backend="postgres",
        postgres_url=PG_URL,
        events=50,
        kills=1,
        receivers=2,
        serve_processes=1,
        workers=2,
        worker_threads=2,
        workdir=tmp_path,
    )
    assert_held(run(spec, log=print))


def test_one_deploy_through_two_hooks_at_once_is_one_record(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    """Two deliveries of one deploy (a repository hook beside an organization hook), two
    workers at once, a slow Cortex: still one record.

    The chaos runs found this: without the outbox's group key both workers searched, found
    nothing, and created (up to a third of such pairs were recorded twice).
    """
    runtime = make_runtime(tmp_path, {"cortex": {"url": cortex.url, "timeout_seconds": 5}})
    http = client_for(runtime)
    doc = load_sample("github/deployment_status.success.json")
    doc["deployment"]["payload"] = {}
    for hook, delivery in (("1001", "repo-hook-delivery"), ("2002", "org-hook-delivery")):
        extra = {"X-GitHub-Hook-ID": hook}
        answer = github_post(http, "deployment_status", doc, delivery=delivery, headers=extra)
        assert answer.status_code == 202
    # A loaded Cortex answers searches slowly: both workers look before either one creates.
    cortex.inject(*[Fault("delay_after", seconds=0.5, method="GET") for _ in range(2)])
    clients = [CortexClient(cortex.url, TOKEN) for _ in range(2)]
    workers = [
        Worker(
            runtime.store,
            Deliverer(runtime.store, client, runtime.config, clock=utcnow),
            runtime.config.delivery,
            owner=f"worker-{n}",
            clock=utcnow,
            batch=1,
        )
        for n, client in enumerate(clients)
    ]
    start = threading.Barrier(len(workers))

    def deliver(worker: Worker) -> None:
        start.wait(timeout=10)
        while worker.run_once():
            pass

    threads = [threading.Thread(target=deliver, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    while workers[0].run_once():  # whatever waited for its turn
        pass
    for client in clients:
        client.close()
    counts = runtime.store.counts()
    runtime.store.close()
    assert counts["delivered"] == 2
    keys = [d["customData"]["bridge"]["idempotencyKey"] for d in cortex.all_deploys()]
    assert len(keys) == 1, keys


# --- the stand-in's own fault injection ----------------------------------------------------


def _call(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> str:
    """One request to the stand-in: its status, or how the connection failed."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    try:
        conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        answer = conn.getresponse()
        answer.read()
        retry_after = answer.getheader("Retry-After")
        return f"{answer.status}" + (f" retry-after {retry_after}" if retry_after else "")
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


LIST = "/api/v1/catalog/payments-api/deploys?page=0&pageSize=10"
DEPLOY = {"title": "t", "timestamp": "2026-11-23T10:00:00Z", "type": "DEPLOY"}


def test_chaos_is_seeded_and_fails_every_way() -> None:
    def outcomes(seed: int) -> tuple[list[str], dict[str, int]]:
        with FakeCortex(token=TOKEN, chaos=0.6, seed=seed, slow_seconds=0.01) as fake:
            seen = [_call(fake.url, "GET", LIST) for _ in range(120)]
            return seen, dict(fake.faults_applied)

    first, applied = outcomes(7)
    assert outcomes(7) == (first, applied)
    assert set(applied) == {f"chaos:{kind}" for kind in ("rate_limited", "500", "502", "503")} | {
        "chaos:delay",
        "chaos:drop_before",
        "chaos:drop_after",
    }
    assert {"200", "500", "502", "503", "429 retry-after 1", "RemoteDisconnected"} == set(first)


def test_a_connection_dropped_after_storing_keeps_the_deploy() -> None:
    with FakeCortex(token=TOKEN, chaos=1.0, chaos_kinds=["drop_after"]) as fake:
        assert _call(fake.url, "POST", "/api/v1/catalog/payments-api/deploys", DEPLOY) == (
            "RemoteDisconnected"
        )
        assert len(fake.all_deploys()) == 1


def test_rate_limit_answers_429_until_the_minute_has_passed() -> None:
    now = [1000.0]
    with FakeCortex(token=TOKEN, rate_limit_per_minute=3, clock=lambda: now[0]) as fake:
        assert [_call(fake.url, "GET", LIST) for _ in range(3)] == ["200"] * 3
        now[0] += 20
        assert _call(fake.url, "GET", LIST) == "429 retry-after 40"
        now[0] += 40
        assert _call(fake.url, "GET", LIST) == "200"
        assert fake.faults_applied == {"rate_limit": 1}


def test_stand_in_readback_needs_the_token_and_is_never_faulted() -> None:
    with FakeCortex(token=TOKEN, chaos=1.0, chaos_kinds=["503"], rate_limit_per_minute=1) as fake:
        fake.deploys["payments-api"] = [dict(DEPLOY, uuid="u-1")]
        host, port = fake.url.removeprefix("http://").split(":")
        for path in ("/_stand-in/deploys", "/_stand-in/stats"):
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", path)
            assert conn.getresponse().status == 401
            conn.close()
            assert [_call(fake.url, "GET", path) for _ in range(3)] == ["200"] * 3
        assert fake.received == [] and not fake.faults_applied
        assert _call(fake.url, "GET", "/_stand-in/nothing") == "404"
