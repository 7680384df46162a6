"""gunicorn answers a request it cannot parse with an HTML page of its own, before the app
sees it; under `serve` the page goes out as the receiver's JSON (bridge.gevent_worker).
tests/test_serve.py sends such requests to a real `serve`."""

from __future__ import annotations

import json

import pytest
from gunicorn import util

from bridge.gevent_worker import JsonErrors, as_json_error


class Socket:
    """What gunicorn's write_error needs of a socket, keeping what is written."""

    def __init__(self) -> None:
        self.written = b""

    def gettimeout(self) -> float:
        return 5.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.written += data


@pytest.mark.parametrize(
    ("status", "reason", "message", "said"),
    [
        pytest.param(
            431,
            "Request Header Fields Too Large",
            "Error parsing headers: 'limit request headers fields size'",
            {
                "status": "rejected",
                "reason": "Error parsing headers: 'limit request headers fields size'",
            },
            id="431",
        ),
        pytest.param(
            400,
            "Bad Request",
            "Invalid HTTP Header: 'CONTENT-LENGTH' <&>",
            {"status": "rejected", "reason": "Invalid HTTP Header: 'CONTENT-LENGTH' <&>"},
            id="400-escaped",
        ),
        pytest.param(
            500,
            "Internal Server Error",
            "",
            {"status": "error", "reason": "internal server error"},
            id="500-no-message",
        ),
    ],
)
def test_gunicorns_error_page_goes_out_as_json(
    status: int, reason: str, message: str, said: dict[str, str]
) -> None:
    sock = Socket()
    util.write_error(JsonErrors(sock), status, reason, message)
    head, _, body = sock.written.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == f"HTTP/1.1 {status} {reason}"
    assert "Content-Type: application/json" in lines and "Connection: close" in lines
    assert f"Content-Length: {len(body)}" in lines
    assert json.loads(body) == said


def test_anything_else_is_written_as_it_is() -> None:
    sock = Socket()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}"
    JsonErrors(sock).sendall(answer)
    assert sock.written == answer
    assert as_json_error(b"not http at all") == b"not http at all"
