"""Group commit, and the lock that lines up SQLite writers across processes (store.py)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.store import Store, StoreError
from bridge.store.engine import create_engine
from bridge.store.schema import deliveries
from bridge.store.store import Database, GroupCommit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


class Recorder:
    """A ``write`` that records its batches; slow enough that others queue behind it."""

    def __init__(self, *, fail_on: object = None, pause: float = 0.005) -> None:
        self.batches: list[list[object]] = []
        self.fail_on = fail_on
        self.pause = pause
        self.active = 0
        self.overlapped = False
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[object]) -> list[str]:
        with self._lock:
            self.active += 1
            self.overlapped |= self.active > 1
        try:
            time.sleep(self.pause)
            if self.fail_on is not None and self.fail_on in items:
                raise RuntimeError(f"cannot write {self.fail_on!r}")
            self.batches.append(list(items))
            return [f"done:{item}" for item in items]
        finally:
            with self._lock:
                self.active -= 1


def submit_all(group: GroupCommit[object, str], items: list[object]) -> dict[object, object]:
    outcomes: dict[object, object] = {}
    start = threading.Barrier(len(items))

    def one(item: object) -> None:
        start.wait()
        try:
            outcomes[item] = group.submit(item)
        except Exception as exc:
            outcomes[item] = exc

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_one_thread_writes_at_once_alone() -> None:
    write = Recorder(pause=0)
    group: GroupCommit[object, str] = GroupCommit(write)
    assert group.submit("a") == "done:a"
    assert group.submit("b") == "done:b"
    assert write.batches == [["a"], ["b"]]


def test_concurrent_items_share_batches_and_each_gets_its_own_result() -> None:
    write = Recorder()
    group: GroupCommit[object, str] = GroupCommit(write)
    items: list[object] = list(range(40))
    outcomes = submit_all(group, items)
    assert outcomes == {item: f"done:{item}" for item in items}
    written = [item for batch in write.batches for item in batch]
    assert sorted(written) == items  # each written exactly once
    assert len(write.batches) < len(items)  # some shared a transaction
    assert not write.overlapped  # one batch at a time


def test_batches_are_capped() -> None:
    write = Recorder()
    group: GroupCommit[object, str] = GroupCommit(write, max_batch=4)
    submit_all(group, list(range(30)))
    assert max(len(batch) for batch in write.batches) <= 4


def test_a_failed_batch_fails_only_the_bad_item() -> None:
    write = Recorder(fail_on=7)
    group: GroupCommit[object, str] = GroupCommit(write)
    outcomes = submit_all(group, list(range(20)))
    assert isinstance(outcomes[7], RuntimeError)
    assert {k: v for k, v in outcomes.items() if k != 7} == {
        item: f"done:{item}" for item in range(20) if item != 7
    }
    # ...and the group keeps working afterwards.
    assert group.submit("later") == "done:later"


def test_enqueue_from_many_threads_stores_each_event_once(tmp_path: Path) -> None:
    with Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}") as store:
        keys = [f"github:{n % 25}" for n in range(50)]  # every key twice
        results: list[tuple[str, int, bool]] = []
        start = threading.Barrier(len(keys))

        def one(key: str) -> None:
            start.wait()
            found, created = store.enqueue(
                dedupe_key=key, source="github", event_name="deployment_status",
                payload={"key": key}, now=NOW, group_key=key,
            )  # fmt: skip
            results.append((key, found, created))

        threads = [threading.Thread(target=one, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert len(results) == 50
        assert sum(created for _, _, created in results) == 25
        ids = {key: {found for k, found, _ in results if k == key} for key in set(keys)}
        assert all(len(found) == 1 for found in ids.values())  # a repeat gets the first id
        assert store.counts().get("queued") == 25


def test_enqueue_on_a_broken_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    with Store.from_url(f"sqlite:///{path}") as store:
        with store.db.engine.begin() as conn:
            deliveries.drop(conn)
        with pytest.raises(StoreError):
            store.enqueue(
                dedupe_key="github:x", source="github", event_name="ping", payload={}, now=NOW
            )


# -- the writer lock across processes ------------------------------------------------------


def _count_under_lock(path: str, counter: str, rounds: int) -> None:
    db = Database(create_engine(f"sqlite:///{path}"))
    try:
        for _ in range(rounds):
            with db.transaction(write=True):
                value = int(Path(counter).read_text() or "0")
                time.sleep(0.0005)  # a read-modify-write that loses updates without the lock
                Path(counter).write_text(str(value + 1))
    finally:
        db.close()


def test_writer_lock_serializes_processes_and_threads(tmp_path: Path) -> None:
    path, counter = str(tmp_path / "db"), tmp_path / "counter"
    counter.write_text("0")
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_count_under_lock, args=(path, str(counter), 40)) for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    threads = [
        threading.Thread(target=_count_under_lock, args=(path, str(counter), 40)) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert counter.read_text() == str(5 * 40)


def test_writer_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from bridge.store.engine import create_engine
                from bridge.store.store import Database
                db = Database(create_engine("sqlite:///" + {str(path)!r}))
                held = db.transaction(write=True)  # kept: its release would run when collected
                held.__enter__()
                print("held", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        taken = threading.Event()

        def take() -> None:
            db = Database(create_engine(f"sqlite:///{path}"))
            try:
                with db.transaction(write=True):
                    taken.set()
            finally:
                db.close()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not taken.wait(0.3)  # held by the other process
        holder.send_signal(signal.SIGKILL)
        assert taken.wait(5)  # the kernel dropped it with its holder
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_store_writes_queue_on_a_lock_file_beside_the_database(tmp_path: Path) -> None:
    with Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}") as store:
        store.enqueue(
            dedupe_key="github:1", source="github", event_name="ping", payload={}, now=NOW
        )
    assert (tmp_path / "bridge.db-bridge.lock").exists()


def test_the_outbox_write_waits_for_the_files_writer_lock_and_reopens_after_a_failure(
    tmp_path: Path,
) -> None:
    # The outbox INSERT runs on a driver connection of the Database's own, not through
    # Database.transaction: it takes the same turn (the file's flock, held here by "another
    # process": another open file), and a failed transaction leaves the next one a connection.
    path = tmp_path / "bridge.db"
    with Store.from_url(f"sqlite:///{path}") as store:
        stored: list[tuple[int, bool]] = []

        def put(key: str) -> None:
            stored.append(
                store.enqueue(
                    dedupe_key=key, source="github", event_name="ping", payload={}, now=NOW
                )
            )

        fd = os.open(f"{path}-bridge.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            writer = threading.Thread(target=put, args=("github:1",))
            writer.start()
            time.sleep(0.3)
            assert stored == []  # waiting for the lock
            fcntl.flock(fd, fcntl.LOCK_UN)
            writer.join(5)
            assert stored == [(1, True)]
        finally:
            os.close(fd)
        with store.db.engine.begin() as conn:
            deliveries.drop(conn)
        with pytest.raises(StoreError, match="no such table"):
            put("github:2")
        with store.db.engine.begin() as conn:
            deliveries.create(conn)
        put("github:3")
        assert stored[-1][1] is True


def test_a_lock_that_cannot_be_taken_is_a_store_error(tmp_path: Path) -> None:
    db = Database(create_engine(f"sqlite:///{tmp_path / 'db'}"))
    db.lock_path = str(tmp_path / "no-such-dir" / "db-bridge.lock")
    try:
        with pytest.raises(StoreError, match=r"cannot lock .* for writing"):  # noqa: SIM117
            with db.transaction(write=True):
                pass
        tmp_path.joinpath("no-such-dir").mkdir()
        with db.transaction(write=True):  # and the lock is usable once the cause is gone
            pass
        assert (tmp_path / "no-such-dir" / "db-bridge.lock").exists()
    finally:
        db.close()
