"""The Store: the delivery outbox, and the Store put together from its parts.

:class:`Store` is the outbox (below), with its parts beside it on the same database object
(base.py's :class:`Database`: the engine and the transactions they all run in):
``store.records``, Cortex records and deploy history (records.py), and ``store.budget``, the
shared rate budget (budget.py).

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
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from bridge.store.base import Database, aware
from bridge.store.batching import GroupCommit
from bridge.store.browse import Browse
from bridge.store.budget import Budgets
from bridge.store.engine import CONNECT_TIMEOUT_SECONDS, create_engine, is_memory
from bridge.store.journal import Journal
from bridge.store.listener import Listener
from bridge.store.records import Records, RecordWrite
from bridge.store.schema import (
    DEAD,
    DELIVERED,
    DELIVERING,
    QUEUED,
    RETRYING,
    STATUSES,
    Delivery,
    StoreError,
    attempts,
    check_schema,
    deliveries,
    delivery_of,
    ensure_schema,
)
from bridge.store.sqlite_outbox import SqliteOutbox
from bridge.store.sync_state import SyncState

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
    "received",
)
# Same limit on both backends: PostgreSQL refuses index entries over ~2.7 kB.
MAX_KEY_LENGTH = 512
# last_error is for people reading the admin API, not a log: keep rows small.
MAX_ERROR_LENGTH = 2000
# PostgreSQL's NOTIFY channel for "an event is due now". Channels are per database, not per
# schema: bridges in two schemas of one database wake each other's workers, for nothing.
WAKE_CHANNEL = "bridge_deliveries"


class Store:
    """The bridge's durable state on one database; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.db = Database(engine)
        self.records = Records(self.db)
        self.budget = Budgets(self.db)
        self.sync = SyncState(self.db)
        self.journal = Journal(self.db)
        self.browse = Browse(self.db)
        # Built once: SQLAlchemy caches its compiled form, and a statement built anew per
        # event costs more than the INSERT itself.
        self._insert_delivery = (
            self.db.insert(deliveries)
            .values({name: sa.bindparam(name) for name in ENQUEUED_COLUMNS})
            .on_conflict_do_nothing(index_elements=[deliveries.c.dedupe_key])
            .returning(deliveries.c.id)
        )
        self._first_delivery = sa.select(deliveries.c.id).where(
            deliveries.c.dedupe_key == sa.bindparam("dedupe_key")
        )
        # On a SQLite file the same statements run on the driver's connection
        # (sqlite_outbox.py).
        self._sqlite_outbox = (
            SqliteOutbox(engine, self.db.writer, self._insert_delivery, self._first_delivery)
            if self.db.writer
            else None
        )
        self._enqueues: GroupCommit[Any, tuple[int, bool]] = GroupCommit(
            self._sqlite_outbox.write if self._sqlite_outbox else self._enqueue_batch
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
            with store.db.transaction(write=create) as conn:
                (ensure_schema if create else check_schema)(conn)
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close every pooled connection (and, on SQLite, the writers' lock file)."""
        self.db.close()

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        self.db.ping()

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
        received: str | None = None,
    ) -> tuple[int, bool]:
        """Store an accepted event durably: (id, True), or (first id, False) for a repeat.

        ``received``: the webhook as received, redacted (the console shows it).
        """
        # PostgreSQL text cannot hold NUL while SQLite's can: refuse it on both.
        if not dedupe_key or len(dedupe_key) > MAX_KEY_LENGTH or "\x00" in dedupe_key:
            raise ValueError(f"dedupe key must be 1-{MAX_KEY_LENGTH} characters: {dedupe_key!r}")
        now = aware(now)
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
            "received": received,
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
        with self.db.transaction(write=True) as conn:
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
        now = aware(now)
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
        with self.db.transaction(write=True) as conn:
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

    def hold(
        self,
        id: int,
        *,
        owner: str,
        attempt: int,
        results: Mapping[str, Any],
        now: datetime,
        lease_seconds: float,
        writes: Sequence[RecordWrite] = (),
    ) -> bool:
        """Renew ``owner``'s lease and keep the progress made; False when the lease is lost.

        One UPDATE by primary key: the worker's fence before each Cortex write, and its
        heartbeat after each entity. ``attempt`` (the attempt count its claim returned) is the
        fencing token: a worker whose lease another attempt took can never renew it again.
        ``writes``: the records the progress made, kept with it, only while the lease is held.
        """
        now = aware(now)
        until = now + timedelta(seconds=lease_seconds)
        renew = (
            deliveries.update()
            .where(
                deliveries.c.id == id,
                deliveries.c.status == DELIVERING,
                deliveries.c.lease_owner == owner,
                deliveries.c.attempts == attempt,
            )
            .values(lease_until=until, next_attempt_at=until, results=_encode(results))
        )
        with self.db.transaction(write=True) as conn:
            return self._with_writes(conn, conn.execute(renew).rowcount == 1, writes, now)

    def complete(
        self,
        id: int,
        *,
        owner: str,
        results: Mapping[str, Any],
        now: datetime,
        writes: Sequence[RecordWrite] = (),
    ) -> bool:
        """Mark a leased delivery delivered; False when ``owner`` no longer holds it.

        ``writes`` (here and in :meth:`reschedule`, :meth:`dead_letter`): the records the
        attempt made, kept in the same transaction as its outcome.
        """
        now = aware(now)
        return self._finish(
            id,
            owner,
            writes,
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
        writes: Sequence[RecordWrite] = (),
    ) -> bool:
        """Put a leased delivery back for another try; False when ``owner`` no longer holds it."""
        return self._finish(
            id,
            owner,
            writes,
            status=RETRYING,
            next_attempt_at=aware(next_attempt_at),
            last_error=_clip(error),
            results=_encode(results),
            updated_at=aware(now),
        )

    def dead_letter(
        self,
        id: int,
        *,
        owner: str,
        error: str,
        results: Mapping[str, Any],
        now: datetime,
        writes: Sequence[RecordWrite] = (),
    ) -> bool:
        """Give up on a leased delivery; False when ``owner`` no longer holds it."""
        return self._finish(
            id,
            owner,
            writes,
            status=DEAD,
            next_attempt_at=None,
            last_error=_clip(error),
            results=_encode(results),
            updated_at=aware(now),
        )

    def _finish(self, id: int, owner: str, writes: Sequence[RecordWrite], **values: Any) -> bool:
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
            .returning(deliveries.c.attempts)
        )
        with self.db.transaction(write=True) as conn:
            attempt = conn.execute(finish).scalar_one_or_none()
            if attempt is not None:
                # The attempt's line in the delivery's history (the console's "attempts").
                conn.execute(
                    self.db.insert(attempts)
                    .values(
                        delivery_id=id,
                        attempt=attempt,
                        outcome=values["status"],
                        finished_at=values["updated_at"],
                        error=values.get("last_error"),
                        results=values["results"],
                    )
                    .on_conflict_do_nothing(
                        index_elements=[attempts.c.delivery_id, attempts.c.attempt]
                    )
                )
            return self._with_writes(conn, attempt is not None, writes, values["updated_at"])

    def _with_writes(
        self, conn: Connection, held: bool, writes: Sequence[RecordWrite], now: datetime
    ) -> bool:
        # Only while the lease is held: a worker that lost it leaves its writes to the next
        # owner, who finds the entity marked as sending and looks its record up in Cortex.
        if held and writes:
            self.records.apply(conn, writes, now=now)
        return held

    def retry(self, id: int, *, now: datetime) -> bool:
        """Queue a dead or retrying delivery to be tried now; False if delivered, leased, absent."""
        now = aware(now)
        requeue = (
            deliveries.update()
            .where(deliveries.c.id == id, deliveries.c.status.in_((DEAD, *_WAITING)))
            .values(status=QUEUED, next_attempt_at=now, updated_at=now)
        )
        with self.db.transaction(write=True) as conn:
            requeued = conn.execute(requeue).rowcount == 1
            if requeued:
                self._notify(conn)
            return requeued

    def get(self, id: int) -> Delivery | None:
        """One delivery by id."""
        with self.db.transaction(write=False) as conn:
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
        with self.db.transaction(write=False) as conn:
            rows = conn.execute(page).mappings().all()
        found = [_delivery(row) for row in rows[:limit]]
        return found, (found[-1].id if len(rows) > limit else None)

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each status (every status present, zeros included)."""
        per_status = sa.select(deliveries.c.status, sa.func.count()).group_by(deliveries.c.status)
        counted = dict.fromkeys(STATUSES, 0)
        with self.db.transaction(write=False) as conn:
            counted.update({status: int(n) for status, n in conn.execute(per_status)})
        return counted

    def oldest_due_age(self, now: datetime) -> float | None:
        """Seconds since the oldest queued or retrying delivery was received; None if none."""
        oldest = sa.select(sa.func.min(deliveries.c.received_at)).where(
            deliveries.c.status.in_(_WAITING)
        )
        with self.db.transaction(write=False) as conn:
            received: datetime | None = conn.execute(oldest).scalar_one()
        return None if received is None else (aware(now) - received).total_seconds()

    def listen(self, wake: Callable[[], None]) -> Listener | None:
        """Call ``wake`` whenever any process queues an event (PostgreSQL); None on SQLite."""
        if not self.db.is_postgresql:
            return None
        engine = self.db.engine
        args, params = engine.dialect.create_connect_args(engine.url)
        params = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, **params}
        return Listener(args, params, channel=WAKE_CHANNEL, wake=wake).start()

    def _notify(self, conn: Connection) -> None:
        # Sent when the transaction commits, never for one rolled back (PostgreSQL NOTIFY
        # docs): a woken worker always finds the row. Identical notifications within one
        # transaction are folded into one.
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_notify(WAKE_CHANNEL, "")))


def _clip(error: str) -> str:
    """An error text any backend stores: no NUL, no lone surrogates, MAX_ERROR_LENGTH at most."""
    # Error texts quote Cortex's answers, which may hold bytes PostgreSQL refuses; a failed
    # reschedule would leave the row leased until its lease ran out.
    text = error.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:MAX_ERROR_LENGTH]


def _encode(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=True)


def _delivery(row: RowMapping) -> Delivery:
    return delivery_of(row)
