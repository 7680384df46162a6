"""A local stand-in for the Cortex Deploys API, strict about what it accepts.

Used by ``cortex-deploy-bridge demo``, the test suite and the benchmarks. It validates every
request body against SaveDeployRequest (Cortex OpenAPI, tag "Deploys"), keeps deploys in
memory, and injects faults on demand: 429 with ``Retry-After``, 5xx, slowness, and
connections dropped before or after the deploy is stored. Faults come queued one by one
(:meth:`FakeCortex.inject`), at random (``chaos``: a seeded share of requests fails in one of
those ways), or from a Cortex-like rate limit (``rate_limit_per_minute``).

Run alone: ``python -m bridge.fakecortex --port 8787 --token secret [--chaos 0.3 --seed 7
--rate-limit 1000]``. What it stored can then be read back, with the same bearer token, at
``GET /_stand-in/deploys`` and ``GET /_stand-in/stats``: paths outside the Cortex API, which
chaos and the rate limit never touch.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import threading
import time
import uuid as uuidlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEPLOY_TYPES = ("DEPLOY", "SCALE", "ROLLBACK", "RESTART")
# SaveDeployRequest's properties. The OpenAPI document types customData's values as
# "object", but Cortex's own CLI tests post strings there (Java's Map<String, Object>), so
# any JSON value is accepted inside customData.
_STRING_FIELDS = ("environment", "sha", "timestamp", "title", "type", "url")
_KNOWN_FIELDS = {*_STRING_FIELDS, "customData", "deployer"}
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The ways a chaos request fails: Cortex's 429 with Retry-After, gateway and server errors,
# a slow (but correct) answer, and a connection dropped before or after the deploy is stored.
CHAOS_KINDS = ("rate_limited", "500", "502", "503", "slow", "drop_before", "drop_after")
# Where the stand-in shows what it holds; never a Cortex API path, never faulted.
STAND_IN_PREFIX = "/_stand-in/"


def validate_save_deploy_request(body: Any) -> list[str]:
    """Every way ``body`` breaks SaveDeployRequest; unknown fields count too (strict)."""
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    problems = [
        f"missing required {name!r}" for name in ("timestamp", "title", "type") if name not in body
    ]
    problems += [f"unknown field {name!r}" for name in body if name not in _KNOWN_FIELDS]
    problems += [
        f"{name!r} is not a string"
        for name in _STRING_FIELDS
        if name in body and not isinstance(body[name], str)
    ]
    if isinstance(body.get("type"), str) and body["type"] not in DEPLOY_TYPES:
        problems.append(f"type {body['type']!r} is not one of {', '.join(DEPLOY_TYPES)}")
    if isinstance(body.get("timestamp"), str) and not _RFC3339.match(body["timestamp"]):
        problems.append(f"timestamp {body['timestamp']!r} is not an RFC 3339 date-time")
    if "customData" in body and not isinstance(body["customData"], dict):
        problems.append("'customData' is not an object")
    deployer = body.get("deployer")
    if deployer is not None:
        if not isinstance(deployer, dict):
            problems.append("'deployer' is not an object")
        else:
            problems += [
                f"deployer.{k} is not a string"
                for k, v in deployer.items()
                if k in ("name", "email") and not isinstance(v, str)
            ]
            problems += [
                f"unknown field deployer.{k}" for k in deployer if k not in ("name", "email")
            ]
    return problems


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next matching request."""

    kind: str  # "status", "drop_before", "drop_after", "delay", "delay_after"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    method: str | None = None  # only requests with this method, if set

    @property
    def label(self) -> str:
        """A short name for counting: the kind, or the status for a status fault."""
        if self.kind != "status":
            return self.kind
        return "rate_limited" if self.status == 429 else str(self.status)

    @classmethod
    def rate_limited(cls, retry_after: float = 1, **kw: Any) -> Fault:
        """A 429 with Retry-After, shaped like Cortex's TooManyRequestsProblemDetail."""
        body = {
            "type": "about:blank",
            "title": "Too Many Requests",
            "status": 429,
            "retryAfter": int(retry_after),
        }
        return cls(
            "status", status=429, headers={"Retry-After": f"{retry_after:g}"}, body=body, **kw
        )


@dataclass(frozen=True)
class Received:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= chaos <= 1.0:
            raise ValueError(f"chaos must be a share between 0 and 1, got {chaos!r}")
        unknown = sorted(set(chaos_kinds) - set(CHAOS_KINDS))
        if unknown or not chaos_kinds:
            raise ValueError(f"chaos kinds must be some of {', '.join(CHAOS_KINDS)}: {unknown!r}")
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
        self.faults_applied: Counter[str] = Counter()  # "queued:503", "chaos:delay", "rate_limit"
        self._rng = random.Random(seed)  # noqa: S311 (fault injection, not cryptography)
        self._clock = clock
        self._admitted: deque[float] = deque()  # when each request in the last minute came
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the stand-in."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeCortex:
        """Serve in a background thread."""
        # A short poll: stop() waits for the loop to notice, once per test that starts one.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeCortex:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each applies once, in order, to the next matching request."""
        with self._lock:
            self._faults.extend(faults)

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
        now = self._clock()
        while self._admitted and self._admitted[0] <= now - 60.0:
            self._admitted.popleft()
        if len(self._admitted) >= self.rate_limit_per_minute:
            wait = max(1, math.ceil(self._admitted[0] + 60.0 - now))
            return Fault.rate_limited(retry_after=wait)
        self._admitted.append(now)
        return None

    def _chaos_fault(self, kind: str) -> Fault:
        """One random fault of ``kind`` (one of CHAOS_KINDS)."""
        if kind == "rate_limited":
            return Fault.rate_limited(retry_after=self.retry_after)
        if kind == "slow":
            seconds = self._rng.uniform(self.slow_seconds / 2, self.slow_seconds)
            return Fault("delay", seconds=seconds)
        if kind in ("drop_before", "drop_after"):
            return Fault(kind)
        status = int(kind)
        body = _error(status, "SERVER_ERROR", f"injected {status}")[2]
        return Fault("status", status=status, body=body)

    # -- the API ------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request that passed auth and fault injection."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:4] == ["api", "v1", "deploys", "search"] and method == "GET":
            return self._search(query)
        if len(parts) < 5 or parts[:3] != ["api", "v1", "catalog"] or parts[4] != "deploys":
            return _error(404, "NOT_FOUND", f"no route {method} {path}")
        entity = parts[3]
        if self.entities is not None and entity not in self.entities:
            return _error(404, "NOT_FOUND", f"Entity {entity} not found")
        if len(parts) == 5 and method == "POST":
            return self._create(entity, body)
        if len(parts) == 5 and method == "GET":
            return self._list(entity, query)
        if len(parts) == 6 and method in ("PUT", "DELETE"):
            if not _UUID.match(parts[5]):
                return self._bad(f"uuid {parts[5]!r} is not a uuid")
            return (
                self._update(entity, parts[5], body)
                if method == "PUT"
                else self._delete(entity, parts[5])
            )
        return _error(405, "BAD_REQUEST", f"{method} not allowed on {path}")

    def _bad(self, problem: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.violations.append(problem)
        return _error(400, "BAD_REQUEST", problem)

    def _create(self, entity: str, body: Any) -> tuple[int, dict[str, str], Any]:
        problems = validate_save_deploy_request(body)
        if problems:
            return self._bad("; ".join(problems))
        record = dict(body, uuid=str(uuidlib.uuid4()))
        with self._lock:
            self.deploys.setdefault(entity, []).append(record)
        return 200, {}, _custom_deploy(record)

    def _update(self, entity: str, uuid: str, body: Any) -> tuple[int, dict[str, str], Any]:
        problems = validate_save_deploy_request(body)
        if problems:
            return self._bad("; ".join(problems))
        with self._lock:
            for index, record in enumerate(self.deploys.get(entity, [])):
                if record["uuid"] == uuid:
                    self.deploys[entity][index] = dict(body, uuid=uuid)
                    return 200, {}, _custom_deploy(self.deploys[entity][index])
        return _error(404, "NOT_FOUND", f"Deploy {uuid} not found")

    def _delete(self, entity: str, uuid: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            records = self.deploys.get(entity, [])
            for record in records:
                if record["uuid"] == uuid:
                    records.remove(record)
                    return 200, {}, _custom_deploy(record)
        return _error(404, "NOT_FOUND", f"Deploy {uuid} not found")

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
                "deployments": [_listed(r) for r in chunk],
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
            after = _when(query.get("timestampAfter", [None])[0])
            before = _when(query.get("timestampBefore", [None])[0])
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
                and _within(_when(r["timestamp"]), after, before)
            ]
        return self._page(records, query)


def _within(moment: datetime | None, after: datetime | None, before: datetime | None) -> bool:
    if moment is None:
        return False
    return (after is None or moment >= after) and (before is None or moment <= before)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    if not _RFC3339.match(text):
        raise ValueError(f"{text!r} is not an ISO date-time")
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def _custom_deploy(record: dict[str, Any]) -> dict[str, Any]:
    """A CustomDeploy answer: the deployer flattened, ids added."""
    out = {k: v for k, v in record.items() if k != "deployer"}
    deployer = record.get("deployer") or {}
    if deployer.get("name"):
        out["deployerName"] = deployer["name"]
    if deployer.get("email"):
        out["deployerEmail"] = deployer["email"]
    out.update(serviceId=1, id=abs(hash(record["uuid"])) % 10**9)
    return out


def _listed(record: dict[str, Any]) -> dict[str, Any]:
    """A CustomDeploy1 list item."""
    return dict(record)


def _error(status: int, kind: str, message: str) -> tuple[int, dict[str, str], Any]:
    return status, {}, {"type": kind, "message": message, "httpStatus": status}


def _handler_for(fake: FakeCortex) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffered writes: an answer's headers and body leave in one send, as from a real
        # server. Sent apart, the body of a kept-alive answer waits for the client's delayed
        # ACK under Nagle's algorithm (~40 ms on Linux), and a reader that takes one recv()
        # (a simple CONNECT proxy) sees the headers alone.
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            query = parse_qs(split.query)
            if split.path.startswith(STAND_IN_PREFIX):
                self._stand_in(split.path)
                return
            with fake._lock:
                fake.received.append(
                    Received(
                        self.command, split.path, query, dict(self.headers), body, time.monotonic()
                    )
                )
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._answer(*_error(401, "FORBIDDEN", "Invalid API key"))
                return
            if (
                self.command in ("POST", "PUT")
                and self.headers.get("Content-Type", "").split(";")[0] != "application/json"
            ):
                self._answer(*fake._bad("Content-Type must be application/json"))
                return
            fault = fake._next_fault(self.command)
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
                fault = None
            if fault is not None and fault.kind == "status":
                self._answer(fault.status, fault.headers, fault.body)
                return
            if fault is not None and fault.kind == "drop_before":
                self.close_connection = True
                return
            answer = fake.handle(self.command, split.path, query, body)
            if fault is not None and fault.kind == "drop_after":
                self.close_connection = True
                return
            if fault is not None and fault.kind == "delay_after":
                time.sleep(fault.seconds)
            self._answer(*answer)

        def _stand_in(self, path: str) -> None:
            """What the stand-in holds, for a test that runs it as another process."""
            if self.headers.get("Authorization") != f"Bearer {fake.token}":
                self._answer(*_error(401, "FORBIDDEN", "Invalid API key"))
            elif self.command == "GET" and path == f"{STAND_IN_PREFIX}deploys":
                self._answer(200, {}, {"deploys": fake.all_deploys()})
            elif self.command == "GET" and path == f"{STAND_IN_PREFIX}stats":
                self._answer(200, {}, fake.stats())
            else:
                self._answer(*_error(404, "NOT_FOUND", f"no route {self.command} {path}"))

        def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.fakecortex", description="A local stand-in Cortex Deploys API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--token", default="test-token")
    parser.add_argument(
        "--entities",
        default=None,
        metavar="TAG,TAG",
        help="the only entities that exist (others get 404); default: every entity exists",
    )
    parser.add_argument(
        "--chaos",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of requests (0..1) failed at random: 429, 5xx, slow, dropped (default: 0)",
    )
    parser.add_argument("--seed", type=int, default=None, help="chaos seed (default: random)")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        metavar="N",
        help="answer 429 with Retry-After past N requests a minute, as Cortex does (default: off)",
    )
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="a slow chaos answer waits between half this and this (default: 0.5)",
    )
    parser.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="Retry-After of a chaos 429 (default: 1)",
    )
    args = parser.parse_args(argv)
    try:
        fake = FakeCortex(
            token=args.token,
            entities=set(filter(None, args.entities.split(","))) if args.entities else None,
            host=args.host,
            port=args.port,
            chaos=args.chaos,
            seed=args.seed,
            rate_limit_per_minute=args.rate_limit,
            slow_seconds=args.slow_seconds,
            retry_after=args.retry_after,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(f"stand-in cortex listening on {fake.url}", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
