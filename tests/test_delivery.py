"""From webhook to Cortex: the outbox, the worker, lifecycle, rollback, faults, replays.

Every test runs on SQLite and on PostgreSQL (``[sqlite]``, ``[postgresql]``: conftest's db_url).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Runtime
from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex, Fault
from bridge.mapping import key_of
from bridge.model import Status
from bridge.record.core import Action, Known, Policy, decide, ignore_reason
from bridge.store import StoreError
from bridge.worker import Deliverer, Worker
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import ADMIN_TOKEN, client_for, github_post, gitlab_post, runtime_on


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Bridge:
    """A receiver and one worker on one database, talking to the stand-in Cortex."""

    def __init__(
        self,
        db_url: str,
        cortex: FakeCortex,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.clock = Clock()
        config = {"cortex": {"url": cortex.url, "timeout_seconds": 2}, **(config or {})}
        self.runtime: Runtime = runtime_on(db_url, config, clock=self.clock)
        self.http = client_for(self.runtime)
        self.client = CortexClient(cortex.url, TOKEN, timeout=2)
        deliverer = Deliverer(
            self.runtime.store, self.client, self.runtime.config, clock=self.clock
        )
        self.worker = Worker(
            self.runtime.store,
            deliverer,
            self.runtime.config.delivery,
            owner="test-worker",
            clock=self.clock,
        )

    def drain(self, *, rounds: int = 20) -> None:
        """Run the worker until nothing is due now."""
        for _ in range(rounds):
            if self.worker.run_once() == 0:
                return

    def close(self) -> None:
        self.client.close()
        self.runtime.store.close()


@pytest.fixture
def bridge(db_url: str, cortex: FakeCortex) -> Iterator[Bridge]:
    made = Bridge(
        db_url,
        cortex,
        {"workflows": [{"match": {"workflow": "Deploy*"}, "environment": "production"}]},
    )
    yield made
    made.close()


def only(cortex: FakeCortex) -> dict[str, Any]:
    (deploy,) = cortex.all_deploys()
    return deploy


def test_github_deployment_status_becomes_one_deploy(bridge: Bridge, cortex: FakeCortex) -> None:
    sample = load_sample("github/deployment_status.success.payload-entities.json")
    sample["deployment"]["payload"] = {}
    answer = github_post(bridge.http, "deployment_status", sample)
    assert answer.status_code == 202
    bridge.drain()
    deploy = only(cortex)
    assert deploy["entity"] == "payments-api"
    assert deploy["sha"] == "98a7b5192a8b18364cb62a25df42d35705920ca6"
    assert deploy["environment"] == "production"
    assert deploy["timestamp"] == "2026-11-23T10:01:44Z"
    assert deploy["url"] == "https://deploy.acme.example/releases/8841"
    assert deploy["deployer"]["name"] == "mara-okafor"
    assert deploy["type"] == "DEPLOY"
    assert deploy["customData"]["status"] == "succeeded"
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "delivered"
    assert delivery.results["payments-api"]["uuid"] == deploy["uuid"]


def test_entities_named_by_the_deployment_payload(bridge: Bridge, cortex: FakeCortex) -> None:
    github_post(bridge.http, "deployment_status", "deployment_status.success.payload-entities")
    bridge.drain()
    assert sorted(d["entity"] for d in cortex.all_deploys()) == ["payments-api", "payments-worker"]


def test_configured_workflow_run_becomes_one_deploy(bridge: Bridge, cortex: FakeCortex) -> None:
    github_post(bridge.http, "workflow_run", "workflow_run.completed.success")
    bridge.drain()
    deploy = only(cortex)
    run = load_sample("github/workflow_run.completed.success.json")["workflow_run"]
    assert deploy["sha"] == run["head_sha"]
    assert deploy["url"] == run["html_url"]
    assert deploy["environment"] == "production"


def test_gitlab_deployment_hook(bridge: Bridge, cortex: FakeCortex) -> None:
    sample = load_sample("gitlab/deployment.success.json")
    gitlab_post(bridge.http, "Deployment Hook", sample)
    bridge.drain()
    deploy = only(cortex)
    assert len(deploy["sha"]) == 40 and sample["commit_url"].endswith(deploy["sha"])
    assert deploy["environment"] == "production"
    assert deploy["url"] == sample["deployable_url"]
    assert deploy["deployer"]["name"] == sample["user"]["name"]
    assert deploy["timestamp"] == "2026-06-18T12:05:31Z"  # "14:05:31 +0200", in UTC


def test_redelivery_records_nothing_more(bridge: Bridge, cortex: FakeCortex) -> None:
    for _ in range(3):
        github_post(
            bridge.http,
            "deployment_status",
            "deployment_status.success.payload-entities",
            delivery="same",
        )
        bridge.drain()
    assert len(cortex.requests_to("POST")) == 2  # two entities, once each


def test_same_deploy_through_two_deliveries_is_one_record(
    bridge: Bridge, cortex: FakeCortex
) -> None:
    # GitHub sends the deployment again under a new delivery id ("Redeliver" after a
    # de-duplication window, or an org hook beside a repo hook): still one record.
    for delivery in ("first", "second"):
        github_post(
            bridge.http,
            "deployment_status",
            "deployment_status.success.payload-entities",
            delivery=delivery,
        )
        bridge.drain()
    assert len(cortex.all_deploys()) == 2  # payments-api and payments-worker, once each


def deploy_gitlab(bridge: Bridge, n: int, sha: str, *, drain: bool = True) -> None:
    """GitLab's Deployment Hook for deploy ``n`` of ``sha`` (a day apart), delivered (with
    ``drain``; else only stored)."""
    doc = load_sample("gitlab/deployment.success.json")
    doc.update(
        deployable_id=1000 + n,
        deployment_id=2000 + n,
        short_sha=sha[:8],
        status_changed_at=f"2026-06-1{n + 1} 10:00:00 UTC",
        commit_url=f"https://gitlab.acme.example/x/-/commit/{sha}",
    )
    assert gitlab_post(bridge.http, "Deployment Hook", doc).status_code == 202
    if drain:
        bridge.drain()


def test_rollback_detected_from_history(db_url: str, cortex: FakeCortex) -> None:
    bridge = Bridge(db_url, cortex)
    for n, sha in enumerate(["1" * 40, "2" * 40, "1" * 40]):
        deploy_gitlab(bridge, n, sha)
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
    bridge.close()


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "one-batch"])
@pytest.mark.parametrize("order", [(2, 0, 1), (1, 2, 0), (2, 1, 0)])
def test_a_deploy_delivered_after_later_ones_types_them_again(
    db_url: str, cortex: FakeCortex, order: tuple[int, ...], batch: bool
) -> None:
    # After a Cortex outage, jittered retries deliver a pair's deploys out of order: the
    # return to the first sha, delivered before the deploy it went back from, stayed DEPLOY.
    bridge = Bridge(db_url, cortex)
    shas = ["1" * 40, "2" * 40, "1" * 40]
    try:
        for n in order:
            deploy_gitlab(bridge, n, shas[n], drain=not batch)
        bridge.drain()  # one batch: the search it shares was made before its records
    finally:
        bridge.close()
    by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
    assert [d["type"] for d in by_time] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
    assert all(d["customData"]["bridge"]["typeDetected"] is True for d in by_time)
    assert len(cortex.requests_to("POST")) == 3  # each recorded once, corrected in place


@pytest.mark.parametrize("end", ["success", "failed"])
def test_a_late_lifecycle_deploy_types_the_later_ones_when_it_ends(
    db_url: str, cortex: FakeCortex, end: str
) -> None:
    # record.mode lifecycle: the late deploy's start is no deploy yet; its end is, when it
    # succeeded, and then the return after it is a ROLLBACK; when it failed, its start record
    # goes and the return never was one.
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    try:
        deploy_gitlab(bridge, 0, "1" * 40)
        deploy_gitlab(bridge, 2, "1" * 40)
        for status in ("running", end):
            doc = load_sample(f"gitlab/deployment.{status}.json")
            minute = "00" if status == "running" else "05"
            doc.update(
                deployable_id=1001,
                deployment_id=2001,
                short_sha="22222222",
                status_changed_at=f"2026-06-12 10:{minute}:00 UTC",
                commit_url=f"https://gitlab.acme.example/x/-/commit/{'2' * 40}",
            )
            assert gitlab_post(bridge.http, "Deployment Hook", doc).status_code == 202
            bridge.drain()
    finally:
        bridge.close()
    by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
    typed = ["DEPLOY", "DEPLOY", "ROLLBACK"] if end == "success" else ["DEPLOY", "DEPLOY"]
    assert [d["type"] for d in by_time] == typed


def _late_deploy(
    db_url: str, cortex: FakeCortex, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    """Deploys 2 and 0 of one sha, then 1 of another, late, its logs caught from ``level``
    (a fault injected in Cortex before, if any, meets the retyping of deploy 2)."""
    bridge = Bridge(db_url, cortex)
    try:
        deploy_gitlab(bridge, 2, "1" * 40)
        deploy_gitlab(bridge, 0, "1" * 40)
        with caplog.at_level(level, logger="bridge.record.core"):
            deploy_gitlab(bridge, 1, "2" * 40)
    finally:
        bridge.close()


def test_a_retyping_is_logged_with_the_records_it_changed(
    db_url: str, cortex: FakeCortex, caplog: pytest.LogCaptureFixture
) -> None:
    # A type that changes in Cortex with no word would puzzle whoever reads the history: the
    # relay's log names the records typed again.
    _late_deploy(db_url, cortex, caplog, logging.INFO)
    (later,) = [d for d in cortex.all_deploys() if d["type"] == "ROLLBACK"]
    (line,) = [r for r in caplog.records if r.getMessage() == "later deploys typed again"]
    assert line.__dict__["uuids"] == [later["uuid"]]
    assert line.__dict__["environment"] == later["environment"]


def test_a_failed_retyping_leaves_the_late_deploy_recorded_and_says_so(
    db_url: str, cortex: FakeCortex, caplog: pytest.LogCaptureFixture
) -> None:
    cortex.inject(Fault("status", status=400, method="PUT"))  # no PUT before the late one's
    _late_deploy(db_url, cortex, caplog, logging.WARNING)
    assert len(cortex.all_deploys()) == 3  # recorded, once each
    assert [r.getMessage() for r in caplog.records] == ["later deploys not typed again"]


def test_a_type_the_user_gave_is_never_typed_again(db_url: str, cortex: FakeCortex) -> None:
    # The later record's type was given (send --type, a record without the detection's mark):
    # a deploy that comes late leaves it as it is.
    bridge = Bridge(db_url, cortex)
    try:
        deploy_gitlab(bridge, 2, "1" * 40)
        (later,) = cortex.all_deploys()
        custom = dict(later["customData"], bridge={**later["customData"]["bridge"]})
        del custom["bridge"]["typeDetected"]
        body = {k: later[k] for k in ("title", "timestamp", "type", "sha", "environment")}
        bridge.client.update_deploy(later["entity"], later["uuid"], {**body, "customData": custom})
        deploy_gitlab(bridge, 0, "1" * 40)
        deploy_gitlab(bridge, 1, "2" * 40)
    finally:
        bridge.close()
    by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
    assert [d["type"] for d in by_time] == ["DEPLOY", "DEPLOY", "DEPLOY"]


def test_rollback_detected_from_cortex_when_the_relay_has_no_history(
    db_url: str, cortex: FakeCortex, tmp_path: Path
) -> None:
    # Deploys made before this relay's database existed (another relay, a lost database, or
    # the Action step): the relay reads the environment's history from Cortex once.
    earlier = Bridge(f"sqlite:///{tmp_path / 'earlier.db'}", cortex)
    deploy_gitlab(earlier, 0, "1" * 40)
    deploy_gitlab(earlier, 1, "2" * 40)
    earlier.close()

    def listings() -> int:
        return sum(r.path.startswith("/api/v1/catalog/") for r in cortex.requests_to("GET"))

    before = listings()
    fresh = Bridge(db_url, cortex)
    try:
        deploy_gitlab(fresh, 2, "1" * 40)
        deploy_gitlab(fresh, 3, "3" * 40)
    finally:
        fresh.close()
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY", "DEPLOY", "ROLLBACK", "DEPLOY"]
    assert listings() - before == 1  # Cortex's history read once, then kept in the store


def test_lifecycle_updates_the_start_record_in_place(db_url: str, cortex: FakeCortex) -> None:
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    start = github_post(bridge.http, "deployment_status", "deployment_status.in_progress")
    assert start.status_code == 202
    bridge.drain()
    assert {d["customData"]["status"] for d in cortex.all_deploys()} == {"in_progress"}
    github_post(bridge.http, "deployment_status", "deployment_status.success.payload-entities")
    bridge.drain()
    stored = cortex.all_deploys()
    assert len(stored) == 2  # the two entities, each one record
    assert {d["customData"]["status"] for d in stored} == {"succeeded"}
    assert len(cortex.requests_to("PUT")) == 2
    assert {d["timestamp"] for d in stored} == {"2026-11-23T10:01:44Z"}
    bridge.close()


def test_lifecycle_the_record_keeps_the_first_start(db_url: str, cortex: FakeCortex) -> None:
    # PRODUCT.md: the start is the first of created or running. The record made at created
    # said no start, and running's PUT replaced it with its own later time.
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    created = load_sample("gitlab/deployment.running.json")
    created.update(status="created", status_changed_at="2026-06-18 14:01:00 +0200")
    for sample in (created, "deployment.running", "deployment.success"):
        assert gitlab_post(bridge.http, "Deployment Hook", sample).status_code == 202
        bridge.drain()
        (deploy,) = cortex.all_deploys()
        assert deploy["customData"]["startedAt"] == "2026-06-18T12:01:00Z"
    bridge.close()
    assert deploy["customData"]["status"] == "succeeded"
    assert deploy["customData"]["durationSeconds"] == 271  # 12:01:00 to 12:05:31
    # GitHub: the deployment's creation starts it, in final mode too.
    final = Bridge(db_url, cortex, {})
    github_post(final.http, "deployment_status", "deployment_status.success")
    final.drain()
    final.close()
    custom = cortex.all_deploys()[-1]["customData"]
    assert (custom["startedAt"], custom["durationSeconds"]) == ("2026-11-23T09:58:02Z", 222)


def test_lifecycle_failure_deletes_the_start_record(db_url: str, cortex: FakeCortex) -> None:
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    started = load_sample("github/deployment_status.in_progress.json")
    failed = copy.deepcopy(started)
    failed["deployment_status"].update(state="failure", updated_at="2026-11-23T10:09:00Z")
    github_post(bridge.http, "deployment_status", started)
    bridge.drain()
    assert cortex.all_deploys() != []
    assert github_post(bridge.http, "deployment_status", failed).status_code == 202
    bridge.drain()
    assert cortex.all_deploys() == []
    assert len(cortex.requests_to("DELETE")) >= 1
    bridge.close()


@pytest.mark.parametrize(
    ("state", "left"),
    [pytest.param("failure", set(), id="failed"), pytest.param("success", {"succeeded"}, id="ok")],
)
def test_lifecycle_end_finds_a_start_it_has_no_trace_of(
    db_url: str, cortex: FakeCortex, state: str, left: set[str]
) -> None:
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    started = load_sample("github/deployment_status.in_progress.json")
    ended = copy.deepcopy(started)
    ended["deployment_status"].update(state=state, updated_at="2026-11-23T10:09:00Z")
    github_post(bridge.http, "deployment_status", started)
    bridge.drain()
    starts = cortex.all_deploys()
    for deploy in starts:  # another path made the start: this relay has no trace of it
        assert bridge.runtime.store.records.delete(str(key_of(deploy)))
    cortex.received.clear()
    assert github_post(bridge.http, "deployment_status", ended).status_code == 202
    bridge.drain()
    assert {d["customData"]["status"] for d in cortex.all_deploys()} == left
    searches = [r for r in cortex.requests_to("GET") if r.path == "/api/v1/deploys/search"]
    # At most one search per entity (the start's, a moment ago, may still serve), then the
    # PUT or DELETE, never a second record.
    assert len(searches) <= len(starts)
    assert cortex.requests_to("POST") == []
    bridge.close()


def test_failures_ignored_in_final_mode(bridge: Bridge, cortex: FakeCortex) -> None:
    answer = github_post(bridge.http, "deployment_status", "deployment_status.failure")
    assert answer.status_code == 200 and answer.json["status"] == "ignored"


def test_cortex_down_then_back_delivers_exactly_once(bridge: Bridge, cortex: FakeCortex) -> None:
    cortex.inject(*[Fault("status", status=503) for _ in range(3)])
    sample = load_sample("github/deployment_status.success.payload-entities.json")
    sample["deployment"]["payload"] = {}
    answer = github_post(bridge.http, "deployment_status", sample)
    assert answer.status_code == 202
    for _ in range(4):
        bridge.drain()
        bridge.clock.advance(600)
    assert len(cortex.all_deploys()) == 1
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "delivered"
    assert delivery.attempts >= 3


def test_retry_after_sets_the_next_attempt(bridge: Bridge, cortex: FakeCortex) -> None:
    cortex.inject(Fault.rate_limited(42))
    answer = github_post(
        bridge.http, "deployment_status", "deployment_status.success.payload-entities"
    )
    bridge.drain()
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "retrying"
    assert delivery.next_attempt_at == bridge.clock.now + timedelta(seconds=42)
    bridge.clock.advance(41)
    bridge.drain()
    assert cortex.all_deploys() == []
    bridge.clock.advance(1)
    bridge.drain()
    assert len(cortex.all_deploys()) == 2


@pytest.mark.parametrize(("asked", "waited"), [(900, 900), (7200, 3600)])
def test_retry_after_wins_over_the_backoff_cap_up_to_an_hour(
    db_url: str, cortex: FakeCortex, asked: int, waited: int
) -> None:
    bridge = Bridge(db_url, cortex, {"delivery": {"backoff_max_seconds": 10}})
    cortex.inject(Fault.rate_limited(asked))
    answer = github_post(
        bridge.http, "deployment_status", "deployment_status.success.payload-entities"
    )
    bridge.drain()
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "retrying"
    assert delivery.next_attempt_at == bridge.clock.now + timedelta(seconds=waited)
    bridge.close()


def test_dropped_after_store_is_not_doubled(bridge: Bridge, cortex: FakeCortex) -> None:
    cortex.inject(Fault("drop_after", method="POST"))
    sample = load_sample("github/deployment_status.success.payload-entities.json")
    sample["deployment"]["payload"] = {}
    github_post(bridge.http, "deployment_status", sample)
    bridge.drain()
    bridge.clock.advance(600)
    bridge.drain()
    assert len(cortex.all_deploys()) == 1


def test_permanent_rejection_is_dead_lettered_and_replayable(db_url: str) -> None:
    with FakeCortex(token=TOKEN, entities={"payments-worker"}) as cortex:
        bridge = Bridge(db_url, cortex)
        answer = github_post(
            bridge.http, "deployment_status", "deployment_status.success.payload-entities"
        )
        bridge.drain()
        delivery = bridge.runtime.store.get(answer.json["id"])
        assert delivery is not None and delivery.status == "dead"
        assert "entity 'payments-api' not found" in (delivery.last_error or "")
        assert [d["entity"] for d in cortex.all_deploys()] == ["payments-worker"]
        cortex.entities = None  # the entity now exists in Cortex
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        dead = bridge.http.get("/api/deliveries?status=dead", headers=auth).json
        assert [d["id"] for d in dead["data"]] == [answer.json["id"]]
        assert (
            bridge.http.post(f"/api/deliveries/{answer.json['id']}/retry", headers=auth).status_code
            == 200
        )
        bridge.drain()
        assert sorted(d["entity"] for d in cortex.all_deploys()) == [
            "payments-api",
            "payments-worker",
        ]
        assert (
            bridge.http.post(f"/api/deliveries/{answer.json['id']}/retry", headers=auth).status_code
            == 409
        )
        bridge.close()


def test_refused_token_keeps_the_event_for_later(bridge: Bridge, cortex: FakeCortex) -> None:
    cortex.inject(Fault("status", status=401, body={"type": "FORBIDDEN", "message": "no"}))
    answer = github_post(
        bridge.http, "deployment_status", "deployment_status.success.payload-entities"
    )
    bridge.drain()
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "retrying"


def test_a_refused_token_never_dead_letters_and_the_fix_drains_the_queue(
    db_url: str, cortex: FakeCortex
) -> None:
    # docs/operations.md: fixing the token drains the queue. The refusals counted as tries
    # and toward dead_letter_after_seconds, and the events died while the token was wrong.
    config = {"delivery": {"max_attempts": 2, "dead_letter_after_seconds": 3600}}
    bridge = Bridge(db_url, cortex, config)
    refused = Fault("status", status=401, body={"type": "FORBIDDEN", "message": "no"})
    cortex.inject(*[refused] * 50)
    answer = github_post(bridge.http, "deployment_status", "deployment_status.success")
    for _ in range(12):  # 3 hours: past max_attempts and dead_letter_after_seconds
        bridge.drain()
        bridge.clock.advance(900)  # past every backoff
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "retrying" and delivery.attempts >= 3
    cortex.clear_faults()  # the token fixed
    bridge.clock.advance(900)
    bridge.drain()
    assert bridge.runtime.store.get(answer.json["id"]).status == "delivered"  # type: ignore[union-attr]
    assert len(cortex.all_deploys()) == 1
    bridge.close()


def test_killed_worker_lease_is_taken_over(bridge: Bridge, cortex: FakeCortex) -> None:
    github_post(bridge.http, "deployment_status", "deployment_status.success.payload-entities")
    store = bridge.runtime.store
    (claimed,) = store.claim(owner="killed", now=bridge.clock(), lease_seconds=60)
    bridge.drain()
    assert cortex.all_deploys() == []  # still leased by the killed worker
    bridge.clock.advance(61)
    bridge.drain()
    assert len(cortex.all_deploys()) == 2
    assert store.get(claimed.id).status == "delivered"  # type: ignore[union-attr]


def test_action_then_webhook_of_the_same_run_is_one_record(
    bridge: Bridge, cortex: FakeCortex
) -> None:
    from bridge.cli import main

    sample = load_sample("github/deployment_status.success.actions.json")
    run = sample["workflow_run"]
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": sample["deployment"]["sha"],
        "GITHUB_RUN_ID": str(run["id"]),
        "GITHUB_RUN_ATTEMPT": str(run["run_attempt"]),
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex.url,
        "INPUT_ENVIRONMENT": "production",
        "INPUT_TIMESTAMP": sample["deployment_status"]["updated_at"],
    }
    assert main(["action"], env) == 0
    github_post(bridge.http, "deployment_status", sample)
    bridge.drain()
    assert len(cortex.all_deploys()) == 1


def test_an_event_that_keeps_killing_its_worker_is_dead_lettered(
    db_url: str, cortex: FakeCortex
) -> None:
    bridge = Bridge(db_url, cortex, {"delivery": {"max_attempts": 2, "lease_seconds": 30}})
    answer = github_post(
        bridge.http, "deployment_status", "deployment_status.success.payload-entities"
    )
    store = bridge.runtime.store
    for owner in ("crashed-1", "crashed-2"):  # each claimed, then its process died
        assert store.claim(owner=owner, now=bridge.clock(), lease_seconds=30)
        bridge.clock.advance(31)
    bridge.drain()
    delivery = store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "dead"
    assert "2 attempts that never finished" in (delivery.last_error or "")
    assert cortex.received == []
    bridge.close()


def test_gives_up_after_dead_letter_time(db_url: str, cortex: FakeCortex) -> None:
    bridge = Bridge(db_url, cortex, {"delivery": {"dead_letter_after_seconds": 3600}})
    cortex.inject(*[Fault("status", status=503) for _ in range(100)])
    answer = github_post(
        bridge.http, "deployment_status", "deployment_status.success.payload-entities"
    )
    for _ in range(12):
        bridge.drain()
        bridge.clock.advance(400)
    delivery = bridge.runtime.store.get(answer.json["id"])
    assert delivery is not None and delivery.status == "dead"
    assert "503" in (delivery.last_error or "")
    # Retried by hand, then no worker ran for longer than a window (twice): dead again
    # each time before an attempt, its error saying so once.
    for _ in range(2):
        assert bridge.runtime.store.retry(delivery.id, now=bridge.clock())
        bridge.clock.advance(3601)
        bridge.drain()
    again = bridge.runtime.store.get(delivery.id)
    assert again is not None and again.status == "dead"
    assert (again.last_error or "").count("(gave up after") == 1, again.last_error
    bridge.close()


@pytest.mark.parametrize("config", [{"dead_letter_after_seconds": 3600}, {"max_attempts": 1}])
def test_a_dead_letter_retried_by_hand_later_is_tried_afresh(
    db_url: str, cortex: FakeCortex, config: dict[str, Any]
) -> None:
    """The entity is made in Cortex the next day, and the operator replays the dead letter:
    its time and attempts count from the retry, not from when the webhook came."""
    bridge = Bridge(db_url, cortex, {"delivery": config})
    cortex.entities = set()  # no such entity yet: 404, dead at once
    answer = github_post(
        bridge.http, "deployment_status", "deployment_status.success.payload-entities"
    )
    bridge.drain()
    store = bridge.runtime.store
    dead = store.get(answer.json["id"])
    assert dead is not None and dead.status == "dead"
    bridge.clock.advance(86_400)
    cortex.entities = None  # made now
    assert store.retry(dead.id, now=bridge.clock())
    bridge.drain()
    delivered = store.get(dead.id)
    assert delivered is not None and delivered.status == "delivered", delivered
    assert len(cortex.all_deploys()) == 2  # the payload's two entities, once each
    bridge.close()


# -- the recording policy, stated once (pure) ------------------------------------------------

FINAL, LIFECYCLE = Policy(), Policy(lifecycle=True)
STARTED = Known("u-1", "in_progress")


@pytest.mark.parametrize(
    ("status", "known", "policy", "expected"),
    [
        pytest.param(Status.SUCCEEDED, None, FINAL, Action.CREATE, id="final-success"),
        pytest.param(Status.FAILED, None, FINAL, Action.SKIP, id="final-failure"),
        pytest.param(Status.FAILED, None, Policy(failures=True), Action.CREATE, id="failures"),
        pytest.param(Status.IN_PROGRESS, None, FINAL, Action.SKIP, id="final-start"),
        pytest.param(Status.IN_PROGRESS, None, LIFECYCLE, Action.CREATE, id="lifecycle-start"),
        pytest.param(Status.SUCCEEDED, STARTED, LIFECYCLE, Action.UPDATE, id="lifecycle-end"),
        pytest.param(Status.CANCELLED, STARTED, LIFECYCLE, Action.DELETE, id="lifecycle-fail"),
        pytest.param(
            Status.FAILED,
            Known("u-1", "succeeded"),
            LIFECYCLE,
            Action.SKIP,
            id="lifecycle-failure-after-success-keeps-it",
        ),
        pytest.param(
            Status.FAILED,
            Known("u-1", "succeeded"),
            Policy(lifecycle=True, failures=True),
            Action.UPDATE,
            id="failures-failure-after-success",
        ),
        pytest.param(
            Status.FAILED,
            Known("u-1", "succeeded", ended=datetime(2026, 11, 23, 10, 12, tzinfo=timezone.utc)),
            Policy(failures=True),
            Action.SKIP,
            id="failures-a-failure-before-the-recorded-success",
        ),
        pytest.param(
            Status.SUCCEEDED,
            Known("u-1", "failed", ended=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)),
            Policy(failures=True),
            Action.UPDATE,
            id="failures-a-success-after-the-recorded-failure",
        ),
        pytest.param(
            Status.PENDING, Known("u-1", "succeeded"), LIFECYCLE, Action.SKIP, id="late-start"
        ),
        pytest.param(
            Status.SUCCEEDED, Known("u-1", "succeeded"), FINAL, Action.SKIP, id="already-there"
        ),
    ],
)
def test_decide(status: Status, known: Known | None, policy: Policy, expected: Action) -> None:
    at = datetime(2026, 11, 23, 10, 9, tzinfo=timezone.utc)  # the event's own time
    assert decide(status, known, policy, at).action is expected


@pytest.mark.parametrize(
    ("status", "record", "stored"),
    [
        pytest.param(Status.FAILED, {}, False, id="final-failure"),
        pytest.param(Status.FAILED, {"mode": "lifecycle"}, True, id="lifecycle-may-delete"),
        pytest.param(Status.PENDING, {}, False, id="final-start"),
        pytest.param(Status.PENDING, {"mode": "lifecycle"}, True, id="lifecycle-start"),
        pytest.param(Status.SUCCEEDED, {}, True, id="success"),
    ],
)
def test_the_receiver_asks_the_same_policy(
    status: Status, record: dict[str, Any], stored: bool
) -> None:
    reason = ignore_reason(status, parse_config({"record": record}))
    assert (reason is None) is stored


def test_an_event_the_bridge_fails_on_is_retried_then_dead_and_holds_up_nothing(
    bridge: Bridge, cortex: FakeCortex
) -> None:
    # One stored before the model bounded times: its window's arithmetic overflows. It once
    # crashed the worker's loop on every claim, held the rest of its batch until their leases
    # ran out, showed no error, and was never dead-lettered.
    from dataclasses import replace

    from bridge.model import check_deploy, event_from_dict, event_to_dict

    sample = load_sample("github/deployment_status.success.payload-entities.json")
    sample["deployment"]["payload"] = {}
    assert github_post(bridge.http, "deployment_status", sample).status_code == 202
    (good,), _ = bridge.runtime.store.list_deliveries()
    stored = event_from_dict(good.payload["event"])
    far = replace(
        stored,
        ref=replace(stored.ref, id="far"),
        timestamp=datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
    )
    with pytest.raises(Exception, match="timestamp"):
        check_deploy(far, good.payload["entities"])
    poison, _ = bridge.runtime.store.enqueue(
        dedupe_key="github:far",
        source="github",
        event_name="deployment_status",
        payload={**good.payload, "event": event_to_dict(far)},
        now=bridge.clock(),
    )
    assert bridge.worker.run_once() == 2  # one claim: both handled, the loop not broken
    failed = bridge.runtime.store.get(poison)
    assert failed is not None and failed.status == "retrying"
    assert failed.last_error is not None
    assert failed.last_error.startswith("the bridge failed delivering it: OverflowError")
    assert bridge.runtime.store.get(good.id).status == "delivered"  # type: ignore[union-attr]
    assert len(cortex.all_deploys()) == 1
    bridge.clock.advance(bridge.runtime.config.delivery.dead_letter_after_seconds + 1)
    bridge.drain()
    dead = bridge.runtime.store.get(poison)
    assert dead is not None and dead.status == "dead", dead
    assert dead.last_error is not None and "OverflowError" in dead.last_error
    assert len(cortex.all_deploys()) == 1


def test_a_database_outage_is_said_once_not_a_traceback_a_second(
    db_url: str, cortex: FakeCortex, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = Bridge(db_url, cortex)
    worker = bridge.worker
    worker.idle_poll = 0.001
    store = bridge.runtime.store
    real_claim = store.claim
    calls = {"n": 0}
    stop = threading.Event()

    def claim(**kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 130:
            raise StoreError("database unavailable (postgresql://u:***@db/bridge): refused")
        stop.set()
        return real_claim(**kw)

    store.claim = claim  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="bridge.worker"):
        worker.run(stop)
    said = [r for r in caplog.records if r.name == "bridge.worker"]
    down = [r for r in said if r.getMessage() == "database unavailable: delivering waits for it"]
    assert len(down) == 3  # failures 1, 61 and 121 of 130
    assert all(r.exc_info is None for r in said)  # no traceback
    (back,) = [r for r in said if r.getMessage() == "database available again: delivering"]
    assert back.failures == 130  # type: ignore[attr-defined]
    bridge.close()


def _other_faces_deploys(bridge: Bridge, count: int) -> None:
    """``count`` deploys of payments-api to production, Dec 5 on, recorded by another face."""
    for day in range(count):
        bridge.client.create_deploy(
            "payments-api",
            {
                "title": f"d{day}",
                "timestamp": f"2026-12-{day + 5:02d}T10:00:00Z",
                "type": "DEPLOY",
                "environment": "production",
                "sha": "e" * 40,
            },
        )


def _busy_pair(db_url: str, cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch) -> Bridge:
    """A bridge on Dec 20 whose pair holds 12 deploys since Dec 5 by another face, more than a
    search reads whole (10 records at most here)."""
    from bridge.cortex import client as cortex_client

    bridge = Bridge(db_url, cortex)
    bridge.clock.now = datetime(2026, 12, 20, 12, 0, tzinfo=timezone.utc)
    _other_faces_deploys(bridge, 12)
    monkeypatch.setattr(cortex_client, "PAGE_SIZE", 1)
    return bridge


def test_a_backlog_on_a_busy_pair_reads_the_events_own_window(
    db_url: str, cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay's search reads from an old event up to now; past what a search reads whole
    # (10,000 records) it raised, and the delivery failed: the event's own window instead.
    bridge = _busy_pair(db_url, cortex, monkeypatch)
    for delivery in ("first", "again"):
        answer = github_post(
            bridge.http, "deployment_status", "deployment_status.success", delivery=delivery
        )
        assert answer.status_code == 202
        bridge.drain()
    counts = bridge.runtime.store.counts()
    bridge.close()
    assert counts["delivered"] >= 1 and counts["dead"] == counts["retrying"] == 0, counts
    made = [d for d in cortex.all_deploys() if d.get("customData")]
    assert len(made) == 1 and made[0]["timestamp"] == "2026-11-23T10:01:44Z"


def test_a_long_run_on_a_busy_pair_reads_the_events_own_window_at_last(
    db_url: str, cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deploy's record is looked for from its run's start (another face dated it there); a
    # run that waited weeks on a busy pair holds more than a search reads from there: the
    # event's own window then, not a failed delivery.
    bridge = _busy_pair(db_url, cortex, monkeypatch)
    doc = copy.deepcopy(load_sample("github/deployment_status.success.json"))
    doc["deployment"]["created_at"] = "2026-12-01T09:00:00Z"
    doc["deployment_status"]["updated_at"] = "2026-12-17T10:00:00Z"
    assert github_post(bridge.http, "deployment_status", doc).status_code == 202
    bridge.drain()
    counts = bridge.runtime.store.counts()
    bridge.close()
    assert {k: n for k, n in counts.items() if n} == {"delivered": 1}, counts
    made = [d for d in cortex.all_deploys() if d.get("customData")]
    assert len(made) == 1 and made[0]["timestamp"] == "2026-12-17T10:00:00Z"


def _failed(of: dict[str, Any]) -> dict[str, Any]:
    failed = copy.deepcopy(of)
    failed["deployment_status"].update(state="failure", updated_at="2026-11-23T10:09:00Z")
    return failed


def _succeeded(of: dict[str, Any]) -> dict[str, Any]:
    succeeded = copy.deepcopy(of)
    succeeded["deployment_status"].update(state="success", updated_at="2026-11-23T10:12:00Z")
    return succeeded


def _statuses_one_by_one(
    bridge: Bridge, cortex: FakeCortex, docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each ``deployment_status`` taken and delivered before the next; the bridge closed with
    nothing dead-lettered: what Cortex holds then."""
    for doc in docs:
        assert github_post(bridge.http, "deployment_status", doc).status_code == 202
        bridge.drain()
    counts = bridge.runtime.store.counts()
    bridge.close()
    assert counts["dead"] == 0, counts
    made = cortex.all_deploys()
    assert len(made) == 2  # one record on each of the deployment's two entities
    return made


@pytest.mark.parametrize("first_the_start", [False, True], ids=["end-first", "start-deleted"])
def test_lifecycle_a_start_that_comes_after_its_failure_records_nothing(
    db_url: str, cortex: FakeCortex, first_the_start: bool
) -> None:
    # GitHub does not order a deployment's events: its failure came first (skipped, nothing
    # to delete), or after a start it deleted; the start that came late then made a record
    # that stayed, a failed deploy counted as a DEPLOY for good.
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    started = load_sample("github/deployment_status.in_progress.json")
    created = load_sample("github/deployment.created.json")
    order = (
        [started, _failed(started), created]
        if first_the_start
        else [_failed(started), created, started]
    )
    for doc in order:
        event = "deployment" if "deployment_status" not in doc else "deployment_status"
        assert github_post(bridge.http, event, doc).status_code == 202
        bridge.drain()
    counts = bridge.runtime.store.counts()
    bridge.close()
    assert cortex.all_deploys() == [] and counts["dead"] == 0


def test_lifecycle_a_record_only_moves_forward(db_url: str, cortex: FakeCortex) -> None:
    # A deployment's creation came after its in_progress: the record went back to pending,
    # with the creation's time and the repository's deployments page for its url.
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    github_post(bridge.http, "deployment_status", "deployment_status.in_progress")
    bridge.drain()
    before = {d["uuid"]: d for d in cortex.all_deploys()}
    github_post(bridge.http, "deployment", "deployment.created")
    bridge.drain()
    bridge.close()
    after = {d["uuid"]: d for d in cortex.all_deploys()}
    assert after == before and {d["customData"]["status"] for d in after.values()} == {
        "in_progress"
    }


def test_a_deploy_another_replica_is_storing_is_one_row_of_the_history(
    db_url: str, cortex: FakeCortex
) -> None:
    # Replica B read a deploy replica A had just recorded before A's history row was in the
    # store: B kept it under a key of its own ("cortex:<sha>:<time>") and A under the deploy's,
    # so the console's entities page showed the deploy twice.
    import sqlalchemy as sa

    from bridge.store.schema import history

    first = Bridge(db_url, cortex)
    github_post(first.http, "deployment_status", "deployment_status.success")
    first.drain()
    (made,) = cortex.all_deploys()
    key = made["customData"]["bridge"]["idempotencyKey"]
    with first.runtime.store.db.transaction(write=True) as conn:  # not written yet, as in a race
        conn.execute(history.delete().where(history.c.idempotency_key == key))
    first.close()
    second = Bridge(db_url, cortex)
    later = load_sample("github/deployment_status.success.json")
    later["deployment"].update(id=later["deployment"]["id"] + 1, sha="b" * 40)
    later["deployment_status"].update(id=later["deployment_status"]["id"] + 1)
    later["deployment_status"]["updated_at"] = "2026-11-23T11:00:00Z"
    github_post(second.http, "deployment_status", later)
    second.drain()
    with second.runtime.store.db.transaction(write=False) as conn:
        keys = [row[0] for row in conn.execute(sa.select(history.c.idempotency_key))]
    second.close()
    assert key in keys and not any(k.startswith("cortex:") for k in keys), keys


@pytest.mark.parametrize("mode", ["final", "lifecycle"])
@pytest.mark.parametrize("stale_last", [True, False], ids=["stale-failure-last", "in-order"])
def test_with_failures_recorded_the_later_end_of_a_deploy_stays(
    db_url: str, cortex: FakeCortex, mode: str, stale_last: bool
) -> None:
    # A deployment failed at 10:09, then succeeded at 10:12 (run again); GitHub delivered the
    # failure last. With record.failures on, it replaced the success: a deploy that went out
    # was shown failed, at the earlier time.
    bridge = Bridge(db_url, cortex, {"record": {"mode": mode, "failures": True}})
    started = load_sample("github/deployment_status.in_progress.json")
    ends = [_failed(started), _succeeded(started)]
    order = ends[::-1] if stale_last else ends
    made = _statuses_one_by_one(
        bridge, cortex, [*([started] if mode == "lifecycle" else []), *order]
    )
    assert {(d["customData"]["status"], d["timestamp"]) for d in made} == {
        ("succeeded", "2026-11-23T10:12:00Z")
    }


@pytest.mark.parametrize("start", [False, True], ids=["failure-first", "after-a-start"])
def test_lifecycle_a_failure_then_a_success_of_the_deploy_is_one_record(
    db_url: str, cortex: FakeCortex, start: bool
) -> None:
    # Flux's every day: a health check fails, then the same revision reconciles. The deploy
    # known to have ended unrecorded was PUT to an empty uuid and dead-lettered (405).
    bridge = Bridge(db_url, cortex, {"record": {"mode": "lifecycle"}})
    started = load_sample("github/deployment_status.in_progress.json")
    order = [*([started] if start else []), _failed(started), _succeeded(started)]
    made = _statuses_one_by_one(bridge, cortex, order)
    assert {d["customData"]["status"] for d in made} == {"succeeded"}
    assert all(d["customData"]["bridge"].get("recordedAt") for d in made)


def test_a_pair_busy_since_the_relays_last_deploy_reads_the_events_own_window(
    db_url: str, cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The relay's look reaches back to its newest deploy on the pair; with other faces' many
    # deploys since, the fallback began there too and failed the same way: dead-lettered.
    from bridge.cortex import client as cortex_client

    bridge = Bridge(db_url, cortex)
    github_post(bridge.http, "deployment_status", "deployment_status.success", delivery="one")
    bridge.drain()
    _other_faces_deploys(bridge, 12)
    bridge.clock.now = datetime(2026, 12, 20, 12, 0, tzinfo=timezone.utc)
    monkeypatch.setattr(cortex_client, "PAGE_SIZE", 1)  # a search reads 10 records at most
    later = load_sample("github/deployment_status.success.json")
    later["deployment"].update(id=later["deployment"]["id"] + 7, sha="c" * 40)
    later["deployment_status"].update(id=later["deployment_status"]["id"] + 7)
    later["deployment_status"]["updated_at"] = "2026-12-19T10:00:00Z"
    assert github_post(bridge.http, "deployment_status", later).status_code == 202
    bridge.drain()
    counts = bridge.runtime.store.counts()
    bridge.close()
    assert counts["dead"] == 0 and counts["retrying"] == 0, counts
    made = sorted(d["sha"] for d in cortex.all_deploys() if d.get("customData"))
    assert len(made) == 2 and made[-1] == "c" * 40


def test_the_worker_keeps_out_a_secret_it_holds_that_the_receiver_did_not(
    db_url: str, cortex: FakeCortex
) -> None:
    # As docs/operations.md deploys the relay, the receivers (serve --no-worker) hold the
    # webhook secrets and only the worker holds the Cortex token: a webhook echoing the token
    # was stored as it came, and the worker sent it to Cortex, for everyone who reads the
    # catalog. The worker now looks for the secrets it holds before it sends.
    import json

    from bridge.relay import make_runtime, make_worker

    receiver = runtime_on(db_url, {"cortex": {"url": cortex.url, "timeout_seconds": 2}})
    client = CortexClient(cortex.url, TOKEN, timeout=2)
    try:
        doc = copy.deepcopy(load_sample("github/deployment_status.success.json"))
        doc["deployment"]["description"] = f"ship {TOKEN} now"
        echoed = github_post(client_for(receiver), "deployment_status", doc, delivery="d-1")
        doc["deployment"]["id"] += 1
        doc["deployment"]["environment"] = f"prod-{TOKEN}"
        named = github_post(client_for(receiver), "deployment_status", doc, delivery="d-2")
        assert (echoed.status_code, named.status_code) == (202, 202)
        # The worker command's runtime: its secrets, not the receiver's.
        held = make_runtime(receiver.config, {"CORTEX_API_TOKEN": TOKEN}, store=receiver.store)
        worker = make_worker(held, client, owner="w-1")
        while worker.run_once():
            pass
        (deploy,) = cortex.all_deploys()
        assert deploy["title"] == "ship *** now"
        for request in cortex.received:
            assert TOKEN not in request.path and TOKEN not in json.dumps(request.body)
        refused = receiver.store.get(named.json["id"])
        assert refused is not None and refused.status == "dead"
        assert "holds a secret the bridge was given" in (refused.last_error or "")
        assert TOKEN not in (refused.last_error or "")
    finally:
        client.close()
        receiver.store.close()
