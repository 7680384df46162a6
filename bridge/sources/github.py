"""GitHub webhook events as DeployEvents: deployment, deployment_status, workflow_run, ping.

Payload shapes: https://docs.github.com/en/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.errors import UnsupportedEvent
from bridge.model import DeployEvent, DeployRef, Status, first_line
from bridge.sources.fields import (
    Fields,
    Parser,
    Screen,
    compact,
    keep_all,
    pick,
    shorten,
)

# deployment_status.state: "error, failure, inactive, pending, success, queued, or in_progress"
# (webhook-events-and-payloads#deployment_status). "inactive" marks a deployment superseded by
# a newer one in the same environment: not a deploy of its own, so it records nothing.
DEPLOYMENT_STATES: Mapping[str, Status] = {
    "pending": Status.PENDING,
    "queued": Status.PENDING,
    "in_progress": Status.IN_PROGRESS,
    "success": Status.SUCCEEDED,
    "failure": Status.FAILED,
    "error": Status.FAILED,
}

# workflow_run.status: requested, queued, waiting, pending, in_progress, completed (REST
# "Workflow runs", the `status` parameter). Only `completed` carries a conclusion.
RUN_STATUSES: Mapping[str, Status] = {
    "requested": Status.PENDING,
    "queued": Status.PENDING,
    "waiting": Status.PENDING,
    "pending": Status.PENDING,
    "in_progress": Status.IN_PROGRESS,
}

# workflow_run.conclusion: success, failure, neutral, cancelled, timed_out, action_required,
# stale, skipped, startup_failure. skipped/neutral/action_required/stale deployed nothing.
RUN_CONCLUSIONS: Mapping[str, Status] = {
    "success": Status.SUCCEEDED,
    "failure": Status.FAILED,
    "timed_out": Status.FAILED,
    "startup_failure": Status.FAILED,
    "cancelled": Status.CANCELLED,
}

# The two places a deployment's own `payload` may name Cortex entities.
ENTITY_KEYS = ("cortex.entities", "cortex-entities")


def parse_deployment(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A ``deployment`` created: a deploy was asked for, so it is pending."""
    fields = Fields(payload, "deployment")
    _require_action(fields, "created")
    if Status.PENDING in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[Status.PENDING])
    fields.mapping("deployment", required=True)
    timestamp = fields.moment("deployment.created_at", required=True)
    return _deployment_event(fields, Status.PENDING, timestamp)


def parse_deployment_status(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A ``deployment_status`` created: the deploy moved to a new state."""
    fields = Fields(payload, "deployment_status")
    _require_action(fields, "created")
    fields.mapping("deployment_status", required=True)
    fields.mapping("deployment", required=True)
    state = fields.text("deployment_status.state", required=True).lower()
    if state == "inactive":
        raise UnsupportedEvent("deployment_status 'inactive' records nothing")
    status = pick(DEPLOYMENT_STATES, state, "deployment_status {} is not recorded")
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    timestamp = fields.moment(
        "deployment_status.updated_at", "deployment_status.created_at", required=True
    )
    return _deployment_event(fields, status, timestamp)


def parse_workflow_run(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A ``workflow_run`` requested, in progress or completed."""
    fields = Fields(payload, "workflow_run")
    _require_action(fields, "requested", "in_progress", "completed")
    fields.mapping("workflow_run", required=True)
    status = _run_status(fields)
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    if status.is_final:
        timestamp = fields.moment("workflow_run.updated_at", required=True)
    else:
        timestamp = fields.moment(
            "workflow_run.run_started_at", "workflow_run.created_at", required=True
        )
    return DeployEvent(
        source="github",
        repository=fields.text("repository.full_name", required=True),
        event="workflow_run",
        ref=_run_ref(fields),
        status=status,
        timestamp=timestamp,
        title=_commit_title(fields) or fields.text("workflow_run.display_title") or "",
        sha=fields.sha("workflow_run.head_sha"),
        url=fields.url("workflow_run.html_url"),
        # Older payloads (GitHub Enterprise Server before 3.2, github.com before 2021) carry
        # neither actor: there the person is the event's sender, as for deployments.
        deployer_name=fields.text(
            "workflow_run.triggering_actor.login", "workflow_run.actor.login", "sender.login"
        ),
        started_at=fields.moment("workflow_run.run_started_at"),
        finished_at=timestamp if status.is_final else None,
        details=_run_details(fields),
    )


def parse_ping(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A ``ping``, sent once when the webhook is created: nothing to record."""
    raise UnsupportedEvent("ping: webhook is set up")


PARSERS: Mapping[str, Parser] = {
    "deployment": parse_deployment,
    "deployment_status": parse_deployment_status,
    "workflow_run": parse_workflow_run,
    "ping": parse_ping,
}


def _deployment_event(fields: Fields, status: Status, timestamp: datetime) -> DeployEvent:
    deployment_id = fields.number("deployment.id", required=True)
    in_run = fields.mapping("workflow_run") is not None
    repository = fields.text("repository.full_name", required=True)
    # A deployment made by an Actions job carries that run: key it like the Action step
    # inside the run keys it, so both paths name the same deploy.
    ref = _run_ref(fields) if in_run else DeployRef("deployment", str(deployment_id))
    message = fields.text("workflow_run.head_commit.message")
    title = (first_line(message) if message else "") or fields.text("deployment.description")
    sha = fields.sha("deployment.sha")
    environment = fields.text("deployment.environment", "deployment_status.environment")
    url = fields.url(
        "deployment_status.target_url",
        "deployment_status.log_url",
        "deployment_status.environment_url",
        "workflow_run.html_url",
    )
    if url is None:  # the repository's deployments page
        repository_page = fields.url("repository.html_url")
        url = f"{repository_page.rstrip('/')}/deployments" if repository_page else None
    # An Actions job's deployment is created by github-actions[bot]; the person is the
    # run's triggering actor, as the Action step inside that run reports it.
    deployer = fields.text(
        "workflow_run.triggering_actor.login",
        "deployment_status.creator.login",
        "deployment.creator.login",
        "sender.login",
    )
    # The deploy started when its run did, else when its deployment was made (as a
    # deployment is, when a deploy begins): every status of it says so, the final one too.
    started = fields.moment("workflow_run.run_started_at", "deployment.created_at")
    details = _run_details(fields) if in_run else {}
    own = {
        "deploymentId": deployment_id,
        "deploymentStatusId": fields.number("deployment_status.id"),
        "ref": fields.text("deployment.ref"),
        "environmentUrl": fields.url("deployment_status.environment_url"),
    }
    details.update((key, value) for key, value in own.items() if value is not None)
    return DeployEvent(
        source="github",
        repository=repository,
        event=fields.event,
        ref=ref,
        status=status,
        timestamp=timestamp,
        title=title or "",
        sha=sha,
        environment=environment,
        url=url,
        deployer_name=deployer,
        started_at=started or (timestamp if status is Status.IN_PROGRESS else None),
        finished_at=timestamp if status.is_final else None,
        details=details,
        entities=_entities(fields),
    )


def _run_details(fields: Fields) -> dict[str, Any]:
    return compact(
        {
            "runId": fields.number("workflow_run.id"),
            "runAttempt": _run_attempt(fields),
            "workflow": fields.text("workflow_run.name", "workflow.name"),
            "workflowPath": fields.text("workflow_run.path", "workflow.path"),
            "ref": fields.text("workflow_run.head_branch"),
        }
    )


def _run_ref(fields: Fields) -> DeployRef:
    run_id = fields.number("workflow_run.id", required=True)
    return DeployRef("run", f"{run_id}/{_run_attempt(fields)}")


def _run_attempt(fields: Fields) -> int:
    # run_attempt is absent from payloads older than re-runs (GitHub Changelog 2021-03-23):
    # those runs only ever had their first attempt, GITHUB_RUN_ATTEMPT=1.
    return fields.number("workflow_run.run_attempt") or 1


def _run_status(fields: Fields) -> Status:
    state = fields.text("workflow_run.status", required=True).lower()
    if state != "completed":
        return pick(RUN_STATUSES, state, "workflow_run status {} is not recorded")
    conclusion = fields.text("workflow_run.conclusion", required=True).lower()
    return pick(RUN_CONCLUSIONS, conclusion, "workflow_run concluded {}, which records nothing")


def _commit_title(fields: Fields) -> str:
    return first_line(fields.text("workflow_run.head_commit.message"))


def _entities(fields: Fields) -> tuple[str, ...]:
    """The Cortex entities the deployment's own payload names (ENTITY_KEYS), each once."""
    # REST "Create a deployment": `payload` is "object or string"; a string is JSON text.
    payload = fields.get("deployment.payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError):
            return ()
    if not isinstance(payload, Mapping):
        return ()
    own = Fields(payload, fields.event)
    names: list[str] = []
    for key in ENTITY_KEYS:
        value = own.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            items = value.replace("\n", ",").split(",")
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            items = value
        else:
            raise fields.bad(f"deployment.payload.{key}", value)
        names.extend(item.strip() for item in items if item.strip())
    return tuple(dict.fromkeys(names))


def _require_action(fields: Fields, *accepted: str) -> None:
    # GHES 3.4/3.5 deployment payloads carry no `action`; there "created" is the only one.
    action = fields.get("action")
    if action is not None and action not in accepted:
        raise UnsupportedEvent(f"{fields.event} {shorten(action)} events are not recorded")
