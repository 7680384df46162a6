"""Bounds on what one webhook may make the bridge store and send (docs/limits.md).

Each bad input is a 400 naming the field (or an "ignored" naming the reason), and nothing is
stored: the worker only ever delivers what the outbox holds, so nothing is sent either.
Runs on SQLite and PostgreSQL (conftest's ``db_url``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bridge.app import Runtime
from bridge.config import parse_config
from bridge.model import (
    MAX_EVENT_BYTES,
    MAX_KEY_BYTES,
    MAX_NAME,
    MAX_REPOSITORY,
    MAX_TITLE,
    MAX_URL,
)
from bridge.store import Store
from tests.conftest import load_sample
from tests.receiver_kit import GITHUB_SECRET, client_for, github_post, gitlab_post


@pytest.fixture
def runtime(new_runtime: Callable[..., Runtime]) -> Runtime:
    return new_runtime()


def stored(runtime: Runtime) -> int:
    return sum(runtime.store.counts().values())


def status_doc(**changes: Any) -> dict[str, Any]:
    """deployment_status.success with dotted-path fields replaced."""
    doc = copy.deepcopy(load_sample("github/deployment_status.success.payload-entities.json"))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
    return doc


def stored_event(runtime: Runtime, answer: Any) -> dict[str, Any]:
    assert answer.status_code == 202, answer.json
    found = runtime.store.get(answer.json["id"])
    assert found is not None
    return dict(found.payload["event"])


LONG = "x" * (MAX_NAME + 1)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        pytest.param(
            {"repository__full_name": "acme/" + "x" * MAX_REPOSITORY}, "repository", id="repository"
        ),
        pytest.param({"deployment__environment": LONG}, "environment", id="environment"),
        pytest.param(
            {"deployment_status__creator": {"login": LONG}}, "deployer name", id="deployer"
        ),
        pytest.param(
            {"deployment_status__target_url": "https://deploy.acme.example/" + "a" * MAX_URL},
            "url",
            id="url",
        ),
        pytest.param({"repository__full_name": "acme/pay\x00ments"}, "repository", id="nul-repo"),
        pytest.param({"deployment__environment": "prod\nx"}, "environment", id="lf-env"),
        pytest.param({"deployment__environment": "prod\u2028x"}, "environment", id="ls-env"),
        pytest.param({"deployment__environment": "prod\x9bx"}, "environment", id="c1-env"),
        pytest.param(
            {"deployment_status__target_url": "https://deploy.acme.example/a\r\nb"},
            "url",
            id="crlf-url",
        ),
        pytest.param(
            {"deployment__payload": {"cortex": {"entities": ["payments-\x1b[0m"]}}},
            "entity",
            id="esc-entity",
        ),
        pytest.param(
            {"deployment__payload": {"cortex": {"entities": ["payments-" + LONG]}}},
            "entity",
            id="long-entity",
        ),
        pytest.param({"deployment__ref": "r" * MAX_EVENT_BYTES}, "details.ref", id="whole-event"),
    ],
)
def test_a_field_past_its_bound_is_a_400_naming_it(runtime, changes, named: str) -> None:
    answer = github_post(client_for(runtime), "deployment_status", status_doc(**changes))
    assert answer.status_code == 400, answer.json
    assert named in answer.json["reason"]
    assert len(answer.json["reason"]) < 200
    assert stored(runtime) == 0


@pytest.mark.parametrize("tag", [".", ".."])
def test_dot_entities_are_refused(new_runtime, tag: str) -> None:
    rt = new_runtime({"routes": [{"match": {}, "entities": ["{repo}"], "payload_entities": ["*"]}]})
    doc = status_doc(deployment__payload={"cortex": {"entities": [tag]}})
    answer = github_post(client_for(rt), "deployment_status", doc)
    assert answer.status_code == 400
    assert "names no entity" in answer.json["reason"]
    # The same from a route's template: "{repo}" of "acme/.." is "..".
    doc = status_doc(repository__full_name=f"acme/{tag}", deployment__payload={})
    answer = github_post(client_for(rt), "deployment_status", doc)
    assert answer.status_code == 400
    assert stored(rt) == 0


def test_names_at_their_bound_are_stored(runtime) -> None:
    name = "n" * MAX_NAME
    doc = status_doc(
        repository__full_name="acme/" + "r" * (MAX_NAME - 5),
        deployment__environment=name,
        deployment_status__creator={"login": name},
        deployment__payload={"cortex": {"entities": ["payments-" + "e" * (MAX_NAME - 9)]}},
        deployment_status__target_url="https://d.example/" + "u" * (MAX_URL - 18),
    )
    event = stored_event(runtime, github_post(client_for(runtime), "deployment_status", doc))
    assert len(event["repository"]) == len(event["environment"]) == MAX_NAME
    assert event["deployer_name"] == name and len(event["url"]) == MAX_URL


def test_a_key_too_long_in_utf8_for_an_index_is_a_400(runtime) -> None:
    # 255 characters each, but four bytes apiece: the idempotency key would not fit
    # PostgreSQL's btree (2,704 bytes), and the worker could never save its record.
    wide = "".join(chr(0x1F600 + n % 64) for n in range(MAX_NAME))
    doc = status_doc(
        repository__full_name="acme/" + wide[5:],
        deployment__environment=wide,
        deployment__payload={},
    )
    answer = github_post(client_for(runtime), "deployment_status", doc)
    assert answer.status_code == 400, answer.json
    assert f"bytes in UTF-8; at most {MAX_KEY_BYTES}" in answer.json["reason"]
    assert stored(runtime) == 0
    narrow = status_doc(deployment__environment=wide[:100], deployment__payload={})
    assert github_post(client_for(runtime), "deployment_status", narrow).status_code == 202


def test_a_long_title_is_cut_to_cortexs_limit(runtime) -> None:
    # Far past the cut, within the default body limit (1 MiB).
    doc = status_doc(deployment__description="T" * 500_000)
    event = stored_event(runtime, github_post(client_for(runtime), "deployment_status", doc))
    assert event["title"] == "T" * MAX_TITLE


def test_control_characters_in_title_and_deployer_become_spaces(runtime) -> None:
    doc = status_doc(
        deployment__description="Fix\x1b[31m red\x07\x07text\u2028",
        deployment_status__creator={"login": "mara\tokafor"},
    )
    event = stored_event(runtime, github_post(client_for(runtime), "deployment_status", doc))
    assert event["title"] == "Fix [31m red text"
    assert event["deployer_name"] == "mara okafor"


def test_gitlab_deployer_email_is_bounded(runtime) -> None:
    doc = copy.deepcopy(load_sample("gitlab/deployment.success.json"))
    doc["user"]["email"] = "m" * MAX_NAME + "@acme.example"
    answer = gitlab_post(client_for(runtime), "Deployment Hook", doc)
    assert answer.status_code == 400
    assert "deployer email" in answer.json["reason"]
    assert stored(runtime) == 0


# --- entities a deployment's payload names ----------------------------------------------------


def entities_doc(count: int) -> dict[str, Any]:
    tags = [f"payments-{n}" for n in range(count)]
    return status_doc(deployment__payload={"cortex": {"entities": tags}})


def test_more_entities_than_the_limit_is_a_400_naming_it(runtime) -> None:
    answer = github_post(client_for(runtime), "deployment_status", entities_doc(21))
    assert answer.status_code == 400
    assert "21 entities" in answer.json["reason"]
    assert "server.max_entities_per_event (20)" in answer.json["reason"]
    big = github_post(client_for(runtime), "deployment_status", entities_doc(5000))
    assert big.status_code == 400
    assert stored(runtime) == 0
    at_limit = github_post(client_for(runtime), "deployment_status", entities_doc(20))
    assert at_limit.status_code == 202
    assert len(runtime.store.get(at_limit.json["id"]).payload["entities"]) == 20


def test_the_entity_limit_is_configurable(new_runtime) -> None:
    rt = new_runtime({"server": {"max_entities_per_event": 3}})
    answer = github_post(client_for(rt), "deployment_status", entities_doc(4))
    assert answer.status_code == 400
    assert "server.max_entities_per_event (3)" in answer.json["reason"]
    assert stored(rt) == 0
    assert github_post(client_for(rt), "deployment_status", entities_doc(3)).status_code == 202


@pytest.mark.parametrize(
    ("routes", "reason"),
    [
        pytest.param(None, "the default route allows none", id="default-config"),
        pytest.param(
            [{"match": {}, "entities": ["{repo}"]}], "routes[0] allows none", id="not-allowed"
        ),
        pytest.param(
            [{"match": {}, "entities": ["{repo}"], "payload_entities": ["payments-api"]}],
            "entity 'payments-worker' named by the deployment's payload is not allowed by "
            "routes[0].payload_entities",
            id="one-not-allowed",
        ),
    ],
)
def test_payload_entities_not_allowed_by_the_route_are_ignored(
    db_url: str, routes: list[dict[str, Any]] | None, reason: str
) -> None:
    config = parse_config({"routes": routes} if routes is not None else {})
    with Store.from_url(db_url) as store:
        rt = Runtime(config=config, store=store, github_secret=GITHUB_SECRET)
        answer = github_post(
            client_for(rt), "deployment_status", "deployment_status.success.payload-entities"
        )
        assert (answer.status_code, answer.json["status"]) == (200, "ignored")
        assert reason in answer.json["reason"]
        assert stored(rt) == 0


def test_payload_entities_allowed_by_the_route_replace_its_entities(runtime) -> None:
    answer = github_post(
        client_for(runtime), "deployment_status", "deployment_status.success.payload-entities"
    )
    assert answer.status_code == 202
    found = runtime.store.get(answer.json["id"])
    assert found is not None
    assert found.payload["entities"] == ["payments-api", "payments-worker"]
    assert found.payload["rule"] == "routes[0].payload_entities"
