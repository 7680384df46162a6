"""The stand-in server: deploy storage and search, fault selection, start and stop."""

from __future__ import annotations

import random
import threading
import time
import uuid as uuidlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from bridge.fakecortex.faults import CHAOS_KINDS, Fault, chaos_fault
from bridge.fakecortex.handler import Received, handler_for
from bridge.fakecortex.limits import over_rate_limit
from bridge.fakecortex.schema import (
    UUID_PATTERN,
    custom_deploy,
    error,
    listed,
    validate_save_deploy_request,
    when,
    within,
)
from bridge.standin import StandInServer


class FakeCortex:
    """The stand-in server. Use as a context manager; ``url`` is where it listens."""

    def __init__(
        self,
        *,
        token: str = "test-token",  # noqa: S107 (a stand-in, never a real secret)
        entities: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        chaos: float = 0.0,
        seed: int | None = None,
        chaos_kinds: Sequence[str] = CHAOS_KINDS,
        slow_seconds: float = 0.5,
        retry_after: float = 1.0,
        rate_limit_per_minute: int = 0,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= chaos <= 1.0:
            raise ValueError(f"chaos must be a share between 0 and 1, got {chaos!r}")
        unknown = sorted(set(chaos_kinds) - set(CHAOS_KINDS))
        if unknown or not chaos_kinds:
            raise ValueError(f"chaos kinds must be some of {', '.join(CHAOS_KINDS)}: {unknown!r}")
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        if rate_limit_per_minute < 0:
            raise ValueError(f"rate limit must be >= 0, got {rate_limit_per_minute!r}")
        self.token = token
        self.entities = entities  # None: every entity exists
        self.deploys: dict[str, list[dict[str, Any]]] = {}
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.chaos = chaos
        self.chaos_kinds = tuple(chaos_kinds)
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.rate_limit_per_minute = rate_limit_per_minute  # 0: no limit
        self.latency = latency  # seconds every API request takes before it is answered
        self.faults_applied: Counter[str] = Counter()  # "queued:503", "chaos:delay", "rate_limit"
        self._rng = random.Random(seed)  # noqa: S311 (fault injection, not cryptography)
        self._clock = clock
        self._admitted: deque[float] = deque()  # when each request in the last minute came
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server = StandInServer((host, port), handler_for(self))

    @property
    def url(self) -> str:
        """Base URL of the stand-in."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeCortex:
        """Serve in a background thread."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.stop()

    def __enter__(self) -> FakeCortex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies once, in order, to the next matching request."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        """Drop the queued faults not applied yet (a token fixed, an outage over)."""
        with self._lock:
            self._faults.clear()

    def all_deploys(self) -> list[dict[str, Any]]:
        """Every stored deploy, with its entity under ``entity``."""
        with self._lock:
            return [dict(d, entity=e) for e, ds in self.deploys.items() for d in ds]

    def requests_to(self, method: str) -> list[Received]:
        """The requests received with ``method``."""
        return [r for r in self.received if r.method == method]

    def stats(self) -> dict[str, Any]:
        """What the stand-in saw: requests per method, faults applied, violations."""
        with self._lock:
            methods = Counter(r.method for r in self.received)
            return {
                "requests": dict(sorted(methods.items())),
                "faults": dict(sorted(self.faults_applied.items())),
                "violations": list(self.violations),
                "deploys": sum(len(ds) for ds in self.deploys.values()),
            }

    def _next_fault(self, method: str) -> Fault | None:
        """The fault for this request: a queued one first, then the rate limit, then chaos."""
        with self._lock:
            for fault in list(self._faults):
                if fault.method in (None, method):
                    self._faults.remove(fault)
                    self.faults_applied[f"queued:{fault.label}"] += 1
                    return fault
            limited = self._over_rate_limit()
            if limited is not None:
                self.faults_applied["rate_limit"] += 1
                return limited
            if self.chaos and self._rng.random() < self.chaos:
                fault = self._chaos_fault(self._rng.choice(self.chaos_kinds))
                self.faults_applied[f"chaos:{fault.label}"] += 1
                return fault
        return None

    def _over_rate_limit(self) -> Fault | None:
        """A 429 when this request would pass ``rate_limit_per_minute``; else count it in."""
        if not self.rate_limit_per_minute:
            return None
        return over_rate_limit(self._admitted, self.rate_limit_per_minute, self._clock())

    def _chaos_fault(self, kind: str) -> Fault:
        """One random fault of ``kind`` (one of CHAOS_KINDS)."""
        return chaos_fault(
            kind, self._rng, slow_seconds=self.slow_seconds, retry_after=self.retry_after
        )

    # -- the API ------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request that passed auth and fault injection."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:4] == ["api", "v1", "deploys", "search"] and method == "GET":
            return self._search(query)
        if len(parts) < 5 or parts[:3] != ["api", "v1", "catalog"] or parts[4] != "deploys":
            return error(404, "NOT_FOUND", f"no route {method} {path}")
        entity = parts[3]
        if self.entities is not None and entity not in self.entities:
            return error(404, "NOT_FOUND", f"Entity {entity} not found")
        if len(parts) == 5 and method == "POST":
            return self._create(entity, body)
        if len(parts) == 5 and method == "GET":
            return self._list(entity, query)
        if len(parts) == 6 and method in ("PUT", "DELETE"):
            if not UUID_PATTERN.match(parts[5]):
                return self._bad(f"uuid {parts[5]!r} is not a uuid")
            return (
                self._update(entity, parts[5], body)
                if method == "PUT"
                else self._delete(entity, parts[5])
            )
        return error(405, "BAD_REQUEST", f"{method} not allowed on {path}")

    def _bad(self, problem: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.violations.append(problem)
        return error(400, "BAD_REQUEST", problem)

    def _create(self, entity: str, body: Any) -> tuple[int, dict[str, str], Any]:
        problems = validate_save_deploy_request(body)
        if problems:
            return self._bad("; ".join(problems))
        record = dict(body, uuid=str(uuidlib.uuid4()))
        with self._lock:
            self.deploys.setdefault(entity, []).append(record)
        return 200, {}, custom_deploy(record)

    def _update(self, entity: str, uuid: str, body: Any) -> tuple[int, dict[str, str], Any]:
        problems = validate_save_deploy_request(body)
        if problems:
            return self._bad("; ".join(problems))
        with self._lock:
            for index, record in enumerate(self.deploys.get(entity, [])):
                if record["uuid"] == uuid:
                    self.deploys[entity][index] = dict(body, uuid=uuid)
                    return 200, {}, custom_deploy(self.deploys[entity][index])
        return error(404, "NOT_FOUND", f"Deploy {uuid} not found")

    def _delete(self, entity: str, uuid: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            records = self.deploys.get(entity, [])
            for record in records:
                if record["uuid"] == uuid:
                    records.remove(record)
                    return 200, {}, custom_deploy(record)
        return error(404, "NOT_FOUND", f"Deploy {uuid} not found")

    def _paging(self, query: dict[str, list[str]]) -> tuple[int, int] | str:
        try:
            page, size = int(query["page"][0]), int(query["pageSize"][0])
        except (KeyError, ValueError, IndexError):
            return "page and pageSize are required integers"
        if page < 0 or not 1 <= size <= 1000:
            return "pageSize must be 1..1000 and page >= 0"
        return page, size

    def _page(
        self, records: list[dict[str, Any]], query: dict[str, list[str]]
    ) -> tuple[int, dict[str, str], Any]:
        paging = self._paging(query)
        if isinstance(paging, str):
            return self._bad(paging)
        page, size = paging
        chunk = records[page * size : (page + 1) * size]
        pages = max((len(records) + size - 1) // size, 1) if records else 0
        return (
            200,
            {},
            {
                "deployments": [listed(r) for r in chunk],
                "page": page,
                "total": len(records),
                "totalPages": pages,
            },
        )

    def _list(self, entity: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            records = list(reversed(self.deploys.get(entity, [])))  # newest first
        return self._page(records, query)

    def _search(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], Any]:
        try:
            after = when(query.get("timestampAfter", [None])[0])
            before = when(query.get("timestampBefore", [None])[0])
        except ValueError as exc:
            return self._bad(str(exc))
        wanted = set(query.get("entityTagOrIds", []))
        envs = set(query.get("environments", []))
        types = set(query.get("types", []))
        with self._lock:
            records = [
                r
                for e, rs in self.deploys.items()
                for r in rs
                if (not wanted or e in wanted)
                and (not envs or r.get("environment") in envs)
                and (not types or r.get("type") in types)
                and within(when(r["timestamp"]), after, before)
            ]
        return self._page(records, query)
