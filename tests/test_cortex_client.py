"""The Cortex client against a real local stand-in: retries, waits, and never twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from bridge.cortex import CortexClient
from bridge.cortex.transport import proxy_for
from bridge.errors import CortexError, CortexRejected, CortexRetryable
from bridge.fakecortex import FakeCortex, Fault
from bridge.mapping import build_deploy_request
from bridge.model import DeployEvent, DeployRef, DeployType, Status
from bridge.record.retrying import Outcome, record
from bridge.retry import RetryPolicy
from tests.conftest import TOKEN

FAST = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05)


def event(**overrides: object) -> DeployEvent:
    fields: dict[str, object] = {
        "source": "github",
        "repository": "acme/payments-api",
        "event": "push",
        "ref": DeployRef("run", "42/1"),
        "status": Status.SUCCEEDED,
        "timestamp": datetime(2026, 11, 23, 10, 0, 0, tzinfo=timezone.utc),
        "title": "Add retries",
        "sha": "a" * 40,
        "environment": "production",
    }
    fields.update(overrides)
    return DeployEvent(**fields)  # type: ignore[arg-type]


def body(entity: str = "payments-api", **overrides: object) -> dict[str, object]:
    return build_deploy_request(event(**overrides), entity, DeployType.DEPLOY)


_open: list[CortexClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def client(cortex: FakeCortex, *, token: str = TOKEN, **kw: object) -> CortexClient:
    made = CortexClient(cortex.url, token, **kw)  # type: ignore[arg-type]
    _open.append(made)
    return made


class Waits:
    """The sleep and the clock the retry loop takes: sleeping moves the clock, at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def record_with_retries(
    cortex: FakeCortex, waits: Waits, *, retry: RetryPolicy = FAST, **kw: object
) -> Outcome:
    """The Action's and `send`'s loop around the core, with the test's clock and sleep."""
    return record(
        client(cortex, **kw),
        event(type=DeployType.DEPLOY),
        "payments-api",
        retry=retry,
        sleep=waits.sleep,
        clock=waits.clock,
    )


def test_create_records_one_deploy_with_bearer_and_user_agent(cortex: FakeCortex) -> None:
    made = client(cortex).create_deploy("payments-api", body())
    assert [d["uuid"] for d in cortex.all_deploys()] == [made["uuid"]]
    (post,) = cortex.requests_to("POST")
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["User-Agent"].startswith("cortex-deploy-bridge/")
    assert post.path == "/api/v1/catalog/payments-api/deploys"


@pytest.mark.parametrize(
    ("fault", "unclear"),
    [
        pytest.param(Fault.rate_limited(1), False, id="429"),
        pytest.param(Fault("status", status=503), True, id="503-may-have-stored"),
        pytest.param(Fault("drop_before", method="POST"), True, id="dropped"),
    ],
)
def test_the_client_makes_one_attempt(cortex: FakeCortex, fault: Fault, unclear: bool) -> None:
    cortex.inject(fault)
    with pytest.raises(CortexRetryable) as caught:
        client(cortex).create_deploy("payments-api", body())
    assert caught.value.unclear is unclear
    assert len(cortex.received) == 1 and cortex.all_deploys() == []


def test_429_retry_after_is_honoured(cortex: FakeCortex) -> None:
    waits = Waits()
    cortex.inject(Fault.rate_limited(7, method="POST"), Fault("status", status=503, method="POST"))
    outcome = record_with_retries(cortex, waits)
    assert outcome.ok and len(cortex.all_deploys()) == 1
    assert waits.slept[0] == 7  # what Cortex asked for, not the policy's 10 ms
    assert len(waits.slept) == 2 and waits.slept[1] <= FAST.max_delay
    assert len(cortex.requests_to("POST")) == 3
    assert len(cortex.requests_to("GET")) == 3  # the type is given: each try looks first


def test_retry_after_from_problem_body_when_no_header(cortex: FakeCortex) -> None:
    waits = Waits()
    problem = {"type": "about:blank", "title": "Too Many Requests", "status": 429, "retryAfter": 4}
    cortex.inject(Fault("status", status=429, body=problem))
    assert record_with_retries(cortex, waits).ok
    assert waits.slept == [4]


def test_retry_after_is_capped(cortex: FakeCortex) -> None:
    waits = Waits()
    cortex.inject(Fault.rate_limited(3600))
    assert record_with_retries(cortex, waits, retry=RetryPolicy(max_retry_after=0.2)).ok
    assert waits.slept == [0.2]


def test_a_retry_after_past_the_time_limit_gives_up(cortex: FakeCortex) -> None:
    waits = Waits()
    cortex.inject(Fault.rate_limited(100))
    outcome = record_with_retries(cortex, waits, retry=RetryPolicy(max_elapsed=60))
    assert isinstance(outcome.error, CortexRetryable) and "429" in str(outcome.error)
    assert waits.slept == [] and cortex.all_deploys() == []


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault("drop_after", method="POST"), id="dropped-after-store"),
        pytest.param(Fault("delay_after", seconds=0.6, method="POST"), id="timeout-after-store"),
        pytest.param(Fault("status", status=502, method="POST"), id="5xx"),
    ],
)
def test_unclear_failure_after_store_never_records_twice(cortex: FakeCortex, fault: Fault) -> None:
    cortex.inject(fault)
    outcome = record_with_retries(cortex, Waits(), timeout=0.3)
    stored = cortex.all_deploys()
    assert outcome.ok
    if fault.kind == "status":  # the stand-in's 502 stored nothing: posted again
        assert [d["uuid"] for d in stored] == [outcome.uuid]
        assert len(cortex.requests_to("POST")) == 2
    else:
        assert [d["uuid"] for d in stored] == [outcome.uuid]
        assert len(cortex.requests_to("POST")) == 1
    # The type is given, so no history is listed: a search looks for the record before the
    # first try and again after the unclear one; a create is checked once after.
    assert len(cortex.requests_to("GET")) == (3 if fault.kind == "status" else 2)


def test_a_step_with_its_type_given_looks_once_then_posts(cortex: FakeCortex) -> None:
    # A step's one trace of an earlier run of the same build is in Cortex: one search, one
    # POST, and one search after it (a relay may have recorded the same deploy meanwhile).
    assert record_with_retries(cortex, Waits()).ok
    assert [r.method for r in cortex.received] == ["GET", "POST", "GET"]


def test_dropped_before_store_is_posted_again(cortex: FakeCortex) -> None:
    cortex.inject(Fault("drop_before", method="POST"))
    assert record_with_retries(cortex, Waits()).ok
    assert len(cortex.requests_to("POST")) == 2
    assert len(cortex.all_deploys()) == 1


def test_search_unavailable_falls_back_to_listing(cortex: FakeCortex) -> None:
    cortex.inject(
        Fault("drop_after", method="POST"),
        Fault(
            "status",
            status=404,
            method="GET",
            body={"type": "NOT_FOUND", "message": "no such route"},
        ),
    )
    outcome = record_with_retries(cortex, Waits())
    assert len(cortex.all_deploys()) == 1
    assert cortex.all_deploys()[0]["uuid"] == outcome.uuid
    assert len(cortex.requests_to("POST")) == 1


def test_connection_refused_is_retryable_and_clear() -> None:
    with FakeCortex() as gone:
        url = gone.url
    c = CortexClient(url, TOKEN)
    _open.append(c)
    with pytest.raises(CortexRetryable) as caught:
        c.create_deploy("payments-api", body())
    assert not caught.value.unclear
    assert "unreachable" in str(caught.value)


@pytest.mark.parametrize(
    ("token", "entities", "expected"),
    [
        pytest.param("wrong", None, "refused the API token (401)", id="401"),
        pytest.param(TOKEN, {"other"}, "entity 'payments-api' not found in cortex (404)", id="404"),
    ],
)
def test_rejections_are_not_retried_and_say_why(
    token: str, entities: set[str] | None, expected: str
) -> None:
    with FakeCortex(token=TOKEN, entities=entities) as fake:
        waits = Waits()
        outcome = record(
            client(fake, token=token),
            event(type=DeployType.DEPLOY),
            "payments-api",
            retry=FAST,
            sleep=waits.sleep,
            clock=waits.clock,
        )
        assert isinstance(outcome.error, CortexRejected)
        assert expected in str(outcome.error)
        assert len(fake.received) <= 2 and waits.slept == []  # the look-up, then the POST
        assert token not in str(outcome.error)


def test_a_token_echoed_by_cortex_is_never_in_the_error(cortex: FakeCortex) -> None:
    said = {"type": "BAD_REQUEST", "message": f"bad header 'Authorization: Bearer {TOKEN}'"}
    cortex.inject(Fault("status", status=400, body=said), Fault("status", status=500, body=said))
    for _ in range(2):
        with pytest.raises(CortexError) as caught:
            client(cortex).create_deploy("payments-api", body())
        assert TOKEN not in str(caught.value) and TOKEN not in caught.value.body
        assert "Bearer ***" in str(caught.value)


def test_gives_up_after_max_attempts(cortex: FakeCortex) -> None:
    waits = Waits()
    cortex.inject(*[Fault("status", status=502) for _ in range(3)])
    outcome = record_with_retries(cortex, waits, retry=RetryPolicy(max_attempts=3))
    assert isinstance(outcome.error, CortexRetryable) and "502" in str(outcome.error)
    assert len(waits.slept) == 2
    assert cortex.all_deploys() == []


def test_update_and_delete_by_uuid(cortex: FakeCortex) -> None:
    c = client(cortex)
    made = c.create_deploy("payments-api", body())
    c.update_deploy("payments-api", made["uuid"], body(title="Changed"))
    assert cortex.all_deploys()[0]["title"] == "Changed"
    c.delete_deploy("payments-api", made["uuid"])
    c.delete_deploy("payments-api", made["uuid"])  # already gone: fine
    assert cortex.all_deploys() == []


def test_iter_deploys_reads_every_page(cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.cortex.client.PAGE_SIZE", 2)
    c = client(cortex)
    for n in range(5):
        c.create_deploy("payments-api", body(ref=DeployRef("run", f"{n}/1")))
    assert len(list(c.iter_deploys("payments-api"))) == 5
    assert len(cortex.requests_to("GET")) == 3


def test_repr_hides_token(cortex: FakeCortex) -> None:
    assert TOKEN not in repr(client(cortex))


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        pytest.param(
            "https://api.getcortexapp.com",
            {"HTTPS_PROXY": "proxy:3128"},
            "http://proxy:3128",
            id="https-proxy",
        ),
        pytest.param(
            "https://api.getcortexapp.com",
            {"https_proxy": "http://p:8080", "NO_PROXY": ".getcortexapp.com"},
            None,
            id="no-proxy-suffix",
        ),
        pytest.param(
            "http://127.0.0.1:8787", {"HTTPS_PROXY": "http://p:1"}, None, id="scheme-mismatch"
        ),
        pytest.param(
            "https://cortex.internal",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"},
            None,
            id="no-proxy-star",
        ),
    ],
)
def test_proxy_from_environment(
    url: str, environ: dict[str, str], expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.lower().endswith("_proxy")]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert proxy_for(url) == expected


def test_requests_tunnel_through_a_proxy(cortex: FakeCortex) -> None:
    """A CONNECT proxy on loopback carries the request to the stand-in."""
    import contextlib
    import socket
    import socketserver
    import threading

    tunnels: list[str] = []

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    class Tunnel(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = self.rfile.readline().decode()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            tunnels.append(request.split()[1])
            host, port = request.split()[1].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as upstream:
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=pipe, args=(upstream, self.connection))
                back.start()
                pipe(self.connection, upstream)
                back.join(timeout=5)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tunnel) as proxy:
        threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True).start()
        port = proxy.server_address[1]
        c = client(cortex, proxy=f"http://127.0.0.1:{port}")
        c.create_deploy("payments-api", body())
        c.close()  # ends the tunnel before the proxy stops
        proxy.shutdown()
    assert tunnels == [cortex.url.removeprefix("http://")]
    assert len(cortex.all_deploys()) == 1


def test_a_search_reads_every_page_of_its_window(
    cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.cortex.client.PAGE_SIZE", 2)
    c = client(cortex)
    made = [c.create_deploy("payments-api", body(ref=DeployRef("run", f"{n}/1"))) for n in range(5)]
    near = datetime.fromisoformat(made[-1]["timestamp"].replace("Z", "+00:00"))
    searches_before = len(cortex.requests_to("GET"))
    found = c.search_deploys(
        "payments-api", environment=None, after=near - timedelta(seconds=2), before=near
    )
    assert {d["uuid"] for d in found} == {d["uuid"] for d in made}
    assert len(cortex.requests_to("GET")) - searches_before == 3  # pages 0, 1 and 2
