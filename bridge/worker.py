"""The delivery worker: claim due events from the outbox, deliver them, settle each one.

Retries belong here, not in the HTTP client: a failed attempt is rescheduled with backoff
(Cortex's Retry-After wins), so a worker is never stuck sleeping on one event, and a killed
worker's events are taken up by another once their lease expires.

A delivery takes effect once, however long it runs: the worker renews its lease after each
entity and before each write to Cortex (the fence, :class:`Lease`), and stores each entity's
result as it is known, marking a write as sending before it leaves; a worker that lost its
lease stops before its next write, and the next owner resumes where it stopped, looking for
the record of a write whose answer was never stored before it makes another.

Every replica's workers also share one request budget (:class:`SharedBudget`, kept in the
database), drawn from before each request to Cortex, so that the fleet as a whole stays under
Cortex's limit however many replicas run, and a 429 seen by one pauses them all.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.config import Config, DeliverySettings
from bridge.cortex import CortexClient
from bridge.cortex.retry import RetryPolicy
from bridge.delivery import Done, Known, Policy, from_payload, made_by_bridge, record_one
from bridge.errors import BridgeError, CortexError, CortexRejected, CortexRetryable
from bridge.model import DeployEvent, Status
from bridge.redact import redact
from bridge.rollback import PastDeploy, past_deploys
from bridge.store import Delivery, Store, StoreError
from bridge.store.bucket import DEFAULT_PAUSE_SECONDS

log = logging.getLogger("bridge.worker")

# Cortex answering 401/403 means the operator must fix the token; keep such events and try
# again with backoff, so fixing the token drains the queue with nothing lost.
OPERATOR_FIXABLE = (401, 403)


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
        max_retry_after=settings.backoff_max_seconds,
    )
    return policy.delay(attempts + 1, retry_after, rng=rng)


def is_permanent(error: CortexError) -> bool:
    """A rejection that no retry will change (an unknown entity, an invalid body)."""
    return isinstance(error, CortexRejected) and error.status not in OPERATOR_FIXABLE


class SharedBudget:
    """The fleet's budget of requests to Cortex, in the database; one per process."""

    def __init__(
        self,
        store: Store,
        per_minute: int,
        *,
        clock: Callable[[], datetime],
        max_wait_seconds: float,
        max_pause_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self.clock = clock
        self.max_wait = max_wait_seconds
        self.max_pause = max_pause_seconds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until: datetime | None = None  # the latest pause this process heard of

    def before_request(self) -> None:
        """Wait for this request's turn in the fleet; raise CortexRetryable if that is far off.

        Giving the attempt up, rather than sleeping through a long pause, hands the event back
        before its lease runs out, so another worker never takes it over while this one waits.
        """
        while True:
            draw = self.store.budget.draw(now=self.clock(), per_minute=self.per_minute)
            self._heard(draw.paused_until)
            if draw.wait_seconds <= 0:
                return
            if draw.wait_seconds > self.max_wait:
                raise CortexRetryable(
                    f"over the shared budget of {self.per_minute} cortex requests/min "
                    f"(cortex.requests_per_minute): next turn in {draw.wait_seconds:.1f}s",
                    retry_after=draw.wait_seconds,
                )
            self._sleep(draw.wait_seconds)
            # A 429 elsewhere may have paused the fleet while this one waited its turn: then
            # queue again behind the pause instead of sending into it.
            paused_until = self.store.budget.paused_until()
            self._heard(paused_until)
            if paused_until is None or paused_until <= self.clock():
                return

    def rate_limited(self, retry_after: float | None) -> None:
        """Cortex answered 429: pause every replica until its Retry-After has passed."""
        seconds = DEFAULT_PAUSE_SECONDS if retry_after is None else retry_after
        until = self.clock() + timedelta(seconds=min(max(seconds, 0.0), self.max_pause))
        self._heard(until)
        try:
            self.store.budget.pause(until=until)
        except StoreError as exc:
            # This process still pauses, and the 429 is still handled as a retry; only the
            # other replicas go on until Cortex tells them too.
            log.warning("could not share the pause", extra={"error": str(exc)})
            return
        log.warning("cortex rate limit: every worker pauses", extra={"until": until.isoformat()})

    def pause_left(self) -> float:
        """Seconds until the latest pause this process knows of ends; 0 when there is none."""
        with self._lock:
            until = self._paused_until
        return 0.0 if until is None else max((until - self.clock()).total_seconds(), 0.0)

    def _heard(self, until: datetime | None) -> None:
        with self._lock:
            if until is not None and (self._paused_until is None or until > self._paused_until):
                self._paused_until = until


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

    def hold(self, results: Mapping[str, Any]) -> None:
        """Renew the lease and store ``results``; raise LeaseLost when it is no longer held."""
        for _ in range(RENEWALS):
            started = self.monotonic()
            held = self.store.hold(
                self.delivery.id,
                owner=self.owner,
                attempt=self.delivery.attempts,
                results=results,
                now=self.clock(),
                lease_seconds=self.lease_seconds,
            )
            if not held:
                raise LeaseLost(f"delivery {self.delivery.id}: lease lost to another worker")
            if self.monotonic() - started < self.lease_seconds * TRUSTED_SHARE_OF_LEASE:
                return
            # Renewed, but so long ago that the renewal may have expired already: again.
        raise LeaseLost(f"delivery {self.delivery.id}: the lease cannot be renewed in time")


# What the outbox keeps for an entity whose write was sent but not answered yet: the next
# attempt (this worker's, or another's after a takeover) looks for the record first.
SENDING = {"action": "sending"}


def finished(result: Any) -> bool:
    """True when an entity's result says it needs nothing more."""
    return isinstance(result, dict) and result.get("action") not in (None, SENDING["action"])


class StoreHistory:
    """The relay's history for the core: records and deploy history in the store.

    The first time the relay meets an entity+environment with no history, Cortex's own
    record of it is read once and kept (a new relay, a lost database, deploys made by other
    tools before it): without this, redeploying an older sha there would be a DEPLOY. The
    records another path (the Action, ``send``) made are kept then too, so that the relay
    updates or skips them rather than making a second.
    """

    def __init__(self, store: Store, cortex: CortexClient, *, clock: Callable[[], datetime]):
        self.store = store
        self.cortex = cortex
        self.clock = clock

    def known(self, entity: str, key: str) -> Known | None:
        """The record the relay made for this deploy."""
        record = self.store.records.get(key)
        return None if record is None else Known(record.cortex_uuid, record.state)

    def past(self, entity: str, environment: str | None, key: str) -> list[PastDeploy]:
        """The store's history, seeded from Cortex's newest 1,000 deploys once (per entity and
        environment, whatever they showed)."""
        found = self.store.records.history(entity, environment)
        if found or self.store.records.history_seeded(entity, environment):
            return found
        try:
            deploys = list(self.cortex.iter_deploys(entity, max_pages=1))
        except CortexRejected as exc:
            if exc.status in (401, 403):
                raise  # the token: kept for later, like any request it refuses
            return []  # the create that follows says what is wrong with the entity
        found = past_deploys(deploys, environment, skip_key=key)
        keyed = [(f"cortex:{past.sha}:{past.timestamp.isoformat()}", past) for past in found]
        self.store.records.seed_history(
            entity=entity,
            environment=environment,
            deploys=keyed,
            made=[(k, made.uuid, made.state) for k, made in made_by_bridge(deploys).items()],
            now=self.clock(),
        )
        return found

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep the record; a deploy Cortex holds as succeeded enters the history with it."""
        deployed = None
        if state == Status.SUCCEEDED.value and event.sha:
            deployed = (event.environment, PastDeploy(event.sha, event.timestamp))
        self.store.records.save(
            key, entity=entity, cortex_uuid=uuid, state=state, now=self.clock(), deployed=deployed
        )

    def forget(self, key: str) -> None:
        """The record was deleted in Cortex."""
        self.store.records.delete(key)


@dataclass
class Attempt:
    """The outcome of one delivery attempt: per-entity results, and the error that stopped it."""

    results: dict[str, Any] = field(default_factory=dict)
    error: CortexError | None = None


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

    def deliver(
        self, payload: Mapping[str, Any], results: Mapping[str, Any], *, lease: Lease | None = None
    ) -> Attempt:
        """Deliver to every entity not yet done; stop at the first retryable Cortex error.

        With a ``lease``, each write is fenced by it and each entity's result is stored as soon
        as it is known, so a worker that lost the delivery stops (LeaseLost) and the next one
        carries on from there.
        """
        event, entities = from_payload(payload)
        attempt = Attempt(results=dict(results))
        for n, entity in enumerate(entities, start=1):
            before = attempt.results.get(entity)
            if finished(before):
                continue
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
            if lease is not None and n < len(entities):
                # The last entity's result is stored by the settle that follows at once.
                lease.hold(attempt.results)
        return attempt

    def _one(
        self,
        event: DeployEvent,
        entity: str,
        results: dict[str, Any],
        lease: Lease | None,
        *,
        unclear: bool,
    ) -> Done:
        def fence() -> None:
            results[entity] = SENDING
            if lease is not None:
                lease.hold(results)

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
            self.handle(delivery)
        return len(claimed)

    def handle(self, delivery: Delivery) -> str:
        """Deliver one claimed event and settle it: delivered, retrying, dead; or lost.

        ``delivery.attempts`` already counts this attempt (the store counts at claim), so an
        event whose attempts keep dying with their worker still runs out of attempts. "lost":
        another worker took the delivery over (this one stalled past its lease); it carries
        on from the progress stored, and this one settles nothing.
        """
        context = {"delivery": delivery.id, "source": delivery.source, "event": delivery.event_name}
        given_up = self._give_up_before(delivery, self.clock())
        if given_up:
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
        now = self.clock()
        error = attempt.error
        if error is None:
            if not self.store.complete(
                delivery.id, owner=self.owner, results=attempt.results, now=now
            ):
                return self._lost(context)
            log.info("delivered", extra={**context, "results": attempt.results})
            return self._settled(delivery, "delivered", now)
        shown = redact(str(error), self.secrets)
        age = (now - delivery.received_at).total_seconds()
        out_of_time = age >= self.settings.dead_letter_after_seconds
        out_of_tries = 0 < self.settings.max_attempts <= delivery.attempts
        if is_permanent(error) or out_of_time or out_of_tries:
            return self._dead(delivery, shown, attempt.results, context)
        delay = next_delay(self.settings, delivery.attempts - 1, error.retry_after)
        if not self.store.reschedule(
            delivery.id,
            owner=self.owner,
            error=shown,
            next_attempt_at=now + timedelta(seconds=delay),
            results=attempt.results,
            now=now,
        ):
            return self._lost(context)
        log.warning("will retry", extra={**context, "error": shown, "delay": delay})
        return self._settled(delivery, "retrying", now)

    def _lost(self, context: dict[str, Any]) -> str:
        log.warning("lease lost before settling: another worker carries on", extra=context)
        return "lost"

    def _give_up_before(self, delivery: Delivery, now: datetime) -> str | None:
        """Why not to attempt at all: out of attempts (earlier ones died), or of time."""
        limit = self.settings.max_attempts
        if 0 < limit < delivery.attempts:
            return f"gave up after {delivery.attempts - 1} attempts that never finished"
        age = (now - delivery.received_at).total_seconds()
        if age >= self.settings.dead_letter_after_seconds:
            return f"{delivery.last_error or 'not delivered'} (gave up after {age:.0f}s)"
        return None

    def _dead(
        self, delivery: Delivery, error: str, results: dict[str, Any], context: dict[str, Any]
    ) -> str:
        now = self.clock()
        error = redact(error, self.secrets)
        if not self.store.dead_letter(
            delivery.id, owner=self.owner, error=error, results=results, now=now
        ):
            return self._lost(context)
        log.error("dead-lettered", extra={**context, "error": error})
        return self._settled(delivery, "dead", now)

    def _settled(self, delivery: Delivery, outcome: str, now: datetime) -> str:
        if self.on_settled is not None:
            self.on_settled(delivery, outcome, (now - delivery.received_at).total_seconds())
        return outcome

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; sleep when idle until woken or the poll interval."""
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
            except Exception:  # the database may be down: keep the worker alive
                log.exception("delivery loop failed; trying again shortly")
                handled = 0
                stop.wait(self.idle_poll)
            if handled == 0:
                self.wake.wait(self.idle_poll)


def start_in_thread(worker: Worker, stop: threading.Event) -> threading.Thread:
    """Run ``worker`` in a daemon thread."""
    thread = threading.Thread(target=worker.run, args=(stop,), name="bridge-worker", daemon=True)
    thread.start()
    return thread
