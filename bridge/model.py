"""The one normalized deploy event that every source produces and the mapper consumes."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class DeployType(str, enum.Enum):
    """Cortex's deploy types (SaveDeployRequest.type)."""

    DEPLOY = "DEPLOY"
    SCALE = "SCALE"
    ROLLBACK = "ROLLBACK"
    RESTART = "RESTART"


class Status(str, enum.Enum):
    """The one lifecycle every source is mapped onto; what ``customData.status`` holds."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for the states a deploy ends in."""
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


@dataclass(frozen=True)
class DeployRef:
    """What names one deploy at its source: a deployment id, a run and attempt, a job.

    ``kind`` is one of ``deployment``, ``run``, ``pipeline``, ``job``; ``id`` is the source's
    own identifier (``"<run id>/<attempt>"`` for runs). Together with the source, the
    repository, the environment and the entity it forms the idempotency key.
    """

    kind: str
    id: str


@dataclass(frozen=True)
class DeployEvent:
    """One deploy, as a source saw it, before any routing to Cortex entities."""

    source: str  # "github" or "gitlab": the SCM, whichever path (action, CI, webhook) saw it
    repository: str  # "owner/name"; GitLab: the full path with subgroups
    event: str  # the source's event name: push, deployment_status, workflow_run, pipeline, ...
    ref: DeployRef
    status: Status
    timestamp: datetime  # when it finished (or the event's own time), aware
    title: str
    sha: str | None = None
    environment: str | None = None
    url: str | None = None
    deployer_name: str | None = None
    deployer_email: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delivery_id: str | None = None
    # Where the event came from, for customData: run/job/pipeline ids, workflow name, ...
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Cortex entities the source itself named (action input, a deployment's payload); empty
    # means "let the routes decide".
    entities: tuple[str, ...] = ()
    # An explicit type from the user; None means "auto" (rollback detection decides).
    type: DeployType | None = None
    # The user's own customData, merged over the bridge's.
    custom: Mapping[str, Any] = field(default_factory=dict, hash=False)


def event_to_dict(event: DeployEvent) -> dict[str, Any]:
    """A JSON-ready form of the event, for the outbox."""
    return {
        "source": event.source,
        "repository": event.repository,
        "event": event.event,
        "ref": {"kind": event.ref.kind, "id": event.ref.id},
        "status": event.status.value,
        "timestamp": event.timestamp.isoformat(),
        "title": event.title,
        "sha": event.sha,
        "environment": event.environment,
        "url": event.url,
        "deployer_name": event.deployer_name,
        "deployer_email": event.deployer_email,
        "started_at": event.started_at.isoformat() if event.started_at else None,
        "finished_at": event.finished_at.isoformat() if event.finished_at else None,
        "delivery_id": event.delivery_id,
        "details": dict(event.details),
        "entities": list(event.entities),
        "type": event.type.value if event.type else None,
        "custom": dict(event.custom),
    }


def event_from_dict(data: Mapping[str, Any]) -> DeployEvent:
    """The inverse of :func:`event_to_dict`."""

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    timestamp = when(data["timestamp"])
    assert timestamp is not None
    return DeployEvent(
        source=data["source"],
        repository=data["repository"],
        event=data["event"],
        ref=DeployRef(data["ref"]["kind"], data["ref"]["id"]),
        status=Status(data["status"]),
        timestamp=timestamp,
        title=data["title"],
        sha=data.get("sha"),
        environment=data.get("environment"),
        url=data.get("url"),
        deployer_name=data.get("deployer_name"),
        deployer_email=data.get("deployer_email"),
        started_at=when(data.get("started_at")),
        finished_at=when(data.get("finished_at")),
        delivery_id=data.get("delivery_id"),
        details=dict(data.get("details") or {}),
        entities=tuple(data.get("entities") or ()),
        type=DeployType(data["type"]) if data.get("type") else None,
        custom=dict(data.get("custom") or {}),
    )
