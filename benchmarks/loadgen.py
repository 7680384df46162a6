"""A small HTTP/1.1 load generator for benchmarks/receiver.py: signed GitHub webhooks.

Runs as its own process (so its CPU time can be counted apart from the server's): reads a
JSON spec on stdin, prints a JSON result on stdout. Every request is built before the clock
starts; the client loop is asyncio on raw keep-alive connections, so one request costs the
client tens of microseconds rather than the milliseconds of `requests`.

Two shapes:
- closed loop (``rate`` 0): ``connections`` connections, each sends its next request as soon
  as the previous answer is in; measures the most the server can do.
- open loop (``rate`` > 0): request i is due at start + i/rate whatever the server does;
  latency counts from the due time, so a server that falls behind shows it (no coordinated
  omission).

Bounded: ``count`` requests, and the whole run gives up after ``deadline_seconds``.
With ``ports`` (a list) the connections are spread over several servers round-robin, as a
load balancer in front of replicas would; without it every connection goes to ``port``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import resource
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

STATES = {"stored": "success", "ignored": "in_progress"}
# Events spread over this many repositories (entities), EVENT_SPACING apart in their own
# time: about four deploys per entity in the bridge's +-1 h idempotency lookup window, as
# for a busy team, rather than thousands of one entity's deploys at the same second.
REPOSITORIES = 50
EVENT_SPACING = timedelta(seconds=37)
EPOCH = datetime(2026, 11, 1, tzinfo=timezone.utc)


def webhook(doc: dict[str, Any], n: int, kind: str) -> dict[str, Any]:
    """The sample deployment_status as deploy ``n``: its own id, sha, repository and time."""
    return stamp(copy.deepcopy(doc), n, kind)


def stamp(doc: dict[str, Any], n: int, kind: str) -> dict[str, Any]:
    """Make ``doc`` (in place) deploy ``n``."""
    doc["deployment"]["id"] = 5_000_000 + n
    doc["deployment"]["payload"] = {}
    doc["deployment"]["sha"] = f"{n:040x}"
    doc["deployment_status"]["id"] = 9_000_000 + n
    doc["deployment_status"]["state"] = STATES[kind]
    moment = (EPOCH + n * EVENT_SPACING).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["deployment_status"]["created_at"] = doc["deployment_status"]["updated_at"] = moment
    owner, name = "acme", f"service-{n % REPOSITORIES:02d}"
    doc["repository"]["name"], doc["repository"]["full_name"] = name, f"{owner}/{name}"
    return doc


def build_requests(spec: dict[str, Any]) -> list[bytes]:
    """Every request of the run, signed, serialized."""
    sample = json.loads(Path(spec["sample"]).read_text())
    secret = spec["secret"].encode()
    out = []
    for n in range(spec["first"], spec["first"] + spec["count"]):
        body = json.dumps(stamp(sample, n, spec["kind"])).encode()
        sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        head = (
            f"POST {spec['path']} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{spec['port']}\r\n"
            "User-Agent: GitHub-Hookshot/bench\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "X-GitHub-Event: deployment_status\r\n"
            f"X-GitHub-Delivery: {spec['delivery_prefix']}-{n}\r\n"
            "X-GitHub-Hook-ID: 424242\r\n"
            f"X-Hub-Signature-256: {sig}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


class Conn:
    """One keep-alive connection; reopened if the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reopened = 0

    async def open(self) -> Conn:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request, read its answer: (status, body)."""
        for _ in range(2):  # one reopen if the server dropped an idle keep-alive connection
            if self.writer is None or self.writer.is_closing():
                await self.open()
                self.reopened += 1
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.writer.close()
                self.writer = None
                continue
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("connection", "").lower() == "close":
                self.writer.close()
                self.writer = None
            return status, body
        raise ConnectionError("server closed the connection twice in a row")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def closed_loop(
    requests: list[bytes], port: int | list[int], connections: int
) -> dict[str, Any]:
    """``connections`` clients, each sending back to back."""
    conns = [await Conn(p).open() for p in _spread(port, connections)]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    cursor = iter(range(len(requests)))

    async def client(conn: Conn) -> None:
        for i in cursor:
            t0 = time.perf_counter()
            status, _ = await conn.exchange(requests[i])
            latencies.append(time.perf_counter() - t0)
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.monotonic()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.monotonic() - started
    for c in conns:
        c.close()
    return _summary(latencies, statuses, elapsed, started, sum(c.reopened for c in conns))


async def open_loop(
    requests: list[bytes], port: int | list[int], connections: int, rate: float
) -> dict[str, Any]:
    """Request i due at start + i/rate; a pool of ``connections`` carries them."""
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    conns = [await Conn(p).open() for p in _spread(port, connections)]
    for c in conns:
        pool.put_nowait(c)
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    async def one(request: bytes, due: float) -> None:
        conn = await pool.get()
        try:
            status, _ = await conn.exchange(request)
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - due)
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    started = time.monotonic()
    t0 = time.perf_counter()
    tasks = []
    for i, request in enumerate(requests):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(request, due)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    for c in conns:
        c.close()
    return _summary(latencies, statuses, elapsed, started, sum(c.reopened for c in conns))


def _spread(port: int | list[int], connections: int) -> list[int]:
    """The port of each connection: round-robin over ``port`` when it is a list."""
    ports = port if isinstance(port, list) else [port]
    return [ports[i % len(ports)] for i in range(connections)]


def _summary(
    latencies: list[float], statuses: dict[str, int], elapsed: float, started: float, reopened: int
) -> dict[str, Any]:
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "count": len(latencies),
        "elapsed": elapsed,
        "started_monotonic": started,
        "finished_monotonic": started + elapsed,
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000,
        "statuses": statuses,
        "reopened": reopened,
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Warm up (not measured), then the measured run, within the deadline."""
    requests = build_requests(spec)
    warm, measured = requests[: spec["warmup"]], requests[spec["warmup"] :]
    port = spec.get("ports") or spec["port"]
    if warm:
        await closed_loop(warm, port, min(spec["connections"], len(warm)))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if spec.get("rate"):
        coro = open_loop(measured, port, spec["connections"], spec["rate"])
    else:
        coro = closed_loop(measured, port, spec["connections"])
    result = await asyncio.wait_for(coro, timeout=spec["deadline_seconds"])
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu_seconds"] = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
    return result


def main() -> int:
    """Spec on stdin, result on stdout."""
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(spec))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
