"""A delivery takes effect once however long it runs: lease renewal, fencing, progress.

Every test runs on SQLite and on PostgreSQL (``[sqlite]``, ``[postgresql]``: conftest's db_url).
"""

from __future__ import annotations

import functools
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Runtime
from bridge.config import Route, parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex, Fault
from bridge.mapping import build_deploy_request, deploy_key, idempotency_key, key_of
from bridge.model import DeployEvent, DeployRef, DeployType, Status, check_deploy
from bridge.relay import make_worker
from bridge.store import DELIVERED, SENDING, Lease, LeaseLost, RecordWrite, Store
from bridge.worker import Deliverer, Worker, start_in_thread
from tests.conftest import TOKEN, wait_until
from tests.receiver_kit import ADMIN_TOKEN, client_for

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
LEASE = 5.0
WORKER = [sys.executable, "-c", "from bridge.cli import run; run()", "worker"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def event() -> DeployEvent:
    return DeployEvent(
        source="github",
        repository="acme/monorepo",
        event="deployment_status",
        ref=DeployRef("deployment", "4242"),
        status=Status.SUCCEEDED,
        timestamp=T0,
        title="Deploy everything",
        sha="b" * 40,
        environment="production",
    )


def entities(count: int) -> list[str]:
    return [f"svc-{n:03d}" for n in range(count)]


def enqueue(store: Store, count: int, *, now: datetime | None = None) -> int:
    """One stored event naming ``count`` entities, as a route listing them would store it.

    Put in through the Store, not the receiver: the receiver's limit on entities per event
    is not what these tests are about.
    """
    routed = Route(tuple(entities(count)), "production", "routes[0]")
    id, created = store.enqueue(
        dedupe_key="github:hook:1",
        source="github",
        event_name="deployment_status",
        payload={
            "event": check_deploy(event()).stored,
            "entities": list(routed.entities),
            "rule": routed.rule,
        },
        now=now or utcnow(),
        group_key=deploy_key(event()),
    )
    assert created
    return id


def config(cortex: FakeCortex, **record: Any) -> dict[str, Any]:
    return {
        "cortex": {"url": cortex.url, "timeout_seconds": 2},
        "delivery": {"lease_seconds": LEASE},
        "rollback": {"detect": False},
        **({"record": record} if record else {}),
    }


def recorded_once(cortex: FakeCortex, count: int) -> None:
    """Cortex holds exactly one deploy per entity, each with this deploy's key."""
    keys = Counter(key_of(d) for d in cortex.all_deploys())
    assert keys == Counter({idempotency_key(event(), e): 1 for e in entities(count)})


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.from_url(db_url) as made:
        yield made


# -- fencing and resuming, step by step on a hand-moved clock ---------------------------------


def hand_worker(
    store: Store, cortex: FakeCortex, owner: str, clock: Clock
) -> tuple[Worker, CortexClient]:
    parsed = parse_config(config(cortex))
    client = CortexClient(cortex.url, TOKEN, timeout=2)
    deliverer = Deliverer(store, client, parsed, clock=clock)
    return Worker(store, deliverer, parsed.delivery, owner=owner, clock=clock), client


def test_a_worker_whose_lease_was_taken_writes_nothing_more(
    store: Store, cortex: FakeCortex
) -> None:
    clock = Clock()
    id = enqueue(store, 3, now=clock())
    a, a_client = hand_worker(store, cortex, "worker-a", clock)
    b, b_client = hand_worker(store, cortex, "worker-b", clock)
    try:
        (stalled,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
        clock.advance(LEASE + 1)  # worker-a stalls past its lease; worker-b takes over
        (taken,) = store.claim(owner="worker-b", now=clock(), lease_seconds=LEASE)
        assert a.handle(stalled) == "lost"
        # Fenced before its first write (the search before it only reads).
        assert [r.method for r in cortex.received if r.method != "GET"] == []
        assert b.handle(taken) == "delivered"
    finally:
        a_client.close()
        b_client.close()
    recorded_once(cortex, 3)
    # Each entity: its search (the relay did not make the record), then one create.
    assert [r.method for r in cortex.received if r.method != "GET"] == ["POST"] * 3
    done = store.get(id)
    assert done is not None and done.status == DELIVERED


def test_the_next_owner_resumes_and_looks_for_a_write_left_unanswered(
    store: Store, cortex: FakeCortex
) -> None:
    clock = Clock()
    id = enqueue(store, 3, now=clock())
    first, second, third = entities(3)
    (stalled,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
    # worker-a recorded the first entity, then sent the second and stalled for the answer.
    with CortexClient(cortex.url, TOKEN) as client:
        made = client.create_deploy(first, build_deploy_request(event(), first, DeployType.DEPLOY))
        progress = {first: {"action": "created", "uuid": made["uuid"]}, second: SENDING}
        Lease(store, stalled, owner="worker-a", lease_seconds=LEASE, clock=clock).hold(progress)
        client.create_deploy(second, build_deploy_request(event(), second, DeployType.DEPLOY))
    cortex.received.clear()
    clock.advance(LEASE + 1)
    b, b_client = hand_worker(store, cortex, "worker-b", clock)
    try:
        (taken,) = store.claim(owner="worker-b", now=clock(), lease_seconds=LEASE)
        assert b.handle(taken) == "delivered"
    finally:
        b_client.close()
    recorded_once(cortex, 3)
    # The first is not touched again; the second is looked for, found, kept; the third,
    # which the relay did not make, is looked for in Cortex too, then made, and checked once
    # after (this worker has not surveyed the pair: another face may be racing it).
    assert [(r.method, r.path) for r in cortex.received] == [
        ("GET", "/api/v1/deploys/search"),
        ("GET", "/api/v1/deploys/search"),
        ("POST", f"/api/v1/catalog/{third}/deploys"),
        ("GET", "/api/v1/deploys/search"),
    ]
    done = store.get(id)
    assert done is not None
    assert [done.results[e]["action"] for e in (first, second, third)] == [
        "created",
        "found",
        "created",
    ]
    # A renewal by the worker that lost the delivery is refused: the fencing token.
    with pytest.raises(LeaseLost, match="lease lost to another worker"):
        Lease(store, stalled, owner="worker-a", lease_seconds=LEASE, clock=clock).hold({})


def test_records_are_kept_with_the_progress_only_while_the_lease_is_held(store: Store) -> None:
    clock = Clock()
    id = enqueue(store, 2, now=clock())
    (claimed,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
    made = RecordWrite("k-1", "svc-000", "u-1", "succeeded")
    lease = functools.partial(Lease, store, claimed, lease_seconds=LEASE, clock=clock)
    lease(owner="worker-a", writes=[made]).hold({"svc-000": {"action": "created"}})
    assert store.records.get("k-1") is not None
    late = RecordWrite("k-2", "svc-001", "u-2", "succeeded")
    with pytest.raises(LeaseLost):  # not the lease's owner
        lease(owner="worker-b", writes=[late]).hold({})
    assert store.records.get("k-2") is None
    gone = RecordWrite("k-1", "", None)
    assert store.settle(id, "delivered", owner="worker-a", results={}, now=clock(), writes=[gone])
    assert store.records.get("k-1") is None


def test_a_renewal_that_took_too_long_is_not_trusted(store: Store) -> None:
    """A worker stopped inside its renewal may wake after the lease it renewed ran out."""
    clock = Clock()
    enqueue(store, 1, now=clock())
    (claimed,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
    readings = iter([0.0, LEASE, LEASE, LEASE + 0.01])  # the first renewal took a whole lease
    lease = Lease(
        store,
        claimed,
        owner="worker-a",
        lease_seconds=LEASE,
        clock=clock,
        monotonic=lambda: next(readings),
    )
    lease.hold({"svc-000": SENDING})  # renewed twice: the second one in time
    assert next(readings, None) is None
    stalled = Lease(
        store,
        claimed,
        owner="worker-a",
        lease_seconds=LEASE,
        clock=clock,
        monotonic=itertools.count(0.0, LEASE).__next__,  # every renewal takes a lease
    )
    with pytest.raises(LeaseLost, match="cannot be renewed in time"):
        stalled.hold({})


def test_a_write_refused_before_it_left_is_not_looked_for_again(
    store: Store, cortex: FakeCortex
) -> None:
    clock = Clock()
    id = enqueue(store, 1, now=clock())
    worker, client = hand_worker(store, cortex, "worker-a", clock)
    try:
        cortex.inject(Fault.rate_limited(1, method="POST"))
        (claimed,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
        assert worker.handle(claimed) == "retrying"
        kept = store.get(id)
        assert kept is not None and kept.results == {}  # a 429: Cortex did nothing
        clock.advance(60)
        (again,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
        assert worker.handle(again) == "delivered"
    finally:
        client.close()
    # One search before the first try, none after a 429 (Cortex did nothing); the check
    # after the create (the worker's first on a pair it has not surveyed).
    assert [r.method for r in cortex.received] == ["GET", "POST", "POST", "GET"]
    recorded_once(cortex, 1)


def test_a_token_cortex_echoes_is_never_stored_or_shown(
    db_url: str, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli import main

    clock = Clock()
    store = Store.from_url(db_url)
    id = enqueue(store, 1, now=clock())
    worker, client = hand_worker(store, cortex, "worker-a", clock)
    echoed = {"type": "BAD_REQUEST", "message": f"upstream said: Authorization: Bearer {TOKEN}"}
    cortex.inject(Fault("status", status=400, body=echoed, method="POST"))
    try:
        (claimed,) = store.claim(owner="worker-a", now=clock(), lease_seconds=LEASE)
        assert worker.handle(claimed) == "dead"
        dead = store.get(id)
        runtime = Runtime(config=parse_config({}), store=store, admin_token=ADMIN_TOKEN)
        admin = client_for(runtime).get(
            f"/api/deliveries/{id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    finally:
        client.close()
        store.close()
    assert dead is not None and dead.last_error is not None
    assert TOKEN not in dead.last_error and "Bearer ***" in dead.last_error
    assert admin.status_code == 200 and TOKEN not in admin.get_data(as_text=True)
    assert "Bearer ***" in admin.get_data(as_text=True)
    assert main(["deliveries", "show", str(id)], {"BRIDGE_DATABASE_URL": db_url}) == 0
    shown = capsys.readouterr()
    assert TOKEN not in shown.out + shown.err and "Bearer ***" in shown.out
    assert cortex.all_deploys() == []


# -- the two scenarios, in real time ---------------------------------------------------


@pytest.mark.slow
def test_300_entities_two_workers_each_recorded_once(db_url: str) -> None:
    """Each request takes 35 ms, and an entity three of them (the search before, the create,
    the check after it): the event takes over 30 s on any machine, six leases of 5 s and
    more. (At 0.1 s a request, as it was, it took 95 s here, a sixth of the whole suite, for
    the same point: a delivery that outlives its lease many times over.)"""
    with FakeCortex(token=TOKEN, latency=0.035) as cortex:
        store = Store.from_url(db_url)
        runtime = Runtime(config=parse_config(config(cortex)), store=store)
        clients = [CortexClient(cortex.url, TOKEN, timeout=2) for _ in range(2)]
        workers = [
            make_worker(runtime, client, owner=f"worker-{n}", idle_poll=0.2)
            for n, client in enumerate(clients)
        ]
        stop = threading.Event()
        threads = [start_in_thread(worker, stop) for worker in workers]
        try:
            id = enqueue(store, 300)
            wait_until(lambda: _status(store, id) == DELIVERED, timeout=240)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            for client in clients:
                client.close()
            store.close()
        recorded_once(cortex, 300)
        assert len(cortex.requests_to("POST")) == 300
        assert cortex.violations == []


@pytest.mark.slow
def test_a_worker_stopped_past_its_lease_records_nothing_twice(db_url: str, tmp_path: Path) -> None:
    count = 80
    with FakeCortex(token=TOKEN, latency=0.1) as cortex:
        store = Store.from_url(db_url)
        cfg = tmp_path / "bridge.yaml"
        cfg.write_text(
            f"cortex: {{url: '{cortex.url}', timeout_seconds: 2}}\n"
            f"delivery: {{lease_seconds: {LEASE:g}}}\n"
            "rollback: {detect: false}\n"
        )
        env = {
            **os.environ,
            "CORTEX_API_TOKEN": TOKEN,
            "BRIDGE_DATABASE_URL": db_url,
            "PYTHONUNBUFFERED": "1",
        }
        stalled = subprocess.Popen(
            [*WORKER, "--config", str(cfg), "--threads", "1", "--poll", "0.2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        runtime = Runtime(config=parse_config(config(cortex)), store=store)
        stop = threading.Event()
        client = CortexClient(cortex.url, TOKEN, timeout=2)
        try:
            id = enqueue(store, count)
            started = lambda: len(cortex.requests_to("POST")) >= 10 or stalled.poll() is not None  # noqa: E731
            wait_until(started, timeout=60)
            assert stalled.poll() is None, stalled.communicate()[1]
            stalled.send_signal(signal.SIGSTOP)  # mid-event, most likely mid-request
            taker = make_worker(runtime, client, owner="taker", idle_poll=0.2)
            thread = start_in_thread(taker, stop)
            wait_until(lambda: _status(store, id) == DELIVERED, timeout=120)
            stalled.send_signal(signal.SIGCONT)  # it wakes long past its lease
            stopped = store.get(id)
            # It notices the lease is lost at its next write, and stops there.
            stalled.send_signal(signal.SIGTERM)
            _, err = stalled.communicate(timeout=60)
        finally:
            if stalled.poll() is None:
                stalled.kill()
                stalled.wait()
            stop.set()
            client.close()
        thread.join(timeout=30)
        store_after = store.get(id)
        store.close()
        recorded_once(cortex, count)
        assert stalled.returncode == 0, err
        assert "lease lost" in err
        assert stopped == store_after  # the stalled worker changed nothing once it woke
        assert cortex.violations == []


def _status(store: Store, id: int) -> str | None:
    found = store.get(id)
    return None if found is None else found.status
