"""A database per test, on SQLite (always) and PostgreSQL (with BRIDGE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.store.engine import create_engine

PG_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "")
NO_PG = "BRIDGE_TEST_POSTGRES_URL not set: PostgreSQL tests skipped"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not PG_URL, reason=NO_PG)],
    ),
]


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A SQLite file in tmp_path, or a PostgreSQL schema of its own, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'bridge.db'}"
        return
    # A schema per test, named on every connection's search_path: as isolated as a fresh
    # database, at a fraction of CREATE DATABASE's cost, and the tables need no names changed.
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        scoped = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()
