"""Map a DeployEvent to Cortex's SaveDeployRequest body. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bridge import __version__
from bridge.model import MAX_TITLE, DeployEvent, DeployRef, DeployType
from bridge.times import format_timestamp, seconds_between


def deploy_key(event: DeployEvent, entity: str | None = None) -> str:
    """Name the deploy, whatever the entities: source, repository, its id, environment; with
    an ``entity``, its idempotency key there (one key however often its events arrive)."""
    environment = event.environment or "-"
    parts = (event.source, event.repository, event.ref.kind, event.ref.id, environment)
    return ":".join(parts if entity is None else (*parts, entity))


# Name the deploy on one entity, not the HTTP delivery: one key however often its events
# arrive. ``idempotency_key(event, entity)``: the one rule, :func:`deploy_key`'s.
idempotency_key = deploy_key


def run_attempt(key: str, event: DeployEvent, run: str, entity: str) -> str | None:
    """The attempt of run ``run`` whose idempotency key on ``entity`` ``key`` is, for a deploy
    of ``event``'s source, repository and environment (:func:`deploy_key` of the ref ``run``
    ``<run>/<attempt>``); None where ``key`` names no attempt of that run."""
    probe = deploy_key(replace(event, ref=DeployRef("run", f"{run}/\0")), entity)
    head, _, tail = probe.partition("\0")  # what the attempt stands between
    attempt = key[len(head) : len(key) - len(tail)]
    if key.startswith(head) and key.endswith(tail) and attempt.isascii() and attempt.isdigit():
        return attempt
    return None


def build_deploy_request(
    event: DeployEvent, entity: str, deploy_type: DeployType, *, detected: bool = False
) -> dict[str, Any]:
    """The SaveDeployRequest body for one entity (see the Cortex Deploys API); its customData
    says where the deploy came from, its status and timing, and the idempotency key; and,
    ``detected``, that its type is rollback detection's (``customData.bridge.typeDetected``:
    a deploy that comes late may judge it again, never a type the user gave)."""
    title = event.title.strip() or default_title(event)
    body: dict[str, Any] = {
        "title": title[:MAX_TITLE],
        "timestamp": format_timestamp(event.timestamp),
        "type": deploy_type.value,
    }
    if event.sha:
        body["sha"] = event.sha
    if event.environment:
        body["environment"] = event.environment
    if event.url:
        body["url"] = event.url
    deployer = {
        key: value
        for key, value in (("name", event.deployer_name), ("email", event.deployer_email))
        if value
    }
    if deployer:
        body["deployer"] = deployer
    data: dict[str, Any] = {"source": event.source}
    if event.repository:  # none for `send` run by hand outside a CI
        data["repository"] = event.repository
    data.update(event=event.event, status=event.status.value)
    if event.delivery_id:
        data["deliveryId"] = event.delivery_id
    data.update({k: v for k, v in event.details.items() if v not in (None, "")})
    if event.started_at is not None:
        data["startedAt"] = format_timestamp(event.started_at)
    if event.finished_at is not None:
        data["finishedAt"] = format_timestamp(event.finished_at)
        if event.started_at is not None:
            data["durationSeconds"] = seconds_between(event.started_at, event.finished_at)
    data.update(event.custom)
    data["bridge"] = {"idempotencyKey": deploy_key(event, entity), "version": __version__}
    if detected:
        data["bridge"]["typeDetected"] = True
    body["customData"] = data
    return body


def default_title(event: DeployEvent) -> str:
    """A title when the source gave none: what was deployed, and where."""
    what = event.sha[:12] if event.sha else event.repository
    where = f"to {event.environment}" if event.environment else ""
    return " ".join(word for word in ("Deploy", what, where) if word)  # "Deploy" at least


def key_of(deploy: Mapping[str, Any]) -> str | None:
    """The idempotency key a Cortex deploy record carries, if the bridge made it."""
    custom = deploy.get("customData")
    if not isinstance(custom, dict):
        return None
    bridge = custom.get("bridge")
    if isinstance(bridge, dict) and isinstance(bridge.get("idempotencyKey"), str):
        return str(bridge["idempotencyKey"])
    return None
