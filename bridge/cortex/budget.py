"""The fleet's budget of requests to Cortex, and the client that draws on it.

:class:`BudgetedCortex` wraps a Cortex client with the same interface: before each call it
takes a turn from the bucket, and a 429 it hears pauses the bucket. The client itself knows no
budget. :class:`SharedBudget` is the bucket every replica shares, kept in the database (the
Store's ``budget``); the relay's workers, ``sync`` and the periodic reconcile draw on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bridge.cortex.client import MAX_PAGES, Cortex, Guard
from bridge.errors import CortexRetryable

if TYPE_CHECKING:  # the Action's path imports no database code
    from bridge.store import Store

log = logging.getLogger("bridge.worker")
T = TypeVar("T")


class Bucket(Protocol):
    """A share of Cortex's request limit (:class:`SharedBudget`)."""

    def before_request(self) -> None:
        """Wait for this request's turn; raise CortexRetryable to give the attempt up."""

    def rate_limited(self, retry_after: float | None) -> None:
        """Cortex answered 429: hold back, for ``retry_after`` seconds when it said."""


class BudgetedCortex:
    """``client``, each call drawn from ``bucket`` first: the same interface as the client.

    A call is one request but for a listing longer than a page (1,000 deploys), which draws
    once. The turn is taken before the client runs a write's guard (the relay's lease check),
    so no wait sits between the check and the request.
    """

    def __init__(self, client: Cortex, bucket: Bucket) -> None:
        self.client = client
        self.bucket = bucket
        self.base_url = client.base_url

    def __repr__(self) -> str:
        return f"BudgetedCortex({self.client!r})"

    def _drawn(self, call: Callable[[], T]) -> T:
        self.bucket.before_request()
        try:
            return call()
        except CortexRetryable as exc:
            if exc.status == 429:
                self.bucket.rate_limited(exc.retry_after)
            raise

    def create_deploy(
        self, entity: str, body: dict[str, Any], *, guard: Guard | None = None
    ) -> dict[str, Any]:
        """As the client's, drawn from the budget."""
        return self._drawn(lambda: self.client.create_deploy(entity, body, guard=guard))

    def update_deploy(
        self, entity: str, uuid: str, body: dict[str, Any], *, guard: Guard | None = None
    ) -> dict[str, Any]:
        """As the client's, drawn from the budget."""
        return self._drawn(lambda: self.client.update_deploy(entity, uuid, body, guard=guard))

    def delete_deploy(self, entity: str, uuid: str, *, guard: Guard | None = None) -> None:
        """As the client's, drawn from the budget."""
        self._drawn(lambda: self.client.delete_deploy(entity, uuid, guard=guard))

    def check_access(self) -> None:
        """As the client's, drawn from the budget."""
        self._drawn(self.client.check_access)

    def iter_deploys(
        self, entity: str, *, max_pages: int = MAX_PAGES, partial: bool = False
    ) -> Iterator[dict[str, Any]]:
        """As the client's, drawn from the budget (read whole, so that a 429 is heard)."""
        return iter(
            self._drawn(
                lambda: list(self.client.iter_deploys(entity, max_pages=max_pages, partial=partial))
            )
        )

    def search_deploys(
        self, entity: str, *, environment: str | None, after: datetime, before: datetime
    ) -> Iterator[dict[str, Any]]:
        """As the client's, drawn from the budget (read whole, so that a 429 is heard)."""
        found = self._drawn(
            lambda: list(
                self.client.search_deploys(
                    entity, environment=environment, after=after, before=before
                )
            )
        )
        return iter(found)

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    def __enter__(self) -> BudgetedCortex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
                why = (
                    "cortex asked every client to wait (429 Retry-After)"
                    if draw.paused_until is not None
                    else f"over the shared budget of {self.per_minute} cortex requests/min "
                    "(cortex.requests_per_minute)"
                )
                raise CortexRetryable(
                    f"{why}: next turn in {draw.wait_seconds:.1f}s",
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
        from bridge.store import StoreError
        from bridge.store.bucket import DEFAULT_PAUSE_SECONDS

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
