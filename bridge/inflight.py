"""The memory one receiver process gives to request bodies whose signature is not checked yet.

GitHub signs the whole body (X-Hub-Signature-256 is an HMAC of every byte), so a body is read
in full before anyone knows who sent it. Without a bound, anonymous clients decide how much
memory a worker holds: 40 connections sending 24 MiB each took one worker to 1,355 MB. Here
each process holds at most ``server.max_unverified_bytes`` of such bodies at once; a request
whose next bytes would pass that is answered ``503`` with ``Retry-After`` (:class:`Busy`) and
its bytes are let go. Bytes are counted as they are read, a chunk at a time, so a client that
announces a large Content-Length and then sends slowly holds at most one chunk it has not sent.

No I/O here: the receiver's read loop asks a :class:`Hold` for room before each read.
"""

from __future__ import annotations

import threading
from types import TracebackType

# Seconds a refused sender is asked to wait: bodies in flight are done (or timed out by
# serve's --body-timeout) within seconds.
RETRY_AFTER_SECONDS = 5


class Busy(Exception):
    """503: the process holds as many unverified bytes as it may; try again later."""

    def __init__(self, reason: str, *, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class InFlight:
    """Bytes of unverified bodies held by one process, at most ``limit`` at any moment."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most ever held at once (for tests and benchmarks)
        self._lock = threading.Lock()

    def hold(self) -> Hold:
        """A hold for one request's body, given back when its ``with`` block ends."""
        return Hold(self)

    def _take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            self.peak = max(self.peak, self.held)
            return True

    def _give(self, size: int) -> None:
        with self._lock:
            self.held -= size


class Hold:
    """The bytes one request holds of its process's :class:`InFlight`."""

    def __init__(self, pool: InFlight) -> None:
        self.pool = pool
        self.size = 0

    def grow_to(self, size: int) -> None:
        """Hold ``size`` bytes in all (before reading them); Busy when the process has no room."""
        more = size - self.size
        if more <= 0:
            return
        if not self.pool._take(more):
            raise Busy(
                f"this receiver holds {self.pool.limit} bytes of bodies whose signature is not "
                "checked yet (server.max_unverified_bytes); try again later"
            )
        self.size = size

    def release(self) -> None:
        """Give every byte back (the signature is checked, or the request is over)."""
        self.pool._give(self.size)
        self.size = 0

    def __enter__(self) -> Hold:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
