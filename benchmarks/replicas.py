"""Replicas sharing one PostgreSQL, beside one on SQLite: acks/s, ack latency, CPU per event.

For each configuration (one replica on SQLite; 1, 2 and 4 on PostgreSQL), in one run, on this
machine, over loopback:

1. receive: ``R`` replicas, each ``cortex-deploy-bridge serve --no-worker --workers 1
   --threads 4`` on a fresh database (a SQLite file, or a PostgreSQL schema of its own), take
   signed GitHub ``deployment_status`` webhooks from benchmarks/loadgen.py, closed loop, its
   connections spread over the replicas' ports round-robin (there is no load balancer);
   measured: stored acks/s, ack p50/p99, CPU per stored event;
2. deliver: the replicas stopped, ``R`` ``cortex-deploy-bridge worker --threads 2`` processes
   deliver the whole outbox with the shared budget off (``cortex.requests_per_minute: 0``)
   to a stand-in Cortex with no rate limit (``python -m bridge.fakecortex``, its own
   process); measured over the middle 80% of the deploys (start-up and tail left out):
   delivered/s and CPU per delivered event; checked: every deploy in Cortex exactly once.

One replica is one process (``--workers 1``), so the replica count is the process count:
one Python process uses one core at most (the GIL), so 1 -> 2 shows whether replicas add
throughput on the 2 cores here, and 4 what oversubscribing them costs; none of it says more
replicas scale past the machine. CPU comes from /proc: the bridge's own processes, and
PostgreSQL's backends serving them (found by ``application_name`` in ``pg_stat_activity``,
sampled every 0.25 s so that short-lived ones count too); PostgreSQL's shared background
processes (WAL writer, checkpointer) and the kernel's writeback are not included. Run by
hand (about 4 minutes; ``--quick`` about 1):

    python benchmarks/replicas.py
    python benchmarks/replicas.py --quick --no-write
    PYTHONPATH=/tmp/copy python benchmarks/replicas.py --label "commit abc1234"  # another tree

It prints a Markdown section and writes it into benchmarks/RESULTS.md under
"## Replicas (issue 4)" (that section only; other sections are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from chaos import DEFAULT_PG, Proc, outbox
from chaos import stored_keys as keys_in_cortex
from drain import (
    Sampler,
    database,
    expected_keys,
    first_at,
    post_webhooks,
    serve_argv,
    stand_in,
    start_stand_in,
    stop_procs,
    worker_argv,
)
from procs import (
    Server,
    busy_seconds,
    machine,
    own_cpu_seconds,
    process_cpu_seconds,
    wait_for_quiet,
    write_section,
)
from receiver import code_measured, serve_env

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADING = "## Replicas (issue 4)"
THREADS, WORKER_THREADS = 4, 2
MIDDLE = (0.1, 0.9)  # delivery measured between these shares of the deploys stored


class CpuMeter:
    """CPU seconds a phase cost: our processes by pid, PostgreSQL backends by application name.

    Processes already running at ``start()`` count from there; ones first seen later count
    from their birth (a backend's connection set-up is part of the cost). Sampled, so that a
    backend that exits between samples still counts up to its last sample.
    """

    def __init__(self, pids: Callable[[], list[int]], *, dsn: str | None, app: str) -> None:
        self.pids, self.app = pids, app
        self.conn = None
        if dsn is not None:
            import psycopg

            self.conn = psycopg.connect(dsn, autocommit=True)
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.ours: set[int] = set()
        self.lock = threading.Lock()

    def backends(self) -> list[int]:
        """PostgreSQL backends serving our processes now."""
        if self.conn is None:
            return []
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,)
        )
        return [int(pid) for (pid,) in rows]

    def start(self) -> None:
        """Count from now."""
        with self.lock:
            self.base.clear()
            self.last.clear()
            self.ours = set(self.pids())
            for pid in [*self.ours, *self.backends()]:
                self.base[pid] = self.last[pid] = process_cpu_seconds(pid) or 0.0

    def sample(self) -> dict[str, float]:
        """Read every process now: CPU seconds since ``start()``, ours and PostgreSQL's."""
        with self.lock:
            self.ours |= set(self.pids())
            for pid in [*self.ours, *self.backends()]:
                cpu = process_cpu_seconds(pid)
                if cpu is not None:
                    self.base.setdefault(pid, 0.0)
                    self.last[pid] = cpu
            spent = {pid: self.last[pid] - self.base[pid] for pid in self.last}
            ours = sum(v for pid, v in spent.items() if pid in self.ours)
            return {"cpu_ours": ours, "cpu_pg": sum(spent.values()) - ours}

    def close(self) -> None:
        """Close the look-up connection."""
        if self.conn is not None:
            self.conn.close()


def sampled(meter: CpuMeter, interval: float) -> tuple[threading.Event, threading.Thread]:
    """Sample ``meter`` every ``interval`` seconds until the event is set."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            meter.sample()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return stop, thread


def with_app(url: str, app: str) -> str:
    """The database URL, its connections named ``app`` in pg_stat_activity."""
    if not url.startswith("postgresql"):
        return url
    named = sa.make_url(url).update_query_dict({"application_name": app})
    return named.render_as_string(hide_password=False)


def plain_dsn(url: str) -> str:
    """A libpq URI from a SQLAlchemy PostgreSQL URL."""
    plain = sa.make_url(url).set(drivername="postgresql")
    return plain.render_as_string(hide_password=False)


# --- one configuration -------------------------------------------------------------------


def receive(
    args: argparse.Namespace,
    backend: str,
    replicas: int,
    workdir: Path,
    *,
    url: str,
    cortex: Proc,
) -> dict[str, Any]:
    """R replicas take the load; acks/s, latency, CPU per stored event."""
    app = f"bench-recv-{uuid.uuid4().hex[:8]}"
    env = serve_env(workdir, f"http://127.0.0.1:{cortex.port}")
    env["BRIDGE_DATABASE_URL"] = with_app(url, app)
    argv = serve_argv(workers=1, threads=THREADS, no_worker=True, config=None)
    servers = [
        Server(f"replica-{n}", argv, env, workdir / f"replica-{n}.log", workers=1)
        for n in range(replicas)
    ]
    servers[0].start("/readyz")  # it creates the schema; then the others, at once
    starting = [threading.Thread(target=s.start, args=("/readyz",)) for s in servers[1:]]
    for thread in starting:
        thread.start()
    for thread in starting:
        thread.join()
    meter = CpuMeter(
        lambda: [p for s in servers for p in s.worker_pids()],
        dsn=plain_dsn(args.postgres_url) if backend == "postgres" else None,
        app=app,
    )
    try:
        wait_for_quiet(max_seconds=args.quiet_wait)
        meter.start()
        stop, thread = sampled(meter, 0.25)
        busy0, child0 = busy_seconds(), own_cpu_seconds(resource.RUSAGE_CHILDREN)
        cortex0, t0 = process_cpu_seconds(_pid(cortex)) or 0.0, time.monotonic()
        result = post_webhooks(
            [s.port for s in servers],
            first=0,
            count=args.requests,
            warmup=args.warmup,
            connections=args.connections,
            prefix=f"replicas-{backend}-{replicas}",
        )
        stop.set()
        thread.join()
        cpu = meter.sample()
        wall = time.monotonic() - t0
        loadgen_cpu = own_cpu_seconds(resource.RUSAGE_CHILDREN) - child0
        cortex_cpu = (process_cpu_seconds(_pid(cortex)) or 0.0) - cortex0
        busy = busy_seconds() - busy0
    finally:
        meter.close()
        for server in servers:
            server.stop()
    events = args.warmup + args.requests  # warm-up included in the CPU, as receiver.py does
    other = busy - cpu["cpu_ours"] - cpu["cpu_pg"] - loadgen_cpu - cortex_cpu
    return {
        "acks_per_second": result["per_second"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "statuses": result["statuses"],
        "reopened": result["reopened"],
        "stored": events,
        "cpu_ms_ours": cpu["cpu_ours"] * 1000 / events,
        "cpu_ms_pg": cpu["cpu_pg"] * 1000 / events,
        "cores": (cpu["cpu_ours"] + cpu["cpu_pg"]) / wall,
        "other_cores": max(other, 0.0) / wall,
    }


def _pid(proc: Proc) -> int:
    assert proc.popen is not None
    return proc.popen.pid


def deliver(
    args: argparse.Namespace,
    backend: str,
    replicas: int,
    workdir: Path,
    *,
    url: str,
    cortex: Proc,
) -> dict[str, Any]:
    """R workers, budget off, drain the outbox; delivered/s and CPU per delivered event."""
    expected = args.warmup + args.requests
    app = f"bench-work-{uuid.uuid4().hex[:8]}"
    config = workdir / "no-budget.yaml"
    config.write_text("cortex:\n  requests_per_minute: 0\n")
    env = serve_env(workdir, f"http://127.0.0.1:{cortex.port}")
    env["BRIDGE_DATABASE_URL"] = with_app(url, app)
    argv = worker_argv(threads=WORKER_THREADS, config=config)
    workers = [Proc(f"worker-{n}", argv, env, workdir) for n in range(replicas)]
    meter = CpuMeter(
        lambda: [_pid(w) for w in workers if w.popen is not None],
        dsn=plain_dsn(args.postgres_url) if backend == "postgres" else None,
        app=app,
    )

    def extra() -> dict[str, float]:
        return {**meter.sample(), "cpu_cortex": process_cpu_seconds(_pid(cortex)) or 0.0}

    try:
        wait_for_quiet(max_seconds=args.quiet_wait)
        meter.start()
        sampler = Sampler(cortex, 0.25, extra=lambda: {**extra(), "busy": busy_seconds()})
        sampler.start()
        launched = time.monotonic()
        for worker in workers:
            worker.start()
        deadline = launched + args.drain_timeout
        while time.monotonic() < deadline and sampler.samples[-1]["deploys"] < expected:
            time.sleep(0.25)
        time.sleep(0.5)  # a late second record would show now
        samples = sampler.finish()
        counts, _ = outbox(url)
        held = keys_in_cortex(stand_in(cortex, "deploys")["deploys"])
    finally:
        stop_procs(workers)
        meter.close()
    keys = expected_keys(0, expected)
    return {
        **middle(samples, expected),
        "drain_seconds": (first_at(samples, "deploys", expected) or samples[-1]["at"]) - launched,
        "exactly_once": all(held.get(k) == 1 for k in keys) and len(held) == len(keys),
        "dead": counts["dead"],
        "waiting": sum(counts[s] for s in ("queued", "retrying", "delivering")),
    }


def middle(samples: list[dict[str, float]], expected: int) -> dict[str, float]:
    """Rates and CPU per deploy between MIDDLE[0] and MIDDLE[1] of the deploys stored."""
    lo = next((s for s in samples if s["deploys"] >= MIDDLE[0] * expected), samples[0])
    hi = next((s for s in samples if s["deploys"] >= MIDDLE[1] * expected), samples[-1])
    done, wall = max(hi["deploys"] - lo["deploys"], 1), max(hi["at"] - lo["at"], 1e-9)
    ours, pg = hi["cpu_ours"] - lo["cpu_ours"], hi["cpu_pg"] - lo["cpu_pg"]
    cortex = hi["cpu_cortex"] - lo["cpu_cortex"]
    other = (hi["busy"] - lo["busy"]) - ours - pg - cortex
    return {
        "delivered_per_second": done / wall,
        "cpu_ms_ours": ours * 1000 / done,
        "cpu_ms_pg": pg * 1000 / done,
        "cpu_ms_cortex": cortex * 1000 / done,
        "cores": (ours + pg) / wall,
        "other_cores": max(other, 0.0) / wall,
    }


def one_config(args: argparse.Namespace, backend: str, replicas: int, tmp: Path) -> dict[str, Any]:
    """Receive, then deliver, on a fresh database and a fresh stand-in."""
    workdir = tmp / f"{backend}-{replicas}"
    workdir.mkdir(parents=True)
    print(f"{backend} x {replicas}", file=sys.stderr, flush=True)
    cortex = start_stand_in(workdir, rate_limit=0)
    try:
        with database(backend, workdir, args.postgres_url) as url:
            received = receive(args, backend, replicas, workdir, url=url, cortex=cortex)
            delivered = deliver(args, backend, replicas, workdir, url=url, cortex=cortex)
    finally:
        stop_procs([cortex])
    return {"backend": backend, "replicas": replicas, "recv": received, "deliver": delivered}


# --- the report --------------------------------------------------------------------------

ROWS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("stored acks/s", lambda r: r["recv"]["acks_per_second"], ".0f"),
    ("  ack p50 (ms)", lambda r: r["recv"]["p50_ms"], ".1f"),
    ("  ack p99 (ms)", lambda r: r["recv"]["p99_ms"], ".1f"),
    ("  CPU per stored event, replicas (ms)", lambda r: r["recv"]["cpu_ms_ours"], ".2f"),
    ("  + PostgreSQL backends (ms)", lambda r: r["recv"]["cpu_ms_pg"], ".2f"),
    ("  = total (ms)", lambda r: r["recv"]["cpu_ms_ours"] + r["recv"]["cpu_ms_pg"], ".2f"),
    ("  cores in use (replicas + backends)", lambda r: r["recv"]["cores"], ".2f"),
    ("  other processes' cores meanwhile", lambda r: r["recv"]["other_cores"], ".2f"),
    ("delivered/s, budget off", lambda r: r["deliver"]["delivered_per_second"], ".0f"),
    ("  CPU per delivered event, workers (ms)", lambda r: r["deliver"]["cpu_ms_ours"], ".2f"),
    ("  + PostgreSQL backends (ms)", lambda r: r["deliver"]["cpu_ms_pg"], ".2f"),
    ("  = total (ms)", lambda r: r["deliver"]["cpu_ms_ours"] + r["deliver"]["cpu_ms_pg"], ".2f"),
    ("  stand-in Cortex, not in the total (ms)", lambda r: r["deliver"]["cpu_ms_cortex"], ".2f"),
    ("  cores in use (workers + backends)", lambda r: r["deliver"]["cores"], ".2f"),
    ("  other processes' cores meanwhile", lambda r: r["deliver"]["other_cores"], ".2f"),
    ("  whole drain (s)", lambda r: r["deliver"]["drain_seconds"], ".1f"),
    ("  every deploy in Cortex exactly once", lambda r: r["deliver"]["exactly_once"], ""),
]


def _cell(value: Any, fmt: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return format(value, fmt)


def report(args: argparse.Namespace, runs: list[dict[str, Any]], command: str, took: float) -> str:
    """The Markdown section."""
    names = [f"{r['backend']} x {r['replicas']}" for r in runs]
    mode = "quick mode, " if args.quick else ""
    lines = [
        HEADING,
        "",
        f"Machine: {machine()}. Code: {code_measured(args.label)}. One run ({mode}{took:.0f} s):",
        "",
        f"    {command}",
        "",
        f"A replica is `serve --no-worker --workers 1 --threads {THREADS}` (one process); "
        f"the load is {args.warmup} warm-up + {args.requests} signed GitHub "
        f"`deployment_status` webhooks, closed loop on {args.connections} keep-alive "
        f"connections spread round-robin over the replicas' ports. Then as many "
        f"`worker --threads {WORKER_THREADS}` processes as replicas deliver the outbox with "
        f"`cortex.requests_per_minute: 0` to a stand-in Cortex with no rate limit; delivery "
        f"is measured between {MIDDLE[0]:.0%} and {MIDDLE[1]:.0%} of the deploys stored. CPU "
        f"per stored event counts the warm-up too. PostgreSQL backends are attributed by "
        f"`application_name`; its WAL writer and checkpointer, and the kernel's writeback, "
        f"are not counted. Each configuration has a fresh database (a PostgreSQL schema of "
        f"its own, or a SQLite file in WAL with synchronous=FULL) and a fresh stand-in. The "
        f"load generator and the stand-in share the 2 cores.",
        "",
        "| measurement | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for title, get, fmt in ROWS:
        lines.append(f"| {title} | " + " | ".join(_cell(get(r), fmt) for r in runs) + " |")
    problems = _problems(runs)
    if problems:
        lines += ["", "Anomalies: " + "; ".join(problems) + "."]
    return "\n".join(lines) + "\n"


def _problems(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in runs:
        name = f"{r['backend']} x {r['replicas']}"
        other = {s: n for s, n in r["recv"]["statuses"].items() if s != "202"}
        if other:
            out.append(f"{name}: answers other than 202: {other}")
        if r["recv"]["reopened"]:
            out.append(f"{name}: {r['recv']['reopened']} connections reopened")
        if r["deliver"]["dead"] or r["deliver"]["waiting"]:
            out.append(
                f"{name}: outbox left {r['deliver']['waiting']} waiting, "
                f"{r['deliver']['dead']} dead"
            )
    return out


def main() -> int:
    """Measure each configuration, print the section, write it into RESULTS.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--replicas", type=int, nargs="+", default=[1, 2, 4], help="on postgres (1 2 4)")
    add("--no-sqlite", action="store_true", help="leave out the one replica on SQLite")
    add("--requests", type=int, default=2000, help="measured webhooks (default: 2000)")
    add("--warmup", type=int, default=200)
    add("--connections", type=int, default=16)
    add("--quick", action="store_true", help="500 webhooks after 100 warm-up: a check, ~1 min")
    add("--quiet-wait", type=float, default=10.0, help="seconds to wait for quiet, at most")
    add("--drain-timeout", type=float, default=180.0, help="seconds for each delivery phase")
    add("--postgres-url", default=os.environ.get("BRIDGE_TEST_POSTGRES_URL") or DEFAULT_PG)
    add("--label", help="what the `bridge` on PYTHONPATH is, for the report")
    add("--json", type=Path, help="also write every configuration's numbers here")
    add("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.warmup = 500, 100
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally: stop what was started
    command = "python benchmarks/replicas.py " + shlex.join(sys.argv[1:])
    if os.environ.get("PYTHONPATH"):  # another tree than the working one
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    configs = ([] if args.no_sqlite else [("sqlite", 1)]) + [("postgres", n) for n in args.replicas]
    started, runs = time.monotonic(), []
    with tempfile.TemporaryDirectory(prefix="bridge-replicas-") as tmp:
        for backend, replicas in configs:
            runs.append(one_config(args, backend, replicas, Path(tmp)))
            if args.json:
                args.json.write_text(json.dumps(runs, indent=1))
    section = report(args, runs, command, time.monotonic() - started)
    print(section)
    if not args.no_write:
        write_section(RESULTS, HEADING, section)
        print(f"written to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
