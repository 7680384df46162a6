"""The probe pages of every relay process (/healthz, /readyz, /metrics), and Cortex's word.

One page, two doors: the receiver's Flask routes and a ``worker``'s ``--metrics-bind``
server both answer with :meth:`Probes.page`, so the two cannot drift.

- ``/healthz``: the process answers; 503 if one of its delivery threads has died.
- ``/readyz``: the database answers, and Cortex did not refuse the token on this process's
  last request (``"cortex": "unauthorized"`` is 503). A process that delivers nothing
  (``serve --no-worker``) never talks to Cortex and reports the database alone.
- ``/metrics``: Prometheus text, this process's counters (all of ``serve``'s processes'
  on a receiver) and the queue gauges read from the database.

:class:`WatchedTransport` sits between a Cortex client and its HTTP transport and tells a
:class:`CortexWatch` the status of every answer (0: none came), which feeds ``/readyz``
and the ``bridge_cortex_*`` gauges.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge import metrics
from bridge.cortex.answers import UNAUTHORIZED
from bridge.cortex.transport import HttpTransport, Response, TransportError

if TYPE_CHECKING:
    from bridge.store import Store

log = logging.getLogger("bridge.health")

Page = tuple[int, str, bytes]  # (status, content type, body)
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def cortex_state(status: int | None) -> str:
    """One word for the status of Cortex's last answer (None: no request yet; 0: no answer)."""
    if status is None:
        return "unknown"
    if status == 0:
        return "unreachable"
    if status in UNAUTHORIZED:
        return "unauthorized"
    if status == 429:
        return "rate-limited"
    return "ok" if 200 <= status < 300 or status == 404 else "error"


class CortexWatch:
    """The status of Cortex's last answer to this process, shared by its Cortex clients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status: int | None = None

    def saw(self, status: int) -> None:
        """Note an answer's status (0: no answer came)."""
        with self._lock:
            self.status = status
        metrics.CORTEX_LAST_STATUS.set(status)
        metrics.CORTEX_UNAUTHORIZED.set(1 if status in UNAUTHORIZED else 0)

    @property
    def state(self) -> str:
        """:func:`cortex_state` of the last answer."""
        return cortex_state(self.status)


class WatchedTransport(HttpTransport):
    """The Cortex client's HTTP transport, telling ``watch`` the status of every answer."""

    def __init__(self, base_url: str, watch: CortexWatch, **options: Any) -> None:
        super().__init__(base_url, **options)
        self.watch = watch

    def request(
        self, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None
    ) -> Response:
        """The answer, noted; no answer is noted as 0."""
        try:
            response = super().request(method, path, headers=headers, body=body)
        except TransportError:
            self.watch.saw(0)
            raise
        self.watch.saw(response.status)
        return response


@dataclass(frozen=True)
class Probes:
    """What one process's probe pages report on."""

    store: Store
    clock: Callable[[], datetime]
    role: str  # "serve" (a receiver: every process's counters) or "worker" (its own)
    threads: Sequence[threading.Thread] = ()  # delivery threads: one dead fails /healthz
    cortex: CortexWatch | None = None  # None: this process never talks to Cortex

    def delivering(self, threads: Sequence[threading.Thread], watch: CortexWatch) -> Probes:
        """The same probes, for a process that also runs these delivery threads."""
        return replace(self, threads=tuple(threads), cortex=watch)

    def page(self, path: str) -> Page | None:
        """The answer to a GET of ``path``; None when it is not a probe."""
        if path == "/healthz":
            return self.healthz()
        if path == "/readyz":
            return self.readyz()
        if path == "/metrics":
            return self.metrics()
        return None

    def healthz(self) -> Page:
        """Alive, unless a delivery thread has died."""
        stopped = sum(not thread.is_alive() for thread in self.threads)
        if stopped:
            why = f"{stopped} of {len(self.threads)} delivery threads stopped"
            return _json(503, status="unavailable", reason=why)
        return _json(200, status="ok")

    def readyz(self) -> Page:
        """Ready: the database answers and Cortex does not refuse the token."""
        try:
            self.store.ping()
        except Exception as exc:  # any failure to reach the database means not ready
            log.warning("database unreachable", extra={"error": type(exc).__name__})
            return _json(503, status="unavailable", reason="database unreachable")
        if self.cortex is None:
            return _json(200, status="ok")
        state = self.cortex.state
        if state == "unauthorized":
            reason = (
                f"cortex refused the token ({self.cortex.status}) on the last request: "
                "check CORTEX_API_TOKEN"
            )
            return _json(503, status="unavailable", reason=reason, cortex=state)
        return _json(200, status="ok", cortex=state)

    def metrics(self) -> Page:
        """The Prometheus page; 503 while the database (its queue gauges) is unreachable."""
        try:
            if self.role == "worker":
                body = metrics.worker_exposition(self.store, self.clock)
            else:
                body = metrics.exposition(self.store, self.clock)
        except Exception as exc:  # any failure to reach the database: no gauges
            log.warning("database unreachable", extra={"error": type(exc).__name__})
            return _json(503, status="unavailable", reason="database unreachable")
        return 200, METRICS_TYPE, body


def _json(code: int, /, **fields: str) -> Page:
    return code, "application/json", json.dumps(fields).encode() + b"\n"
