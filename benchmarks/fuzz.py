"""Bad input at scale: 10,000 fuzzed webhooks to ``cortex-deploy-bridge serve`` over real HTTP.

The requests come from the Hypothesis strategies of tests/test_fuzz.py (malformed and
mutated bodies, odd encodings, deep nesting, bodies around the size limit, wrong or missing
content types, events, ids, tokens and signatures, valid signatures over garbage; bodies sent
chunked or under a Content-Length that lies; and calls of the admin API with any id, query
and Authorization), sent one after another over loopback to ``serve --no-worker`` (gunicorn,
as shipped) on a fresh SQLite file or PostgreSQL schema. Checked: no 5xx; every webhook answer
but 202 and "duplicate", and every admin API error, carries a JSON ``reason``; the outbox holds
exactly as many events as were answered 202. Answers that gunicorn gives itself, before the
app sees the request, are counted apart. A Content-Length longer than the body is not sent
(gunicorn would wait for the rest: a slow client, not bad input). Usage:

    python benchmarks/fuzz.py [--requests 10000] [--seed 1] [--backend sqlite|postgres]

Prints the answer-code histogram as Markdown; exit 1 when a check failed. Bounded: the
number of requests, and ``--deadline`` seconds for the whole run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))


@dataclass
class Tally:
    """What the server answered."""

    codes: Counter[str] = field(default_factory=Counter)
    server_errors: list[tuple[int, str]] = field(default_factory=list)
    no_reason: list[tuple[int, str]] = field(default_factory=list)
    queued: int = 0
    sent: int = 0
    stalled: list[str] = field(default_factory=list)  # requests the server never answered


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(
    workdir: Path,
    database: str,
    *,
    github_secret: str,
    gitlab_token: str,
    admin_token: str,
    max_body: int,
) -> tuple[subprocess.Popen[bytes], int]:
    """``serve --no-worker`` on ``database``; (process, port) once it answers."""
    config = workdir / "bridge.yaml"
    config.write_text(
        f"server:\n  max_body_bytes: {max_body}\n"
        "workflows:\n  - match: {workflow: 'Deploy*'}\n    environment: production\n"
    )
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "GITHUB_WEBHOOK_SECRET": github_secret,
        "GITLAB_WEBHOOK_TOKEN": gitlab_token,
        "BRIDGE_DATABASE_URL": database,
        "BRIDGE_ADMIN_TOKEN": admin_token,
        "PROMETHEUS_MULTIPROC_DIR": str(workdir),
    }
    argv = [SCRIPT, "serve", "--no-worker", "--bind", f"127.0.0.1:{port}", "--config", str(config)]
    with (workdir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            [*argv, "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if post(port, "GET", "/readyz", b"", {})[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"serve did not start: {(workdir / 'serve.log').read_text()[-1500:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group and wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def post(
    port: int, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes, str]:
    """One request on a fresh connection: status, body, and the answer's content type."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read(), answer.getheader("Content-Type") or ""
    finally:
        conn.close()


def send(port: int, request: Any) -> tuple[int, bytes, str]:
    """One fuzzed request (tests/test_fuzz.py's Request), its body framed as it says."""
    headers = {"Connection": "close", **request.headers}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        if request.chunked:
            chunks = [request.body[i : i + 8192] for i in range(0, len(request.body), 8192)]
            conn.request(
                request.method,
                request.path,
                body=iter(chunks),
                headers=headers,
                encode_chunked=True,
            )
        else:
            conn.putrequest(request.method, request.path, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            length = request.content_length
            if length is None or _number(length) > len(request.body):
                length = str(len(request.body))
            conn.putheader("Content-Length", length)
            conn.endheaders(request.body)
        answer = conn.getresponse()
        return answer.status, answer.read(), answer.getheader("Content-Type") or ""
    finally:
        conn.close()


def _number(text: str) -> int:
    """What a lenient server reads in a Content-Length (" 5", "+5", "5_0"), else -1."""
    try:
        return int(text.strip())
    except ValueError:
        return -1


def record(tally: Tally, status: int, data: bytes, kind: str, *, admin: bool = False) -> None:
    """Count one answer and check it against the contract."""
    tally.sent += 1
    if not kind.startswith("application/json"):
        # gunicorn's own error page: the request never reached the app (a header it refuses).
        tally.codes[f"{status} (gunicorn, before the app)"] += 1
        if status >= 500:
            tally.server_errors.append((status, data[:200].decode("utf-8", "replace")))
        return
    answer: Any = json.loads(data)
    said = answer.get("status", "?") if isinstance(answer, dict) else "?"
    tally.codes[f"{'admin ' if admin else ''}{status} {said}"] += 1
    if status >= 500:
        tally.server_errors.append((status, data[:200].decode("utf-8", "replace")))
    if admin:
        if status != 200 and not (isinstance(answer, dict) and answer.get("reason")):
            tally.no_reason.append((status, data[:200].decode("utf-8", "replace")))
        return
    if status == 202:
        tally.queued += 1
    elif said != "duplicate" and not (isinstance(answer, dict) and answer.get("reason")):
        tally.no_reason.append((status, data[:200].decode("utf-8", "replace")))


def fuzz(port: int, tally: Tally, *, requests: int, seed: int, deadline: float) -> None:
    """Send ``requests`` fuzzed webhooks, one after another, until done or out of time."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    from tests.test_fuzz import admin_requests, webhook_requests

    @seeded(seed)
    @settings(
        max_examples=requests,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=webhook_requests() | webhook_requests() | admin_requests())
    def send_one(request: Any) -> None:
        if time.monotonic() > deadline:
            return
        try:
            answer = send(port, request)
        except OSError as exc:  # e.g. reset while sending a body the server had refused
            tally.sent += 1
            tally.codes[f"no answer ({type(exc).__name__})"] += 1
            if isinstance(exc, TimeoutError):
                framing = "chunked" if request.chunked else f"length {request.content_length!r}"
                tally.stalled.append(
                    f"{request.method} {request.path[:60]} {framing}, {len(request.body)} bytes"
                )
            return
        record(tally, *answer, admin=request.admin)

    send_one()


def stored(database: str) -> int:
    """How many events the receiver's outbox holds."""
    from bridge.store import Store

    with Store.from_url(database, create=False) as store:
        return sum(store.counts().values())


@contextmanager
def fresh_database(backend: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    """A SQLite file in ``workdir``, or a PostgreSQL schema dropped after: its URL."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'fuzz.db'}"
        return
    from benchmarks.chaos import postgres_schema

    with postgres_schema(postgres_url) as url:
        yield url


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer against a fresh ``serve``; print the histogram; exit 1 on a failed check."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds (default: 900)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BRIDGE_TEST_POSTGRES_URL")
        or "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # tests/ and benchmarks/ as packages
    from tests.receiver_kit import ADMIN_TOKEN, GITHUB_SECRET, GITLAB_TOKEN
    from tests.test_fuzz import MAX_BODY

    tally = Tally()
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bridge-fuzz-") as tmp,
        fresh_database(args.backend, Path(tmp), args.postgres_url) as database,
    ):
        secrets = {
            "github_secret": GITHUB_SECRET,
            "gitlab_token": GITLAB_TOKEN,
            "admin_token": ADMIN_TOKEN,
        }
        proc, port = start_serve(Path(tmp), database, max_body=MAX_BODY, **secrets)
        try:
            deadline = began + args.deadline
            fuzz(port, tally, requests=args.requests, seed=args.seed, deadline=deadline)
        finally:
            stop(proc)
        in_outbox = stored(database)
    seconds = time.monotonic() - began
    problems = []
    if tally.server_errors:
        problems.append(f"{len(tally.server_errors)} 5xx answers: {tally.server_errors[:3]}")
    if tally.no_reason:
        problems.append(f"{len(tally.no_reason)} answers without a reason: {tally.no_reason[:3]}")
    if in_outbox != tally.queued:
        problems.append(f"outbox holds {in_outbox} events, {tally.queued} answered 202")
    if tally.sent < args.requests:
        problems.append(f"only {tally.sent} of {args.requests} requests sent in time")
    print(
        f"- {tally.sent} fuzzed requests to `serve --no-worker` on {args.backend} over HTTP "
        f"(seed {args.seed}) "
        f"in {seconds:.0f}s"
    )
    print("- answers: " + ", ".join(f"{code}: {n}" for code, n in sorted(tally.codes.items())))
    print(f"- 5xx: {len(tally.server_errors)}; stored {in_outbox}, answered 202 {tally.queued}")
    for stalled in tally.stalled:
        print(f"- no answer in 30 s: {stalled}")
    print(
        f"- result: **{'PASS' if not problems else 'FAIL'}**"
        + "".join(f"\n  - {p}" for p in problems)
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
