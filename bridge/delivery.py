"""Deliver one stored event to Cortex: decide per entity, act, remember what Cortex holds.

``decide`` is pure; ``Deliverer`` is the edge that talks to Cortex and the store. Retries are
the outbox's business: a Cortex error stops the attempt and is handed back with the progress
made, so the next attempt carries on where this one stopped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bridge.config import Config, RecordMode, Route
from bridge.cortex import CortexClient
from bridge.errors import CortexError, CortexRejected
from bridge.mapping import build_deploy_request, idempotency_key
from bridge.model import DeployEvent, DeployType, Status, event_from_dict, event_to_dict
from bridge.rollback import PastDeploy, detect_type, past_deploys
from bridge.store import Record, Store

# How far from the event's own time a record made by another path (the Action step, an
# earlier attempt whose answer was lost) is looked for before creating one.
LOOKUP_WINDOW = timedelta(hours=1)


class Action(str, enum.Enum):
    """What one event does to one entity's Cortex record."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """An action and, for SKIP, why."""

    action: Action
    reason: str = ""


def decide(
    event: DeployEvent, record: Record | None, *, mode: RecordMode, failures: bool
) -> Decision:
    """What ``event`` does to the record of one deploy, given what is already recorded."""
    recorded = record is not None and bool(record.cortex_uuid)
    if record is not None and Status(record.state).is_final and not event.status.is_final:
        return Decision(Action.SKIP, f"the deploy already ended {record.state}")
    if event.status.is_final:
        if event.status is Status.SUCCEEDED or failures:
            return Decision(Action.UPDATE if recorded else Action.CREATE)
        if recorded:
            return Decision(Action.DELETE)
        return Decision(Action.SKIP, f"{event.status.value} deploys are not recorded")
    if mode is not RecordMode.LIFECYCLE:
        return Decision(Action.SKIP, f"{event.status.value} is not final (record.mode final)")
    return Decision(Action.UPDATE if recorded else Action.CREATE)


def ignore_reason(status: Status, config: Config) -> str | None:
    """Why the receiver need not store an event of ``status`` at all, or None when it must."""
    if status.is_final:
        if status is Status.SUCCEEDED or config.record.failures:
            return None
        if config.record.mode is RecordMode.LIFECYCLE:
            return None  # its start record, if any, must be deleted
        return f"{status.value} deploys are not recorded (record.failures is false)"
    if config.record.mode is RecordMode.LIFECYCLE:
        return None
    return f"{status.value} is not final: only finished deploys are recorded"


def routed(event: DeployEvent, route: Route) -> DeployEvent:
    """The event as its route delivers it (the environment renamed)."""
    return replace(event, environment=route.environment)


def to_payload(event: DeployEvent, route: Route) -> dict[str, Any]:
    """What the outbox keeps for one event: the event as routed, and its entities."""
    return {
        "event": event_to_dict(routed(event, route)),
        "entities": list(route.entities),
        "rule": route.rule,
    }


def from_payload(payload: Mapping[str, Any]) -> tuple[DeployEvent, tuple[str, ...]]:
    """The inverse of :func:`to_payload`."""
    return event_from_dict(payload["event"]), tuple(payload["entities"])


@dataclass
class Attempt:
    """The outcome of one delivery attempt: per-entity results, and the error that stopped it."""

    results: dict[str, Any] = field(default_factory=dict)
    error: CortexError | None = None


class Deliverer:
    """Carries stored events to Cortex, one entity at a time."""

    def __init__(
        self, store: Store, client: CortexClient, config: Config, *, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.client = client
        self.config = config
        self.clock = clock

    def deliver(self, payload: Mapping[str, Any], results: Mapping[str, Any]) -> Attempt:
        """Deliver to every entity not yet done; stop at the first retryable Cortex error."""
        event, entities = from_payload(payload)
        attempt = Attempt(results=dict(results))
        for entity in entities:
            if entity in attempt.results:
                continue
            try:
                attempt.results[entity] = self._one(event, entity)
            except CortexError as exc:
                # One entity's rejection does not hold back the others; an outage does.
                attempt.error = attempt.error or exc
                if exc.retryable:
                    attempt.error = exc
                    break
        return attempt

    def _one(self, event: DeployEvent, entity: str) -> dict[str, Any]:
        key = idempotency_key(event, entity)
        record = self.store.get_record(key)
        decision = decide(
            event, record, mode=self.config.record.mode, failures=self.config.record.failures
        )
        if decision.action is Action.SKIP:
            return {"action": "skipped", "reason": decision.reason}
        if decision.action is Action.DELETE:
            assert record is not None
            self.client.delete_deploy(entity, record.cortex_uuid)
            self.store.delete_record(key)
            return {"action": "deleted", "uuid": record.cortex_uuid}
        deploy_type = self._type_of(event, entity, key)
        body = build_deploy_request(event, entity, deploy_type)
        if decision.action is Action.UPDATE:
            assert record is not None
            uuid = str(self.client.update_deploy(entity, record.cortex_uuid, body)["uuid"])
            verb = "updated"
        else:
            found = self.client.find_deploy(entity, key, near=event.timestamp, window=LOOKUP_WINDOW)
            if found is not None and event.status.is_final:
                uuid = str(self.client.update_deploy(entity, str(found["uuid"]), body)["uuid"])
            else:
                uuid = (
                    str(found["uuid"])
                    if found
                    else str(self.client.create_deploy(entity, body)["uuid"])
                )
            verb = "found" if found else "created"
        self._remember(event, entity, key, uuid)
        return {"action": verb, "uuid": uuid, "type": deploy_type.value}

    def _type_of(self, event: DeployEvent, entity: str, key: str) -> DeployType:
        if event.type is not None:
            return event.type
        if not self.config.rollback.detect:
            return DeployType.DEPLOY
        history = self.store.history(entity, event.environment)
        if not history:
            history = self._history_from_cortex(entity, event.environment, key)
        return detect_type(event.sha, event.timestamp, history)

    def _history_from_cortex(
        self, entity: str, environment: str | None, key: str
    ) -> list[PastDeploy]:
        """Cortex's record of the environment, the first time the relay meets it.

        The relay's own history starts empty (a new relay, a lost database, deploys made by
        other tools before it): without this, redeploying an older sha there would be
        recorded as DEPLOY. Read once: what is found is kept in the store's history.
        """
        try:
            deploys = list(self.client.iter_deploys(entity, max_pages=1))  # newest 1,000
        except CortexRejected as exc:
            if exc.status in (401, 403):
                raise  # the token: kept for later, like any request it refuses
            return []  # the create that follows says what is wrong with the entity
        found = past_deploys(deploys, environment, skip_key=key)
        keyed = [(f"cortex:{past.sha}:{past.timestamp.isoformat()}", past) for past in found]
        self.store.seed_history(entity=entity, environment=environment, deploys=keyed)
        return found

    def _remember(self, event: DeployEvent, entity: str, key: str, uuid: str) -> None:
        now = self.clock()
        self.store.save_record(
            key, entity=entity, cortex_uuid=uuid, state=event.status.value, now=now
        )
        # A deploy enters the rollback history once Cortex has accepted it as succeeded.
        if event.status is Status.SUCCEEDED and event.sha:
            self.store.add_history(
                entity=entity,
                environment=event.environment,
                sha=event.sha,
                deployed_at=event.timestamp,
                key=key,
            )
