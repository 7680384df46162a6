"""The shared rate budget on the database: one row per budget, one UPDATE per draw.

Every replica's workers draw their requests to Cortex from one token bucket kept in the
``rate_budgets`` table; bucket.py holds its arithmetic, which each statement here runs inside
the database, so the row lock PostgreSQL takes for the UPDATE orders the draws of the whole
fleet. :class:`Budgets` is the part of the Store that keeps it (``store.budget``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bridge.store import bucket
from bridge.store.schema import rate_budgets

if TYPE_CHECKING:
    from bridge.store.store import Database

# The one budget there is today: requests to Cortex, which limits each client.
CORTEX_BUDGET = "cortex"


@dataclass(frozen=True)
class Draw:
    """One request taken from a shared rate budget: when it may be sent."""

    wait_seconds: float  # 0: at once
    paused_until: datetime | None  # set while Cortex has asked every client to wait


class Budgets:
    """The Store's shared rate budgets, which every replica draws from."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def draw(self, *, now: datetime, per_minute: int, name: str = CORTEX_BUDGET) -> Draw:
        """Take one request from the budget every replica shares; when it may be sent."""
        if per_minute < 1:
            raise ValueError(f"per_minute must be positive: {per_minute!r}")
        at = self.db.aware(now).timestamp()
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
        with self.db.transaction(write=True) as conn:
            found = self._on_budget(conn, drawn, name=name, tokens=most, at=at)
        tokens, paused_until = float(found.tokens), float(found.paused_until)
        return Draw(
            wait_seconds=bucket.wait_seconds(tokens, paused_until, at, rate=rate),
            paused_until=_from_epoch(paused_until) if paused_until > at else None,
        )

    def pause(self, *, until: datetime, name: str = CORTEX_BUDGET) -> None:
        """Stop every replica's requests until ``until`` (Cortex answered 429)."""
        at = self.db.aware(until).timestamp()
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
        with self.db.transaction(write=True) as conn:
            self._on_budget(conn, paused, name=name, tokens=0.0, at=at)

    def paused_until(self, *, name: str = CORTEX_BUDGET) -> datetime | None:
        """Until when Cortex asked every replica to wait; None if it never did."""
        paused = sa.select(rate_budgets.c.paused_until).where(rate_budgets.c.name == name)
        with self.db.transaction(write=False) as conn:
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
            self.db.insert(rate_budgets)
            .values(name=name, tokens=tokens, counted_at=at, paused_until=0.0)
            .on_conflict_do_nothing(index_elements=[rate_budgets.c.name])
        )
        conn.execute(seed)
        return conn.execute(update).one()

    def _least_greatest(self) -> tuple[bucket.Pick, bucket.Pick]:
        """The two-argument min and max of SQL: LEAST/GREATEST, or SQLite's scalar min/max."""
        if self.db.is_postgresql:
            return sa.func.least, sa.func.greatest
        return sa.func.min, sa.func.max


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)
