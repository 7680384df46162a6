"""THE core: record one deploy on one entity, deciding create, update, delete or skip once.

Every face calls :func:`record_one`: the relay's worker (bridge/worker.py, with the store as
the history and its lease as the fence) and the Action and ``send``
(bridge/record/retrying.py, with Cortex's own listing as the history). ``decide`` is the
recording policy (final or lifecycle mode, failures or not), stated once; the receiver asks
it too (``ignore_reason``) before it stores an event. Nothing here retries: each face
retries in its own way, telling the core when an earlier attempt may have reached Cortex
(``unclear``), which is the one case, with a lifecycle end whose start left no trace, where
the core looks for the deploy before creating.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bridge.cortex import CortexClient
from bridge.mapping import build_deploy_request, idempotency_key, key_of
from bridge.model import DeployEvent, DeployType, Status, event_from_dict, event_to_dict
from bridge.rollback import PastDeploy, detect_type

if TYPE_CHECKING:  # the Action's path must not load the config (and YAML) to record
    from bridge.config import Config, RecordSettings, Route

# How far from the event's own time a record made by another path (the Action step, an
# earlier attempt whose answer was lost, a lifecycle start) is looked for before creating one.
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


@dataclass(frozen=True)
class Policy:
    """What is recorded: ``record.mode`` lifecycle or final, and ``record.failures``."""

    lifecycle: bool = False
    failures: bool = False

    @classmethod
    def of(cls, settings: RecordSettings) -> Policy:
        """The policy the config's ``record`` section states."""
        return cls(lifecycle=settings.mode == "lifecycle", failures=settings.failures)


@dataclass(frozen=True)
class Known:
    """What is known of one deploy's record in Cortex: its uuid and the status it holds."""

    uuid: str
    state: str


def decide(status: Status, known: Known | None, policy: Policy) -> Decision:
    """What an event of ``status`` does to the record of its deploy, given what is known of it."""
    if known is not None and known.state == status.value:
        return Decision(Action.SKIP, f"already recorded as {known.uuid} ({status.value})")
    if known is not None and Status(known.state).is_final and not status.is_final:
        return Decision(Action.SKIP, f"the deploy already ended {known.state}")
    if status.is_final:
        if status is Status.SUCCEEDED or policy.failures:
            return Decision(Action.UPDATE if known else Action.CREATE)
        if known is not None:
            return Decision(Action.DELETE)
        return Decision(
            Action.SKIP, f"{status.value} deploys are not recorded (record.failures is false)"
        )
    if not policy.lifecycle:
        return Decision(
            Action.SKIP, f"{status.value} is not final: only finished deploys are recorded"
        )
    return Decision(Action.UPDATE if known else Action.CREATE)


def ignore_reason(status: Status, config: Config) -> str | None:
    """Why the receiver need not store an event of ``status`` at all, or None when it must.

    The policy asked for every record the deploy may already have (in lifecycle mode, a start
    record): an event skipped whatever is recorded records nothing, now or later.
    """
    return _ignore_reason(status, config.record)


# Asked for every delivery the receiver gets; a few (status, record section) pairs ever occur.
@functools.lru_cache(maxsize=64)
def _ignore_reason(status: Status, record: RecordSettings) -> str | None:
    policy = Policy.of(record)
    earlier: list[Known | None] = [None]
    if policy.lifecycle:
        earlier.append(Known("", Status.IN_PROGRESS.value))
    decisions = [decide(status, k, policy) for k in earlier]
    if all(d.action is Action.SKIP for d in decisions):
        return decisions[0].reason
    return None


class History(Protocol):
    """What the core reads and remembers of an entity's deploys (store or Cortex listing)."""

    def known(self, entity: str, key: str) -> Known | None:
        """The record already made for this deploy (idempotency ``key``), if known."""

    def past(self, entity: str, environment: str | None, key: str) -> list[PastDeploy]:
        """The entity's earlier deploys to ``environment``, leaving out this deploy's own."""

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Cortex now holds ``uuid`` for this deploy, with ``customData.status`` ``state``."""

    def forget(self, key: str) -> None:
        """Cortex no longer holds a record for this deploy."""


# Called right before each write to Cortex; raises to stop it (the relay's lease check).
Fence = Callable[[], None]


@dataclass(frozen=True)
class Done:
    """What recording one deploy on one entity did."""

    action: str  # created, updated, found, deleted, skipped, planned (dry run)
    uuid: str | None = None
    type: DeployType | None = None
    payload: dict[str, Any] | None = field(default=None, hash=False)
    reason: str = ""

    def as_result(self) -> dict[str, Any]:
        """The per-entity result the outbox keeps and the admin API shows."""
        result: dict[str, Any] = {"action": self.action}
        if self.uuid:
            result["uuid"] = self.uuid
        if self.type is not None:
            result["type"] = self.type.value
        if self.reason:
            result["reason"] = self.reason
        return result


def type_of(
    event: DeployEvent, entity: str, key: str, history: History, *, rollback: bool
) -> DeployType:
    """The deploy's type: as the event says, else ROLLBACK or DEPLOY from the history."""
    if event.type is not None:
        return event.type
    if not rollback:
        return DeployType.DEPLOY
    return detect_type(event.sha, event.timestamp, history.past(entity, event.environment, key))


def record_one(
    event: DeployEvent,
    entity: str,
    *,
    history: History,
    cortex: CortexClient,
    policy: Policy,
    rollback: bool = True,
    fence: Fence | None = None,
    unclear: bool = False,
    dry_run: bool = False,
) -> Done:
    """Record ``event`` on ``entity`` once, whatever happened before; raises CortexError.

    ``unclear``: an earlier attempt may have reached Cortex, so look for its record before
    creating one. ``fence`` runs right before each write; ``dry_run`` reads but never writes.
    """
    key = idempotency_key(event, entity)
    # The type first: the history it reads (Cortex's listing, the first time) may show a
    # record of this deploy that another path made.
    deploy_type = type_of(event, entity, key, history, rollback=rollback)
    known = history.known(entity, key)
    if known is None and (unclear or (policy.lifecycle and event.status.is_final)):
        # The one case for a search: a record may exist that this path has no trace of (an
        # earlier attempt's answer was lost; a lifecycle start recorded by another path).
        known = _look_up(cortex, event, entity, key)
        if known is not None:
            history.remember(event, entity, key, known.uuid, state=known.state)
    decision = decide(event.status, known, policy)
    body = build_deploy_request(event, entity, deploy_type)
    if decision.action is Action.SKIP:
        if known is not None and known.state == event.status.value:
            return Done("found", uuid=known.uuid, type=deploy_type, payload=body)
        return Done("skipped", reason=decision.reason)
    if dry_run:
        return Done("planned", uuid=known.uuid if known else None, type=deploy_type, payload=body)
    if decision.action is Action.DELETE:
        assert known is not None
        cortex.delete_deploy(entity, known.uuid, guard=fence)
        history.forget(key)
        return Done("deleted", uuid=known.uuid)
    if decision.action is Action.UPDATE:
        assert known is not None
        made = cortex.update_deploy(entity, known.uuid, body, guard=fence)
        verb = "updated"
    else:
        made = cortex.create_deploy(entity, body, guard=fence)
        verb = "created"
    uuid = str(made["uuid"])
    history.remember(event, entity, key, uuid, state=event.status.value)
    return Done(verb, uuid=uuid, type=deploy_type, payload=body)


def _look_up(cortex: CortexClient, event: DeployEvent, entity: str, key: str) -> Known | None:
    """The record Cortex holds for this deploy, found by its idempotency key."""
    found = cortex.find_deploy(entity, key, near=event.timestamp, window=LOOKUP_WINDOW)
    return None if found is None else Known(str(found["uuid"]), _status_of(found))


def made_by_bridge(deploys: Iterable[Mapping[str, Any]]) -> dict[str, Known]:
    """The records among Cortex's ``deploys`` that a bridge made, by idempotency key."""
    found = {}
    for deploy in deploys:
        key, uuid = key_of(dict(deploy)), deploy.get("uuid")
        if key and isinstance(uuid, str):
            found[key] = Known(uuid, _status_of(deploy))
    return found


def _status_of(deploy: Mapping[str, Any]) -> str:
    """The status a Cortex deploy record holds; one made without one counts as succeeded."""
    custom = deploy.get("customData")
    status = custom.get("status") if isinstance(custom, dict) else None
    known = {s.value for s in Status}
    return status if isinstance(status, str) and status in known else Status.SUCCEEDED.value


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
