"""The delivery worker: claim due events from the outbox, deliver them, settle each one.

Retries belong here, not in the HTTP client: a failed attempt is rescheduled with backoff
(Cortex's Retry-After wins), so a worker is never stuck sleeping on one event, and a killed
worker's events are taken up by another once their lease expires.

A delivery takes effect once, however long it runs: each attempt runs under a lease that is
renewed and checked before each write to Cortex (bridge/deliverer.py); a worker that lost it
settles nothing, and the next owner resumes from the progress stored.

Every replica's workers also share one request budget (:class:`SharedBudget`, kept in the
database), drawn from before each request to Cortex, so that the fleet as a whole stays under
Cortex's limit however many replicas run, and a 429 seen by one pauses them all.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bridge.config import DeliverySettings
from bridge.deliverer import Deliverer, Lease, LeaseLost
from bridge.errors import CortexError, CortexRejected, CortexRetryable, CortexUnauthorized
from bridge.redact import redact
from bridge.retry import RetryPolicy
from bridge.store import Delivery, Store, StoreError
from bridge.store.bucket import DEFAULT_PAUSE_SECONDS
from bridge.store.records import RecordWrite

log = logging.getLogger("bridge.worker")


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
    """A rejection that no retry will change (an unknown entity, an invalid body).

    A refused token is not: the operator must fix it, so such events are kept and tried
    again with backoff, and fixing the token drains the queue with nothing lost.
    """
    return isinstance(error, CortexRejected) and not isinstance(error, CortexUnauthorized)


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
        self.deliverer.batch_done(backlog=len(claimed) >= self.batch)
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
                delivery.id,
                owner=self.owner,
                results=attempt.results,
                now=now,
                writes=attempt.writes,
            ):
                return self._lost(context)
            log.info("delivered", extra={**context, "results": attempt.results})
            return self._settled(delivery, "delivered", now)
        shown = redact(str(error), self.secrets)
        age = (now - delivery.received_at).total_seconds()
        out_of_time = age >= self.settings.dead_letter_after_seconds
        out_of_tries = 0 < self.settings.max_attempts <= delivery.attempts
        if is_permanent(error) or out_of_time or out_of_tries:
            return self._dead(delivery, shown, attempt.results, context, writes=attempt.writes)
        delay = next_delay(self.settings, delivery.attempts - 1, error.retry_after)
        if not self.store.reschedule(
            delivery.id,
            owner=self.owner,
            error=shown,
            next_attempt_at=now + timedelta(seconds=delay),
            results=attempt.results,
            now=now,
            writes=attempt.writes,
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
        if not self.store.dead_letter(
            delivery.id, owner=self.owner, error=error, results=results, now=now, writes=writes
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
