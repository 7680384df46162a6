"""How long one claim takes as the outbox grows: 1k, 10k and 100k events queued.

A worker's claim is the one query every delivery goes through, and after an outage it runs
against the whole backlog; its cost must not grow with the depth of the queue. Each depth is
measured on a fresh database, in steady state: every claim (``limit=10``, as the worker
claims) is timed alone, then the claimed events are completed and as many new ones queued,
so the depth stays put while delivered rows pile up below the queued ones, as they do in a
real outbox. ``--delivered`` puts that many delivered rows in first (a long-lived outbox).

Run by hand, from the repository root:

    python benchmarks/claim_latency.py --postgres postgresql+psycopg://postgres@127.0.0.1/test

and copy the table it prints into benchmarks/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.store import DELIVERED, QUEUED, Store
from bridge.store.engine import create_engine
from bridge.store.schema import deliveries

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
PAYLOAD = json.dumps(
    {
        "event": {"source": "github", "repository": "acme/payments-api", "title": "Deploy"},
        "entities": ["payments-api"],
        "rule": "default",
    }
)
BATCH = 10  # what a worker claims at once


@contextmanager
def database(backend: str, postgres_url: str) -> Iterator[str]:
    """A URL no one else uses: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="claim-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'bridge.db'}"
        return
    name = f"bridge_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        scoped = sa.make_url(postgres_url).update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def rows(start: int, count: int, status: str) -> list[dict[str, Any]]:
    """Outbox rows as enqueue writes them; delivered ones as complete leaves them."""
    done = status == DELIVERED
    return [
        {
            "dedupe_key": f"github:bench:{n}",
            "source": "github",
            "event_name": "deployment_status",
            "group_key": f"github:acme/payments-api:deployment:{n}",
            "received_at": T0,
            "status": status,
            "attempts": 1 if done else 0,
            "next_attempt_at": None if done else T0,
            "payload": PAYLOAD,
            "results": "{}",
            "updated_at": T0,
            "delivered_at": T0 if done else None,
        }
        for n in range(start, start + count)
    ]


def fill(url: str, *, delivered: int, queued: int) -> None:
    """Bulk-load the outbox in large transactions (enqueue's one commit per row is slower)."""
    engine = create_engine(url)
    chunk = 5000
    with engine.begin() as conn:
        for start in range(0, delivered, chunk):
            conn.execute(deliveries.insert(), rows(start, min(chunk, delivered - start), DELIVERED))
        for start in range(delivered, delivered + queued, chunk):
            count = min(chunk, delivered + queued - start)
            conn.execute(deliveries.insert(), rows(start, count, QUEUED))
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE bridge_deliveries"))  # as autovacuum soon would
        else:
            conn.execute(sa.text("ANALYZE"))
    engine.dispose()


def measure(url: str, *, claims: int, first_new: int) -> list[float]:
    """Seconds per claim, each followed (untimed) by settling it and refilling the queue."""
    timings = []
    with Store.from_url(url) as store:
        # Warm the connection pool and the caches before timing.
        for delivery in store.claim(owner="warm", now=T0, lease_seconds=60, limit=BATCH):
            store.settle(delivery.id, "delivered", owner="warm", results={}, now=T0)
        next_key = first_new
        now = T0 + timedelta(seconds=1)
        for _ in range(claims):
            started = time.perf_counter()
            claimed = store.claim(owner="bench", now=now, lease_seconds=60, limit=BATCH)
            timings.append(time.perf_counter() - started)
            assert len(claimed) == BATCH, "the queue ran dry"
            for delivery in claimed:
                store.settle(delivery.id, "delivered", owner="bench", results={}, now=now)
                store.enqueue(
                    dedupe_key=f"github:bench:{next_key}",
                    source="github",
                    event_name="deployment_status",
                    payload=json.loads(PAYLOAD),
                    now=now,
                    group_key=f"github:acme/payments-api:deployment:{next_key}",
                )
                next_key += 1
    return timings


def main() -> int:
    """Measure each backend at each depth; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--claims", type=int, default=300, help="timed claims per depth")
    parser.add_argument("--delivered", type=int, default=0, help="delivered rows loaded first")
    parser.add_argument("--postgres", default="", metavar="URL", help="also measure PostgreSQL")
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    backends = (["sqlite"] if args.sqlite else []) + (["postgresql"] if args.postgres else [])
    print(f"python {platform.python_version()}, {platform.system()} {platform.machine()}")
    print(f"{args.claims} claims of {BATCH} per depth; {args.delivered} delivered rows first\n")
    print("| backend | queued | median ms | p90 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for backend in backends:
        for depth in args.depths:
            with database(backend, args.postgres) as url:
                Store.from_url(url).close()
                fill(url, delivered=args.delivered, queued=depth)
                timings = measure(url, claims=args.claims, first_new=args.delivered + depth)
            ms = sorted(t * 1000 for t in timings)
            p90, p99 = ms[int(len(ms) * 0.9)], ms[min(int(len(ms) * 0.99), len(ms) - 1)]
            print(
                f"| {backend} | {depth:,} | {statistics.median(ms):.2f} | {p90:.2f} | {p99:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
