"""The sync's state in the database: each reader's progress, what it recorded, the lease.

A part of the Store (``store.sync``), sharing its Database. Progress is saved at each resume
point a reader gives, so an interrupted sync (Ctrl-C, SIGKILL) continues there; what was
recorded is kept by idempotency key, so a rerun that meets a deploy again knows it was
recorded even before Cortex's listing shows it. The lease lets one replica at a time run the
relay's reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bridge.store.schema import UTCDateTime, sync_leases, sync_progress, sync_recorded

if TYPE_CHECKING:
    from bridge.store.store import Database

RUNNING, DONE = "running", "done"
# A deploy's row while a replica records it: reserved, no uuid yet.
RESERVED = ""


@dataclass(frozen=True)
class Progress:
    """Where one reader's sync stands."""

    reader: str
    since: datetime
    until: datetime
    resume: str | None
    state: str  # running | done
    updated_at: datetime


class SyncState:
    """The Store's sync progress, recorded keys and reconcile lease (``store.sync``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def sync_progress(self, reader: str) -> Progress | None:
        """The saved progress of ``reader``, if it ever ran."""
        found = sync_progress.select().where(sync_progress.c.reader == reader)
        with self.db.transaction(write=False) as conn:
            row = conn.execute(found).mappings().first()
        return Progress(**row) if row is not None else None

    def start_sync(self, reader: str, *, since: datetime, until: datetime, now: datetime) -> None:
        """Begin ``reader`` afresh over [since, until)."""
        values = {
            "since": self.db.aware(since),
            "until": self.db.aware(until),
            "resume": None,
            "state": RUNNING,
            "updated_at": self.db.aware(now),
        }
        upsert = (
            self.db.insert(sync_progress)
            .values(reader=reader, **values)
            .on_conflict_do_update(index_elements=[sync_progress.c.reader], set_=values)
        )
        with self.db.transaction(write=True) as conn:
            conn.execute(upsert)

    def save_resume(self, reader: str, resume: str, *, now: datetime) -> None:
        """Everything before ``resume`` is compared and recorded."""
        self._update(reader, resume=resume, updated_at=self.db.aware(now))

    def finish_sync(self, reader: str, *, now: datetime) -> None:
        """``reader`` went through its whole window."""
        self._update(reader, resume=None, state=DONE, updated_at=self.db.aware(now))

    def reserve(self, key: str, *, owner: str, now: datetime, seconds: float) -> bool:
        """Reserve the deploy ``key`` for ``owner`` to record, in one statement, before the
        Cortex write: False when it is recorded, or reserved by another owner less than
        ``seconds`` ago (a reservation whose owner died lapses then)."""
        row = sync_recorded.c
        moment = self._now(now)
        take = (
            self.db.insert(sync_recorded)
            .values(idempotency_key=key, reader=owner, cortex_uuid=RESERVED, recorded_at=moment)
            .on_conflict_do_update(
                index_elements=[row.idempotency_key],
                set_={"reader": owner, "recorded_at": moment},
                where=sa.and_(
                    row.cortex_uuid == RESERVED,
                    sa.or_(row.reader == owner, row.recorded_at <= self._ago(now, seconds)),
                ),
            )
            .returning(row.reader)
        )
        with self.db.transaction(write=True) as conn:
            holder = conn.execute(take).scalar_one_or_none()
        return holder == owner

    def release(self, key: str, *, owner: str) -> None:
        """Give a reservation back: the write it was for did not happen."""
        row = sync_recorded.c
        gone = sync_recorded.delete().where(
            row.idempotency_key == key, row.reader == owner, row.cortex_uuid == RESERVED
        )
        with self.db.transaction(write=True) as conn:
            conn.execute(gone)

    def mark_recorded(self, key: str, *, reader: str, uuid: str, now: datetime) -> None:
        """The sync recorded the deploy ``key`` as Cortex's ``uuid`` (its reservation kept)."""
        values = {"reader": reader, "cortex_uuid": uuid, "recorded_at": self.db.aware(now)}
        insert = (
            self.db.insert(sync_recorded)
            .values(idempotency_key=key, **values)
            .on_conflict_do_update(
                index_elements=[sync_recorded.c.idempotency_key],
                set_=values,
                where=sync_recorded.c.cortex_uuid == RESERVED,
            )
        )
        with self.db.transaction(write=True) as conn:
            conn.execute(insert)

    def recorded_uuid(self, key: str) -> str | None:
        """The uuid a sync recorded for ``key``, if one did (a reservation is not a record)."""
        found = sa.select(sync_recorded.c.cortex_uuid).where(sync_recorded.c.idempotency_key == key)
        with self.db.transaction(write=False) as conn:
            uuid: str | None = conn.execute(found).scalar_one_or_none()
        return uuid or None

    def take_lease(self, name: str, *, owner: str, now: datetime, seconds: float) -> bool:
        """Hold lease ``name`` for ``seconds`` unless another owner holds it unexpired.

        On PostgreSQL the lease is timed by the database's clock, not this replica's: two
        replicas whose clocks disagree still agree on whether it ran out. (SQLite is one
        machine's file: its clock is ``now``.)
        """
        row = sync_leases.c
        until = self._ago(now, -seconds)
        # One statement: the conflict's UPDATE only happens where the lease is ours or lapsed,
        # and PostgreSQL's row lock orders two replicas trying at once.
        take = (
            self.db.insert(sync_leases)
            .values(name=name, owner=owner, lease_until=until)
            .on_conflict_do_update(
                index_elements=[row.name],
                set_={"owner": owner, "lease_until": until},
                where=sa.or_(row.owner == owner, row.lease_until <= self._now(now)),
            )
            .returning(row.owner)
        )
        with self.db.transaction(write=True) as conn:
            holder = conn.execute(take).scalar_one_or_none()
        return holder == owner

    def holds(self, name: str, *, owner: str, now: datetime) -> bool:
        """True while ``owner`` holds lease ``name`` unexpired (by the database's clock)."""
        row = sync_leases.c
        held = sa.select(row.owner).where(
            row.name == name, row.owner == owner, row.lease_until > self._now(now)
        )
        with self.db.transaction(write=False) as conn:
            return conn.execute(held).first() is not None

    def _now(self, now: datetime) -> Any:
        """The database's time on PostgreSQL; ``now`` on SQLite (one machine's file)."""
        if self.db.is_postgresql:
            return sa.func.clock_timestamp()
        return sa.literal(self.db.aware(now), UTCDateTime())

    def _ago(self, now: datetime, seconds: float) -> Any:
        """``seconds`` before :meth:`_now` (negative: after)."""
        if self.db.is_postgresql:
            return sa.func.clock_timestamp() - sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds)
        return sa.literal(self.db.aware(now) - timedelta(seconds=seconds), UTCDateTime())

    def _update(self, reader: str, **values: object) -> None:
        update = sync_progress.update().where(sync_progress.c.reader == reader).values(values)
        with self.db.transaction(write=True) as conn:
            conn.execute(update)
