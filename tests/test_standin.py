"""The loopback server under the stand-ins: it answers until ``stop``, and ``stop`` lets an
answer being written finish, then refuses new connections."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from bridge.standin import StandInServer

RELEASE = threading.Event()
ANSWERING = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            ANSWERING.set()
            RELEASE.wait(10)
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_answers_until_stopped_and_then_refuses() -> None:
    server = StandInServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.start()
    assert [_get(port, f"/{n}") for n in range(3)] == [(200, f"/{n}".encode()) for n in range(3)]
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        _get(port, "/after")


def test_an_answer_being_written_finishes_after_stop() -> None:
    server = StandInServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.start()
    answers: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: answers.append(_get(port, "/slow")))
    slow.start()
    assert ANSWERING.wait(10)
    server.stop()  # returns at once: the slow answer is on a thread of its own
    RELEASE.set()
    slow.join(10)
    assert answers == [(200, b"/slow")]


def test_stop_without_start_closes_the_socket() -> None:
    server = StandInServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        _get(port, "/")
