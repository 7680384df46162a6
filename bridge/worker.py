"""The relay's delivery: claim due events from the outbox, record each through the core,
settle each one. The relay's face of the core lives here, whole: the worker and the history
it hands the core (the store's records, and what Cortex showed lately); the lease it holds on
a claimed event is the outbox's (bridge.store.Lease).

Retries belong here, not in the HTTP client: a failed attempt is rescheduled with backoff
(Cortex's Retry-After wins), so a worker is never stuck sleeping on one event, and a killed
worker's events are taken up by another once their lease expires.

A delivery takes effect once, however long it runs. The worker holding it renews its lease
after each entity and before each write to Cortex, in the one statement that also checks it
still holds it (the fence, bridge.store.Lease); it stores each entity's result as soon as it is
known, and marks a write as sending before it leaves. A worker that lost its lease (it stalled
past it, and another worker took the event over) stops before its next write; the next owner
resumes where it stopped, and looks for the record of a write whose answer was never stored
before it makes another. What to do for each entity is the core's decision
(bridge.record.core.record_one).

Every replica's workers draw on one request budget (bridge.cortex.budget: the client they are
given wraps it), and a 429 seen by one pauses them all.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.config import Config, DeliverySettings
from bridge.cortex.budget import SharedBudget
from bridge.cortex.client import PAGE_SIZE, Cortex
from bridge.errors import (
    CortexError,
    CortexRejected,
    CortexTooMany,
    CortexUnauthorized,
    InvalidDeploy,
)
from bridge.model import DeployEvent, Status, event_from_dict, without_secrets
from bridge.record.core import (
    LOOKUP_WINDOW,
    Known,
    Listing,
    Policy,
    dated_from,
    record_one,
    remove_doubles,
    status_of,
)
from bridge.redact import redact
from bridge.retry import RetryPolicy
from bridge.rollback import PastDeploy
from bridge.store import (
    DEAD,
    DELIVERED,
    RETRYING,
    Delivery,
    Lease,
    LeaseLost,
    Lookup,
    RecordWrite,
    Store,
    StoreError,
)
from bridge.times import format_timestamp

log = logging.getLogger("bridge.worker")

# How long a search of Cortex for an entity and environment serves the deploys of a backlog
# that follow it: a record another face makes meanwhile is found by the check after a create
# where faces are known to share the entity, else by the next search's removal of doubles or
# the sweep when the backlog ends.
LISTING_SECONDS = 30.0
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)
# The stamps (customData.bridge.recordedAt) of the records this process made, kept for their
# updates (a lifecycle's end); one made before, or by another replica, is read from Cortex.
KEPT_STAMPS = 10_000
# The entity+environment pairs whose last search is kept (the least recently read goes).
KEPT_LISTINGS = 1_000


# The longest Retry-After the relay waits as asked (longer: this long), whatever its backoff's
# own cap: Cortex's word on when to come back wins over the bridge's schedule.
MOST_RETRY_AFTER = 3600.0


def most_retry_after(settings: DeliverySettings) -> float:
    """How long a Retry-After the relay honours: an hour, or the backoff's cap when longer."""
    return max(MOST_RETRY_AFTER, settings.backoff_max_seconds)


def next_delay(
    settings: DeliverySettings,
    attempts: int,
    retry_after: float | None,
    *,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next attempt: Retry-After when Cortex gave one, else backoff."""
    policy = RetryPolicy(
        base_delay=settings.backoff_base_seconds,
        max_delay=settings.backoff_max_seconds,
        max_retry_after=most_retry_after(settings),
    )
    return policy.delay(attempts + 1, retry_after, rng=rng)


def is_permanent(error: CortexError) -> bool:
    """A rejection that no retry will change (an unknown entity, an invalid body).

    A refused token is not: the operator must fix it, so such events are kept and tried
    again with backoff, and fixing the token drains the queue with nothing lost.
    """
    return isinstance(error, CortexRejected) and not isinstance(error, CortexUnauthorized)


class RelayHistory:
    """The relay's history for the core: records and deploy history in the store, and what
    Cortex showed of each entity and environment lately.

    What the core learns (a record made, updated, deleted) is not written at once but kept
    in ``pending`` (the delivery's lease's writes) and stored with the delivery's progress, in
    the same transaction: an entity's result and its record are kept together or not at all.

    A deploy whose record the relay did not make itself is looked for in Cortex before one is
    created (``seen``): one search per entity and environment serves the batch of deliveries
    claimed together, and through a backlog (full batches, one after the other) the batches
    that follow within LISTING_SECONDS, for deploys within LOOKUP_WINDOW of the first. When a
    batch is not full, ``batch`` is counted on (the worker does): a search serves no later
    batch, and the pairs in ``dirty`` (a search served later deploys, and records were made on
    it) are swept for doubles another face made meanwhile.

    The check after a create (the listing ``seen`` hands the core is ``shared``) is made where
    Cortex showed records another face made for the entity and environment, and once on a pair
    this process has not surveyed yet: the relay cannot tell yet whether another face records
    it (a new process, another replica, ``rollback.detect: false``), and one racing it unseen
    would leave a double behind. A fresh read of the pair surveys it: that check itself, or the
    look after an attempt whose create may have reached Cortex (the relay holds no record of
    the deploy), which is a read after the relay's create as much.

    The first time the relay meets an entity+environment, Cortex's own record of it is read
    once for the rollback history (a new relay, a lost database, deploys made by other tools
    before it): without this, redeploying an older sha there would be a DEPLOY. That read is
    made before the relay's create, so it does not survey the pair.
    """

    def __init__(
        self,
        store: Store,
        cortex: Cortex,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.cortex = cortex
        self.clock = clock
        self.monotonic = monotonic
        self.pending: list[RecordWrite] = []
        self.stamps: dict[str, str] = {}  # by key: when this process made the record
        # By key: the status this process last wrote to a record, where it was not succeeded
        # (a lifecycle's start): another face may end that record (the Action's step).
        self.unfinished: dict[str, str] = {}
        self.batch = 0  # counts the batches that ended a backlog (or were none)
        self.delivery = 0  # counts deliveries: a search kept from an earlier one is reused
        # By pair: the last search, the earliest event time it serves, when, for which
        # delivery, in which batch.
        self._seen: dict[tuple[str, str | None], tuple[Listing, datetime, float, int, int]] = {}
        self._shared: set[tuple[str, str | None]] = set()
        self._surveyed: set[tuple[str, str | None]] = set()
        # By pair: the batch in which a search served later deploys than its own.
        self._reused: dict[tuple[str, str | None], int] = {}
        self.dirty: set[tuple[str, str | None]] = set()  # ... and records were made on it

    def sweep(self) -> None:
        """A backlog ended: read each entity+environment in ``dirty`` once more, and remove
        the doubles another face made meanwhile."""
        dirty, self.dirty = self.dirty, set()
        for pair in sorted(dirty, key=str):
            entity, environment = pair
            kept = self._seen.get(pair)
            if kept is None:
                continue
            since = max(kept[1], self.clock() - DAY)
            try:
                found = Listing().add(
                    self.cortex.search_deploys(
                        entity,
                        environment=environment,
                        after=since - 2 * LOOKUP_WINDOW,
                        before=self.clock() + 2 * LOOKUP_WINDOW,
                    )
                )
                remove_doubles(found, entity, self.cortex)
            except CortexError as exc:  # the next search of the pair removes them instead
                log.warning("sweep for doubles failed", extra={"entity": entity, "error": str(exc)})

    def seen(
        self,
        entity: str,
        event: DeployEvent,
        *,
        fresh: bool,
        back_to: datetime | None = None,
    ) -> Listing:
        """Cortex's records of the entity and environment around the event: the last search
        when it is recent, of this batch or backlog, and covers the event, else a new one;
        ``shared`` where the check after a create is made. A fresh read surveys the pair.
        ``back_to``: the records since then too (the history another face may have added)."""
        pair = (entity, event.environment)
        unsurveyed = pair not in self._surveyed
        if fresh:
            self._surveyed.add(pair)
        # How far back the records are needed: the event's window from the deploy's start
        # (where another face may have dated it), or further.
        start = dated_from(event)
        reach = start if back_to is None else min(start, back_to + LOOKUP_WINDOW)
        kept = self._seen.get(pair)
        if kept is not None and not fresh and kept[4] == self.batch:
            listing, since, at, read_for, _ = kept
            covered = since <= reach and event.timestamp <= self.clock() + LOOKUP_WINDOW
            if covered and self.monotonic() - at <= LISTING_SECONDS:
                if read_for != self.delivery:
                    self._reused[pair] = self.batch
                listing.shared = pair in self._shared or unsurveyed
                return listing
        # One search: the pair's records from 2 LOOKUP_WINDOWs before the event to just after
        # now, so that it covers the later deploys of a backlog too (the sweep reads alike).
        after = reach - 2 * LOOKUP_WINDOW
        try:
            found = list(
                self.cortex.search_deploys(
                    entity,
                    environment=event.environment,
                    after=after,
                    before=max(event.timestamp, self.clock()) + 2 * LOOKUP_WINDOW,
                )
            )
            whole = True
        except CortexTooMany:
            # More than a search reads from an old event (or its start, or the relay's newest
            # deploy on the pair) up to now: a busy pair's backlog, or other faces' many
            # deploys since. The event's own window only, kept for no other deploy.
            narrow = self.cortex.search_deploys(
                entity,
                environment=event.environment,
                after=event.timestamp - 2 * LOOKUP_WINDOW,
                before=event.timestamp + 2 * LOOKUP_WINDOW,
            )
            found = list(narrow)
            whole = False
        listing = Listing().add(found)
        since = reach - LOOKUP_WINDOW
        self._seen.pop(pair, None)  # the newest last: the oldest goes first past the bound
        if whole:
            self._seen[pair] = (listing, since, self.monotonic(), self.delivery, self.batch)
        while len(self._seen) > KEPT_LISTINGS:  # a first listing (recall) may have added some
            del self._seen[next(iter(self._seen))]
        # The records another face made: not the ones this process made (their stamps kept),
        # nor this delivery's just made (kept with its outcome, not stored yet), nor the
        # relay's others (stored: asked of the store only for keys left).
        carried = set(listing.keyed) - self.stamps.keys() - {write.key for write in self.pending}
        if carried and carried - self.store.records.made(carried):
            self._shared.add(pair)
        listing.shared = pair in self._shared or unsurveyed
        return listing

    def recall(
        self, entity: str, event: DeployEvent, key: str, *, past: bool
    ) -> tuple[Known | None, list[PastDeploy]]:
        """The record the relay made for this deploy; and, when asked for, the store's history,
        seeded from Cortex's newest 1,000 deploys once (per entity and environment, whatever
        they showed): a record of this deploy that another face made is adopted then.

        What other faces recorded since the relay's newest deploy on the pair is in Cortex
        only: for a deploy the relay holds no record of (the core looks in Cortex for it
        anyway), and for an update on a pair another face records, that look reads back to
        there and those deploys join the history (a deploy of an older sha after theirs is a
        ROLLBACK; of theirs, not)."""
        environment = event.environment
        records = self.store.records
        if past:
            looked = records.lookup(key, entity=entity, environment=environment)
        else:  # no history asked for: nothing to read, nor to seed from Cortex
            looked = Lookup(records.get(key), seeded=True)
        record = looked.record
        known = None
        if record is not None:
            known = Known(
                record.cortex_uuid, record.state, self.stamps.get(key, ""), record.started_at
            )
        if looked.seeded:
            pair = (entity, environment)
            # An update of the relay's own record, on a pair no other face records; but not
            # the end that makes its deploy one that succeeded (a lifecycle's start record
            # ended): typed now, by what Cortex holds since, which another face (`sync` on a
            # database of its own, the Action) may have added while the deploy ran.
            ends = (
                event.status is Status.SUCCEEDED
                and known is not None
                and known.state != (Status.SUCCEEDED.value)
            )
            if not past or (known is not None and pair not in self._shared and not ends):
                return known, looked.history
            # Another face may have recorded deploys here since the relay's newest: the look
            # in Cortex this deploy gets anyway (without a record of its own) reads back to it.
            newest = max((p.timestamp for p in looked.history), default=EPOCH)
            listing = self.seen(entity, event, fresh=False, back_to=newest)
            ours = sum(len(made) for k, made in listing.keyed.items() if k in self.stamps)
            ended = any(
                status_of(d) != self.unfinished[k]
                for k in self.unfinished.keys() & listing.keyed.keys()
                for d in listing.keyed[k]
            )
            if ours == len(listing.deploys) and not ended:
                # Every record there is one this process made, as it left it: in the stored
                # history already (no other face's deploy to add, no record's time to read).
                # Not one another face ended since: a start record (record.mode lifecycle)
                # whose end the Action's step recorded on it, its own end's webhook not come.
                return known, looked.history
            # As Cortex keeps times: to the millisecond (a stored deploy read back is the same).
            stored = {(p.sha, format_timestamp(p.timestamp)) for p in looked.history}
            theirs = [
                (made, p)
                for made, p in listing.keyed_history(environment, key)
                if (p.sha, format_timestamp(p.timestamp)) not in stored
            ]
            if theirs:
                # Kept, so that a later look, which reads back only to the newest deploy the
                # relay knows of, still judges by them (a ROLLBACK to a sha only they deployed).
                # By the key its record carries: a deploy another replica is storing now is
                # one row of the history, not two.
                records.seed_history(
                    entity=entity,
                    environment=environment,
                    deploys=[(made or _seen_key(p), p) for made, p in theirs],
                    now=self.clock(),
                )
            return known, [*looked.history, *(p for _, p in theirs)]
        try:
            deploys = list(self.cortex.iter_deploys(entity, max_pages=1, partial=True))
        except CortexUnauthorized:
            raise  # the token: kept for later, like any request it refuses
        except CortexRejected:
            return known, []  # the create that follows says what is wrong with the entity
        pair = (entity, environment)
        listing = Listing().add(deploys)
        found = listing.history(environment, key)
        keyed = [(_seen_key(past), past) for past in found]
        made = [(k, listing.known(k)) for k in sorted(listing.carried_keys())]
        if made:
            self._shared.add(pair)
        # Not a survey: read before this process's first create here, it cannot show a face
        # recording the same deploy at the same moment (the check after that create does).
        if len(deploys) < PAGE_SIZE:
            # All the entity's deploys: they serve as the first look in Cortex too.
            here = Listing().add(d for d in deploys if d.get("environment") == environment)
            self._seen[pair] = (here, EPOCH, self.monotonic(), self.delivery, self.batch)
        records.seed_history(
            entity=entity,
            environment=environment,
            deploys=keyed,
            made=[(k, m.uuid, m.state) for k, m in made if m is not None],
            now=self.clock(),
        )
        return known or listing.known(key), found

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep the record; a deploy Cortex holds as succeeded enters the history with it."""
        deployed = None
        if state == Status.SUCCEEDED.value and event.sha:
            deployed = (event.environment, PastDeploy(event.sha, event.timestamp))
        self.pending.append(RecordWrite(key, entity, uuid, state, deployed, event.started_at))
        if uuid and state != Status.SUCCEEDED.value:
            self.unfinished[key] = state
            if len(self.unfinished) > KEPT_STAMPS:
                del self.unfinished[next(iter(self.unfinished))]
        else:
            self.unfinished.pop(key, None)
        pair = (entity, event.environment)
        kept = self._seen.get(pair)
        if uuid and kept is not None and key not in kept[0].keyed:  # not an unrecorded end
            kept[0].add(
                [{"uuid": uuid, "customData": {"status": state, "bridge": {"idempotencyKey": key}}}]
            )
            if self._reused.get(pair) == self.batch:  # on a search read for earlier deploys
                self.dirty.add(pair)

    def forget(self, key: str) -> None:
        """The record was deleted in Cortex."""
        self.pending.append(RecordWrite(key, entity="", uuid=None))
        self.stamps.pop(key, None)
        self.unfinished.pop(key, None)


def _seen_key(past: PastDeploy) -> str:
    """The history's key of a deploy read from Cortex's records, not one the relay made."""
    return f"cortex:{past.sha}:{past.timestamp.isoformat()}"


class BridgeFault(CortexError):
    """An attempt the bridge itself failed (a bug, not Cortex's answer): retried with backoff
    like an outage, and dead-lettered by the same rules, so that one event can neither stop a
    worker nor be held forever."""


@dataclass
class Attempt:
    """The outcome of one delivery attempt: per-entity results, and the error that stopped it."""

    results: dict[str, Any] = field(default_factory=dict)
    error: CortexError | None = None
    writes: list[RecordWrite] = field(default_factory=list)  # to store with the outcome


class Withheld(CortexRejected):
    """A stored event the relay does not send: a field that names it holds a secret the
    worker holds (stored by a receiver that did not hold it). No retry changes that: it is
    dead-lettered at once, with the field named, never the value."""


class Deliverer:
    """Carries stored events to Cortex through the core, one entity at a time."""

    def __init__(
        self,
        store: Store,
        client: Cortex,
        config: Config,
        *,
        clock: Callable[[], datetime],
        spelled: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        # The secrets this process holds (bridge.redact.spellings): never sent to Cortex,
        # whoever stored the event (bridge.model.without_secrets).
        self.spelled = spelled
        self.client = client
        self.history = RelayHistory(store, client, clock=clock)
        self.policy = Policy.of(config.record)
        self.rollback = config.rollback.detect

    def deliver(
        self, payload: Mapping[str, Any], results: Mapping[str, Any], *, lease: Lease
    ) -> Attempt:
        """Deliver to every entity not yet done; stop at the first retryable Cortex error.

        Each write is fenced by the ``lease`` and each entity's result is stored (with the
        records it made) as soon as it is known, so a worker that lost the delivery stops
        (LeaseLost) and the next one carries on from there. The caller settles the attempt,
        storing its ``writes`` with the outcome.
        """
        # The outbox's payload as bridge.ingest writes it: the event as routed, its entities.
        event, entities = event_from_dict(payload["event"]), payload["entities"]
        attempt = Attempt(results=dict(results))
        if self.spelled:
            try:
                event, masked = without_secrets(event, entities, self.spelled)
            except InvalidDeploy as exc:
                attempt.error = Withheld(str(exc))
                return attempt
            if masked:
                log.warning(
                    "a secret this worker holds was masked before sending",
                    extra={"fields": list(masked)},
                )
        history = self.history
        history.delivery += 1  # nothing read for the last delivery is taken for this one
        history.pending = lease.writes
        for n, entity in enumerate(entities, start=1):
            before = attempt.results.get(entity)
            if isinstance(before, dict) and before.get("action") not in (None, "sending"):
                continue  # done: only a write sent and not answered is looked for again
            try:
                done = record_one(
                    event,
                    entity,
                    history=history,
                    cortex=self.client,
                    policy=self.policy,
                    rollback=self.rollback,
                    fence=functools.partial(lease.hold, attempt.results, sending=entity),
                    unclear=before is not None,
                    clock=history.clock,
                )
            except CortexError as exc:
                if not getattr(exc, "unclear", False):
                    _restore(attempt.results, entity, before)  # Cortex did nothing
                # One entity's rejection does not hold back the others; an outage does.
                attempt.error = attempt.error or exc
                if exc.retryable:
                    attempt.error = exc
                    break
                continue
            if done.stamp:
                history.stamps[done.key] = done.stamp
                if len(history.stamps) > KEPT_STAMPS:
                    del history.stamps[next(iter(history.stamps))]
            # The type where a record is: a skip or a delete leaves none to have one.
            typed = done.action not in ("skipped", "deleted")
            shown = (("uuid", done.uuid), ("type", done.type.value if typed else None))
            attempt.results[entity] = {
                "action": done.action,
                **{k: v for k, v in (*shown, ("reason", done.reason)) if v},
            }
            if n < len(entities):
                # The last entity's result is stored by the settle that follows at once.
                lease.hold(attempt.results)
        attempt.writes = lease.writes[:]
        return attempt


def _restore(results: dict[str, Any], entity: str, before: Any) -> None:
    if before is None:
        results.pop(entity, None)
    else:
        results[entity] = before


class Worker:
    """Claims and delivers events until told to stop."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        settings: DeliverySettings,
        *,
        owner: str,
        clock: Callable[[], datetime],
        wake: threading.Event | None = None,
        batch: int = 10,
        idle_poll: float = 1.0,
        on_settled: Callable[[Delivery, str, float], None] | None = None,
        budget: SharedBudget | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.secrets = tuple(secrets)  # never in a stored error or a log line
        self.settings = settings
        self.owner = owner
        self.clock = clock
        self.wake = wake or threading.Event()
        self.batch = batch
        self.idle_poll = idle_poll
        self.on_settled = on_settled
        self.budget = budget

    def run_once(self) -> int:
        """Claim what is due and deliver it; the number of events handled."""
        claimed = self.store.claim(
            owner=self.owner,
            now=self.clock(),
            lease_seconds=self.settings.lease_seconds,
            limit=self.batch,
        )
        for delivery in claimed:
            outcome = self.handle(delivery)
            if outcome != "lost" and self.on_settled is not None:
                age = (self.clock() - delivery.received_at).total_seconds()
                self.on_settled(delivery, outcome, age)
        if len(claimed) < self.batch:
            # No backlog (any more): Cortex's answers serve no later batch, and the searches
            # that served later deploys of a backlog are read again for doubles.
            history = self.deliverer.history
            history.batch += 1
            if history.dirty:
                history.sweep()
        return len(claimed)

    def handle(self, delivery: Delivery) -> str:
        """Deliver one claimed event and settle it: delivered, retrying, dead; or lost.

        ``delivery.attempts`` already counts this attempt (the store counts at claim), so an
        event whose attempts keep dying with their worker still runs out of attempts. "lost":
        another worker took the delivery over (this one stalled past its lease); it carries
        on from the progress stored, and this one settles nothing.
        """
        context = {"delivery": delivery.id, "source": delivery.source, "event": delivery.event_name}
        # Time and attempts count from a retry asked for by hand, when there was one.
        since = delivery.retried_at or delivery.received_at
        tries = delivery.attempts - delivery.retried_after
        # Not attempted at all when out of attempts (earlier ones died) or of time.
        age = (self.clock() - since).total_seconds()
        if 0 < self.settings.max_attempts < tries:
            given_up = f"gave up after {tries - 1} attempts that never finished"
            return self._dead(delivery, given_up, delivery.results, context)
        if age >= self.settings.dead_letter_after_seconds:
            # The last error as it was, not what an earlier dead-lettering added to it.
            last = _GAVE_UP.sub("", delivery.last_error or "") or "not delivered"
            given_up = f"{last} (gave up after {age:.0f}s)"
            return self._dead(delivery, given_up, delivery.results, context)
        lease = Lease(
            self.store,
            delivery,
            owner=self.owner,
            lease_seconds=self.settings.lease_seconds,
            clock=self.clock,
        )
        try:
            attempt = self.deliverer.deliver(delivery.payload, delivery.results, lease=lease)
        except LeaseLost as exc:
            log.warning(
                "lease lost: another worker carries on", extra={**context, "error": str(exc)}
            )
            return "lost"
        except StoreError:
            raise  # the database: the loop waits and tries again, the lease keeps the event
        except Exception as exc:
            # A fault of the bridge's own with this event (never Cortex's answer, which the
            # core raises as a CortexError): this attempt failed, shown with its reason and
            # retried with backoff until dead-lettered; the other events go on.
            log.exception("delivery failed in the bridge", extra=context)
            failed = BridgeFault(f"the bridge failed delivering it: {type(exc).__name__}: {exc}")
            attempt = Attempt(results=dict(delivery.results), error=failed, writes=lease.writes[:])
        now = self.clock()
        error = attempt.error
        if error is None:
            if not self.store.settle(
                delivery.id,
                DELIVERED,
                owner=self.owner,
                results=attempt.results,
                now=now,
                writes=attempt.writes,
            ):
                return self._lost(context)
            log.info("delivered", extra={**context, "results": attempt.results})
            return "delivered"
        shown = redact(str(error), self.secrets)
        age = (now - since).total_seconds()
        out_of_time = age >= self.settings.dead_letter_after_seconds
        out_of_tries = 0 < self.settings.max_attempts <= tries
        # A refused token (401) is the operator's to fix, not the event's fault: it waits for
        # the fix however long that takes (its time and tries count afresh from each
        # refusal), and then goes (docs/operations.md). A 403 may be one entity's alone.
        refused = isinstance(error, CortexUnauthorized) and error.status == 401
        if is_permanent(error) or ((out_of_time or out_of_tries) and not refused):
            return self._dead(delivery, shown, attempt.results, context, writes=attempt.writes)
        delay = next_delay(self.settings, tries - 1, error.retry_after)
        if not self.store.settle(
            delivery.id,
            RETRYING,
            owner=self.owner,
            results=attempt.results,
            now=now,
            error=shown,
            next_attempt_at=now + timedelta(seconds=delay),
            writes=attempt.writes,
            recount=refused,
        ):
            return self._lost(context)
        log.warning("will retry", extra={**context, "error": shown, "delay": delay})
        return "retrying"

    def _lost(self, context: dict[str, Any]) -> str:
        log.warning("lease lost before settling: another worker carries on", extra=context)
        return "lost"

    def _dead(
        self,
        delivery: Delivery,
        error: str,
        results: dict[str, Any],
        context: dict[str, Any],
        *,
        writes: Sequence[RecordWrite] = (),
    ) -> str:
        now = self.clock()
        error = redact(error, self.secrets)
        if not self.store.settle(
            delivery.id,
            DEAD,
            owner=self.owner,
            results=results,
            now=now,
            error=error,
            writes=writes,
        ):
            return self._lost(context)
        log.error("dead-lettered", extra={**context, "error": error})
        return "dead"

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; sleep when idle until woken or the poll interval.

        While the database is unavailable the loop tries again every poll, saying so in one
        line at the first failure and every STORE_DOWN_EVERY after (not a traceback a second),
        and once more when it is back.
        """
        down = 0  # loops failed in a row for the database
        while not stop.is_set():
            paused = self.budget.pause_left() if self.budget is not None else 0.0
            if paused > 0:
                # Cortex asked everyone to wait: an event claimed now would only sit leased,
                # or go straight back with an attempt spent.
                stop.wait(paused)
                continue
            self.wake.clear()
            try:
                handled = self.run_once()
            except StoreError as exc:  # the database is down: keep the worker alive
                down += 1
                if down % STORE_DOWN_EVERY == 1:
                    extra = {"error": str(exc), "failures": down}
                    log.error("database unavailable: delivering waits for it", extra=extra)
                handled = 0
                stop.wait(self.idle_poll)
            except Exception:  # a bug of the loop's own: keep the worker alive
                log.exception("delivery loop failed; trying again shortly")
                handled = 0
                stop.wait(self.idle_poll)
            else:
                if down:
                    log.warning("database available again: delivering", extra={"failures": down})
                    down = 0
            if handled == 0:
                self.wake.wait(self.idle_poll)


# What dead-lettering for time adds to the last error (taken off before it is added again).
_GAVE_UP = re.compile(r"( \(gave up after \d+s\))+$")

# While the database is down, the loop says so once in this many failed loops, not on each
# (each waits the poll twice: about two minutes at the default second).
STORE_DOWN_EVERY = 60


def start_in_thread(worker: Worker, stop: threading.Event) -> threading.Thread:
    """Run ``worker`` in a daemon thread."""
    thread = threading.Thread(target=worker.run, args=(stop,), name="bridge-worker", daemon=True)
    thread.start()
    return thread
