"""De-duplication keys: one per header set, never shared by two different ones."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.app import Runtime
from bridge.errors import MalformedEvent
from bridge.ingest import dedupe_key
from tests.conftest import load_sample
from tests.receiver_kit import client_for, runtime_on, sign

BODY = b'{"a": 1}'


def github(hook: str | None, delivery: str | None, body: bytes = BODY) -> str:
    return dedupe_key(
        "github",
        ("X-GitHub-Delivery", delivery),
        scope=("X-GitHub-Hook-ID", hook),
        body=body,
    )


def gitlab(delivery: str | None, body: bytes = BODY) -> str:
    return dedupe_key("gitlab", ("X-Gitlab-Event-UUID", delivery), body=body)


def test_the_hook_id_is_not_part_of_the_delivery_id() -> None:
    assert github("1", "D") != github(None, "1:D")
    assert github("1:2", "3") != github("1", "2:3")
    assert github(None, "%3A") != github(None, ":")


def test_a_digest_key_is_not_an_id_key() -> None:
    digest = hashlib.sha256(BODY).hexdigest()
    assert github("sha256", digest) != github(None, None)
    assert gitlab(f"sha256:{digest}") != gitlab(None)


def test_keys_of_real_deliveries_are_what_earlier_versions_stored() -> None:
    # Rows stored before this encoding keep matching a redelivery of the same event.
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert github("292430182", delivery) == f"github:292430182:{delivery}"
    assert gitlab("fe1f8c5c-b8be-4fd0-9e63-2e46f7bd7c7c") == (
        "gitlab:fe1f8c5c-b8be-4fd0-9e63-2e46f7bd7c7c"
    )


def test_without_a_delivery_id_the_body_decides() -> None:
    assert github(None, None) == github("7", None) == github(None, "  ")
    assert github(None, None, b"{}") != github(None, None, b"[]")


ids = st.none() | st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), max_size=8)


@given(a=st.tuples(ids, ids), b=st.tuples(ids, ids))
def test_two_different_header_sets_never_share_a_key(
    a: tuple[str | None, str | None], b: tuple[str | None, str | None]
) -> None:
    def meaning(hook: str | None, delivery: str | None) -> tuple[str, str] | None:
        # Absent, empty and blank are one thing; without a delivery id the body decides.
        delivery = (delivery or "").strip()
        return ((hook or "").strip(), delivery) if delivery else None

    if meaning(*a) != meaning(*b):
        assert github(*a) != github(*b)
    else:
        assert github(*a) == github(*b)


@pytest.mark.parametrize(
    ("hook", "delivery", "named"),
    [
        pytest.param("1", "d\x00", "X-GitHub-Delivery", id="nul-delivery"),
        pytest.param("1\x1b", "d", "X-GitHub-Hook-ID", id="escape-hook"),
        pytest.param("1", "d" * 201, "X-GitHub-Delivery", id="long-delivery"),
        pytest.param("1" * 201, None, "X-GitHub-Hook-ID", id="long-hook-no-delivery"),
        pytest.param(
            "%" * 200, ":" * 200, "X-GitHub-Hook-ID and X-GitHub-Delivery", id="long-escaped"
        ),
    ],
)
def test_an_id_that_is_not_printable_or_too_long_is_named(hook, delivery, named) -> None:
    with pytest.raises(MalformedEvent, match=named):
        github(hook, delivery)


# --- through the receiver ----------------------------------------------------------------------


@pytest.fixture
def runtime(db_url: str) -> Iterator[Runtime]:
    made = runtime_on(db_url)
    yield made
    made.store.close()


def post(runtime: Runtime, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    body = json.dumps(load_sample("github/deployment_status.success.json")).encode()
    sent = {
        "X-GitHub-Event": "deployment_status",
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
        **headers,
    }
    answer = client_for(runtime).post("/webhooks/github", data=body, headers=sent)
    return answer.status_code, answer.json


def test_a_delivery_id_holding_the_hook_id_is_another_delivery(runtime: Runtime) -> None:
    first = post(runtime, {"X-GitHub-Hook-ID": "1", "X-GitHub-Delivery": "D"})
    second = post(runtime, {"X-GitHub-Delivery": "1:D"})
    assert (first[0], second[0]) == (202, 202)
    assert first[1]["id"] != second[1]["id"]
    assert post(runtime, {"X-GitHub-Delivery": "1:D"})[1]["status"] == "duplicate"
    assert sum(runtime.store.counts().values()) == 2


def test_a_bad_delivery_header_is_a_400_naming_it(runtime: Runtime) -> None:
    status, body = post(
        runtime, {"X-GitHub-Hook-ID": "1\x7f", "X-GitHub-Delivery": str(uuid.uuid4())}
    )
    assert status == 400
    assert "X-GitHub-Hook-ID" in str(body["reason"])
    assert sum(runtime.store.counts().values()) == 0


def test_ids_too_long_once_escaped_are_a_400(runtime: Runtime) -> None:
    status, body = post(runtime, {"X-GitHub-Hook-ID": "%" * 200, "X-GitHub-Delivery": ":" * 200})
    assert status == 400
    assert "too long for a de-duplication key" in str(body["reason"])
    assert sum(runtime.store.counts().values()) == 0
    status, _ = post(runtime, {"X-GitHub-Hook-ID": "%" * 100, "X-GitHub-Delivery": ":" * 60})
    assert status == 202  # 7 + 300 + 1 + 180 characters: fits


def test_a_blank_idempotency_key_leaves_the_event_uuid_in_charge(runtime: Runtime) -> None:
    body = json.dumps(load_sample("gitlab/deployment.success.json")).encode()

    def post_gitlab(headers: dict[str, str]) -> dict[str, object]:
        sent = {
            "X-Gitlab-Event": "Deployment Hook",
            "X-Gitlab-Token": runtime.gitlab_token,
            "Content-Type": "application/json",
            **headers,
        }
        answer = client_for(runtime).post("/webhooks/gitlab", data=body, headers=sent)
        return dict(answer.json)

    first = post_gitlab({"Idempotency-Key": " ", "X-Gitlab-Event-UUID": "u-1"})
    again = post_gitlab({"X-Gitlab-Event-UUID": "u-1"})
    other = post_gitlab({"Idempotency-Key": " ", "X-Gitlab-Event-UUID": "u-2"})
    assert (first["status"], again["status"], other["status"]) == ("queued", "duplicate", "queued")
