"""What every part of the Store stands on: the engine, its transactions and ON CONFLICT.

:class:`Database` holds the engine and the locks that take turns on it, opens the one short
transaction each of the Store's methods runs in, and closes the engine and the lock file when
the Store is closed. The Store (the outbox, store.py) and its parts (the shared rate budget,
budget.py; Cortex records and deploy history, records.py) share one Database object.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from bridge.store.batching import WriterLock
from bridge.store.engine import WRITE_OPTION, is_memory
from bridge.store.schema import StoreError, error_line


class Database:
    """One database's engine, and the transactions every part of the Store runs in."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # An in-memory SQLite database is one shared connection: take turns on it.
        self._serial = threading.Lock() if is_memory(engine) else None
        # A SQLite file: its writers, in every process, queue for one lock (batching.py).
        self.writer = (
            WriterLock(f"{engine.url.database}-bridge.lock")
            if engine.dialect.name == "sqlite" and not is_memory(engine)
            else None
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.writer is not None:
            self.writer.close()

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with self.transaction(write=False) as conn:
            conn.execute(sa.select(1))

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[Connection]:
        """One transaction, committed on leaving; database failures raised as StoreError."""
        serial: AbstractContextManager[Any] = self._serial or nullcontext()
        writer: AbstractContextManager[Any] = (write and self.writer) or nullcontext()
        with serial:
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(**{WRITE_OPTION: write})
                    # Checked out first: only the transaction itself holds up other writers.
                    with writer, conn.begin():
                        yield conn
            except sa.exc.SQLAlchemyError as exc:
                raise StoreError(f"database error: {error_line(exc)}") from exc

    @property
    def is_postgresql(self) -> bool:
        """True on PostgreSQL, False on SQLite."""
        return self.engine.dialect.name == "postgresql"

    def insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that knows ON CONFLICT; both dialects spell it the same way."""
        if self.is_postgresql:
            return postgresql.insert(table)
        return sqlite.insert(table)


def aware(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is a bug in the caller, not a time to guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware UTC time")
    return moment.astimezone(timezone.utc)
