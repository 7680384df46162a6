"""GitLab webhook events as DeployEvents: Deployment Hook and Pipeline Hook.

Payload shapes: https://docs.gitlab.com/ee/user/project/integrations/webhook_events.html
("Deployment events", "Pipeline events"); the X-Gitlab-Event header names the hook.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.model import FULL_SHA, DeployEvent, DeployRef, Status, first_line
from bridge.sources.fields import (
    Fields,
    Parser,
    Screen,
    compact,
    keep_all,
    pick,
    shorten,
)

# Deployment events fire "when a deployment starts, succeeds, fails or is canceled"
# (webhook_events.md#deployment-events); `created` is a deployment's first state.
DEPLOYMENT_STATUSES: Mapping[str, Status] = {
    "created": Status.PENDING,
    "running": Status.IN_PROGRESS,
    "success": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELLED,
}

# Pipeline statuses (doc/api/pipelines.md): a skipped pipeline ran nothing, so it is absent.
PIPELINE_STATUSES: Mapping[str, Status] = {
    "created": Status.PENDING,
    "waiting_for_resource": Status.PENDING,
    "preparing": Status.PENDING,
    "pending": Status.PENDING,
    "scheduled": Status.PENDING,
    "manual": Status.PENDING,
    "running": Status.IN_PROGRESS,
    "success": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELLED,
}

# Webhook payloads carry a user's public email only, else "[REDACTED]" (gitlab-org/gitlab
# issue 344230; older versions and push hooks sent "" or null).
_HIDDEN_EMAILS = ("[REDACTED]",)


def parse_deployment(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A Deployment Hook: a deployment was created, started, succeeded, failed or canceled."""
    fields = Fields(payload, "Deployment Hook")
    _require_kind(fields, "deployment")
    state = fields.text("status", required=True).lower()
    status = pick(DEPLOYMENT_STATUSES, state, "deployment status {} is not recorded")
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    timestamp = fields.moment("status_changed_at", required=True)
    return DeployEvent(
        source="gitlab",
        repository=fields.text("project.path_with_namespace", required=True),
        event="deployment",
        ref=_deployment_ref(fields),
        status=status,
        timestamp=timestamp,
        title=first_line(fields.text("commit_title")),
        sha=_full_sha(fields),
        environment=fields.text("environment"),
        url=_job_url(fields),
        deployer_name=fields.text("user.name"),
        deployer_email=_email(fields),
        # Created or running: the start (PRODUCT.md, lifecycle mode); the record keeps the
        # first, which later updates carry.
        started_at=timestamp if status in (Status.PENDING, Status.IN_PROGRESS) else None,
        finished_at=timestamp if status.is_final else None,
        details=_deployment_details(fields),
    )


def parse_pipeline(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A Pipeline Hook: a pipeline changed status."""
    fields = Fields(payload, "Pipeline Hook")
    _require_kind(fields, "pipeline")
    fields.mapping("object_attributes", required=True)
    state = fields.text("object_attributes.status", required=True).lower()
    status = pick(PIPELINE_STATUSES, state, "pipeline status {} is not recorded")
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    when = "object_attributes.finished_at" if status.is_final else "object_attributes.created_at"
    timestamp = fields.moment(when, required=True)
    pipeline_id = fields.number("object_attributes.id", required=True)
    return DeployEvent(
        source="gitlab",
        repository=fields.text("project.path_with_namespace", required=True),
        event="pipeline",
        ref=DeployRef("pipeline", str(pipeline_id)),
        status=status,
        timestamp=timestamp,
        title=first_line(fields.text("commit.title", "commit.message")),
        sha=fields.sha("object_attributes.sha"),
        url=fields.url("object_attributes.url") or _page(fields, "pipelines", pipeline_id),
        deployer_name=fields.text("user.name"),
        deployer_email=_email(fields),
        started_at=fields.moment("object_attributes.created_at"),
        finished_at=timestamp if status.is_final else None,
        details=_pipeline_details(fields, pipeline_id),
    )


def parse_system_hook(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A System Hook: parsed by its ``object_kind`` when that is a deployment or pipeline."""
    kind = payload.get("object_kind")
    parser = SYSTEM_HOOK_KINDS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise UnsupportedEvent(f"System Hook {shorten(kind)} events are not recorded")
    return parser(payload, screen)


SYSTEM_HOOK_KINDS: Mapping[str, Parser] = {
    "deployment": parse_deployment,
    "pipeline": parse_pipeline,
}

# Keyed by the X-Gitlab-Event header (webhooks.md, "Delivery headers").
PARSERS: Mapping[str, Parser] = {
    "Deployment Hook": parse_deployment,
    "Pipeline Hook": parse_pipeline,
    "System Hook": parse_system_hook,
}


def _require_kind(fields: Fields, kind: str) -> None:
    found = fields.get("object_kind")
    if found is not None and found != kind:
        raise MalformedEvent(f"{fields.event} payload has object_kind {shorten(found)}")


def _deployment_ref(fields: Fields) -> DeployRef:
    # The deployable is the CI job that deployed; `send` inside that job records
    # CI_JOB_ID, the same id, so both paths name the same deploy.
    job_id = fields.number("deployable_id")
    if job_id is not None:
        return DeployRef("job", str(job_id))
    return DeployRef("deployment", str(fields.number("deployment_id", required=True)))


def _deployment_details(fields: Fields) -> dict[str, Any]:
    return compact(
        {
            "deploymentId": fields.number("deployment_id"),
            "jobId": fields.number("deployable_id"),
            "ref": fields.text("ref"),
            "environmentUrl": fields.url("environment_external_url"),
            "tier": fields.text("environment_tier"),
        }
    )


def _full_sha(fields: Fields) -> str | None:
    # The Deployment Hook carries only `short_sha`; `commit_url` ends in the full sha
    # (".../-/commit/<sha>"). Trust it only when it extends the short one. A short sha is
    # never recorded (Cortex's record holds the full one, as every other face's does): a
    # hook whose commit_url does not give it is malformed.
    short = fields.sha("short_sha", short=True)
    commit_url = fields.text("commit_url") or ""
    tail = commit_url.rstrip("/").rsplit("/", 1)[-1].lower()
    if FULL_SHA.fullmatch(tail) and (short is None or tail.startswith(short)):
        return tail
    if short is None or FULL_SHA.fullmatch(short):
        return short
    if not commit_url:
        raise MalformedEvent(
            f"{fields.event} payload has no 'commit_url': the full sha of short_sha {short!r}"
        )
    raise fields.bad("commit_url", commit_url)


def _job_url(fields: Fields) -> str | None:
    job_id = fields.number("deployable_id")
    return (
        fields.url("deployable_url")
        or (_page(fields, "jobs", job_id) if job_id is not None else None)
        or fields.url("environment_external_url")
    )


def _page(fields: Fields, kind: str, item: int) -> str | None:
    project = fields.url("project.web_url")
    return f"{project.rstrip('/')}/-/{kind}/{item}" if project else None


def _email(fields: Fields) -> str | None:
    email = fields.text("user.email")
    return None if email in _HIDDEN_EMAILS else email


def _pipeline_details(fields: Fields, pipeline_id: int) -> dict[str, Any]:
    return compact(
        {
            "pipelineId": pipeline_id,
            "workflow": fields.text("object_attributes.name"),
            # An empty ci_config_path means the default file (doc/ci/pipelines/settings.md).
            "workflowPath": fields.text("project.ci_config_path") or ".gitlab-ci.yml",
            "ref": fields.text("object_attributes.ref"),
            # GitLab's own running time: it leaves out queueing, unlike durationSeconds.
            "pipelineDurationSeconds": _seconds(fields.get("object_attributes.duration")),
        }
    )


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) and value >= 0 else None
