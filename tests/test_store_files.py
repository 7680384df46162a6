"""The SQLite files of the bridge: the database, its -wal and -shm, and the writer lock.

They hold webhook payloads (and, through the records, what Cortex holds): each is created
0600 whatever the umask, and the lock file is never opened through a symbolic link.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.store import Store, StoreError

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277], indirect=True)
def test_database_wal_shm_and_lock_are_0600(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "bridge.db"
    with Store.from_url(f"sqlite:///{db}") as store:
        store.enqueue(dedupe_key="k", source="github", event_name="ping", payload={}, now=NOW)
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-bridge.lock")]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert store.get(1) is not None


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    with Store.from_url(f"sqlite:///{db}"):
        pass
    db.chmod(0o640)  # group-readable on purpose: an admin's `deliveries` beside the service
    with Store.from_url(f"sqlite:///{db}") as store:
        store.enqueue(dedupe_key="k", source="github", event_name="ping", payload={}, now=NOW)
    assert mode(db) == 0o640


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    target = tmp_path / "elsewhere"
    Path(f"{db}-bridge.lock").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link") as caught:
        Store.from_url(f"sqlite:///{db}")
    assert str(caught.value).count("\n") == 0
    assert f"{db}-bridge.lock" in str(caught.value)
    assert not target.exists()
    target.write_text("precious")
    with pytest.raises(StoreError, match="symbolic link"):
        Store.from_url(f"sqlite:///{db}")
    assert target.read_text() == "precious"
