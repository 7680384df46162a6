"""Two bounded journals the console reads: webhooks turned away or ignored, reconcile runs.

A part of the Store (``store.journal``), sharing its Database. Each table keeps only its
newest rows: every write deletes, by primary key range, whatever fell past the bound, so
the table never grows and a write costs one INSERT and one indexed DELETE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.store.schema import reconcile_runs, turned_away

if TYPE_CHECKING:
    from bridge.store.store import Database

# How many turned-away webhooks and reconcile runs are kept (docs/limits.md).
MAX_TURNED_AWAY = 1000
# ... and, kept apart, those refused before their sender was verified: "unauthorized" (a bad
# or missing signature or token) and "unverified" (a disabled source, a body too large or cut
# short): anyone can send those, and a flood of them must not push out the rest.
MAX_UNAUTHORIZED = 100
UNAUTHORIZED = "unauthorized"
UNVERIFIED = "unverified"
APART = (UNAUTHORIZED, UNVERIFIED)
MAX_RECONCILE_RUNS = 200
# Each text kept of a turned-away webhook (header values, the reason) is cut to this.
MAX_TEXT = 500


@dataclass(frozen=True)
class TurnedAway:
    """One webhook the receiver answered without storing an event: rejected or ignored."""

    received_at: datetime
    source: str
    event: str
    delivery: str
    code: int
    answer: str  # ignored | rejected | unauthorized
    reason: str
    id: int = 0


@dataclass(frozen=True)
class ReconcileRun:
    """One periodic reconcile: its window, and per source the verdicts counted or its error."""

    started_at: datetime
    finished_at: datetime
    owner: str
    since: datetime
    until: datetime
    sources: list[dict[str, Any]]
    id: int = 0


class Journal:
    """The Store's bounded journals (``store.journal``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add_turned_away(
        self,
        rows: Sequence[TurnedAway],
        *,
        keep: int = MAX_TURNED_AWAY,
        keep_unauthorized: int = MAX_UNAUTHORIZED,
    ) -> None:
        """Keep ``rows`` (one transaction): of those refused before their sender was verified
        (APART) only the newest ``keep_unauthorized``, of the others the newest ``keep``."""
        if not rows:
            return
        values = [
            {
                "received_at": self.db.aware(row.received_at),
                "source": _cut(row.source),
                "event": _cut(row.event),
                "delivery": _cut(row.delivery),
                "code": row.code,
                "answer": _cut(row.answer),
                "reason": _cut(row.reason),
            }
            for row in rows[-(keep + keep_unauthorized) :]
        ]
        with self.db.transaction(write=True) as conn:
            conn.execute(turned_away.insert(), values)
            refused = turned_away.c.answer.in_(APART)
            for kind, most in ((refused, keep_unauthorized), (sa.not_(refused), keep)):
                # The id of the newest row past the bound, if any: it and the older go.
                past = conn.execute(
                    sa.select(turned_away.c.id)
                    .where(kind)
                    .order_by(turned_away.c.id.desc())
                    .offset(most)
                    .limit(1)
                ).scalar()
                if past is not None:
                    conn.execute(turned_away.delete().where(kind, turned_away.c.id <= past))

    def turned_away(
        self,
        *,
        limit: int = 100,
        answer: str | None = None,
        source: str | None = None,
        delivery: str | None = None,
    ) -> list[TurnedAway]:
        """The newest turned-away webhooks first, optionally of one answer, source, delivery."""
        query = turned_away.select().order_by(turned_away.c.id.desc()).limit(limit)
        if delivery:
            query = query.where(turned_away.c.delivery == delivery)
        if answer:
            query = query.where(turned_away.c.answer == answer)
        if source:
            query = query.where(turned_away.c.source == source)
        with self.db.transaction(write=False) as conn:
            return [TurnedAway(**row) for row in conn.execute(query).mappings()]

    def add_reconcile_run(self, run: ReconcileRun, *, keep: int = MAX_RECONCILE_RUNS) -> None:
        """Keep one reconcile run, and only the newest ``keep`` runs."""
        values = {
            "started_at": self.db.aware(run.started_at),
            "finished_at": self.db.aware(run.finished_at),
            "owner": run.owner,
            "since": self.db.aware(run.since),
            "until": self.db.aware(run.until),
            "sources": json.dumps(run.sources, separators=(",", ":")),
        }
        with self.db.transaction(write=True) as conn:
            conn.execute(reconcile_runs.insert().values(values))
            _prune(conn, reconcile_runs, keep)

    def reconcile_runs(self, *, limit: int = 50) -> list[ReconcileRun]:
        """The newest reconcile runs first."""
        query = reconcile_runs.select().order_by(reconcile_runs.c.id.desc()).limit(limit)
        with self.db.transaction(write=False) as conn:
            rows = conn.execute(query).mappings().all()
        return [ReconcileRun(**{**row, "sources": json.loads(row["sources"])}) for row in rows]


def _prune(conn: Connection, table: sa.Table, keep: int) -> None:
    """Delete every row but the newest ``keep`` (ids only grow: AUTOINCREMENT, a sequence)."""
    newest = conn.execute(sa.select(sa.func.max(table.c.id))).scalar_one()
    if newest is not None and newest > keep:
        conn.execute(table.delete().where(table.c.id <= newest - keep))


def _cut(text: str) -> str:
    """A text any backend stores (no NUL), at most MAX_TEXT characters."""
    return text.replace("\x00", "\ufffd")[:MAX_TEXT]
