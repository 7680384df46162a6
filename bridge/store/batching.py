"""Group commit, and the lock that lines up SQLite writers across processes.

A receiver answers 202 only once its event is committed, and a commit costs an fsync. Under
load, the threads of one process that store events at the same moment share one transaction
and one fsync (:class:`GroupCommit`): the first thread to arrive leads and writes what has
queued up by then, the others wait for its commit; while it writes, the next batch gathers
behind it. One thread alone still writes at once: nothing waits for a batch to fill.

SQLite admits one writer at a time and makes the others poll, sleeping up to 100 ms between
tries, so under load most of an acknowledgement went to sleeping. :class:`WriterLock` queues
the writers of every bridge process on one database behind a ``flock`` on a file beside it:
the kernel hands the lock over as soon as it is released, and drops it when its holder dies
(``kill -9`` included), so it never outlives a transaction.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Generic, TypeVar

from bridge.store.engine import create_private
from bridge.store.schema import StoreError

Item = TypeVar("Item")
Result = TypeVar("Result")

# Enough to amortize a commit over a burst; small enough that the first in a batch does not
# wait long for the last to be written.
MAX_BATCH = 64


class _Slot(Generic[Item, Result]):
    """One submitted item: its outcome once written, and whether it now leads."""

    __slots__ = ("done", "error", "item", "lead", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.done = threading.Event()
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.lead = False

    def outcome(self) -> Result:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class GroupCommit(Generic[Item, Result]):
    """Write items submitted by many threads in shared transactions.

    ``write`` stores a batch in one transaction and returns one result per item, in order;
    it raises when the transaction failed (nothing of the batch is then stored). A failed
    batch is written again one item at a time, so one bad item fails only its own caller.
    """

    def __init__(
        self, write: Callable[[Sequence[Item]], list[Result]], *, max_batch: int = MAX_BATCH
    ) -> None:
        self._write = write
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Slot[Item, Result]] = []
        self._leading = False

    def submit(self, item: Item) -> Result:
        """Write ``item`` (with whatever else is waiting) and return its result once committed."""
        slot: _Slot[Item, Result] = _Slot(item)
        with self._lock:
            self._queue.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.done.wait()
            if not slot.lead:
                return slot.outcome()
        # Leading: this slot is first in line, so the batch taken now includes it.
        with self._lock:
            batch = self._queue[: self._max]
            del self._queue[: self._max]
        try:
            self._write_batch(batch)
        finally:
            self._hand_over()
        return slot.outcome()

    def _write_batch(self, batch: list[_Slot[Item, Result]]) -> None:
        try:
            results = self._write([slot.item for slot in batch])
        except BaseException as exc:
            if len(batch) == 1 or not isinstance(exc, Exception):
                for slot in batch:
                    slot.error = exc
                    slot.done.set()
                return
            for slot in batch:
                self._write_batch([slot])
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result = result
            slot.done.set()

    def _hand_over(self) -> None:
        """The first waiting thread leads the next batch; with none waiting, nobody leads."""
        with self._lock:
            if self._queue:
                following = self._queue[0]
                following.lead = True
                following.done.set()
            else:
                self._leading = False


class WriterLock:
    """One writer at a time, across the threads and processes using one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._opened_by = -1

    def __enter__(self) -> WriterLock:
        """Wait for this process's turn, then for the file's."""
        self._threads.acquire()
        try:
            fcntl.flock(self._descriptor(), fcntl.LOCK_EX)
        except OSError as exc:
            self._threads.release()
            reason = (exc.strerror or type(exc).__name__).lower()
            raise StoreError(f"cannot lock {self.path} for writing: {reason}") from exc
        except BaseException:
            self._threads.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Let the next writer in."""
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        """Close the lock file (taken again on the next write)."""
        with self._threads:
            if self._fd is not None and self._opened_by == os.getpid():
                os.close(self._fd)
            self._fd = None

    def _descriptor(self) -> int:
        # A flock belongs to the open file, which a forked child shares with its parent
        # (gunicorn loads the app before forking when asked to): each process opens its own.
        if self._fd is None or self._opened_by != os.getpid():
            self._fd, self._opened_by = open_private(self.path), os.getpid()
        return self._fd


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
