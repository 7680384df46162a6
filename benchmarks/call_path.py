"""How many distinct bridge functions and modules one webhook event runs through (issue 15).

A signed GitHub ``deployment_status`` webhook POSTed to the receiver (the WSGI app ``serve``
runs, through Werkzeug's test client: no socket; its logs set up as ``serve`` sets them, JSON
lines at ``info``, written to the null device), stored in the outbox (SQLite), claimed by the
relay's worker, recorded in the stand-in Cortex over loopback, and its outcome stored. Every
Python function whose code lives under ``bridge/`` (the stand-in's own ``bridge/fakecortex``
left out) that runs in this thread is counted once, by ``sys.setprofile``. A first event warms
what is built once (the config, caches, the entity's history); the second is counted.

Four ways: to Cortex (until the create is answered) or through the settle, each with a
comprehension counted as part of its function or as one of its own. Goal (issue 15): at most
60 functions in at most 15 modules. Run:

    python benchmarks/call_path.py            # prints Markdown, writes it into RESULTS.md
    python benchmarks/call_path.py --list     # every function (through the settle), by module
    python benchmarks/call_path.py --list --comprehensions  # ... comprehensions apart
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import logs  # noqa: E402
from bridge.app import Runtime, create_app  # noqa: E402
from bridge.config import parse_config  # noqa: E402
from bridge.cortex import CortexClient  # noqa: E402
from bridge.fakecortex import FakeCortex  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.worker import Deliverer, Worker  # noqa: E402

BRIDGE = str(ROOT / "bridge")
STAND_IN = str(ROOT / "bridge" / "fakecortex")
SECRET = "call-path-secret"  # the benchmark's own
TOKEN = "call-path-token"  # the stand-in's
SAMPLE = ROOT / "tests" / "samples" / "github" / "deployment_status.success.json"
COMPREHENSIONS = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"}
SECTION = "## One webhook event's path through the bridge (issue 15)"


# Where the way to Cortex ends: the create's answer is back (what follows stores the outcome).
ANSWERED = "CortexClient.create_deploy"


class Calls:
    """The distinct bridge functions called while active, by module file; with
    ``comprehensions``, each comprehension and generator expression counted on its own; with
    ``until``, none after the bridge function of that name has returned."""

    def __init__(self, *, comprehensions: bool = False, until: str | None = None) -> None:
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.comprehensions = comprehensions
        self.until = until
        self.ended = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if self.ended:
            return
        path, name = frame.f_code.co_filename, frame.f_code.co_qualname
        if event == "return" and name == self.until and path.startswith(BRIDGE):
            self.ended = True
        if event != "call":
            return
        if not self.comprehensions and name.rsplit(".", 1)[-1] in COMPREHENSIONS:
            return  # part of the function it is written in
        if path.startswith(BRIDGE) and not path.startswith(STAND_IN):
            # A comprehension's own: its line tells two in one function apart.
            own = name.rsplit(".", 1)[-1] in COMPREHENSIONS
            self.seen[path].add(f"{name}:{frame.f_code.co_firstlineno}" if own else name)

    @property
    def functions(self) -> int:
        return sum(len(names) for names in self.seen.values())


def deliver_one(
    app: Any,
    worker: Worker,
    doc: dict[str, Any],
    calls: tuple[Calls, ...] = (),
    phases: tuple[Calls, Calls] | None = None,
) -> None:
    """POST ``doc`` signed, then deliver it; ``calls`` count throughout, ``phases`` the
    request and the delivery."""
    body = json.dumps(doc).encode()
    headers = {
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }
    client = app.test_client()
    receive, deliver = phases if phases is not None else (None, None)

    def profile(phase: Calls | None) -> None:
        if not calls:
            return

        def both(frame: FrameType, event: str, arg: Any) -> None:
            for each in calls:
                each(frame, event, arg)
            if phase is not None:
                phase(frame, event, arg)

        sys.setprofile(both)

    try:
        profile(receive)
        answer = client.post("/webhooks/github", data=body, headers=headers)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        profile(deliver)
        assert worker.run_once() == 1
    finally:
        sys.setprofile(None)


def measure(*, comprehensions: bool = False) -> tuple[Calls, Calls, Calls, Calls]:
    """One event's functions: in all, on the way to Cortex (until the create's answer), in
    the request, in the delivery."""
    doc = json.loads(SAMPLE.read_text())
    with FakeCortex(token=TOKEN) as cortex, tempfile.TemporaryDirectory() as tmp:
        routes = [{"match": {}, "entities": ["{repo}"], "payload_entities": ["payments-*"]}]
        config = parse_config({"cortex": {"url": cortex.url}, "routes": routes})
        store = Store.from_url(f"sqlite:///{Path(tmp) / 'bridge.db'}")
        runtime = Runtime(config=config, store=store, github_secret=SECRET)
        app = create_app(runtime)
        # As serve: every webhook taken, and every delivery, is a JSON line at info.
        logs.configure(secrets=(SECRET, TOKEN), level="info")
        sink = open(os.devnull, "w")  # noqa: SIM115 (closed below)
        handler = logging.getLogger("bridge").handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(sink)
        client = CortexClient(cortex.url, TOKEN)

        def now() -> datetime:
            return datetime.now(timezone.utc)

        worker = Worker(
            store,
            Deliverer(store, client, config, clock=now),
            config.delivery,
            owner="w",
            clock=now,
        )
        try:
            deliver_one(app, worker, doc)  # warm: config, caches, the entity's history
            first = len(cortex.all_deploys())
            second = copy.deepcopy(doc)
            second["deployment"]["id"] += 1
            second["deployment_status"]["id"] += 1
            calls, receive, deliver = (Calls(comprehensions=comprehensions) for _ in range(3))
            way = Calls(comprehensions=comprehensions, until=ANSWERED)
            deliver_one(app, worker, second, (calls, way), (receive, deliver))
            assert way.ended, f"{ANSWERED} never returned"
            assert len(cortex.all_deploys()) == 2 * first > 0
        finally:
            client.close()
            store.close()
            sink.close()
    return calls, way, receive, deliver


def section(
    calls: Calls, way: Calls, receive: Calls, deliver: Calls, *, each: Calls, each_way: Calls
) -> str:
    """RESULTS.md's section: ``each`` and ``each_way`` counted with comprehensions apart."""

    def shown(counted: Calls) -> str:
        return f"**{counted.functions} in {len(counted.seen)}**"

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    rows = sorted(calls.seen.items(), key=lambda item: (-len(item[1]), item[0]))
    table = "\n".join(
        f"| `{Path(path).relative_to(ROOT)}` | {len(names)} | {len(way.seen.get(path, ()))} |"
        for path, names in rows
    )
    after = sorted(
        name for path, names in calls.seen.items() for name in names - way.seen.get(path, set())
    )
    return f"""{SECTION}

Distinct bridge functions (and the modules they live in) that one signed GitHub
`deployment_status` webhook runs through: received, stored, claimed, recorded in the stand-in
Cortex, and the outcome stored (`sys.setprofile`, the second event of a run; the stand-in's own
code left out). Commit {commit}, {when}, Python {platform.python_version()}:

    python benchmarks/call_path.py

Goal (issue 15): at most 60 in at most 15. The issue measured 145 in 28 "on its way to Cortex"
before this round, with a script of its own. The count depends on where the span ends and on
how comprehensions count, so every way is given, beside the tree before this round (`0f4b32b^`,
measured once with this script's counting):

| comprehensions | span, from the receiver's WSGI app | before this round | now |
|---|---|---:|---:|
| part of their function | to Cortex (until the create is answered) | 122 in 27 | {shown(way)} |
| part of their function | through the settle (the outcome stored) | 131 in 27 | {shown(calls)} |
| each a function of its own | to Cortex | 139 in 27 | {shown(each_way)} |
| each a function of its own | through the settle | 148 in 27 | {shown(each)} |

After Cortex's answer run {", ".join(f"`{n}`" for n in after)}.
On Python 3.11 each comprehension and generator expression runs in a frame of its own (from
3.12 list, set and dict comprehensions run in their function's; `--comprehensions` lists them).
The receiver and the worker log as `serve` sets them up (a JSON line for every webhook taken
and every delivery): the logging is on the path (`bridge/logs.py`, `bridge/redact.py`).
The way closest to the issue's "145 in 28 on its way to Cortex" before this round is the third
(139 in 27): counted so, the goal is not met.

With comprehensions part of their function, through the settle, the receiver's request (until
the 202) runs {receive.functions} in {len(receive.seen)} modules and the worker's delivery
{deliver.functions} in {len(deliver.seen)}; a function both run counts once.

| module | functions | to Cortex |
|---|---:|---:|
{table}
"""


def write(text: str) -> None:
    path = ROOT / "benchmarks" / "RESULTS.md"
    doc = path.read_text()
    start = doc.find(SECTION)
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(SECTION))
        doc = doc[:start] + text + ("\n" + doc[end + 1 :] if end >= 0 else "")
    path.write_text(doc)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print every function, by module")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--comprehensions",
        action="store_true",
        help="list with each comprehension and generator expression as a function of its own",
    )
    args = parser.parse_args(argv)
    measured = measure()
    each = measure(comprehensions=True)
    text = section(*measured, each=each[0], each_way=each[1])
    calls, _, receive, deliver = each if args.comprehensions else measured
    print(text)
    if args.list:
        for path, names in sorted(calls.seen.items()):
            print(Path(path).relative_to(ROOT))
            for name in sorted(names):
                where = [
                    label
                    for label, phase in (("receive", receive), ("deliver", deliver))
                    if name in phase.seen.get(path, set())
                ]
                print(f"    {name}  [{'+'.join(where)}]")
    if not args.no_write:
        write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
