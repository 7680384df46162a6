"""The loopback server under every stand-in: it serves in a thread of its own and stops at once.

``serve_forever`` notices a shutdown only at its next poll, so each stop waited up to a poll
interval; a test suite that starts a stand-in per test spent a quarter of its time there. This
loop also waits on a wake-up socket, which ``stop`` writes to.
"""

from __future__ import annotations

import selectors
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInServer(ThreadingHTTPServer):
    """A threading HTTP server with ``start`` (a daemon thread) and ``stop`` (at once)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._wake_read, self._wake_write = socket.socketpair()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a background thread until ``stop``."""
        self._thread = threading.Thread(target=self._serve, name="stand-in", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while all(key.fileobj is self for key, _ in selector.select()):
                self.handle_request()

    def stop(self) -> None:
        """Stop serving (requests being answered finish on their own threads); close."""
        if self._thread is not None:
            self._wake_write.send(b"\0")
            self._thread.join()
            self._thread = None
        self.server_close()
        self._wake_read.close()
        self._wake_write.close()
