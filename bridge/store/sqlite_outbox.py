"""The outbox INSERT on a SQLite file, run on the driver's own connection.

This is the one write between a webhook's arrival and its 202, and on SQLite every process
waits for it in turn. Through SQLAlchemy, each row cost more CPU in the execution machinery
(parameter processing, compiled-cache lookups, events) than SQLite spent inserting and
committing it, and all of it ran while the other writers waited for the lock (see
benchmarks/RESULTS.md, "Receiver"). So the statement is compiled by SQLAlchemy once, the
parameters are converted with the columns' own bind processors before the lock is taken,
and only the driver calls run under it. Everything else in the store goes through
SQLAlchemy Core; PostgreSQL, with its own row locks, needs none of this.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from bridge.store.batching import WriterLock
from bridge.store.schema import StoreError, deliveries, error_line

# What one event becomes before the lock: the INSERT's parameters, and its dedupe key.
Prepared = tuple[tuple[Any, ...], str]


class SqliteOutbox:
    """Insert outbox rows in one transaction per batch, under the writers' lock."""

    def __init__(
        self,
        engine: Engine,
        writer: WriterLock,
        insert: ClauseElement,
        first: ClauseElement,
    ) -> None:
        """``insert``: the Store's outbox INSERT, one bind parameter per column it sets,
        returning the id; ``first``: the id of the row holding a dedupe key, its one
        parameter."""
        self._engine = engine
        self._writer = writer
        dialect = engine.dialect
        compiled = cast(SQLCompiler, insert.compile(dialect=dialect))  # a statement's compiler
        self._insert_sql = str(compiled)
        self._order: Sequence[str] = compiled.positiontup or []
        self._first_sql = str(first.compile(dialect=dialect))
        self._convert: dict[str, Callable[[Any], Any] | None] = {
            name: deliveries.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self._order
        }

    def prepare(self, row: Mapping[str, Any]) -> Prepared:
        """The row as the driver takes it; done by the caller's thread, before any lock."""
        params = []
        for name in self._order:
            convert = self._convert[name]
            params.append(convert(row[name]) if convert is not None else row[name])
        return tuple(params), row["dedupe_key"]

    def write(self, batch: Sequence[Prepared]) -> list[tuple[int, bool]]:
        """Insert each row unless its key is there: (id, True), else (first id, False).

        Under gevent (``serve``), on one of gevent's native threads: the commit's fsync
        would otherwise stop every other connection of the process while it lasts.
        """
        offload = _native_thread()
        if offload is not None:
            return offload(self._write, (batch,))  # type: ignore[no-any-return]
        return self._write(batch)

    def _write(self, batch: Sequence[Prepared]) -> list[tuple[int, bool]]:
        stored: list[tuple[int, bool]] = []
        try:
            connection = self._engine.raw_connection()
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"database error: {error_line(exc)}") from exc
        try:
            cursor = connection.cursor()
            with self._writer:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    for params, key in batch:
                        found = cursor.execute(self._insert_sql, params).fetchone()
                        if found is not None:
                            stored.append((int(found[0]), True))
                            continue
                        first = cursor.execute(self._first_sql, (key,)).fetchone()
                        stored.append((int(first[0]), False))
                    connection.commit()
                except BaseException:
                    connection.rollback()
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {error_line(exc)}") from exc
        finally:
            connection.close()  # back to the pool
        return stored


def _native_thread() -> Callable[..., Any] | None:
    """gevent's way to run a call on a native thread, when gevent has patched threading."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return None
    import gevent

    return gevent.get_hub().threadpool.apply  # type: ignore[no-any-return]
