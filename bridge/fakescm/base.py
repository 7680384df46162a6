"""What both stand-ins share: the server, a table of routes, faults, and the request log.

Besides the API itself, each stand-in can turn hostile on demand, to prove the readers'
bounds (docs/limits.md): next links to another origin (``next_origin``) or without end
(``endless``), redirects (a :class:`Fault` with ``Location``), a fault given forever
(``inject(..., times=None)``: a 429 with ``Retry-After: 0`` that never ends), an error that
echoes the token it received (``Fault(echo=True)``), bodies of any size streamed without
being held (:class:`Filler`), and bodies sent a byte at a time (``Fault(drip=...)``).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bridge.standin import StandInServer


@dataclass(frozen=True)
class Request:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str] = field(hash=False)
    body: Any = None


@dataclass(frozen=True)
class Filler:
    """A body of ``size`` bytes, ``[1,1,1,...]``, streamed as it is written (never held)."""

    size: int
    unit: bytes = b"1,"

    def chunks(self) -> Any:
        """The body in pieces of 64 KiB."""
        yield b"["
        left = self.size - 2
        piece = self.unit * (65536 // len(self.unit))
        while left > len(piece):
            yield piece
            left -= len(piece)
        rest = (self.unit * (left // len(self.unit) + 1))[:left]
        yield rest[:-1] + (b"1" if rest.endswith(b",") else rest[-1:])
        yield b"]"


@dataclass(frozen=True)
class Answer:
    """What to send back."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    drip: float = 0.0  # seconds between bytes of the body (0: all at once)


@dataclass(frozen=True)
class Fault:
    """An answer given instead of the real one, to the next matching request."""

    status: int
    headers: Mapping[str, str]
    body: Any
    path: str = ""  # only requests whose path ends so ("/graphql"); "" any request
    echo: bool = False  # the body is {"message": body + the credential the request carried}
    drip: float = 0.0  # seconds between bytes of the body


Route = Callable[[Request, "re.Match[str]"], Answer]


class ApiError(Exception):
    """Raised by a route: answered with ``status`` and the API's ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeApi:
    """A stand-in API: subclasses fill ``routes`` and ``authorized``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self.routes: list[tuple[str, re.Pattern[str], Route]] = []
        self.clock: Callable[[], float] = time.time
        # Hostile paging: next links to this origin instead of the stand-in's own
        # ("http://127.0.0.2:PORT"), or (endless) a next link and ``hasNextPage`` on every page.
        self.next_origin: str | None = None
        self.endless = False
        self._faults: deque[Fault] = deque()
        self._forever: Fault | None = None
        self._lock = threading.Lock()
        self._server = StandInServer((host, port), _handler_for(self))

    @property
    def url(self) -> str:
        """Where the stand-in listens."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeApi:
        """Serve in a background thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, fault: Fault, times: int | None = 1) -> None:
        """Answer the next ``times`` requests with ``fault`` (None: every request, forever)."""
        with self._lock:
            if times is None:
                self._forever = fault
            else:
                self._faults.extend([fault] * times)

    def route(self, method: str, pattern: str, handler: Route) -> None:
        """Answer ``method`` on paths matching ``pattern`` (a full match) with ``handler``."""
        self.routes.append((method, re.compile(pattern), handler))

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the stand-in's token."""
        raise NotImplementedError

    def credential(self, request: Request) -> str:
        """The credential the request carried (for a fault that echoes it back)."""
        raise NotImplementedError

    def answer(self, request: Request) -> Answer:
        """The answer to one request."""
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if request.path.endswith(f.path)), None)
            if fault is not None:
                self._faults.remove(fault)
            elif self._forever is not None and request.path.endswith(self._forever.path):
                fault = self._forever
        if not self.authorized(request):
            return Answer(401, {"message": "Bad credentials"})
        if fault is not None:
            body = fault.body
            if fault.echo:
                body = {"message": f"{body}: {self.credential(request)}"}
            return Answer(fault.status, body, fault.headers, fault.drip)
        for method, pattern, handler in self.routes:
            found = pattern.fullmatch(request.path)
            if found and method == request.method:
                try:
                    return handler(request, found)
                except ApiError as exc:
                    self.violations.append(f"{request.method} {request.path}: {exc.message}")
                    return Answer(exc.status, {"message": exc.message})
        self.violations.append(f"unexpected {request.method} {request.path}")
        return Answer(404, {"message": "Not Found"})

    def need(self, request: Request, **expected: str) -> None:
        """Refuse (400) unless the query has exactly these values for these parameters."""
        for name, value in expected.items():
            if request.query.get(name) != value:
                got = request.query.get(name)
                raise ApiError(400, f"query {name}={got!r}, expected {value!r}")

    def link(self, request: Request, page: int, last: int) -> dict[str, str]:
        """A ``Link: rel="next"`` header to ``page`` when there is one (always, if endless)."""
        if page > last and not self.endless:
            return {}
        query = "&".join(f"{k}={v}" for k, v in {**request.query, "page": str(page)}.items())
        origin = self.next_origin or self.url
        return {"Link": f'<{origin}{request.path}?{query}>; rel="next"'}


def page_of(items: list[Any], request: Request, size: int = 100) -> tuple[list[Any], int, int]:
    """The page the request asks for, its number and the last page's number."""
    number = int(request.query.get("page", "1"))
    last = max((len(items) + size - 1) // size, 1)
    return items[(number - 1) * size : number * size], number, last


def _handler_for(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            request = Request(
                self.command,
                parts.path,
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            answer = api.answer(request)
            if isinstance(answer.body, Filler):
                size, chunks = answer.body.size, answer.body.chunks()
            else:
                data = json.dumps(answer.body).encode()
                size, chunks = len(data), iter([data])
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            if not any(name.lower() == "content-length" for name in answer.headers):
                self.send_header("Content-Length", str(size))  # else a hostile one, given
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            # The client may be gone (a test killed it, a reader refused the body).
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for chunk in chunks:
                    if answer.drip:
                        for byte in range(len(chunk)):
                            self.wfile.write(chunk[byte : byte + 1])
                            self.wfile.flush()
                            time.sleep(answer.drip)
                    else:
                        self.wfile.write(chunk)

        do_GET = _serve
        do_POST = _serve

    return Handler
