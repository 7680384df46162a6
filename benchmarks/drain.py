"""A backlog drained at Cortex's real budget: nothing lost, nothing doubled, never over the limit.

One run per backend, on this machine, over loopback:

1. a stand-in Cortex (``python -m bridge.fakecortex --rate-limit 1000``, its own process) that
   answers 429 with Retry-After past 1,000 requests in any 60 s, as Cortex does;
2. Cortex "down" for the bridge: receivers only (``serve --no-worker``) take ``--events``
   signed GitHub ``deployment_status`` webhooks (benchmarks/loadgen.py), so the whole backlog
   waits in the outbox; the receivers are then stopped;
3. delivery starts: on PostgreSQL ``--workers`` ``worker`` processes, on SQLite one
   ``serve`` (its delivery threads inside), all sharing the fleet budget
   ``cortex.requests_per_minute`` (900 by default) through the database;
4. until the outbox is drained, the stand-in's counters are read every ``--sample`` seconds:
   requests received, 429s given, deploys stored.

Reported: the drain time, requests per minute (per minute of the drain, and the most in any
60 s, bounded from the samples: the stand-in does not expose each request's time), the 429s
(the stand-in's own sliding-window limiter: none means no 60 s ever held more than 1,000
requests), every deploy in Cortex exactly once (by ``customData.bridge.idempotencyKey``, as
benchmarks/chaos.py counts), nothing dead-lettered, and the requests per deploy (issue 8: one,
the create; a lookup only after an attempt that may have reached Cortex), so 5,000 take about
6 minutes at 900/min. Run by hand:

    python benchmarks/drain.py --backends postgres sqlite --sqlite-events 1000   # ~15 min
    python benchmarks/drain.py --events 200 --no-write                          # a quick look
    PYTHONPATH=/tmp/copy python benchmarks/drain.py --label "commit abc1234"    # another tree

It prints a Markdown section and writes it into benchmarks/RESULTS.md under
"## Backlog drain, one request per deploy (issue 8)" (that section only). Exit 0 when every
check held, else 1.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import loadgen  # benchmarks/loadgen.py, beside this file
from chaos import DEFAULT_PG, SCRIPT, Proc, expected_key, http_json, outbox, postgres_schema
from chaos import stored_keys as keys_in_cortex
from procs import Server, free_port, machine, write_section
from receiver import SAMPLE, SECRET, TOKEN, code_measured, serve_env

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADING = "## Backlog drain, one request per deploy (issue 8)"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAITING = ("queued", "retrying", "delivering")
MAX_PER_DEPLOY = 1.05  # issue 8: one request per deploy in the common case


# --- processes ---------------------------------------------------------------------------


def serve_argv(*, workers: int, threads: int, no_worker: bool, config: Path | None) -> list[str]:
    """`cortex-deploy-bridge serve` on a free port (``{port}``, filled in by procs.Server)."""
    argv = [SCRIPT, "serve", "--bind", "127.0.0.1:{port}", "--workers", str(workers)]
    argv += ["--threads", str(threads)] + (["--no-worker"] if no_worker else [])
    return argv + (["--config", str(config)] if config else [])


def worker_argv(*, threads: int, config: Path | None) -> list[str]:
    """`cortex-deploy-bridge worker`: delivery alone."""
    return [SCRIPT, "worker", "--threads", str(threads)] + (
        ["--config", str(config)] if config else []
    )


def start_stand_in(workdir: Path, *, rate_limit: int) -> Proc:
    """The stand-in Cortex as its own process; every entity exists there."""
    port = free_port()
    argv = [sys.executable, "-m", "bridge.fakecortex", "--port", str(port), "--token", TOKEN]
    argv += ["--rate-limit", str(rate_limit)]
    env = {"PATH": os.environ["PATH"]}
    env.update({k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ})
    cortex = Proc(
        "cortex", argv, env, workdir, port=port, probe="/_stand-in/stats", probe_headers=AUTH
    )
    cortex.start()
    return cortex


def stand_in(cortex: Proc, what: str) -> Any:
    """GET /_stand-in/<what>: its stats, or every deploy it holds."""
    assert cortex.port is not None
    status, body = http_json(cortex.port, "GET", f"/_stand-in/{what}", headers=AUTH, timeout=60)
    if status != 200:
        raise RuntimeError(f"stand-in answered {status}: {body!r}")
    return body


def stop_procs(procs: list[Proc]) -> None:
    """SIGTERM each process group (SIGKILL if it lingers): the run is over."""
    for proc in procs:
        if proc.popen is None or proc.popen.poll() is not None:
            continue
        os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill9()


@contextmanager
def database(backend: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """A fresh database for one run: a PostgreSQL schema (dropped after) or a SQLite file."""
    if backend == "postgres":
        with postgres_schema(postgres_url) as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'bridge.db'}"


# --- the webhooks ------------------------------------------------------------------------


def post_webhooks(
    ports: list[int],
    *,
    first: int,
    count: int,
    prefix: str,
    warmup: int = 0,
    connections: int = 16,
) -> dict[str, Any]:
    """Signed deploy webhooks from benchmarks/loadgen.py (its own process), closed loop,
    the connections spread over ``ports``: its result (statuses, acks/s, latency)."""
    spec = {
        "port": ports[0],
        "ports": ports,
        "path": "/webhooks/github",
        "sample": str(SAMPLE),
        "secret": SECRET,
        "kind": "stored",
        "first": first,
        "count": warmup + count,
        "warmup": warmup,
        "connections": connections,
        "rate": 0,
        "delivery_prefix": prefix,
        "deadline_seconds": 60 + (warmup + count) / 20,
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py")],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=spec["deadline_seconds"] + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def expected_keys(first: int, count: int) -> set[str]:
    """The idempotency keys the webhooks ``first`` .. ``first + count - 1`` must get."""
    sample = json.loads(SAMPLE.read_text())
    return {
        expected_key("github", loadgen.webhook(sample, n, "stored"))
        for n in range(first, first + count)
    }


# --- watching the stand-in ---------------------------------------------------------------


class Sampler(threading.Thread):
    """Reads the stand-in's counters every ``interval`` seconds, with ``extra()`` beside them.

    Each sample: ``at`` (monotonic, the middle of the read), ``requests`` (every Cortex API
    request received), ``rate_limited`` (429s the limiter gave), ``deploys`` (stored).
    """

    def __init__(
        self,
        cortex: Proc,
        interval: float,
        *,
        extra: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.cortex, self.interval, self.extra = cortex, interval, extra
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.take()  # the state before anything happens

    def take(self) -> None:
        """One sample now (skipped if the stand-in is too busy to answer)."""
        before = time.monotonic()
        try:
            stats = stand_in(self.cortex, "stats")
        except (OSError, RuntimeError):
            return
        sample = {
            "at": (before + time.monotonic()) / 2,
            "requests": sum(stats["requests"].values()),
            "rate_limited": stats["faults"].get("rate_limit", 0),
            "deploys": stats["deploys"],
        }
        if self.extra is not None:
            sample.update(self.extra())
        self.samples.append(sample)

    def run(self) -> None:
        """Sample until stopped."""
        while not self.stop.wait(self.interval):
            self.take()

    def finish(self) -> list[dict[str, float]]:
        """Stop, take a last sample, and return them all."""
        self.stop.set()
        self.join(timeout=30)
        self.take()
        return self.samples


def first_at(samples: list[dict[str, float]], key: str, value: float) -> float | None:
    """When ``key`` first reached ``value``, or None."""
    return next((s["at"] for s in samples if s[key] >= value), None)


def peak_window(samples: list[dict[str, float]], span: float = 60.0) -> tuple[int, int]:
    """The most requests in any ``span`` seconds, bounded from the samples: (at least, at most).

    At least: between two samples at most ``span`` apart. At most: a window starting between
    samples i and i+1 ends before the first sample ``span`` after i+1.
    """
    at = [s["at"] for s in samples]
    count = [int(s["requests"]) for s in samples]
    low = high = 0
    j = 0
    for i in range(len(at)):
        j = max(j, i)
        while j + 1 < len(at) and at[j + 1] - at[i] <= span:
            j += 1
        low = max(low, count[j] - count[i])
        if i + 1 < len(at):
            k = min(bisect.bisect_left(at, at[i + 1] + span), len(at) - 1)
            high = max(high, count[k] - count[i])
    return low, max(high, low)


def per_minute(samples: list[dict[str, float]], start: float, end: float) -> list[int]:
    """Requests in each minute from ``start`` (the last one may be partial), interpolated."""
    at = [s["at"] for s in samples]
    count = [s["requests"] for s in samples]

    def requests_by(moment: float) -> float:
        k = bisect.bisect_left(at, moment)
        if k == 0:
            return count[0]
        if k >= len(at):
            return count[-1]
        share = (moment - at[k - 1]) / (at[k] - at[k - 1])
        return count[k - 1] + share * (count[k] - count[k - 1])

    edges = [start + 60.0 * m for m in range(int((end - start) // 60) + 1)] + [end]
    return [round(requests_by(b) - requests_by(a)) for a, b in itertools.pairwise(edges) if b > a]


# --- one run -----------------------------------------------------------------------------


def queue_backlog(
    args: argparse.Namespace, workdir: Path, url: str, cortex: Proc, events: int
) -> dict[str, Any]:
    """Receivers only: post ``events`` webhooks, check every one is queued, stop them."""
    env = {**serve_env(workdir, f"http://127.0.0.1:{cortex.port}"), "BRIDGE_DATABASE_URL": url}
    argv = serve_argv(workers=2, threads=4, no_worker=True, config=args.config)
    receiver = Server("receiver", argv, env, workdir / "receiver.log", workers=2)
    receiver.start("/readyz")
    try:
        sent = post_webhooks([receiver.port], first=0, count=events, prefix="drain")
    finally:
        receiver.stop()
    counts, _ = outbox(url)
    if sent["statuses"] != {"202": events} or counts["queued"] != events:
        raise RuntimeError(f"backlog not queued: answers {sent['statuses']}, outbox {counts}")
    return {"queue_seconds": sent["elapsed"], "queue_per_second": sent["per_second"]}


def watch_drain(
    args: argparse.Namespace,
    url: str,
    cortex: Proc,
    events: int,
    start_delivery: Callable[[], Callable[[], None]],
) -> dict[str, Any]:
    """Start delivery, sample until every deploy is in and the outbox is empty, stop it."""
    sampler = Sampler(cortex, args.sample)
    sampler.start()
    launched = time.monotonic()
    stop_delivery = start_delivery()
    timeout = args.drain_timeout or 300 + 2 * events * 2 / 15  # twice 900/min, and slack
    drained, shown = False, launched
    try:
        while time.monotonic() - launched < timeout:
            time.sleep(args.sample)
            last = sampler.samples[-1]
            if time.monotonic() - shown >= 30:
                shown = time.monotonic()
                print(
                    f"  {shown - launched:.0f}s: {last['deploys']:.0f}/{events} deploys, "
                    f"{last['requests']:.0f} requests, {last['rate_limited']:.0f} x 429",
                    file=sys.stderr,
                    flush=True,
                )
            if last["deploys"] >= events and not any(outbox(url)[0][s] for s in WAITING):
                drained = True
                break
    finally:
        time.sleep(1.0)  # a late second record, or a late request, would show now
        samples = sampler.finish()
        stop_delivery()
    return {"launched": launched, "samples": samples, "drained": drained}


def measure(args: argparse.Namespace, backend: str, events: int, workdir: Path) -> dict[str, Any]:
    """One backend's whole run: queue with Cortex out of reach, drain, check."""
    workdir.mkdir(parents=True, exist_ok=True)
    cortex = start_stand_in(workdir, rate_limit=args.rate_limit)
    try:
        with database(backend, workdir, args.postgres_url) as url:
            out = queue_backlog(args, workdir, url, cortex, events)
            print(f"{backend}: {events} deploys queued; delivering", file=sys.stderr, flush=True)
            env = {
                **serve_env(workdir, f"http://127.0.0.1:{cortex.port}"),
                "BRIDGE_DATABASE_URL": url,
            }
            out.update(
                watch_drain(args, url, cortex, events, _delivery(args, backend, env, workdir))
            )
            out.update(check(url, cortex, expected_keys(0, events)))
    finally:
        stop_procs([cortex])
    out.update(backend=backend, events=events, delivering=delivering(args, backend))
    return summarize(out)


def _delivery(
    args: argparse.Namespace, backend: str, env: dict[str, str], workdir: Path
) -> Callable[[], Callable[[], None]]:
    """What starts delivery: ``worker`` processes (PostgreSQL) or one ``serve`` (SQLite)."""

    def workers() -> Callable[[], None]:
        argv = worker_argv(threads=args.threads, config=args.config)
        procs = [Proc(f"worker-{n}", argv, env, workdir) for n in range(args.workers)]
        for proc in procs:
            proc.start()
        return lambda: stop_procs(procs)

    def serve() -> Callable[[], None]:
        argv = serve_argv(workers=2, threads=4, no_worker=False, config=args.config)
        server = Server("serve", argv, env, workdir / "serve.log", workers=2)
        server.start("/readyz")
        return server.stop

    return workers if backend == "postgres" else serve


def delivering(args: argparse.Namespace, backend: str) -> str:
    """Which processes delivered, in words."""
    if backend == "postgres":
        return f"{args.workers} x `worker --threads {args.threads}`"
    return "1 x `serve --workers 2` (a delivery thread in each)"


def check(url: str, cortex: Proc, expected: set[str]) -> dict[str, Any]:
    """What Cortex holds against what was queued; what the outbox says; the stand-in's stats."""
    held = keys_in_cortex(stand_in(cortex, "deploys")["deploys"])
    counts, _ = outbox(url)
    return {
        "once": sum(1 for key in expected if held.get(key) == 1),
        "twice": sum(1 for key, n in held.items() if n > 1),
        "missing": len(expected - set(held)),
        "unexpected": len(set(held) - expected),
        "outbox": counts,
        "stats": stand_in(cortex, "stats"),
    }


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    """Times, rates and windows from the samples; the verdict."""
    samples, launched = out.pop("samples"), out["launched"]
    stats = out["stats"]
    total = sum(stats["requests"].values())
    # The first request came between the last sample with none and the next one.
    first = max((s["at"] for s in samples if s["requests"] == 0), default=launched)
    last = first_at(samples, "requests", total) or samples[-1]["at"]
    done = first_at(samples, "deploys", out["events"]) or samples[-1]["at"]
    low, high = peak_window(samples)
    out.update(
        drain_seconds=done - launched,
        first_request_seconds=(first_at(samples, "requests", 1) or first) - launched,
        sending_seconds=last - first,
        requests=total,
        methods=stats["requests"],
        per_minute_mean=total / (last - first) * 60 if last > first else 0.0,
        per_deploy=total / out["events"] if out["events"] else 0.0,
        deploys_per_second=out["events"] / (done - first) if done > first else 0.0,
        peak_low=low,
        peak_high=high,
        minutes=per_minute(samples, first, last),
        rate_limited=stats["faults"].get("rate_limit", 0),
        faults=stats["faults"],
        violations=len(stats["violations"]),
        dead=out["outbox"]["dead"],
        delivered=out["outbox"]["delivered"],
    )
    problems = [
        (not out["drained"], "the outbox was not drained in time"),
        (out["once"] != out["events"], f"{out['once']} of {out['events']} in Cortex once"),
        (out["twice"], f"{out['twice']} deploys in Cortex more than once"),
        (out["missing"], f"{out['missing']} deploys missing from Cortex"),
        (out["unexpected"], f"{out['unexpected']} unexpected deploys in Cortex"),
        (out["dead"], f"{out['dead']} dead letters"),
        (out["rate_limited"], f"{out['rate_limited']} x 429 from the stand-in"),
        (out["violations"], f"{out['violations']} invalid requests"),
        (out["per_deploy"] > MAX_PER_DEPLOY, f"{out['per_deploy']:.3f} requests per deploy"),
    ]
    out["problems"] = [text for bad, text in problems if bad]
    out.pop("stats")
    return out


# --- the report --------------------------------------------------------------------------


def report(args: argparse.Namespace, runs: list[dict[str, Any]], command: str) -> str:
    """The Markdown section."""
    budget = args.requests_per_minute or 900
    lines = [
        HEADING,
        "",
        f"Machine: {machine()}. Code: {code_measured(args.label)}. Sampled every "
        f"{args.sample:g} s.",
        "",
        f"    {command}",
        "",
        f"The backlog: signed GitHub `deployment_status` webhooks (distinct deployments over "
        f"50 repositories) posted to `serve --no-worker --workers 2` while nothing delivered, "
        f"then the receivers stopped. Delivery then started against a stand-in Cortex "
        f"(`python -m bridge.fakecortex --rate-limit {args.rate_limit}`, its own process, "
        f"answering 429 past {args.rate_limit} requests in any 60 s), with the shared budget "
        f"`cortex.requests_per_minute` at {budget} (one request a deploy, the create: a lookup "
        f"by idempotency key only after an attempt that may have reached Cortex; the GETs are "
        f"the rollback history read from Cortex once per entity and environment, 50 here). "
        f"Drain time: "
        f"from starting the delivery processes to the last deploy stored; deploys/s: from the "
        f"first request to the last deploy stored. The peak is bounded from the stand-in's "
        f"counters, read every {args.sample:g} s; the stand-in's own limiter is exact, and gave "
        f"the 429s counted here.",
        "",
        "| run | delivering | deploys | drain (s) | deploys/s | requests (GET + POST) | "
        "requests/deploy | mean /min | peak in any 60 s | 429s | in Cortex once | "
        "twice / missing | dead letters |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        methods = " + ".join(f"{r['methods'].get(m, 0):,}" for m in ("GET", "POST"))
        lines.append(
            f"| {r['backend']} | {r['delivering']} | {r['events']:,} | "
            f"{r['drain_seconds']:.0f} | {r['deploys_per_second']:.1f} | "
            f"{r['requests']:,} ({methods}) | {r['per_deploy']:.3f} | "
            f"{r['per_minute_mean']:.0f} | {r['peak_low']}-{r['peak_high']} | "
            f"{r['rate_limited']} | {r['once']:,} | {r['twice']} / {r['missing']} | {r['dead']} |"
        )
    lines.append("")
    for r in runs:
        lines.append(
            f"- {r['backend']}: first request within {r['first_request_seconds']:.1f} s of the "
            f"start; "
            f"requests per minute of the drain: {', '.join(map(str, r['minutes']))} (the last "
            f"minute partial); queueing took {r['queue_seconds']:.1f} s "
            f"({r['queue_per_second']:.0f} acks/s). "
            + ("All checks held." if not r["problems"] else "**" + "; ".join(r["problems"]) + "**")
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Run each backend, print the section, write it into RESULTS.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--backends", nargs="+", choices=["postgres", "sqlite"], default=["postgres"])
    add("--events", type=int, default=5000, help="deploys in the backlog (default: 5000)")
    add("--sqlite-events", type=int, help="deploys on SQLite (default: --events)")
    add("--workers", type=int, default=2, help="worker processes on postgres (default: 2)")
    add("--threads", type=int, default=2, help="delivery threads each (default: 2)")
    add("--rate-limit", type=int, default=1000, help="the stand-in's requests/min (1000)")
    add("--requests-per-minute", type=int, help="cortex.requests_per_minute (default: built in)")
    add("--sample", type=float, default=0.5, help="seconds between reads of the stand-in")
    add("--drain-timeout", type=float, help="seconds (default: twice the budget's time + 300)")
    add("--postgres-url", default=os.environ.get("BRIDGE_TEST_POSTGRES_URL") or DEFAULT_PG)
    add("--label", help="what the `bridge` on PYTHONPATH is, for the report")
    add("--json", type=Path, help="also write every run's numbers here")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally: stop what was started
    command = "python benchmarks/drain.py " + shlex.join(sys.argv[1:])
    if os.environ.get("PYTHONPATH"):  # another tree than the working one
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    runs = []
    with tempfile.TemporaryDirectory(prefix="bridge-drain-") as tmp:
        args.config = None
        if args.requests_per_minute is not None:
            args.config = Path(tmp) / "bridge.yaml"
            args.config.write_text(f"cortex:\n  requests_per_minute: {args.requests_per_minute}\n")
        for backend in args.backends:
            sqlite = backend == "sqlite" and args.sqlite_events
            events = args.sqlite_events if sqlite else args.events
            runs.append(measure(args, backend, events, Path(tmp) / backend))
            if args.json:
                args.json.write_text(json.dumps(runs, indent=1))
    section = report(args, runs, command)
    print(section)
    if not args.no_write:
        write_section(RESULTS, HEADING, section)
        print(f"written to {RESULTS}", file=sys.stderr)
    return 1 if any(r["problems"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
