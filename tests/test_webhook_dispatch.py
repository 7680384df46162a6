"""A webhook is answered the same whether WebhookDispatch or Flask's own routing takes it.

``create_app`` puts WebhookDispatch in front of Flask: a POST to a webhook path goes straight
to its handler, skipping Flask's per-request work (benchmarks/receiver.py, "ignored events").
Flask keeps the same handlers on its routes. Here the same deliveries, in the same order, go
to two receivers on two fresh databases, one through the dispatch and one through Flask
alone: every answer (status and JSON) and what each stored must be the same.
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
from bridge.webhooks import WebhookDispatch
from tests.conftest import load_sample
from tests.receiver_kit import GITHUB_SECRET, github_post, gitlab_post, make_runtime, sign

Step = Callable[[FlaskClient], Any]


def raw_github(body: bytes, content_type: str, *, event: str = "deployment_status") -> Step:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": f"raw-{len(body)}-{content_type}",
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
        "Content-Type": content_type,
    }
    return lambda client: client.post("/webhooks/github", data=body, headers=headers)


SUCCESS = json.dumps(load_sample("github/deployment_status.success.json")).encode()
FORM = b"payload=" + SUCCESS.replace(b"%", b"%25").replace(b"&", b"%26").replace(b"+", b"%2B")

STEPS: list[tuple[str, Step]] = [
    ("ignored", lambda c: github_post(c, "deployment_status", "deployment_status.in_progress")),
    (
        "queued",
        lambda c: github_post(c, "deployment_status", "deployment_status.success", delivery="d1"),
    ),
    (
        "duplicate",
        lambda c: github_post(c, "deployment_status", "deployment_status.success", delivery="d1"),
    ),
    ("ping", lambda c: github_post(c, "ping", "ping")),
    ("unsupported event", lambda c: github_post(c, "issues", {"action": "opened"})),
    (
        "bad signature",
        lambda c: github_post(c, "deployment_status", "deployment_status.success", secret="wrong"),
    ),
    ("missing event", lambda c: github_post(c, "", "deployment_status.success")),
    ("malformed", lambda c: github_post(c, "deployment_status", {"action": "created"})),
    (
        "bad delivery id",
        lambda c: github_post(
            c, "deployment_status", "deployment_status.success", delivery="a\x01b"
        ),
    ),
    ("not json", raw_github(b"{not json", "application/json")),
    ("json with parameters", raw_github(SUCCESS, "application/json; charset=utf-8")),
    ("form", raw_github(FORM, "application/x-www-form-urlencoded", event="deployment_status")),
    ("wrong type", raw_github(SUCCESS, "text/plain")),
    ("get", lambda c: c.get("/webhooks/github")),
    (
        "gitlab queued",
        lambda c: gitlab_post(c, "Deployment Hook", "deployment.success", uuid_="g1"),
    ),
    (
        "gitlab wrong token",
        lambda c: gitlab_post(c, "Deployment Hook", "deployment.success", token="no"),
    ),
    ("gitlab pipeline ignored", lambda c: gitlab_post(c, "Pipeline Hook", "pipeline.success")),
]


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[tuple[Runtime, Runtime]]:
    for name in ("dispatch", "flask"):
        (tmp_path / name).mkdir()
    made = make_runtime(tmp_path / "dispatch"), make_runtime(tmp_path / "flask")
    yield made
    for runtime in made:
        runtime.store.close()


def flask_only(runtime: Runtime) -> FlaskClient:
    app = create_app(runtime)
    assert isinstance(app.wsgi_app, WebhookDispatch)
    app.wsgi_app = app.wsgi_app.flask_app  # type: ignore[method-assign]
    return app.test_client()


class Said(logging.Handler):
    """The receiver's log records of one step, as (level, message, fields)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[tuple[str, str, dict[str, Any]]]:
        ignore = {"delivery_id", "id"}  # a random delivery id per request; each store's row id
        taken = [
            (r.levelname, r.getMessage(), {k: v for k, v in vars(r).items() if k in FIELDS})
            for r in self.records
        ]
        self.records = []
        return [
            (level, said, {k: v for k, v in f.items() if k not in ignore})
            for level, said, f in taken
        ]


FIELDS = {"source", "event", "delivery_id", "status_code", "answer", "reason", "status", "id"}


@pytest.fixture
def said() -> Iterator[Said]:
    handler = Said()
    logger = logging.getLogger("bridge.receiver")
    before = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(before)


def test_dispatch_and_flask_answer_alike(runtimes: tuple[Runtime, Runtime], said: Said) -> None:
    dispatched = create_app(runtimes[0]).test_client()
    routed = flask_only(runtimes[1])
    seen = set()
    for name, step in STEPS:
        one = step(dispatched)
        one_said = said.take()
        other = step(routed)
        assert (one.status_code, one.get_json(silent=True)) == (
            other.status_code,
            other.get_json(silent=True),
        ), name
        assert one.mimetype == other.mimetype == "application/json", name
        # The same log lines too: a refused or ignored webhook is one line either way.
        assert one_said == said.take(), name
        refusals = [s for s in one_said if s[1].startswith("webhook ")]
        if (one.status_code == 200 and one.get_json()["status"] == "ignored") or (
            400 <= one.status_code < 500 and one.status_code != 405
        ):
            assert len(refusals) == 1, name
        else:
            assert refusals == [], name
        seen.add(one.status_code)
    # The cases cover every kind of answer a webhook can get.
    assert {200, 202, 400, 401, 405, 415} <= seen
    assert runtimes[0].store.counts() == runtimes[1].store.counts()
    assert sum(runtimes[0].store.counts().values()) >= 3  # d1, g1, the other bodies of d1


def test_dispatch_and_flask_note_the_same_turned_away(runtimes: tuple[Runtime, Runtime]) -> None:
    dispatched = create_app(runtimes[0]).test_client()
    routed = flask_only(runtimes[1])
    for _, step in STEPS:
        step(dispatched)
        step(routed)
    noted = []
    for runtime in runtimes:
        runtime.turned_away.flush()
        rows = runtime.store.journal.turned_away()
        # The samples' delivery ids are random: each side has its own.
        noted.append([(r.source, r.event, r.code, r.answer, r.reason) for r in rows])
    assert noted[0] == noted[1]
    # Every 4xx and ignored answer of the steps, none of the queued or duplicate ones.
    answers = {(code, answer) for _, _, code, answer, _ in noted[0]}
    assert {(200, "ignored"), (401, "unauthorized"), (400, "rejected"), (415, "rejected")} <= (
        answers
    )
    assert all(answer != "queued" for *_, answer, _ in noted[0])


def test_dispatch_and_flask_answer_busy_alike(runtimes: tuple[Runtime, Runtime]) -> None:
    # Each process's room for unverified bodies is taken (bridge.webhooks.InFlight): both ways
    # answer 503 with the same Retry-After and JSON, and a GitLab delivery, whose token is
    # checked before its body is read, is not held up.
    for runtime in runtimes:
        runtime.unverified.take(runtime.unverified.limit)
    dispatched = create_app(runtimes[0]).test_client()
    routed = flask_only(runtimes[1])
    steps = [STEPS[0][1], STEPS[5][1], raw_github(FORM, "application/x-www-form-urlencoded")]
    for step in steps:
        one, other = step(dispatched), step(routed)
        assert one.status_code == other.status_code == 503
        assert one.get_json() == other.get_json()
        assert one.headers["Retry-After"] == other.headers["Retry-After"] == "5"
    gitlab = STEPS[-3][1]
    assert gitlab(dispatched).status_code == gitlab(routed).status_code == 202
