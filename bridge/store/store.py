"""The Store: the delivery outbox, the Cortex records made, and each entity's deploy history.

Every write is one short transaction committed before the method returns, so a receiver
that answers 202 after :meth:`Store.enqueue` has the event on disk (see engine.py for the
SQLite settings that make that hold). The same statements run on SQLite and PostgreSQL.

Waking idle workers: on PostgreSQL, :meth:`Store.enqueue` and :meth:`Store.retry` NOTIFY
``WAKE_CHANNEL`` in their own transaction (so only once the row is committed), and one
listener per process (:meth:`Store.listen`) wakes that process's workers, whichever replica
took the event. SQLite has no signal between processes: a worker is woken at once by its own
process's receiver, and finds what a sibling process (``serve --workers 2``) took on its idle
poll. On one host's local file an empty claim writes nothing and is cheap, so a poll a second
costs less than machinery to signal across processes would.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping

from bridge.rollback import PastDeploy
from bridge.store import bucket
from bridge.store.batching import GroupCommit, WriterLock
from bridge.store.engine import CONNECT_TIMEOUT_SECONDS, WRITE_OPTION, create_engine, is_memory
from bridge.store.listener import Listener
from bridge.store.schema import (
    DEAD,
    DELIVERED,
    DELIVERING,
    QUEUED,
    RETRYING,
    STATUSES,
    Delivery,
    Record,
    StoreError,
    check_schema,
    deliveries,
    ensure_schema,
    history,
    rate_budgets,
    records,
)
from bridge.store.sqlite_outbox import SqliteOutbox

# Claimable once next_attempt_at has passed (for DELIVERING that is the lease's end).
_CLAIMABLE = (QUEUED, RETRYING, DELIVERING)
_WAITING = (QUEUED, RETRYING)
# What Store.enqueue sets; the other columns keep their defaults until a worker claims it.
ENQUEUED_COLUMNS = (
    "dedupe_key",
    "source",
    "event_name",
    "group_key",
    "received_at",
    "status",
    "attempts",
    "next_attempt_at",
    "payload",
    "results",
    "updated_at",
)
# Same limit on both backends: PostgreSQL refuses index entries over ~2.7 kB.
MAX_KEY_LENGTH = 512
# last_error is for people reading the admin API, not a log: keep rows small.
MAX_ERROR_LENGTH = 2000
# PostgreSQL's NOTIFY channel for "an event is due now". Channels are per database, not per
# schema: bridges in two schemas of one database wake each other's workers, for nothing.
WAKE_CHANNEL = "bridge_deliveries"
# The one budget there is today: requests to Cortex, which limits each client.
CORTEX_BUDGET = "cortex"


@dataclass(frozen=True)
class Draw:
    """One request taken from a shared rate budget: when it may be sent."""

    wait_seconds: float  # 0: at once
    paused_until: datetime | None  # set while Cortex has asked every client to wait


class Store:
    """The bridge's durable state on one database; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # An in-memory SQLite database is one shared connection: take turns on it.
        self._serial = threading.Lock() if is_memory(engine) else None
        # A SQLite file: its writers, in every process, queue for one lock (batching.py).
        self._writer = (
            WriterLock(f"{engine.url.database}-bridge.lock")
            if engine.dialect.name == "sqlite" and not is_memory(engine)
            else None
        )
        # On a SQLite file the outbox INSERT runs on the driver's connection (sqlite_outbox.py).
        self._sqlite_outbox = (
            SqliteOutbox(engine, self._writer, ENQUEUED_COLUMNS) if self._writer else None
        )
        self._enqueues: GroupCommit[Any, tuple[int, bool]] = GroupCommit(
            self._sqlite_outbox.write if self._sqlite_outbox else self._enqueue_batch
        )
        # Built once: SQLAlchemy caches its compiled form, and a statement built anew per
        # event costs more than the INSERT itself.
        self._insert_delivery = (
            self._insert(deliveries)
            .on_conflict_do_nothing(index_elements=[deliveries.c.dedupe_key])
            .returning(deliveries.c.id)
        )
        self._first_delivery = sa.select(deliveries.c.id).where(
            deliveries.c.dedupe_key == sa.bindparam("dedupe_key")
        )

    @classmethod
    def from_url(cls, url: str, *, create: bool = True) -> Store:
        """Open the database at ``url``; create or upgrade its schema unless ``create=False``."""
        engine = create_engine(url)
        path = engine.url.database
        if (
            not create
            and engine.dialect.name == "sqlite"
            and not is_memory(engine)
            and path
            and not os.path.exists(path)
        ):
            # Connecting would create an empty file (and a WAL): inspection must not write.
            engine.dispose()
            raise StoreError("database has no bridge schema: start the bridge once to create it")
        store = cls(engine)
        try:
            with store._transaction(write=create) as conn:
                (ensure_schema if create else check_schema)(conn)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> Store:
        """Use the store in a ``with`` block that closes it."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the store on leaving the ``with`` block."""
        self.close()

    # -- the outbox -------------------------------------------------------------------------

    def enqueue(
        self,
        *,
        dedupe_key: str,
        source: str,
        event_name: str,
        payload: Mapping[str, Any],
        now: datetime,
        group_key: str | None = None,
    ) -> tuple[int, bool]:
        """Store an accepted event durably: (id, True), or (first id, False) for a repeat."""
        # PostgreSQL text cannot hold NUL while SQLite's can: refuse it on both.
        if not dedupe_key or len(dedupe_key) > MAX_KEY_LENGTH or "\x00" in dedupe_key:
            raise ValueError(f"dedupe key must be 1-{MAX_KEY_LENGTH} characters: {dedupe_key!r}")
        now = _aware(now)
        row = {
            "dedupe_key": dedupe_key,
            "source": source,
            "event_name": event_name,
            "group_key": group_key,
            "received_at": now,
            "status": QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
            "payload": _encode(payload),
            "results": "{}",
            "updated_at": now,
        }
        # Threads storing events at the same moment share one transaction (batching.py).
        if self._sqlite_outbox is not None:
            return self._enqueues.submit(self._sqlite_outbox.prepare(row))
        return self._enqueues.submit(row)

    def _enqueue_batch(self, rows: Sequence[dict[str, Any]]) -> list[tuple[int, bool]]:
        # The unique key decides, atomically, under concurrent threads and processes; ON
        # CONFLICT rather than catching IntegrityError keeps every GitHub redelivery from
        # writing an ERROR into PostgreSQL's log and aborting the transaction.
        stored: list[tuple[int, bool]] = []
        with self._transaction(write=True) as conn:
            for row in rows:
                new_id = conn.execute(self._insert_delivery, row).scalar_one_or_none()
                if new_id is not None:
                    stored.append((int(new_id), True))
                    continue
                first = conn.execute(self._first_delivery, {"dedupe_key": row["dedupe_key"]})
                stored.append((int(first.scalar_one()), False))
            if any(created for _, created in stored):
                self._notify(conn)
        return stored

    def claim(
        self, *, owner: str, now: datetime, lease_seconds: float, limit: int = 1
    ) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries to ``owner``, the longest due first."""
        if lease_seconds <= 0 or limit < 1:
            raise ValueError("lease_seconds and limit must be positive")
        now = _aware(now)
        until = now + timedelta(seconds=lease_seconds)
        # Due rows, and rows whose owner's lease ran out (it died): both have their
        # next_attempt_at passed. SKIP LOCKED lets PostgreSQL replicas claim side by side;
        # SQLite ignores it and relies on BEGIN IMMEDIATE, which admits one writer.
        older = deliveries.alias("older")
        waits_for_older = (
            sa.exists()
            .where(older.c.group_key == deliveries.c.group_key)
            .where(older.c.id < deliveries.c.id)
            .where(older.c.status.in_(_CLAIMABLE))
        )
        # Only the claim index's own range and order (see schema.py): the first due rows are
        # its first entries, so a claim reads about ``limit`` of them whether 10 or 100,000
        # events wait. No status test here: next_attempt_at is set exactly while a delivery
        # waits or is leased, and a status test invites PostgreSQL to combine the status
        # index, then sort every due row (it misjudges how the two columns go together). The
        # UPDATE below checks the status all the same.
        due = (
            sa.select(deliveries.c.id)
            .where(deliveries.c.next_attempt_at <= now)
            .where(~waits_for_older)
            .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._transaction(write=True) as conn:
            ids = list(conn.execute(due).scalars())
            if not ids:
                return []
            leased = (
                deliveries.update()
                .where(deliveries.c.id.in_(ids), deliveries.c.status.in_(_CLAIMABLE))
                .values(
                    status=DELIVERING,
                    # Counted when an attempt starts, not when it ends: an event that kills
                    # its worker every time still runs out of attempts and is dead-lettered.
                    attempts=deliveries.c.attempts + 1,
                    lease_owner=owner,
                    lease_until=until,
                    next_attempt_at=until,
                    updated_at=now,
                )
                .returning(*deliveries.c)
            )
            rows = conn.execute(leased).mappings().all()
        turn = {id: n for n, id in enumerate(ids)}  # RETURNING keeps no order: the claim's
        return sorted((_delivery(row) for row in rows), key=lambda d: turn[d.id])

    def complete(self, id: int, *, owner: str, results: Mapping[str, Any], now: datetime) -> bool:
        """Mark a leased delivery delivered; False when ``owner`` no longer holds it."""
        now = _aware(now)
        return self._finish(
            id,
            owner,
            status=DELIVERED,
            next_attempt_at=None,
            delivered_at=now,
            results=_encode(results),
            updated_at=now,
        )

    def reschedule(
        self,
        id: int,
        *,
        owner: str,
        error: str,
        next_attempt_at: datetime,
        results: Mapping[str, Any],
        now: datetime,
    ) -> bool:
        """Put a leased delivery back for another try; False when ``owner`` no longer holds it."""
        return self._finish(
            id,
            owner,
            status=RETRYING,
            next_attempt_at=_aware(next_attempt_at),
            last_error=_clip(error),
            results=_encode(results),
            updated_at=_aware(now),
        )

    def dead_letter(
        self, id: int, *, owner: str, error: str, results: Mapping[str, Any], now: datetime
    ) -> bool:
        """Give up on a leased delivery; False when ``owner`` no longer holds it."""
        return self._finish(
            id,
            owner,
            status=DEAD,
            next_attempt_at=None,
            last_error=_clip(error),
            results=_encode(results),
            updated_at=_aware(now),
        )

    def _finish(self, id: int, owner: str, **values: Any) -> bool:
        # The owner check makes a worker whose lease was taken over (it stalled, another
        # worker claimed the row) unable to overwrite the newer attempt's outcome. An expired
        # lease nobody took yet still counts: the work was done, recording it saves a resend.
        finish = (
            deliveries.update()
            .where(
                deliveries.c.id == id,
                deliveries.c.status == DELIVERING,
                deliveries.c.lease_owner == owner,
            )
            .values(lease_owner=None, lease_until=None)
            .values(values)
        )
        with self._transaction(write=True) as conn:
            return conn.execute(finish).rowcount == 1

    def retry(self, id: int, *, now: datetime) -> bool:
        """Queue a dead or retrying delivery to be tried now; False if delivered, leased, absent."""
        now = _aware(now)
        requeue = (
            deliveries.update()
            .where(deliveries.c.id == id, deliveries.c.status.in_((DEAD, *_WAITING)))
            .values(status=QUEUED, next_attempt_at=now, updated_at=now)
        )
        with self._transaction(write=True) as conn:
            requeued = conn.execute(requeue).rowcount == 1
            if requeued:
                self._notify(conn)
            return requeued

    def get(self, id: int) -> Delivery | None:
        """One delivery by id."""
        with self._transaction(write=False) as conn:
            row = conn.execute(deliveries.select().where(deliveries.c.id == id)).mappings().first()
        return _delivery(row) if row is not None else None

    def list_deliveries(
        self, *, status: str | None = None, limit: int = 50, after: int | None = None
    ) -> tuple[list[Delivery], int | None]:
        """A page of deliveries, newest first, with ids below ``after``; and the next cursor."""
        if limit < 1:
            raise ValueError(f"limit must be positive: {limit!r}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        # One row past the page tells whether there is a next page without a COUNT.
        page = deliveries.select().order_by(deliveries.c.id.desc()).limit(limit + 1)
        if status is not None:
            page = page.where(deliveries.c.status == status)
        if after is not None:
            page = page.where(deliveries.c.id < after)
        with self._transaction(write=False) as conn:
            rows = conn.execute(page).mappings().all()
        found = [_delivery(row) for row in rows[:limit]]
        return found, (found[-1].id if len(rows) > limit else None)

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each status (every status present, zeros included)."""
        per_status = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
        counted = dict.fromkeys(STATUSES, 0)
        with self._transaction(write=False) as conn:
            counted.update({status: int(n) for status, n in conn.execute(per_status)})
        return counted

    def oldest_due_age(self, now: datetime) -> float | None:
        """Seconds since the oldest queued or retrying delivery was received; None if none."""
        oldest = sa.select(sa.func.min(deliveries.c.received_at)).where(
            deliveries.c.status.in_(_WAITING)
        )
        with self._transaction(write=False) as conn:
            received: datetime | None = conn.execute(oldest).scalar_one()
        return None if received is None else (_aware(now) - received).total_seconds()

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with self._transaction(write=False) as conn:
            conn.execute(sa.select(1))

    def listen(self, wake: Callable[[], None]) -> Listener | None:
        """Call ``wake`` whenever any process queues an event (PostgreSQL); None on SQLite."""
        if self._engine.dialect.name != "postgresql":
            return None
        args, params = self._engine.dialect.create_connect_args(self._engine.url)
        params = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **params}
        return Listener(args, params, channel=WAKE_CHANNEL, wake=wake).start()

    def _notify(self, conn: Connection) -> None:
        # Sent when the transaction commits, never for one rolled back (PostgreSQL NOTIFY
        # docs): a woken worker always finds the row. Identical notifications within one
        # transaction are folded into one.
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_notify(WAKE_CHANNEL, "")))

    # -- the shared rate budget --------------------------------------------------------------

    def draw(self, *, now: datetime, per_minute: int, name: str = CORTEX_BUDGET) -> Draw:
        """Take one request from the budget every replica shares; when it may be sent."""
        if per_minute < 1:
            raise ValueError(f"per_minute must be positive: {per_minute!r}")
        at = _aware(now).timestamp()
        rate, most = per_minute / 60.0, bucket.capacity(per_minute)
        least, greatest = self._least_greatest()
        row = rate_budgets.c
        left, counted_at = bucket.take(
            row.tokens,
            row.counted_at,
            row.paused_until,
            at,
            rate=rate,
            capacity=most,
            least=least,
            greatest=greatest,
        )
        # One statement, with the arithmetic inside it: the row lock PostgreSQL takes for the
        # UPDATE is what makes draws from every replica count one after the other.
        drawn = (
            rate_budgets.update()
            .where(row.name == name)
            .values(tokens=left, counted_at=counted_at)
            .returning(row.tokens, row.paused_until)
        )
        with self._transaction(write=True) as conn:
            found = self._on_budget(conn, drawn, name=name, tokens=most, at=at)
        tokens, paused_until = float(found.tokens), float(found.paused_until)
        return Draw(
            wait_seconds=bucket.wait_seconds(tokens, paused_until, at, rate=rate),
            paused_until=_from_epoch(paused_until) if paused_until > at else None,
        )

    def pause_budget(self, *, until: datetime, name: str = CORTEX_BUDGET) -> None:
        """Stop every replica's requests until ``until`` (Cortex answered 429)."""
        at = _aware(until).timestamp()
        least, greatest = self._least_greatest()
        row = rate_budgets.c
        tokens, paused_until = bucket.pause(
            row.tokens, row.paused_until, at, least=least, greatest=greatest
        )
        paused = (
            rate_budgets.update()
            .where(row.name == name)
            .values(tokens=tokens, paused_until=paused_until)
            .returning(row.name)
        )
        with self._transaction(write=True) as conn:
            self._on_budget(conn, paused, name=name, tokens=0.0, at=at)

    def budget_paused_until(self, *, name: str = CORTEX_BUDGET) -> datetime | None:
        """Until when Cortex asked every replica to wait; None if it never did."""
        paused = sa.select(rate_budgets.c.paused_until).where(rate_budgets.c.name == name)
        with self._transaction(write=False) as conn:
            found = conn.execute(paused).scalar_one_or_none()
        return _from_epoch(found) if found else None

    def _on_budget(
        self, conn: Connection, update: sa.Update, *, name: str, tokens: float, at: float
    ) -> sa.Row[Any]:
        """Run ``update`` on the budget's row, making the row first if this is its first use."""
        found = conn.execute(update).first()
        if found is not None:
            return found
        seed = (
            self._insert(rate_budgets)
            .values(name=name, tokens=tokens, counted_at=at, paused_until=0.0)
            .on_conflict_do_nothing(index_elements=[rate_budgets.c.name])
        )
        conn.execute(seed)
        return conn.execute(update).one()

    def _least_greatest(self) -> tuple[bucket.Pick, bucket.Pick]:
        """The two-argument min and max of SQL: LEAST/GREATEST, or SQLite's scalar min/max."""
        if self._engine.dialect.name == "postgresql":
            return sa.func.least, sa.func.greatest
        return sa.func.min, sa.func.max

    # -- Cortex records (lifecycle mode) ----------------------------------------------------

    def get_record(self, key: str) -> Record | None:
        """The Cortex record made for an idempotency key."""
        with self._transaction(write=False) as conn:
            row = conn.execute(records.select().where(records.c.idempotency_key == key))
            found = row.mappings().first()
        if found is None:
            return None
        return Record(
            key=found["idempotency_key"],
            entity=found["entity"],
            cortex_uuid=found["cortex_uuid"],
            state=found["state"],
            updated_at=found["updated_at"],
        )

    def save_record(
        self, key: str, *, entity: str, cortex_uuid: str, state: str, now: datetime
    ) -> None:
        """Create or replace the Cortex record for an idempotency key."""
        values: dict[str, Any] = {
            "entity": entity,
            "cortex_uuid": cortex_uuid,
            "state": state,
            "updated_at": _aware(now),
        }
        upsert = (
            self._insert(records)
            .values(idempotency_key=key, **values)
            .on_conflict_do_update(index_elements=[records.c.idempotency_key], set_=values)
        )
        with self._transaction(write=True) as conn:
            conn.execute(upsert)

    def delete_record(self, key: str) -> bool:
        """Forget the Cortex record for an idempotency key; False if there was none."""
        with self._transaction(write=True) as conn:
            gone = conn.execute(records.delete().where(records.c.idempotency_key == key))
            return gone.rowcount == 1

    # -- deploy history (rollback detection) ------------------------------------------------

    def history(self, entity: str, environment: str | None) -> list[PastDeploy]:
        """An entity's deploys to an environment, oldest first by the deploys' own times."""
        past = (
            sa.select(history.c.sha, history.c.deployed_at)
            .where(history.c.entity == entity, history.c.environment == (environment or ""))
            .order_by(history.c.deployed_at, history.c.idempotency_key)
        )
        with self._transaction(write=False) as conn:
            return [PastDeploy(sha=sha, timestamp=at) for sha, at in conn.execute(past)]

    def add_history(
        self, *, entity: str, environment: str | None, sha: str, deployed_at: datetime, key: str
    ) -> bool:
        """Add a deploy Cortex accepted to the history; False if ``key`` was already there."""
        add = (
            self._insert(history)
            .values(
                idempotency_key=key,
                entity=entity,
                environment=environment or "",
                sha=sha,
                deployed_at=_aware(deployed_at),
            )
            .on_conflict_do_nothing(index_elements=[history.c.idempotency_key])
            .returning(history.c.idempotency_key)
        )
        with self._transaction(write=True) as conn:
            return conn.execute(add).first() is not None

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction, committed on leaving; database failures raised as StoreError."""
        serial: AbstractContextManager[Any] = self._serial or nullcontext()
        writer: AbstractContextManager[Any] = (write and self._writer) or nullcontext()
        with serial:
            try:
                with self._engine.connect() as conn:
                    conn.execution_options(**{WRITE_OPTION: write})
                    # Checked out first: only the transaction itself holds up other writers.
                    with writer, conn.begin():
                        yield conn
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(_describe(exc)) from exc

    def _insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ON CONFLICT; both dialects spell it the same way."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)


def _aware(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is a bug in the caller, not a time to guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware UTC time")
    return moment.astimezone(timezone.utc)


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def _clip(error: str) -> str:
    """An error text any backend stores: no NUL, no lone surrogates, MAX_ERROR_LENGTH at most."""
    # Error texts quote Cortex's answers, which may hold bytes PostgreSQL refuses; a failed
    # reschedule would leave the row leased until its lease ran out.
    text = error.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:MAX_ERROR_LENGTH]


def _encode(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=True)


def _delivery(row: RowMapping) -> Delivery:
    values = dict(row)
    values["payload"] = json.loads(values["payload"])
    values["results"] = json.loads(values["results"])
    return Delivery(**values)


def _describe(exc: sa.exc.SQLAlchemyError) -> str:
    # The driver's first line says what went wrong; SQLAlchemy's own text would add the
    # statement and its parameters, which hold payloads.
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"database error: {lines[0] if lines else type(cause).__name__}"
