"""One record per deploy and entity, whichever faces see the deploy, in whatever order.

The relay (a webhook, its worker), the Action, ``send`` and ``sync`` each record the same
deploys here, on both databases; each case ends with exactly one record per deploy. "Nothing
doubled" is read after the relay's outbox is drained, never after a sleep.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex, Fault
from bridge.mapping import key_of
from bridge.sources import parse_event
from bridge.sync.engine import Options, Reconciler, Verdict
from bridge.sync.reader import Found, Window
from bridge.worker import Deliverer, Worker
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import client_for, github_post, gitlab_post, runtime_on

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


class Relay:
    """A receiver and one worker on one database, talking to the stand-in Cortex."""

    def __init__(
        self,
        db_url: str,
        cortex: FakeCortex,
        config: dict[str, Any],
        client: CortexClient | None = None,
    ) -> None:
        full = {"cortex": {"url": cortex.url, "timeout_seconds": 5}, **config}
        self.runtime = runtime_on(db_url, full, clock=lambda: NOW)
        self.http = client_for(self.runtime)
        self.client = client or CortexClient(cortex.url, TOKEN, timeout=5)
        deliverer = Deliverer(
            self.runtime.store, self.client, self.runtime.config, clock=lambda: NOW
        )
        self.worker = Worker(
            self.runtime.store,
            deliverer,
            self.runtime.config.delivery,
            owner="relay",
            clock=lambda: NOW,
        )

    def drain(self) -> None:
        """Deliver until the outbox holds nothing due: the drain, not a sleep."""
        while self.worker.run_once():
            pass
        counts = self.runtime.store.counts()
        assert counts.get("delivered", 0) == sum(counts.values()), counts

    def close(self) -> None:
        self.client.close()
        self.runtime.store.close()


@pytest.fixture(params=[{}, {"rollback": {"detect": False}}], ids=["rollback", "no-rollback"])
def relay(request: pytest.FixtureRequest, db_url: str, cortex: FakeCortex) -> Iterator[Relay]:
    made = Relay(db_url, cortex, request.param)
    yield made
    made.close()


def deploy(n: int, *, attempt: int = 1) -> dict[str, Any]:
    """The ``n``-th deploy of payments-api by an Actions run: its deployment_status webhook."""
    doc = copy.deepcopy(load_sample("github/deployment_status.success.actions.json"))
    doc["deployment"]["id"] += n
    doc["deployment"]["sha"] = f"{n:07x}" + doc["deployment"]["sha"][7:]
    doc["workflow_run"]["id"] += n
    doc["workflow_run"]["run_attempt"] = attempt
    doc["deployment_status"]["id"] += 10 * n + attempt
    stamp = NOW - timedelta(hours=3) + timedelta(minutes=10 * n + attempt)
    doc["deployment_status"]["updated_at"] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    return doc


def action(doc: dict[str, Any], cortex: FakeCortex) -> None:
    """The Action step of the run that made ``doc``'s deploy."""
    run = doc["workflow_run"]
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": doc["deployment"]["sha"],
        "GITHUB_RUN_ID": str(run["id"]),
        "GITHUB_RUN_ATTEMPT": str(run["run_attempt"]),
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex.url,
        "INPUT_ENVIRONMENT": "production",
        "INPUT_TIMESTAMP": doc["deployment_status"]["updated_at"],
    }
    assert main(["action"], env) == 0


def webhook(relay: Relay, doc: dict[str, Any]) -> None:
    assert github_post(relay.http, "deployment_status", doc).status_code == 202
    relay.drain()


def one_each(cortex: FakeCortex, count: int) -> None:
    """``count`` records in Cortex, no two with one key."""
    keys = [key_of(d) for d in cortex.all_deploys()]
    assert len(keys) == count, keys
    assert len(set(keys)) == count, keys


def test_action_then_webhook_on_a_later_deploy(relay: Relay, cortex: FakeCortex) -> None:
    webhook(relay, deploy(1))  # the relay has delivered to this entity+environment before
    second = deploy(2)
    action(second, cortex)
    webhook(relay, second)
    one_each(cortex, 2)


@pytest.mark.parametrize("event", ["deployment_status", "workflow_run"])
def test_a_webhook_hours_after_the_step_finds_the_steps_record(
    event: str, db_url: str, cortex: FakeCortex
) -> None:
    """The Action dates a deploy at its step; the webhook, at its run's end (post-deploy jobs,
    an approval): hours later. The relay looks for the record from the run's start."""
    relay = Relay(db_url, cortex, WORKFLOWS)
    try:
        webhook(relay, deploy(1))  # the relay has delivered to this entity+environment before
        doc = deploy(2)
        run = doc["workflow_run"]
        started = NOW - timedelta(hours=6)
        run["run_started_at"] = doc["deployment"]["created_at"] = _z(started)
        step = copy.deepcopy(doc)
        step["deployment_status"]["updated_at"] = _z(started + timedelta(minutes=5))
        action(step, cortex)
        ended = _z(started + timedelta(hours=5))
        doc["deployment_status"]["updated_at"] = run["updated_at"] = ended
        if event == "workflow_run":
            run.update(status="completed", conclusion="success", name="Deploy")
            doc = {"action": "completed", "workflow_run": run, "repository": doc["repository"]}
            doc["repository"]["full_name"] = "acme/payments-api"
        assert github_post(relay.http, event, doc).status_code == 202
        relay.drain()
    finally:
        relay.close()
    one_each(cortex, 2)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def started_step(
    event_name: str,
    doc: dict[str, Any],
    cortex: FakeCortex,
    tmp_path: Any,
    run_id: str,
    **inputs: str,
) -> dict[str, str]:
    """The variables of a step that ``doc`` (a webhook's payload) started, in a run of its own
    (``run_id``); ``inputs`` as INPUT_<NAME>."""
    event_file = tmp_path / f"event-{run_id}.json"
    event_file.write_text(json.dumps(doc))
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_file),
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_RUN_ID": run_id,
        "GITHUB_RUN_ATTEMPT": "1",
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex.url,
        **{f"INPUT_{name.upper().replace('_', '-')}": value for name, value in inputs.items()},
    }


def triggered_step(doc: dict[str, Any], cortex: FakeCortex, tmp_path: Any) -> None:
    """The Action step of a workflow the deployment_status triggered (docs/action.md, "Record
    deploys made elsewhere"): its event file is the webhook's payload, its run another one."""
    env = started_step(
        "deployment_status",
        doc,
        cortex,
        tmp_path,
        "990001",  # this workflow's own run, not the deploying one
        timestamp=doc["deployment_status"]["updated_at"],
    )
    env["GITHUB_SHA"] = doc["deployment"]["sha"]
    assert main(["action"], env) == 0


@pytest.mark.parametrize("step_first", [True, False], ids=["step-first", "webhook-first"])
def test_a_step_triggered_by_deployment_status_names_the_deploy_as_its_webhook(
    relay: Relay, cortex: FakeCortex, tmp_path: Any, step_first: bool
) -> None:
    # A deployment an Actions job made carries that run: the receiver keyed it by the run,
    # the step by the deployment id, and each made a record.
    doc = deploy(1)
    if step_first:
        triggered_step(doc, cortex, tmp_path)
    webhook(relay, doc)
    if not step_first:
        triggered_step(doc, cortex, tmp_path)
    one_each(cortex, 1)


def test_a_step_triggered_late_by_deployment_status_still_finds_the_webhooks_record(
    relay: Relay, cortex: FakeCortex, tmp_path: Any
) -> None:
    """The recording workflow ran hours (here: weeks) after the deploy: the step dates the
    deploy by its event, not by when it ran, so it looks for it where the webhook put it."""
    doc = deploy(1)
    webhook(relay, doc)
    # The type given: no history read, only the search around the deploy's time.
    env = started_step("deployment_status", doc, cortex, tmp_path, "990002", type="DEPLOY")
    assert main(["action"], env) == 0
    one_each(cortex, 1)
    (record,) = cortex.all_deploys()
    assert record["timestamp"] == doc["deployment_status"]["updated_at"]


WORKFLOWS = {"workflows": [{"match": {"repository": "acme/*"}, "environment": "production"}]}


@pytest.mark.parametrize("step_first", [True, False], ids=["step-first", "webhook-first"])
def test_a_step_triggered_by_workflow_run_names_the_run_that_deployed(
    db_url: str, cortex: FakeCortex, tmp_path: Any, step_first: bool
) -> None:
    """``on: workflow_run``: the deploy is the run that triggered the step, as the relay's
    workflow_run webhook names it, not the recording run."""
    doc = copy.deepcopy(load_sample("github/workflow_run.completed.success.json"))
    doc["repository"]["full_name"] = "acme/payments-api"
    # 990003: the recording run.
    env = started_step("workflow_run", doc, cortex, tmp_path, "990003", environment="production")
    relay = Relay(db_url, cortex, WORKFLOWS)
    try:
        if step_first:
            assert main(["action"], env) == 0
        assert github_post(relay.http, "workflow_run", doc).status_code == 202
        relay.drain()
        if not step_first:
            assert main(["action"], env) == 0
    finally:
        relay.close()
    one_each(cortex, 1)
    (record,) = cortex.all_deploys()
    run = doc["workflow_run"]
    assert key_of(record) == (
        f"github:acme/payments-api:run:{run['id']}/{run.get('run_attempt', 1)}"
        ":production:payments-api"
    )
    assert record["url"] == run["html_url"]
    assert record["timestamp"] == run["updated_at"]


@pytest.mark.parametrize(
    ("name", "sample"),
    [
        ("deployment_status", "github/deployment_status.failure.json"),
        ("deployment_status", "github/deployment_status.in_progress.json"),
        ("workflow_run", "github/workflow_run.completed.failure.json"),
    ],
)
def test_a_step_triggered_by_a_deploy_that_did_not_succeed_records_nothing(
    cortex: FakeCortex, tmp_path: Any, capsys: pytest.CaptureFixture[str], name: str, sample: str
) -> None:
    outputs = tmp_path / "outputs"
    env = started_step(name, load_sample(sample), cortex, tmp_path, "990004")
    env["GITHUB_OUTPUT"] = str(outputs)
    assert main(["action"], env) == 0
    assert cortex.received == []
    said = capsys.readouterr().out
    assert "::notice title=Cortex deploy::not recorded: " in said
    assert "only a deploy that succeeded is recorded" in said
    assert "deploy-uuid" in outputs.read_text()


@pytest.mark.parametrize("mode", ["final", "lifecycle"])
def test_a_job_failing_after_the_step_recorded_its_deploy_leaves_the_record(
    db_url: str, cortex: FakeCortex, mode: str
) -> None:
    """The relay made the start record (lifecycle), the step recorded the deploy's success,
    then a smoke test after it failed the job: the deployment's failure deletes nothing."""
    relay = Relay(db_url, cortex, {"record": {"mode": mode}})
    try:
        ended = deploy(1)
        started = copy.deepcopy(ended)
        started["deployment_status"].update(
            state="in_progress", id=ended["deployment_status"]["id"] + 100
        )
        if mode == "lifecycle":
            webhook(relay, started)
        action(ended, cortex)
        failed = copy.deepcopy(ended)
        failed["deployment_status"].update(
            state="failure", id=ended["deployment_status"]["id"] + 200
        )
        answer = github_post(relay.http, "deployment_status", failed)
        relay.drain()
    finally:
        relay.close()
    assert answer.status_code in (200, 202)
    (record,) = cortex.all_deploys()
    assert record["customData"]["status"] == "succeeded"
    assert cortex.requests_to("DELETE") == []


def test_an_events_environment_is_judged_as_the_events_and_after_whether_to_record(
    cortex: FakeCortex, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = load_sample("github/deployment_status.failure.json")
    failed["deployment"]["environment"] = "prod\nuction"
    env = started_step("deployment_status", failed, cortex, tmp_path, "990006")
    assert main(["action"], env) == 0  # a failure: nothing to record, nothing else judged
    assert "::notice" in capsys.readouterr().out
    succeeded = deploy(1)
    succeeded["deployment"]["environment"] = "prod\nuction"
    env = started_step("deployment_status", succeeded, cortex, tmp_path, "990007")
    assert main(["action"], env) == 2
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("::error")]
    assert "the event's environment holds a control character" in line
    assert cortex.received == []


def broken_status() -> dict[str, Any]:
    doc = load_sample("github/deployment_status.failure.json")
    for field in ("updated_at", "created_at"):
        del doc["deployment_status"][field]
    return doc


@pytest.mark.parametrize(
    ("name", "write"),
    [
        pytest.param(
            "deployment_status",
            lambda path: path.write_text(json.dumps(broken_status())),
            id="a-failure-the-receiver-refuses",
        ),
        pytest.param(
            "workflow_run",
            lambda path: path.write_text('{"workflow_run": ' * 3000 + "1" + "}" * 3000),
            id="nested-too-deep",
        ),
        pytest.param(
            "deployment_status", lambda path: path.write_bytes(b'{"a": "\xff"}'), id="not-utf8"
        ),
        pytest.param("workflow_run", lambda path: path.write_text("[1, 2]"), id="not-an-object"),
    ],
)
def test_a_step_whose_deploy_event_cannot_be_read_records_nothing_and_says_so(
    cortex: FakeCortex, tmp_path: Any, capsys: pytest.CaptureFixture[str], name: str, write: Any
) -> None:
    """Never the step's own run in place of the deploy its event names: an error naming the
    event file (a warning with fail-on-error off), as the relay refuses the same payload."""
    env = started_step(name, {}, cortex, tmp_path, "990005")
    write(Path(env["GITHUB_EVENT_PATH"]))
    assert main(["action"], env) == 2
    said = capsys.readouterr().out
    (line,) = [line for line in said.splitlines() if line.startswith("::error")]
    assert "GITHUB_EVENT_PATH" in line and "Traceback" not in said
    assert main(["action"], {**env, "INPUT_FAIL-ON-ERROR": "false"}) == 0
    assert "::warning" in capsys.readouterr().out
    assert cortex.received == []


def test_webhook_then_action(relay: Relay, cortex: FakeCortex) -> None:
    for n in (1, 2):
        doc = deploy(n)
        webhook(relay, doc)
        action(doc, cortex)
    one_each(cortex, 2)


def test_a_rerun_is_one_record_per_attempt(relay: Relay, cortex: FakeCortex) -> None:
    first = deploy(1)
    action(first, cortex)
    webhook(relay, first)
    again = deploy(1, attempt=2)
    action(again, cortex)
    webhook(relay, again)
    one_each(cortex, 2)


@pytest.mark.parametrize(
    ("config", "records"),
    [({}, 2), ({"environments": {"rename": {"Production": "production"}}}, 1)],
    ids=["as-spelled", "renamed"],
)
def test_an_environment_spelled_otherwise_by_the_webhook_is_renamed_to_converge(
    db_url: str, cortex: FakeCortex, config: dict[str, Any], records: int
) -> None:
    """GitHub spells the environment ``Production``, the Action step ``production``: two
    environments to Cortex and two keys, unless the relay renames its spelling
    (docs/delivery.md, "What every face must spell the same")."""
    doc = deploy(1)
    doc["deployment"]["environment"] = "Production"
    relay = Relay(db_url, cortex, config)
    try:
        action(doc, cortex)
        webhook(relay, doc)
    finally:
        relay.close()
    assert len(cortex.all_deploys()) == records
    assert {d["environment"] for d in cortex.all_deploys()} == (
        {"production"} if records == 1 else {"production", "Production"}
    )


class Hooks:
    """A sync reader over the webhooks' own deploys (the SCM's history, in memory)."""

    name = "github:acme/payments-api"

    def __init__(self, docs: list[dict[str, Any]], *, one_page: bool = False) -> None:
        self.docs = docs
        self.one_page = one_page  # a resume point after the last deploy only

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        for n, doc in enumerate(self.docs):
            last = n == len(self.docs) - 1
            point = str(n) if last or not self.one_page else None
            yield Found(parse_event("github", "deployment_status", doc), resume=point)


def test_sync_afterwards_finds_every_deploy_present(relay: Relay, cortex: FakeCortex) -> None:
    docs = [deploy(n) for n in (1, 2, 3)]
    webhook(relay, docs[0])
    action(docs[1], cortex)
    webhook(relay, docs[1])
    action(docs[2], cortex)
    config = parse_config({"cortex": {"url": cortex.url}, **relay_config(relay)})
    with CortexClient(cortex.url, TOKEN) as client:
        reconciler = Reconciler(
            config, client, store=relay.runtime.store, clock=lambda: NOW, options=Options()
        )
        window = Window(NOW - timedelta(days=1), NOW)
        rows = list(reconciler.sync(Hooks(docs), window))
    assert {row.verdict for row in rows} == {Verdict.PRESENT}
    webhook(relay, docs[2])
    one_each(cortex, 3)


def relay_config(relay: Relay) -> dict[str, Any]:
    return {"rollback": {"detect": relay.runtime.config.rollback.detect}}


def test_lifecycle_start_step_and_end_are_one_record(db_url: str, cortex: FakeCortex) -> None:
    relay = Relay(db_url, cortex, {"record": {"mode": "lifecycle"}})
    try:
        for n in (1, 2):
            ended = deploy(n)
            started = copy.deepcopy(ended)
            started["deployment_status"]["state"] = "in_progress"
            webhook(relay, started)
            action(ended, cortex)
            webhook(relay, ended)
    finally:
        relay.close()
    one_each(cortex, 2)
    assert {d["customData"]["status"] for d in cortex.all_deploys()} == {"succeeded"}


@pytest.mark.parametrize(
    "case",
    [
        ("success", False, "succeeded"),
        ("failure", True, "failed"),
        ("failure", False, None),  # a failed deploy is no deploy: its start record goes
    ],
    ids=["succeeded", "failed-recorded", "failed-unrecorded"],
)
@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
def test_sync_finishes_a_start_record_whose_end_never_came(
    db_url: str, cortex: FakeCortex, case: tuple[str, bool, str | None], dry_run: bool
) -> None:
    """Lifecycle: the start's webhook came, the end's was lost. The SCM's history says how the
    deploy ended: sync records that end on the start record, as the webhook would have."""
    state, failures, left = case
    record = {"mode": "lifecycle", "failures": failures}
    relay = Relay(db_url, cortex, {"record": record})
    ended = deploy(1)
    ended["deployment_status"]["state"] = state
    started = copy.deepcopy(ended)
    started["deployment_status"]["state"] = "in_progress"
    started["deployment_status"]["updated_at"] = ended["deployment"]["created_at"]
    try:
        webhook(relay, started)
        config = parse_config({"cortex": {"url": cortex.url}, "record": record})
        with CortexClient(cortex.url, TOKEN) as client:
            reconciler = Reconciler(
                config,
                client,
                store=relay.runtime.store,
                clock=lambda: NOW,
                options=Options(dry_run=dry_run),
            )
            window = Window(NOW - timedelta(days=1), NOW)
            rows = list(reconciler.sync(Hooks([ended]), window))
            if not dry_run:  # run again: nothing left to do
                again = list(reconciler.sync(Hooks([ended]), window))
                gone = Verdict.SKIPPED if left is None else Verdict.PRESENT
                assert [row.verdict for row in again] == [gone], again
    finally:
        relay.close()
    (row,) = rows
    held = cortex.all_deploys()
    if dry_run:
        assert row.verdict is Verdict.MISSING and "only its start" in row.detail, row
        assert [d["customData"]["status"] for d in held] == ["in_progress"]
        return
    assert row.verdict is Verdict.FINISHED, row
    if left is None:
        assert held == [] and row.detail.startswith("deleted "), row
        return
    (made,) = held
    assert made["customData"]["status"] == left
    assert made["timestamp"] == ended["deployment_status"]["updated_at"]
    assert "its end recorded" in row.detail


def _lifecycle_sync(
    relay: Relay, cortex: FakeCortex, docs: list[dict[str, Any]], record: dict[str, Any]
) -> list[Any]:
    """A sync of ``docs`` (the SCM's history, one page) on the relay's database: its rows."""
    config = parse_config({"cortex": {"url": cortex.url}, "record": record})
    with CortexClient(cortex.url, TOKEN) as client:
        reconciler = Reconciler(config, client, store=relay.runtime.store, clock=lambda: NOW)
        window = Window(NOW - timedelta(days=1), NOW)
        return list(reconciler.sync(Hooks(docs, one_page=True), window))


def _started(ended: dict[str, Any]) -> dict[str, Any]:
    started = copy.deepcopy(ended)
    started["deployment_status"]["state"] = "in_progress"
    started["deployment_status"]["updated_at"] = ended["deployment"]["created_at"]
    return started


def test_a_start_record_deleted_on_a_try_after_an_unclear_one_is_no_record(
    db_url: str, cortex: FakeCortex
) -> None:
    # The DELETE reached Cortex, its answer was lost: the try after finds nothing left. That
    # was reported "recorded", with no uuid, and kept as recorded in the store.
    record = {"mode": "lifecycle", "failures": False}
    relay = Relay(db_url, cortex, {"record": record})
    ended = deploy(1)
    ended["deployment_status"]["state"] = "failure"
    try:
        webhook(relay, _started(ended))
        cortex.inject(Fault("drop_after", method="DELETE"))
        (row,) = _lifecycle_sync(relay, cortex, [ended], record)
        assert relay.runtime.store.sync.recorded_uuid(key_of(cortex_record(ended))) is None
    finally:
        relay.close()
    assert row.verdict in (Verdict.SKIPPED, Verdict.FINISHED), row
    assert cortex.all_deploys() == []


def cortex_record(doc: dict[str, Any]) -> dict[str, Any]:
    """The record ``doc``'s deploy would have on payments-api (for its key)."""
    event = parse_event("github", "deployment_status", doc)
    key = f"github:acme/payments-api:run:{event.ref.id}:production:payments-api"
    return {"customData": {"bridge": {"idempotencyKey": key}}}


def test_a_finished_start_record_counts_in_the_same_syncs_rollback_history(
    db_url: str, cortex: FakeCortex
) -> None:
    # Deploy 1 (sha 1) has only its start; 2 (sha 2) is recorded; 3 goes back to sha 1. The
    # sync finishes 1, records 2: 3 is a ROLLBACK, as if 1's end had come by webhook.
    record = {"mode": "lifecycle"}
    relay = Relay(db_url, cortex, {"record": record})
    docs = [deploy(1), deploy(2), deploy(3)]
    docs[2]["deployment"]["sha"] = docs[0]["deployment"]["sha"]
    try:
        webhook(relay, _started(docs[0]))
        rows = _lifecycle_sync(relay, cortex, docs, record)
    finally:
        relay.close()
    assert [row.verdict for row in rows] == [Verdict.FINISHED, Verdict.RECORDED, Verdict.RECORDED]
    assert sorted(d["type"] for d in cortex.all_deploys()) == ["DEPLOY", "DEPLOY", "ROLLBACK"]


def test_in_final_mode_a_failed_deploy_reads_nothing_in_cortex(
    db_url: str, cortex: FakeCortex
) -> None:
    # No start record can exist without record.mode lifecycle: a failure is skipped unread,
    # and Cortex down changes nothing about it.
    relay = Relay(db_url, cortex, {})
    failed = deploy(1)
    failed["deployment_status"]["state"] = "failure"
    try:
        cortex.inject(*[Fault("status", status=503)] * 20)
        (row,) = _lifecycle_sync(relay, cortex, [failed], {})
    finally:
        relay.close()
    assert row.verdict is Verdict.SKIPPED and "record.failures" in row.detail, row
    assert cortex.requests_to("GET") == []


@pytest.mark.parametrize("restarted", [False, True], ids=["same-process", "restarted"])
def test_the_relay_updating_its_own_record_keeps_when_it_was_made(
    db_url: str, cortex: FakeCortex, restarted: bool
) -> None:
    # Lifecycle: the start creates the record, the end updates it. customData.bridge.recordedAt
    # decides the newer of two records with one key, so the update keeps it; a relay that did
    # not make the record itself (restarted, another replica) reads it from Cortex.
    ended = deploy(1)
    started = copy.deepcopy(ended)
    started["deployment_status"]["state"] = "in_progress"
    relay = Relay(db_url, cortex, {"record": {"mode": "lifecycle"}})
    try:
        webhook(relay, started)
        (made,) = cortex.all_deploys()
        stamp = made["customData"]["bridge"]["recordedAt"]
        if restarted:
            relay.close()
            relay = Relay(db_url, cortex, {"record": {"mode": "lifecycle"}})
        webhook(relay, ended)
    finally:
        relay.close()
    (updated,) = cortex.all_deploys()
    assert updated["uuid"] == made["uuid"]
    assert updated["customData"]["status"] == "succeeded"
    assert updated["customData"]["bridge"]["recordedAt"] == stamp


class ActionDuringCreate(CortexClient):
    """The relay's client: the Action step runs whole (its look, create and check) while the
    relay's first create is on its way, after the relay's own look showed nothing."""

    def __init__(self, cortex: FakeCortex, doc: dict[str, Any]) -> None:
        super().__init__(cortex.url, TOKEN, timeout=5)
        self.cortex, self.doc, self.raced = cortex, doc, False

    def create_deploy(self, entity: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        if not self.raced:
            self.raced = True
            action(self.doc, self.cortex)
        return super().create_deploy(entity, body, **kw)


@pytest.mark.parametrize(
    ("rollback", "warm"),
    [(True, True), (True, False), (False, False)],
    ids=["rollback-history-stored", "rollback-new-relay", "no-rollback"],
)
def test_a_race_with_a_face_the_relay_has_not_seen_yet_leaves_one_record(
    db_url: str, cortex: FakeCortex, rollback: bool, warm: bool
) -> None:
    # The Action's check after its create ran before the relay's create landed: only the relay
    # can see both. It has never seen the Action's records on this entity (none yet, or only
    # beyond its search), so it does not know another face records it: it checks after its
    # first create on the pair: a new relay's first read of the pair's history in Cortex
    # (before its create) does not count as that check.
    doc = deploy(1)
    if warm:  # the relay already holds the pair's history: it reads nothing from Cortex
        earlier = Relay(db_url, cortex, {})
        try:
            webhook(earlier, deploy(0))
        finally:
            earlier.close()
    relay = Relay(
        db_url, cortex, {"rollback": {"detect": rollback}}, ActionDuringCreate(cortex, doc)
    )
    try:
        webhook(relay, doc)
    finally:
        relay.close()
    assert relay.client.raced  # type: ignore[attr-defined]
    one_each(cortex, 2 if warm else 1)
    assert len(cortex.requests_to("DELETE")) == 1


# -- GitLab: `send` in the deploy job, and the project's Deployment Hook ----------------------


def job(n: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``n``-th deploy job: its Deployment Hook, and the variables `send` sees in it."""
    hook = copy.deepcopy(load_sample("gitlab/deployment.success.json"))
    hook["deployable_id"] += n
    hook["deployment_id"] += n
    hook["status_changed_at"] = f"2026-06-18 14:{10 * n:02d}:31 +0200"
    event = parse_event("gitlab", "Deployment Hook", hook)
    variables = {
        "GITLAB_CI": "true",
        "CI_PROJECT_PATH": hook["project"]["path_with_namespace"],
        "CI_COMMIT_SHA": event.sha or "",
        "CI_JOB_ID": str(hook["deployable_id"]),
        "CI_ENVIRONMENT_NAME": hook["environment"],
        "CORTEX_API_TOKEN": TOKEN,
    }
    return hook, variables


def test_gitlab_send_then_its_deployment_hook(db_url: str, cortex: FakeCortex) -> None:
    relay = Relay(db_url, cortex, {})
    try:
        for n in (1, 2):
            hook, variables = job(n)
            stamp = parse_event("gitlab", "Deployment Hook", hook).timestamp
            argv = ["send", "--entity-tag", "payments-api", "--timestamp", stamp.isoformat()]
            assert main(argv, {**variables, "CORTEX_API_URL": cortex.url}) == 0
            assert gitlab_post(relay.http, "Deployment Hook", hook).status_code == 202
            relay.drain()
    finally:
        relay.close()
    one_each(cortex, 2)


# -- two faces at the same moment, Cortex slow ---------------------------------------------


@pytest.mark.system
def test_two_faces_at_once_against_a_slow_cortex(db_url: str) -> None:
    # Cortex takes 1 s a request: the Action and the relay both read before either writes.
    with FakeCortex(token=TOKEN, latency=1.0) as slow:
        relay = Relay(db_url, slow, {"rollback": {"detect": False}})
        try:
            doc = deploy(1)
            assert github_post(relay.http, "deployment_status", doc).status_code == 202
            step = threading.Thread(target=action, args=(doc, slow))
            step.start()
            relay.drain()
            step.join(timeout=60)
            assert not step.is_alive()
        finally:
            relay.close()
        one_each(slow, 1)
        # Both did create (neither could see the other's record first). Both check after
        # (the relay's first create on a pair it has not surveyed): whichever found two
        # deleted the newer, the same record for both (a second delete of it is a 404).
        assert len(slow.requests_to("POST")) == 2
        deleted = {r.path for r in slow.requests_to("DELETE")}
        assert len(deleted) == 1
        assert slow.violations == []


def test_a_backlog_sweeps_the_doubles_its_shared_search_let_through(
    db_url: str, cortex: FakeCortex
) -> None:
    # A backlog shares one search among its batches: a record the Action makes meanwhile is
    # not in it, so the relay records that deploy too; the sweep when the backlog ends reads
    # Cortex again and deletes the newer of the two.
    relay = Relay(db_url, cortex, {})
    try:
        webhook(relay, deploy(0))  # the pair surveyed: its first create was checked after
        docs = [deploy(n) for n in range(1, 13)]
        for doc in docs:
            assert github_post(relay.http, "deployment_status", doc).status_code == 202
        assert relay.worker.run_once() == 10  # a full batch: a backlog
        action(docs[11], cortex)
        assert relay.worker.run_once() == 2  # the search of the first batch served these
        relay.drain()
    finally:
        relay.close()
    assert len(cortex.requests_to("DELETE")) == 1
    one_each(cortex, 13)


def test_sync_repair_deletes_the_newer_and_never_a_record_without_the_key(
    db_url: str, cortex: FakeCortex
) -> None:
    relay = Relay(db_url, cortex, {})
    docs = [deploy(1), deploy(2)]
    try:
        for doc in docs:
            webhook(relay, doc)
    finally:
        relay.close()
    kept = {d["uuid"] for d in cortex.all_deploys()}
    with CortexClient(cortex.url, TOKEN) as client:
        first = cortex.all_deploys()[0]
        body = {k: v for k, v in first.items() if k not in ("uuid", "entity")}
        custom = dict(body["customData"])
        custom["bridge"] = {**custom["bridge"], "recordedAt": "2099-01-01T00:00:00Z"}
        newer = client.create_deploy(first["entity"], {**body, "customData": custom})["uuid"]
        other = {**body, "customData": {"status": "succeeded"}}  # another tool's: no key
        client.create_deploy(first["entity"], other)
        client.create_deploy(first["entity"], other)
        config = parse_config({"cortex": {"url": cortex.url}})

        def repair(*, dry_run: bool) -> list[Any]:
            options = Options(repair=True, dry_run=dry_run)
            engine = Reconciler(config, client, store=None, clock=lambda: NOW, options=options)
            return list(engine.sync(Hooks(docs), Window(NOW - timedelta(days=1), NOW)))

        looked = repair(dry_run=True)
        assert [r.verdict for r in looked if r.verdict is Verdict.DOUBLED] == [Verdict.DOUBLED]
        assert len(cortex.all_deploys()) == 5  # a dry run deletes nothing
        done = repair(dry_run=False)
    repaired = [r for r in done if r.verdict is Verdict.REPAIRED]
    assert len(repaired) == 1 and newer in repaired[0].detail
    left = cortex.all_deploys()
    assert {d["uuid"] for d in left if key_of(d)} == kept  # the oldest of each key stays
    assert len([d for d in left if key_of(d) is None]) == 2  # another tool's, both untouched


def test_lifecycle_end_updates_the_record_another_face_kept(
    db_url: str, cortex: FakeCortex
) -> None:
    # Two faces made the start record at once; the other one's check after its create kept
    # the older and deleted the relay's. The relay's end PUT the deleted uuid: a 404, read as
    # an unknown entity, and the success was dead-lettered for good.
    relay = Relay(db_url, cortex, {"record": {"mode": "lifecycle"}})
    try:
        start = deploy(1)
        start["deployment_status"]["state"] = "in_progress"
        webhook(relay, start)
        (mine,) = cortex.all_deploys()
        kept_body = copy.deepcopy({k: v for k, v in mine.items() if k not in ("uuid", "entity")})
        kept_body["customData"]["bridge"]["recordedAt"] = "2026-01-01T00:00:00.000Z"  # older
        kept = relay.client.create_deploy(mine["entity"], kept_body)
        relay.client.delete_deploy(mine["entity"], mine["uuid"])  # the newer of the two goes
        end = deploy(1)
        end["deployment_status"]["id"] += 1
        webhook(relay, end)  # drained: every delivery delivered, none dead
        (only,) = cortex.all_deploys()
        assert only["uuid"] == kept["uuid"]
        assert only["customData"]["status"] == "succeeded"
        assert only["customData"]["bridge"]["recordedAt"] == "2026-01-01T00:00:00.000Z"
    finally:
        relay.close()


def typed(cortex: FakeCortex) -> list[tuple[str, str]]:
    """(sha's first 7, type) of each record, oldest deploy first."""
    ordered = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
    return [(d["sha"][:7], d["type"]) for d in ordered]


def with_sha(n: int, sha: str) -> dict[str, Any]:
    doc = deploy(n)
    doc["deployment"]["sha"] = sha * 40
    return doc


def test_the_relay_types_a_rollback_from_what_other_faces_recorded(
    db_url: str, cortex: FakeCortex
) -> None:
    # The relay judged ROLLBACK from its own deliveries only: after its A and the Action's B,
    # its A again was a DEPLOY.
    relay = Relay(db_url, cortex, {})
    try:
        webhook(relay, with_sha(1, "a"))
        action(with_sha(2, "b"), cortex)
        webhook(relay, with_sha(3, "a"))
        assert typed(cortex) == [
            ("aaaaaaa", "DEPLOY"),
            ("bbbbbbb", "DEPLOY"),
            ("aaaaaaa", "ROLLBACK"),
        ]
    finally:
        relay.close()


@pytest.mark.parametrize("restarted", [False, True], ids=["one-process", "restarted"])
def test_the_relay_keeps_the_history_other_faces_made_beyond_its_next_look(
    db_url: str, cortex: FakeCortex, restarted: bool
) -> None:
    # The Action's B, hours before the relay's C: C's look reads back to the relay's A and
    # sees B; the look for B again, after C, reads back only to C. B, kept when C saw it,
    # makes B again a ROLLBACK.
    def at(n: int, sha: str, stamp: str) -> dict[str, Any]:
        doc = with_sha(n, sha)
        doc["deployment_status"]["updated_at"] = stamp
        return doc

    relay = Relay(db_url, cortex, {})
    try:
        webhook(relay, at(1, "a", "2026-11-23T08:00:00Z"))
        action(at(2, "b", "2026-11-23T10:00:00Z"), cortex)
        webhook(relay, at(3, "c", "2026-11-23T13:00:00Z"))
        if restarted:
            relay.close()
            relay = Relay(db_url, cortex, {})
        webhook(relay, at(4, "b", "2026-11-23T14:50:00Z"))
    finally:
        relay.close()
    assert typed(cortex) == [
        ("aaaaaaa", "DEPLOY"),
        ("bbbbbbb", "DEPLOY"),
        ("ccccccc", "DEPLOY"),
        ("bbbbbbb", "ROLLBACK"),
    ]


def test_the_relay_sees_another_faces_rollback_as_the_latest_deploy(
    db_url: str, cortex: FakeCortex
) -> None:
    # After A, B (the relay's) and the Action's A (a ROLLBACK), the relay's A again redeploys
    # what runs: a DEPLOY, where the relay's own history alone made it a ROLLBACK.
    relay = Relay(db_url, cortex, {})
    try:
        webhook(relay, with_sha(1, "a"))
        webhook(relay, with_sha(2, "b"))
        action(with_sha(3, "a"), cortex)
        webhook(relay, with_sha(4, "a"))
        assert [t for _, t in typed(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK", "DEPLOY"]
    finally:
        relay.close()


def test_a_deploy_recorded_late_by_any_face_types_the_later_ones_again(
    cortex: FakeCortex,
) -> None:
    # The webhook of the middle deploy was lost; the step recorded the return to the first
    # sha as DEPLOY, since the deploy it went back from was not in Cortex. When sync (or the
    # reconcile, or a late delivery) records the middle one, the return becomes a ROLLBACK.
    from bridge.model import DeployEvent, DeployRef, DeployType, Status
    from bridge.record.retrying import record

    def deploy(n: int, sha: str, kind: DeployType | None = None) -> DeployEvent:
        return DeployEvent(
            source="github",
            repository="acme/payments-api",
            event="deployment_status",
            ref=DeployRef("deployment", str(n)),
            status=Status.SUCCEEDED,
            timestamp=datetime(2026, 11, 20 + n, 10, tzinfo=timezone.utc),
            title=f"deploy {n}",
            sha=sha,
            environment="production",
            type=kind,
        )

    client = CortexClient(cortex.url, TOKEN, timeout=2)
    try:
        first, middle, back = deploy(0, "1" * 40), deploy(1, "2" * 40), deploy(2, "1" * 40)
        assert record(client, first, "payments-api").type is DeployType.DEPLOY
        assert record(client, back, "payments-api").type is DeployType.DEPLOY
        assert record(client, middle, "payments-api").type is DeployType.DEPLOY
        by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
        assert [d["type"] for d in by_time] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
        # What else the record held is as it was: only the type changed.
        assert by_time[2]["title"] == "deploy 2" and key_of(by_time[2]) is not None
        # A second late deploy between them, of the same sha as the return: no longer a return.
        again = deploy(1, "1" * 40)
        again = DeployEvent(
            **{
                **again.__dict__,
                "ref": DeployRef("deployment", "9"),
                "timestamp": datetime(2026, 11, 21, 18, tzinfo=timezone.utc),
            }
        )
        record(client, again, "payments-api")
        by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
        assert [d["type"] for d in by_time] == ["DEPLOY", "DEPLOY", "ROLLBACK", "DEPLOY"]
    finally:
        client.close()
    assert cortex.violations == []


def at_time(n: int, sha: str, stamp: str) -> dict[str, Any]:
    """Deploy ``n`` of ``sha``, ended at ``stamp``."""
    doc = with_sha(n, sha)
    doc["deployment_status"]["updated_at"] = doc["workflow_run"]["updated_at"] = stamp
    return doc


def test_a_deploy_the_reconcile_records_late_joins_the_relays_history(
    db_url: str, cortex: FakeCortex
) -> None:
    # A (sha a) and D (a) came by webhook; B (b), between them, days before D, lost its
    # webhook and the relay's reconcile recorded it (and D became a ROLLBACK). C (b) came
    # next: a ROLLBACK, as B is its sha's earlier deploy. The relay's look in Cortex reads
    # back only to its newest deploy (D), and the reconcile's record never joined the
    # history in the relay's database: C was a DEPLOY.
    a = at_time(1, "a", "2026-11-19T10:00:00Z")
    b = at_time(2, "b", "2026-11-20T10:00:00Z")
    d = at_time(3, "a", "2026-11-23T10:00:00Z")
    c = at_time(4, "b", "2026-11-23T12:00:00Z")
    relay = Relay(db_url, cortex, {})
    try:
        webhook(relay, a)
        webhook(relay, d)
        config = parse_config({"cortex": {"url": cortex.url}})
        with CortexClient(cortex.url, TOKEN) as client:
            reconciler = Reconciler(
                config, client, store=relay.runtime.store, clock=lambda: NOW, options=Options()
            )
            window = Window(NOW - timedelta(days=7), NOW)
            rows = list(reconciler.sync(Hooks([a, b, d]), window))
        assert [row.verdict for row in rows].count(Verdict.RECORDED) == 1, rows
        webhook(relay, c)
    finally:
        relay.close()
    assert typed(cortex) == [
        ("aaaaaaa", "DEPLOY"),
        ("bbbbbbb", "DEPLOY"),
        ("aaaaaaa", "ROLLBACK"),
        ("bbbbbbb", "ROLLBACK"),
    ]


def test_the_relays_start_record_another_face_ended_counts_in_its_history(
    db_url: str, cortex: FakeCortex
) -> None:
    # Lifecycle: the relay made deploy 1's start record (sha a), the Action step recorded its
    # end on it, and the end's webhook was lost. The relay's look in Cortex for deploy 3 (a)
    # showed only records this process made, taken for ones in its stored history already:
    # deploy 1 was stored as in progress, so 3 was typed by 2 (b) alone, a DEPLOY.
    def started(ended: dict[str, Any]) -> dict[str, Any]:
        end = datetime.fromisoformat(
            ended["deployment_status"]["updated_at"].replace("Z", "+00:00")
        )
        begun = _z(end - timedelta(minutes=5))
        doc = copy.deepcopy(ended)
        doc["deployment"]["created_at"] = doc["deployment_status"]["updated_at"] = begun
        doc["deployment_status"].update(state="in_progress", id=doc["deployment_status"]["id"] + 1)
        return doc

    relay = Relay(db_url, cortex, {"record": {"mode": "lifecycle"}})
    try:
        first = with_sha(1, "a")
        webhook(relay, started(first))
        action(first, cortex)  # the step records the end; its webhook never comes
        for n, sha in ((2, "b"), (3, "a")):
            ended = with_sha(n, sha)
            webhook(relay, started(ended))
            webhook(relay, ended)
    finally:
        relay.close()
    assert typed(cortex) == [("aaaaaaa", "DEPLOY"), ("bbbbbbb", "DEPLOY"), ("aaaaaaa", "ROLLBACK")]


def test_a_lifecycle_end_is_typed_by_what_another_face_recorded_while_it_ran(
    db_url: str, cortex: FakeCortex
) -> None:
    # Deploy 1 (a) by the relay; deploy 3 (a) started; meanwhile `sync`, on a database of its
    # own, recorded deploy 2 (b), whose webhooks were lost. The end of 3 updated the relay's
    # own start record, typed by the relay's stored history alone (1): a DEPLOY over the
    # ROLLBACK it is, as the relay had seen no other face's record there.
    record = {"mode": "lifecycle"}
    relay = Relay(db_url, cortex, {"record": record})
    first, lost, third = with_sha(1, "a"), with_sha(2, "b"), with_sha(3, "a")
    started = copy.deepcopy(third)
    started["deployment_status"].update(
        state="in_progress", id=third["deployment_status"]["id"] + 1
    )
    started["deployment_status"]["updated_at"] = lost["deployment_status"]["updated_at"]
    try:
        webhook(relay, first)
        webhook(relay, started)
        config = parse_config({"cortex": {"url": cortex.url}, "record": record})
        with CortexClient(cortex.url, TOKEN) as client:
            sync = Reconciler(config, client, store=None, clock=lambda: NOW)
            (row,) = sync.sync(Hooks([lost]), Window(NOW - timedelta(days=1), NOW))
        assert row.verdict is Verdict.RECORDED, row
        webhook(relay, third)
    finally:
        relay.close()
    assert typed(cortex) == [("aaaaaaa", "DEPLOY"), ("bbbbbbb", "DEPLOY"), ("aaaaaaa", "ROLLBACK")]
