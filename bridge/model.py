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
