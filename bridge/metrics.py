"""Prometheus metrics, correct under several gunicorn worker processes.

Counters and histograms use prometheus_client's multiprocess mode when
``PROMETHEUS_MULTIPROC_DIR`` is set (``serve`` sets it), and the receiver's page sums every
process's files; a ``worker`` is one process and reports its own counters from memory
(:func:`worker_exposition`). Queue gauges are read from the database at scrape time, so
every process reports the same truth. ``bridge_relay_info{role}`` says which kind of process
a page came from, so rules can tell receivers from workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from bridge import __version__
from bridge.sources import PARSERS
from bridge.store import STATUSES, Store

# Every label value comes from a closed list, so that no sender can make series at will: a
# series costs the server memory for good (and a file per process in multiprocess mode), and
# the X-GitHub-Event header of an unsigned request is anyone's to choose. Anything else counts
# as OTHER.
OTHER = "other"
# The event label when no event name was read (a delivery refused before its signature).
NO_EVENT = "-"
WEBHOOK_SOURCES = frozenset(source for source, _ in PARSERS)
# The events the sources' table knows: the ones the bridge records, and so the ones a
# dashboard asks about. An event the bridge does not know (push, issues, ...) is OTHER.
WEBHOOK_EVENTS = frozenset(PARSERS) | {(source, NO_EVENT) for source in WEBHOOK_SOURCES}
WEBHOOK_ANSWERS = frozenset({"queued", "ignored", "duplicate", "rejected", "unauthorized", "busy"})
OUTCOMES = frozenset({"delivered", "retrying", "dead"})


def closed(value: str, allowed: Collection[str]) -> str:
    """``value`` when it is one of ``allowed``, else OTHER."""
    return value if value in allowed else OTHER


WEBHOOKS = Counter(
    "bridge_webhooks_total",
    "Webhook deliveries received, by answer.",
    ["source", "event", "answer"],
)
DELIVERIES = Counter(
    "bridge_deliveries_total", "Delivery attempts settled, by outcome.", ["outcome"]
)
DELIVERY_AGE = Histogram(
    "bridge_delivery_seconds",
    "Seconds from webhook receipt to a delivery being settled.",
    ["outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)


# The child of each (closed) label set counted so far: looking up a labelled child costs a
# lock and a tuple each time, a third of what answering an ignored event costs on top of
# Flask's own work. Its keys are closed values, so it holds at most every series there is; a
# key whose labels are closed already closes to itself, so the receiver looks its own labels
# up here first and counts through :func:`count_webhook` only when they are new or not closed.
WEBHOOK_COUNTERS: dict[tuple[str, str, str], Any] = {}


def count_webhook(source: str, event: str, answer: str) -> None:
    """Count one webhook answered ``answer``; the labels are closed (else ``other``)."""
    event = event if (source, event) in WEBHOOK_EVENTS else OTHER
    labels = (closed(source, WEBHOOK_SOURCES), event, closed(answer, WEBHOOK_ANSWERS))
    counter = WEBHOOK_COUNTERS.get(labels)
    if counter is None:
        counter = WEBHOOK_COUNTERS[labels] = WEBHOOKS.labels(*labels)
    counter.inc()


def count_settled(outcome: str, age_seconds: float) -> None:
    """Count one delivery attempt settled ``outcome``, ``age_seconds`` after receipt."""
    outcome = closed(outcome, OUTCOMES)
    DELIVERIES.labels(outcome).inc()
    DELIVERY_AGE.labels(outcome).observe(age_seconds)


# Set by bridge.health.CortexWatch on every answer from Cortex to a delivering process. Under
# serve's processes, the most recent value of a live process, and 1 if any is refused.
CORTEX_LAST_STATUS = Gauge(
    "bridge_cortex_last_status",
    "HTTP status of Cortex's last answer to this process (0: no answer came).",
    multiprocess_mode="livemostrecent",
)
CORTEX_UNAUTHORIZED = Gauge(
    "bridge_cortex_unauthorized",
    "1 while Cortex's last answer refused the API token (401/403), else 0.",
    multiprocess_mode="livemax",
)


class QueueCollector(Collector):
    """Queue depth per status and the oldest due event's age, read from the store."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        """Gauges from the database at scrape time."""
        depth = GaugeMetricFamily(
            "bridge_queue_events", "Events in the outbox, by status.", labels=["status"]
        )
        counts = self.store.counts()
        for status in STATUSES:
            depth.add_metric([status], counts.get(status, 0))
        yield depth
        age = self.store.oldest_due_age(self.clock())
        yield GaugeMetricFamily(
            "bridge_queue_oldest_due_seconds",
            "Seconds the oldest undelivered event has waited.",
            value=age or 0.0,
        )
        yield GaugeMetricFamily(
            "bridge_dead_letters", "Events that failed for good.", value=counts.get("dead", 0)
        )


class RoleCollector(Collector):
    """``bridge_relay_info{role, version} 1``: which command serves this page."""

    def __init__(self, role: str) -> None:
        self.role = role

    def collect(self) -> Iterator[Any]:
        """One constant gauge."""
        info = GaugeMetricFamily(
            "bridge_relay_info",
            "The relay process serving this page: serve (a receiver) or worker.",
            labels=["role", "version"],
        )
        info.add_metric([self.role, __version__], 1)
        yield info


def exposition(store: Store, clock: Callable[[], datetime]) -> bytes:
    """The receiver's /metrics page: this fleet's counters plus the queue gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = REGISTRY
    return generate_latest(registry) + _database_page(store, clock, role="serve")


def worker_exposition(store: Store, clock: Callable[[], datetime]) -> bytes:
    """A ``worker`` process's /metrics page: its own counters plus the queue gauges.

    Always the default registry: it holds this process's values in either storage mode,
    whereas the multiprocess collector would add whatever other processes left in a shared
    PROMETHEUS_MULTIPROC_DIR (a receiver's, or a previous run's), counting them twice.
    """
    return generate_latest(REGISTRY) + _database_page(store, clock, role="worker")


def _database_page(store: Store, clock: Callable[[], datetime], *, role: str) -> bytes:
    """The queue gauges (which fail the page while the database is down) and the role."""
    page = CollectorRegistry()
    page.register(QueueCollector(store, clock))
    page.register(RoleCollector(role))
    return generate_latest(page)
