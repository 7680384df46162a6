"""The relay's face of the core: one claimed event to Cortex, entity by entity, under a lease.

A delivery takes effect once, however long it runs. The worker holding it renews its lease
after each entity and before each write to Cortex, in the one statement that also checks it
still holds it (the fence, :class:`Lease`); it stores each entity's result as soon as it is
known, and marks a write as sending before it leaves. A worker that lost its lease (it stalled
past it, and another worker took the event over) stops before its next write; the next owner
resumes where it stopped, and looks for the record of a write whose answer was never stored
before it makes another. What to do for each entity is the core's decision
(bridge.record.core.record_one), with the store as its history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.config import Config
from bridge.cortex import CortexClient
from bridge.cortex.client import PAGE_SIZE
from bridge.errors import BridgeError, CortexError, CortexRejected, CortexUnauthorized
from bridge.model import DeployEvent, Status
from bridge.record.core import LOOKUP_WINDOW, Done, Policy, from_payload, record_one, remove_doubles
from bridge.record.listing import Known, Listing
from bridge.rollback import PastDeploy, past_deploys
from bridge.store import Delivery, Lookup, RecordWrite, Store

log = logging.getLogger("bridge.worker")


class LeaseLost(BridgeError):
    """Another worker holds the delivery now: this one must not write to Cortex again."""


# The longest a fence may take before its renewal is not trusted, as a share of the lease: a
# worker stopped (SIGSTOP, a long GC, a VM pause) inside the fence may have woken after its
# lease ran out and another worker took the delivery over.
TRUSTED_SHARE_OF_LEASE = 0.5
# Renewals tried in a row before a worker whose database answers that slowly gives up the
# delivery (it is taken up again once the lease has run out).
RENEWALS = 3


class Lease:
    """A worker's hold on one claimed delivery: renewed, and checked before each Cortex write."""

    def __init__(
        self,
        store: Store,
        delivery: Delivery,
        *,
        owner: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.delivery = delivery
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.monotonic = monotonic

    def hold(self, results: Mapping[str, Any], writes: Sequence[RecordWrite] = ()) -> None:
        """Renew the lease and store ``results`` (and the records ``writes`` made with them);
        raise LeaseLost when the lease is no longer held."""
        for _ in range(RENEWALS):
            started = self.monotonic()
            held = self.store.hold(
                self.delivery.id,
                owner=self.owner,
                attempt=self.delivery.attempts,
                results=results,
                now=self.clock(),
                lease_seconds=self.lease_seconds,
                writes=writes,
            )
            writes = ()  # kept by the first renewal
            if not held:
                raise LeaseLost(f"delivery {self.delivery.id}: lease lost to another worker")
            if self.monotonic() - started < self.lease_seconds * TRUSTED_SHARE_OF_LEASE:
                return
            # Renewed, but so long ago that the renewal may have expired already: again.
        raise LeaseLost(f"delivery {self.delivery.id}: the lease cannot be renewed in time")


# How long a search of Cortex for an entity and environment serves the deploys of a backlog
# that follow it: a record another face makes meanwhile is found by the check after a create
# where faces are known to share the entity, else by the next search's removal of doubles or
# the sweep when the backlog ends.
LISTING_SECONDS = 30.0
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAY = timedelta(days=1)

# What the outbox keeps for an entity whose write was sent but not answered yet: the next
# attempt (this worker's, or another's after a takeover) looks for the record first.
SENDING = {"action": "sending"}


def finished(result: Any) -> bool:
    """True when an entity's result says it needs nothing more."""
    return isinstance(result, dict) and result.get("action") not in (None, SENDING["action"])


class StoreHistory:
    """The relay's history for the core: records and deploy history in the store, and what
    Cortex showed of each entity and environment lately.

    What the core learns (a record made, updated, deleted) is not written at once but kept
    in ``pending`` and stored with the delivery's progress, in the same transaction (see
    :class:`Deliverer`): an entity's result and its record are kept together or not at all.

    A deploy whose record the relay did not make itself is looked for in Cortex before one is
    created (``seen``): one search per entity and environment serves the batch of deliveries
    claimed together, and through a backlog (full batches, one after the other) the batches
    that follow within LISTING_SECONDS, for deploys within LOOKUP_WINDOW of the first. An entity
    and environment where that search showed records another face made (the Action, ``send``,
    ``sync``) is ``shared``: there, the core checks after each create.

    The first time the relay meets an entity+environment, Cortex's own record of it is read
    once for the rollback history (a new relay, a lost database, deploys made by other tools
    before it): without this, redeploying an older sha there would be a DEPLOY.
    """

    def __init__(
        self,
        store: Store,
        cortex: CortexClient,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.cortex = cortex
        self.clock = clock
        self.monotonic = monotonic
        self.pending: list[RecordWrite] = []
        self._looked: dict[str, Lookup] = {}  # by key: what was read for the entity in hand
        # By (entity, environment): the last search, the earliest event time it serves, when.
        self._seen: dict[tuple[str, str | None], tuple[Listing, datetime, float, int]] = {}
        self._delivery = 0  # counts deliveries: a search kept from an earlier one is reused
        self._shared: set[tuple[str, str | None]] = set()
        self._reused: set[tuple[str, str | None]] = set()  # a search served later deploys
        self._dirty: set[tuple[str, str | None]] = set()  # ... and records were made on it

    def start(self) -> None:
        """A new entity: forget what was read for the last one."""
        self._looked.clear()

    def batch_done(self, *, backlog: bool) -> None:
        """A batch of claimed deliveries is done: Cortex's answers serve the next batch only
        through a backlog (this batch was full), never one deploy alone the next one. When
        they stop serving, each entity+environment where a search served later deploys and
        records were made on it is read once more, and a double another face made meanwhile
        is removed (the sweep)."""
        if backlog:
            return
        dirty, self._dirty = self._dirty, set()
        kept, self._seen = self._seen, {}
        self._reused.clear()
        for pair in sorted(dirty, key=str):
            entity, environment = pair
            if pair not in kept:
                continue
            since = kept[pair][1]
            try:
                listing = self._search(entity, environment, max(since, self.clock() - DAY))
                remove_doubles(listing, entity, self.cortex)
            except CortexError as exc:  # the next search of the pair removes them instead
                log.warning("sweep for doubles failed", extra={"entity": entity, "error": str(exc)})

    def begin(self) -> None:
        """A new delivery."""
        self._delivery += 1
        self.pending.clear()

    def take(self) -> list[RecordWrite]:
        """The writes not yet stored, handed over to be stored with the progress."""
        taken, self.pending = self.pending, []
        return taken

    def known(self, entity: str, key: str) -> Known | None:
        """The record the relay made for this deploy."""
        looked = self._looked.get(key)
        record = looked.record if looked is not None else self.store.records.get(key)
        return None if record is None else Known(record.cortex_uuid, record.state)

    def seen(self, entity: str, event: DeployEvent, *, fresh: bool) -> Listing:
        """Cortex's records of the entity and environment around the event: the last search
        when it is recent and covers the event, else a new one."""
        pair = (entity, event.environment)
        kept = self._seen.get(pair)
        if kept is not None and not fresh:
            listing, since, at, read_for = kept
            covered = since <= event.timestamp <= self.clock() + LOOKUP_WINDOW
            if covered and self.monotonic() - at <= LISTING_SECONDS:
                if read_for != self._delivery:
                    self._reused.add(pair)
                return listing
        listing = self._search(entity, event.environment, event.timestamp)
        since = event.timestamp - LOOKUP_WINDOW
        self._seen[pair] = (listing, since, self.monotonic(), self._delivery)
        carried = listing.carried_keys()
        if carried and carried - self.store.records.made(carried):
            self._shared.add(pair)
        return listing

    def _search(self, entity: str, environment: str | None, since: datetime) -> Listing:
        """One search: the pair's records from LOOKUP_WINDOW before ``since`` to just after
        now, so that it covers the later deploys of a backlog too."""
        return Listing(
            self.cortex.search_deploys(
                entity,
                environment=environment,
                after=since - 2 * LOOKUP_WINDOW,
                before=max(since, self.clock()) + 2 * LOOKUP_WINDOW,
            )
        )

    def shared(self, entity: str, environment: str | None) -> bool:
        """True once Cortex showed records another face made for this entity+environment."""
        return (entity, environment) in self._shared

    def past(self, entity: str, environment: str | None, key: str) -> list[PastDeploy]:
        """The store's history, seeded from Cortex's newest 1,000 deploys once (per entity and
        environment, whatever they showed)."""
        looked = self.store.records.lookup(key, entity=entity, environment=environment)
        if looked.seeded:
            self._looked[key] = looked
            return looked.history
        try:
            deploys = list(self.cortex.iter_deploys(entity, max_pages=1))
        except CortexUnauthorized:
            raise  # the token: kept for later, like any request it refuses
        except CortexRejected:
            return []  # the create that follows says what is wrong with the entity
        found = past_deploys(deploys, environment, skip_key=key)
        keyed = [(f"cortex:{past.sha}:{past.timestamp.isoformat()}", past) for past in found]
        listing = Listing(deploys)
        made = [(k, listing.known(k)) for k in sorted(listing.carried_keys())]
        if made:
            self._shared.add((entity, environment))
        if len(deploys) < PAGE_SIZE:
            # All the entity's deploys: they serve as the first look in Cortex too.
            here = Listing(d for d in deploys if d.get("environment") == environment)
            self._seen[(entity, environment)] = (here, EPOCH, self.monotonic(), self._delivery)
        self.store.records.seed_history(
            entity=entity,
            environment=environment,
            deploys=keyed,
            made=[(k, m.uuid, m.state) for k, m in made if m is not None],
            now=self.clock(),
        )
        return found

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep the record; a deploy Cortex holds as succeeded enters the history with it."""
        deployed = None
        if state == Status.SUCCEEDED.value and event.sha:
            deployed = (event.environment, PastDeploy(event.sha, event.timestamp))
        self.pending.append(RecordWrite(key, entity, uuid, state, deployed))
        pair = (entity, event.environment)
        kept = self._seen.get(pair)
        if kept is not None and key not in kept[0].carried_keys():
            kept[0].add(
                {"uuid": uuid, "customData": {"status": state, "bridge": {"idempotencyKey": key}}}
            )
            if pair in self._reused:  # made on a search read for earlier deploys: sweep it
                self._dirty.add(pair)

    def forget(self, key: str) -> None:
        """The record was deleted in Cortex."""
        self.pending.append(RecordWrite(key, entity="", uuid=None))


@dataclass
class Attempt:
    """The outcome of one delivery attempt: per-entity results, and the error that stopped it."""

    results: dict[str, Any] = field(default_factory=dict)
    error: CortexError | None = None
    writes: list[RecordWrite] = field(default_factory=list)  # to store with the outcome


class Deliverer:
    """Carries stored events to Cortex through the core, one entity at a time."""

    def __init__(
        self, store: Store, client: CortexClient, config: Config, *, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.client = client
        self.config = config
        self.history = StoreHistory(store, client, clock=clock)
        self.policy = Policy.of(config.record)

    def batch_done(self, *, backlog: bool) -> None:
        """The deliveries claimed together are done (``backlog``: the batch was full)."""
        self.history.batch_done(backlog=backlog)

    def deliver(
        self, payload: Mapping[str, Any], results: Mapping[str, Any], *, lease: Lease
    ) -> Attempt:
        """Deliver to every entity not yet done; stop at the first retryable Cortex error.

        Each write is fenced by the ``lease`` and each entity's result is stored (with the
        records it made) as soon as it is known, so a worker that lost the delivery stops
        (LeaseLost) and the next one carries on from there. The caller settles the attempt,
        storing its ``writes`` with the outcome.
        """
        event, entities = from_payload(payload)
        attempt = Attempt(results=dict(results))
        self.history.begin()  # nothing is carried over from another delivery
        for n, entity in enumerate(entities, start=1):
            before = attempt.results.get(entity)
            if finished(before):
                continue
            self.history.start()
            try:
                done = self._one(event, entity, attempt.results, lease, unclear=before is not None)
            except CortexError as exc:
                if not getattr(exc, "unclear", False):
                    _restore(attempt.results, entity, before)  # Cortex did nothing
                # One entity's rejection does not hold back the others; an outage does.
                attempt.error = attempt.error or exc
                if exc.retryable:
                    attempt.error = exc
                    break
                continue
            attempt.results[entity] = done.as_result()
            if n < len(entities):
                # The last entity's result is stored by the settle that follows at once.
                lease.hold(attempt.results, self.history.take())
        attempt.writes = self.history.take()
        return attempt

    def _one(
        self,
        event: DeployEvent,
        entity: str,
        results: dict[str, Any],
        lease: Lease,
        *,
        unclear: bool,
    ) -> Done:
        def fence() -> None:
            results[entity] = SENDING
            lease.hold(results, self.history.take())

        return record_one(
            event,
            entity,
            history=self.history,
            cortex=self.client,
            policy=self.policy,
            rollback=self.config.rollback.detect,
            fence=fence,
            unclear=unclear,
        )


def _restore(results: dict[str, Any], entity: str, before: Any) -> None:
    if before is None:
        results.pop(entity, None)
    else:
        results[entity] = before
