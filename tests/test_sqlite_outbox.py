"""The SQLite fast INSERT path writes, byte for byte, what the Store's own path writes.

On a SQLite file, ``Database.insert_outbox`` runs the Store's outbox INSERT on the driver's
cursor (for speed: benchmarks/RESULTS.md, "SQLite fast path"). The Store's own path
(``Store._insert_core``, SQLAlchemy Core) is what PostgreSQL uses. Both are fed the same
events here, one by one through ``Store.enqueue`` and as one batch with a repeat inside it;
the answers and every column of every row must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.store import Store
from bridge.store.engine import create_engine
from bridge.store.schema import deliveries
from bridge.store.store import GroupCommit

T0 = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=timezone.utc)

EVENTS: list[dict[str, Any]] = [
    {"dedupe_key": "github:1:a", "source": "github", "event_name": "deployment_status",
     "payload": {"event": {"repository": "acme/api", "sha": "a" * 40}}, "group_key": "acme/api"},
    {"dedupe_key": "gitlab:\u00e9\u65e5", "source": "gitlab", "event_name": "Deployment Hook",
     "payload": {"title": "caf\u00e9 \u2014 \U0001f680", "n": [1, 2.5, None, True]},
     "group_key": None},
    {"dedupe_key": "github:1:a", "source": "github", "event_name": "deployment_status",
     "payload": {"a repeat": "stores nothing"}, "group_key": "acme/api"},
    {"dedupe_key": "x" * 200, "source": "github", "event_name": "workflow_run",
     "payload": {}, "group_key": "g" * 300},
]  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """The two database files: the fast path's, the Store's own path's."""
    return tmp_path / "fast.db", tmp_path / "plain.db"


@pytest.fixture
def stores(files: tuple[Path, Path]) -> Iterator[tuple[Store, Store]]:
    """(the fast path, the Store's own path), each on its own SQLite file."""
    fast = Store.from_url(f"sqlite:///{files[0]}")
    plain = Store.from_url(f"sqlite:///{files[1]}")
    assert fast._sqlite_params is not None  # a SQLite file takes the fast path
    plain._sqlite_params = None  # ...and this one the path PostgreSQL takes
    plain._enqueues = GroupCommit(plain._insert_core)
    try:
        yield fast, plain
    finally:
        fast.close()
        plain.close()


def rows(path: Path) -> list[dict[str, Any]]:
    """Every outbox row as the database file holds it (raw values, no type processing)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            names = ", ".join(column.name for column in deliveries.columns)
            found = conn.execute(sa.text(f"SELECT {names} FROM {deliveries.name} ORDER BY id"))  # noqa: S608
            return [dict(row._mapping) for row in found]
    finally:
        engine.dispose()


def test_enqueue_one_by_one_writes_the_same_rows(
    stores: tuple[Store, Store], files: tuple[Path, Path]
) -> None:
    fast, plain = stores
    answers = {}
    for name, store in (("fast", fast), ("plain", plain)):
        answers[name] = [
            store.enqueue(**event, now=T0 + timedelta(microseconds=n))
            for n, event in enumerate(EVENTS)
        ]
    assert answers["fast"] == answers["plain"]
    assert [created for _, created in answers["fast"]] == [True, True, False, True]
    assert rows(files[0]) == rows(files[1])
    assert len(rows(files[0])) == 3


def test_one_batch_with_a_repeat_inside_writes_the_same_rows(
    stores: tuple[Store, Store], files: tuple[Path, Path], tmp_path: Path
) -> None:
    fast, plain = stores
    by_fast = fast._enqueues._write(
        [_submitted(event, T0, tmp_path, driver=True) for event in EVENTS]
    )
    by_plain = plain._insert_core(
        [_submitted(event, T0, tmp_path, driver=False) for event in EVENTS]
    )
    assert by_fast == by_plain
    assert [created for _, created in by_fast] == [True, True, False, True]
    assert rows(files[0]) == rows(files[1])


def _submitted(event: dict[str, Any], now: datetime, tmp: Path, *, driver: bool) -> Any:
    """What ``Store.enqueue`` hands its group commit, through its own code: enqueue into a
    scratch store (a SQLite file). ``driver``: the file's (parameters, key); else the row
    PostgreSQL's takes."""
    captured: list[Any] = []
    scratch = Store.from_url(f"sqlite:///{tmp / 'scratch.db'}")
    try:
        if not driver:
            scratch._sqlite_params = None
        scratch._enqueues = GroupCommit(lambda batch: [captured.extend(batch) or (0, True)])  # type: ignore[func-returns-value]
        scratch.enqueue(**event, now=now)
    finally:
        scratch.close()
    return captured[0]
