"""The stored webhook's CPU, in process: one signed GitHub ``deployment_status`` success
(answered 202, its row committed in SQLite) per request, through ``create_app``'s WSGI app.

No sockets, no gunicorn: Werkzeug's test client posts ``--requests`` distinct events to an app
on a fresh SQLite database (the shipped pragmas: WAL, synchronous=FULL), and
``time.process_time`` is read around each request (every thread of the process: the store's
group commit too). Each tree runs in a process of its own (``PYTHONPATH``), rounds taking
turns, so that the trees share the machine's state; the figure is the median over rounds of
each round's median request. Run by hand:

    mkdir -p /tmp/t-base && git archive 6950e4c bridge | tar -x -C /tmp/t-base
    python benchmarks/stored_cpu.py --baseline /tmp/t-base      # this tree against it
    python benchmarks/stored_cpu.py --baseline /tmp/t-base --tree before=/tmp/t-main
    python benchmarks/stored_cpu.py --requests 200 --rounds 3   # a quick look

It prints the figures (microseconds of CPU per stored request); nothing is written.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "tests" / "samples" / "github" / "deployment_status.success.json"
SECRET = "bench-webhook-secret"
WARM_UP = 200  # requests before the first round, not measured


def bodies(first: int, count: int) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` distinct signed stored webhooks (numbered from ``first``) and their headers."""
    sys.path.insert(0, str(HERE))
    import loadgen  # benchmarks/loadgen.py: the load generators' events

    sample = json.loads(SAMPLE.read_text())
    out = []
    for n in range(first, first + count):
        body = json.dumps(loadgen.stamp(sample, n, "stored")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/bench",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": f"stored-cpu-{n}",
            "X-GitHub-Hook-ID": "424242",
            "X-Hub-Signature-256": "sha256="
            + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        }
        out.append((body, headers))
    return out


def child(requests: int, rounds: int) -> None:
    """Measure the tree on ``sys.path`` one round at a time, as the parent asks (stdin)."""
    from bridge.app import Runtime, create_app
    from bridge.config import parse_config
    from bridge.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.from_url(f"sqlite:///{tmp}/bridge.db")
        client = create_app(
            Runtime(config=parse_config({}), store=store, github_secret=SECRET)
        ).test_client()
        sent = [0]

        def post(count: int) -> list[float]:
            spent = []
            for body, headers in bodies(sent[0], count):
                before = time.process_time()
                answer = client.post("/webhooks/github", data=body, headers=headers)
                spent.append(time.process_time() - before)
                if answer.status_code != 202:
                    raise SystemExit(f"answered {answer.status_code}: {answer.get_data()!r}")
            sent[0] += count
            return spent

        post(WARM_UP)
        print("ready", flush=True)
        for _ in range(rounds):
            sys.stdin.readline()
            print(json.dumps(post(requests)), flush=True)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="per round (400)")
    parser.add_argument("--rounds", type=int, default=15, help="(15)")
    parser.add_argument("--baseline", type=Path, help="a tree holding bridge/ to compare")
    parser.add_argument(
        "--tree", action="append", default=[], help="LABEL=DIR: another tree to measure"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.requests, args.rounds)
        return
    trees: dict[str, Path] = {"this tree": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    for given in args.tree:
        label, _, tree = given.partition("=")
        trees[label] = Path(tree).resolve()
    procs: dict[str, subprocess.Popen[str]] = {}
    for label, tree in trees.items():
        env = {**os.environ, "PYTHONPATH": str(tree)}
        procs[label] = subprocess.Popen(
            [sys.executable, __file__, "--child", "--requests", str(args.requests),
             "--rounds", str(args.rounds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree,
        )  # fmt: skip
    medians: dict[str, list[float]] = {label: [] for label in trees}
    for proc in procs.values():
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for _ in range(args.rounds):
        for label, proc in procs.items():  # one tree at a time: the others wait on stdin
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            spent: list[Any] = json.loads(proc.stdout.readline())
            medians[label].append(statistics.median(spent) * 1e6)
    for proc in procs.values():
        proc.wait()
    for label, values in medians.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{label}: median {statistics.median(values):.0f} us per stored request ({shown})")
    if "baseline" in medians:
        for label, values in medians.items():
            ratio = statistics.median(values) / statistics.median(medians["baseline"])
            print(f"ratio {label} / baseline: {ratio:.2f}x")


if __name__ == "__main__":
    main()
