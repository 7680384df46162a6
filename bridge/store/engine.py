"""Turn a database URL into an engine that behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import errno
import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bridge.errors import ConfigError
from bridge.urls import psycopg_url

# How long a SQLite writer waits for another one before "database is locked". Writes here
# are one short transaction each, so a wait this long only happens when something is stuck.
BUSY_TIMEOUT_MS = 10_000
# So /readyz answers "not ready" instead of hanging on an unreachable PostgreSQL.
CONNECT_TIMEOUT_SECONDS = 10
_SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite")


def create_engine(url: str) -> Engine:
    """An engine for a ``sqlite:///...`` or ``postgresql[+psycopg]://...`` URL."""
    try:
        parsed = sa.make_url(psycopg_url(url))
    except (sa.exc.ArgumentError, ValueError):  # ValueError: a port that is not a number
        # from None: the parse error may quote the URL, and with it a password.
        raise ConfigError(
            "database", "not a database URL (sqlite:///... or postgresql://...)"
        ) from None
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(
            parsed,
            pool_pre_ping=True,  # replicas outlive a PostgreSQL restart without a 5xx burst
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
        )
        sa.event.listen(engine, "connect", _on_postgresql_connect)
        return engine
    if parsed.drivername in _SQLITE_DRIVERS:
        return _sqlite_engine(parsed)
    shown = parsed.render_as_string(hide_password=True)
    raise ConfigError("database", f"unsupported database {shown!r}: use sqlite or postgresql")


def is_memory(engine: Engine) -> bool:
    """True for a SQLite database that lives in one connection's memory."""
    return engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database in (None, "", ":memory:"):
        # One connection shared by every thread (the store serializes use of it), so that
        # all of them see the same in-memory database: for tests and `demo` only.
        engine = sa.create_engine(
            url, poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
        )
    else:
        engine = sa.create_engine(url)
        path = url.database

        def before_connect(*_args: Any) -> None:
            # SQLite makes a new database 0644 (less the umask), and its -wal and -shm files
            # with the database's mode: made here first, all three are the owner's alone. An
            # existing database keeps its mode (group-readable may be meant, for an admin's
            # `deliveries` beside the service); other failures are SQLite's to report.
            if path and not url.query.get("uri"):
                try:
                    fd = create_private(path)
                except OSError:
                    return
                if fd is not None:
                    os.close(fd)

        sa.event.listen(engine, "do_connect", before_connect)
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    return engine


def create_private(path: str) -> int | None:
    """A read-write descriptor on ``path`` made now, empty and 0600 whatever the umask.

    None when something (a file, a symbolic link) is there already: it is not touched here.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return None
    os.fchmod(fd, 0o600)  # the umask may have taken the owner's own bits away
    return fd


def open_private(path: str) -> int:
    """A descriptor on ``path``, made 0600 (whatever the umask) when this call creates it.

    Never through a symbolic link: one planted there could point the writes of the bridge at
    any file its user may write. A file another user made (an admin's CLI beside the
    service) is opened read-only: a flock needs no write access, only an open file.
    """
    created = create_private(path)
    if created is not None:
        return created
    base = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        try:
            return os.open(path, base | os.O_RDWR)
        except PermissionError:
            return os.open(path, base | os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(
                errno.ELOOP, "it is a symbolic link, which the bridge does not follow"
            ) from None
        raise


def _on_postgresql_connect(dbapi_connection: Any, _record: Any) -> None:
    # Once per connection: timestamptz values come back in the session's zone, so with UTC
    # the driver hands back aware UTC datetimes as they are (schema.py's UTCDateTime).
    dbapi_connection.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The Database issues BEGIN itself (store.py, Database.transaction), so pysqlite must
    # not: its implicit deferred BEGIN lets two writers both read and then fail to upgrade to
    # the write lock. https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#sqlite-enabling-transactions
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL: readers (admin API, metrics) never block the writer that answers a webhook.
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: in WAL mode NORMAL already survives kill -9 (the commit is in the OS page
        # cache), but it may lose the last commits on power loss or an OS crash; a 202 is
        # our promise that the event is on disk and GitHub does not redeliver by itself,
        # so pay one fsync per commit. https://www.sqlite.org/pragma.html#pragma_synchronous
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()
