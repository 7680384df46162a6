"""A database per test, on SQLite (always) and PostgreSQL (with BRIDGE_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import shutil
import tempfile
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


_SHM = "/dev/shm" if os.access("/dev/shm", os.W_OK) else ""


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A SQLite file in tmp_path, or a PostgreSQL schema of its own, dropped afterwards."""
    if backend == "sqlite":
        # In memory where the machine has a tmpfs (/dev/shm): the store syncs every commit to
        # disk (synchronous=FULL), and those waits were a fifth of a default run. A process
        # killed (kill -9) keeps what it committed there as on a disk; only the machine's
        # power going off would not, which no test does.
        where = Path(tempfile.mkdtemp(dir=_SHM)) if _SHM else tmp_path
        try:
            yield f"sqlite:///{where / 'bridge.db'}"
        finally:
            if _SHM:
                shutil.rmtree(where, ignore_errors=True)
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
