"""Under `serve`, a connection whose next request is already waiting does not keep the others
waiting: each answer is followed by a turn for every other connection that is ready.

A greenlet yields only when it must wait. On a kept-alive connection whose next request is in
the socket already (a pipelining client, a pooled connection under load), it read and
answered request after request without waiting, and the other connections of its process
got nothing meanwhile: at saturation, ignored events answered in 0.4 ms at the median and
443 ms at p99. Here the order of answers says it, not a clock: a lone request sent while
another connection has hundreds queued is answered long before they all are.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from bridge.fakecortex import FakeCortex

QUEUED = 400


def request(n: int, secret: str) -> bytes:
    """One signed delivery of an event the bridge ignores (answered 200 without storing)."""
    from tests.receiver_kit import sign

    body = json.dumps({"n": n}).encode()
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: fair-{n}\r\nX-Hub-Signature-256: {sign(body, secret)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answers_in(data: bytes) -> int:
    return data.count(b"HTTP/1.1 200 ")


def read_answers(sock: socket.socket, count: int) -> bytes:
    data = b""
    while answers_in(data) < count or not data.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, "the receiver closed the connection"
        data += chunk
    return data


@pytest.mark.slow
def test_a_lone_request_is_answered_before_a_pipelined_burst_is_done(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    from tests.test_serve import SECRET, Served

    served = Served(tmp_path, cortex.url, "--workers", "1", "--no-worker").start()
    try:
        busy = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        lone = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        for n, sock in enumerate((busy, lone)):  # both accepted, and kept alive
            sock.sendall(request(n, SECRET))
            read_answers(sock, 1)
        # Hundreds of requests in the busy connection's socket at once, then one on the other.
        busy.sendall(b"".join(request(10 + n, SECRET) for n in range(QUEUED)))
        lone.sendall(request(9, SECRET))
        read_answers(lone, 1)
        # What the busy connection had been answered by the time the lone one was.
        busy.setblocking(False)
        before = b""
        try:
            while chunk := busy.recv(1 << 20):
                before += chunk
        except BlockingIOError:
            pass
        busy.setblocking(True)
        answered_first = answers_in(before)
        assert answered_first < QUEUED // 2, answered_first
        rest = read_answers(busy, QUEUED - answered_first)  # and all of them come
        assert answered_first + answers_in(rest) == QUEUED
        busy.close()
        lone.close()
    finally:
        served.stop()


def test_settle_freezes_what_start_up_made() -> None:
    import gc

    from bridge.commands.serve import settle

    try:
        settle()
        # Everything alive now (the imported app included) is out of the collector's way.
        assert gc.get_freeze_count() > 10_000
        assert len(gc.get_objects(generation=2)) < gc.get_freeze_count()
    finally:
        gc.unfreeze()
