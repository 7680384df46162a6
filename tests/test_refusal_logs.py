"""Every webhook the receiver refuses or ignores leaves one structured log line.

"Why didn't my deploy show up?" must have an answer in the logs: for a 401, 400, 413, 415 or
an ignored event, one JSON line with the reason, the source, the event, the delivery id and
the status answered; never a secret, never the body. Stored deliveries (202) and repeats
keep their own line and get no refusal line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.app import Runtime, create_app
from bridge.logs import JsonFormatter
from tests.conftest import load_sample
from tests.receiver_kit import (
    GITHUB_SECRET,
    GITLAB_TOKEN,
    github_post,
    gitlab_post,
    make_runtime,
    sign,
)

MARKER = "body-marker-3f9c"  # put in every body: it must never reach a log line
WRONG_SECRET = "wrong-secret-81d2"


class Lines(logging.Handler):
    """The receiver's log lines, formatted as `serve` formats them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter([GITHUB_SECRET, GITLAB_TOKEN]))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def refusals(self) -> list[dict[str, Any]]:
        return [
            r
            for r in map(json.loads, self.lines)
            if r["message"] in ("webhook ignored", "webhook rejected")
        ]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("bridge.receiver")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(before)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    made = make_runtime(tmp_path, {"server": {"max_body_bytes": 4096}})
    yield made
    made.store.close()


def marked(name: str) -> dict[str, Any]:
    doc = load_sample(f"github/{name}.json")
    doc["marker"] = MARKER
    return dict(doc)


def raw(body: bytes, content_type: str, *, event: str = "deployment_status") -> Any:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "raw-1",
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
        "Content-Type": content_type,
    }
    return lambda client: client.post("/webhooks/github", data=body, headers=headers)


Post = Callable[[FlaskClient], Any]
SUCCESS = json.dumps(marked("deployment_status.success")).encode()

CASES: list[Any] = [
    pytest.param(
        lambda c: github_post(
            c, "deployment_status", marked("deployment_status.in_progress"), delivery="gh-1"
        ),
        ("github", "deployment_status", "gh-1", 200, "ignored"),
        "in_progress is not final",
        id="github-ignored",
    ),
    pytest.param(
        lambda c: github_post(c, "issues", {"action": "opened", "marker": MARKER}, delivery="gh-2"),
        ("github", "issues", "gh-2", 200, "ignored"),
        "issues",
        id="github-unsupported-event",
    ),
    pytest.param(
        lambda c: github_post(
            c,
            "deployment_status",
            marked("deployment_status.success"),
            delivery="gh-3",
            secret=WRONG_SECRET,
        ),
        ("github", "deployment_status", "gh-3", 401, "unauthorized"),
        "signature",
        id="github-401",
    ),
    pytest.param(
        lambda c: github_post(c, "", marked("deployment_status.success"), delivery="gh-4"),
        ("github", None, "gh-4", 400, "rejected"),
        "missing X-GitHub-Event header",
        id="github-400-no-event",
    ),
    pytest.param(
        lambda c: github_post(
            c, "deployment_status", {"action": "created", "marker": MARKER}, delivery="gh-5"
        ),
        ("github", "deployment_status", "gh-5", 400, "rejected"),
        "deployment",
        id="github-400-malformed",
    ),
    pytest.param(
        raw(b'{"marker": "' + MARKER.encode() + b'", not json', "application/json"),
        ("github", "deployment_status", "raw-1", 400, "rejected"),
        "body is not valid JSON",
        id="github-400-not-json",
    ),
    pytest.param(
        raw(SUCCESS, "text/plain"),
        ("github", "deployment_status", "raw-1", 415, "rejected"),
        "content type 'text/plain'",
        id="github-415",
    ),
    pytest.param(
        raw(SUCCESS + b" " * 5000, "application/json"),
        ("github", "deployment_status", "raw-1", 413, "rejected"),
        "body too large",
        id="github-413",
    ),
    pytest.param(
        lambda c: gitlab_post(c, "Deployment Hook", "deployment.success", uuid_="gl-1", token="x"),
        ("gitlab", "Deployment Hook", "gl-1", 401, "unauthorized"),
        "X-Gitlab-Token does not match",
        id="gitlab-401",
    ),
    pytest.param(
        lambda c: gitlab_post(c, "Pipeline Hook", "pipeline.success", uuid_="gl-2"),
        ("gitlab", "Pipeline Hook", "gl-2", 200, "ignored"),
        "is not a deploy workflow",
        id="gitlab-ignored",
    ),
]


def client(runtime: Runtime, way: str) -> FlaskClient:
    """A test client through WebhookDispatch (as served), or through Flask's routes alone."""
    app = create_app(runtime)
    if way == "flask":
        app.wsgi_app = app.wsgi_app.flask_app  # type: ignore[attr-defined,method-assign]
    return app.test_client()


@pytest.fixture(params=["dispatch", "flask"])
def either(runtime: Runtime, request: pytest.FixtureRequest) -> FlaskClient:
    """The receiver through WebhookDispatch, then through Flask's routes alone."""
    return client(runtime, request.param)


@pytest.mark.parametrize(("post", "facts", "reason"), CASES)
def test_each_refused_or_ignored_webhook_logs_one_line(
    either: FlaskClient, lines: Lines, post: Post, facts: tuple[Any, ...], reason: str
) -> None:
    answer = post(either)
    source, event, delivery, code, word = facts
    assert answer.status_code == code
    [line] = lines.refusals()
    assert {k: line[k] for k in ("source", "event", "delivery_id", "status_code", "answer")} == {
        "source": source,
        "event": event,
        "delivery_id": delivery,
        "status_code": code,
        "answer": word,
    }
    assert line["reason"] == answer.get_json()["reason"]
    assert reason in line["reason"]
    assert line["level"] == ("info" if code == 200 else "warning")
    assert line["logger"] == "bridge.receiver"
    text = "\n".join(lines.lines)
    for secret in (GITHUB_SECRET, GITLAB_TOKEN, WRONG_SECRET, MARKER):
        assert secret not in text


def test_gitlab_names_its_idempotency_key_as_the_delivery(runtime: Runtime, lines: Lines) -> None:
    client = create_app(runtime).test_client()
    client.post(
        "/webhooks/gitlab",
        data=b"{}",
        headers={
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": "wrong",
            "Idempotency-Key": "idem-7",
            "X-Gitlab-Event-UUID": "uuid-7",
            "Content-Type": "application/json",
        },
    )
    [line] = lines.refusals()
    assert line["delivery_id"] == "idem-7"


def test_a_stored_delivery_and_its_repeat_log_no_refusal(runtime: Runtime, lines: Lines) -> None:
    client = create_app(runtime).test_client()
    for _ in range(2):
        github_post(client, "deployment_status", "deployment_status.success", delivery="d-1")
    assert lines.refusals() == []
    said = [json.loads(line)["message"] for line in lines.lines]
    assert said == ["queued", "duplicate"]


def test_what_is_not_a_webhook_logs_no_refusal(runtime: Runtime, lines: Lines) -> None:
    client = create_app(runtime).test_client()
    assert client.get("/webhooks/github").status_code == 405
    assert client.post("/webhooks/nowhere", data=b"{}").status_code == 404
    assert client.get("/api/deliveries?limit=0").status_code == 401
    assert lines.refusals() == []


def test_sender_chosen_ids_are_cut_in_the_line(runtime: Runtime, lines: Lines) -> None:
    client = create_app(runtime).test_client()
    github_post(
        client,
        "e" * 5000,
        {"marker": MARKER},
        delivery="d" * 190,
        secret=WRONG_SECRET,
    )
    [line] = lines.refusals()
    assert line["event"] == "e" * 200
    assert line["status_code"] == 401


def test_a_quiet_level_skips_the_line(runtime: Runtime, lines: Lines) -> None:
    logging.getLogger("bridge.receiver").setLevel(logging.WARNING)
    client = create_app(runtime).test_client()
    github_post(client, "deployment_status", "deployment_status.in_progress")
    github_post(client, "deployment_status", "deployment_status.success", secret=WRONG_SECRET)
    assert [r["status_code"] for r in lines.refusals()] == [401]
