"""The HTTP side of the stand-in: parsing requests, auth, faults, and ``/_stand-in`` paths."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from bridge.fakecortex.schema import error

if TYPE_CHECKING:
    from bridge.fakecortex.server import FakeCortex

# Where the stand-in shows what it holds; never a Cortex API path, never faulted.
STAND_IN_PREFIX = "/_stand-in/"


@dataclass(frozen=True)
class Received:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float


def handler_for(fake: FakeCortex) -> type[BaseHTTPRequestHandler]:
    """A request handler class serving ``fake``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffered writes: an answer's headers and body leave in one send, as from a real
        # server. Sent apart, the body of a kept-alive answer waits for the client's delayed
        # ACK under Nagle's algorithm (~40 ms on Linux), and a reader that takes one recv()
        # (a simple CONNECT proxy) sees the headers alone.
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            query = parse_qs(split.query)
            if split.path.startswith(STAND_IN_PREFIX):
                self._stand_in(split.path)
                return
            with fake._lock:
                fake.received.append(
                    Received(
                        self.command, split.path, query, dict(self.headers), body, time.monotonic()
                    )
                )
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._answer(*error(401, "FORBIDDEN", "Invalid API key"))
                return
            if (
                self.command in ("POST", "PUT")
                and self.headers.get("Content-Type", "").split(";")[0] != "application/json"
            ):
                self._answer(*fake._bad("Content-Type must be application/json"))
                return
            if fake.latency:
                time.sleep(fake.latency)  # a real Cortex's time per request, before acting
            fault = fake._next_fault(self.command)
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and fault.kind == "status":
                self._answer(fault.status, fault.headers, fault.body)
                return
            if fault is not None and fault.kind == "drop_before":
                self.close_connection = True
                return
            answer = fake.handle(self.command, split.path, query, body)
            if fault is not None and fault.kind == "drop_after":
                self.close_connection = True
                return
            if fault is not None and fault.kind == "delay_after":
                time.sleep(fault.seconds)
            self._answer(*answer)

        def _stand_in(self, path: str) -> None:
            """What the stand-in holds, for a test that runs it as another process."""
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._answer(*error(401, "FORBIDDEN", "Invalid API key"))
            elif self.command == "GET" and path == f"{STAND_IN_PREFIX}deploys":
                self._answer(200, {}, {"deploys": fake.all_deploys()})
            elif self.command == "GET" and path == f"{STAND_IN_PREFIX}stats":
                self._answer(200, {}, fake.stats())
            else:
                self._answer(*error(404, "NOT_FOUND", f"no route {self.command} {path}"))

        def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler
