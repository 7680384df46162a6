"""The console's reads: deliveries by filter, a delivery's attempts, hourly counts, deploys.

A part of the Store (``store.browse``), sharing its Database. Read-only, and every query is
bounded by a LIMIT or a time window. The event's fields live in the payload's JSON text: on
SQLite they are read with ``json_extract``/``json_each``, on PostgreSQL with ``jsonb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from bridge.store.schema import Delivery, attempts, deliveries, history

if TYPE_CHECKING:
    from bridge.store.store import Database

# The most rows one chart reads: a relay's 24 hours past this are drawn from the newest.
MAX_CHART_ROWS = 50_000


@dataclass(frozen=True)
class Filters:
    """What the console's delivery list is narrowed to; empty strings mean "any"."""

    status: str = ""
    source: str = ""
    repository: str = ""
    entity: str = ""
    environment: str = ""
    search: str = ""  # a sha (or its start), a dedupe key (or part), a delivery id


@dataclass(frozen=True)
class Attempt:
    """One finished delivery attempt."""

    attempt: int
    outcome: str
    finished_at: datetime
    error: str | None
    results: dict[str, Any]


@dataclass(frozen=True)
class LastDeploy:
    """A deploy Cortex accepted, from the history rollback detection reads."""

    entity: str
    environment: str
    sha: str
    deployed_at: datetime


class Browse:
    """The Store's reads for the console (``store.browse``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def deliveries(
        self, filters: Filters, *, limit: int = 50, after: int | None = None
    ) -> tuple[list[Delivery], int | None]:
        """A page of deliveries matching ``filters``, newest first, ids below ``after``."""
        page = deliveries.select().order_by(deliveries.c.id.desc()).limit(limit + 1)
        for condition in self._conditions(filters):
            page = page.where(condition)
        if after is not None:
            page = page.where(deliveries.c.id < after)
        with self.db.transaction(write=False) as conn:
            rows = conn.execute(page).mappings().all()
        found = [Delivery(**row) for row in rows[:limit]]
        return found, (found[-1].id if len(rows) > limit else None)

    def _conditions(self, f: Filters) -> list[ColumnElement[bool]]:
        c = deliveries.c
        where: list[ColumnElement[bool]] = []
        if f.status:
            where.append(c.status == f.status)
        if f.source:
            where.append(c.source == f.source)
        if f.repository:
            where.append(self._event_field("repository") == f.repository)
        if f.environment:
            where.append(self._event_field("environment") == f.environment)
        if f.entity:
            where.append(self._names_entity(f.entity))
        if f.search:
            where.append(self._searched(f.search.strip()))
        return where

    def _searched(self, term: str) -> ColumnElement[bool]:
        """A sha by its start, a dedupe key whole or by its last part (the SCM's delivery
        id, escaped as keys escape it: bridge/ingest.py), or the bridge's delivery id."""
        c = deliveries.c
        like = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        escaped = term.replace("%", "%25").replace(":", "%3A")
        escaped = escaped.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        found: list[ColumnElement[bool]] = [
            c.dedupe_key == term,
            c.dedupe_key.like("%:" + escaped, escape="\\"),
        ]
        if len(term) >= 4:  # git's shortest abbreviation
            found.append(self._event_field("sha").like(like + "%", escape="\\"))
        if term.isascii() and term.isdigit() and len(term) < 19:
            found.append(c.id == int(term))
        return sa.or_(*found)

    def _event_field(self, name: str) -> ColumnElement[Any]:
        if self.db.is_postgresql:
            field: ColumnElement[Any] = sa.cast(deliveries.c.payload, JSONB)["event"][name].astext
            return field
        return sa.func.json_extract(deliveries.c.payload, f"$.event.{name}")

    def _names_entity(self, entity: str) -> ColumnElement[bool]:
        if self.db.is_postgresql:
            entities = sa.cast(deliveries.c.payload, JSONB)["entities"]
            return entities.contains(sa.func.jsonb_build_array(entity))
        each = sa.func.json_each(deliveries.c.payload, "$.entities").table_valued("value")
        return sa.exists().select_from(each).where(each.c.value == entity)

    def attempts(self, delivery_id: int) -> list[Attempt]:
        """A delivery's finished attempts, first first."""
        query = (
            attempts.select()
            .where(attempts.c.delivery_id == delivery_id)
            .order_by(attempts.c.attempt)
        )
        with self.db.transaction(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [
            Attempt(
                attempt=row["attempt"],
                outcome=row["outcome"],
                finished_at=row["finished_at"],
                error=row["error"],
                results=row["results"],
            )
            for row in rows
        ]

    def received_since(self, since: datetime) -> list[tuple[datetime, str, datetime | None]]:
        """(received_at, status, delivered_at) of deliveries received since ``since``."""
        query = (
            sa.select(deliveries.c.received_at, deliveries.c.status, deliveries.c.delivered_at)
            .where(deliveries.c.received_at >= self.db.aware(since))
            .order_by(deliveries.c.id.desc())
            .limit(MAX_CHART_ROWS)
        )
        with self.db.transaction(write=False) as conn:
            return [(a, s, d) for a, s, d in conn.execute(query)]

    def last_deploys(self, *, per_pair: int = 5, limit: int = 2000) -> list[LastDeploy]:
        """The newest deploys of each entity and environment (from the newest ``limit``)."""
        query = (
            sa.select(history.c.entity, history.c.environment, history.c.sha, history.c.deployed_at)
            .order_by(history.c.deployed_at.desc())
            .limit(limit)
        )
        with self.db.transaction(write=False) as conn:
            rows = conn.execute(query).all()
        kept: dict[tuple[str, str], int] = {}
        found = []
        for entity, environment, sha, deployed_at in rows:
            pair = (entity, environment)
            if kept.get(pair, 0) < per_pair:
                kept[pair] = kept.get(pair, 0) + 1
                found.append(LastDeploy(entity, environment, sha, deployed_at))
        return sorted(found, key=lambda d: (d.entity, d.environment, -d.deployed_at.timestamp()))
