"""The Store: the database it stands on, the delivery outbox, and its parts put together.

:class:`Database` holds the engine, opens the one short transaction each method of the Store
and of its parts runs in, and lines up SQLite writers. :class:`Store` is the outbox (below),
and :class:`Lease` a worker's hold on one delivery it claimed (the fence before each Cortex
write). The Store's parts stand beside it on the same Database: ``store.records``, Cortex
records and deploy history (records.py), ``store.budget``, the shared rate budget
(budget.py), ``store.sync``, ``store.journal`` and ``store.browse``.

Every write is one short transaction committed before the method returns, so a receiver
that answers 202 after :meth:`Store.enqueue` has the event on disk (see engine.py for the
SQLite settings that make that hold). The same statements run on SQLite and PostgreSQL.

Group commit: a commit costs an fsync. Under load, the threads of one process that store
events at the same moment share one transaction and one fsync (:class:`GroupCommit`): the
first thread to arrive leads and writes what has queued up by then, the others wait for its
commit; while it writes, the next batch gathers behind it. One thread alone still writes at
once: nothing waits for a batch to fill.

SQLite writers: SQLite admits one writer at a time and makes the others poll, sleeping up to
100 ms between tries, so under load most of an acknowledgement went to sleeping. The
Database queues the writers of every bridge process on one database file behind a ``flock``
on a file beside it: the kernel hands the lock over as soon as it is released, and drops it
when its holder dies (``kill -9`` included), so it never outlives a transaction. On a SQLite file
the outbox INSERT runs on the driver's own cursor, in a transaction on a driver connection the
Database keeps for it (:meth:`Database.insert_outbox`, in the same writer turn): through
SQLAlchemy, each row cost more CPU in the execution machinery, and each transaction more in the
pool and transaction objects, than SQLite spent inserting and committing it, all of it while
the other writers waited for the lock (benchmarks/RESULTS.md, "Receiver" and "Stored path
CPU"). Its parameters are converted before the lock is taken, with the columns' own bind
processors.

Waking idle workers: on PostgreSQL, :meth:`Store.enqueue` and :meth:`Store.retry` NOTIFY
``WAKE_CHANNEL`` in their own transaction (so only once the row is committed), and one
listener per process (:meth:`Store.listen`) wakes that process's workers, whichever replica
took the event. SQLite has no signal between processes: a worker is woken at once by its own
process's receiver, and finds what a sibling process (``serve --workers 2``) took on its idle
poll. On one host's local file an empty claim writes nothing and is cheap, so a poll a second
costs less than machinery to signal across processes would.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import PoolProxiedConnection

from bridge.errors import BridgeError
from bridge.redact import redact_url
from bridge.store.browse import Browse
from bridge.store.budget import Budgets
from bridge.store.engine import CONNECT_TIMEOUT_SECONDS, create_engine, is_memory, open_private
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
    ensure_schema,
    error_line,
)
from bridge.store.sync_state import SyncState

Item = TypeVar("Item")
Result = TypeVar("Result")

# Enough to amortize a commit over a burst; small enough that the first in a batch does not
# wait long for the last to be written.
MAX_BATCH = 64


class Database:
    """One database's engine, and the transactions every part of the Store runs in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgresql = engine.dialect.name == "postgresql"
        # An INSERT that knows ON CONFLICT; both dialects spell it the same way.
        self.insert: Callable[[sa.Table], postgresql.Insert | sqlite.Insert] = (
            postgresql.insert if self.is_postgresql else sqlite.insert
        )
        memory = is_memory(engine)
        # An in-memory SQLite database is one shared connection: take turns on it.
        self._serial = threading.Lock() if memory else None
        # SQLite: the transaction's BEGIN, issued here since pysqlite is told not to (engine.py).
        # Writers take the write lock up front (waiting on busy_timeout), so a transaction
        # that reads and then writes, like a claim, never sees its snapshot go stale.
        # https://www.sqlite.org/lang_transaction.html
        self._begin = (
            {True: "BEGIN IMMEDIATE", False: "BEGIN"} if engine.dialect.name == "sqlite" else None
        )
        # A SQLite file: its writers, in every process, queue for one lock beside it.
        self.lock_path = (
            f"{engine.url.database}-bridge.lock" if self._begin is not None and not memory else None
        )
        self._threads = threading.Lock()  # this process's writers, before the file's lock
        self._fd: int | None = None
        self._opened_by = -1  # the process that opened _fd
        # SQLite: the outbox's own driver connection, and the process that opened it.
        self._outbox: tuple[int, PoolProxiedConnection] | None = None
        # Raised by the driver's own cursor (the SQLite outbox INSERT), beside SQLAlchemy's.
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @staticmethod
    def aware(moment: datetime) -> datetime:
        """``moment`` in UTC, as the tables keep it (schema.py's UTCDateTime); a naive
        datetime is a bug in the caller, not a time to guess. Every method of the Store and
        of its parts passes the times it is given through here before it stores them."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"naive datetime {moment!r}: pass an aware UTC time")
        return moment.astimezone(timezone.utc)

    def close(self) -> None:
        """Close every pooled connection, and the writers' lock file (opened again if used)."""
        self.engine.dispose()
        with self._threads:
            if self._fd is not None and self._opened_by == os.getpid():
                os.close(self._fd)
            self._fd, self._opened_by = None, -1
            if self._outbox is not None and self._outbox[0] == os.getpid():
                self._outbox[1].close()
            self._outbox = None

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with self.transaction(write=False) as conn:
            conn.execute(sa.select(1))

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction, committed on leaving; database failures raised as StoreError.

        A write on a SQLite file first waits for this process's turn, then for the file's.
        """
        path = self.lock_path if write else None
        with self._serial or nullcontext():
            try:
                # Checked out first: only the transaction itself holds up other writers.
                with (
                    self.engine.connect() as conn,
                    self._turn(path) if path is not None else nullcontext(),
                    conn.begin(),
                ):
                    if self._begin is not None:
                        driver = conn.connection.driver_connection
                        driver.execute(self._begin[write])  # type: ignore[union-attr]
                    yield conn
            except (sa.exc.SQLAlchemyError, self._driver_error) as exc:
                raise StoreError(f"database error: {error_line(exc)}") from exc

    def insert_outbox(
        self,
        statements: tuple[str, str],
        batch: Sequence[tuple[tuple[Any, ...], str]],
        *,
        offloaded: bool = False,
    ) -> list[tuple[int, bool]]:
        """A SQLite file's outbox INSERT of each (parameters, dedupe key) of ``batch``, in one
        write transaction on a driver connection of its own: (id, True), or (the first row's
        id, False) for a key already there; database failures raised as StoreError.

        ``statements``: the INSERT (ON CONFLICT DO NOTHING RETURNING id) and the SELECT of the
        first row's id by its key, compiled by the Store. The receiver's one write per event:
        SQLAlchemy's connection, pool and transaction objects cost it more CPU than SQLite's
        own BEGIN IMMEDIATE and COMMIT (benchmarks/RESULTS.md, "Stored path CPU"). Same turns
        as :meth:`transaction`: this process's writers, then the file's lock, held until the
        commit has returned. The connection is this process's (opened through the engine,
        with its settings) and used only in turn; a failed transaction closes it, rolling
        back, and the next opens another. Under gevent (``serve``), on one of gevent's native
        threads: the commit's fsync would otherwise stop every other connection of the
        process while it lasts.
        """
        monkey = None if offloaded else sys.modules.get("gevent.monkey")
        if monkey is not None and monkey.is_module_patched("threading"):
            pool = sys.modules["gevent"].get_hub().threadpool
            return pool.apply(self.insert_outbox, (statements, batch), {"offloaded": True})  # type: ignore[no-any-return]
        assert self.lock_path is not None  # a SQLite file (the Store's choice)
        insert, first = statements
        stored: list[tuple[int, bool]] = []
        try:
            with self._turn(self.lock_path):
                if self._outbox is None or self._outbox[0] != os.getpid():
                    fairy = self.engine.raw_connection()
                    fairy.detach()  # out of the pool: this process's outbox writer alone
                    self._outbox = (os.getpid(), fairy)
                driver = self._outbox[1].dbapi_connection
                try:
                    driver.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
                    cursor = driver.cursor()  # type: ignore[union-attr]
                    for params, key in batch:
                        found = cursor.execute(insert, params).fetchone()
                        created = found is not None
                        if not created:
                            found = cursor.execute(first, (key,)).fetchone()
                        stored.append((int(found[0]), created))
                    driver.commit()  # type: ignore[union-attr]
                except BaseException:
                    self._outbox[1].close()
                    self._outbox = None
                    raise
        except self._driver_error as exc:
            raise StoreError(f"database error: {error_line(exc)}") from exc
        return stored

    @contextmanager
    def _turn(self, path: str) -> Iterator[None]:
        """A SQLite file's writer turn: this process's writers' lock, then the file's flock."""
        with self._threads:
            try:
                # A flock belongs to the open file, which a forked child shares with its
                # parent (gunicorn loads the app before forking when asked to): each process
                # opens its own.
                if self._fd is None or self._opened_by != os.getpid():
                    self._fd, self._opened_by = open_private(path), os.getpid()
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except OSError as exc:
                reason = (exc.strerror or type(exc).__name__).lower()
                raise StoreError(f"cannot lock {path} for writing: {reason}") from exc
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


@dataclass(eq=False)
class _Slot(Generic[Item, Result]):
    """One submitted item: its outcome once written, and whether its thread now leads."""

    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    result: Result | None = None
    error: BaseException | None = None
    lead: bool = False
    alone: bool = False  # its batch failed: written again on its own, by its own thread


class GroupCommit(Generic[Item, Result]):
    """Write items submitted by many threads in shared transactions.

    ``write`` stores a batch in one transaction and returns one result per item, in order;
    it raises when the transaction failed (nothing of the batch is then stored). A failed
    batch is written again one item at a time, so one bad item fails only its own caller.
    """

    def __init__(
        self, write: Callable[[Sequence[Item]], list[Result]], *, max_batch: int = MAX_BATCH
    ) -> None:
        self._write = write
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[Item, Result]] = []
        self._leading = False

    def submit(self, item: Item) -> Result:
        """Write ``item`` (with whatever else is waiting) and return its result once committed."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.done.wait()  # its outcome, or its turn to lead
        if lead or slot.lead:
            # Leading: this slot is first in line, so the batch taken now includes it.
            with self._lock:
                batch = self._queue[: self._max]
                del self._queue[: self._max]
            try:
                results = self._write([each.item for each in batch])
                for each, result in zip(batch, results, strict=True):
                    each.result = result
            except BaseException as exc:
                alone = len(batch) > 1 and isinstance(exc, Exception)
                for each in batch:
                    each.alone, each.error = alone, None if alone else exc
            finally:
                for each in batch:
                    each.done.set()
                # The first waiting thread leads the next batch; with none waiting, none leads.
                with self._lock:
                    if self._queue:
                        self._queue[0].lead = True
                        self._queue[0].done.set()
                    else:
                        self._leading = False
        if slot.alone:
            return self._write([item])[0]
        if slot.error is not None:
            raise slot.error
        return cast(Result, slot.result)


# Claimable once next_attempt_at has passed (for DELIVERING that is the lease's end).
_CLAIMABLE = (QUEUED, RETRYING, DELIVERING)
_WAITING = (QUEUED, RETRYING)
# How an attempt ends (Store.settle).
_SETTLED = (DELIVERED, RETRYING, DEAD)
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
# The longest a lease's renewal may take before it is not trusted, as a share of the lease: a
# worker stopped (SIGSTOP, a long GC, a VM pause) inside it may have woken after its lease ran
# out and another worker took the delivery over.
TRUSTED_SHARE_OF_LEASE = 0.5
# Renewals tried in a row before a worker whose database answers that slowly gives up the
# delivery (it is taken up again once the lease has run out).
RENEWALS = 3
# What the outbox keeps for an entity whose write was sent but not answered yet: the next
# attempt (this worker's, or another's after a takeover) looks for the record first.
SENDING = {"action": "sending"}
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
        # The line each finished attempt leaves in the delivery's history (the console's
        # "attempts"); a repeat of it (a retried commit) is a no-op.
        self._attempt_line = self.db.insert(attempts).on_conflict_do_nothing(
            index_elements=[attempts.c.delivery_id, attempts.c.attempt]
        )
        # Threads storing events at the same moment share one transaction (GroupCommit):
        # through SQLAlchemy Core on PostgreSQL and on an in-memory SQLite database (one shared
        # connection); on a SQLite file, the same two statements, compiled once, run on the
        # driver's cursor (Database.insert_outbox), with the parameters in the compiled order,
        # each converted by its column's bind processor.
        self._sqlite_params: list[tuple[str, Callable[[Any], Any] | None]] | None = None
        self._enqueues: GroupCommit[Any, tuple[int, bool]] = GroupCommit(self._insert_core)
        if self.db.lock_path is not None:
            dialect = engine.dialect
            compiled = self._insert_delivery.compile(dialect=dialect)
            statements = (str(compiled), str(self._first_delivery.compile(dialect=dialect)))
            self._sqlite_params = [
                (name, deliveries.c[name].type.dialect_impl(dialect).bind_processor(dialect))
                for name in compiled.positiontup or []
            ]
            self._enqueues = GroupCommit(functools.partial(self.db.insert_outbox, statements))

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
        except StoreError as exc:
            store.close()
            # Which database: the URL without its password (the setting's name is the
            # caller's: BRIDGE_DATABASE_URL, the config's database, --database-url).
            shown = redact_url(url)
            raise StoreError(f"{exc} (database {shown})") from exc
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
        now = self.db.aware(now)
        row = {
            "dedupe_key": dedupe_key,
            "source": source,
            "event_name": event_name,
            "group_key": group_key,
            "received_at": now,
            "status": QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
            "payload": dict(payload),
            "results": {},
            "updated_at": now,
            "received": received,
        }
        if self._sqlite_params is not None:
            # Converted here, by the caller's thread, before any lock is taken.
            params = tuple(
                row[name] if bind is None else bind(row[name]) for name, bind in self._sqlite_params
            )
            return self._enqueues.submit((params, dedupe_key))
        return self._enqueues.submit(row)

    def _insert_core(self, rows: Sequence[dict[str, Any]]) -> list[tuple[int, bool]]:
        # PostgreSQL: the same statements through SQLAlchemy Core. The unique key decides,
        # atomically, under concurrent threads and processes; ON CONFLICT rather than
        # catching IntegrityError keeps every GitHub redelivery from writing an ERROR into
        # PostgreSQL's log and aborting the transaction.
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
        now = self.db.aware(now)
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
        leased_ones = {row["id"]: Delivery(**row) for row in rows}
        # RETURNING keeps no order: the claim's.
        return [leased_ones[id] for id in ids if id in leased_ones]

    def settle(
        self,
        id: int,
        outcome: str,
        *,
        owner: str,
        results: Mapping[str, Any],
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        writes: Sequence[RecordWrite] = (),
        recount: bool = False,
    ) -> bool:
        """End ``owner``'s attempt at a leased delivery: ``outcome`` delivered, retrying (at
        ``next_attempt_at``) or dead, the last two with their ``error``; False when ``owner``
        no longer holds it. ``writes``: the records the attempt made, kept in the same
        transaction as its outcome. ``recount``: its time and attempts count afresh from now,
        as after a retry asked for by hand (an attempt refused for the operator's token)."""
        if outcome not in _SETTLED or (error is None) != (outcome == DELIVERED):
            raise ValueError(f"cannot settle as {outcome!r} with error {error!r}")
        if (next_attempt_at is None) == (outcome == RETRYING):
            raise ValueError("a delivery is retrying exactly when it has a next attempt time")
        now = self.db.aware(now)
        again = None if next_attempt_at is None else self.db.aware(next_attempt_at)
        values: dict[str, Any] = {
            "status": outcome,
            "next_attempt_at": again,  # None: the row is never claimed again
            "results": dict(results),
            "updated_at": now,
        }
        if outcome == DELIVERED:
            values["delivered_at"] = now
        if error is not None:
            values["last_error"] = _clip(error)
        if recount:
            values["retried_at"] = now
            values["retried_after"] = deliveries.c.attempts
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
            if attempt is None:
                return False  # its writes are left to the lease's new owner, as in Lease.hold
            conn.execute(
                self._attempt_line,
                {
                    "delivery_id": id,
                    "attempt": attempt,
                    "outcome": outcome,
                    "finished_at": now,
                    "error": values.get("last_error"),
                    "results": values["results"],
                },
            )
            if writes:
                self.records.apply(conn, writes, now=now)
            return True

    def retry(self, id: int, *, now: datetime) -> bool:
        """Queue a dead or retrying delivery to be tried now, its time and attempts counted
        afresh (``retried_at``, ``retried_after``: the worker counts from them); False if
        delivered, leased, absent."""
        now = self.db.aware(now)
        requeue = (
            deliveries.update()
            .where(deliveries.c.id == id, deliveries.c.status.in_((DEAD, *_WAITING)))
            .values(
                status=QUEUED,
                next_attempt_at=now,
                updated_at=now,
                # Asked for by hand: the delivery's time and attempts start afresh.
                retried_at=now,
                retried_after=deliveries.c.attempts,
            )
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
        return Delivery(**row) if row is not None else None

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
        found = [Delivery(**row) for row in rows[:limit]]
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
        return None if received is None else (self.db.aware(now) - received).total_seconds()

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


class LeaseLost(BridgeError):
    """Another worker holds the delivery now: this one must not write to Cortex again."""


@dataclass
class Lease:
    """A worker's hold on one claimed delivery: renewed, and checked before each Cortex write.

    A renewal is one UPDATE by primary key that also checks the lease is still held: the
    worker's fence before each Cortex write, and its heartbeat after each entity. The attempt
    count its claim returned is the fencing token: a worker whose lease another attempt took
    can never renew it again. ``writes``: the records made since the last renewal, stored with
    the next one, only while the lease is held (a worker that lost it leaves them to the next
    owner, who finds the entity marked as sending and looks its record up in Cortex).
    """

    store: Store
    delivery: Delivery
    owner: str
    lease_seconds: float
    clock: Callable[[], datetime]
    monotonic: Callable[[], float] = time.monotonic
    writes: list[RecordWrite] = field(default_factory=list)

    def hold(self, results: dict[str, Any], *, sending: str | None = None) -> None:
        """Renew the lease and store ``results`` with the records made since the last renewal;
        raise LeaseLost when the lease is no longer held. ``sending``: the entity whose write
        leaves next (the fence before a Cortex write), so kept as sending."""
        if sending is not None:
            results[sending] = SENDING
        writes = self.writes[:]
        self.writes.clear()
        db, id = self.store.db, self.delivery.id
        renew = deliveries.update().where(
            deliveries.c.id == id,
            deliveries.c.status == DELIVERING,
            deliveries.c.lease_owner == self.owner,
            deliveries.c.attempts == self.delivery.attempts,
        )
        for _ in range(RENEWALS):
            started = self.monotonic()
            now = db.aware(self.clock())
            until = now + timedelta(seconds=self.lease_seconds)
            with db.transaction(write=True) as conn:
                values = {"lease_until": until, "next_attempt_at": until, "results": dict(results)}
                held = conn.execute(renew.values(values)).rowcount == 1
                if held and writes:
                    self.store.records.apply(conn, writes, now=now)
            writes = []  # kept by the first renewal
            if not held:
                raise LeaseLost(f"delivery {id}: lease lost to another worker")
            if self.monotonic() - started < self.lease_seconds * TRUSTED_SHARE_OF_LEASE:
                return
            # Renewed, but so long ago that the renewal may have expired already: again.
        raise LeaseLost(f"delivery {id}: the lease cannot be renewed in time")


def _clip(error: str) -> str:
    """An error text any backend stores: no NUL, no lone surrogates, MAX_ERROR_LENGTH at most."""
    # Error texts quote Cortex's answers, which may hold bytes PostgreSQL refuses; a failed
    # settle would leave the row leased until its lease ran out.
    text = error.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return text[:MAX_ERROR_LENGTH]
