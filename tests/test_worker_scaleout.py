"""Many replicas on one database: wake-ups across processes, one shared Cortex budget, bursts.

Each "replica" here is what one process of `serve` or `worker` builds (bridge.relay): its own
Store (its own connections), a SharedBudget and its delivery workers; they meet only in the
database, as separate processes would. PostgreSQL cases run with BRIDGE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Runtime
from bridge.config import Route, parse_config
from bridge.cortex import CortexClient
from bridge.cortex.budget import SharedBudget
from bridge.errors import CortexRetryable
from bridge.fakecortex import FakeCortex, Fault
from bridge.mapping import deploy_key, key_of
from bridge.model import DeployEvent, DeployRef, Status, check_deploy
from bridge.relay import BATCH, make_budget, make_worker, wake_on_notify
from bridge.store import DELIVERED, Listener, Store, bucket
from bridge.worker import start_in_thread
from tests.conftest import TOKEN, wait_until
from tests.databases import NO_PG, PG_URL, database_url

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


@pytest.fixture
def url(db_url: str) -> str:
    """A database of its own on the backend under test (conftest's ``db_url``)."""
    return db_url


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Replica:
    """One process of the relay: its own store, budget, workers and (PostgreSQL) listener."""

    def __init__(
        self,
        url: str,
        cortex: FakeCortex,
        *,
        workers: int = 1,
        idle_poll: float = 0.2,
        **cortex_keys: Any,
    ) -> None:
        self.store = Store.from_url(url)
        config = parse_config({"cortex": {"url": cortex.url, "timeout_seconds": 5, **cortex_keys}})
        self.runtime = Runtime(config=config, store=self.store)
        self.clients = [CortexClient(cortex.url, TOKEN, timeout=5) for _ in range(workers)]
        self.budget = make_budget(self.runtime)
        self.workers = [
            make_worker(
                self.runtime,
                client,
                owner=f"{id(self)}-{n}",
                wake=threading.Event(),
                idle_poll=idle_poll,
                budget=self.budget,
            )
            for n, client in enumerate(self.clients)
        ]
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.listener: Listener | None = None

    def start(self, *, listen: bool = True) -> Replica:
        if listen:
            self.listener = wake_on_notify(self.store, [w.wake for w in self.workers])
        self.threads = [start_in_thread(worker, self.stop) for worker in self.workers]
        return self

    def close(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.wake.set()
        for thread in self.threads:
            thread.join(timeout=30)
        if self.listener is not None:
            self.listener.stop()
        for client in self.clients:
            client.close()
        self.store.close()


def deploy(n: int, *, entities: int = 25) -> tuple[str, dict[str, Any], str]:
    """The n-th of a burst of finished deploys: its dedupe key, outbox payload and group."""
    event = DeployEvent(
        source="github",
        repository=f"acme/svc-{n % entities}",
        event="deployment_status",
        ref=DeployRef("deployment", str(1000 + n)),
        status=Status.SUCCEEDED,
        timestamp=T0 + timedelta(seconds=n),
        title=f"Deploy {n}",
        sha=f"{n:040x}",
        environment="production",
    )
    route = Route((f"svc-{n % entities}",), "production", "default")
    payload = {
        "event": check_deploy(event).stored,
        "entities": list(route.entities),
        "rule": route.rule,
    }
    return f"github:hook:{n}", payload, deploy_key(event)


def enqueue_burst(store: Store, count: int) -> None:
    for n in range(count):
        key, payload, group = deploy(n)
        store.enqueue(
            dedupe_key=key,
            source="github",
            event_name="deployment_status",
            payload=payload,
            now=utcnow(),
            group_key=group,
        )


def most_in_any_window(times: list[float], window: float) -> int:
    """The most of ``times`` (sorted) that fall in any closed interval ``window`` long."""
    return max((bisect.bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


# -- the token bucket's arithmetic (pure) --------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "counted_at", "paused_until", "now", "expected"),
    [
        pytest.param(0.0, 100.0, 0.0, 100.0, 0.0, id="nothing-elapsed"),
        pytest.param(0.0, 100.0, 0.0, 100.5, 7.5, id="half-a-second-at-15"),
        pytest.param(3.0, 100.0, 0.0, 160.0, 15.0, id="capped-at-capacity"),
        pytest.param(-4.0, 100.0, 0.0, 100.2, -1.0, id="debt-paid-first"),
        pytest.param(5.0, 100.0, 0.0, 99.0, 5.0, id="clock-behind-refills-nothing"),
        pytest.param(0.0, 100.0, 130.0, 120.0, 0.0, id="paused-refills-nothing"),
        pytest.param(0.0, 100.0, 130.0, 130.4, 6.0, id="refills-from-the-pause-end"),
    ],
)
def test_refill(
    tokens: float, counted_at: float, paused_until: float, now: float, expected: float
) -> None:
    rate, most = 900 / 60, bucket.capacity(900)
    got = bucket.refill(tokens, counted_at, paused_until, now, rate=rate, capacity=most)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("per_minute", "expected"),
    [
        pytest.param(900, 15.0, id="default"),
        pytest.param(60, 1.0, id="one-a-second"),
        pytest.param(10, 1.0, id="at-least-one"),
    ],
)
def test_capacity_is_one_seconds_worth(per_minute: int, expected: float) -> None:
    assert bucket.capacity(per_minute) == expected
    # A full bucket spent at once plus a minute's refill stays under Cortex's ~1000/min.
    assert bucket.capacity(900) + 900 < 1000


def test_draws_in_debt_are_spaced_one_rate_apart() -> None:
    tokens, counted_at, rate = 2.0, 100.0, 10.0
    waits = []
    for _ in range(5):
        tokens, counted_at = bucket.take(tokens, counted_at, 0.0, 100.0, rate=rate, capacity=2)
        waits.append(bucket.wait_seconds(tokens, 0.0, 100.0, rate=rate))
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])


def test_a_pause_empties_the_bucket_and_keeps_the_later_end() -> None:
    assert bucket.pause(12.0, 0.0, 150.0) == (0.0, 150.0)
    assert bucket.pause(-3.0, 150.0, 140.0) == (-3.0, 150.0)  # debt kept, the later end kept
    # Waiting for a pause to end, then for one's turn behind those queued before.
    assert bucket.wait_seconds(-2.0, 150.0, 140.0, rate=10.0) == pytest.approx(10.2)


# -- wiring ----------------------------------------------------------------------------------


def test_workers_draw_on_one_budget_and_send_does_not(tmp_path: Path, cortex: FakeCortex) -> None:
    replica = Replica(f"sqlite:///{tmp_path / 'b.db'}", cortex, workers=2)
    try:
        budget = replica.budget
        assert isinstance(budget, SharedBudget) and budget.per_minute == 900
        assert [w.budget for w in replica.workers] == [budget, budget]
        assert [w.batch for w in replica.workers] == [1, 1]  # see relay.BATCH
        # The workers' clients draw on it: with the fleet paused, a request never leaves.
        budget.rate_limited(30.0)
        for worker in replica.workers:
            with pytest.raises(CortexRetryable, match="cortex asked every client to wait"):
                list(worker.deliverer.client.iter_deploys("payments-api", max_pages=1))
        assert cortex.received == []
    finally:
        replica.close()
    off = Replica(f"sqlite:///{tmp_path / 'c.db'}", cortex, requests_per_minute=0)
    try:
        assert off.budget is None and off.workers[0].batch == BATCH
        list(off.workers[0].deliverer.client.iter_deploys("payments-api", max_pages=1))
    finally:
        off.close()
    # `send` and the Action build their client plainly: no budget, so no database.
    with CortexClient(cortex.url, TOKEN) as plain:
        list(plain.iter_deploys("payments-api", max_pages=1))
    assert len(cortex.received) == 2


def test_a_long_wait_hands_the_event_back_instead_of_outliving_its_lease(url: str) -> None:
    with Store.from_url(url) as store:
        budget = SharedBudget(
            store, 600, clock=utcnow, max_wait_seconds=1.0, max_pause_seconds=300.0
        )
        budget.rate_limited(30.0)
        assert budget.pause_left() == pytest.approx(30.0, abs=0.5)
        with pytest.raises(CortexRetryable, match="next turn in 30") as caught:
            budget.before_request()
        assert str(caught.value).startswith("cortex asked every client to wait (429 Retry-After)")
        assert caught.value.retry_after == pytest.approx(30.1, abs=0.5)
        budget.rate_limited(3600.0)  # capped, as the worker caps Retry-After
        assert budget.pause_left() == pytest.approx(300.0, abs=0.5)


# -- wake-ups across processes -------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=NO_PG)
def test_a_worker_of_another_replica_wakes_at_once(tmp_path: Path, cortex: FakeCortex) -> None:
    with database_url("postgresql", tmp_path) as url, Store.from_url(url) as receiver:
        replica = Replica(url, cortex, idle_poll=30.0).start()
        try:
            assert replica.listener is not None
            assert replica.listener.listening.wait(5)
            time.sleep(0.5)  # the worker has looked once, found nothing, and sleeps 30s
            assert cortex.received == []
            key, payload, group = deploy(1)
            queued_at = time.monotonic()
            receiver.enqueue(
                dedupe_key=key,
                source="github",
                event_name="deployment_status",
                payload=payload,
                now=utcnow(),
                group_key=group,
            )
            wait_until(lambda: len(cortex.requests_to("POST")) == 1, timeout=5)
            first = cortex.received[0]
            assert first.at - queued_at < 0.2, f"woke after {first.at - queued_at:.3f}s"
        finally:
            replica.close()


# -- one budget for the fleet --------------------------------------------------------------


def test_a_429_pauses_every_replica(url: str, cortex: FakeCortex) -> None:
    with Store.from_url(url) as store:
        enqueue_burst(store, 12)
    cortex.inject(Fault.rate_limited(retry_after=1.5, method="POST"))
    replicas = [Replica(url, cortex, requests_per_minute=6000) for _ in range(2)]
    try:
        for replica in replicas:
            replica.start()
        wait_until(lambda: replicas[0].store.counts()[DELIVERED] == 12, timeout=20)
    finally:
        for replica in replicas:
            replica.close()
    limited = next(r for r in cortex.received if r.method == "POST")
    after = [r.at - limited.at for r in cortex.received if r.at > limited.at]
    # Requests already on their way before the pause was stored (a few milliseconds, a
    # request or two per worker) may land; after them, nothing until Retry-After has passed.
    assert [gap for gap in after if 0.25 <= gap < 1.4] == [], after[:8]
    assert_each_deploy_once(cortex, 12)


def assert_each_deploy_once(cortex: FakeCortex, count: int) -> None:
    """Cortex holds one record per deploy of the burst, by idempotency key: none lost or doubled."""
    made = Counter(key_of(record) for record in cortex.all_deploys())
    expected = {deploy_key_of(n): 1 for n in range(count)}
    assert made == Counter(expected)


def deploy_key_of(n: int) -> str:
    entity = f"svc-{n % 25}"
    return f"github:acme/{entity}:deployment:{1000 + n}:production:{entity}"


@pytest.mark.slow
def test_a_burst_drains_once_within_the_budget(url: str, cortex: FakeCortex) -> None:
    # 5,000 deploys queued during an outage, scaled down: 300 deploys make 325 requests (the
    # creates, and one history read per entity); at 3,000/min they take ~7s.
    count, per_minute = 300, 3000
    with Store.from_url(url) as store:
        enqueue_burst(store, count)
    replicas = [Replica(url, cortex, workers=2, requests_per_minute=per_minute) for _ in range(2)]
    started = time.monotonic()
    try:
        for replica in replicas:
            replica.start()
        wait_until(lambda: len(cortex.received) >= 200, timeout=30)
        cortex.inject(Fault.rate_limited(retry_after=1, method="POST"))  # Cortex disagrees once
        wait_until(lambda: replicas[0].store.counts()[DELIVERED] == count, timeout=60)
    finally:
        for replica in replicas:
            replica.close()
    took = time.monotonic() - started
    assert_each_deploy_once(cortex, count)
    assert len(cortex.requests_to("POST")) == count + 1  # and the one answered 429
    times = sorted(r.at for r in cortex.received)
    rate, most = per_minute / 60, bucket.capacity(per_minute)
    for window in (0.5, 1.0, 5.0, 10.0):
        # +4: a request drawn just before another replica's, sent just after it.
        assert most_in_any_window(times, window) <= most + rate * window + 4, window
    assert took < (len(times) - most) / rate + 1 + 5  # the pause, and a little slack
    print(f"{count} deploys, {len(times)} requests in {took:.1f}s ({len(times) / took:.0f}/s)")
