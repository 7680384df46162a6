"""The memory bodies hold before their signature is checked is bounded per process.

GitHub signs the whole body, so the receiver reads it before it knows who sent it. 40 unsigned
connections sending 24 MiB each once took one worker to 1,355 MB. Now one process holds at most
``server.max_unverified_bytes`` (at least ``server.max_body_bytes``) of such bodies at once;
a request that would pass it is answered 503 with Retry-After (bridge.webhooks.InFlight), and
nothing is stored.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Runtime, create_app
from bridge.fakecortex import FakeCortex
from bridge.webhooks import Busy, InFlight, read_body
from tests.receiver_kit import argocd_post, flux_post, make_runtime, sign

LIMIT = 256 * 1024
CAP = 4 * LIMIT  # four bodies at the limit at once
CONNECTIONS = 40


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path, {"server": {"max_body_bytes": LIMIT, "max_unverified_bytes": CAP}})
    yield rt
    rt.store.close()


class Gate:
    """Holds every body's last chunk back until each of the requests has been refused or
    has read all but that chunk: so as many as can are in flight at the same moment."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.arrived = 0
        self.lock = threading.Lock()
        self.open = threading.Event()

    def arrive(self) -> None:
        with self.lock:
            self.arrived += 1
            if self.arrived == self.count:
                self.open.set()


class GatedStream:
    """A wsgi.input of ``body``, handed over 64 KiB at a time, its last read held at the gate."""

    def __init__(self, body: bytes, gate: Gate) -> None:
        self.data = BytesIO(body)
        self.left = len(body)
        self.gate = gate

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left, 64 * 1024)
        if size and size == self.left:  # the last chunk: wait for the others
            self.gate.arrive()
            assert self.gate.open.wait(timeout=30)
        chunk = self.data.read(size)
        self.left -= len(chunk)
        return chunk


def call(app: Any, environ: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Call the WSGI app: status, headers, JSON body."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> None:
        seen["status"], seen["headers"] = int(status.split(maxsplit=1)[0]), dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], json.loads(body)


def unsigned_environ(n: int, body: bytes, gate: Gate, *, chunked: bool = False) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/github",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": GatedStream(body, gate),
        "CONTENT_TYPE": "application/json",
        "HTTP_X_GITHUB_EVENT": "deployment_status",
        "HTTP_X_GITHUB_DELIVERY": f"anon-{n}",
        "HTTP_X_HUB_SIGNATURE_256": "sha256=" + "0" * 64,
    }
    if chunked:
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_forty_unsigned_bodies_at_the_limit_hold_at_most_the_cap(
    runtime: Runtime, chunked: bool
) -> None:
    app = create_app(runtime)
    gate = Gate(CONNECTIONS)
    body = b" " * LIMIT  # at the limit exactly

    def run(n: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        answer = call(app, unsigned_environ(n, body, gate, chunked=chunked))
        if answer[0] == 503:
            gate.arrive()  # refused before its last chunk: it will never reach the gate
        return answer

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        answers = list(pool.map(run, range(CONNECTIONS)))

    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {401, 503}, statuses
    assert 1 <= statuses[401] <= CAP // LIMIT
    assert statuses[503] == CONNECTIONS - statuses[401]
    assert runtime.unverified.peak <= CAP
    assert runtime.unverified.peak >= LIMIT  # at least one whole body was read
    assert runtime.unverified.held == 0  # every byte given back
    for status, headers, doc in answers:
        if status == 503:
            assert headers["Retry-After"] == "5"
            assert doc["status"] == "busy"
            assert "server.max_unverified_bytes" in doc["reason"]
    assert sum(runtime.store.counts().values()) == 0


def test_a_signed_delivery_goes_through_once_the_bytes_are_given_back(runtime: Runtime) -> None:
    client = create_app(runtime).test_client()
    runtime.unverified.take(CAP)  # someone else holds it all
    doc = {"zen": "Keep it logically awesome.", "hook_id": 1}
    body = json.dumps(doc).encode()
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "ping-1",
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
    }
    busy = client.post("/webhooks/github", data=body, headers=headers)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    runtime.unverified.take(-CAP)  # and gives it back
    assert client.post("/webhooks/github", data=body, headers=headers).status_code == 200
    assert runtime.unverified.held == 0


def test_a_gitlab_body_is_read_only_after_its_token_and_holds_nothing(runtime: Runtime) -> None:
    client = create_app(runtime).test_client()
    runtime.unverified.take(CAP)  # never given back
    wrong = client.post(
        "/webhooks/gitlab",
        data=b"{}",
        headers={"X-Gitlab-Event": "Deployment Hook", "X-Gitlab-Token": "wrong"},
    )
    assert wrong.status_code == 401


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_lone_body_at_the_limit_fits_a_room_of_the_limit(tmp_path: Path, chunked: bool) -> None:
    # GitHub's own cap by config, with the default room below it: the room is the limit.
    rt = make_runtime(
        tmp_path, {"server": {"max_body_bytes": LIMIT, "max_unverified_bytes": LIMIT // 2}}
    )
    try:
        assert rt.unverified.limit == LIMIT
        app = create_app(rt)
        at_limit = Gate(1)
        status, _, _ = call(app, unsigned_environ(1, b" " * LIMIT, at_limit, chunked=chunked))
        assert status == 401  # read whole, then refused for its signature
        over = Gate(1)
        over.open.set()
        status, _, doc = call(app, unsigned_environ(2, b" " * (LIMIT + 1), over, chunked=chunked))
        assert (status, doc["reason"]) == (413, "body too large")
        assert rt.unverified.held == 0 and rt.unverified.peak == LIMIT
    finally:
        rt.store.close()


def test_a_body_is_held_while_read_refused_past_the_room_and_given_back_whole() -> None:
    pool = InFlight(100)
    pool.take(30)  # another request holds 30
    for chunked in (False, True):
        environ = {"wsgi.input": io.BytesIO(b"x" * 60), "wsgi.input_terminated": chunked}
        if not chunked:
            environ["CONTENT_LENGTH"] = "60"
        with read_body(environ, 70, pool=pool) as body:
            assert body == b"x" * 60
            # A Content-Length is held whole; a chunked body as far as it may reach, the limit.
            assert pool.held == 30 + (70 if chunked else 60)
        assert pool.held == 30
    big = {"wsgi.input": io.BytesIO(b"x" * 71), "CONTENT_LENGTH": "71"}
    with pytest.raises(Busy), read_body(big, 100, pool=pool):
        pass
    assert pool.held == 30 and pool.peak == 100


# -- under serve: the process's resident memory --------------------------------------------------

SERVE_LIMIT = 8 * 1024 * 1024
SERVE_CAP = 32 * 1024 * 1024


def worker_pid(master: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError("serve started no worker")


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def post_unsigned_slowly(port: int, n: int, started: threading.Barrier) -> int:
    """Send an unsigned body at the limit, all but its last byte, wait for the others, then
    the rest; the status answered, or 0 when the receiver closed the connection first."""
    head = (
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: deployment_status\r\n"
        f"X-GitHub-Delivery: anon-{n}\r\nX-Hub-Signature-256: sha256={'0' * 64}\r\n"
        f"Content-Length: {SERVE_LIMIT}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        with contextlib.suppress(OSError):  # refused already: the receiver closed
            sock.sendall(head + b" " * (SERVE_LIMIT - 1))
        started.wait(timeout=60)
        with contextlib.suppress(OSError):
            sock.sendall(b" ")
        try:
            answer = sock.makefile("rb").readline()
        except OSError:
            return 0
        return int(answer.split()[1]) if answer else 0


@pytest.mark.slow
@pytest.mark.system  # a serve process
def test_forty_unsigned_bodies_under_serve_stay_within_the_bound(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    from tests.test_serve import Served

    served = Served(tmp_path, cortex.url, "--workers", "1", "--no-worker")
    with (tmp_path / "bridge.yaml").open("a") as config:
        config.write(
            f"server:\n  max_body_bytes: {SERVE_LIMIT}\n  max_unverified_bytes: {SERVE_CAP}\n"
        )
    served.start()
    try:
        assert served.proc is not None
        worker = worker_pid(served.proc.pid)
        before = memory_kib(worker, "VmRSS")
        started = threading.Barrier(CONNECTIONS)
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            statuses = Counter(
                pool.map(lambda n: post_unsigned_slowly(served.port, n, started), range(40))
            )
        grown_mib = (memory_kib(worker, "VmHWM") - before) / 1024
        # Unbounded, 40 bodies of 8 MiB would be 320 MiB; the bound is 32 MiB of bodies
        # (plus the interpreter's own buffers while reading them).
        assert grown_mib < 2 * SERVE_CAP / 2**20, (grown_mib, statuses)
        assert set(statuses) <= {401, 503, 0}, statuses
        assert statuses[401] <= SERVE_CAP // SERVE_LIMIT, statuses
        assert served.get("/readyz")[0] == 200
        _, page = served.get("/api/deliveries")
        assert page["data"] == []
    finally:
        served.stop()


def test_a_flux_body_counts_until_its_signature_is_checked(runtime: Runtime) -> None:
    # Flux signs the whole body (X-Signature), as GitHub does: it is read before anyone knows
    # who sent it, so it takes room in the process's unverified bytes like a GitHub body.
    client = create_app(runtime).test_client()
    runtime.unverified.take(CAP)  # someone else holds it all
    busy = flux_post(client, "kustomization.succeeded", secret="forged")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
    runtime.unverified.take(-CAP)  # and gives it back
    assert flux_post(client, "kustomization.succeeded", secret="forged").status_code == 401
    assert runtime.unverified.held == 0
    assert sum(runtime.store.counts().values()) == 0  # nothing stored


def test_an_argocd_body_is_read_only_after_its_token_and_holds_nothing(runtime: Runtime) -> None:
    client = create_app(runtime).test_client()
    runtime.unverified.take(CAP)  # never given back
    assert argocd_post(client, "sync.succeeded", token="wrong").status_code == 401
    assert sum(runtime.store.counts().values()) == 0  # nothing stored
