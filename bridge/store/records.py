"""Cortex records and deploy history: what the bridge made in Cortex, and what it deployed.

Each deploy's record in Cortex is kept under its idempotency key, so a later event for the
same deploy (a lifecycle's end, a redelivery) updates or skips that record rather than making
another. Each deploy Cortex accepted as succeeded is added to its entity's history per
environment, which rollback detection (bridge/rollback.py) reads. :class:`Records` is the part
of the Store that keeps both (``store.records``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.rollback import PastDeploy
from bridge.store.schema import Record, history, history_seeded, records

if TYPE_CHECKING:
    from bridge.store.store import Database


# The reads, built once (SQLAlchemy caches their compiled form). A record's columns are read
# under the names of Record's fields, a history row's under PastDeploy's: each row becomes
# its object by name, so a column added to both needs no code here.
_RECORD = sa.select(
    *(column.label("key") if column.name == "idempotency_key" else column for column in records.c)
).where(records.c.idempotency_key == sa.bindparam("key"))
_HISTORY = (
    sa.select(history.c.sha, history.c.deployed_at.label("timestamp"))
    .where(
        history.c.entity == sa.bindparam("entity"),
        history.c.environment == sa.bindparam("environment"),
    )
    .order_by(history.c.deployed_at, history.c.idempotency_key)
)
_SEEDED = sa.select(history_seeded.c.entity).where(
    history_seeded.c.entity == sa.bindparam("entity"),
    history_seeded.c.environment == sa.bindparam("environment"),
)
# What a later write for the same idempotency key replaces (started_at: only with an earlier
# time).
_REPLACED = ("entity", "cortex_uuid", "state", "updated_at")
# A deploy that ended unrecorded (no uuid) is no record the relay made.
_MADE = sa.select(records.c.idempotency_key).where(
    records.c.idempotency_key.in_(sa.bindparam("keys", expanding=True)),
    records.c.cortex_uuid != "",
)


@dataclass(frozen=True)
class RecordWrite:
    """A change to the records, stored with the delivery progress it belongs to.

    ``uuid``: the record Cortex now holds for ``key``, with ``customData.status`` ``state``;
    None: Cortex's record was deleted. ``deployed``: ``(environment, deploy)`` to add to the
    history with it, for a deploy Cortex holds as succeeded.
    """

    key: str
    entity: str
    uuid: str | None
    state: str = ""
    deployed: tuple[str | None, PastDeploy] | None = None
    started: datetime | None = None  # when the deploy started, where its event says


@dataclass(frozen=True)
class Lookup:
    """What the store knows for one deploy on one entity, read in one transaction."""

    record: Record | None
    history: list[PastDeploy] = field(default_factory=list)
    seeded: bool = False  # the environment's history was read from Cortex once


class Records:
    """The Store's Cortex records (by idempotency key) and deploy history (rollback detection)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # The writes, built once; their values are bound when they run.
        self._forget = records.delete().where(records.c.idempotency_key == sa.bindparam("key"))
        # A later write for the same key replaces what the record holds.
        kept = self.db.insert(records)
        self._keep = kept.on_conflict_do_update(
            index_elements=[records.c.idempotency_key],
            set_={
                **{name: kept.excluded[name] for name in _REPLACED},
                # A deploy starts once: the earliest start any of its events gave.
                "started_at": sa.case(
                    (records.c.started_at.is_(None), kept.excluded.started_at),
                    (kept.excluded.started_at < records.c.started_at, kept.excluded.started_at),
                    else_=records.c.started_at,
                ),
            },
        )
        self._add_history = self.db.insert(history).on_conflict_do_nothing(
            index_elements=[history.c.idempotency_key]
        )

    def get(self, key: str) -> Record | None:
        """The Cortex record made for an idempotency key."""
        with self.db.transaction(write=False) as conn:
            found = conn.execute(_RECORD, {"key": key}).mappings().first()
        return None if found is None else Record(**found)

    def made(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` the relay holds a record for."""
        wanted = sorted(set(keys))
        found: set[str] = set()
        with self.db.transaction(write=False) as conn:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                found.update(conn.execute(_MADE, {"keys": chunk}).scalars())
        return found

    def lookup(self, key: str, *, entity: str, environment: str | None) -> Lookup:
        """The record for ``key`` and the entity's history in ``environment``, at once."""
        pair = {"entity": entity, "environment": environment or ""}
        with self.db.transaction(write=False) as conn:
            found = conn.execute(_RECORD, {"key": key}).mappings().first()
            past = [PastDeploy(**row) for row in conn.execute(_HISTORY, pair).mappings()]
            seeded = bool(past) or conn.execute(_SEEDED, pair).first() is not None
        return Lookup(None if found is None else Record(**found), past, seeded)

    def save(
        self,
        key: str,
        *,
        entity: str,
        cortex_uuid: str,
        state: str,
        now: datetime,
        deployed: tuple[str | None, PastDeploy] | None = None,
    ) -> None:
        """Create or replace the Cortex record for an idempotency key (and its history)."""
        made = RecordWrite(key, entity, cortex_uuid, state, deployed)
        with self.db.transaction(write=True) as conn:
            self.apply(conn, [made], now=now)

    def apply(self, conn: Connection, writes: Sequence[RecordWrite], *, now: datetime) -> None:
        """Make ``writes`` in the caller's transaction, in order."""
        now = self.db.aware(now)
        for write in writes:
            if write.uuid is None:
                conn.execute(self._forget, {"key": write.key})
                continue
            kept = {
                "idempotency_key": write.key,
                "entity": write.entity,
                "cortex_uuid": write.uuid,
                "state": write.state,
                "updated_at": now,
                "started_at": None if write.started is None else self.db.aware(write.started),
            }
            conn.execute(self._keep, kept)
            if write.deployed is not None:
                environment, past = write.deployed
                added = {
                    "idempotency_key": write.key,
                    "entity": write.entity,
                    "environment": environment or "",
                    "sha": past.sha,
                    "deployed_at": self.db.aware(past.timestamp),
                }
                conn.execute(self._add_history, added)

    def delete(self, key: str) -> bool:
        """Forget the Cortex record for an idempotency key; False if there was none."""
        with self.db.transaction(write=True) as conn:
            gone = conn.execute(records.delete().where(records.c.idempotency_key == key))
            return gone.rowcount == 1

    # -- deploy history (rollback detection) ------------------------------------------------

    def history(self, entity: str, environment: str | None) -> list[PastDeploy]:
        """An entity's deploys to an environment, oldest first by the deploys' own times."""
        pair = {"entity": entity, "environment": environment or ""}
        with self.db.transaction(write=False) as conn:
            return [PastDeploy(**row) for row in conn.execute(_HISTORY, pair).mappings()]

    def history_seeded(self, entity: str, environment: str | None) -> bool:
        """True once :meth:`seed_history` ran for the entity and environment."""
        pair = {"entity": entity, "environment": environment or ""}
        with self.db.transaction(write=False) as conn:
            return conn.execute(_SEEDED, pair).first() is not None

    def add_history(
        self, *, entity: str, environment: str | None, sha: str, deployed_at: datetime, key: str
    ) -> bool:
        """Add a deploy Cortex accepted to the history; False if ``key`` was already there."""
        added = {
            "idempotency_key": key,
            "entity": entity,
            "environment": environment or "",
            "sha": sha,
            "deployed_at": self.db.aware(deployed_at),
        }
        with self.db.transaction(write=True) as conn:
            new = conn.execute(self._add_history.returning(history.c.idempotency_key), added)
            return new.first() is not None

    def add_to_kept_history(
        self, *, entity: str, environment: str | None, key: str, deploy: PastDeploy
    ) -> bool:
        """Add a deploy another path recorded (``sync``, the reconcile) to the history of an
        entity and environment whose history is kept here already (seeded, or with deploys);
        False where it is not (the relay seeds it from Cortex's listing on its first deploy
        there, this deploy included: a row added first would stand for that whole read), or
        ``key`` was there already. One transaction."""
        pair = {"entity": entity, "environment": environment or ""}
        added = {
            "idempotency_key": key,
            **pair,
            "sha": deploy.sha,
            "deployed_at": self.db.aware(deploy.timestamp),
        }
        kept = sa.select(history.c.idempotency_key).where(
            history.c.entity == entity, history.c.environment == (environment or "")
        )
        with self.db.transaction(write=True) as conn:
            seeded = conn.execute(_SEEDED, pair).first() is not None
            if not seeded and conn.execute(kept.limit(1)).first() is None:
                return False
            new = conn.execute(self._add_history.returning(history.c.idempotency_key), added)
            return new.first() is not None

    def seed_history(
        self,
        *,
        entity: str,
        environment: str | None,
        deploys: Iterable[tuple[str, PastDeploy]],
        made: Iterable[tuple[str, str, str]] = (),
        now: datetime,
    ) -> None:
        """Keep what Cortex's listing showed of an environment, in one transaction.

        ``deploys``: ``(key, deploy)`` pairs for the history (known keys are kept); ``made``:
        ``(key, uuid, state)`` of records another path (the Action, ``send``) made, kept as
        records unless the relay has its own. The environment counts as seeded even when the
        listing showed nothing.
        """
        now = self.db.aware(now)
        rows = [
            {
                "idempotency_key": key,
                "entity": entity,
                "environment": environment or "",
                "sha": past.sha,
                "deployed_at": self.db.aware(past.timestamp),
            }
            for key, past in deploys
        ]
        found = [
            {
                "idempotency_key": key,
                "entity": entity,
                "cortex_uuid": uuid,
                "state": state,
                "updated_at": now,
            }
            for key, uuid, state in made
        ]
        seeded = (
            self.db.insert(history_seeded)
            .values(entity=entity, environment=environment or "", seeded_at=now)
            .on_conflict_do_nothing(
                index_elements=[history_seeded.c.entity, history_seeded.c.environment]
            )
        )
        with self.db.transaction(write=True) as conn:
            if rows:
                add = self.db.insert(history).on_conflict_do_nothing(
                    index_elements=[history.c.idempotency_key]
                )
                conn.execute(add, rows)
            if found:
                adopt = self.db.insert(records).on_conflict_do_nothing(
                    index_elements=[records.c.idempotency_key]
                )
                conn.execute(adopt, found)
            conn.execute(seeded)
