"""The store on SQLite (always) and PostgreSQL (with BRIDGE_TEST_POSTGRES_URL): one behaviour."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.errors import ConfigError
from bridge.rollback import PastDeploy
from bridge.store import (
    DEAD,
    DELIVERED,
    DELIVERING,
    QUEUED,
    RETRYING,
    SCHEMA_VERSION,
    Delivery,
    Draw,
    Record,
    Store,
    StoreError,
)
from bridge.store import schema as store_schema
from bridge.store.engine import create_engine
from bridge.store.listener import APPLICATION_NAME
from tests.conftest import wait_until
from tests.databases import NO_PG, PG_URL, database_url

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def url(db_url: str) -> str:
    """The database under test: conftest's ``db_url``, a fresh one per backend."""
    return db_url


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """A fresh store on the backend under test."""
    with Store.from_url(url) as opened:
        yield opened


def enqueue(store: Store, key: str, *, now: datetime = T0, **payload: Any) -> int:
    """Enqueue one event, asserting it was new; its id."""
    delivery_id, created = store.enqueue(
        dedupe_key=key, source="github", event_name="deployment_status", payload=payload, now=now
    )
    assert created
    return delivery_id


def run_threads(count: int, target: Any) -> None:
    """Run ``target(index)`` on ``count`` threads started together; re-raise any failure."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def body(index: int) -> None:
        try:
            start.wait()
            target(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


# -- enqueue and de-duplication ------------------------------------------------------------


def test_enqueue_stores_the_event_and_a_repeat_changes_nothing(store: Store) -> None:
    first = enqueue(store, "github:1:aaa", entity="payments-api")
    again = store.enqueue(
        dedupe_key="github:1:aaa",
        source="github",
        event_name="deployment_status",
        payload={"entity": "other"},
        now=T0 + timedelta(hours=1),
    )
    assert again == (first, False)
    delivery = store.get(first)
    assert delivery is not None
    assert (delivery.status, delivery.attempts, delivery.payload) == (
        QUEUED,
        0,
        {"entity": "payments-api"},
    )
    assert delivery.received_at == delivery.next_attempt_at == T0
    assert delivery.received_at.tzinfo == timezone.utc
    assert enqueue(store, "github:1:bbb") > first
    assert store.get(first + 100) is None


def test_concurrent_enqueue_of_one_key_makes_one_row(url: str, store: Store) -> None:
    stores = [Store.from_url(url) for _ in range(8)]
    outcomes: list[tuple[int, bool]] = []

    def send(index: int) -> None:
        outcomes.append(
            stores[index].enqueue(
                dedupe_key="github:1:same",
                source="github",
                event_name="deployment",
                payload={"thread": index},
                now=T0,
            )
        )

    try:
        run_threads(8, send)
    finally:
        for opened in stores:
            opened.close()
    assert len({delivery_id for delivery_id, _ in outcomes}) == 1
    assert sorted(created for _, created in outcomes) == [False] * 7 + [True]
    assert store.counts()[QUEUED] == 1


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 513, id="too-long"),
        pytest.param("k\x00", id="nul"),
    ],
)
def test_enqueue_refuses_unusable_keys(store: Store, key: str) -> None:
    with pytest.raises(ValueError, match="dedupe key"):
        store.enqueue(dedupe_key=key, source="github", event_name="ping", payload={}, now=T0)


def test_each_row_is_its_object_by_name() -> None:
    # Store.claim and the readers make a Delivery of a row by its column names (Delivery(**row)),
    # the records a Record likewise (idempotency_key read as "key"): a column added to the one
    # must be added to the other, or every read fails at once.
    assert {f.name for f in dataclasses.fields(Delivery)} == set(store_schema.deliveries.c.keys())
    assert {f.name for f in dataclasses.fields(Record)} == {
        "key" if c.name == "idempotency_key" else c.name for c in store_schema.records.c
    }


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.enqueue(
            dedupe_key="k", source="github", event_name="ping", payload={}, now=datetime(2026, 1, 1)
        )


# -- claims and leases ---------------------------------------------------------------------


def test_claim_leases_due_rows_oldest_first(store: Store) -> None:
    ids = [enqueue(store, f"k{i}") for i in range(3)]
    later = enqueue(store, "later", now=T0 + timedelta(minutes=5))
    first = store.claim(owner="w1", now=T0, lease_seconds=30, limit=2)
    assert [d.id for d in first] == ids[:2]
    assert all(d.status == DELIVERING and d.lease_owner == "w1" for d in first)
    assert all(d.lease_until == T0 + timedelta(seconds=30) for d in first)
    assert [d.id for d in store.claim(owner="w2", now=T0, lease_seconds=30, limit=5)] == ids[2:]
    assert store.claim(owner="w3", now=T0, lease_seconds=30, limit=5) == []
    at_later = store.claim(owner="w3", now=T0 + timedelta(minutes=5), lease_seconds=30, limit=5)
    assert [d.id for d in at_later] == [*ids, later]  # the expired leases too, oldest first


def test_an_expired_lease_is_taken_over_and_the_old_owner_loses(store: Store) -> None:
    delivery_id = enqueue(store, "k")
    store.claim(owner="killed", now=T0, lease_seconds=30)
    assert store.claim(owner="w2", now=T0 + timedelta(seconds=29), lease_seconds=30) == []
    [taken] = store.claim(owner="w2", now=T0 + timedelta(seconds=30), lease_seconds=30)
    assert (taken.id, taken.lease_owner) == (delivery_id, "w2")
    assert not store.settle(delivery_id, "delivered", owner="killed", results={}, now=T0)
    assert store.settle(delivery_id, "delivered", owner="w2", results={"a": {"uuid": "u1"}}, now=T0)
    done = store.get(delivery_id)
    assert done is not None
    # Attempts count claims: the killed owner's unfinished one counts too.
    assert (done.status, done.attempts, done.results) == (DELIVERED, 2, {"a": {"uuid": "u1"}})
    assert (done.lease_owner, done.lease_until, done.next_attempt_at) == (None, None, None)
    assert done.delivered_at == T0


@pytest.mark.parametrize(
    "finish",
    [
        pytest.param(
            lambda s, i, o: s.settle(i, "delivered", owner=o, results={}, now=T0), id="delivered"
        ),
        pytest.param(
            lambda s, i, o: s.settle(
                i, "retrying", owner=o, error="boom", next_attempt_at=T0, results={}, now=T0
            ),
            id="retrying",
        ),
        pytest.param(
            lambda s, i, o: s.settle(i, "dead", owner=o, error="boom", results={}, now=T0),
            id="dead",
        ),
    ],
)
def test_a_stolen_lease_cannot_finish(store: Store, finish: Any) -> None:
    delivery_id = enqueue(store, "k")
    store.claim(owner="slow", now=T0, lease_seconds=1)
    store.claim(owner="fast", now=T0 + timedelta(seconds=2), lease_seconds=60)
    assert finish(store, delivery_id, "slow") is False
    assert finish(store, delivery_id + 1, "fast") is False  # no such row
    still = store.get(delivery_id)
    assert still is not None
    assert (still.status, still.lease_owner, still.attempts) == (DELIVERING, "fast", 2)
    assert finish(store, delivery_id, "fast") is True
    assert finish(store, delivery_id, "fast") is False  # no longer leased


@pytest.mark.parametrize(
    ("outcome", "error", "again"),
    [
        pytest.param(DELIVERING, None, None, id="not-an-end"),
        pytest.param(DELIVERED, "boom", None, id="delivered-with-an-error"),
        pytest.param(DEAD, None, None, id="dead-without-an-error"),
        pytest.param(RETRYING, "503", None, id="retrying-never"),
        pytest.param(DEAD, "400", T0, id="dead-yet-retried"),
    ],
)
def test_an_attempt_settles_only_as_an_end_that_holds(
    store: Store, outcome: str, error: str | None, again: datetime | None
) -> None:
    """A retrying row with no next attempt time would never be claimed again: refused."""
    delivery_id = enqueue(store, "k")
    store.claim(owner="w", now=T0, lease_seconds=30)
    with pytest.raises(ValueError, match=r"cannot settle|retrying exactly"):
        store.settle(
            delivery_id, outcome, owner="w", results={}, now=T0, error=error, next_attempt_at=again
        )
    kept = store.get(delivery_id)
    assert kept is not None and (kept.status, kept.lease_owner) == (DELIVERING, "w")


def test_two_claimers_never_get_the_same_row(url: str, store: Store) -> None:
    all_ids = {enqueue(store, f"k{i}") for i in range(200)}
    stores = [Store.from_url(url), Store.from_url(url)]
    claimed: list[list[int]] = [[], []]

    def drain(index: int) -> None:
        while batch := stores[index].claim(owner=f"w{index}", now=T0, lease_seconds=600, limit=3):
            for delivery in batch:
                claimed[index].append(delivery.id)
                assert stores[index].settle(
                    delivery.id, "delivered", owner=f"w{index}", results={}, now=T0
                )

    try:
        run_threads(2, drain)
    finally:
        for opened in stores:
            opened.close()
    assert not set(claimed[0]) & set(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == sorted(all_ids)
    assert store.counts()[DELIVERED] == 200


def test_reschedule_waits_until_the_next_attempt(store: Store) -> None:
    delivery_id = enqueue(store, "k")
    store.claim(owner="w", now=T0, lease_seconds=30)
    retry_at = T0 + timedelta(minutes=1)
    assert store.settle(
        delivery_id,
        "retrying",
        owner="w",
        error="cortex answered 503",
        next_attempt_at=retry_at,
        results={"a": {"uuid": "u1"}},
        now=T0,
    )
    waiting = store.get(delivery_id)
    assert waiting is not None
    assert (waiting.status, waiting.attempts, waiting.last_error) == (
        RETRYING,
        1,
        "cortex answered 503",
    )
    assert waiting.results == {"a": {"uuid": "u1"}}
    assert store.claim(owner="w", now=retry_at - timedelta(seconds=1), lease_seconds=30) == []
    [again] = store.claim(owner="w", now=retry_at, lease_seconds=30)
    assert (again.id, again.attempts, again.results) == (delivery_id, 2, {"a": {"uuid": "u1"}})


def test_a_dead_letter_can_be_retried(store: Store) -> None:
    delivery_id = enqueue(store, "k")
    store.claim(owner="w", now=T0, lease_seconds=30)
    error = "cortex said 400: \x00\ud800" + "x" * 5000  # bytes PostgreSQL would refuse
    assert store.settle(delivery_id, "dead", owner="w", error=error, results={}, now=T0)
    dead = store.get(delivery_id)
    assert dead is not None
    assert dead.status == DEAD
    assert dead.last_error is not None
    assert dead.last_error.startswith("cortex said 400: \ufffd?x")
    assert len(dead.last_error) == 2000
    assert store.claim(owner="w", now=T0 + timedelta(days=1), lease_seconds=30) == []
    later = T0 + timedelta(hours=2)
    assert store.retry(delivery_id, now=later)
    queued = store.get(delivery_id)
    assert queued is not None
    assert (queued.status, queued.attempts, queued.next_attempt_at) == (QUEUED, 1, later)
    [claimed] = store.claim(owner="w", now=later, lease_seconds=30)
    assert claimed.id == delivery_id
    assert not store.retry(delivery_id, now=later)  # being delivered
    store.settle(delivery_id, "delivered", owner="w", results={}, now=later)
    assert not store.retry(delivery_id, now=later)  # delivered
    assert not store.retry(delivery_id + 1, now=later)  # absent


# -- the admin view and metrics ------------------------------------------------------------


def test_list_pages_newest_first_with_a_cursor(store: Store) -> None:
    ids = [enqueue(store, f"k{i}") for i in range(7)]
    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        page, cursor = store.list_deliveries(limit=3, after=cursor)
        pages.append([d.id for d in page])
        if cursor is None:
            break
    assert pages == [ids[6:3:-1], ids[3:0:-1], ids[:1]]
    assert store.list_deliveries(limit=7) == (store.list_deliveries(limit=10)[0], None)


def test_list_filters_by_status(store: Store) -> None:
    ids = [enqueue(store, f"k{i}") for i in range(5)]
    for delivery in store.claim(owner="w", now=T0, lease_seconds=30, limit=3):
        store.settle(delivery.id, "delivered", owner="w", results={}, now=T0)
    page, cursor = store.list_deliveries(status=DELIVERED, limit=2)
    assert ([d.id for d in page], cursor) == ([ids[2], ids[1]], ids[1])
    page, cursor = store.list_deliveries(status=DELIVERED, limit=2, after=cursor)
    assert ([d.id for d in page], cursor) == ([ids[0]], None)
    assert [d.id for d in store.list_deliveries(status=QUEUED)[0]] == [ids[4], ids[3]]
    assert store.list_deliveries(status=DEAD) == ([], None)
    with pytest.raises(ValueError, match="unknown status 'lost'"):
        store.list_deliveries(status="lost")
    with pytest.raises(ValueError, match="limit"):
        store.list_deliveries(limit=0)


def test_counts_and_the_age_of_the_oldest_waiting_event(store: Store) -> None:
    assert store.oldest_due_age(T0) is None
    assert store.counts() == dict.fromkeys([QUEUED, DELIVERING, DELIVERED, RETRYING, DEAD], 0)
    enqueue(store, "old", now=T0)
    enqueue(store, "new", now=T0 + timedelta(seconds=30))
    enqueue(store, "leased", now=T0 + timedelta(seconds=40))
    assert store.oldest_due_age(T0 + timedelta(seconds=90)) == 90.0
    store.claim(owner="w", now=T0 + timedelta(seconds=40), lease_seconds=30, limit=1)
    assert store.oldest_due_age(T0 + timedelta(seconds=90)) == 60.0
    assert store.counts() == {QUEUED: 2, DELIVERING: 1, DELIVERED: 0, RETRYING: 0, DEAD: 0}
    store.ping()


# -- records and history -------------------------------------------------------------------


def test_records_are_upserted_and_deleted(store: Store) -> None:
    assert store.records.get("k") is None
    store.records.save("k", entity="payments-api", cortex_uuid="u1", state="in_progress", now=T0)
    later = T0 + timedelta(minutes=3)
    store.records.save("k", entity="payments-api", cortex_uuid="u1", state="succeeded", now=later)
    record = store.records.get("k")
    assert record is not None
    assert (record.key, record.entity, record.cortex_uuid, record.state, record.updated_at) == (
        "k",
        "payments-api",
        "u1",
        "succeeded",
        later,
    )
    assert store.records.delete("k")
    assert not store.records.delete("k")
    assert store.records.get("k") is None


def test_history_is_ordered_by_the_deploys_own_times(store: Store) -> None:
    def add(sha: str, minutes: int, key: str, environment: str | None = "production") -> bool:
        return store.records.add_history(
            entity="payments-api",
            environment=environment,
            sha=sha,
            deployed_at=T0 + timedelta(minutes=minutes),
            key=key,
        )

    assert add("b" * 40, 10, "k2")
    assert add("a" * 40, 0, "k1")  # arrived late, happened first
    assert add("c" * 40, 20, "k3")
    assert not add("d" * 40, 30, "k3")  # the same deploy again: unchanged
    assert add("e" * 40, 5, "k4", environment="staging")
    assert add("f" * 40, 5, "k5", environment=None)
    assert store.records.history("payments-api", "production") == [
        PastDeploy("a" * 40, T0),
        PastDeploy("b" * 40, T0 + timedelta(minutes=10)),
        PastDeploy("c" * 40, T0 + timedelta(minutes=20)),
    ]
    assert store.records.history("payments-api", None) == [
        PastDeploy("f" * 40, T0 + timedelta(minutes=5))
    ]
    assert store.records.history("other", "production") == []


# -- schema and durability -----------------------------------------------------------------


def test_creating_the_schema_twice_is_harmless(url: str, store: Store) -> None:
    delivery_id = enqueue(store, "k")
    with Store.from_url(url) as second, Store.from_url(url, create=False) as third:
        assert second.get(delivery_id) == third.get(delivery_id) == store.get(delivery_id)
    engine = create_engine(url)
    with engine.connect() as conn:
        versions = conn.execute(sa.select(store_schema.schema_version.c.version)).all()
    engine.dispose()
    assert [tuple(row) for row in versions] == [(SCHEMA_VERSION,)]


def test_an_older_schema_is_upgraded_keeping_queued_rows(
    url: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivery_id = enqueue(store, "k")
    set_version(url, SCHEMA_VERSION - 1)
    steps: list[int] = []
    monkeypatch.setitem(store_schema.UPGRADES, SCHEMA_VERSION, lambda conn: steps.append(1))
    with Store.from_url(url) as upgraded:
        assert steps == [1]
        delivery = upgraded.get(delivery_id)
        assert delivery is not None
        assert delivery.status == QUEUED
    with Store.from_url(url):
        assert steps == [1]  # already at SCHEMA_VERSION: not run again


def test_a_newer_or_missing_schema_is_refused(url: str, store: Store) -> None:
    set_version(url, SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer than this bridge"):
        Store.from_url(url)
    with pytest.raises(StoreError, match="newer than this bridge"):
        Store.from_url(url, create=False)


def test_opening_without_create_needs_a_schema(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no bridge schema"):
        Store.from_url(f"sqlite:///{tmp_path / 'empty.db'}", create=False)


def set_version(url: str, version: int) -> None:
    """Stamp the database with another schema version, as an older or newer bridge would."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(store_schema.schema_version.update().values(version=version))
    engine.dispose()


def make_version_1(url: str) -> None:
    """Turn a fresh database into what schema version 1 made: no budget, the old claim index."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE bridge_rate_budgets"))
        conn.execute(sa.text("DROP TABLE bridge_history_seeded"))  # version 3's
        for table in ("bridge_sync_progress", "bridge_sync_recorded", "bridge_sync_leases"):
            conn.execute(sa.text(f"DROP TABLE {table}"))  # version 3
        for table in ("bridge_attempts", "bridge_turned_away", "bridge_reconcile_runs"):
            conn.execute(sa.text(f"DROP TABLE {table}"))  # version 4
        conn.execute(sa.text("ALTER TABLE bridge_deliveries DROP COLUMN received"))  # version 4
        conn.execute(sa.text("ALTER TABLE bridge_records DROP COLUMN started_at"))  # version 5
        for column in ("retried_at", "retried_after"):  # version 5
            conn.execute(sa.text(f"ALTER TABLE bridge_deliveries DROP COLUMN {column}"))
        conn.execute(sa.text("DROP INDEX ix_bridge_deliveries_next_attempt_at_id"))
        conn.execute(
            sa.text(
                "CREATE INDEX ix_bridge_deliveries_status_next_attempt_at "
                "ON bridge_deliveries (status, next_attempt_at)"
            )
        )
        conn.execute(store_schema.schema_version.update().values(version=1))
    engine.dispose()


def test_version_1_is_upgraded_by_many_replicas_at_once_keeping_every_row(
    url: str, store: Store
) -> None:
    ids = [enqueue(store, f"k{i}", n=i) for i in range(6)]
    store.claim(owner="w", now=T0, lease_seconds=600, limit=4)
    store.settle(ids[0], "delivered", owner="w", results={"a": {"uuid": "u0"}}, now=T0)
    retry_at = T0 + timedelta(minutes=1)
    store.settle(
        ids[1], "retrying", owner="w", error="503", next_attempt_at=retry_at, results={}, now=T0
    )
    store.settle(ids[2], "dead", owner="w", error="400", results={}, now=T0)
    store.records.save("k", entity="payments-api", cortex_uuid="u0", state="succeeded", now=T0)
    before = [store.get(i) for i in ids]
    make_version_1(url)
    replicas: list[Store] = []
    run_threads(4, lambda i: replicas.append(Store.from_url(url)))  # replicas start together
    try:
        assert [replicas[0].get(i) for i in ids] == before  # ids[3] is still leased to "w"
        kept = replicas[1].records.get("k")
        assert kept is not None and kept.started_at is None  # version 5's column, empty
        [[version]] = _query(url, sa.select(store_schema.schema_version.c.version))
        assert version == SCHEMA_VERSION == 5
        assert replicas[2].records.history_seeded("svc", None) is False  # version 3's table
        assert replicas[0].sync.sync_progress("github:acme/api") is None  # version 3's table
        assert replicas[0].journal.turned_away() == []  # version 4's tables
        assert replicas[0].journal.reconcile_runs() == []
        assert replicas[0].browse.attempts(ids[0]) == []
        indexes = _index_names(url, "bridge_deliveries")
        assert "ix_bridge_deliveries_next_attempt_at_id" in indexes
        assert "ix_bridge_deliveries_status_next_attempt_at" not in indexes
        later = T0 + timedelta(minutes=2)
        claimed = replicas[2].claim(owner="w2", now=later, lease_seconds=30, limit=10)
        assert [d.id for d in claimed] == [ids[4], ids[5], ids[1]]  # longest due first
        assert replicas[3].budget.draw(now=later, per_minute=60).wait_seconds == 0
    finally:
        for replica in replicas:
            replica.close()


def _query(url: str, statement: Any) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = [tuple(row) for row in conn.execute(statement)]
    engine.dispose()
    return found


def _index_names(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        names = {index["name"] or "" for index in sa.inspect(conn).get_indexes(table)}
    engine.dispose()
    return names


def test_claim_takes_the_longest_due_first(store: Store) -> None:
    old = enqueue(store, "old", now=T0)
    store.claim(owner="w", now=T0, lease_seconds=30)
    retry_at = T0 + timedelta(minutes=2)
    store.settle(
        old, "retrying", owner="w", error="503", next_attempt_at=retry_at, results={}, now=T0
    )
    new = enqueue(store, "new", now=T0 + timedelta(minutes=1))
    claimed = store.claim(owner="w", now=retry_at, lease_seconds=30, limit=2)
    assert [d.id for d in claimed] == [new, old]  # due since 10:01, then since 10:02


def test_a_due_time_is_set_exactly_while_a_delivery_can_be_claimed(store: Store) -> None:
    # The claim reads only rows with a due time (its index leaves the others out): every
    # transition must keep this so, or a settled row would be claimed again.
    ids = [enqueue(store, f"k{i}") for i in range(5)]
    seen: list[tuple[str, bool]] = []

    def look() -> None:
        for delivery_id in ids:
            found = store.get(delivery_id)
            assert found is not None
            seen.append((found.status, found.next_attempt_at is not None))

    look()
    store.claim(owner="w", now=T0, lease_seconds=30, limit=4)
    look()
    store.settle(ids[0], "delivered", owner="w", results={}, now=T0)
    store.settle(ids[1], "retrying", owner="w", error="503", next_attempt_at=T0, results={}, now=T0)
    store.settle(ids[2], "dead", owner="w", error="400", results={}, now=T0)
    look()
    store.retry(ids[2], now=T0)
    look()
    assert {status for status, _ in seen} == {QUEUED, DELIVERING, DELIVERED, RETRYING, DEAD}
    for status, has_due_time in seen:
        assert has_due_time == (status in (QUEUED, RETRYING, DELIVERING)), status


# -- the shared rate budget ----------------------------------------------------------------


def test_replicas_drawing_at_once_share_one_budget(url: str) -> None:
    per_minute, draws = 600, 40  # 10 a second, a bucket of 10; two replicas of 40 draws
    replicas = [Store.from_url(url) for _ in range(2)]
    sends: list[float] = []

    def draw(index: int) -> None:
        for _ in range(draws):
            now = datetime.now(timezone.utc)
            drawn = replicas[index].budget.draw(now=now, per_minute=per_minute)
            sends.append(now.timestamp() + drawn.wait_seconds)

    try:
        run_threads(2, draw)
    finally:
        for replica in replicas:
            replica.close()
    sends.sort()
    for first, start in enumerate(sends):
        for window in (0.1, 0.5, 1.0, 3.0):
            inside = bisect.bisect_right(sends, start + window) - first
            # The bucket, plus what refills in the window; +1: the draws' clocks are read
            # just before their turns, so neighbours may be a few milliseconds closer.
            assert inside <= 10 + 10 * window + 1, (start, window, inside)
    # And no slower than it need be: the first 10 at once, then 10 a second.
    assert sends[-1] - sends[0] == pytest.approx((2 * draws - 10) / 10, abs=0.3)


def test_a_pause_holds_every_replica_until_it_ends(url: str, store: Store) -> None:
    now = datetime.now(timezone.utc)
    until = now + timedelta(seconds=30)
    assert store.budget.paused_until() is None
    assert store.budget.draw(now=now, per_minute=600).wait_seconds == 0
    with Store.from_url(url) as other:
        other.budget.pause(until=until)
        other.budget.pause(until=now + timedelta(seconds=10))  # never shortens a pause
        drawn = store.budget.draw(now=now, per_minute=600)
        assert drawn.paused_until is not None
        assert abs((drawn.paused_until - until).total_seconds()) < 1e-3
        # The pause, then a turn behind the bucket emptied by the 429 (0.1s at 10/s).
        assert drawn.wait_seconds == pytest.approx(30.1, abs=1e-3)
        paused_until = other.budget.paused_until()
        assert paused_until is not None and abs((paused_until - until).total_seconds()) < 1e-3
        # Refilled from the pause's end only: a second after it, the debt is paid, 9 left.
        after = until + timedelta(seconds=1)
        assert other.budget.draw(now=after, per_minute=600) == Draw(0.0, None)


def test_per_minute_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="per_minute"):
        store.budget.draw(now=T0, per_minute=0)


# -- wake-ups across processes (PostgreSQL) ------------------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(not PG_URL, reason=NO_PG)
def test_listeners_hear_each_new_event_on_commit_and_come_back_after_a_restart(
    tmp_path: Path,
) -> None:
    wakes: list[float] = []
    with database_url("postgresql", tmp_path) as url, Store.from_url(url) as store:
        listener = store.listen(lambda: wakes.append(time.monotonic()))
        assert listener is not None
        try:
            wait_until(lambda: len(wakes) == 1)  # connected: one wake for what it missed
            delivery_id = enqueue(store, "k")
            wait_until(lambda: len(wakes) == 2)
            store.enqueue(dedupe_key="k", source="github", event_name="x", payload={}, now=T0)
            [claimed] = store.claim(owner="w", now=T0, lease_seconds=30)
            store.settle(claimed.id, "dead", owner="w", error="400", results={}, now=T0)
            time.sleep(0.3)
            assert len(wakes) == 2  # a repeat, a claim, a dead letter: nothing new to do
            assert store.retry(delivery_id, now=T0)
            wait_until(lambda: len(wakes) == 3)
            # PostgreSQL restarting looks like this to the listener: its backend is gone.
            killed = _query(
                PG_URL,
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = :name AND pid = :pid"
                ).bindparams(name=APPLICATION_NAME, pid=listener.backend_pid),
            )
            assert killed == [(True,)]
            wait_until(lambda: len(wakes) == 4, timeout=10)  # reconnected, woke once more
            enqueue(store, "after-restart")
            wait_until(lambda: len(wakes) == 5)
        finally:
            listener.stop()
        assert not listener.listening.is_set()


def test_sqlite_has_no_listener(store: Store, url: str) -> None:
    if url.startswith("sqlite"):
        assert store.listen(lambda: None) is None


def test_a_closed_database_reopens_with_its_queued_rows(url: str) -> None:
    with Store.from_url(url) as first:
        ids = [enqueue(first, f"k{i}", entity=f"e{i}") for i in range(3)]
    with Store.from_url(url) as reopened:
        claimed = reopened.claim(owner="w", now=T0, lease_seconds=30, limit=10)
    assert [(d.id, d.payload) for d in claimed] == [
        (i, {"entity": f"e{n}"}) for n, i in enumerate(ids)
    ]


CHILD = """
import sys
from datetime import datetime, timezone
from bridge.store import Store
store = Store.from_url(sys.argv[1])
delivery_id, _ = store.enqueue(dedupe_key="killed", source="github", event_name="deployment",
                               payload={"n": 1}, now=datetime.now(timezone.utc))
print(delivery_id, flush=True)
sys.stdin.read()  # wait here, holding the database open, until killed
"""


def test_an_acknowledged_event_survives_sigkill(url: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)  # right after enqueue returned: no clean close
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with Store.from_url(url) as reopened:
        delivery = reopened.get(int(line))
    assert delivery is not None
    assert (delivery.dedupe_key, delivery.status, delivery.payload) == ("killed", QUEUED, {"n": 1})


# -- URLs and failures ---------------------------------------------------------------------


def test_an_in_memory_database_is_shared_by_threads() -> None:
    with Store.from_url("sqlite://") as store:
        run_threads(4, lambda i: enqueue(store, f"k{i}"))
        assert store.counts()[QUEUED] == 4


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("mysql://root:hunter2@db/bridge", id="mysql"),
        pytest.param("not a url", id="garbage"),
    ],
)
def test_unsupported_urls_are_a_config_error_without_the_password(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Store.from_url(bad)
    assert caught.value.key == "database"
    assert "hunter2" not in str(caught.value)


def test_an_unreachable_database_fails_ping_with_a_store_error() -> None:
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    store = Store(create_engine("postgresql://bridge:secret@127.0.0.1:1/bridge"))
    with pytest.raises(StoreError, match="database error") as caught:
        store.ping()
    assert "secret" not in str(caught.value)
    store.close()


def test_events_of_one_deploy_are_delivered_one_at_a_time_in_order(store: Store) -> None:
    ids = [
        store.enqueue(
            dedupe_key=f"g-{n}",
            source="github",
            event_name="deployment_status",
            payload={"n": n},
            now=T0,
            group_key=group,
        )[0]
        for n, group in enumerate(["deploy-1", "deploy-1", "deploy-2", None, None])
    ]
    first = store.claim(owner="a", now=T0, lease_seconds=60, limit=10)
    # The second event of deploy-1 waits for the first; ungrouped events never wait.
    assert [d.id for d in first] == [ids[0], ids[2], ids[3], ids[4]]
    assert store.claim(owner="b", now=T0, lease_seconds=60, limit=10) == []
    assert store.settle(
        ids[0], "retrying", owner="a", error="503", next_attempt_at=T0, results={}, now=T0
    )
    # Still unsettled (retrying): the sibling keeps waiting, the first is claimable again.
    assert [d.id for d in store.claim(owner="b", now=T0, lease_seconds=60, limit=10)] == [ids[0]]
    assert store.settle(ids[0], "delivered", owner="b", results={}, now=T0)
    assert [d.id for d in store.claim(owner="c", now=T0, lease_seconds=60, limit=10)] == [ids[1]]


def test_opening_without_create_leaves_no_file_behind(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(StoreError, match="no bridge schema"):
        Store.from_url(f"sqlite:///{path}", create=False)
    assert not path.exists()


def test_seeded_history_is_kept_once_and_read_in_deploy_order(url: str) -> None:
    older = PastDeploy("a" * 40, T0 - timedelta(days=2))
    newer = PastDeploy("b" * 40, T0 - timedelta(days=1))
    with Store.from_url(url) as store:
        pairs = [("cortex:b", newer), ("cortex:a", older)]
        seed = functools.partial(store.records.seed_history, entity="svc", now=T0)
        seed(environment="production", deploys=pairs)
        seed(environment="production", deploys=pairs)  # again
        seed(environment="production", deploys=[])
        assert store.records.history("svc", "production") == [older, newer]
        assert store.records.history("svc", "staging") == []
        # An environment whose listing showed nothing counts as read: it is not read again.
        assert not store.records.history_seeded("svc", "staging")
        seed(environment="staging", deploys=[])
        assert store.records.history_seeded("svc", "staging")


def test_records_another_path_made_are_adopted_unless_the_relay_has_its_own(url: str) -> None:
    with Store.from_url(url) as store:
        store.records.save("k1", entity="svc", cortex_uuid="mine", state="succeeded", now=T0)
        made = [("k1", "theirs-1", "succeeded"), ("k2", "theirs-2", "in_progress")]
        store.records.seed_history(entity="svc", environment=None, deploys=[], made=made, now=T0)
        mine, theirs = store.records.get("k1"), store.records.get("k2")
        assert mine is not None and mine.cortex_uuid == "mine"
        assert theirs is not None and (theirs.cortex_uuid, theirs.state) == (
            "theirs-2",
            "in_progress",
        )
