"""Record one deploy for one entity: settle its type, never post it twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.cortex import CortexClient
from bridge.errors import CortexError
from bridge.mapping import build_deploy_request, idempotency_key, key_of
from bridge.model import DeployEvent, DeployType
from bridge.rollback import detect_type, past_deploys


@dataclass(frozen=True)
class Outcome:
    """What happened for one entity: the uuid Cortex holds, or the error."""

    entity: str
    type: DeployType
    payload: dict[str, Any]
    uuid: str | None = None
    existing: bool = False  # Cortex already held this deploy (a repeat run)
    error: CortexError | None = None

    @property
    def ok(self) -> bool:
        """True when nothing went wrong."""
        return self.error is None


def record(
    client: CortexClient | None, event: DeployEvent, entity: str, *, dry_run: bool = False
) -> Outcome:
    """Record ``event`` for ``entity``; with ``dry_run`` only read, never write.

    With type auto the entity's history is read first: it settles DEPLOY or ROLLBACK and
    shows whether this very deploy is already recorded (a repeated step), which is then
    answered with the existing uuid instead of a second record.
    """
    key = idempotency_key(event, entity)
    deploy_type = event.type or DeployType.DEPLOY
    existing: dict[str, Any] | None = None
    try:
        if event.type is None and client is not None:
            deploys = list(client.iter_deploys(entity))
            existing = next((d for d in deploys if key_of(d) == key), None)
            history = past_deploys(deploys, event.environment, skip_key=key)
            deploy_type = detect_type(event.sha, event.timestamp, history)
        payload = build_deploy_request(event, entity, deploy_type)
        if existing is not None:
            return Outcome(entity, deploy_type, payload, uuid=existing.get("uuid"), existing=True)
        if dry_run or client is None:
            return Outcome(entity, deploy_type, payload)
        made = client.create_deploy(entity, payload)
        return Outcome(entity, deploy_type, payload, uuid=str(made["uuid"]))
    except CortexError as exc:
        payload = build_deploy_request(event, entity, deploy_type)
        return Outcome(entity, deploy_type, payload, error=exc)
