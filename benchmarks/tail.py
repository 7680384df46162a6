"""The receiver's tail at saturation, under wrk: ignored and stored events, beside bare Flask.

wrk (Debian's `wrk`) keeps every connection busy: it sends the next request the moment it
reads an answer, as a load balancer's pooled connections and GitHub's bursts do, and so
finds what a closed-loop client that waits its turn does not: a connection served back to
back while the others wait (issue 16: ignored p50 0.4 ms, p99 443 ms).

In each run, on a fresh SQLite database per server: `serve --no-worker --workers 2` of this
tree, the same of a baseline tree when ``--baseline`` names one (a copy of another commit's
``bridge``, run with PYTHONPATH), and bare Flask (benchmarks/bare_flask.py) under the same
gunicorn settings; then, each after a wait for quiet, ignored events to each server and
stored events to each `serve` (every one a new event: the warm-up sends others, so that no
measured answer is a cheap "duplicate"). Run by hand:

    git worktree add /tmp/base <commit> && python benchmarks/tail.py --baseline /tmp/base
    python benchmarks/tail.py --runs 1 --no-write      # a quick look

``--tree NAME=DIR`` (repeatable) serves more trees beside them in the same run (e.g. main
before a change: ``mkdir /tmp/main && git archive main bridge | tar -x -C /tmp/main``).

It prints a Markdown section and writes it into benchmarks/RESULTS.md under
"## Receiver tail (issue 16)".
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import loadgen  # benchmarks/loadgen.py
from procs import Server, busy_seconds, machine, wait_for_quiet, write_section
from receiver import SAMPLE, SECRET, WORKERS, bare_command, serve_command, serve_env

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADING = "## Receiver tail (issue 16)"
MEASURES = (("p50_ms", "p50 (ms)", ".2f"), ("p99_ms", "p99 (ms)", ".1f"),
            ("per_second", "answers/s", ".0f"),
            ("cpu_ms", "server CPU ms/answer", ".3f"))  # fmt: skip


# The warm-up's stored events are numbered from here: none is one the measured load sends (a
# repeat is answered 200 "duplicate" without a commit, cheaper than a stored event).
WARM_UP_FIRST = 1_000_000


# Lua allows a function at most 65,536 constants (each request has three of its own): the
# requests are made by functions of this many each. Past that limit wrk would not load the
# script and would send its own GET instead, every answer a 405.
LUA_CHUNK = 5000


def lua_script(path: Path, kind: str, count: int, first: int = 0) -> Path:
    """A wrk script sending ``count`` distinct signed webhooks of ``kind`` (numbered from
    ``first``), round-robin."""
    sample = json.loads(SAMPLE.read_text())
    lines = ["local reqs = {}"]
    for n in range(first, first + count):
        body = json.dumps(loadgen.stamp(sample, n, kind))
        sig = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": f"tail-{kind}-{n}",
            "X-GitHub-Hook-ID": "424242",
            "X-Hub-Signature-256": sig,
        }
        table = ",".join(f"[{json.dumps(k)}]={json.dumps(v)}" for k, v in headers.items())
        if n % LUA_CHUNK == first % LUA_CHUNK:  # a function of its own every LUA_CHUNK
            if n != first:
                lines.append("end make() end")
            lines.append("do local function make()")
        lines.append(
            f"reqs[#reqs+1] = wrk.format('POST', '/webhooks/github', {{{table}}}, "
            f"{json.dumps(body)})"
        )
    lines.append("end make() end")
    # Each wrk thread takes every other request, from its own starting point.
    lines.append(
        "local i, threads = 0, 0\n"
        "function setup(thread) threads = threads + 1; thread:set('first', threads) end\n"
        "function init(args) i = first end\n"
        "function request() i = i + 2; return reqs[(i % #reqs) + 1] end\n"
    )
    path.write_text("\n".join(lines))
    return path


def wrk(
    port: int,
    script: Path,
    *,
    warm_up: Path | None = None,
    seconds: float,
    connections: int,
    threads: int,
    cpu: Callable[[], float] | None = None,
) -> dict:
    """One wrk run after a 2 s warm-up (of ``warm_up``, else ``script`` too): p50/p99 (ms),
    requests/s, answers other than 2xx, how many requests were sent (``answers``);
    with ``cpu`` (the server's CPU seconds so far), its CPU milliseconds per answer: what
    another process's load on a shared machine moves least."""
    url = f"http://127.0.0.1:{port}"
    base = ["wrk", f"-t{threads}", f"-c{connections}", "-s", str(script)]
    warm = ["wrk", f"-t{threads}", f"-c{connections}", "-s", str(warm_up or script)]
    subprocess.run([*warm, "-d2s", url], capture_output=True, check=True, timeout=60)
    before = busy_seconds()
    cpu_before = cpu() if cpu else 0.0
    t0 = time.monotonic()
    done = subprocess.run(
        [*base, f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    wall = time.monotonic() - t0
    used = cpu() - cpu_before if cpu else float("nan")
    out = done.stdout
    answers = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return {
        "answers": answers,
        "cpu_ms": used / answers * 1000,
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
        "per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),  # type: ignore[index]
        "not_2xx": int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0,
        "machine_cores": (busy_seconds() - before) / wall,
    }


def _latency(out: str, which: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(which)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def one_run(
    args: argparse.Namespace, tmp: Path, scripts: dict[str, Path], index: int = 0
) -> dict[str, Any]:
    """Every server on a fresh database; each load after a wait for quiet, the servers'
    order turned by one each run (``index``) so none is always first after a quiet wait."""
    trees: dict[str, Path | None] = {}
    if args.baseline:
        trees["baseline"] = args.baseline
    trees.update(args.tree)  # other trees beside it (--tree NAME=DIR)
    trees["serve"] = None
    servers: dict[str, Server] = {}
    try:
        for name, tree in trees.items():
            where = tmp / name
            where.mkdir(parents=True, exist_ok=True)
            env = serve_env(where, "http://127.0.0.1:9")
            if tree:
                env["PYTHONPATH"] = str(tree)
            command = [*serve_command(no_worker=True), "--skip-token-check"]
            servers[name] = Server(name, command, env, where / "serve.log", workers=WORKERS)
            servers[name].start("/readyz")
        bare_env = {"PATH": __import__("os").environ["PATH"]}
        servers["bare"] = Server("bare", bare_command(), bare_env, tmp / "bare.log", workers=2)
        servers["bare"].start("/healthz")
        out: dict[str, Any] = {}
        names = list(servers)
        names = names[index % len(names) :] + names[: index % len(names)]
        loads = [(name, "ignored") for name in names]
        loads += [(name, "stored") for name in names if name in trees]
        for name, kind in loads:
            busy = wait_for_quiet(max_seconds=args.quiet_wait)
            result = wrk(
                servers[name].port,
                scripts[kind],
                warm_up=scripts.get(f"{kind}-warm-up"),
                seconds=args.seconds,
                connections=args.connections,
                threads=args.threads,
                cpu=servers[name].cpu_seconds,
            )
            result["busy_before"] = busy
            out[f"{kind}_{name}"] = result
            print(f"  {kind} {name}: {result}", file=sys.stderr, flush=True)
        return out
    finally:
        for server in servers.values():
            server.stop()


def report(args: argparse.Namespace, runs: list[dict[str, Any]], seconds: float) -> str:
    """The Markdown section: medians of runs, and each run's value."""
    order = ["baseline", *(name for name, _ in args.tree), "serve", "bare"]
    keys = [
        f"{kind}_{name}"
        for kind in ("ignored", "stored")
        for name in order
        if all(f"{kind}_{name}" in r for r in runs)
    ]
    lines = [
        HEADING,
        "",
        f"Machine: {machine()}. Code: this tree"
        + (
            f"; baseline: `bridge` from {args.baseline_label or args.baseline}"
            if args.baseline
            else ""
        )
        + "".join(f"; {name}: `bridge` from {where}" for name, where in args.tree)
        + ".",
        "",
        f"`wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s --latency` (after 2 s "
        f"of warm-up) against `serve --no-worker --workers {WORKERS}` (gevent, as shipped) and "
        f"bare Flask under the same gunicorn settings, all up at once, on loopback; signed "
        "GitHub `deployment_status` webhooks (in_progress = ignored, success = stored, "
        "distinct delivery and deployment ids), SQLite (WAL, synchronous=FULL). Each load "
        f"waits (at most {args.quiet_wait:g} s) for the machine to be idle first. "
        f"{len(runs)} runs; the table gives the median of runs and each run's value. "
        f"Total {seconds:.0f} s.",
        "",
        "| load | measure | median | runs |",
        "| --- | --- | --- | --- |",
    ]
    for key in keys:
        kind, name = key.split("_", 1)
        for measure, title, fmt in MEASURES:
            values = [r[key][measure] for r in runs]
            lines.append(
                f"| {kind}, {name} | {title} | {format(statistics.median(values), fmt)} | "
                f"{', '.join(format(v, fmt) for v in values)} |"
            )
    lines += _ratios(runs, keys)
    noisy = [r[k]["machine_cores"] for r in runs for k in keys]
    waits = [r[k]["busy_before"] for r in runs for k in keys]
    wrong = sum(r[k]["not_2xx"] for r in runs for k in keys)
    # A stored load past its distinct events sends repeats, answered without a commit.
    wrapped = sum(
        r[k].get("answers", 0) > args.stored_requests
        for r in runs
        for k in keys
        if k.startswith("stored_")
    )
    lines += [
        "",
        f"Noise: before the loads, other processes kept {min(waits):.2f}-{max(waits):.2f} "
        f"cores busy (median {statistics.median(waits):.2f}); during them the whole machine "
        f"was {min(noisy):.2f}-{max(noisy):.2f} cores busy of 2. Answers other than 2xx: "
        f"{wrong}. Stored loads that sent repeats (more than {args.stored_requests:,} "
        f"events): {wrapped}.",
    ]
    return "\n".join(lines) + "\n"


def _ratios(runs: list[dict[str, Any]], keys: list[str]) -> list[str]:
    """Each tree's server against the baseline and bare Flask (ignored events) of the same
    run: the median of the per-run ratios, steadier than ratios of medians on a shared
    machine."""
    lines = [
        "",
        "| load | against (same run) | p50 | p99 | answers/s | server CPU/answer |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key in keys:
        kind, name = key.split("_", 1)
        for other in ("baseline", "bare"):
            against = f"{kind}_{other}"
            if name in ("baseline", "bare") or against not in keys:
                continue
            cells = [
                f"{statistics.median(r[key][m] / r[against][m] for r in runs):.2f}x"
                for m, _, _ in MEASURES
            ]
            lines.append(f"| {kind}, {name} | {other} | {' | '.join(cells)} |")
    return lines if len(lines) > 3 else []


def _named_tree(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` (for --tree) as (name, directory)."""
    name, sep, where = text.partition("=")
    if not sep or not name or "_" in name or name in ("baseline", "serve", "bare"):
        raise argparse.ArgumentTypeError(f"{text!r}: want NAME=DIR, NAME without '_'")
    return name, Path(where)


def main() -> int:
    """Measure, print the section, write it into RESULTS.md."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--stored-requests",
        type=int,
        default=40000,
        help="distinct stored events per load: more than a load sends (the report says if not)",
    )
    parser.add_argument("--quiet-wait", type=float, default=10.0)
    parser.add_argument("--baseline", type=Path, help="a directory holding another `bridge`")
    parser.add_argument("--baseline-label", help="what the baseline is, for the report")
    parser.add_argument(
        "--tree",
        type=_named_tree,
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another tree's `bridge` to serve beside the others (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="also write every run's raw numbers")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bridge-tail-") as tmp:
        scripts = {
            "ignored": lua_script(Path(tmp) / "ignored.lua", "ignored", 200),
            "stored": lua_script(Path(tmp) / "stored.lua", "stored", args.stored_requests),
            "stored-warm-up": lua_script(
                Path(tmp) / "stored-warm-up.lua", "stored", 10000, WARM_UP_FIRST
            ),
        }
        for index in range(args.runs):
            print(f"[run {index + 1}]", file=sys.stderr, flush=True)
            runs.append(one_run(args, Path(tmp) / f"run{index}", scripts, index))
            if args.json:
                args.json.write_text(json.dumps(runs, indent=1))
    section = report(args, runs, time.monotonic() - started)
    print(section)
    if not args.no_write:
        write_section(RESULTS, HEADING, section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
