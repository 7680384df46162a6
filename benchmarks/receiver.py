"""The webhook receiver under load: acks/s and latency, ignored events vs bare Flask, end to end.

Everything runs on this machine over loopback, in one run, on SQLite (a fresh temp database
per server): ``cortex-deploy-bridge serve --workers 2`` (gthread, 4 threads, as shipped),
a bare Flask app under the same gunicorn settings (benchmarks/bare_flask.py), a stand-in
Cortex (bridge.fakecortex) in this process, and the load generator (benchmarks/loadgen.py)
as a separate process. Run by hand:

    python benchmarks/receiver.py            # 3 runs, about 3 minutes on 2 cores
    python benchmarks/receiver.py --runs 1 --no-write   # a quick look

It prints a Markdown section and writes it into benchmarks/RESULTS.md under
"## Receiver (issue 3)" (that section only; other sections are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.fakecortex import FakeCortex

import loadgen  # benchmarks/loadgen.py, beside this file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SAMPLE = ROOT / "tests" / "samples" / "github" / "deployment_status.success.json"
RESULTS = HERE / "RESULTS.md"
HEADING = "## Receiver (issue 3)"
SECRET = "bench-webhook-secret"
TOKEN = "bench-cortex-token"
WORKERS, THREADS = 2, 4
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One gunicorn master and its workers, in their own process group."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.command = [c.replace("{port}", str(self.port)) for c in command]
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str) -> Server:
        """Start, and wait (30 s at most) until it answers and every worker is up."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _get(self.port, ready_path) == 200 and len(self.worker_pids()) == WORKERS:
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (the master's children)."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
            return sorted(int(p) for p in text.split())
        except OSError:
            return sorted(p for p in _all_pids() if _ppid(p) == pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the workers so far."""
        return sum(_cpu_seconds(p) for p in self.worker_pids())

    def rss_mib(self) -> list[float]:
        """VmRSS of each worker, MiB."""
        return [_status_kib(p, "VmRSS") / 1024 for p in self.worker_pids()]

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the fields after "pid (comm)"


def _ppid(pid: int) -> int:
    try:
        return int(_stat_fields(pid)[1])
    except OSError:
        return -1


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (stat fields 14, 15)


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def serve_command(*, no_worker: bool) -> list[str]:
    """`cortex-deploy-bridge serve` as shipped: 2 workers, 4 threads, log level info."""
    script = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
    command = [script, "serve", "--bind", "127.0.0.1:{port}", "--workers", str(WORKERS)]
    command += ["--threads", str(THREADS)]
    return command + (["--no-worker"] if no_worker else [])


def bare_command() -> list[str]:
    """gunicorn's own CLI with the settings `serve` gives it."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return [
        gunicorn, "-w", str(WORKERS), "--threads", str(THREADS), "-k", "gthread",
        "--keep-alive", "5", "--timeout", "60", "--log-level", "info",
        "-b", "127.0.0.1:{port}", "--chdir", str(HERE), "bare_flask:app",
    ]  # fmt: skip


def serve_env(tmp: Path, cortex_url: str) -> dict[str, str]:
    """The environment of `serve`: a fresh SQLite database in ``tmp``."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "GITLAB_WEBHOOK_TOKEN": "bench-gitlab",
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex_url,
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp / 'bridge.db'}",
        "PROMETHEUS_MULTIPROC_DIR": str(_fresh_dir(tmp / "metrics")),
    }


def _fresh_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class Numbers:
    """Distinct deployment and delivery numbers across the loads of one database."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


def load(
    server: Server,
    numbers: Numbers,
    *,
    kind: str,
    count: int,
    connections: int,
    warmup: int,
    rate: float = 0.0,
) -> dict[str, Any]:
    """One load from the loadgen process; adds the server's CPU time per request."""
    spec = {
        "port": server.port,
        "path": "/webhooks/github",
        "sample": str(SAMPLE),
        "secret": SECRET,
        "kind": kind,
        "first": numbers.take(warmup + count),
        "count": warmup + count,
        "warmup": warmup,
        "connections": connections,
        "rate": rate,
        "delivery_prefix": f"bench-{server.name}-{kind}",
        "deadline_seconds": 90,
    }
    cpu0 = server.cpu_seconds()
    done = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py")],
        input=json.dumps(spec), capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"loadgen failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    # Warm-up included in the CPU count, so per request is over warm-up + measured.
    result["server_cpu_ms_per_request"] = (server.cpu_seconds() - cpu0) * 1000 / (warmup + count)
    result["client_cpu_share"] = result["client_cpu_seconds"] / result["elapsed"]
    return result


def creates(fake: FakeCortex) -> list[Any]:
    """The deploy-creating POSTs the stand-in received."""
    return [r for r in fake.requests_to("POST") if r.path.endswith("/deploys")]


def drain(fake: FakeCortex, expected: int, started: float, *, timeout: float) -> dict[str, Any]:
    """Wait until the stand-in has ``expected`` deploys; delivered/s since ``started``."""
    deadline = time.monotonic() + timeout
    while len(creates(fake)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    posts = creates(fake)
    since = [r.at for r in posts if r.at >= started]
    span = (max(since) - started) if since else 0.0
    return {
        "delivered": len(posts),
        "expected": expected,
        "delivered_per_second": len(since) / span if span else 0.0,
        "backlog_cleared_after_load_s": (max(since) if since else started) - started,
    }


def end_to_end(server: Server, fake: FakeCortex, numbers: Numbers, count: int) -> dict[str, Any]:
    """One webhook at a time: post, then wait for the stand-in to receive the deploy."""
    sample = json.loads(SAMPLE.read_text())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    acks, e2e = [], []
    seen = len(fake.received)
    for n in range(numbers.take(count), numbers.next):
        body = json.dumps(loadgen.webhook(sample, n, "stored")).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": f"bench-e2e-{n}",
            "X-Hub-Signature-256": sig,
        }
        t0 = time.monotonic()
        conn.request("POST", "/webhooks/github", body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        acks.append(time.monotonic() - t0)
        if answer.status != 202:
            raise SystemExit(f"end-to-end post answered {answer.status}")
        arrived = _wait_for_sha(fake, f"{n:040x}", seen, timeout=5)
        seen = len(fake.received)
        if arrived is not None:
            e2e.append(arrived - t0)
        time.sleep(0.05)  # not under load: let the worker go idle again
    conn.close()
    return {
        "count": count,
        "arrived": len(e2e),
        "ack_median_ms": statistics.median(acks) * 1000,
        "median_ms": statistics.median(e2e) * 1000 if e2e else float("nan"),
        "p90_ms": _pct(e2e, 0.9) * 1000 if e2e else float("nan"),
    }


def _wait_for_sha(fake: FakeCortex, sha: str, seen: int, *, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in fake.received[seen:]:
            if r.method == "POST" and isinstance(r.body, dict) and r.body.get("sha") == sha:
                return float(r.at)
        time.sleep(0.0005)
    return None


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_run(args: argparse.Namespace, index: int, tmp: Path) -> dict[str, Any]:
    """Every measurement once, each server on a fresh database."""
    out: dict[str, Any] = {}
    c, n, warm = args.connections, args.requests, args.warmup
    step = _announcer(index)

    with FakeCortex(token=TOKEN) as idle_cortex:
        step("serve --no-worker")
        rdir = _fresh_dir(tmp / f"run{index}-receiver")
        server = Server("receiver", serve_command(no_worker=True),
                        serve_env(rdir, idle_cortex.url), rdir / "serve.log")  # fmt: skip
        server.start("/readyz")
        numbers = Numbers()
        try:
            out["recv_closed"] = load(server, numbers, kind="stored", count=n, connections=c,
                                      warmup=warm)  # fmt: skip
            out["recv_open"] = load(server, numbers, kind="stored", count=args.open_requests,
                                    connections=args.open_connections, warmup=0,
                                    rate=args.rate)  # fmt: skip
            out["ignored_serve"] = load(server, numbers, kind="ignored", count=n,
                                        connections=c, warmup=warm)  # fmt: skip
            out["rss_receiver"] = server.rss_mib()
        finally:
            server.stop()

    step("bare flask")
    bdir = _fresh_dir(tmp / f"run{index}-bare")
    bare = Server("bare", bare_command(), {"PATH": os.environ["PATH"]}, bdir / "bare.log")
    bare.start("/healthz")
    try:
        out["ignored_bare"] = load(bare, Numbers(), kind="ignored", count=n, connections=c,
                                   warmup=warm)  # fmt: skip
        out["rss_bare"] = bare.rss_mib()
    finally:
        bare.stop()

    with FakeCortex(token=TOKEN) as cortex:
        step("serve (worker inside)")
        wdir = _fresh_dir(tmp / f"run{index}-worker")
        server = Server("worker", serve_command(no_worker=False),
                        serve_env(wdir, cortex.url), wdir / "serve.log")  # fmt: skip
        server.start("/readyz")
        numbers = Numbers()
        try:
            out["e2e"] = end_to_end(server, cortex, numbers, args.e2e)
            out["worker_closed"] = load(server, numbers, kind="stored", count=args.worker_requests,
                                        connections=c, warmup=warm)  # fmt: skip
            out["worker_closed"].update(drain(cortex, numbers.next,
                                              out["worker_closed"]["started_monotonic"],
                                              timeout=args.drain_timeout))  # fmt: skip
            out["worker_open"] = load(server, numbers, kind="stored", count=args.open_requests,
                                      connections=args.open_connections, warmup=0,
                                      rate=args.rate)  # fmt: skip
            out["worker_open"].update(drain(cortex, numbers.next,
                                            out["worker_open"]["started_monotonic"],
                                            timeout=args.drain_timeout))  # fmt: skip
            out["rss_worker"] = server.rss_mib()
            out["cortex_violations"] = len(cortex.violations)
        finally:
            server.stop()
    out["ignored_ratio"] = out["ignored_serve"]["per_second"] / out["ignored_bare"]["per_second"]
    return out


def _announcer(index: int) -> Callable[[str], None]:
    def step(what: str) -> None:
        print(f"[run {index + 1}] {what}", file=sys.stderr, flush=True)

    return step


# -- the report ------------------------------------------------------------------------------


def machine() -> str:
    """Host, CPU model, cores, Python, date."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{platform.node()} · {model} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {time.strftime('%Y-%m-%d')}"
    )


def med(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float]) -> float:
    """The median over runs."""
    return statistics.median(get(r) for r in runs)


def per_run(runs: list[dict[str, Any]], get: Callable[[dict[str, Any]], float], fmt: str) -> str:
    """Each run's value, for the spread."""
    return ", ".join(format(get(r), fmt) for r in runs)


def report(args: argparse.Namespace, runs: list[dict[str, Any]], seconds: float) -> str:
    """The Markdown section."""
    rows: list[tuple[str, Callable[[dict[str, Any]], float], str, str, bool | None]] = []

    def row(name: str, get: Callable[[dict[str, Any]], float], fmt: str,
            target: str = "", ok: Callable[[float], bool] | None = None) -> None:  # fmt: skip
        value = med(runs, get)
        rows.append((name, get, fmt, target, ok(value) if ok else None))

    rc, ro, wc, wo = "recv_closed", "recv_open", "worker_closed", "worker_open"
    row(f"receiver only, {args.connections} conns: stored acks/s",
        lambda r: r[rc]["per_second"], ".0f", ">= 500", lambda v: v >= 500)  # fmt: skip
    row("  ack latency p50 (ms)", lambda r: r[rc]["p50_ms"], ".1f")
    row("  ack latency p99 (ms)", lambda r: r[rc]["p99_ms"], ".1f", "< 50", lambda v: v < 50)
    row("  server CPU per stored event (ms)", lambda r: r[rc]["server_cpu_ms_per_request"], ".2f")
    row(f"receiver only, open loop {args.rate:g}/s: achieved/s",
        lambda r: r[ro]["per_second"], ".0f", f">= {args.rate * 0.98:.0f}",
        lambda v: v >= args.rate * 0.98)  # fmt: skip
    row("  ack latency p50 (ms)", lambda r: r[ro]["p50_ms"], ".1f")
    row("  ack latency p99 (ms)", lambda r: r[ro]["p99_ms"], ".1f", "< 50", lambda v: v < 50)
    row(f"worker inside, {args.connections} conns: stored acks/s",
        lambda r: r[wc]["per_second"], ".0f", ">= 500", lambda v: v >= 500)  # fmt: skip
    row("  ack latency p50 (ms)", lambda r: r[wc]["p50_ms"], ".1f")
    row("  ack latency p99 (ms)", lambda r: r[wc]["p99_ms"], ".1f", "< 50", lambda v: v < 50)
    row("  delivered to stand-in Cortex /s", lambda r: r[wc]["delivered_per_second"], ".0f")
    row("  backlog cleared, s after load start", lambda r: r[wc]["backlog_cleared_after_load_s"],
        ".1f")  # fmt: skip
    row(f"worker inside, open loop {args.rate:g}/s: achieved/s",
        lambda r: r[wo]["per_second"], ".0f", f">= {args.rate * 0.98:.0f}",
        lambda v: v >= args.rate * 0.98)  # fmt: skip
    row("  ack latency p50 (ms)", lambda r: r[wo]["p50_ms"], ".1f")
    row("  ack latency p99 (ms)", lambda r: r[wo]["p99_ms"], ".1f", "< 50", lambda v: v < 50)
    row("ignored events, serve: answers/s", lambda r: r["ignored_serve"]["per_second"], ".0f")
    row("  latency p99 (ms)", lambda r: r["ignored_serve"]["p99_ms"], ".1f")
    row("  server CPU per request (ms)",
        lambda r: r["ignored_serve"]["server_cpu_ms_per_request"], ".2f")  # fmt: skip
    row("bare Flask, same gunicorn settings: answers/s",
        lambda r: r["ignored_bare"]["per_second"], ".0f")  # fmt: skip
    row("  latency p99 (ms)", lambda r: r["ignored_bare"]["p99_ms"], ".1f")
    row("  server CPU per request (ms)",
        lambda r: r["ignored_bare"]["server_cpu_ms_per_request"], ".2f")  # fmt: skip
    row("ignored / bare Flask (same run)", lambda r: r["ignored_ratio"], ".0%", ">= 80%",
        lambda v: v >= 0.8)  # fmt: skip
    row("end to end, one at a time: median (ms)", lambda r: r["e2e"]["median_ms"], ".1f",
        "< 50", lambda v: v < 50)  # fmt: skip
    row("  p90 (ms)", lambda r: r["e2e"]["p90_ms"], ".1f")
    row("  its ack (ms, median)", lambda r: r["e2e"]["ack_median_ms"], ".1f")
    row("RSS per worker, serve --no-worker (MiB, max)", lambda r: max(r["rss_receiver"]), ".1f")
    row("RSS per worker, serve with worker (MiB, max)", lambda r: max(r["rss_worker"]), ".1f")
    row("RSS per worker, bare Flask (MiB, max)", lambda r: max(r["rss_bare"]), ".1f")
    row("load generator CPU, share of one core (stored, receiver only)",
        lambda r: r[rc]["client_cpu_share"], ".0%")  # fmt: skip

    lines = [
        HEADING,
        "",
        f"Machine: {machine()}.",
        "",
        f"Settings: `cortex-deploy-bridge serve --workers {WORKERS} --threads {THREADS}` "
        f"(gthread, keep-alive 5 s, log level info to a file), with and without `--no-worker`; "
        f"bare Flask (`benchmarks/bare_flask.py`) under `gunicorn -w {WORKERS} --threads "
        f"{THREADS} -k gthread --keep-alive 5`. SQLite, a fresh temp database per server "
        "(WAL, synchronous=FULL, as shipped). Signed GitHub `deployment_status` webhooks "
        "(success = stored, in_progress = ignored), distinct delivery and deployment ids, "
        "one repository. Closed loop: "
        f"{args.requests} requests (worker inside: {args.worker_requests}) on "
        f"{args.connections} keep-alive connections after {args.warmup} warm-up requests; "
        f"open loop: {args.open_requests} requests due at {args.rate:g}/s on up to "
        f"{args.open_connections} connections, latency counted from each request's due time. "
        f"End to end: {args.e2e} webhooks one at a time, from the post to the stand-in "
        "Cortex (in the benchmark process) receiving the create POST. "
        f"{len(runs)} runs, each measurement once per run; the table gives the median of "
        f"runs and each run's value. Total {seconds:.0f} s.",
        "",
        "The load generator (`benchmarks/loadgen.py`, asyncio on raw sockets) and the stand-in "
        "Cortex share the 2 cores with the server, so absolute rates are lower than on a "
        "dedicated server; the ratios in the same run are the fairer figures.",
        "",
        "| measurement | median of runs | runs | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, get, fmt, target, ok in rows:
        met = "" if ok is None else ("yes" if ok else "**no**")
        lines.append(
            f"| {name} | {format(med(runs, get), fmt)} | {per_run(runs, get, fmt)} | "
            f"{target} | {met} |"
        )
    problems = _problems(runs)
    if problems:
        lines += ["", "Anomalies: " + "; ".join(problems) + "."]
    return "\n".join(lines) + "\n"


def _problems(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for i, r in enumerate(runs, 1):
        for key, want in (("recv_closed", "202"), ("recv_open", "202"), ("worker_closed", "202"),
                          ("worker_open", "202"), ("ignored_serve", "200"),
                          ("ignored_bare", "200")):  # fmt: skip
            other = {s: k for s, k in r[key]["statuses"].items() if s != want}
            if other:
                out.append(f"run {i} {key}: answers other than {want}: {other}")
            if r[key]["reopened"]:
                out.append(f"run {i} {key}: {r[key]['reopened']} connections reopened")
        for key in ("worker_closed", "worker_open"):
            if r[key]["delivered"] < r[key]["expected"]:
                out.append(f"run {i} {key}: delivered {r[key]['delivered']} of "
                           f"{r[key]['expected']} within the drain timeout")  # fmt: skip
        if r["e2e"]["arrived"] < r["e2e"]["count"]:
            out.append(f"run {i}: end to end, {r['e2e']['arrived']} of {r['e2e']['count']} arrived")
        if r["cortex_violations"]:
            out.append(f"run {i}: stand-in Cortex saw {r['cortex_violations']} invalid requests")
    return out


def write_section(section: str, path: Path = RESULTS) -> None:
    """Replace (or add) the section in RESULTS.md, keeping every other section."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == HEADING), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
    )
    after = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + after if after else ""))


def main() -> int:
    """Measure, print the Markdown section, write it into RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000, help="closed-loop requests")
    parser.add_argument("--worker-requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0, help="open-loop requests/s")
    parser.add_argument("--open-requests", type=int, default=2000)
    parser.add_argument("--open-connections", type=int, default=64)
    parser.add_argument("--e2e", type=int, default=40, help="end-to-end webhooks per run")
    parser.add_argument("--drain-timeout", type=float, default=60.0)
    parser.add_argument("--json", metavar="PATH", help="also write every run's raw numbers")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10:
        parser.error("--runs must be 1..10")
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        for index in range(args.runs):
            runs.append(one_run(args, index, Path(tmp)))
    section = report(args, runs, time.monotonic() - started)
    print(section)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    if not args.no_write:
        write_section(section)
        print(f"written to {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
