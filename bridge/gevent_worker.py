"""serve's gunicorn glue: gevent's worker class with a quiet quick stop, fair turns between
kept-alive connections, and body deadlines.

gunicorn stops a gevent worker on SIGINT or SIGQUIT (Ctrl-C in a terminal reaches every
process) by raising SystemExit inside a greenlet, which gevent reports as a failure with
a traceback on the way out. Here those signals stop the worker as SIGTERM does: it stops
accepting, finishes the requests in hand (at most ``graceful_timeout``) and exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker
from werkzeug.exceptions import RequestTimeout


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker; SIGINT and SIGQUIT stop it gracefully."""

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """Stop as on SIGTERM: no more connections, the ones in hand are finished."""
        self.alive = False

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        """Answer one request; if it never waited, let every other ready connection go first.

        A greenlet yields to the others only when it waits: on a kept-alive connection whose
        client sends its next request as soon as it reads an answer (a load balancer's pooled
        connection, GitHub's bursts, wrk), the next request is often in the socket already,
        so the greenlet read it and answered it without ever waiting, and one connection was
        served back to back while the rest waited: at saturation, ignored events answered
        with p50 0.4 ms but p99 443 ms (benchmarks/RESULTS.md, "Receiver tail"). A yield
        after such an answer puts this connection behind the ones already waiting.

        An answer that waited on the way (a stored event's commit on the thread pool, a body
        still arriving) has had the loop run meanwhile, every ready connection with it: one
        more turn would only add to its own wait (stored events lost 13% of their rate to
        it). The loop's count of its turns (``loop.iteration``) says which case this is; a
        loop that keeps no count (not libev's) gets the yield every time.
        """
        loop = gevent.get_hub().loop
        turns = getattr(loop, "iteration", None)
        answered = super().handle_request(listener_name, req, sock, addr)
        if turns is None or loop.iteration == turns:
            gevent.sleep(0)
        return answered


class BodyDeadline:
    """WSGI middleware: a request body must arrive within ``seconds`` of its first read.

    gunicorn gives a request line and headers ``keepalive`` seconds, but no deadline for the
    body: a client trickling one byte every few seconds would hold its connection for
    hours. Here reading past the deadline raises werkzeug's RequestTimeout, which the app
    answers ``408`` (nothing is stored), and gunicorn closes the connection.
    """

    def __init__(self, app: Callable[..., Any], seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Wrap the body stream, then run the app."""
        environ["wsgi.input"] = _DeadlineStream(environ["wsgi.input"], self.seconds)
        return self.app(environ, start_response)


class _DeadlineStream:
    """A ``wsgi.input`` whose reads all end by one deadline, set at the first read."""

    def __init__(self, inner: Any, seconds: float) -> None:
        self.inner = inner
        self.seconds = seconds
        self.deadline: float | None = None

    def _within(self, read: Callable[..., bytes], *args: Any) -> bytes:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.seconds
        left = self.deadline - now
        try:
            if left <= 0:
                raise gevent.Timeout()
            with gevent.Timeout(left):
                return read(*args)
        except gevent.Timeout:
            raise RequestTimeout(f"the body did not arrive within {self.seconds:g}s") from None

    def read(self, size: int = -1) -> bytes:
        """Like the inner stream's read, within the deadline."""
        return self._within(self.inner.read, size)

    def readline(self, size: int = -1) -> bytes:
        """Like the inner stream's readline, within the deadline."""
        return self._within(self.inner.readline, size)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
