"""Under `serve`, a connection whose next request is already waiting does not keep the others
waiting: each answer is followed by a turn for every other connection that is ready, unless
the answer waited on the way (a stored event's commit), which was that turn already.

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
from typing import Any
from unittest.mock import patch

import gevent
import pytest

from bridge.fakecortex import FakeCortex
from tests.conftest import load_sample

QUEUED = 400


def request(n: int, secret: str, *, stored: bool = False) -> bytes:
    """One signed delivery of an event the bridge ignores (answered 200 without storing), or
    with ``stored``, a deployment it stores (202, after its commit)."""
    from tests.receiver_kit import sign

    event, doc = "push", {"n": n}
    if stored:
        event, doc = "deployment_status", load_sample("github/deployment_status.success.json")
        doc["deployment"]["id"] = doc["deployment_status"]["id"] = 7_000_000 + n
    body = json.dumps(doc).encode()
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nX-GitHub-Event: {event}\r\n"
        f"X-GitHub-Delivery: fair-{n}\r\nX-Hub-Signature-256: {sign(body, secret)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answers_in(data: bytes) -> int:
    return data.count(b"HTTP/1.1 200 ") + data.count(b"HTTP/1.1 202 ")


def read_answers(sock: socket.socket, count: int) -> bytes:
    data = b""
    while answers_in(data) < count or not data.endswith(b"}"):
        chunk = sock.recv(65536)
        assert chunk, "the receiver closed the connection"
        data += chunk
    return data


@pytest.mark.slow
@pytest.mark.system  # pipelined bursts over loopback, and the order their answers come in
@pytest.mark.parametrize(
    ("stored", "queued"),
    # Ignored events never wait: each answer is followed by a yield. Stored ones wait for
    # their commit, which is their turn for the others (fewer: each costs a commit).
    [(False, QUEUED), (True, QUEUED // 4)],
    ids=["ignored", "stored"],
)
def test_a_lone_request_is_answered_before_a_pipelined_burst_is_done(
    tmp_path: Path, cortex: FakeCortex, stored: bool, queued: int
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
        busy.sendall(b"".join(request(10 + n, SECRET, stored=stored) for n in range(queued)))
        lone.sendall(request(9, SECRET, stored=stored))
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
        assert answered_first < queued // 2, answered_first
        rest = read_answers(busy, queued - answered_first)  # and all of them come
        assert answered_first + answers_in(rest) == queued
        busy.close()
        lone.close()
    finally:
        served.stop()


def _answer_with(handle: Any) -> list[str]:
    """Run GeventWorker.handle_request over ``handle`` (gunicorn's part) while another
    greenlet is ready to run; what ran, in order, until handle_request returned."""
    from gunicorn.workers.ggevent import GeventWorker as Gunicorns

    from bridge.gevent_worker import GeventWorker

    ran: list[str] = []
    worker = GeventWorker.__new__(GeventWorker)  # no gunicorn arbiter: only the method
    with patch.object(Gunicorns, "handle_request", lambda *_: handle(ran)):
        answered = worker.handle_request("listener", "req", "sock", "addr")
    ran.append(f"returned {answered}")
    seen = list(ran)
    gevent.sleep(0.001)  # let the other greenlet end before the next test
    return seen


def test_an_answer_that_never_waited_lets_a_ready_connection_go_first() -> None:
    def handle(ran: list[str]) -> str:
        gevent.spawn(ran.append, "other")  # ready while this answer is made without waiting
        ran.append("answered")
        return "ok"

    assert _answer_with(handle) == ["answered", "other", "returned ok"]


def test_an_answer_that_waited_has_given_the_others_their_turn_already() -> None:
    def handle(ran: list[str]) -> str:
        gevent.sleep(0.001)  # as a stored event waits for its commit: the loop runs meanwhile
        gevent.spawn(ran.append, "other")  # became ready after that turn
        ran.append("answered")
        return "ok"

    # No second turn after the answer: the connection reads its next request first.
    assert _answer_with(handle) == ["answered", "returned ok"]


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
