"""serve's gunicorn glue: gevent's worker class with a quiet quick stop, fair turns between
kept-alive connections, and body deadlines.

gunicorn stops a gevent worker on SIGINT or SIGQUIT (Ctrl-C in a terminal reaches every
process) by raising SystemExit inside a greenlet, which gevent reports as a failure with
a traceback on the way out. Here those signals stop the worker as SIGTERM does: it stops
accepting, finishes the requests in hand (at most ``graceful_timeout``) and exits.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
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

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's answer to a request it could not parse (a header past its limits, two
        Content-Lengths, a bad request line), written as JSON as every other refusal is."""
        super().handle_error(req, JsonErrors(client), addr, exc)

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


# gunicorn's error page (gunicorn.util.write_error): its status line, and its message after
# the heading.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")
_MESSAGE = re.compile(rb"</h1>(.*?)</body>", re.DOTALL)


class JsonErrors:
    """A client's socket as gunicorn writes its error page to it: the page goes out as the
    receiver's JSON (``{"status": "rejected", "reason": ...}``, or ``"error"`` for a 5xx),
    with the same status; anything else is written as it is.

    gunicorn answers a request it cannot parse before the app sees it, with an HTML page of
    its own (``util.write_error``, called from the worker's ``handle_error`` with the status
    each parse error gets): rewriting what it writes keeps gunicorn's judgment of each error.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def sendall(self, data: bytes) -> None:
        """Write ``data``, gunicorn's error page as JSON."""
        self._sock.sendall(as_json_error(data))


def as_json_error(data: bytes) -> bytes:
    """gunicorn's HTML error answer ``data`` as a JSON one (``data`` itself if it is not one)."""
    status = _STATUS_LINE.match(data)
    if status is None or b"Content-Type: text/html" not in data:
        return data
    code = int(status[1])
    found = _MESSAGE.search(data)
    said = " ".join(html.unescape(found[1].decode("latin-1")).split()) if found else ""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    body = json.dumps(
        {"status": "error" if code >= 500 else "rejected", "reason": said or phrase.lower()}
    ).encode()
    head = (
        f"HTTP/1.1 {code} {phrase}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


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
