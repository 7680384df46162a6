"""``server.max_body_bytes`` holds however a body is framed: Content-Length or chunked.

A chunked body has no length to refuse up front; the receiver reads it to at most one byte
past the limit and answers 413 there, with nothing stored. Tested through Flask's test client
(the WSGI contract) and through real HTTP servers on loopback: Werkzeug's, and ``serve``'s
gunicorn (slow).
"""

from __future__ import annotations

import http.client
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from bridge.app import Runtime, create_app
from bridge.fakecortex import FakeCortex
from tests.conftest import load_sample
from tests.receiver_kit import GITHUB_SECRET, client_for, runtime_on, sign

LIMIT = 4096


@pytest.fixture
def runtime(db_url: str) -> Iterator[Runtime]:
    made = runtime_on(db_url, {"server": {"max_body_bytes": LIMIT}})
    yield made
    made.store.close()


def stored(runtime: Runtime) -> int:
    return sum(runtime.store.counts().values())


def padded(size: int) -> bytes:
    """A signed-able deployment_status body of exactly ``size`` bytes (trailing spaces)."""
    body = json.dumps(load_sample("github/deployment_status.success.json")).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def headers_for(body: bytes, delivery: str, secret: str = GITHUB_SECRET) -> dict[str, str]:
    return {
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
    }


def chunks_of(body: bytes, size: int = 1000) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


# --- the WSGI contract, through the test client ----------------------------------------------


def post_unframed(runtime: Runtime, body: bytes, delivery: str) -> Any:
    """A body with no Content-Length, ended by the server (what a chunked request becomes).

    Werkzeug takes no Content-Length from a request sent with ``Transfer-Encoding: chunked``.
    """
    sent = {**headers_for(body, delivery), "Transfer-Encoding": "chunked"}
    return client_for(runtime).post(
        "/webhooks/github",
        input_stream=io.BytesIO(body),
        headers=sent,
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize("extra", [1, 100, 10 * LIMIT])
def test_unframed_body_over_the_limit_is_413_and_stores_nothing(runtime: Runtime, extra) -> None:
    answer = post_unframed(runtime, padded(LIMIT + extra), "over")
    assert answer.status_code == 413, answer.json
    assert answer.json == {"status": "rejected", "reason": "body too large"}
    assert stored(runtime) == 0


def test_unframed_body_at_the_limit_is_read_whole(runtime: Runtime) -> None:
    answer = post_unframed(runtime, padded(LIMIT), "at")
    assert answer.status_code == 202, answer.json
    assert stored(runtime) == 1


def test_content_length_over_the_limit_is_413(runtime: Runtime) -> None:
    body = padded(LIMIT + 1)
    answer = client_for(runtime).post("/webhooks/github", data=body, headers=headers_for(body, "c"))
    assert answer.status_code == 413
    assert stored(runtime) == 0


def test_the_default_limit_is_githubs_cap(db_url: str) -> None:
    """PRODUCT.md: bodies over 25 MiB (GitHub's own cap) get 413; one of 25 MiB is queued."""
    runtime = runtime_on(db_url)
    try:
        cap = 25 * 1024 * 1024
        assert runtime.config.server.max_body_bytes == cap
        client = client_for(runtime)
        for size, delivery, status in ((cap + 1, "over", 413), (cap, "at", 202)):
            body = padded(size)
            answer = client.post("/webhooks/github", data=body, headers=headers_for(body, delivery))
            assert answer.status_code == status, (size, answer.json)
        assert stored(runtime) == 1
    finally:
        runtime.store.close()


class Dribble(io.BytesIO):
    """A WSGI input that hands over at most ``step`` bytes a read, as a socket may."""

    def __init__(self, body: bytes, step: int) -> None:
        super().__init__(body)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


def test_content_length_body_handed_over_in_pieces_is_read_whole(runtime: Runtime) -> None:
    body = padded(LIMIT)
    answer = client_for(runtime).post(
        "/webhooks/github",
        input_stream=Dribble(body, 700),
        headers=headers_for(body, "pieces"),
    )
    assert answer.status_code == 202, answer.json
    assert stored(runtime) == 1


def test_body_shorter_than_its_content_length_is_400_and_stores_nothing(runtime: Runtime) -> None:
    body = padded(LIMIT - 100)
    answer = client_for(runtime).post(
        "/webhooks/github",
        input_stream=Dribble(body, 700),
        headers=headers_for(body, "short"),
        environ_overrides={"CONTENT_LENGTH": str(len(body) + 50)},
    )
    assert answer.status_code == 400
    assert answer.json["status"] == "rejected"
    assert stored(runtime) == 0


def test_gitlab_unframed_body_over_the_limit_is_413(runtime: Runtime) -> None:
    body = json.dumps(load_sample("gitlab/deployment.success.json")).encode() + b" " * LIMIT
    answer = client_for(runtime).post(
        "/webhooks/gitlab",
        input_stream=io.BytesIO(body),
        headers={
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": runtime.gitlab_token,
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 413
    assert stored(runtime) == 0


# --- a real HTTP server on loopback -----------------------------------------------------------


@pytest.fixture
def werkzeug_url(runtime: Runtime) -> Iterator[tuple[str, int]]:
    server = make_server("127.0.0.1", 0, create_app(runtime), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port
    server.shutdown()
    thread.join(timeout=10)


def post_chunked(
    address: tuple[str, int], body: bytes, delivery: str, secret: str = GITHUB_SECRET
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request(
            "POST",
            "/webhooks/github",
            body=iter(chunks_of(body)),
            headers=headers_for(body, delivery, secret),
            encode_chunked=True,
        )
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def test_chunked_over_the_limit_is_413_on_a_real_server(
    runtime: Runtime, werkzeug_url: tuple[str, int]
) -> None:
    status, body = post_chunked(werkzeug_url, padded(LIMIT + 500), "chunked-over")
    assert (status, body["reason"]) == (413, "body too large")
    assert stored(runtime) == 0


def test_chunked_within_the_limit_is_queued_on_a_real_server(
    runtime: Runtime, werkzeug_url: tuple[str, int]
) -> None:
    status, body = post_chunked(werkzeug_url, padded(LIMIT), "chunked-at")
    assert status == 202, body
    assert stored(runtime) == 1


@pytest.mark.slow
def test_chunked_over_the_limit_is_413_under_serve(tmp_path: Path, cortex: FakeCortex) -> None:
    from tests.test_serve import SECRET, Served

    served = Served(tmp_path, cortex.url)
    (tmp_path / "bridge.yaml").write_text(
        (tmp_path / "bridge.yaml").read_text()
        + f"server:\n  max_body_bytes: {LIMIT}\n"
        + "routes: [{match: {}, entities: ['{repo}'], payload_entities: ['payments-*']}]\n"
    )
    served.start()
    try:
        address = ("127.0.0.1", served.port)
        status, _ = post_chunked(address, padded(LIMIT + 500), "serve-over", SECRET)
        assert status == 413
        status, _ = post_chunked(address, padded(LIMIT), "serve-at", SECRET)
        assert status == 202
        _, page = served.get("/api/deliveries")
        assert [d["id"] for d in page["data"]] == [1]
    finally:
        served.stop()
