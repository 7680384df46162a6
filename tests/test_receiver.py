"""The webhook receiver's HTTP answers: queued, ignored, duplicate, and every 4xx.

Every test runs on SQLite and on PostgreSQL (``[sqlite]``, ``[postgresql]``: conftest's db_url).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import urlencode

import pytest

from bridge.app import Runtime
from tests.conftest import load_sample
from tests.receiver_kit import (
    ADMIN_TOKEN,
    client_for,
    github_post,
    gitlab_post,
    sign,
)


@pytest.fixture
def runtime(new_runtime: Callable[..., Runtime]) -> Runtime:
    """A runtime that records runs of "Deploy*" workflows as production deploys."""
    return new_runtime(
        {"workflows": [{"match": {"workflow": "Deploy*"}, "environment": "production"}]}
    )


def stored(runtime) -> int:
    return sum(runtime.store.counts().values())


@pytest.mark.parametrize(
    ("event", "sample"),
    [
        pytest.param("deployment_status", "deployment_status.success", id="deployment_status"),
        pytest.param("workflow_run", "workflow_run.completed.success", id="workflow_run"),
    ],
)
def test_github_deploy_is_queued(runtime, event: str, sample: str) -> None:
    answer = github_post(client_for(runtime), event, sample)
    assert answer.status_code == 202
    assert answer.json["status"] == "queued"
    assert runtime.store.get(answer.json["id"]) is not None
    assert runtime.wake.is_set()


def test_an_older_run_without_actors_takes_its_deployer_from_sender(runtime) -> None:
    answer = github_post(
        client_for(runtime), "workflow_run", "workflow_run.completed.ghes-no-actor"
    )
    assert answer.status_code == 202, answer.json
    event = runtime.store.get(answer.json["id"]).payload["event"]
    assert event["deployer_name"] == "ines-moreau"
    assert event["ref"] == {"kind": "run", "id": "4411/1"}


def test_gitlab_deployment_is_queued(runtime) -> None:
    answer = gitlab_post(client_for(runtime), "Deployment Hook", "deployment.success")
    assert answer.status_code == 202
    payload = runtime.store.get(answer.json["id"]).payload
    assert (
        payload["event"]["sha"]
        == load_sample("gitlab/deployment.success.json")["commit_url"].rsplit("/", 1)[-1]
    )


@pytest.mark.parametrize(
    ("event", "sample", "reason"),
    [
        pytest.param(
            "deployment_status", "deployment_status.in_progress", "not final", id="in-progress"
        ),
        pytest.param("deployment_status", "deployment_status.queued", "not final", id="queued"),
        pytest.param("deployment", "deployment.created", "not final", id="created"),
        pytest.param("workflow_run", "workflow_run.in_progress", "not final", id="run-started"),
        pytest.param("ping", "ping", "ping", id="ping"),
        pytest.param("push", "ping", "push events are not recorded", id="push"),
    ],
)
def test_ignored_with_reason_nothing_stored(
    runtime,
    event: str,
    sample: str,
    reason: str,
) -> None:
    client = client_for(runtime)
    for _ in range(2):  # ignored events are not stored: a repeat is ignored again
        answer = github_post(client, event, sample, delivery="same-delivery")
        assert answer.status_code == 200
        assert answer.json["status"] == "ignored"
        assert reason in answer.json["reason"]
    assert stored(runtime) == 0


def test_unconfigured_workflow_is_ignored(new_runtime) -> None:
    rt = new_runtime()  # no config: workflow runs are not deploys
    answer = github_post(client_for(rt), "workflow_run", "workflow_run.completed.success")
    assert answer.status_code == 200
    assert "workflow" in answer.json["reason"]
    assert stored(rt) == 0


def test_excluded_environment_is_ignored(new_runtime) -> None:
    rt = new_runtime({"environments": {"exclude": ["prod*"]}})
    answer = github_post(client_for(rt), "deployment_status", "deployment_status.success")
    assert answer.status_code == 200
    assert "excluded" in answer.json["reason"]


def test_redelivery_is_duplicate(runtime) -> None:
    client = client_for(runtime)
    first = github_post(client, "deployment_status", "deployment_status.success", delivery="d-1")
    again = github_post(client, "deployment_status", "deployment_status.success", delivery="d-1")
    assert again.status_code == 200
    assert again.json == {"status": "duplicate", "id": first.json["id"]}
    gl = gitlab_post(client, "Deployment Hook", "deployment.success", uuid_="u-1")
    gl_again = gitlab_post(client, "Deployment Hook", "deployment.success", uuid_="u-1")
    assert gl_again.json == {"status": "duplicate", "id": gl.json["id"]}
    assert stored(runtime) == 2


def test_form_encoded_github_body(runtime) -> None:
    doc = load_sample("github/deployment_status.success.json")
    body = urlencode({"payload": json.dumps(doc)}).encode()
    answer = client_for(runtime).post(
        "/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "f-1",
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert answer.status_code == 202


def _raw(client, body: bytes, **headers: str):
    sent = {
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": "x",
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
    }
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    return client.post("/webhooks/github", data=body, headers=sent)


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        pytest.param(b"{not json", {}, 400, "not valid JSON", id="bad-json"),
        pytest.param(b"[1, 2]", {}, 400, "not a JSON object", id="array"),
        pytest.param(b'{"action": "created"}', {}, 400, "'deployment_status'", id="missing-field"),
        pytest.param(
            b"{}",
            {"Content_Type": "text/plain"},
            415,
            "content type 'text/plain' is not application/json or "
            "application/x-www-form-urlencoded (its 'payload' field)",
            id="text",
        ),
        pytest.param(b"{}", {"X_Hub_Signature_256": "sha256=00"}, 401, "signature", id="bad-sig"),
        pytest.param(b"{}", {"X_Hub_Signature_256": ""}, 401, "missing", id="no-sig"),
        pytest.param(b"{}", {"X_GitHub_Event": ""}, 400, "X-GitHub-Event", id="no-event"),
        pytest.param(b'["' + b"[" * 100000 + b'"]', {}, 400, "", id="deep-json"),
        pytest.param(b'{"action": NaN}', {}, 400, "not valid JSON", id="nan"),
        pytest.param(b'{"action": "\\ud800"}', {}, 400, "not valid JSON", id="lone-surrogate"),
        pytest.param(
            b"other=1",
            {"Content_Type": "application/x-www-form-urlencoded"},
            400,
            "no 'payload' field",
            id="form-without-payload",
        ),
        pytest.param(
            b"%zz",
            {"Content_Type": "application/x-www-form-urlencoded"},
            400,
            "url-encoded",
            id="form-garbage",
        ),
    ],
)
def test_bad_input_is_a_precise_4xx_and_stores_nothing(
    runtime, body: bytes, headers: dict[str, str], status: int, reason: str
) -> None:
    answer = _raw(client_for(runtime), body, **headers)
    assert answer.status_code == status, answer.json
    assert reason in answer.json["reason"]
    assert stored(runtime) == 0


def test_an_id_past_64_bits_is_malformed_and_stores_nothing(runtime) -> None:
    doc = load_sample("github/deployment_status.success.json")
    body = (
        json.dumps(doc)
        .encode()
        .replace(
            f'"id": {doc["deployment"]["id"]}'.encode(), b'"id": 123456789012345678901234567890', 1
        )
    )
    answer = _raw(client_for(runtime), body)
    assert answer.status_code == 400, answer.json
    assert "deployment.id" in answer.json["reason"]
    assert stored(runtime) == 0


def test_a_state_that_records_nothing_is_ignored_before_the_rest_is_checked(runtime) -> None:
    # Only the state is read: an in_progress status missing its repository is ignored (and
    # stored nowhere), while the same status as success is refused for the missing field.
    doc = load_sample("github/deployment_status.success.json")
    del doc["repository"]
    doc["deployment_status"]["state"] = "in_progress"
    answer = _raw(client_for(runtime), json.dumps(doc).encode())
    assert (answer.status_code, answer.json["status"]) == (200, "ignored")
    assert "not final" in answer.json["reason"]
    doc["deployment_status"]["state"] = "success"
    answer = _raw(client_for(runtime), json.dumps(doc).encode())
    assert answer.status_code == 400
    assert "repository.full_name" in answer.json["reason"]
    assert stored(runtime) == 0


def test_deeply_nested_json_is_refused(runtime) -> None:
    body = b"[" * 100000 + b"]" * 100000
    answer = _raw(client_for(runtime), body)
    assert answer.status_code == 400
    assert answer.json["reason"] == "body is JSON nested deeper than 1024 levels"
    assert stored(runtime) == 0


def test_oversized_body_is_413(new_runtime) -> None:
    rt = new_runtime({"server": {"max_body_bytes": 1024}})
    doc = {"action": "created", "padding": "x" * 2048}
    answer = github_post(client_for(rt), "deployment_status", doc)
    assert answer.status_code == 413
    assert answer.json["reason"] == "body too large"
    assert stored(rt) == 0


def test_gitlab_wrong_token_is_401(runtime) -> None:
    answer = gitlab_post(
        client_for(runtime), "Deployment Hook", "deployment.success", token="guess"
    )
    assert answer.status_code == 401
    assert "guess" not in answer.get_data(as_text=True)
    assert stored(runtime) == 0


def test_unsigned_allowed_only_when_told(new_runtime) -> None:
    rt = new_runtime(github_secret="", allow_unsigned=True)
    body = json.dumps(load_sample("github/deployment_status.success.json")).encode()
    answer = client_for(rt).post(
        "/webhooks/github",
        data=body,
        headers={
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "u",
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 202


def test_probes(runtime) -> None:
    client = client_for(runtime)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json == {"status": "ok"}
    github_post(client, "deployment_status", "deployment_status.success")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'bridge_queue_events{status="queued"} 1.0' in text
    assert "bridge_webhooks_total" in text


def test_admin_api_needs_its_token(runtime, new_runtime) -> None:
    client = client_for(runtime)
    assert client.get("/api/deliveries").status_code == 401
    assert (
        client.get("/api/deliveries", headers={"Authorization": "Bearer nope"}).status_code == 401
    )
    off = new_runtime(admin_token="")  # another process on the same database, no admin token
    assert client_for(off).get("/api/deliveries").status_code == 404


def test_admin_api_pages_and_retry(runtime) -> None:
    client = client_for(runtime)
    ids = [
        github_post(client, "deployment_status", "deployment_status.success").json["id"]
        for _ in range(5)
    ]
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    page = client.get("/api/deliveries?limit=2", headers=auth).json
    assert [d["id"] for d in page["data"]] == ids[::-1][:2]
    assert page["has_more"] is True
    seen = [d["id"] for d in page["data"]]
    while page["has_more"]:
        page = client.get(f"/api/deliveries?limit=2&after={page['next_cursor']}", headers=auth).json
        seen += [d["id"] for d in page["data"]]
    assert seen == ids[::-1]
    one = client.get(f"/api/deliveries/{ids[0]}", headers=auth).json
    assert one["status"] == "queued" and "payments-api" in one["payload"]["entities"]
    assert client.get("/api/deliveries?status=bogus", headers=auth).status_code == 400
    assert client.get("/api/deliveries?limit=0", headers=auth).status_code == 400
    assert client.get("/api/deliveries?limit=201", headers=auth).status_code == 400
    # Read as an id is (views.counted): plain ASCII digits only.
    for odd in ("%EF%BC%95", "1_0", "%205", "%2B5"):  # a wide 5, 1_0, " 5", "+5"
        assert client.get(f"/api/deliveries?limit={odd}", headers=auth).status_code == 400
    assert client.get("/api/deliveries?limit=200", headers=auth).status_code == 200
    assert client.get("/api/deliveries/999", headers=auth).status_code == 404
    assert client.post(f"/api/deliveries/{ids[0]}/retry", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        "9223372036854775808",  # 2**63: one past BIGINT
        "9223372036854775807",  # the largest id there can be, which nothing has
        "-1",
        "-9223372036854775809",
        "0",
        "9" * 5000,
        "1e3",
        "%201",
        "+1",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: str.isdigit() is True, int() would take it
        "1/2",
    ],
)
def test_admin_api_ids_out_of_range_are_404_json(runtime, raw: str) -> None:
    client = client_for(runtime)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    queued = github_post(client, "deployment_status", "deployment_status.success").json["id"]
    assert queued == 1
    before = runtime.store.get(1)
    for answer in (
        client.get(f"/api/deliveries/{raw}", headers=auth),
        client.post(f"/api/deliveries/{raw}/retry", headers=auth),
    ):
        assert answer.status_code == 404, answer.get_data(as_text=True)[:200]
        assert answer.json["status"] == "rejected"
        assert answer.json["reason"].startswith("no delivery")
        assert len(answer.json["reason"]) < 100
    assert runtime.store.get(1) == before
    assert stored(runtime) == 1


def test_events_of_one_deploy_share_a_group(runtime) -> None:
    client = client_for(runtime)
    a = github_post(client, "deployment_status", "deployment_status.success", delivery="a")
    b = github_post(
        client,
        "deployment_status",
        "deployment_status.success",
        delivery="b",
        headers={"X-GitHub-Hook-ID": "another-hook"},
    )
    first, second = runtime.store.get(a.json["id"]), runtime.store.get(b.json["id"])
    assert (
        first.group_key
        == second.group_key
        == ("github:acme/payments-api:deployment:1874402211:production")
    )
