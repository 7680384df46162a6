"""The probe page (bridge.health): /readyz reports Cortex's answer to the last request."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.cortex import CortexClient
from bridge.errors import CortexRejected, CortexRetryable
from bridge.fakecortex import FakeCortex
from bridge.health import CortexWatch, Probes, WatchedTransport, cortex_state
from bridge.store import Store
from tests.conftest import TOKEN


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}") as opened:
        yield opened


def client(url: str, token: str, watch: CortexWatch) -> CortexClient:
    """A client as the relay builds it: one attempt, every answer noted in ``watch``."""
    transport = WatchedTransport(url, watch, read_timeout=5)
    return CortexClient(url, token, transport=transport)


def readyz(store: Store, watch: CortexWatch) -> tuple[int, dict[str, str]]:
    probes = Probes(store, lambda: datetime.now(timezone.utc), role="worker")
    status, kind, body = probes.delivering([], watch).readyz()
    assert kind == "application/json"
    return status, json.loads(body)


def test_before_any_request_cortex_is_unknown_and_ready(store: Store) -> None:
    assert readyz(store, CortexWatch()) == (200, {"status": "ok", "cortex": "unknown"})


def test_a_refused_token_makes_the_process_unready_until_cortex_accepts(
    store: Store, cortex: FakeCortex
) -> None:
    watch = CortexWatch()
    with client(cortex.url, "wrong", watch) as refused, pytest.raises(CortexRejected):
        refused.check_access()
    status, body = readyz(store, watch)
    assert (status, body["cortex"]) == (503, "unauthorized")
    assert "CORTEX_API_TOKEN" in body["reason"] and "wrong" not in body["reason"]
    with client(cortex.url, TOKEN, watch) as accepted:  # the token fixed: the next answer
        accepted.check_access()
    assert readyz(store, watch) == (200, {"status": "ok", "cortex": "ok"})


def test_no_answer_is_unreachable_and_still_ready(store: Store) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nobody listens
    watch = CortexWatch()
    nowhere = client(f"http://127.0.0.1:{port}", TOKEN, watch)
    with nowhere, pytest.raises(CortexRetryable):
        nowhere.check_access()
    assert watch.status == 0
    assert readyz(store, watch) == (200, {"status": "ok", "cortex": "unreachable"})


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (None, "unknown"),
        (0, "unreachable"),
        (200, "ok"),
        (201, "ok"),
        (404, "ok"),
        (401, "unauthorized"),
        (403, "unauthorized"),
        (429, "rate-limited"),
        (500, "error"),
        (400, "error"),
    ],
)
def test_cortex_state_words(status: int | None, state: str) -> None:
    assert cortex_state(status) == state


def test_a_receiver_that_delivers_nothing_reports_the_database_only(store: Store) -> None:
    probes = Probes(store, lambda: datetime.now(timezone.utc), role="serve")
    assert probes.page("/readyz") == (200, "application/json", b'{"status": "ok"}\n')
    assert probes.page("/elsewhere") is None
