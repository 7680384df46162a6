"""The Action's and ``send``'s face of the core: one deploy, one entity, its retry loop.

History comes from Cortex itself (the entity's listing, read once when the type is auto),
and the retry lives here, in one loop: 429 (Retry-After wins), 5xx, timeouts and dropped
connections are tried again with backoff; after an attempt that may have reached Cortex the
next one looks for the record it made instead of posting a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.cortex import CortexClient, RetryPolicy
from bridge.errors import CortexError, CortexRetryable
from bridge.mapping import build_deploy_request, idempotency_key
from bridge.model import DeployEvent, DeployType
from bridge.record.core import History, Known, Policy, made_by_bridge, record_one, type_of
from bridge.rollback import PastDeploy, past_deploys

# A step records the deploy it is told of, whatever its status says: it is the final word.
STEP_POLICY = Policy(lifecycle=False, failures=True)


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


class CortexHistory:
    """The core's history read from Cortex: the entity's deploys, listed once if at all."""

    def __init__(self, cortex: CortexClient, *, listing: bool) -> None:
        self.cortex = cortex
        self.listing = listing  # False: the type is given, no history is needed
        self._deploys: list[dict[str, Any]] | None = None

    def _listed(self, entity: str) -> list[dict[str, Any]]:
        if self._deploys is None:
            self._deploys = list(self.cortex.iter_deploys(entity))
        return self._deploys

    def known(self, entity: str, key: str) -> Known | None:
        """This deploy's record in the listing (a repeated step), when the listing is read."""
        if not self.listing:
            return None
        return made_by_bridge(self._listed(entity)).get(key)

    def past(self, entity: str, environment: str | None, key: str) -> list[PastDeploy]:
        """The environment's earlier deploys from the listing."""
        return past_deploys(self._listed(entity), environment, skip_key=key)

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Nothing to keep: Cortex is the history."""

    def forget(self, key: str) -> None:
        """Nothing to forget: Cortex is the history."""


def record(
    client: CortexClient | None,
    event: DeployEvent,
    entity: str,
    *,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[CortexError, float], None] | None = None,
    history: History | None = None,
    rollback: bool = True,
) -> Outcome:
    """Record ``event`` for ``entity``, retrying what may pass; with ``dry_run`` only read.

    With type auto the entity's history is read first: it settles DEPLOY or ROLLBACK and
    shows whether this very deploy is already recorded (a repeated step), which is then
    answered with the existing uuid instead of a second record. ``history``: where that
    history is read instead of the entity's listing (a sync's listing, already read);
    ``rollback``: False records type auto as DEPLOY (the config's ``rollback.detect``).
    """
    if client is None:  # a dry run with no token: nothing to read
        deploy_type = event.type or DeployType.DEPLOY
        return Outcome(entity, deploy_type, build_deploy_request(event, entity, deploy_type))
    policy = retry or RetryPolicy()
    key = idempotency_key(event, entity)
    # A step's only trace of an earlier run of itself (a re-run of the same build) is in
    # Cortex. With type auto the listing read for the history shows it; with the type given
    # no listing is read, so the key is looked up before creating, as after an unclear try
    # (a dry run with the type given reads nothing: it needs no Cortex at all).
    unclear = history is None and event.type is not None and not dry_run
    started, number = clock(), 1
    history = history or CortexHistory(client, listing=event.type is None)
    while True:
        try:
            done = record_one(
                event,
                entity,
                history=history,
                cortex=client,
                policy=STEP_POLICY,
                rollback=rollback,
                unclear=unclear,
                dry_run=dry_run,
            )
            deploy_type = done.type or type_of(event, entity, key, history, rollback=rollback)
            payload = done.payload or build_deploy_request(event, entity, deploy_type)
            existing = done.action == "found"
            uuid = done.uuid if (existing or not dry_run) else None
            return Outcome(entity, deploy_type, payload, uuid=uuid, existing=existing)
        except CortexRetryable as exc:
            unclear = unclear or exc.unclear
            delay = policy.delay(number, exc.retry_after)
            if number >= policy.max_attempts or clock() - started + delay > policy.max_elapsed:
                return _failed(event, entity, exc)
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            number += 1
        except CortexError as exc:
            return _failed(event, entity, exc)


def _failed(event: DeployEvent, entity: str, error: CortexError) -> Outcome:
    deploy_type = event.type or DeployType.DEPLOY
    payload = build_deploy_request(event, entity, deploy_type)
    return Outcome(entity, deploy_type, payload, error=error)
