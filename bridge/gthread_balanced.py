"""gunicorn's gthread worker, except that a process with no thread free lets others accept.

All of ``serve``'s processes accept on one socket, and with gthread whichever is awake takes
the next connection, busy or not. Clients that keep their connections (a load balancer's
pool, a burst of keep-alive requests) then end up on one process: it runs at one core, the
GIL's limit, while the others idle (measured: 6.15 s of CPU against 0.19 s in one load, and
half the throughput; see benchmarks/RESULTS.md, "Receiver"). gunicorn's own cap,
``worker_connections``, counts idle kept-alive connections too, so a cap low enough to
balance makes requests wait in the backlog for an idle connection to time out.

Here a process stops accepting while every one of its threads has a request, and starts
again as soon as one is free. Kept-alive connections stay open and keep being served; only
the choice of who takes a *new* connection changes. Everything runs on the worker's main
thread, as gthread's own bookkeeping does.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class BalancedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread that accepts a new connection only with a thread free to serve it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0  # requests handed to the thread pool and not yet finished

    def enqueue_req(self, conn: Any) -> None:
        """Count a request handed to a thread."""
        self.in_flight += 1
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Future[Any]) -> None:
        """Count a request finished; the main loop then accepts again if it had stopped."""
        self.in_flight -= 1
        super().finish_request(conn, fs)

    def accept(self, listener: Any) -> None:
        """Take one connection; stop taking more while no thread is free."""
        super().accept(listener)
        if self._busy():
            self.set_accept_enabled(False)

    def set_accept_enabled(self, enabled: bool) -> None:
        """gthread's switch, except that a busy process does not switch accepting back on."""
        if enabled and self.alive and self._busy():
            return
        super().set_accept_enabled(enabled)

    def _busy(self) -> bool:
        threads: int = self.cfg.threads
        return self.in_flight >= threads
