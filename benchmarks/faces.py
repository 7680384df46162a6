"""Cortex requests per deploy when every face looks in Cortex first (issue 15).

The relay looks in Cortex before creating a record it did not make itself; this measures what
that costs, on the stand-in Cortex (bridge.fakecortex, over loopback), with the relay's worker
in this process on a SQLite file:

1. backlog: ``--backlog`` deploys (default 5,000) over ``--entities`` entities, all queued
   before the worker starts (the relay was down), then drained;
2. steady state: ``--steady`` deploys (default 200) one at a time: each queued, drained, then
   the next (no backlog: every deploy looks in Cortex afresh), after one warm-up deploy not
   counted (a new relay checks its first create on a pair once);
3. the same steady state with the Action beside the relay (each deploy recorded by the Action
   first, then delivered by the relay): the requests of both faces, per deploy.

Reported per case: the requests by method, requests per deploy and the ratio to the floor (one
create per deploy), and that Cortex holds exactly one record per deploy. Targets (issue 15):
backlog <= 1.10, steady state <= 2.0. Run:

    python benchmarks/faces.py                # prints Markdown, writes it into RESULTS.md
    python benchmarks/faces.py --backlog 500 --no-write
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.cli import main as cli  # noqa: E402
from bridge.config import Route, parse_config  # noqa: E402
from bridge.cortex import CortexClient  # noqa: E402
from bridge.fakecortex import FakeCortex  # noqa: E402
from bridge.mapping import deploy_key, key_of  # noqa: E402
from bridge.model import DeployEvent, DeployRef, Status, check_deploy  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.worker import Deliverer, Worker  # noqa: E402

TOKEN = "bench-token"  # the stand-in's
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
SECTION = "## Faces converge: Cortex requests per deploy (issue 15)"


def event(n: int, entity: str) -> DeployEvent:
    """Deploy ``n`` of ``entity``: one an hour apart per entity, a run of its own."""
    return DeployEvent(
        source="github",
        repository=f"acme/{entity}",
        event="deployment_status",
        ref=DeployRef("run", f"{9_000_000 + n}/1"),
        status=Status.SUCCEEDED,
        timestamp=START + timedelta(minutes=n),
        title=f"Deploy {n}",
        sha=f"{n:040x}",
        environment="production",
    )


class Relay:
    """The relay's worker on a SQLite file, as `serve` runs it."""

    def __init__(self, cortex: FakeCortex, directory: Path) -> None:
        self.store = Store.from_url(f"sqlite:///{directory / 'bridge.db'}")
        self.config = parse_config({"cortex": {"url": cortex.url}})
        self.client = CortexClient(cortex.url, TOKEN)
        deliverer = Deliverer(self.store, self.client, self.config, clock=self.now)
        self.worker = Worker(
            self.store, deliverer, self.config.delivery, owner="bench", clock=self.now
        )

    @staticmethod
    def now() -> datetime:
        return datetime.now(timezone.utc)

    def queue(self, n: int, entity: str) -> None:
        made = event(n, entity)
        route = Route((entity,), "production", "routes[0]")
        checked = check_deploy(made, route.entities)  # as ingest checks it before storing
        self.store.enqueue(
            dedupe_key=f"bench:{entity}:{n}",
            source="github",
            event_name="deployment_status",
            payload={"event": checked.stored, "entities": list(route.entities), "rule": route.rule},
            now=self.now(),
            group_key=deploy_key(made),
        )

    def drain(self) -> None:
        while self.worker.run_once():
            pass
        counts = self.store.counts()
        assert counts["delivered"] == sum(counts.values()), counts

    def close(self) -> None:
        self.client.close()
        self.store.close()


def action(cortex: FakeCortex, n: int, entity: str) -> None:
    """The Action step of deploy ``n`` (the same run the relay's webhook names)."""
    made = event(n, entity)
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": made.repository,
        "GITHUB_SHA": made.sha or "",
        "GITHUB_RUN_ID": made.ref.id.split("/")[0],
        "GITHUB_RUN_ATTEMPT": "1",
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex.url,
        "INPUT_ENTITY-TAG": entity,
        "INPUT_ENVIRONMENT": "production",
        "INPUT_TIMESTAMP": made.timestamp.isoformat(),
    }
    assert cli(["action"], environ) == 0


def measure(case: str, deploys: int, run: Any, warm_up: Any = None) -> dict[str, Any]:
    """Run ``run``, counting Cortex's requests from after ``warm_up`` (its deploys are checked
    for doubles with the others, but neither its requests nor its deploys are counted)."""
    with FakeCortex(token=TOKEN) as cortex, tempfile.TemporaryDirectory() as tmp:
        relay = Relay(cortex, Path(tmp))
        try:
            if warm_up is not None:
                warm_up(relay, cortex)
            before = len(cortex.received)
            warmed = len(cortex.all_deploys())
            started = time.perf_counter()
            run(relay, cortex)
        finally:
            relay.close()
        seconds = time.perf_counter() - started
        methods = Counter(r.method for r in cortex.received[before:])
        keys = Counter(key_of(d) for d in cortex.all_deploys())
    total = sum(methods.values())
    return {
        "case": case,
        "deploys": deploys,
        "requests": dict(sorted(methods.items())),
        "per_deploy": total / deploys,
        "once": len(keys) == deploys + warmed and set(keys.values()) == {1},
        "seconds": seconds,
    }


def backlog(count: int, entities: int) -> dict[str, Any]:
    def run(relay: Relay, cortex: FakeCortex) -> None:
        for n in range(count):
            relay.queue(n, f"svc-{n % entities}")
        relay.drain()

    return measure(f"backlog of {count:,} over {entities} entities", count, run)


def steady(count: int, *, with_action: bool) -> dict[str, Any]:
    def run(relay: Relay, cortex: FakeCortex) -> None:
        for n in range(1, count + 1):
            if with_action:
                action(cortex, n, "svc-0")
            relay.queue(n, "svc-0")
            relay.drain()

    def warm_up(relay: Relay, cortex: FakeCortex) -> None:
        # Deploy 0, not counted: a new relay's first create on a pair is checked after (it
        # cannot tell yet whether another face records there), once (docs/delivery.md).
        if with_action:
            action(cortex, 0, "svc-0")
        relay.queue(0, "svc-0")
        relay.drain()

    label = "steady, one at a time" + (", Action then relay" if with_action else "")
    return measure(label, count, run, warm_up)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | deploys | GET | POST | PUT | DELETE | requests/deploy | ratio to 1 create "
        "| one record each | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        r = row["requests"]
        lines.append(
            f"| {row['case']} | {row['deploys']:,} | {r.get('GET', 0):,} | {r.get('POST', 0):,} "
            f"| {r.get('PUT', 0):,} | {r.get('DELETE', 0):,} | {row['per_deploy']:.3f} "
            f"| {row['per_deploy']:.2f}x | {'yes' if row['once'] else '**no**'} "
            f"| {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def section(rows: list[dict[str, Any]], argv: list[str]) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    return f"""{SECTION}

Every face looks in Cortex before it creates a record it did not make (issue 15); the relay
shares one search per entity and environment among the deliveries it claims together and,
through a backlog, the batches that follow (bridge/worker.py), so the lookup costs a
backlog little and a lone deploy one request. Stand-in Cortex over loopback, the relay's
worker in-process on a SQLite file, rollback detection on (one listing per entity and
environment, once). The steady cases count from after one warm-up deploy: a new relay's first
create on an entity and environment is checked after, once (3 requests). Run on {when},
{platform.machine()} {platform.system()}, Python {platform.python_version()}, 2 vCPUs shared
with other work:

    python benchmarks/faces.py {" ".join(argv)}

{table(rows)}

Targets: backlog <= 1.10 requests per deploy, steady state one at a time <= 2.0 (the floor is
one create). With the Action beside the relay, the Action's search, create and check after
it (3) plus the relay's search that finds the record (1) make 4 per deploy: both faces, one
record. The backlog's GETs depend on how long it runs: a search serves the batches that follow
for 30 s (LISTING_SECONDS), so a slower run reads each entity once more (a 46 s run: 30 GETs).
"""


def write(text: str) -> None:
    path = ROOT / "benchmarks" / "RESULTS.md"
    doc = path.read_text()
    start = doc.find(SECTION)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + (doc[end + 1 :] if end >= 0 else "")
    path.write_text(doc)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--entities", type=int, default=10)
    parser.add_argument("--steady", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    rows = [
        backlog(args.backlog, args.entities),
        steady(args.steady, with_action=False),
        steady(max(args.steady // 4, 1), with_action=True),
    ]
    text = section(rows, argv)
    print(text)
    if not args.no_write:
        write(text)
    ok = rows[0]["per_deploy"] <= 1.10 and rows[1]["per_deploy"] <= 2.0
    return 0 if ok and all(row["once"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
