"""The periodic reconcile with any number of replicas: its lease and the key's reservation.

The lease is timed by the database's clock on PostgreSQL, renewed at every page, checked
before each write; each missing deploy is reserved in the store before it is recorded. On
both databases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest

from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex
from bridge.model import DeployEvent, DeployRef, Status
from bridge.store import Store
from bridge.store.schema import sync_leases
from bridge.sync.engine import Options, Reconciler, Verdict
from bridge.sync.periodic import LeaseLost, ReconcileLease
from bridge.sync.reader import Found, Window
from tests.conftest import TOKEN

NOW = datetime.now(timezone.utc).replace(microsecond=0)
INTERVAL = 15 * 60


def event(n: int) -> DeployEvent:
    return DeployEvent(
        source="github",
        repository="acme/api",
        event="deployment_status",
        ref=DeployRef("deployment", str(n)),
        status=Status.SUCCEEDED,
        timestamp=NOW - timedelta(hours=1, minutes=-n),
        title=f"Deploy {n}",
        sha=f"{n:040x}",
        environment="production",
    )


class Pages:
    """A source of two pages of deploys; ``between`` runs after the first page."""

    name = "github:acme/api"

    def __init__(self, between: Callable[[], None]) -> None:
        self.between = between

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        yield Found(event(1))
        yield Found(None, resume="page-2")
        self.between()
        yield Found(event(2))
        yield Found(None, resume="end")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = Store.from_url(db_url)
    yield made
    made.close()


def reconciler(store: Store, client: CortexClient, lease: ReconcileLease) -> Reconciler:
    config = parse_config({"cortex": {"url": "http://unused.invalid"}})
    return Reconciler(
        config,
        client,
        store=store,
        clock=lambda: NOW,
        options=Options(restart=True),
        lease=lease,
        owner=lease.owner,
    )


def test_a_lease_renewed_at_every_page_outlasts_a_slow_source(
    store: Store, cortex: FakeCortex
) -> None:
    mine = ReconcileLease(store, owner="replica-1", seconds=INTERVAL, clock=lambda: NOW)
    other = ReconcileLease(store, owner="replica-2", seconds=INTERVAL, clock=lambda: NOW)
    assert mine.take()

    def between() -> None:  # the page renewed the lease: the other replica still waits
        assert not other.take()

    with CortexClient(cortex.url, TOKEN) as client:
        rows = list(reconciler(store, client, mine).sync(Pages(between), Window(NOW, NOW)))
    assert [r.verdict for r in rows] == [Verdict.RECORDED, Verdict.RECORDED]


def test_a_replica_that_lost_its_lease_stops_before_its_next_write(
    store: Store, cortex: FakeCortex
) -> None:
    mine = ReconcileLease(store, owner="replica-1", seconds=INTERVAL, clock=lambda: NOW)
    assert mine.take()

    def taken_over() -> None:  # this replica stalled past its lease; another took it
        with store.sync.db.transaction(write=True) as conn:
            conn.execute(
                sync_leases.update().values(owner="replica-2", lease_until=NOW + timedelta(hours=1))
            )

    with CortexClient(cortex.url, TOKEN) as client, pytest.raises(LeaseLost):
        list(reconciler(store, client, mine).sync(Pages(taken_over), Window(NOW, NOW)))
    assert [r.method for r in cortex.received if r.method != "GET"] == ["POST"]  # page 1 only
    assert len(cortex.all_deploys()) == 1


def test_a_missing_deploy_is_reserved_before_it_is_recorded(
    store: Store, cortex: FakeCortex
) -> None:
    key = "github:acme/api:deployment:1:production:api"
    assert store.sync.reserve(key, owner="replica-2", now=NOW, seconds=INTERVAL)
    mine = ReconcileLease(store, owner="replica-1", seconds=INTERVAL, clock=lambda: NOW)
    assert mine.take()
    with CortexClient(cortex.url, TOKEN) as client:
        rows = list(reconciler(store, client, mine).sync(Pages(lambda: None), Window(NOW, NOW)))
    # Not in Cortex yet, so not "present" (a sync killed while it wrote once left a deploy
    # reported present, and never recorded until the reservation lapsed): failed, and why.
    verdict, detail = next((r.verdict, r.detail) for r in rows)
    assert verdict is Verdict.FAILED
    assert detail.startswith("another sync holds its key (a reservation lapses after ")
    assert len(cortex.all_deploys()) == 1  # deploy 2 only: deploy 1 is the other's to record
    # A recorded key is never reserved again; a reservation whose replica died lapses after
    # the interval (by the database's clock on PostgreSQL: the short one here).
    other = "github:acme/api:deployment:2:production:api"
    later = NOW + timedelta(seconds=INTERVAL + 1)
    assert not store.sync.reserve(other, owner="replica-2", now=later, seconds=INTERVAL)
    if store.sync.db.is_postgresql:  # the database's time: not an interval later yet
        assert not store.sync.reserve(key, owner="replica-1", now=later, seconds=INTERVAL)
        assert store.sync.reserve(key, owner="replica-1", now=NOW, seconds=0)
    else:
        assert store.sync.reserve(key, owner="replica-1", now=later, seconds=INTERVAL)


@pytest.mark.postgres
def test_on_postgresql_the_lease_runs_by_the_database_clock(store: Store) -> None:
    if not store.sync.db.is_postgresql:
        pytest.skip("SQLite is one machine's file: its clock is the caller's")
    assert store.sync.take_lease("reconcile", owner="a", now=NOW, seconds=INTERVAL)
    # A replica whose clock runs a day fast does not see the lease as lapsed.
    fast = NOW + timedelta(days=1)
    assert not store.sync.take_lease("reconcile", owner="b", now=fast, seconds=INTERVAL)
    # A replica whose clock runs a day slow does not keep a lease the database says is gone.
    assert store.sync.take_lease("short", owner="a", now=NOW, seconds=0.2)
    slow = NOW - timedelta(days=1)

    deadline = time.monotonic() + 5
    while not store.sync.take_lease("short", owner="b", now=slow, seconds=INTERVAL):
        assert time.monotonic() < deadline, "the database never let the short lease lapse"
        time.sleep(0.05)
    assert not store.sync.holds("short", owner="a", now=slow)
