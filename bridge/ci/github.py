"""Deploy defaults from a GitHub Actions job: GITHUB_* variables and the event file.

Variables: https://docs.github.com/en/actions/reference/workflows-and-actions/variables
(default environment variables); event payloads: docs.github.com "Events that trigger
workflows" / "Webhook events and payloads".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from bridge.ci.context import CiContext
from bridge.errors import MalformedEvent, UnsupportedEvent, UsageError
from bridge.model import DeployRef, Status, first_line
from bridge.sources.github import parse_deployment_status, parse_workflow_run

NAME = "github"


def detect(environ: Mapping[str, str]) -> bool:
    """GITHUB_ACTIONS is "true" in every step of a workflow run."""
    return environ.get("GITHUB_ACTIONS") == "true"


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _text(data: Any, *path: str) -> str | None:
    value = _get(data, *path)
    return value if isinstance(value, str) and value else None


def sha_of(event_name: str, payload: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """The deployed commit: the event's own deploy's where it names one (a deployment, the run
    a workflow_run reports), else GITHUB_SHA: what the job checked out by default (for a
    pull_request, the merge commit GitHub made, not the branch's head)."""
    candidates = {
        "deployment": ("deployment", "sha"),
        "deployment_status": ("deployment", "sha"),
        "workflow_run": ("workflow_run", "head_sha"),
    }
    path = candidates.get(event_name)
    return (_text(payload, *path) if path else None) or environ.get("GITHUB_SHA") or None


def title_of(event_name: str, payload: Mapping[str, Any]) -> str | None:
    """The head commit's first line (or the release / deployment's own words)."""
    message = (
        _text(payload, "head_commit", "message")
        or _text(payload, "workflow_run", "head_commit", "message")
        or _text(payload, "deployment", "description")
        or _text(payload, "release", "name")
        or _text(payload, "pull_request", "title")
    )
    return first_line(message) or None


def email_of(actor: str | None, payload: Mapping[str, Any]) -> str | None:
    """The deployer's email where the event carries one for that actor (push events)."""
    pusher = _get(payload, "pusher")
    if _text(pusher, "email") and (actor is None or _text(pusher, "name") == actor):
        return _text(pusher, "email")
    author = _get(payload, "head_commit", "author")
    if actor and _text(author, "username") == actor:
        return _text(author, "email")
    return None


def run_url(environ: Mapping[str, str]) -> str | None:
    """The run's page; a re-run's own attempt page (docs: "Default environment variables")."""
    server = environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repository, run_id = environ.get("GITHUB_REPOSITORY"), environ.get("GITHUB_RUN_ID")
    if not repository or not run_id:
        return None
    url = f"{server}/{repository}/actions/runs/{run_id}"
    attempt = environ.get("GITHUB_RUN_ATTEMPT", "1")
    return f"{url}/attempts/{attempt}" if attempt not in ("", "1") else url


def ref_of(
    event_name: str, payload: Mapping[str, Any], environ: Mapping[str, str]
) -> DeployRef | None:
    """What names this deploy; matches what the webhook receiver derives for it.

    A run's attempt is part of its name: a re-run (a new attempt) deploys again and is
    recorded again, as the workflow_run webhook of that attempt is (docs/send.md).
    """
    deployment_id = _get(payload, "deployment", "id")
    if event_name == "deployment" and deployment_id is not None:
        # A deployment an Actions job made carries that job's run: the receiver keys it by the
        # run (bridge.sources.github), so that the step inside the run and its webhook name
        # one deploy. (A step a deployment_status started is named by triggered_by.)
        run_id, attempt = (_get(payload, "workflow_run", key) for key in ("id", "run_attempt"))
        if isinstance(run_id, int) and not isinstance(run_id, bool):
            attempt = attempt if isinstance(attempt, int) and attempt > 0 else 1
            return DeployRef("run", f"{run_id}/{attempt}")
        return DeployRef("deployment", str(deployment_id))
    run_id = environ.get("GITHUB_RUN_ID", "").strip()
    if not run_id:
        return None  # not a real run (a local try-out): no id to find a record by
    return DeployRef("run", f"{run_id}/{environ.get('GITHUB_RUN_ATTEMPT') or '1'}")


def context(environ: Mapping[str, str], payload: Mapping[str, Any]) -> CiContext:
    """Deploy defaults for a step running in GitHub Actions."""
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    actor = environ.get("GITHUB_TRIGGERING_ACTOR") or environ.get("GITHUB_ACTOR") or None
    details = {
        "runId": environ.get("GITHUB_RUN_ID"),
        "runAttempt": environ.get("GITHUB_RUN_ATTEMPT"),
        "runNumber": environ.get("GITHUB_RUN_NUMBER"),
        "workflow": environ.get("GITHUB_WORKFLOW"),
        "job": environ.get("GITHUB_JOB"),
        "deploymentId": _get(payload, "deployment", "id"),
    }
    here = CiContext(
        source=NAME,
        repository=environ.get("GITHUB_REPOSITORY", ""),
        event=event_name or "workflow",
        ref=ref_of(event_name, payload, environ),
        sha=sha_of(event_name, payload, environ),
        branch=environ.get("GITHUB_REF_NAME") or None,
        environment=_text(payload, "deployment", "environment"),
        title=title_of(event_name, payload),
        url=run_url(environ),
        deployer_name=actor,
        deployer_email=email_of(actor, payload),
        workspace=environ.get("GITHUB_WORKSPACE") or None,
        details={k: v for k, v in details.items() if v not in (None, "")},
    )
    return triggered_by(event_name, payload, here)


# The events that are a deploy another run made: a step they trigger records that deploy.
_DEPLOYS = {"deployment_status": parse_deployment_status, "workflow_run": parse_workflow_run}
DEPLOY_EVENTS = frozenset(_DEPLOYS)


def triggered_by(event_name: str, payload: Mapping[str, Any], here: CiContext) -> CiContext:
    """The context of a step that a deploy's own event triggered (``on: deployment_status``,
    ``on: workflow_run``): that deploy as the receiver reads the same payload
    (bridge.sources.github), so the step and the webhook name, date and describe it alike,
    however late the step runs; ``not_recorded`` says why, when that deploy did not succeed.
    A payload the receiver refuses is a UsageError naming GITHUB_EVENT_PATH: the deploy to
    record is the event's, never the step's own run in its place."""
    parse = _DEPLOYS.get(event_name)
    if parse is None:
        return here
    try:
        deploy = parse(payload)
    except UnsupportedEvent as exc:
        return dataclasses.replace(here, not_recorded=f"the {event_name} event: {exc.reason}")
    except MalformedEvent as exc:
        raise UsageError(
            f"GITHUB_EVENT_PATH: the {event_name} event is not a deploy: {exc}"
        ) from None
    why = None
    if deploy.status is not Status.SUCCEEDED:
        why = (
            f"the {event_name} that started this step says the deploy is "
            f"{deploy.status.value}: only a deploy that succeeded is recorded"
        )
    return dataclasses.replace(
        here,
        ref=deploy.ref,
        sha=deploy.sha or here.sha,
        environment=deploy.environment,
        title=deploy.title or here.title,
        url=deploy.url or here.url,
        deployer_name=deploy.deployer_name or here.deployer_name,
        deployer_email=deploy.deployer_email or here.deployer_email,
        started_at=deploy.started_at,
        finished_at=deploy.finished_at or deploy.timestamp,
        details=dict(deploy.details),
        not_recorded=why,
    )
