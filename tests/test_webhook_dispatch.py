"""A webhook is answered the same whether WebhookDispatch or Flask's own routing takes it.

``create_app`` puts WebhookDispatch in front of Flask: a POST to a webhook path goes straight
to its handler, skipping Flask's per-request work (benchmarks/receiver.py, "ignored events").
Flask keeps the same handlers on its routes. Here the same deliveries, in the same order, go
to two receivers on two fresh databases, one through the dispatch and one through Flask
alone: every answer (status and JSON) and what each stored must be the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from bridge.app import Runtime, WebhookDispatch, create_app
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


def test_dispatch_and_flask_answer_alike(runtimes: tuple[Runtime, Runtime]) -> None:
    dispatched = create_app(runtimes[0]).test_client()
    routed = flask_only(runtimes[1])
    seen = set()
    for name, step in STEPS:
        one, other = step(dispatched), step(routed)
        assert (one.status_code, one.get_json(silent=True)) == (
            other.status_code,
            other.get_json(silent=True),
        ), name
        assert one.mimetype == other.mimetype == "application/json", name
        seen.add(one.status_code)
    # The cases cover every kind of answer a webhook can get.
    assert {200, 202, 400, 401, 405, 415} <= seen
    assert runtimes[0].store.counts() == runtimes[1].store.counts()
    assert sum(runtimes[0].store.counts().values()) >= 3  # d1, g1, the other bodies of d1


def test_dispatch_and_flask_answer_busy_alike(runtimes: tuple[Runtime, Runtime]) -> None:
    # Each process's room for unverified bodies is taken (bridge/inflight.py): both ways
    # answer 503 with the same Retry-After and JSON, and a GitLab delivery, whose token is
    # checked before its body is read, is not held up.
    for runtime in runtimes:
        runtime.unverified.hold().grow_to(runtime.unverified.limit)
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
