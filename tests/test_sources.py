"""Webhook sources: a real-shaped payload in, one DeployEvent or a reason out, never a crash."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.model import DeployEvent, DeployRef, Status
from bridge.sources import PARSERS, parse_event
from tests.conftest import SAMPLES, load_sample

GH_SHA_MAIN = "98a7b5192a8b18364cb62a25df42d35705920ca6"
GH_SHA_RUN = "11a9ca2f8aa856f51440507258c4d8fe3c933ac5"
GL_SHA = "ac3022a71d605aefb55d6726fb45d30663ed789c"
GL_PIPELINE_SHA = "d9f948d88d306f16c11cc733e4012ac918bdbb32"
GH_WEB = "https://github.com/acme/payments-api"
GL_WEB = "https://gitlab.acme.example/acme/backend/payments-api"
RUN = DeployRef("run", "12045678901/2")
DROP = object()  # a change that removes the field


def utc(text: str) -> datetime:
    """An aware UTC datetime from 'YYYY-MM-DDTHH:MM:SS'."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def sample(source: str, name: str, changes: dict[str, Any] | None = None) -> Any:
    """A sample payload, with dotted-path fields replaced (or removed with DROP)."""
    payload = copy.deepcopy(load_sample(f"{source}/{name}.json"))
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        node = payload
        for key in parents:
            node = node[key]
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    return payload


def parse(source: str, event: str, name: str, changes: dict[str, Any] | None = None) -> DeployEvent:
    """Parse one (changed) sample."""
    return parse_event(source, event, sample(source, name, changes))


def pick(event: DeployEvent, fields: dict[str, Any]) -> dict[str, Any]:
    """The event's values for the fields a case names."""
    return {name: getattr(event, name) for name in fields}


SAMPLE_CASES = [
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {
            "source": "github",
            "repository": "acme/payments-api",
            "event": "deployment",
            "ref": DeployRef("deployment", "1874402211"),
            "status": Status.PENDING,
            "timestamp": utc("2026-11-23T09:58:02"),
            "title": "Release 2026.11.2",
            "sha": GH_SHA_MAIN,
            "environment": "production",
            "url": f"{GH_WEB}/deployments",
            "deployer_name": "mara-okafor",
            "deployer_email": None,
            # The deploy starts when its deployment is made; every later status says so.
            "started_at": utc("2026-11-23T09:58:02"),
            "finished_at": None,
            "details": {"deploymentId": 1874402211, "ref": "main"},
            "entities": ("payments-api", "payments-worker"),
        },
        id="github-deployment-created",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.queued",
        {
            "status": Status.PENDING,
            "timestamp": utc("2026-11-23T09:58:03"),
            "started_at": utc("2026-11-23T09:58:02"),
        },
        id="github-status-queued",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.in_progress",
        {
            "status": Status.IN_PROGRESS,
            "url": "https://deploy.acme.example/releases/8841/log",
            "started_at": utc("2026-11-23T09:58:02"),  # its deployment's creation
            "finished_at": None,
        },
        id="github-status-in-progress",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success",
        {
            "event": "deployment_status",
            "ref": DeployRef("deployment", "1874402211"),
            "status": Status.SUCCEEDED,
            "timestamp": utc("2026-11-23T10:01:44"),
            "started_at": utc("2026-11-23T09:58:02"),  # final mode knows it too
            "finished_at": utc("2026-11-23T10:01:44"),
            "url": "https://deploy.acme.example/releases/8841",
            "deployer_name": "mara-okafor",
            "details": {
                "deploymentId": 1874402211,
                "deploymentStatusId": 2204587719,
                "ref": "main",
                "environmentUrl": "https://payments.acme.example",
            },
            "entities": (),
        },
        id="github-status-success",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success.payload-entities",
        # A deployment made with payload {"cortex": {"entities": [...]}}: the entities it
        # names, which a route must allow (payload_entities) for them to be used.
        {"status": Status.SUCCEEDED, "entities": ("payments-api", "payments-worker")},
        id="github-status-success-naming-entities",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.failure",
        {
            "status": Status.FAILED,
            # target_url is an API URL there: the log page is the human one.
            "url": "https://deploy.acme.example/releases/8843/log",
            "deployer_name": "teo-lindqvist",
            "entities": ("payments-api", "payments-worker"),
        },
        id="github-status-failure",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success.actions",
        {
            "ref": RUN,
            "status": Status.SUCCEEDED,
            "sha": GH_SHA_RUN,
            "url": f"{GH_WEB}/actions/runs/12045678901/job/33512345678",
            "deployer_name": "teo-lindqvist",  # the run's triggering actor, not the bot
            "started_at": utc("2026-11-23T14:20:05"),
            "finished_at": utc("2026-11-23T14:23:12"),
            "details": {
                "runId": 12045678901,
                "runAttempt": 2,
                "workflow": "Deploy production",
                "workflowPath": ".github/workflows/deploy.yml",
                "ref": "main",
                "deploymentId": 1874455120,
                "deploymentStatusId": 2204655012,
                "environmentUrl": "https://payments.acme.example",
            },
            "entities": (),
        },
        id="github-status-from-actions-run",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.success",
        {
            "event": "workflow_run",
            "ref": RUN,
            "status": Status.SUCCEEDED,
            "timestamp": utc("2026-11-23T14:23:30"),
            "title": "Retry card captures on gateway timeout",
            "sha": GH_SHA_RUN,
            "environment": None,
            "url": f"{GH_WEB}/actions/runs/12045678901",
            "deployer_name": "teo-lindqvist",
            "started_at": utc("2026-11-23T14:20:05"),
            "finished_at": utc("2026-11-23T14:23:30"),
            "details": {
                "runId": 12045678901,
                "runAttempt": 2,
                "workflow": "Deploy production",
                "workflowPath": ".github/workflows/deploy.yml",
                "ref": "main",
            },
        },
        id="github-run-completed-success",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.failure",
        {"ref": DeployRef("run", "12045699876/1"), "status": Status.FAILED},
        id="github-run-completed-failure",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.ghes-no-actor",
        {
            # Older GitHub Enterprise Server payloads: no actor, triggering_actor,
            # run_attempt, run_started_at or display_title.
            "ref": DeployRef("run", "4411/1"),
            "status": Status.SUCCEEDED,
            "timestamp": utc("2026-10-02T08:19:41"),
            "title": "Retry settlement batches on 503",
            "sha": "9d41c0e7b2f35a8a6c1e0f4b7d2a93e5c8f10b64",
            "url": "https://ghes.acme.internal/acme/payments-api/actions/runs/4411",
            "deployer_name": "ines-moreau",
            "started_at": None,
            "details": {
                "runId": 4411,
                "runAttempt": 1,
                "workflow": "Deploy production",
                "workflowPath": ".github/workflows/deploy.yml",
                "ref": "main",
            },
        },
        id="github-run-ghes-without-actors",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.in_progress",
        {
            "ref": RUN,
            "status": Status.IN_PROGRESS,
            "timestamp": utc("2026-11-23T14:20:05"),
            "finished_at": None,
        },
        id="github-run-in-progress",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.requested",
        {"status": Status.PENDING, "title": "Release 2026.11.3", "deployer_name": "mara-okafor"},
        id="github-run-requested",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.success",
        {
            "source": "gitlab",
            "repository": "acme/backend/payments-api",
            "event": "deployment",
            "ref": DeployRef("job", "48213377"),
            "status": Status.SUCCEEDED,
            # "2026-06-18 14:05:31 +0200" is 12:05:31 UTC.
            "timestamp": utc("2026-06-18T12:05:31"),
            "title": "Retry card captures on gateway timeout",
            "sha": GL_SHA,
            "environment": "production",
            "url": f"{GL_WEB}/-/jobs/48213377",
            "deployer_name": "Mara Okafor",
            "deployer_email": "mara.okafor@acme.example",
            "started_at": None,
            "finished_at": utc("2026-06-18T12:05:31"),
            "details": {
                "deploymentId": 90211,
                "jobId": 48213377,
                "ref": "main",
                "environmentUrl": "https://payments.acme.example",
                "tier": "production",
            },
            "entities": (),
        },
        id="gitlab-deployment-success",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.running",
        {
            "status": Status.IN_PROGRESS,
            "started_at": utc("2026-06-18T12:02:09"),
            "deployer_email": None,  # "[REDACTED]"
        },
        id="gitlab-deployment-running",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.failed",
        {"status": Status.FAILED, "ref": DeployRef("job", "48213590"), "deployer_email": None},
        id="gitlab-deployment-failed",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.canceled",
        {"status": Status.CANCELLED, "finished_at": utc("2026-06-18T14:30:02")},
        id="gitlab-deployment-canceled",
    ),
    pytest.param(
        "gitlab",
        "Pipeline Hook",
        "pipeline.success",
        {
            "event": "pipeline",
            "ref": DeployRef("pipeline", "1287734"),
            "status": Status.SUCCEEDED,
            "timestamp": utc("2026-06-18T12:09:40"),
            "title": "Add idempotency keys to refunds",
            "sha": GL_PIPELINE_SHA,
            "environment": None,
            "url": f"{GL_WEB}/-/pipelines/1287734",
            "started_at": utc("2026-06-18T12:01:55"),
            "finished_at": utc("2026-06-18T12:09:40"),
            "details": {
                "pipelineId": 1287734,
                "workflow": "Deploy main",
                "workflowPath": ".gitlab-ci.yml",
                "ref": "main",
                "pipelineDurationSeconds": 431,
            },
        },
        id="gitlab-pipeline-success",
    ),
    pytest.param(
        "gitlab",
        "Pipeline Hook",
        "pipeline.running",
        {
            "status": Status.IN_PROGRESS,
            "timestamp": utc("2026-06-18T12:44:21"),
            "url": f"{GL_WEB}/-/pipelines/1287790",  # no object_attributes.url: built
            "finished_at": None,
            "details": {
                "pipelineId": 1287790,
                "workflow": "Deploy main",
                "workflowPath": "ci/deploy.gitlab-ci.yml",
                "ref": "main",
            },
        },
        id="gitlab-pipeline-running",
    ),
    pytest.param(
        "gitlab",
        "System Hook",
        "deployment.success",
        {"event": "deployment", "status": Status.SUCCEEDED},
        id="gitlab-system-hook-deployment",
    ),
]


@pytest.mark.parametrize(("source", "event", "name", "expected"), SAMPLE_CASES)
def test_sample_parses(source: str, event: str, name: str, expected: dict[str, Any]) -> None:
    assert pick(parse(source, event, name), expected) == expected


def test_every_sample_is_covered() -> None:
    names = {f"{path.parent.name}/{path.stem}" for path in SAMPLES.glob("git*/*.json")}
    parsed = {f"{case.values[0]}/{case.values[2]}" for case in SAMPLE_CASES}
    ignored = {f"{case.values[0]}/{case.values[2]}" for case in IGNORED_CASES}
    assert names <= parsed | ignored


def test_delivery_id_passes_through() -> None:
    payload = sample("github", "deployment_status.success")
    event = parse_event("github", "deployment_status", payload, delivery_id="72d3162e-cc78")
    assert event.delivery_id == "72d3162e-cc78"
    assert parse_event("github", "deployment_status", payload).delivery_id is None


@pytest.mark.parametrize(
    ("source", "event", "names", "ref"),
    [
        pytest.param(
            "github",
            "deployment_status",
            [
                "deployment_status.queued",
                "deployment_status.in_progress",
                "deployment_status.success",
            ],
            DeployRef("deployment", "1874402211"),
            id="github-deployment",
        ),
        pytest.param(
            "gitlab",
            "Deployment Hook",
            ["deployment.running", "deployment.success"],
            DeployRef("job", "48213377"),
            id="gitlab-job",
        ),
    ],
)
def test_every_event_of_one_deploy_has_one_ref(
    source: str, event: str, names: list[str], ref: DeployRef
) -> None:
    assert {parse(source, event, name).ref for name in names} == {ref}


def test_a_deployment_from_a_run_is_keyed_like_the_run() -> None:
    # The Action step records run id/attempt from inside the run: all three paths must agree.
    refs = {
        parse("github", "deployment_status", "deployment_status.success.actions").ref,
        parse("github", "workflow_run", "workflow_run.in_progress").ref,
        parse("github", "workflow_run", "workflow_run.completed.success").ref,
    }
    assert refs == {RUN}


def test_run_without_attempt_is_its_first() -> None:
    changes = {"workflow_run.run_attempt": DROP}
    event = parse("github", "workflow_run", "workflow_run.completed.success", changes)
    assert event.ref == DeployRef("run", "12045678901/1")


def test_ghes_payload_without_action_is_accepted() -> None:
    event = parse("github", "deployment", "deployment.created", {"action": DROP})
    assert event.status is Status.PENDING


@pytest.mark.parametrize(
    ("state", "status"),
    [
        pytest.param("pending", Status.PENDING, id="pending"),
        pytest.param("queued", Status.PENDING, id="queued"),
        pytest.param("in_progress", Status.IN_PROGRESS, id="in_progress"),
        pytest.param("success", Status.SUCCEEDED, id="success"),
        pytest.param("failure", Status.FAILED, id="failure"),
        pytest.param("error", Status.FAILED, id="error"),
    ],
)
def test_github_deployment_states(state: str, status: Status) -> None:
    changes = {"deployment_status.state": state}
    event = parse("github", "deployment_status", "deployment_status.success", changes)
    assert event.status is status


@pytest.mark.parametrize(
    ("run_status", "conclusion", "status"),
    [
        pytest.param("requested", None, Status.PENDING, id="requested"),
        pytest.param("queued", None, Status.PENDING, id="queued"),
        pytest.param("waiting", None, Status.PENDING, id="waiting"),
        pytest.param("pending", None, Status.PENDING, id="pending"),
        pytest.param("in_progress", None, Status.IN_PROGRESS, id="in_progress"),
        pytest.param("completed", "success", Status.SUCCEEDED, id="success"),
        pytest.param("completed", "failure", Status.FAILED, id="failure"),
        pytest.param("completed", "timed_out", Status.FAILED, id="timed_out"),
        pytest.param("completed", "startup_failure", Status.FAILED, id="startup_failure"),
        pytest.param("completed", "cancelled", Status.CANCELLED, id="cancelled"),
    ],
)
def test_github_run_states(run_status: str, conclusion: str | None, status: Status) -> None:
    changes = {"workflow_run.status": run_status, "workflow_run.conclusion": conclusion}
    event = parse("github", "workflow_run", "workflow_run.completed.success", changes)
    assert event.status is status


@pytest.mark.parametrize(
    ("state", "status"),
    [
        pytest.param("created", Status.PENDING, id="created"),
        pytest.param("waiting_for_resource", Status.PENDING, id="waiting_for_resource"),
        pytest.param("preparing", Status.PENDING, id="preparing"),
        pytest.param("pending", Status.PENDING, id="pending"),
        pytest.param("scheduled", Status.PENDING, id="scheduled"),
        pytest.param("manual", Status.PENDING, id="manual"),
        pytest.param("running", Status.IN_PROGRESS, id="running"),
        pytest.param("success", Status.SUCCEEDED, id="success"),
        pytest.param("failed", Status.FAILED, id="failed"),
        pytest.param("canceled", Status.CANCELLED, id="canceled"),
    ],
)
def test_gitlab_pipeline_states(state: str, status: Status) -> None:
    changes = {"object_attributes.status": state}
    assert parse("gitlab", "Pipeline Hook", "pipeline.success", changes).status is status


def test_gitlab_deployment_created_is_pending() -> None:
    event = parse("gitlab", "Deployment Hook", "deployment.running", {"status": "created"})
    # Created starts the deploy (PRODUCT.md, lifecycle mode): the record made then says when.
    assert (event.status, event.started_at, event.finished_at) == (
        Status.PENDING,
        event.timestamp,
        None,
    )


IGNORED_CASES = [
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.inactive",
        {},
        "deployment_status 'inactive' records nothing",
        id="github-status-inactive",
    ),
    pytest.param("github", "ping", "ping", {}, "ping: webhook is set up", id="github-ping"),
    pytest.param(
        "github",
        "workflow_job",
        "workflow_run.in_progress",
        {},
        "workflow_job events are not recorded",
        id="github-workflow-job",
    ),
    pytest.param("github", "push", "ping", {}, "push events are not recorded", id="github-push"),
    *(
        pytest.param(
            "github",
            "workflow_run",
            "workflow_run.completed.success",
            {"workflow_run.conclusion": conclusion},
            f"workflow_run concluded {conclusion!r}, which records nothing",
            id=f"github-run-{conclusion}",
        )
        for conclusion in ("skipped", "neutral", "action_required", "stale")
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"action": "deleted"},
        "deployment 'deleted' events are not recorded",
        id="github-deployment-other-action",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success",
        {"deployment_status.state": "exploded"},
        "deployment_status 'exploded' is not recorded",
        id="github-status-unknown-state",
    ),
    pytest.param(
        "gitlab",
        "Pipeline Hook",
        "pipeline.success",
        {"object_attributes.status": "skipped"},
        "pipeline status 'skipped' is not recorded",
        id="gitlab-pipeline-skipped",
    ),
    pytest.param(
        "gitlab",
        "Job Hook",
        "deployment.success",
        {},
        "Job Hook events are not recorded",
        id="gitlab-job-hook",
    ),
    pytest.param(
        "gitlab",
        "System Hook",
        "deployment.success",
        {"object_kind": "build"},
        "System Hook 'build' events are not recorded",
        id="gitlab-system-hook-build",
    ),
    pytest.param(
        "bitbucket",
        "repo:push",
        "deployment.success",
        {},
        "source 'bitbucket' is not supported",
        id="unknown-source",
    ),
]


@pytest.mark.parametrize(("source", "event", "name", "changes", "reason"), IGNORED_CASES)
def test_ignored_events_say_why(
    source: str, event: str, name: str, changes: dict[str, Any], reason: str
) -> None:
    folder = "github" if source == "github" else "gitlab"
    with pytest.raises(UnsupportedEvent) as caught:
        parse_event(source, event, sample(folder, name, changes))
    assert caught.value.reason == reason


MALFORMED_CASES = [
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success",
        {"deployment": DROP},
        "deployment_status payload has no 'deployment'",
        id="github-status-without-deployment",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success",
        {"deployment_status": "success"},
        "deployment_status payload has no 'deployment_status'",
        id="github-status-not-an-object",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success",
        {"deployment_status.state": DROP},
        "deployment_status payload has no 'deployment_status.state'",
        id="github-status-without-state",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.created_at": DROP},
        "deployment payload has no 'deployment.created_at'",
        id="github-deployment-without-time",
    ),
    pytest.param(
        "github",
        "deployment_status",
        "deployment_status.success",
        {"deployment_status.updated_at": "yesterday", "deployment_status.created_at": None},
        "deployment_status payload has a bad 'deployment_status.updated_at': 'yesterday'",
        id="github-status-bad-time",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.id": DROP},
        "deployment payload has no 'deployment.id'",
        id="github-deployment-without-id",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.sha": "main"},
        "deployment payload has a bad 'deployment.sha': 'main'",
        id="github-deployment-bad-sha",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.sha": "a" * 65},
        "deployment payload has a bad 'deployment.sha': '" + "a" * 56 + "...",
        id="github-deployment-sha-past-64",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.sha": "abcdef"},
        "deployment payload has a bad 'deployment.sha': 'abcdef'",
        id="github-deployment-sha-under-7",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.sha": "a" * 40 + "\n"},
        "deployment payload has a bad 'deployment.sha': '" + "a" * 40 + "\\n'",
        id="github-deployment-sha-newline",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.success",
        {"repository": DROP},
        "workflow_run payload has no 'repository.full_name'",
        id="github-run-without-repository",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.success",
        {"workflow_run.id": "12a"},
        "workflow_run payload has a bad 'workflow_run.id': '12a'",
        id="github-run-bad-id",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.success",
        {"workflow_run.conclusion": None},
        "workflow_run payload has no 'workflow_run.conclusion'",
        id="github-run-completed-without-conclusion",
    ),
    pytest.param(
        "github",
        "workflow_run",
        "workflow_run.completed.success",
        {"workflow_run.updated_at": DROP},
        "workflow_run payload has no 'workflow_run.updated_at'",
        id="github-run-without-time",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.payload": {"cortex": {"entities": 7}}},
        "deployment payload has a bad 'deployment.payload.cortex.entities': 7",
        id="github-entities-not-a-list",
    ),
    pytest.param(
        "github",
        "deployment",
        "deployment.created",
        {"deployment.payload": {"cortex": {"entities": ["payments-api", 1]}}},
        "deployment payload has a bad 'deployment.payload.cortex.entities': ['payments-api', 1]",
        id="github-entities-not-strings",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.success",
        {"status_changed_at": DROP},
        "Deployment Hook payload has no 'status_changed_at'",
        id="gitlab-deployment-without-time",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.success",
        {"status_changed_at": "2026-06-18 14:05:31"},
        "Deployment Hook payload has a bad 'status_changed_at': '2026-06-18 14:05:31'",
        id="gitlab-deployment-time-without-zone",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.success",
        {"deployable_id": None, "deployment_id": DROP},
        "Deployment Hook payload has no 'deployment_id'",
        id="gitlab-deployment-without-ids",
    ),
    pytest.param(
        "gitlab",
        "Deployment Hook",
        "deployment.success",
        {"project": DROP},
        "Deployment Hook payload has no 'project.path_with_namespace'",
        id="gitlab-deployment-without-project",
    ),
    pytest.param(
        "gitlab",
        "Pipeline Hook",
        "pipeline.success",
        {"object_attributes.finished_at": None},
        "Pipeline Hook payload has no 'object_attributes.finished_at'",
        id="gitlab-final-pipeline-without-finish",
    ),
    pytest.param(
        "gitlab",
        "Pipeline Hook",
        "pipeline.success",
        {"object_attributes": []},
        "Pipeline Hook payload has no 'object_attributes'",
        id="gitlab-pipeline-without-attributes",
    ),
    pytest.param(
        "gitlab",
        "Pipeline Hook",
        "pipeline.success",
        {"object_kind": "deployment"},
        "Pipeline Hook payload has object_kind 'deployment'",
        id="gitlab-kind-does-not-match-header",
    ),
]


@pytest.mark.parametrize(("source", "event", "name", "changes", "message"), MALFORMED_CASES)
def test_malformed_events_name_the_field(
    source: str, event: str, name: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(MalformedEvent) as caught:
        parse(source, event, name, changes)
    assert str(caught.value) == message


@pytest.mark.parametrize("value", [5, 2.5, True, ["production"]], ids=repr)
@pytest.mark.parametrize(
    ("source", "event", "name", "path"),
    [
        ("github", "deployment_status", "deployment_status.success", "deployment.environment"),
        ("github", "deployment_status", "deployment_status.success", "deployment_status.state"),
        ("github", "workflow_run", "workflow_run.completed.success", "workflow_run.name"),
        ("gitlab", "Deployment Hook", "deployment.success", "environment"),
        ("gitlab", "Deployment Hook", "deployment.success", "commit_title"),
        ("argocd", "sync", "sync.succeeded", "app.name"),
    ],
)
def test_a_text_field_of_another_type_is_refused_naming_its_path(
    source: str, event: str, name: str, path: str, value: object
) -> None:
    # Taken as absent, an environment of 5 recorded the deploy without its environment.
    with pytest.raises(MalformedEvent) as caught:
        parse(source, event, name, {path: value})
    assert f"payload has a bad {path!r}: " in str(caught.value)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([], id="list"),
        pytest.param("deployment", id="string"),
        pytest.param(None, id="null"),
        pytest.param(3, id="number"),
    ],
)
@pytest.mark.parametrize(("source", "event"), sorted(PARSERS))
def test_a_payload_that_is_not_an_object_is_malformed(
    source: str, event: str, payload: object
) -> None:
    with pytest.raises(MalformedEvent, match="payload is not a JSON object"):
        parse_event(source, event, payload)


@pytest.mark.parametrize(
    ("own_payload", "entities"),
    [
        pytest.param({"cortex": {"entities": ["a", " b ", ""]}}, ("a", "b"), id="list"),
        pytest.param({"cortex": {"entities": "a, b,,a"}}, ("a", "b"), id="comma-string"),
        pytest.param({"cortex-entities": "a\nb"}, ("a", "b"), id="dashed-key-lines"),
        pytest.param(
            {"cortex": {"entities": ["a"]}, "cortex-entities": "b, a"}, ("a", "b"), id="both-keys"
        ),
        pytest.param(json.dumps({"cortex": {"entities": ["a"]}}), ("a",), id="json-string"),
        pytest.param("not json", (), id="plain-string"),
        pytest.param({"cortex": "payments-api"}, (), id="cortex-not-an-object"),
        pytest.param({"rollout": "canary"}, (), id="other-keys"),
        pytest.param(None, (), id="null"),
    ],
)
def test_deployment_payload_names_entities(own_payload: object, entities: tuple[str, ...]) -> None:
    changes = {"deployment.payload": own_payload}
    assert parse("github", "deployment", "deployment.created", changes).entities == entities


def test_dashed_entities_key_is_named_when_wrong() -> None:
    changes = {"deployment.payload": {"cortex-entities": {"a": 1}}}
    with pytest.raises(MalformedEvent, match=r"'deployment\.payload\.cortex-entities'"):
        parse("github", "deployment_status", "deployment_status.success", changes)


NO_STATUS_URLS = {
    "deployment_status.target_url": "",
    "deployment_status.log_url": "",
    "deployment_status.environment_url": "",
}


@pytest.mark.parametrize(
    ("name", "changes", "url"),
    [
        pytest.param(
            "deployment_status.success",
            {"deployment_status.target_url": ""},
            "https://payments.acme.example",
            id="environment-url-when-no-target",
        ),
        pytest.param(
            "deployment_status.success",
            NO_STATUS_URLS,
            f"{GH_WEB}/deployments",
            id="repository-deployments-page",
        ),
        pytest.param(
            "deployment_status.success.actions",
            NO_STATUS_URLS,
            f"{GH_WEB}/actions/runs/12045678901",
            id="run-page-when-from-a-run",
        ),
        pytest.param(
            "deployment_status.success",
            {
                "deployment_status.target_url": "https://ghe.acme.example/api/v3/repos/a/b",
                "deployment_status.log_url": "javascript:alert(1)",
            },
            "https://payments.acme.example",
            id="never-an-api-url-or-a-script",
        ),
        pytest.param(
            "deployment_status.success",
            {**NO_STATUS_URLS, "repository.html_url": None},
            None,
            id="none-when-nothing-is-known",
        ),
    ],
)
def test_github_status_url_is_a_human_page(
    name: str, changes: dict[str, Any], url: str | None
) -> None:
    assert parse("github", "deployment_status", name, changes).url == url


@pytest.mark.parametrize(
    ("changes", "url"),
    [
        pytest.param({"deployable_url": None}, f"{GL_WEB}/-/jobs/48213377", id="built-job-page"),
        pytest.param(
            {"deployable_url": "https://gitlab.acme.example/api/v4/projects/4417/jobs/48213377"},
            f"{GL_WEB}/-/jobs/48213377",
            id="api-url-skipped",
        ),
        pytest.param(
            {"deployable_url": None, "deployable_id": None},
            "https://payments.acme.example",
            id="environment-url-without-a-job",
        ),
    ],
)
def test_gitlab_deployment_url_is_the_job_page(changes: dict[str, Any], url: str) -> None:
    assert parse("gitlab", "Deployment Hook", "deployment.success", changes).url == url


def test_gitlab_deployment_without_job_is_keyed_by_deployment() -> None:
    event = parse("gitlab", "Deployment Hook", "deployment.success", {"deployable_id": None})
    assert event.ref == DeployRef("deployment", "90211")


SHA_256 = "ac3022a7" + "e" * 56


@pytest.mark.parametrize(
    ("changes", "sha"),
    [
        pytest.param({}, GL_SHA, id="full-sha-from-commit-url"),
        pytest.param(
            {"commit_url": f"{GL_WEB}/-/commit/{SHA_256}"}, SHA_256, id="sha256-repository"
        ),
        pytest.param({"short_sha": None}, GL_SHA, id="full-without-short"),
    ],
)
def test_gitlab_deployment_sha(changes: dict[str, Any], sha: str) -> None:
    assert parse("gitlab", "Deployment Hook", "deployment.success", changes).sha == sha


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        pytest.param({"commit_url": None}, "no 'commit_url'", id="short-without-commit-url"),
        pytest.param(
            {"commit_url": f"{GL_WEB}/-/commit/{GL_PIPELINE_SHA}"},
            "bad 'commit_url'",
            id="short-when-url-names-another-commit",
        ),
    ],
)
def test_a_gitlab_deployment_with_only_its_short_sha_is_malformed(
    changes: dict[str, Any], said: str
) -> None:
    # PRODUCT.md: the full 40-hex sha; GitLab's hook carries it in commit_url. A short one
    # was recorded as it came, where send and the Action refuse one they cannot expand.
    with pytest.raises(MalformedEvent, match=said):
        parse("gitlab", "Deployment Hook", "deployment.success", changes)


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        pytest.param("mara.okafor@acme.example", "mara.okafor@acme.example", id="public"),
        pytest.param("[REDACTED]", None, id="redacted"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="null"),
    ],
)
def test_gitlab_deployer_email(email: str | None, expected: str | None) -> None:
    event = parse("gitlab", "Deployment Hook", "deployment.success", {"user.email": email})
    assert event.deployer_email == expected


@pytest.mark.parametrize(
    ("event", "name", "changes", "deployer"),
    [
        pytest.param(
            "deployment_status",
            "deployment_status.failure",
            {"deployment_status.creator": None},
            "teo-lindqvist",
            id="deployment-creator",
        ),
        pytest.param(
            "deployment_status",
            "deployment_status.success",
            {"deployment_status.creator": None, "deployment.creator": None},
            "mara-okafor",
            id="sender",
        ),
        pytest.param(
            "workflow_run",
            "workflow_run.completed.success",
            {"workflow_run.triggering_actor": DROP},
            "mara-okafor",
            id="run-actor",
        ),
        pytest.param(
            "workflow_run",
            "workflow_run.completed.success",
            {"workflow_run.triggering_actor": DROP, "workflow_run.actor": DROP},
            "teo-lindqvist",
            id="run-sender",
        ),
        pytest.param(
            "workflow_run",
            "workflow_run.completed.ghes-no-actor",
            {},
            "ines-moreau",
            id="ghes-run-sender",
        ),
    ],
)
def test_github_deployer_fallbacks(
    event: str, name: str, changes: dict[str, Any], deployer: str
) -> None:
    assert parse("github", event, name, changes).deployer_name == deployer


# Fuzzing: whatever the body holds, only the two errors the receiver answers may escape.

SAMPLE_FILES = sorted(SAMPLES.glob("git*/*.json"))
HEADER = {"deployment": "Deployment Hook", "pipeline": "Pipeline Hook"}


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for child in value.values() for key in _keys(child)}
    if isinstance(value, list):
        return {key for child in value for key in _keys(child)}
    return set()


KEYS = sorted(set().union(*(_keys(json.loads(path.read_text())) for path in SAMPLE_FILES)))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # json.loads accepts NaN and Infinity
    | st.text(max_size=12)
    | st.sampled_from(["", "2026-06-18 14:05:31 +0200", "success", "completed", GL_SHA])
)
JSONISH = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=25,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(source: str, event: str, payload: object) -> None:
    try:
        result = parse_event(source, event, payload)
    except (UnsupportedEvent, MalformedEvent):
        return
    assert isinstance(result, DeployEvent)
    assert result.timestamp.utcoffset() is not None


@FUZZ
@given(key=st.sampled_from(sorted(PARSERS)), payload=JSONISH)
def test_random_payloads_never_crash(key: tuple[str, str], payload: object) -> None:
    _outcome(*key, payload)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        items: list[tuple[Any, Any]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        items = []
    for key, child in items:
        found.extend(_paths(child, (*prefix, key)))
    return found


@FUZZ
@given(path=st.sampled_from(SAMPLE_FILES), data=st.data())
def test_damaged_samples_never_crash(path: Any, data: st.DataObject) -> None:
    payload = json.loads(path.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        *parents, last = data.draw(st.sampled_from(_paths(payload)))
        node = payload
        for key in parents:
            node = node[key]
        node[last] = data.draw(JSONISH)
    event = path.stem.split(".")[0]
    if path.parent.name == "gitlab":
        event = data.draw(st.sampled_from([HEADER[event], "System Hook"]))
    _outcome(path.parent.name, event, payload)
