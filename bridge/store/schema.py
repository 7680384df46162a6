"""What the store keeps: its rows, its tables, and the versioned schema later releases migrate."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from bridge.errors import BridgeError


class StoreError(BridgeError):
    """The database failed, could not be reached, or holds a schema this code cannot use."""


def error_line(exc: BaseException) -> str:
    """A database error's first line, as the driver put it.

    SQLAlchemy's own text would add the statement and its parameters, which hold payloads;
    the drivers' first lines name the problem and the host, never the password.
    """
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


QUEUED, DELIVERING, DELIVERED, RETRYING, DEAD = (
    "queued",
    "delivering",
    "delivered",
    "retrying",
    "dead",
)
STATUSES = (QUEUED, DELIVERING, DELIVERED, RETRYING, DEAD)


@dataclass(frozen=True)
class Delivery:
    """One accepted webhook event and where its delivery to Cortex stands."""

    id: int
    dedupe_key: str
    source: str
    event_name: str
    received_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_error: str | None
    payload: dict[str, Any] = field(hash=False)
    results: dict[str, Any] = field(hash=False)
    updated_at: datetime
    delivered_at: datetime | None
    group_key: str | None = None
    received: str | None = field(default=None, hash=False, repr=False)
    # A retry asked for by hand (``deliveries retry``, the console, the admin API) gives the
    # delivery its time and attempts afresh: when it was asked, and the attempts made before.
    retried_at: datetime | None = None
    retried_after: int = 0


@dataclass(frozen=True)
class Record:
    """The Cortex deploy made for one idempotency key, so a later status can update it."""

    key: str
    entity: str
    cortex_uuid: str
    state: str
    updated_at: datetime
    # When the deploy started, where its first event said (a lifecycle's start): an end
    # event that does not say it (Flux's) keeps it in the record it updates.
    started_at: datetime | None = None


# The stored form of a JSON document: compact, keys sorted (so equal documents are equal text).
encode_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class JSONText(sa.types.TypeDecorator[dict[str, Any]]):
    """A JSON object kept as text (payloads, results): written as :data:`encode_json` gives
    it, read back with ``json.loads``; the column's own processors, so that each row becomes
    its object (a :class:`Delivery`) by name, with no hand-written conversion beside it."""

    impl = sa.Text
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str]:
        """The document's text."""
        return encode_json

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[str], Any]:
        """The document, from its text."""
        return json.loads


class _AsUTC(FunctionElement[datetime]):
    """A stored time as it is read: SQLite's UTC text with its zone written out."""

    type = sa.DateTime(timezone=True)
    inherit_cache = True


@compiles(_AsUTC)
def _read_as_stored(element: _AsUTC, compiler: SQLCompiler, **kw: Any) -> str:
    # PostgreSQL's timestamptz comes back aware, in the session's zone: UTC (engine.py).
    return str(compiler.process(element.clauses, **kw))


@compiles(_AsUTC, "sqlite")
def _read_with_zone(element: _AsUTC, compiler: SQLCompiler, **kw: Any) -> str:
    # The driver's parser (datetime.fromisoformat) then makes it an aware UTC datetime.
    return f"({compiler.process(element.clauses, **kw)} || '+00:00')"


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends: timestamptz on PostgreSQL, UTC text on SQLite.

    Written as given (pass it through ``Database.aware`` first): SQLite's DATETIME drops the zone
    without a word, and UTC keeps the fixed-width text in time order, so that
    `next_attempt_at <= :now` compares correctly. Read back aware by the SQL that selects it
    (:class:`_AsUTC`), with no Python call per value.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        """Select the column so that the driver reads it as an aware UTC datetime."""
        return _AsUTC(colexpr)


# Named constraints, so a later migration can drop or alter them by name on both backends.
metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite turns only "INTEGER PRIMARY KEY" into the rowid, so the variant; AUTOINCREMENT
# there (sqlite_autoincrement) keeps ids from being reused, which the admin cursor relies on.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

deliveries = sa.Table(
    "bridge_deliveries",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("event_name", sa.Text, nullable=False),
    # Events of one deploy share a group and are delivered one at a time, in order: two
    # workers never race to create the same record, and a start never overtakes its end.
    sa.Column("group_key", sa.Text),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    # When the row is next to be tried: the due time while queued/retrying, the lease's end
    # while delivering (so one predicate finds both), None once delivered or dead.
    sa.Column("next_attempt_at", UTCDateTime()),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("last_error", sa.Text),
    sa.Column("payload", JSONText, nullable=False),
    sa.Column("results", JSONText, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime()),
    # The webhook as received, redacted and cut to MAX_RECEIVED_BYTES (console.py shows it):
    # {"headers": {...}, "body": "..."}. None for rows stored before schema 4.
    sa.Column("received", sa.Text),
    sa.Column("retried_at", UTCDateTime()),
    sa.Column("retried_after", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{status}'" for status in STATUSES) + ")", name="status"
    ),
    sqlite_autoincrement=True,
)
# Claim: due rows in due order, read straight off the index however deep the queue. Settled
# rows (delivered, dead) have no next_attempt_at, so they are not in it: a long-lived outbox
# full of delivered rows costs a claim nothing. (Schema 1 indexed (status, next_attempt_at),
# which made the claim sort every due row, or walk the delivered ones, to find the oldest.)
sa.Index(
    None,
    deliveries.c.next_attempt_at,
    deliveries.c.id,
    postgresql_where=deliveries.c.next_attempt_at.is_not(None),
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
)
sa.Index(None, deliveries.c.status, deliveries.c.id)  # admin list filtered by status; counts
sa.Index(None, deliveries.c.group_key, deliveries.c.id)  # claim: an older unsettled sibling

records = sa.Table(
    "bridge_records",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Column("cortex_uuid", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
)

history = sa.Table(
    "bridge_history",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("entity", sa.Text, nullable=False),
    # "" for a deploy with no environment: NULL would never equal itself in the lookup.
    sa.Column("environment", sa.Text, nullable=False),
    sa.Column("sha", sa.Text, nullable=False),
    sa.Column("deployed_at", UTCDateTime(), nullable=False),
)
sa.Index(None, history.c.entity, history.c.environment, history.c.deployed_at)

# The entity+environment pairs whose history was read from Cortex once (records.py), found
# empty or not: without it an environment with no succeeded deploy yet (lifecycle starts,
# failures) would have Cortex's listing read again for every event.
history_seeded = sa.Table(
    "bridge_history_seeded",
    metadata,
    sa.Column("entity", sa.Text, primary_key=True),
    sa.Column("environment", sa.Text, primary_key=True),  # "" for none, as in bridge_history
    sa.Column("seeded_at", UTCDateTime(), nullable=False),
)

# The token bucket every replica's workers draw from before each Cortex request (see
# bucket.py), one row per budget. Times are epoch seconds, so that the refill arithmetic is
# the same plain SQL on both backends.
rate_budgets = sa.Table(
    "bridge_rate_budgets",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Double, nullable=False),
    sa.Column("counted_at", sa.Double, nullable=False),
    # No request before this (Cortex answered 429 with Retry-After); 0 when never paused.
    sa.Column("paused_until", sa.Double, nullable=False),
)

# Where each sync reader stands (bridge/store/sync_state.py): its window, the point to resume
# from, and whether it finished; so an interrupted `sync` continues instead of starting over.
sync_progress = sa.Table(
    "bridge_sync_progress",
    metadata,
    sa.Column("reader", sa.Text, primary_key=True),  # "github:acme/api"
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("until", UTCDateTime(), nullable=False),
    sa.Column("resume", sa.Text),  # the reader's own opaque point; None: from the start
    sa.Column("state", sa.Text, nullable=False),  # running | done
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Every deploy a sync recorded, by idempotency key: the report of what it did, and a second
# check beside Cortex's own listing before recording.
sync_recorded = sa.Table(
    "bridge_sync_recorded",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("reader", sa.Text, nullable=False),
    sa.Column("cortex_uuid", sa.Text, nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
)

# The relay's periodic reconcile runs on one replica at a time: whoever holds the row's
# unexpired lease.
sync_leases = sa.Table(
    "bridge_sync_leases",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("lease_until", UTCDateTime(), nullable=False),
)

# One row per finished delivery attempt (store.py's Store.settle writes it in the same transaction
# as the outcome): its number, when it ended, how, Cortex's answer (the error, or the results).
attempts = sa.Table(
    "bridge_attempts",
    metadata,
    sa.Column("delivery_id", _ID, primary_key=True, autoincrement=False),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("outcome", sa.Text, nullable=False),  # delivered | retrying | dead
    sa.Column("finished_at", UTCDateTime(), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("results", JSONText, nullable=False),
)

# The last webhooks the receiver turned away (4xx) or ignored, with why (journal.py): a
# bounded table, pruned as it is written, so "why didn't my deploy show up?" has an answer.
turned_away = sa.Table(
    "bridge_turned_away",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("delivery", sa.Text, nullable=False),
    sa.Column("code", sa.Integer, nullable=False),  # the HTTP status answered
    sa.Column("answer", sa.Text, nullable=False),  # ignored | rejected | unauthorized
    sa.Column("reason", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

# The relay's periodic reconcile runs, newest kept (journal.py): when, and per source what
# it compared, found missing and recorded, or why it failed.
reconcile_runs = sa.Table(
    "bridge_reconcile_runs",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("until", UTCDateTime(), nullable=False),
    sa.Column("sources", sa.Text, nullable=False),  # JSON: [{source, counts, error}]
    sqlite_autoincrement=True,
)

schema_version = sa.Table(
    "bridge_schema",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("version", sa.Integer, nullable=False),
)

SCHEMA_VERSION = 5


def _upgrade_to_2(conn: Connection) -> None:
    """Version 2: the shared rate budget table, and the claim index that skips settled rows."""
    # Spelled out as version 2 has them rather than taken from the tables above, which follow
    # the latest version: a later change to them reaches old databases through its own step.
    frozen = sa.MetaData(naming_convention=metadata.naming_convention)
    sa.Table(
        "bridge_rate_budgets",
        frozen,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Double, nullable=False),
        sa.Column("counted_at", sa.Double, nullable=False),
        sa.Column("paused_until", sa.Double, nullable=False),
    ).create(conn)
    outbox = sa.Table("bridge_deliveries", frozen, sa.Column("id"), sa.Column("next_attempt_at"))
    due_some_day = outbox.c.next_attempt_at.is_not(None)
    sa.Index(
        "ix_bridge_deliveries_next_attempt_at_id",
        outbox.c.next_attempt_at,
        outbox.c.id,
        postgresql_where=due_some_day,
        sqlite_where=due_some_day,
    ).create(conn)
    conn.execute(sa.text("DROP INDEX ix_bridge_deliveries_status_next_attempt_at"))


def _upgrade_to_3(conn: Connection) -> None:
    """Version 3: which entity+environment histories were read from Cortex (issue 8); the
    sync's progress, what it recorded, and the reconcile's lease (issue 11)."""
    frozen = sa.MetaData(naming_convention=metadata.naming_convention)
    sa.Table(
        "bridge_history_seeded",
        frozen,
        sa.Column("entity", sa.Text, primary_key=True),
        sa.Column("environment", sa.Text, primary_key=True),
        sa.Column("seeded_at", UTCDateTime(), nullable=False),
    ).create(conn)
    sa.Table(
        "bridge_sync_progress",
        frozen,
        sa.Column("reader", sa.Text, primary_key=True),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("resume", sa.Text),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ).create(conn)
    sa.Table(
        "bridge_sync_recorded",
        frozen,
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("reader", sa.Text, nullable=False),
        sa.Column("cortex_uuid", sa.Text, nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
    ).create(conn)
    sa.Table(
        "bridge_sync_leases",
        frozen,
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=False),
    ).create(conn)


def _upgrade_to_4(conn: Connection) -> None:
    """Version 4 (issue 18, the console): each delivery's webhook as received, its attempts,
    the webhooks turned away or ignored, and the reconcile runs."""
    conn.execute(sa.text("ALTER TABLE bridge_deliveries ADD COLUMN received TEXT"))
    frozen = sa.MetaData(naming_convention=metadata.naming_convention)
    sa.Table(
        "bridge_attempts",
        frozen,
        sa.Column("delivery_id", _ID, primary_key=True, autoincrement=False),
        sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("results", sa.Text, nullable=False),
    ).create(conn)
    sa.Table(
        "bridge_turned_away",
        frozen,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("delivery", sa.Text, nullable=False),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    ).create(conn)
    sa.Table(
        "bridge_reconcile_runs",
        frozen,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("until", UTCDateTime(), nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    ).create(conn)


def _upgrade_to_5(conn: Connection) -> None:
    """Version 5: when a record's deploy started, kept for the update that ends it; when a
    delivery was last retried by hand, and after how many attempts."""
    kind = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    conn.execute(sa.text(f"ALTER TABLE bridge_records ADD COLUMN started_at {kind}"))
    conn.execute(sa.text(f"ALTER TABLE bridge_deliveries ADD COLUMN retried_at {kind}"))
    conn.execute(
        sa.text("ALTER TABLE bridge_deliveries ADD COLUMN retried_after INTEGER NOT NULL DEFAULT 0")
    )


# UPGRADES[n] takes a database at version n - 1 to version n, inside the same transaction
# that records n, so queued rows survive an upgrade and a failed one changes nothing. The
# tables above always describe SCHEMA_VERSION: a fresh database is created from them
# directly, an older one is walked up through these steps.
UPGRADES: dict[int, Callable[[Connection], None]] = {
    2: _upgrade_to_2,
    3: _upgrade_to_3,
    4: _upgrade_to_4,
    5: _upgrade_to_5,
}

# Any fixed 64-bit number: PostgreSQL's advisory lock that serializes replicas starting at
# once, since CREATE TABLE IF NOT EXISTS still races on the catalog.
_SCHEMA_LOCK_ID = 0x0B21D6E5C0DE


def ensure_schema(conn: Connection) -> None:
    """Create the tables if missing, or upgrade them to SCHEMA_VERSION; in the caller's tx."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_ID)))
    schema_version.create(conn, checkfirst=True)
    found = conn.execute(sa.select(schema_version.c.version)).scalar_one_or_none()
    if found is None:
        metadata.create_all(conn, checkfirst=True)
        conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION))
        return
    _refuse_newer(found)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        UPGRADES[version](conn)
    if found < SCHEMA_VERSION:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION))


def check_schema(conn: Connection) -> None:
    """Raise StoreError unless the database holds exactly this code's schema version."""
    if not sa.inspect(conn).has_table(schema_version.name):
        raise StoreError("database has no bridge schema: start the bridge once to create it")
    found = conn.execute(sa.select(schema_version.c.version)).scalar_one_or_none()
    if found is None:
        raise StoreError("database has no bridge schema: start the bridge once to create it")
    _refuse_newer(found)
    if found < SCHEMA_VERSION:
        raise StoreError(f"database schema is version {found}, this bridge needs {SCHEMA_VERSION}")


def _refuse_newer(found: int) -> None:
    # A newer bridge upgraded this database; running old code on it could corrupt rows.
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"database schema is version {found}, newer than this bridge's {SCHEMA_VERSION}"
        )
