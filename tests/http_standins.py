"""Local stand-ins for the three deployment-list APIs of the http source presets.

Each is a real HTTP server on loopback, shaped as its platform's document describes (paths,
query parameters, paging, bearer auth, statuses) and strict: a wrong path, method, parameter
or token gets the answer the document gives for it (or a 400 naming the parameter where the
document is silent), and is counted in ``violations`` unless the test asked for it.

- :class:`PhasedApi`: ``GET /api/deploys?productionAppId&status&page&pageSize`` (a platform
  whose deploys run through phases; its document gives no list JSON, so the answer here is
  ``{"deploys": [...], "page", "pageSize", "total"}``, newest first, with the items the
  ``phased`` preset documents).
- :class:`QoderApi`: ``GET /api/v1/cloud/deployments?limit&after_id&before_id&status&
  include_archived&agent_id``: ``data``, ``first_id``, ``last_id``, ``has_more``,
  ``next_page``; newest first by ``created_at``; archived ones only on request.
- :class:`SpiceApi`: ``GET /v1/apps/{appId}/deployments?limit&status``: ``{"deployments"}``,
  the ``limit`` (default 20) most recent; 404 for an unknown app, 403 for a token without
  the scope.

Faults: :meth:`StandIn.fail_next` queues answers (429 with ``Retry-After``, 503) given to the
next requests before anything else is looked at.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridge.standin import StandInServer

Answer = tuple[int, dict[str, str], Any]
PHASES = (
    "orchestrate",
    "download",
    "infra",
    "build",
    "package",
    "migrate",
    "service_deploy",
    "cache_invalidation",
)


def stamp(moment: datetime) -> str:
    """RFC 3339 with a Z, as these APIs write times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StandIn:
    """The server, auth, fault queue and request log shared by the three stand-ins."""

    error_key = "error"

    def __init__(self, *, token: str, host: str = "127.0.0.1") -> None:
        self.token = token
        self.deploys: list[dict[str, Any]] = []
        self.received: list[tuple[str, dict[str, list[str]]]] = []
        self.violations: list[str] = []
        self._faults: deque[tuple[int, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        self._server = StandInServer((host, 0), _handler_for(self))

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> StandIn:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def fail_next(self, status: int, *, retry_after: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._faults.extend([(status, headers)] * times)

    def answer(self, method: str, target: str, authorization: str | None) -> Answer:
        """The answer to one request, after the queued faults and the token."""
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        with self._lock:
            self.received.append((parts.path, query))
            if self._faults:
                status, headers = self._faults.popleft()
                return status, headers, {self.error_key: "slow down"}
        if method != "GET":
            return self.refuse(405, f"{method} not allowed")
        if authorization != f"Bearer {self.token}":
            return self.unauthorized(authorization)
        return self.handle(parts.path, query)

    def refuse(self, status: int, message: str) -> Answer:
        """An error answer, recorded as a violation of the API's contract."""
        with self._lock:
            self.violations.append(message)
        return status, {}, {self.error_key: message}

    def unauthorized(self, authorization: str | None) -> Answer:
        """401, the answer all three documents give for a bad or missing token."""
        return 401, {}, {self.error_key: "Unauthorized"}

    def handle(self, path: str, query: dict[str, list[str]]) -> Answer:
        """The API itself."""
        raise NotImplementedError

    def check_params(
        self, query: dict[str, list[str]], allowed: tuple[str, ...]
    ) -> Answer | dict[str, str]:
        """The query as single values, or a 400 for an unknown or repeated parameter."""
        for name, values in query.items():
            if name not in allowed:
                return self.refuse(400, f"unknown query parameter {name!r}")
            if len(values) != 1:
                return self.refuse(400, f"query parameter {name!r} given {len(values)} times")
        return {name: values[0] for name, values in query.items()}

    def integer(
        self, params: Mapping[str, str], name: str, default: int, low: int, high: int
    ) -> int | Answer:
        """An integer parameter in [low, high], or a 400 naming it."""
        text = params.get(name)
        if text is None:
            return default
        if not text.isdigit() or not low <= int(text) <= high:
            return self.refuse(400, f"{name} must be an integer from {low} to {high}, got {text!r}")
        return int(text)

    def newest_first(self, key: str) -> list[dict[str, Any]]:
        """The stored deploys, newest first by ``key``."""
        with self._lock:
            return sorted(self.deploys, key=lambda d: d[key], reverse=True)


class PhasedApi(StandIn):
    """Seed 002: deploys with phases, page/pageSize pages."""

    PATH = "/api/deploys"
    STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
    MAX_PAGE_SIZE = 100

    @property
    def url(self) -> str:
        """The list's URL."""
        return self.base + self.PATH

    # status -> (phases completed, the state of the phase after them)
    PROGRESS: Mapping[str, tuple[int, str]] = {
        "pending": (0, "pending"),
        "in_progress": (2, "in_progress"),
        "completed": (len(PHASES), "pending"),
        "failed": (3, "failed"),
        "cancelled": (3, "pending"),
    }

    def add(self, ident: str, status: str, created: datetime, *, app: str = "app_1") -> None:
        """A deploy created at ``created``, whose phases each took a minute, 30 s later."""
        done, current = self.PROGRESS[status]
        start = created + timedelta(seconds=30)
        phases = [
            _phase(name, start + timedelta(minutes=i), "completed" if i < done else "pending")
            for i, name in enumerate(PHASES)
        ]
        if done < len(PHASES) and current != "pending":
            phases[done] = _phase(PHASES[done], start + timedelta(minutes=done), current)
        ended = status in ("completed", "failed", "cancelled")
        minutes = done + (current == "failed")
        with self._lock:
            self.deploys.append(
                {
                    "id": ident,
                    "productionAppId": app,
                    "versionId": f"ver_{ident}",
                    "status": status,
                    "error": "migration failed" if status == "failed" else None,
                    "createdAt": stamp(created),
                    "completedAt": stamp(start + timedelta(minutes=minutes)) if ended else None,
                    "phases": phases,
                }
            )

    def handle(self, path: str, query: dict[str, list[str]]) -> Answer:
        """``GET /api/deploys``."""
        if path != self.PATH:
            return self.refuse(404, f"no route GET {path}")
        params = self.check_params(query, ("productionAppId", "status", "page", "pageSize"))
        if not isinstance(params, dict):
            return params
        page = self.integer(params, "page", 1, 1, 10**6)
        size = self.integer(params, "pageSize", 20, 1, self.MAX_PAGE_SIZE)
        if not isinstance(page, int):
            return page
        if not isinstance(size, int):
            return size
        status = params.get("status")
        if status is not None and status not in self.STATUSES:
            return self.refuse(400, f"status must be one of {', '.join(self.STATUSES)}")
        rows = [
            d
            for d in self.newest_first("createdAt")
            if params.get("productionAppId", d["productionAppId"]) == d["productionAppId"]
            and status in (None, d["status"])
        ]
        chunk = rows[(page - 1) * size : page * size]
        return 200, {}, {"deploys": chunk, "page": page, "pageSize": size, "total": len(rows)}


class QoderApi(StandIn):
    """Seed 003: cursor pages (after_id / has_more / next_page), newest first."""

    PATH = "/api/v1/cloud/deployments"

    @property
    def url(self) -> str:
        """The list's URL."""
        return self.base + self.PATH

    def unauthorized(self, authorization: str | None) -> Answer:
        """401 authentication_error: "PAT invalid or expired"."""
        return (
            401,
            {},
            {
                "type": "error",
                "error": {"type": "authentication_error", "message": "PAT invalid or expired"},
            },
        )

    def add(
        self, ident: str, created: datetime, *, status: str = "active", archived: bool = False
    ) -> None:
        """A deployment created at ``created``."""
        with self._lock:
            self.deploys.append(
                {
                    "id": ident,
                    "type": "deployment",
                    "name": f"deployment {ident}",
                    "description": "made by a test",
                    "agent": {"id": "agent_1", "type": "agent", "version": 1},
                    "environment_id": "env_1",
                    "status": status,
                    "paused_reason": "paused by a test" if status == "paused" else None,
                    "archived_at": stamp(created + timedelta(hours=1)) if archived else None,
                    "created_at": stamp(created),
                    "updated_at": stamp(created + timedelta(minutes=5)),
                    "metadata": {},
                    "resources": [],
                    "vault_ids": [],
                }
            )

    def handle(self, path: str, query: dict[str, list[str]]) -> Answer:
        """``GET /v1/deployments``."""
        if path != self.PATH:
            return self.refuse(404, f"no route GET {path}")
        allowed = ("limit", "after_id", "before_id", "status", "include_archived", "agent_id")
        params = self.check_params(query, allowed)
        if not isinstance(params, dict):
            return params
        limit = self.integer(params, "limit", 20, 1, 1000)
        if not isinstance(limit, int):
            return limit
        if params.get("include_archived", "false") not in ("true", "false"):
            return self.refuse(400, "include_archived must be true or false")
        if params.get("status", "active") not in ("active", "paused"):
            return self.refuse(400, "status must be active or paused")
        rows = [
            d
            for d in self.newest_first("created_at")
            if (params.get("include_archived") == "true" or d["archived_at"] is None)
            and params.get("status", d["status"]) == d["status"]
            and params.get("agent_id", d["agent"]["id"]) == d["agent"]["id"]
        ]
        after = params.get("after_id")
        if after is not None:
            ids = [d["id"] for d in rows]
            if after not in ids:
                return self.refuse(400, f"after_id {after!r} is not a deployment")
            rows = rows[ids.index(after) + 1 :]
        chunk, more = rows[:limit], len(rows) > limit
        last = chunk[-1]["id"] if chunk else None
        return (
            200,
            {},
            {
                "data": chunk,
                "first_id": chunk[0]["id"] if chunk else None,
                "last_id": last,
                "has_more": more,
                "next_page": last if more else None,
            },
        )


class SpiceApi(StandIn):
    """Seed 004: the ``limit`` newest deployments of one app."""

    STATUSES = ("queued", "in_progress", "succeeded", "failed", "created")

    def __init__(
        self,
        *,
        token: str,
        app_id: int = 42,
        scopeless_token: str = "no-scope",  # noqa: S107
    ) -> None:
        super().__init__(token=token)
        self.app_id = app_id
        self.scopeless_token = scopeless_token

    @property
    def url(self) -> str:
        """The list's URL for the app."""
        return f"{self.base}/v1/apps/{self.app_id}/deployments"

    def add(self, ident: int, status: str, created: datetime, *, sha: str | None = None) -> None:
        """A deployment created at ``created``; one that ended did so five minutes later."""
        ended = status in ("succeeded", "failed")
        started = status not in ("queued", "created")
        with self._lock:
            self.deploys.append(
                {
                    "id": ident,
                    "status": status,
                    "created_at": stamp(created),
                    "started_at": stamp(created + timedelta(seconds=10)) if started else None,
                    "updated_at": stamp(created + timedelta(minutes=5 if ended else 0)),
                    "image_tag": "1.2.3",
                    "replicas": 2,
                    "branch": "main",
                    "commit_sha": sha,
                    "commit_message": f"Deploy {ident}\n\nbody",
                    "error_message": "boom" if status == "failed" else None,
                    "creation_source": "api",
                    "created_by": "dana",
                }
            )

    def handle(self, path: str, query: dict[str, list[str]]) -> Answer:
        """``GET /v1/apps/{appId}/deployments``."""
        parts = path.split("/")
        if len(parts) != 5 or parts[:3] != ["", "v1", "apps"] or parts[4] != "deployments":
            return self.refuse(404, f"no route GET {path}")
        if parts[3] != str(self.app_id):
            return 404, {}, {"error": "App not found"}
        params = self.check_params(query, ("limit", "status"))
        if not isinstance(params, dict):
            return params
        limit = self.integer(params, "limit", 20, 1, 10**6)
        if not isinstance(limit, int):
            return limit
        status = params.get("status")
        if status is not None and status not in self.STATUSES:
            return self.refuse(400, f"status must be one of {', '.join(self.STATUSES)}")
        rows = [d for d in self.newest_first("created_at") if status in (None, d["status"])]
        return 200, {}, {"deployments": rows[:limit]}

    def answer(self, method: str, target: str, authorization: str | None) -> Answer:
        """A valid token without the deployments scope gets 403, as the document says."""
        if authorization == f"Bearer {self.scopeless_token}":
            return 403, {}, {"error": "Insufficient scope"}
        return super().answer(method, target, authorization)


def _phase(name: str, start: datetime, status: str) -> dict[str, Any]:
    """One phase of a seed-002 deploy: a minute long once it ran."""
    ran = status in ("completed", "failed")
    return {
        "name": name,
        "status": status,
        "startedAt": stamp(start) if status != "pending" else None,
        "completedAt": stamp(start + timedelta(minutes=1)) if ran else None,
    }


def _handler_for(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, headers, body = stand_in.answer(
                self.command, self.path, self.headers.get("Authorization")
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler
