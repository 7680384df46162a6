"""What both stand-ins share: the server, a table of routes, faults, and the request log."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str] = field(hash=False)
    body: Any = None


@dataclass(frozen=True)
class Answer:
    """What to send back."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """An answer given instead of the real one, to the next matching request."""

    status: int
    headers: Mapping[str, str]
    body: Any
    path: str = ""  # only requests whose path ends so ("/graphql"); "" any request


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
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where the stand-in listens."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeApi:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``fault``."""
        with self._lock:
            self._faults.extend([fault] * times)

    def route(self, method: str, pattern: str, handler: Route) -> None:
        """Answer ``method`` on paths matching ``pattern`` (a full match) with ``handler``."""
        self.routes.append((method, re.compile(pattern), handler))

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the stand-in's token."""
        raise NotImplementedError

    def answer(self, request: Request) -> Answer:
        """The answer to one request."""
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if request.path.endswith(f.path)), None)
            if fault is not None:
                self._faults.remove(fault)
        if not self.authorized(request):
            return Answer(401, {"message": "Bad credentials"})
        if fault is not None:
            return Answer(fault.status, fault.body, fault.headers)
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
        """A ``Link: rel="next"`` header to ``page`` when there is one."""
        if page > last:
            return {}
        query = "&".join(f"{k}={v}" for k, v in {**request.query, "page": str(page)}.items())
        return {"Link": f'<{self.url}{request.path}?{query}>; rel="next"'}


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
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            # The client may be gone (a test killed it): then there is no one to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        do_GET = _serve
        do_POST = _serve

    return Handler
