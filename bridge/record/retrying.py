"""The Action's and ``send``'s face of the core: one deploy, one entity, its retry loop.

History comes from Cortex itself (the entity's listing, read once when the type is auto, or
a search around the deploy's time), and the retry lives here, in one loop: 429 (Retry-After
wins), 5xx, timeouts and dropped connections are tried again with backoff; after an attempt
that may have reached Cortex the next one reads Cortex afresh instead of posting a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bridge.cortex.client import Cortex
from bridge.errors import CortexError, CortexRetryable, CortexTooMany
from bridge.mapping import build_deploy_request
from bridge.model import DeployEvent, DeployType
from bridge.record.core import (
    Fence,
    History,
    Known,
    Listing,
    Policy,
    record_one,
)
from bridge.retry import Again, RetryPolicy, drive
from bridge.rollback import PastDeploy

# A step records the deploy it is told of, whatever its status says: it is the final word.
STEP_POLICY = Policy(lifecycle=False, failures=True)
# With the type given, how far from the deploy's time its record is looked for: a step run
# again later (``send --deploy-id`` with the type, a re-run of a recording workflow) dates
# the deploy anew, and must still find the record it made. One search still (an entity's
# deploys to one environment in two months fit a page of 1,000 but for the busiest); the
# keyless match keeps its own LOOKUP_WINDOW within it.
KEY_REACH = timedelta(days=30)
# Where an entity holds more deploys than a listing reads whole (10,000): the history read for
# type auto, back from the deploy's time, in its environment.
HISTORY_REACH = timedelta(days=365)


@dataclass(frozen=True)
class Outcome:
    """What happened for one entity: the uuid Cortex holds, or the error."""

    entity: str
    type: DeployType
    payload: dict[str, Any]
    uuid: str | None = None
    existing: bool = False  # Cortex already held this deploy (a repeat run)
    error: CortexError | None = None
    done: str = ""  # what the core did: created, updated, deleted, found, ... (core.Done)
    reason: str = ""  # why, where it did nothing (skipped)
    retyped: tuple[str, ...] = ()  # later deploys' records typed again (core.Done)

    @property
    def ok(self) -> bool:
        """True when nothing went wrong."""
        return self.error is None


class CortexHistory:
    """The core's history read from Cortex itself, for a face that keeps no store.

    With type auto the entity's listing is read once (it settles DEPLOY or ROLLBACK and shows
    this deploy's record, if any); with the type given, a search of the entity's deploys to
    the event's environment within KEY_REACH of its time shows it in one request. Any other
    face may be recording the same deploy (the relay, from its webhook), so the core checks
    after it creates (every listing it hands the core is ``shared``).
    """

    def __init__(self, cortex: Cortex, *, listing: bool) -> None:
        self.cortex = cortex
        self.listing = listing  # False: the type is given, no history is needed
        self._deploys: list[dict[str, Any]] | None = None
        self._seen: Listing | None = None
        self._made: dict[str, Known] = {}  # by key: what this run made (a retry finds it)

    def _listed(self, entity: str, event: DeployEvent) -> list[dict[str, Any]]:
        """The entity's deploys; where it holds more than a listing reads whole, those to the
        event's environment around its time: a year back (the history a rollback is judged
        on), else KEY_REACH, and KEY_REACH ahead, so that its record is found either way."""
        if self._deploys is None:
            try:
                self._deploys = list(self.cortex.iter_deploys(entity))
            except CortexTooMany:
                self._deploys = self._around(entity, event)
        return self._deploys

    def _around(self, entity: str, event: DeployEvent) -> list[dict[str, Any]]:
        try:
            return self._back(entity, event, HISTORY_REACH)
        except CortexTooMany:
            return self._back(entity, event, KEY_REACH)

    def _back(self, entity: str, event: DeployEvent, reach: timedelta) -> list[dict[str, Any]]:
        found = self.cortex.search_deploys(
            entity,
            environment=event.environment,
            after=event.timestamp - reach,
            before=event.timestamp + KEY_REACH,
        )
        return list(found)

    def recall(
        self, entity: str, event: DeployEvent, key: str, *, past: bool
    ) -> tuple[Known | None, list[PastDeploy]]:
        """The record this run made, if an earlier try of it did; the environment's earlier
        deploys from the listing, when asked for."""
        listed = Listing().add(self._listed(entity, event) if past else [])
        return self._made.get(key), listed.history(event.environment, key)

    def seen(self, entity: str, event: DeployEvent, *, fresh: bool) -> Listing:
        """The listing when it was read for the type, else a search around the event."""
        if self._seen is not None and not fresh:
            return self._seen
        if self.listing and not fresh:
            self._seen = Listing().add(self._listed(entity, event))
        else:
            self._seen = Listing().add(
                self.cortex.search_deploys(
                    entity,
                    environment=event.environment,
                    after=event.timestamp - KEY_REACH,
                    before=event.timestamp + KEY_REACH,
                )
            )
        self._seen.shared = True  # a step cannot know whether a relay records the same deploys
        return self._seen

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Kept for this run's retries: Cortex is the history."""
        self._made[key] = Known(uuid, state)

    def forget(self, key: str) -> None:
        """Nothing kept to forget beyond this run."""
        self._made.pop(key, None)


def record(
    client: Cortex | None,
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
    fence: Fence | None = None,
    policy: Policy = STEP_POLICY,
) -> Outcome:
    """Record ``event`` for ``entity``, retrying what may pass; with ``dry_run`` only read.

    With type auto the entity's history is read first: it settles DEPLOY or ROLLBACK and
    shows whether this very deploy is already recorded (a repeated step), which is then
    answered with the existing uuid instead of a second record. ``history``: where that
    history is read instead of the entity's listing (a sync's listing, already read);
    ``rollback``: False records type auto as DEPLOY (the config's ``rollback.detect``);
    ``policy``: what is recorded (a step: whatever it is told; a sync: as the config says).
    """
    if client is None or (dry_run and event.type is not None):
        # A dry run with no token, or with the type given: nothing to read.
        deploy_type = event.type or DeployType.DEPLOY
        return Outcome(entity, deploy_type, build_deploy_request(event, entity, deploy_type))
    history = history or CortexHistory(client, listing=event.type is None and rollback)
    unclear = False  # an earlier attempt may have reached Cortex: read afresh

    def attempt(number: int) -> Outcome:
        nonlocal unclear
        try:
            done = record_one(
                event,
                entity,
                history=history,
                cortex=client,
                policy=policy,
                rollback=rollback,
                unclear=unclear,
                dry_run=dry_run,
                fence=fence,
            )
        except CortexRetryable as exc:
            unclear = unclear or exc.unclear
            raise
        deploy_type = done.type
        payload = done.payload or build_deploy_request(event, entity, deploy_type)
        existing = done.action in ("found", "matched")
        uuid = done.uuid if (existing or not dry_run) else None
        return Outcome(
            entity,
            deploy_type,
            payload,
            uuid=uuid,
            existing=existing,
            done=done.action,
            reason=done.reason,
            retyped=done.retyped,
        )

    try:
        return drive(
            attempt,
            policy=retry or RetryPolicy(),
            classify=_again,
            sleep=sleep,
            clock=clock,
            on_retry=on_retry,  # type: ignore[arg-type]
        )
    except CortexError as exc:
        return _failed(event, entity, exc)


def _again(exc: Exception) -> Again | None:
    """429, 5xx, timeouts and dropped connections may pass on another attempt."""
    return Again(exc.retry_after) if isinstance(exc, CortexRetryable) else None


def _failed(event: DeployEvent, entity: str, error: CortexError) -> Outcome:
    deploy_type = event.type or DeployType.DEPLOY
    payload = build_deploy_request(event, entity, deploy_type)
    return Outcome(entity, deploy_type, payload, error=error)
