"""Slow clients against `serve`: do normal webhooks still get their answer in time?

`cortex-deploy-bridge serve` as shipped (2 processes, the delivery worker inside, SQLite in a
fresh temp database) and a stand-in Cortex in this process. First a baseline: normal signed
GitHub webhooks alone. Then ``--slow`` connections are held open for ``--hold`` seconds, a
third of each kind:

- **headers**: ``POST /webhooks/github HTTP/1.1`` and then one byte of a header every 2 s;
- **body**: complete headers announcing a 100 kB body, then one byte of it every 2 s;
- **idle**: one complete request on a keep-alive connection, then nothing.

A slow connection the server closes is opened again at once (as an attacker would), so the
full number is held all along. Meanwhile normal signed webhooks are sent at ``--rate`` per
second, each on a new connection as GitHub sends them, and each given 10 s (GitHub's own
timeout) for its answer. The report counts the webhooks answered 202 and their latency.

    python benchmarks/slowclients.py                       # 200 slow, 60 s: about 80 s
    python benchmarks/slowclients.py --slow 30 --hold 10 --no-write   # a quick look
    PYTHONPATH=/tmp/before python benchmarks/slowclients.py --json /tmp/before.json --no-write
    python benchmarks/slowclients.py --before /tmp/before.json   # a before/after section

It writes its section into benchmarks/RESULTS.md under "## Slow clients (issue 9)".
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import loadgen  # benchmarks/loadgen.py, beside this file
from procs import Server, machine, write_section
from receiver import SAMPLE, SECRET, code_measured, serve_command, serve_env, stand_in

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADING = "## Slow clients (issue 9)"
GITHUB_TIMEOUT = 10.0  # GitHub gives a webhook this long, then marks the delivery failed
TRICKLE_SECONDS = 2.0
KINDS = ("headers", "body", "idle")


class Tally:
    """What the slow connections went through."""

    def __init__(self) -> None:
        self.open = dict.fromkeys(KINDS, 0)
        self.reopened = dict.fromkeys(KINDS, 0)
        self.refused = 0


async def slow_connection(port: int, kind: str, stop: asyncio.Event, tally: Tally) -> None:
    """Hold one slow connection of ``kind`` until ``stop``; reopen it whenever it is closed."""
    first = True
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            tally.refused += 1
            await _sleep(stop, 0.5)
            continue
        if not first:
            tally.reopened[kind] += 1
        first = False
        tally.open[kind] += 1
        try:
            await _hold(reader, writer, kind, stop)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            tally.open[kind] -= 1
            writer.close()


async def _hold(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str, stop: asyncio.Event
) -> None:
    if kind == "idle":
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        # Nothing more is sent: wait until the server closes the connection, or the end.
        closed = asyncio.ensure_future(reader.read())
        ended = asyncio.ensure_future(stop.wait())
        await asyncio.wait({closed, ended}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        ended.cancel()
        return
    if kind == "headers":
        writer.write(b"POST /webhooks/github HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
    else:
        writer.write(
            b"POST /webhooks/github HTTP/1.1\r\nHost: bridge\r\n"
            b"Content-Type: application/json\r\nX-GitHub-Event: ping\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
    await writer.drain()
    while not stop.is_set():
        if await _sleep(stop, TRICKLE_SECONDS):
            return
        if reader.at_eof():
            return
        writer.write(b"a" if kind == "headers" else b" ")
        await writer.drain()


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` comes first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True


def signed_request(port: int, n: int, sample: dict[str, Any], prefix: str) -> bytes:
    """A stored-kind signed GitHub deployment_status, closing its connection."""
    body = json.dumps(loadgen.webhook(sample, n, "stored")).encode()
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "User-Agent: GitHub-Hookshot/bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-GitHub-Event: deployment_status\r\n"
        f"X-GitHub-Delivery: {prefix}-{n}\r\nX-GitHub-Hook-ID: 424242\r\n"
        f"X-Hub-Signature-256: {sig}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def one_webhook(port: int, request: bytes) -> tuple[int, float]:
    """(status, seconds); status 0 when no answer came within GitHub's timeout."""
    started = time.monotonic()

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
            await reader.read()
            return line
        finally:
            writer.close()

    try:
        line = await asyncio.wait_for(exchange(), GITHUB_TIMEOUT)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        return 0, time.monotonic() - started
    parts = line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, time.monotonic() - started


async def normal_webhooks(
    port: int, first: int, seconds: float, rate: float, prefix: str
) -> list[tuple[int, float]]:
    """Webhooks due at ``rate`` per second for ``seconds``, each on its own connection."""
    sample = json.loads(SAMPLE.read_text())
    count = int(seconds * rate)
    started = time.monotonic()
    tasks = []
    for i in range(count):
        due = started + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        request = signed_request(port, first + i, sample, prefix)
        tasks.append(asyncio.ensure_future(one_webhook(port, request)))
    return list(await asyncio.gather(*tasks))


async def phase(port: int, args: argparse.Namespace, slow: int, first: int) -> dict[str, Any]:
    """Normal webhooks for ``--hold`` seconds (``--baseline`` without slow connections)."""
    stop = asyncio.Event()
    tally = Tally()
    holders = [
        asyncio.ensure_future(slow_connection(port, KINDS[i % 3], stop, tally)) for i in range(slow)
    ]
    if slow:
        await asyncio.sleep(args.settle)  # every slow connection open before the webhooks
    held_at_start = sum(tally.open.values())
    seconds = args.hold if slow else args.baseline
    answers = await normal_webhooks(port, first, seconds, args.rate, f"slow-{slow}-{first}")
    held_at_end = sum(tally.open.values())
    stop.set()
    await asyncio.gather(*holders, return_exceptions=True)
    return summarize(answers, slow, held_at_start, held_at_end, tally)


def summarize(
    answers: list[tuple[int, float]], slow: int, start: int, end: int, tally: Tally
) -> dict[str, Any]:
    """Counts and latency percentiles of one phase."""
    latencies = sorted(seconds for status, seconds in answers if status)
    accepted = sum(1 for status, _ in answers if status == 202)

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "slow": slow,
        "sent": len(answers),
        "accepted": accepted,
        "unanswered": sum(1 for status, _ in answers if status == 0),
        "other": sorted({status for status, _ in answers if status not in (0, 202)}),
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "median_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "held_at_start": start,
        "held_at_end": end,
        "reopened": dict(tally.reopened),
        "refused": tally.refused,
    }


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Baseline, then the slow phase, against one `serve`."""
    with stand_in() as cortex:
        server = Server(
            "serve",
            serve_command(no_worker=False),
            serve_env(tmp, cortex.url),
            tmp / "serve.log",
            workers=2,
        )
        server.start("/readyz")
        try:
            baseline = asyncio.run(phase(server.port, args, 0, 0))
            slow = asyncio.run(phase(server.port, args, args.slow, 100_000))
        finally:
            server.stop()
        delivered = len([r for r in cortex.requests_to("POST") if r.path.endswith("/deploys")])
    log_tail = (tmp / "serve.log").read_text(errors="replace")
    return {
        "code": code_measured(args.label),
        "worker_class": _worker_class(log_tail),
        "baseline": baseline,
        "slow": slow,
        "delivered_to_cortex": delivered,
    }


def _worker_class(log: str) -> str:
    for word in ("gevent", "BalancedThreadWorker", "gthread"):
        if word in log:
            return word
    return "unknown"


def report(args: argparse.Namespace, after: dict[str, Any], before: dict[str, Any] | None) -> str:
    """The Markdown section."""
    columns = [("before", before), ("after", after)] if before else [("this run", after)]
    lines = [
        HEADING,
        "",
        f"Machine: {machine()}.",
        "",
        f"`cortex-deploy-bridge serve --workers 2` as shipped (delivery worker inside, SQLite, a "
        f"stand-in Cortex). Baseline: signed `deployment_status` webhooks alone, {args.rate:g}/s "
        f"for {args.baseline:g} s. Then {args.slow} slow connections held {args.hold:g} s (a "
        f"third each: headers trickled 1 byte/{TRICKLE_SECONDS:g} s, bodies trickled after "
        "complete headers, idle keep-alives; any the server closes is reopened at once) while "
        f"the same webhooks are sent at {args.rate:g}/s, each on a new connection with "
        f"{GITHUB_TIMEOUT:g} s to answer (GitHub's timeout). Latency of the answered ones. "
        "Produced by `benchmarks/slowclients.py`.",
        "",
        "| measurement | " + " | ".join(name for name, _ in columns) + " |",
        "| --- | " + " | ".join("---" for _ in columns) + " |",
    ]
    rows: list[tuple[str, Any]] = [
        ("code", lambda r: r["code"]),
        ("gunicorn worker class", lambda r: r["worker_class"]),
        ("baseline: answered 202 / sent", lambda r: _share(r["baseline"])),
        ("baseline: p50 / p99 (ms)", lambda r: _lat(r["baseline"])),
        ("slow: answered 202 / sent", lambda r: _share(r["slow"])),
        ("slow: no answer within 10 s", lambda r: str(r["slow"]["unanswered"])),
        ("slow: p50 / p99 / max (ms)", lambda r: _lat(r["slow"], full=True)),
        (
            "slow connections held (start, end)",
            lambda r: f"{r['slow']['held_at_start']}, {r['slow']['held_at_end']}",
        ),
        (
            "slow connections closed by the server and reopened",
            lambda r: ", ".join(f"{k} {v}" for k, v in r["slow"]["reopened"].items()),
        ),
        ("deploys the stand-in Cortex received", lambda r: str(r["delivered_to_cortex"])),
    ]
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(get(r) for _, r in columns) + " |")
    return "\n".join(lines) + "\n"


def _share(p: dict[str, Any]) -> str:
    other = f" (other answers: {p['other']})" if p["other"] else ""
    return f"{p['accepted']} / {p['sent']}{other}"


def _lat(p: dict[str, Any], *, full: bool = False) -> str:
    values = [p["p50_ms"], p["p99_ms"]] + ([p["max_ms"]] if full else [])
    return " / ".join(f"{v:.0f}" for v in values)


def main() -> int:
    """Measure, print the Markdown section, write it into RESULTS.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slow", type=int, default=200, help="slow connections held")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds they are held")
    parser.add_argument("--baseline", type=float, default=10.0, help="seconds of baseline")
    parser.add_argument("--rate", type=float, default=2.0, help="normal webhooks per second")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to open them all")
    parser.add_argument("--label", help="what the `bridge` on PYTHONPATH is, for the report")
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers")
    parser.add_argument("--before", metavar="PATH", help="a --json of an earlier run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="bridge-slow-") as tmp:
        result = measure(args, Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    before = json.loads(Path(args.before).read_text()) if args.before else None
    section = report(args, result, before)
    print(section)
    if not args.no_write:
        write_section(RESULTS, HEADING, section)
        print(f"written to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
