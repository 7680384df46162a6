"""The delivery worker: claim due events from the outbox, deliver them, settle each one.

Retries belong here, not in the HTTP client: a failed attempt is rescheduled with backoff
(Cortex's Retry-After wins), so a worker is never stuck sleeping on one event, and a killed
worker's events are taken up by another once their lease expires.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bridge.config import DeliverySettings
from bridge.delivery import Deliverer
from bridge.errors import CortexError, CortexRejected
from bridge.store import Delivery, Store

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
    if retry_after is not None:
        return min(max(retry_after, 0.0), settings.backoff_max_seconds)
    ceiling = min(
        settings.backoff_max_seconds, settings.backoff_base_seconds * (2 ** min(attempts, 30))
    )
    return (rng or random).uniform(ceiling / 2, ceiling)


def is_permanent(error: CortexError) -> bool:
    """A rejection that no retry will change (an unknown entity, an invalid body)."""
    return isinstance(error, CortexRejected) and error.status not in OPERATOR_FIXABLE


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
    ) -> None:
        self.store = store
        self.deliverer = deliverer
        self.settings = settings
        self.owner = owner
        self.clock = clock
        self.wake = wake or threading.Event()
        self.batch = batch
        self.idle_poll = idle_poll
        self.on_settled = on_settled

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
        """Deliver one claimed event and settle it: delivered, retrying or dead.

        ``delivery.attempts`` already counts this attempt (the store counts at claim), so an
        event whose attempts keep dying with their worker still runs out of attempts.
        """
        context = {"delivery": delivery.id, "source": delivery.source, "event": delivery.event_name}
        given_up = self._give_up_before(delivery, self.clock())
        if given_up:
            return self._dead(delivery, given_up, delivery.results, context)
        attempt = self.deliverer.deliver(delivery.payload, delivery.results)
        now = self.clock()
        error = attempt.error
        if error is None:
            self.store.complete(delivery.id, owner=self.owner, results=attempt.results, now=now)
            log.info("delivered", extra={**context, "results": attempt.results})
            return self._settled(delivery, "delivered", now)
        age = (now - delivery.received_at).total_seconds()
        out_of_time = age >= self.settings.dead_letter_after_seconds
        out_of_tries = 0 < self.settings.max_attempts <= delivery.attempts
        if is_permanent(error) or out_of_time or out_of_tries:
            return self._dead(delivery, str(error), attempt.results, context)
        delay = next_delay(self.settings, delivery.attempts - 1, error.retry_after)
        self.store.reschedule(
            delivery.id,
            owner=self.owner,
            error=str(error),
            next_attempt_at=now + timedelta(seconds=delay),
            results=attempt.results,
            now=now,
        )
        log.warning("will retry", extra={**context, "error": str(error), "delay": delay})
        return self._settled(delivery, "retrying", now)

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
        self.store.dead_letter(delivery.id, owner=self.owner, error=error, results=results, now=now)
        log.error("dead-lettered", extra={**context, "error": error})
        return self._settled(delivery, "dead", now)

    def _settled(self, delivery: Delivery, outcome: str, now: datetime) -> str:
        if self.on_settled is not None:
            self.on_settled(delivery, outcome, (now - delivery.received_at).total_seconds())
        return outcome

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; sleep when idle until woken or the poll interval."""
        while not stop.is_set():
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
