"""The fault suite's long run: receivers and workers under a chaotic Cortex, killed at random.

One run, on this machine, over loopback:

- a stand-in Cortex (``python -m bridge.fakecortex --chaos ...``) in its own process, failing a
  share of calls at random: 429 with Retry-After, 500/502/503, slow answers, connections
  dropped before or after the deploy is stored; a few entities do not exist there (404, a
  permanent rejection);
- on PostgreSQL: N receivers (``serve --no-worker``) and M workers (``worker``); on SQLite:
  ``serve`` with its delivery threads inside;
- a sender posting signed GitHub and GitLab webhooks at a steady rate, retrying on another
  receiver whatever got no 2xx; some deploys are sent again under a second delivery id (a
  repository hook beside an organization hook: ``--twins``), some redelivered with the same
  id (``--redeliveries``);
- every receiver and worker process SIGKILLed (its whole process group) at random moments of
  the sending and started again, ``--kills`` times each; with ``--restart-postgres`` (root) the
  PostgreSQL cluster is restarted mid-run, and is running again when the script ends.

Checked once the outbox is drained: every deploy acknowledged with a 2xx is in Cortex exactly
once (by ``customData.bridge.idempotencyKey``) and nothing is there twice; no 5xx for valid
input (a 503 while PostgreSQL restarts is counted apart: it says the event was not stored);
dead letters only for the deploys Cortex rejects for good. Usage:

    python benchmarks/chaos.py --backend postgres --events 2000 --receivers 2 --workers 2 \\
        --kills 3 --chaos 0.3 [--restart-postgres]
    python benchmarks/chaos.py --backend sqlite --events 2000 --kills 3 --chaos 0.3

Exit 0 when every check holds, else 1 (the logs, the outbox and what Cortex holds are then
kept in the run's directory). Bounded: ``--events`` deploys, each sent for at most
``--send-timeout`` seconds; the drain gives up after ``--drain-timeout`` seconds; every process
started here is stopped on the way out. tests/test_faults.py runs this at a small scale.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bridge.config import parse_config, route
from bridge.mapping import idempotency_key
from bridge.sources import parse_event

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
GITHUB_SECRET = "chaos-github-secret"
GITLAB_TOKEN = "chaos-gitlab-token"
CORTEX_TOKEN = "chaos-cortex-token"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GHOST = "ghost-"  # repositories so named map to entities the stand-in does not have
WAITING = ("queued", "retrying", "delivering")


@dataclass(frozen=True)
class Spec:
    """One run's shape."""

    backend: str = "sqlite"  # "sqlite" or "postgres"
    events: int = 2000  # deploys
    receivers: int = 1
    workers: int = 2  # worker processes on postgres; sqlite delivers inside serve
    serve_processes: int = 2  # gunicorn processes per receiver
    worker_threads: int = 2
    kills: int = 3  # SIGKILLs per receiver and worker process
    chaos: float = 0.3
    seed: int = 4
    rate_limit: int = 0  # the stand-in's own requests/minute limit; 0: none
    retry_after: float = 1.0  # seconds a chaos 429 asks for
    requests_per_minute: int | None = None  # cortex.requests_per_minute; None: the default
    rate: float = 40.0  # requests sent per second
    concurrency: int = 8
    twins: float = 0.05
    redeliveries: float = 0.05
    ghosts: float = 0.01
    repositories: int = 40
    timeout_seconds: float = 2.0  # cortex.timeout_seconds
    lease_seconds: float = 10.0  # delivery.lease_seconds
    send_timeout: float = 120.0
    drain_timeout: float = 1800.0
    restart_postgres: bool = False
    postgres_url: str = DEFAULT_PG
    workdir: Path | None = None  # default: a temporary directory, removed after a pass


@dataclass(frozen=True)
class Send:
    """One webhook request, sent until it is answered 2xx (or the sender gives up)."""

    number: int  # the deploy it describes
    kind: str  # "first", "twin" (another delivery id), "again" (the same delivery id)
    path: str
    headers: dict[str, str]
    body: bytes
    key: str  # the customData.bridge.idempotencyKey it must have in Cortex
    ghost: bool  # Cortex does not know its entity: a dead letter, never a record


# --- the events --------------------------------------------------------------------------


def github_deploy(number: int, repo: str, at: datetime) -> dict[str, Any]:
    """A successful deployment_status of deploy ``number`` in ``acme/<repo>``."""
    doc: dict[str, Any] = json.loads(
        (SAMPLES / "github/deployment_status.success.json").read_text()
    )
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["deployment"].update(id=7_000_000 + number, sha=f"{number:040x}", payload={})
    doc["deployment_status"].update(id=8_000_000 + number, created_at=stamp, updated_at=stamp)
    doc["repository"].update(name=repo, full_name=f"acme/{repo}")
    return doc


def gitlab_deploy(number: int, repo: str, at: datetime) -> dict[str, Any]:
    """A successful GitLab Deployment Hook of deploy ``number`` in ``acme/backend/<repo>``."""
    doc: dict[str, Any] = json.loads((SAMPLES / "gitlab/deployment.success.json").read_text())
    sha = f"{number:040x}"
    doc.update(
        deployment_id=600_000 + number,
        deployable_id=700_000 + number,
        short_sha=sha[:8],
        status_changed_at=at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        commit_url=f"https://gitlab.acme.example/acme/backend/{repo}/-/commit/{sha}",
    )
    doc["project"].update(name=repo, path_with_namespace=f"acme/backend/{repo}")
    return doc


EVENTS = {
    "github": ("deployment_status", github_deploy),
    "gitlab": ("Deployment Hook", gitlab_deploy),
}


def expected_key(source: str, doc: dict[str, Any]) -> str:
    """The idempotency key the bridge gives this deploy (default config: one entity)."""
    event = parse_event(source, EVENTS[source][0], doc)
    where = route(parse_config({}), event)
    (entity,) = where.entities
    return idempotency_key(dataclasses.replace(event, environment=where.environment), entity)


def signed(source: str, body: bytes, *, delivery: str, hook: str) -> tuple[str, dict[str, str]]:
    """The path and headers of one webhook delivery, signed as the SCM signs it."""
    if source == "github":
        signature = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
        return "/webhooks/github", {
            "Content-Type": "application/json",
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": delivery,
            "X-GitHub-Hook-ID": hook,
            "X-Hub-Signature-256": f"sha256={signature}",
        }
    return "/webhooks/gitlab", {
        "Content-Type": "application/json",
        "X-Gitlab-Event": "Deployment Hook",
        "X-Gitlab-Token": GITLAB_TOKEN,
        "X-Gitlab-Event-UUID": delivery,
        "Idempotency-Key": delivery,
    }


def plan_sends(spec: Spec, rng: random.Random) -> list[Send]:
    """Every request of the run in sending order: a twin right after, a repeat a bit later."""
    start = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    sends: list[Send] = []
    repeats: list[tuple[int, Send]] = []
    for number in range(spec.events):
        ghost = rng.random() < spec.ghosts
        repo = f"{GHOST}{number % 3}" if ghost else f"svc-{rng.randrange(spec.repositories):03d}"
        source = "gitlab" if rng.random() < 0.2 else "github"
        doc = EVENTS[source][1](number, repo, start + timedelta(seconds=37 * number))
        body, key = json.dumps(doc).encode(), expected_key(source, doc)
        hooks = ["1001", "2002"] if rng.random() < spec.twins else ["1001"]
        for kind, hook in zip(("first", "twin"), hooks, strict=False):
            path, headers = signed(
                source, body, delivery=str(uuid.UUID(int=rng.getrandbits(128))), hook=hook
            )
            sends.append(Send(number, kind, path, headers, body, key, ghost))
        if rng.random() < spec.redeliveries:
            repeats.append(
                (len(sends) + rng.randrange(20, 200), dataclasses.replace(sends[-1], kind="again"))
            )
    for position, again in sorted(repeats, key=lambda pair: pair[0], reverse=True):
        sends.insert(min(position, len(sends)), again)
    return sends


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> tuple[int, Any]:
    """One request on a fresh loopback connection: the status and the decoded JSON body.

    Raises OSError (http.client's own errors included) when no whole answer came.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        data = answer.read()
    except http.client.HTTPException as exc:  # the server died mid-answer
        raise ConnectionError(f"broken answer: {exc!r}") from exc
    finally:
        conn.close()
    try:
        return answer.status, json.loads(data)
    except ValueError:
        return answer.status, data.decode("utf-8", "replace")


@dataclass
class Proc:
    """One process group we start, SIGKILL, and start again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    port: int | None = None  # when set, it is up once GET ``probe`` answers 200
    probe: str = "/readyz"
    probe_headers: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        """Where the process writes (every start appends)."""
        return self.workdir / f"{self.name}.log"

    def start(self, *, timeout: float = 60.0) -> None:
        """Start it in its own session and process group; return once it answers."""
        metrics = self.workdir / f"metrics-{self.name}-{self.starts}"
        metrics.mkdir()
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-1500:]}")
            if self.port is None or self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not up in {timeout:g}s: {self.log.read_text()[-1500:]}")

    def answers(self) -> bool:
        """True when the process answers its probe with 200."""
        assert self.port is not None
        try:
            status, _ = http_json(
                self.port, "GET", self.probe, headers=self.probe_headers, timeout=2
            )
        except OSError:
            return False
        return status == 200

    def kill9(self) -> None:
        """SIGKILL the whole process group: master and children, no goodbye."""
        assert self.popen is not None
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for the run (dropped after): the URL that uses it."""
    import sqlalchemy as sa

    from bridge.store.engine import create_engine

    name = f"bridge_chaos_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    try:
        scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={name}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with suppress(Exception), admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def bridge_config(spec: Spec) -> str:
    """The run's config file: short timeouts and backoff, a lease a few timeouts long."""
    budget = spec.requests_per_minute
    return (
        f"cortex:\n  timeout_seconds: {spec.timeout_seconds}\n"
        + (f"  requests_per_minute: {budget}\n" if budget is not None else "")
        + f"delivery:\n  lease_seconds: {spec.lease_seconds}\n"
        + "  backoff_base_seconds: 0.2\n  backoff_max_seconds: 2\n"
    )


class Fleet:
    """The stand-in Cortex, the receivers and the workers of one run."""

    def __init__(self, spec: Spec, workdir: Path, database_url: str) -> None:
        self.database_url = database_url
        config = workdir / "bridge.yaml"
        config.write_text(bridge_config(spec))
        port = free_port()
        stand_in = [sys.executable, "-m", "bridge.fakecortex", "--port", str(port)]
        stand_in += ["--token", CORTEX_TOKEN, "--chaos", str(spec.chaos), "--seed", str(spec.seed)]
        stand_in += ["--rate-limit", str(spec.rate_limit), "--retry-after", str(spec.retry_after)]
        stand_in += ["--entities", ",".join(f"svc-{n:03d}" for n in range(spec.repositories))]
        auth = {"Authorization": f"Bearer {CORTEX_TOKEN}"}
        self.cortex = Proc(
            "cortex",
            stand_in,
            {"PATH": os.environ["PATH"]},
            workdir,
            port=port,
            probe="/_stand-in/stats",
            probe_headers=auth,
        )
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(workdir),
            "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
            "GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
            "CORTEX_API_TOKEN": CORTEX_TOKEN,
            "CORTEX_API_URL": f"http://127.0.0.1:{port}",
            "BRIDGE_DATABASE_URL": database_url,
        }
        common = ["--config", str(config), "--log-level", "info"]
        split = ["--no-worker"] if spec.backend == "postgres" else []
        self.receivers = []
        for n in range(spec.receivers):
            bind = free_port()
            argv = [
                SCRIPT,
                "serve",
                "--bind",
                f"127.0.0.1:{bind}",
                "--workers",
                str(spec.serve_processes),
            ]
            self.receivers.append(
                Proc(f"receiver-{n}", [*argv, *split, *common], env, workdir, port=bind)
            )
        worker = [SCRIPT, "worker", "--threads", str(spec.worker_threads), "--poll", "0.5", *common]
        self.workers = [
            Proc(f"worker-{n}", worker, env, workdir) for n in range(spec.workers if split else 0)
        ]

    @property
    def killable(self) -> list[Proc]:
        """Every process the run SIGKILLs: receivers and workers (not the stand-in)."""
        return [*self.receivers, *self.workers]

    def start(self) -> None:
        """The stand-in, then one receiver (it creates the schema), then the rest at once."""
        self.cortex.start()
        self.receivers[0].start()
        failed: list[str] = []

        def start(proc: Proc) -> None:
            try:
                proc.start()
            except RuntimeError as exc:
                failed.append(str(exc))

        starting = [threading.Thread(target=start, args=(p,)) for p in self.killable[1:]]
        for thread in starting:
            thread.start()
        for thread in starting:
            thread.join()
        if failed:
            raise RuntimeError("; ".join(failed))

    def stop(self) -> None:
        """Stop every process: the run is over and checked, so SIGKILL, as all along."""
        for proc in [*self.killable, self.cortex]:
            if proc.popen is not None and proc.popen.poll() is None:
                proc.kill9()

    def stand_in(self, what: str) -> Any:
        """GET /_stand-in/<what> from the stand-in Cortex: its deploys, or its stats."""
        assert self.cortex.port is not None
        auth = {"Authorization": f"Bearer {CORTEX_TOKEN}"}
        status, body = http_json(
            self.cortex.port, "GET", f"/_stand-in/{what}", headers=auth, timeout=60
        )
        if status != 200:
            raise RuntimeError(f"stand-in answered {status}: {body!r}")
        return body


# --- sending -----------------------------------------------------------------------------


@dataclass
class Answers:
    """What the receivers answered."""

    codes: Counter[str] = field(default_factory=Counter)  # "202 queued", "no answer", ...
    acknowledged: set[str] = field(default_factory=set)  # keys answered 2xx
    acknowledged_ghosts: set[str] = field(default_factory=set)
    given_up: list[int] = field(default_factory=list)  # deploys never answered 2xx
    server_errors: list[tuple[float, int, str]] = field(default_factory=list)  # at, status, why
    other: list[tuple[int, str]] = field(default_factory=list)  # 4xx, "ignored": never expected
    done: int = 0  # requests settled (answered 2xx, refused, or given up)
    lock: threading.Lock = field(default_factory=threading.Lock)


def post_until_answered(
    send: Send, receivers: list[Proc], answers: Answers, *, deadline: float
) -> None:
    """POST ``send`` until a 2xx; no answer or a 5xx: the next receiver, after a pause."""
    for attempt in range(10_000):
        if time.monotonic() >= deadline:
            break
        port = receivers[(send.number + attempt) % len(receivers)].port
        assert port is not None
        try:
            status, body = http_json(port, "POST", send.path, body=send.body, headers=send.headers)
        except OSError:
            status, body = 0, {}
        said = body.get("status", "") if isinstance(body, dict) else ""
        with answers.lock:
            answers.codes[f"{status} {said}".strip() if status else "no answer"] += 1
            if status in (200, 202) and said in ("queued", "duplicate"):
                (answers.acknowledged_ghosts if send.ghost else answers.acknowledged).add(send.key)
                return
            why = body.get("reason", "") if isinstance(body, dict) else str(body)[:200]
            if status >= 500:
                answers.server_errors.append((time.monotonic(), status, why))
            elif status:
                answers.other.append((status, why))
                return  # sending it again would not change that
        time.sleep(min(0.1 * (attempt + 1), 1.0))
    with answers.lock:
        answers.given_up.append(send.number)


def send_all(spec: Spec, sends: list[Send], receivers: list[Proc], answers: Answers) -> float:
    """Send every request, request i due at i/rate seconds, from ``spec.concurrency`` threads."""
    cursor = iter(range(len(sends)))
    take = threading.Lock()
    started = time.monotonic()

    def loop() -> None:
        while True:
            with take:
                index = next(cursor, None)
            if index is None:
                return
            time.sleep(max(0.0, started + index / spec.rate - time.monotonic()))
            deadline = time.monotonic() + spec.send_timeout
            post_until_answered(sends[index], receivers, answers, deadline=deadline)
            with answers.lock:
                answers.done += 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(spec.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=len(sends) / spec.rate + spec.send_timeout + 60)
    return time.monotonic() - started


# --- mayhem on our side: kills, and a PostgreSQL restart ---------------------------------


@dataclass
class Mayhem:
    """What the run did to its own processes and to the database."""

    kills: Counter[str] = field(default_factory=Counter)
    restarts: list[tuple[float, float]] = field(default_factory=list)  # PostgreSQL down, up
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def postgres_cluster(action: str) -> subprocess.CompletedProcess[str]:
    """``pg_ctlcluster`` on this machine's one cluster (Debian layout; root)."""
    (version,) = os.listdir("/etc/postgresql")
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class Progress:
    """How far the run is, 0..1: of the sending, and of the whole run (sending, delivery)."""

    def __init__(self, fleet: Fleet, answers: Answers, *, total: int, expected: int) -> None:
        self.fleet, self.answers = fleet, answers
        self.total, self.expected = total, max(expected, 1)
        self._delivered, self._looked = 0, 0.0

    def sent(self) -> float:
        """The share of requests settled."""
        return self.answers.done / self.total

    def run(self) -> float:
        """Half the sending, half the delivering (deploys in Cortex of those expected)."""
        if time.monotonic() - self._looked > 0.5:
            self._looked = time.monotonic()
            with suppress(Exception):  # the stand-in is busy: keep the last count
                self._delivered = int(self.fleet.stand_in("stats")["deploys"])
        return (self.sent() + min(self._delivered / self.expected, 1.0)) / 2


def wreak(
    spec: Spec, fleet: Fleet, mayhem: Mayhem, progress: Progress, *, rng: random.Random
) -> None:
    """SIGKILL each process ``spec.kills`` times at random moments, and restart it.

    Receivers die at random points of the sending; workers (and ``serve`` delivering inside)
    at random points of the whole run, the delivery included. A killed process comes back
    after a moment, as under a supervisor, while the others are killed in their turn; it is
    not killed again before it is back.
    """
    plan = [
        (rng.uniform(0.03, 0.97), proc.name) for proc in fleet.killable for _ in range(spec.kills)
    ]
    if spec.restart_postgres:
        plan.append((rng.uniform(0.3, 0.5), "postgresql"))
    procs = {p.name: p for p in fleet.killable}
    only_sending = {p.name for p in fleet.receivers} if fleet.workers else set()
    coming_back: dict[str, threading.Thread] = {}

    def restart(proc: Proc, pause: float) -> None:
        if not mayhem.stop.wait(pause):
            try:
                proc.start()
            except RuntimeError as exc:  # keep going: the report names it
                mayhem.errors.append(f"restart of {proc.name} failed: {exc}")

    try:
        for fraction, name in sorted(plan):
            measure = progress.sent if name in only_sending else progress.run
            while measure() < fraction and not mayhem.stop.wait(0.05):
                pass
            if mayhem.stop.is_set():
                return
            if name == "postgresql":
                began = time.monotonic()
                done = postgres_cluster("restart")
                mayhem.restarts.append((began, time.monotonic()))
                if done.returncode:
                    mayhem.errors.append(f"pg_ctlcluster restart failed: {done.stderr.strip()}")
                continue
            if name in coming_back:
                coming_back.pop(name).join(timeout=90)
            procs[name].kill9()
            mayhem.kills[name] += 1
            pause = rng.uniform(0, 0.5)
            coming_back[name] = threading.Thread(target=restart, args=(procs[name], pause))
            coming_back[name].start()
    finally:
        for thread in coming_back.values():
            thread.join(timeout=90)


# --- checking ----------------------------------------------------------------------------


@dataclass
class Report:
    """The outcome of one run, and whether every check held."""

    spec: Spec
    requests: int = 0
    twin_keys: set[str] = field(default_factory=set)
    answers: Answers = field(default_factory=Answers)
    mayhem: Mayhem = field(default_factory=Mayhem)
    delivered: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dead: Counter[str] = field(default_factory=Counter)  # reason -> count
    dead_wrongly: list[str] = field(default_factory=list)  # not a permanent rejection
    ghosts_not_dead: list[str] = field(default_factory=list)
    not_drained: dict[str, int] = field(default_factory=dict)
    server_errors: list[tuple[int, str]] = field(default_factory=list)
    unavailable_in_restart: int = 0  # 503 while PostgreSQL restarted
    stand_in: dict[str, Any] = field(default_factory=dict)
    send_seconds: float = 0.0
    drain_seconds: float = 0.0
    wall_seconds: float = 0.0
    workdir: str = ""

    @property
    def planned_kills(self) -> int:
        """How many SIGKILLs the run was to do."""
        workers = self.spec.workers if self.spec.backend == "postgres" else 0
        return self.spec.kills * (self.spec.receivers + workers)

    @property
    def problems(self) -> list[str]:
        """Every check that failed, in words."""
        twins = sum(1 for key in self.duplicates if key in self.twin_keys)
        checks = [
            (self.missing, f"{len(self.missing)} acknowledged deploys missing from cortex"),
            (
                self.duplicates,
                f"{len(self.duplicates)} deploys recorded more than once ({twins} of them sent "
                "through two hooks)",
            ),
            (self.unexpected, "deploys in cortex that were never sent, or for unknown entities"),
            (self.server_errors, f"{len(self.server_errors)} 5xx answers to valid input"),
            (self.answers.other, "answers to valid input other than 2xx queued/duplicate"),
            (self.dead_wrongly, "dead letters that are not permanent rejections"),
            (self.ghosts_not_dead, "deploys to unknown entities not dead-lettered"),
            (self.not_drained, "outbox not drained"),
            (self.stand_in.get("violations"), "cortex received invalid requests"),
            (self.mayhem.errors, "the run itself went wrong"),
        ]
        out = [f"{text}: {_sample(found)}" for found, text in checks if found]
        if sum(self.mayhem.kills.values()) < self.planned_kills:
            out.append(f"fewer kills than planned: {dict(self.mayhem.kills)}")
        return out

    @property
    def ok(self) -> bool:
        """True when every check held."""
        return not self.problems


def _sample(found: Any) -> str:
    items = list(found.items()) if isinstance(found, dict) else list(found)
    return repr(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")


def stored_keys(deploys: list[dict[str, Any]]) -> Counter[str]:
    """How many Cortex records carry each idempotency key."""
    counted: Counter[str] = Counter()
    for deploy in deploys:
        bridge = (deploy.get("customData") or {}).get("bridge") or {}
        counted[str(bridge.get("idempotencyKey"))] += 1
    return counted


def outbox(database_url: str, status: str | None = None) -> tuple[dict[str, int], list[Any]]:
    """The outbox's counts per status, and its rows (of ``status``, or none at all)."""
    from bridge.store import Store

    with Store.from_url(database_url, create=False) as store:
        counts, rows, after = store.counts(), [], None
        while status is not None:
            wanted = None if status == "all" else status
            page, after = store.list_deliveries(status=wanted, limit=200, after=after)
            rows += page
            if after is None:
                break
    return counts, rows


def dead_key(delivery: Any) -> str:
    """The idempotency key of a dead-lettered delivery (one entity each in these runs)."""
    from bridge.model import event_from_dict

    event = event_from_dict(delivery.payload["event"])
    return idempotency_key(event, delivery.payload["entities"][0])


def drained(fleet: Fleet, answers: Answers, log: Callable[[str], None] | None) -> bool:
    """Every acknowledged deploy is in Cortex, and nothing waits in the outbox."""
    try:
        counts, _ = outbox(fleet.database_url)
        keys = stored_keys(fleet.stand_in("deploys")["deploys"])
    except Exception:  # the database may be restarting: look again shortly
        return False
    if log is not None:
        log(f"outbox {counts}; {len(keys)} deploys in cortex")
    return not any(counts[s] for s in WAITING) and answers.acknowledged <= set(keys)


def check(report: Report, fleet: Fleet, sends: list[Send]) -> None:
    """Compare what Cortex holds, and what the outbox says, with what was acknowledged."""
    answers = report.answers
    stored = stored_keys(fleet.stand_in("deploys")["deploys"])
    report.stand_in = fleet.stand_in("stats")
    planned = {s.key for s in sends if not s.ghost}
    ghosts = {s.key for s in sends if s.ghost}
    report.twin_keys = {s.key for s in sends if s.kind == "twin"}
    report.delivered = len(set(stored) & planned)
    report.duplicates = {key: n for key, n in stored.items() if n > 1}
    report.missing = sorted(answers.acknowledged - set(stored))
    report.unexpected = sorted(set(stored) - planned)
    counts, dead = outbox(fleet.database_url, "dead")
    report.not_drained = {s: counts[s] for s in WAITING if counts[s]}
    for delivery in dead:
        reason = (delivery.last_error or "")[:100]
        report.dead[reason] += 1
        if dead_key(delivery) not in ghosts or "(404)" not in reason:
            report.dead_wrongly.append(f"{delivery.id}: {reason}")
    report.ghosts_not_dead = sorted(answers.acknowledged_ghosts - {dead_key(d) for d in dead})
    windows = [(down, up + 15.0) for down, up in report.mayhem.restarts]  # reconnect slack
    for at, status, why in answers.server_errors:
        if status == 503 and any(down <= at <= up for down, up in windows):
            report.unavailable_in_restart += 1
        else:
            report.server_errors.append((status, why))


def keep_evidence(fleet: Fleet, workdir: Path) -> None:
    """Write what Cortex holds and the whole outbox beside the logs of a failed run."""
    from bridge.views import show_delivery

    deploys = fleet.stand_in("deploys")["deploys"]
    (workdir / "cortex-deploys.json").write_text(json.dumps(deploys, indent=1))
    rows = [show_delivery(d, full=True, spelled=()) for d in outbox(fleet.database_url, "all")[1]]
    (workdir / "outbox.json").write_text(json.dumps(rows, indent=1))


# --- the run -----------------------------------------------------------------------------


def run(spec: Spec, *, log: Callable[[str], None] = print) -> Report:
    """One whole run: start, send under mayhem, drain, check, stop; a failed check is reported."""
    began = time.monotonic()
    rng = random.Random(spec.seed)
    sends = plan_sends(spec, rng)
    report = Report(spec, requests=len(sends))
    workdir = spec.workdir or Path(tempfile.mkdtemp(prefix="bridge-chaos-"))
    report.workdir = str(workdir)
    try:
        with _database(spec, workdir) as url:
            fleet = Fleet(spec, workdir, url)
            try:
                _run_fleet(spec, fleet, sends, report, rng=rng, log=log)
                if not report.ok:
                    keep_evidence(fleet, workdir)
            finally:
                report.mayhem.stop.set()
                fleet.stop()
    finally:
        if spec.restart_postgres:
            _ensure_postgres(report.mayhem)
    report.wall_seconds = time.monotonic() - began
    if report.ok and spec.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def _run_fleet(
    spec: Spec,
    fleet: Fleet,
    sends: list[Send],
    report: Report,
    *,
    rng: random.Random,
    log: Callable[[str], None],
) -> None:
    fleet.start()
    log(f"{spec.backend}: {len(fleet.receivers)} receivers and {len(fleet.workers)} workers up")
    expected = len({s.key for s in sends if not s.ghost})
    progress = Progress(fleet, report.answers, total=len(sends), expected=expected)
    killer = threading.Thread(
        target=wreak, args=(spec, fleet, report.mayhem, progress), kwargs={"rng": rng}
    )
    killer.start()
    report.send_seconds = send_all(spec, sends, fleet.receivers, report.answers)
    log(f"sent {len(sends)} requests in {report.send_seconds:.1f}s; draining")
    drain_began = last_shown = time.monotonic()
    while time.monotonic() - drain_began < spec.drain_timeout:
        show = time.monotonic() - last_shown >= 10.0
        last_shown = time.monotonic() if show else last_shown
        if drained(fleet, report.answers, log if show else None) and not killer.is_alive():
            break
        time.sleep(0.25)
    report.mayhem.stop.set()
    killer.join(timeout=120)
    time.sleep(1.0)  # a record made twice, late, would show up now
    report.drain_seconds = time.monotonic() - drain_began
    log(f"drained in {report.drain_seconds:.1f}s; killed {dict(report.mayhem.kills)}")
    check(report, fleet, sends)


@contextmanager
def _database(spec: Spec, workdir: Path) -> Iterator[str]:
    if spec.backend == "postgres":
        with postgres_schema(spec.postgres_url) as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'relay.db'}"


def _ensure_postgres(mayhem: Mayhem) -> None:
    """The PostgreSQL cluster is running when the script ends, whatever happened."""
    if postgres_cluster("status").returncode != 0:
        started = postgres_cluster("start")
        if started.returncode != 0:
            mayhem.errors.append(f"could not start postgresql again: {started.stderr.strip()}")


# --- the command -------------------------------------------------------------------------


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "none"


def summary(report: Report) -> str:
    """The run as a Markdown list."""
    spec, answers = report.spec, report.answers
    procs = (
        f"{spec.receivers} x `serve --no-worker --workers {spec.serve_processes}` + "
        f"{spec.workers} x `worker --threads {spec.worker_threads}`"
        if spec.backend == "postgres"
        else f"{spec.receivers} x `serve --workers {spec.serve_processes}` (delivery inside)"
    )
    acknowledged = len(answers.acknowledged) + len(answers.acknowledged_ghosts)
    restarts = f" (plus {report.unavailable_in_restart} x 503 while PostgreSQL restarted)"
    lines = [
        f"- **{spec.backend}**: {procs}; stand-in failing {spec.chaos:.0%} of calls "
        f"(seed {spec.seed}, Retry-After {spec.retry_after:g}s"
        + (f", limit {spec.rate_limit}/min" if spec.rate_limit else "")
        + ")"
        + ("; PostgreSQL restarted mid-run" if spec.restart_postgres else ""),
        f"- sent: {spec.events} deploys in {report.requests} signed requests ({spec.twins:.0%} "
        f"also through a second hook, {spec.redeliveries:.0%} redelivered, {spec.ghosts:.0%} to "
        f"unknown entities) at {spec.rate:g}/s; acknowledged {acknowledged}, "
        f"never acknowledged {len(answers.given_up)}",
        f"- answers: {_listed(answers.codes)}",
        f"- in cortex: {report.delivered} deploys; duplicates {len(report.duplicates)}, "
        f"missing {len(report.missing)}, unexpected {len(report.unexpected)}",
        f"- 5xx to valid input: {len(report.server_errors)}"
        + (restarts if report.unavailable_in_restart else ""),
        f"- dead letters: {sum(report.dead.values())}"
        + "".join(f"\n  - {n} x {why}" for why, n in report.dead.most_common()),
        f"- SIGKILLs (process group, then restart): {_listed(report.mayhem.kills)}",
        f"- cortex saw: {_listed(report.stand_in.get('requests', {}))}; faults: "
        f"{_listed(report.stand_in.get('faults', {}))}",
        f"- wall time {report.wall_seconds:.0f}s (sending {report.send_seconds:.0f}s, "
        f"drain {report.drain_seconds:.0f}s)",
        f"- result: **{'PASS' if report.ok else 'FAIL'}**"
        + "".join(f"\n  - {problem}" for problem in report.problems),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[Spec, Path | None]:
    """The run's Spec from the command line, and where to write the JSON report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--backend", choices=["sqlite", "postgres"], default="sqlite")
    add("--events", type=int, default=2000, help="deploys to send (default: 2000)")
    add("--receivers", type=int, help="serve processes (default: 2 on postgres, 1 on sqlite)")
    add("--workers", type=int, default=2, help="worker processes, postgres only (default: 2)")
    add("--serve-processes", type=int, help="gunicorn processes each (default: 1 pg, 2 sqlite)")
    add("--kills", type=int, default=3, help="SIGKILLs of each process (default: 3)")
    add("--chaos", type=float, default=0.3, help="share of Cortex calls failed (default: 0.3)")
    add("--rate-limit", type=int, default=0, help="the stand-in's requests/minute (default: off)")
    add("--requests-per-minute", type=int, help="cortex.requests_per_minute (default: built in)")
    add("--twins", type=float, default=0.05, help="share also sent through a second hook")
    add("--seed", type=int, default=4)
    add("--rate", type=float, default=40.0, help="requests sent per second (default: 40)")
    add("--restart-postgres", action="store_true", help="restart PostgreSQL mid-run (root)")
    add("--postgres-url", default=os.environ.get("BRIDGE_TEST_POSTGRES_URL") or DEFAULT_PG)
    add("--drain-timeout", type=float, default=1800.0)
    add("--json", type=Path, help="also write the summary and the verdict here")
    args = parser.parse_args(argv)
    postgres = args.backend == "postgres"
    if args.restart_postgres and not postgres:
        parser.error("--restart-postgres needs --backend postgres")
    spec = Spec(
        backend=args.backend,
        events=args.events,
        receivers=args.receivers or (2 if postgres else 1),
        workers=args.workers,
        serve_processes=args.serve_processes or (1 if postgres else 2),
        kills=args.kills,
        chaos=args.chaos,
        rate_limit=args.rate_limit,
        requests_per_minute=args.requests_per_minute,
        twins=args.twins,
        seed=args.seed,
        rate=args.rate,
        restart_postgres=args.restart_postgres,
        postgres_url=args.postgres_url,
        drain_timeout=args.drain_timeout,
    )
    return spec, args.json


def main(argv: list[str] | None = None) -> int:
    """Run once and print the summary; exit 1 when a check failed."""
    spec, json_path = parse_args(argv)
    report = run(spec, log=lambda line: print(line, file=sys.stderr, flush=True))
    text = summary(report)
    print(text)
    if not report.ok:
        print(f"logs, outbox and cortex records kept in {report.workdir}", file=sys.stderr)
    if json_path is not None:
        json_path.write_text(json.dumps({"ok": report.ok, "summary": text}, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
