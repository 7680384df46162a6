"""`demo`: the whole flow on loopback, with no Cortex account, in a few seconds.

It starts the stand-in Cortex (:mod:`bridge.fakecortex`), the real receiver over real HTTP on
a temporary SQLite database, and the real delivery worker; sends the signed webhooks of
:mod:`bridge.demo_events`, narrating each answer; and shows what Cortex received. Every
answer and every deploy is checked against the story, so a non-zero exit names what broke:
the demo doubles as a smoke test of an installation.

The server's dependencies are imported inside the functions: this module is imported to
build the parser of every subcommand, ``send`` included.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.commands.common import EXIT_FAILED, fail
from bridge.commands.helptext import describe

if TYPE_CHECKING:
    from bridge.app import Runtime
    from bridge.demo_events import Expected, Step
    from bridge.fakecortex import FakeCortex

Say = Callable[[str], None]

# How long one delivery may take before the demo calls it a failure: on loopback it takes
# milliseconds, so this only bounds a broken installation.
DELIVERY_TIMEOUT = 10.0
HOOK_ID = "468213705"  # X-GitHub-Hook-ID: the id of the (invented) webhook


@dataclass(frozen=True)
class Stage:
    """What the demo runs: the stand-in Cortex, the receiver's runtime and address."""

    cortex: FakeCortex
    runtime: Runtime
    receiver_url: str
    workdir: str


ABOUT = """\
A self-contained tour with no Cortex account, in a few seconds: it starts a stand-in Cortex
and the real receiver and worker on loopback (a temporary SQLite database), sends signed
sample GitHub and GitLab webhooks, records one deploy the way `send` does in a CI job, and
shows what Cortex received. Every answer is checked, so it doubles as a smoke test of an
installation."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``demo``."""
    describe(
        parser,
        ABOUT,
        environment=[
            ("(none)", "CORTEX_API_URL, BRIDGE_DATABASE_URL and the secrets are ignored on"),
            ("", "purpose: the demo's deploys never leave this machine"),
        ],
        examples=[
            "cortex-deploy-bridge demo",
            "cortex-deploy-bridge demo --json > cortex-received.json",
            "cortex-deploy-bridge demo --keep-running   # then point curl at it",
        ],
        exit_codes=[
            (0, "every step did what the story says"),
            (1, "something did not: the line names it"),
        ],
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the receiver and the stand-in Cortex up (their URLs and secrets are "
        "printed) until Ctrl-C",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print what Cortex stored as JSON on stdout (the narration goes to stderr)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``demo``: tell the story, show what Cortex received; 0 when every expectation held."""
    # The environment is left alone on purpose: CORTEX_API_URL or BRIDGE_DATABASE_URL set
    # for a real bridge must not send the demo's invented deploys anywhere.
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        with ExitStack() as stack:
            stage = _start(stack)
            failures = _tell(stage, say)
            if args.json:
                print(json.dumps(_stored(stage.cortex), indent=2), flush=True)
            if args.keep_running:
                _keep_running(stage, say)
    except KeyboardInterrupt:
        say("demo: interrupted; everything stopped")
        return 130
    except BrokenPipeError:
        raise  # `demo | head`: the command line ends it quietly
    except Exception as exc:  # one line, never a traceback: the demo is a first impression
        return fail(f"demo failed: {_one_line(exc)}", EXIT_FAILED)
    return EXIT_FAILED if failures else 0


def _one_line(exc: BaseException) -> str:
    """The error on one line; its type named unless it is one of the bridge's own."""
    from bridge.errors import BridgeError

    text = " ".join(str(exc).split())
    return text if isinstance(exc, BridgeError) and text else f"{type(exc).__name__}: {text}"


# --- Starting and stopping -------------------------------------------------------------


def _start(stack: ExitStack) -> Stage:
    """Start the stand-in Cortex, the receiver and the worker; ``stack`` stops them all."""
    import secrets
    import tempfile

    from bridge.fakecortex import FakeCortex

    workdir = stack.enter_context(
        tempfile.TemporaryDirectory(prefix="bridge-demo-", ignore_cleanup_errors=True)
    )
    stack.enter_context(_quiet_logs())
    cortex = stack.enter_context(FakeCortex(token=secrets.token_urlsafe(24)))
    runtime = _runtime(cortex.url, workdir)
    stack.callback(runtime.store.close)
    receiver_url = _serve(stack, runtime)
    _work(stack, runtime, cortex)
    return Stage(cortex=cortex, runtime=runtime, receiver_url=receiver_url, workdir=workdir)


def _runtime(cortex_url: str, workdir: str) -> Runtime:
    """The receiver's runtime: the demo config, a fresh SQLite file, random secrets."""
    import os
    import secrets

    from bridge.config import parse_config
    from bridge.demo_events import STORY_CONFIG
    from bridge.relay import make_runtime

    document = {
        **STORY_CONFIG,
        "cortex": {"url": cortex_url, "timeout_seconds": 5},
        "database": f"sqlite:///{os.path.join(workdir, 'bridge.db')}",
    }
    config = parse_config(document)  # no environ: nothing real is overridden in
    chosen = {
        "GITHUB_WEBHOOK_SECRET": secrets.token_hex(20),
        "GITLAB_WEBHOOK_TOKEN": secrets.token_urlsafe(24),
        "FLUX_WEBHOOK_SECRET": secrets.token_hex(20),
        "BRIDGE_ADMIN_TOKEN": secrets.token_urlsafe(24),
    }
    return make_runtime(config, chosen)


def _serve(stack: ExitStack, runtime: Runtime) -> str:
    """Serve the receiver over HTTP on a random loopback port; its base URL."""
    import threading

    from werkzeug.serving import WSGIRequestHandler, make_server

    from bridge.app import create_app

    class QuietHandler(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            """No access log: the demo narrates every request itself."""

    server = make_server(
        "127.0.0.1", 0, create_app(runtime), threaded=True, request_handler=QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="demo-receiver",
        daemon=True,
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(5)

    stack.callback(stop)
    return f"http://127.0.0.1:{server.server_port}"


def _work(stack: ExitStack, runtime: Runtime, cortex: FakeCortex) -> None:
    """Run the delivery worker in a thread, woken by the receiver as each event is stored."""
    import threading

    from bridge.commands.common import cortex_client, worker_owner
    from bridge.relay import make_worker
    from bridge.worker import start_in_thread

    client = cortex_client(runtime.config, {"CORTEX_API_TOKEN": cortex.token})
    stack.callback(client.close)
    worker = make_worker(runtime, client, owner=worker_owner(), idle_poll=0.25)
    stop = threading.Event()
    thread = start_in_thread(worker, stop)

    def halt() -> None:
        stop.set()
        runtime.wake.set()
        thread.join(5)

    stack.callback(halt)


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Only the bridge's warnings, as short lines without tracebacks, during the demo."""
    logger = logging.getLogger("bridge")
    saved = (logger.level, logger.handlers[:], logger.propagate)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_ShortLine())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.handlers[:] = saved[1]
        logger.propagate = saved[2]


class _ShortLine(logging.Formatter):
    """A log formatter for the demo: level, message and the error, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """``   [bridge warning] will retry: <error>``."""
        error = getattr(record, "error", None)
        tail = f": {error}" if error else ""
        return f"   [bridge {record.levelname.lower()}] {record.getMessage()}{tail}"


# --- The story -------------------------------------------------------------------------


def _tell(stage: Stage, say: Say) -> list[str]:
    """Send every step, show what Cortex received; the expectations that failed."""
    from bridge.demo_events import STORY

    _introduce(stage, say)
    failures: list[str] = []
    for number, step in enumerate(STORY, 1):
        failures += _play(stage, number, step, say)
    failures += _drain(stage, say)
    failures += _send(stage, len(STORY) + 1, say)
    failures += _show_cortex(stage.cortex, say)
    _conclude(failures, say)
    return failures


def _introduce(stage: Stage, say: Say) -> None:
    """Where the stand-in and the receiver listen, and the config the bridge runs with."""
    import yaml

    from bridge.demo_events import STORY_CONFIG

    say("cortex-deploy-bridge demo: webhooks -> the bridge -> Cortex, all on this machine.")
    say(f"  stand-in Cortex  {stage.cortex.url}  (a local fake of the Cortex Deploys API)")
    say(f"  receiver         {stage.receiver_url}  (the real bridge, SQLite in {stage.workdir})")
    say("  config:")
    text = yaml.safe_dump(dict(STORY_CONFIG), sort_keys=False, default_flow_style=None)
    for line in text.splitlines():
        say(f"    {line}")
    say("")


def _play(stage: Stage, number: int, step: Step, say: Say) -> list[str]:
    """Send one step and check its answer; wait for the worker when it was queued."""
    say(f"{number}. {step.says}")
    status, body = _post(stage, step)
    say(f"   <- {status} {json.dumps(body)}")
    failures: list[str] = []
    if (status, body.get("status")) != (step.status, step.answer):
        failures.append(
            f"step {number}: answered {status} {body.get('status')!r}, "
            f"expected {step.status} {step.answer!r}"
        )
        say(f"   !! expected {step.status} {step.answer!r}")
    if status == 202 and isinstance(body.get("id"), int):
        failures += _await_delivery(stage, number, body["id"], say)
    if step.note:
        say(f"   ({step.note})")
    return failures


def _post(stage: Stage, step: Step) -> tuple[int, dict[str, Any]]:
    """POST one step's webhook over HTTP, signed as its source signs; (status, JSON)."""
    import http.client
    from urllib.parse import urlsplit

    body = json.dumps(step.payload).encode()
    if step.source == "github":
        headers = _github_headers(stage, step, body)
    elif step.source == "flux":
        headers = _flux_headers(stage, step, body)
    else:
        headers = _gitlab_headers(stage, step)
    where = urlsplit(stage.receiver_url)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=10)
    try:
        conn.request("POST", f"/webhooks/{step.source}", body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
    finally:
        conn.close()
    try:
        parsed = json.loads(data)
    except ValueError:
        parsed = None
    return answer.status, parsed if isinstance(parsed, dict) else {
        "body": data.decode("utf-8", "replace")[:200]
    }


def _github_headers(stage: Stage, step: Step, body: bytes) -> dict[str, str]:
    """GitHub's delivery headers, X-Hub-Signature-256 = HMAC-SHA256 of the raw body."""
    import hashlib
    import hmac
    import secrets

    secret = secrets.token_hex(20) if step.forged else stage.runtime.github_secret
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/demo",
        "X-GitHub-Event": step.event,
        "X-GitHub-Delivery": step.delivery,
        "X-GitHub-Hook-ID": HOOK_ID,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def _gitlab_headers(stage: Stage, step: Step) -> dict[str, str]:
    """GitLab's delivery headers: it sends the secret token itself in X-Gitlab-Token."""
    import secrets

    token = secrets.token_urlsafe(24) if step.forged else stage.runtime.gitlab_token
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.9.0",
        "X-Gitlab-Event": step.event,
        "X-Gitlab-Event-UUID": step.delivery,
        "X-Gitlab-Token": token,
    }


def _flux_headers(stage: Stage, step: Step, body: bytes) -> dict[str, str]:
    """notification-controller's generic-hmac Provider: X-Signature = HMAC-SHA256 of the body."""
    import hashlib
    import hmac

    digest = hmac.new(stage.runtime.flux_secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "Gotk-Component": "kustomize-controller",
        "User-Agent": "Go-http-client/1.1",
        "X-Signature": f"sha256={digest}",
    }


def _await_delivery(stage: Stage, number: int, delivery_id: int, say: Say) -> list[str]:
    """Wait for the worker to settle one queued event; narrate what it did in Cortex."""
    import time

    store = stage.runtime.store
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    found = store.get(delivery_id)
    while found is not None and found.status not in ("delivered", "dead"):
        if time.monotonic() > deadline:
            return [
                f"step {number}: delivery {delivery_id} still {found.status} after "
                f"{DELIVERY_TIMEOUT:g}s ({found.last_error or 'no error recorded'})"
            ]
        time.sleep(0.02)
        found = store.get(delivery_id)
    if found is None or found.status != "delivered":
        error = found.last_error if found is not None else "it vanished"
        return [f"step {number}: delivery {delivery_id} failed: {error}"]
    for entity, result in found.results.items():
        what = f"{result.get('action')} {result.get('type', '')}".strip()
        say(f"   worker -> Cortex: {entity}: {what} (uuid {str(result.get('uuid'))[:8]}...)")
    return []


def _drain(stage: Stage, say: Say) -> list[str]:
    """Wait until nothing waits in the outbox; the failure when it does not empty."""
    import time

    store = stage.runtime.store
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    counts = store.counts()
    while counts["queued"] + counts["retrying"] + counts["delivering"]:
        if time.monotonic() > deadline:
            return [f"the outbox did not drain: {counts}"]
        time.sleep(0.02)
        counts = store.counts()
    say("")
    say(f"Outbox drained: {counts['delivered']} delivered, {counts['dead']} dead-lettered.")
    return [f"{counts['dead']} deliveries were dead-lettered"] if counts["dead"] else []


# --- `send` in a CI job ----------------------------------------------------------------

# A GitLab CI deploy job of acme/backend/ledger-api (its predefined variables, invented values):
# `send` runs in it after the deploy, with no receiver involved.
LEDGER = "5d0c2f3a9be14e67a8d1c03f6e2b9a47d15c8e90"
SEND_JOB = {
    "GITLAB_CI": "true",
    "CI_PROJECT_PATH": "acme/backend/ledger-api",
    "CI_PROJECT_URL": "https://gitlab.acme.example/acme/backend/ledger-api",
    "CI_COMMIT_SHA": LEDGER,
    "CI_COMMIT_TITLE": "Settle ledger entries in batches of 500",
    "CI_COMMIT_REF_NAME": "main",
    "CI_JOB_ID": "48220011",
    "CI_JOB_URL": "https://gitlab.acme.example/acme/backend/ledger-api/-/jobs/48220011",
    "CI_JOB_STARTED_AT": "2026-03-10T11:18:02Z",
    "CI_ENVIRONMENT_NAME": "production",
    "GITLAB_USER_NAME": "Mara Okafor",
}
SEND_TIMESTAMP = "2026-03-10T11:20:00Z"  # in a real job: now
SEND_COMMAND = f"cortex-deploy-bridge send --timestamp {SEND_TIMESTAMP}"


def _sent_deploy() -> Expected:
    from bridge.demo_events import Expected

    return Expected("ledger-api", "production", "DEPLOY", LEDGER, SEND_TIMESTAMP)


def _send(stage: Stage, number: int, say: Say) -> list[str]:
    """Record one deploy the way `send` does in a CI job; run it twice, as a retried job would."""
    import io

    from bridge.action.inputs import Inputs
    from bridge.action.output import Reporter
    from bridge.action.run import run_step

    environ = {
        **SEND_JOB,
        "CORTEX_API_TOKEN": stage.cortex.token,
        "CORTEX_API_URL": stage.cortex.url,
    }
    say("")
    say(f"{number}. No receiver: a GitLab CI deploy job of acme/backend/ledger-api runs")
    say(f"   $ {SEND_COMMAND}")
    say("   (entity, commit, environment, job page and deployer come from the job's variables)")
    printed = []
    for attempt in ("first run", "the job retried"):
        out, err = io.StringIO(), io.StringIO()
        code = run_step(Inputs(timestamp=SEND_TIMESTAMP), environ, Reporter((), out=out, err=err))
        for line in err.getvalue().splitlines():
            say(f"   {line}")
        say(f"   -> exit {code}, printed {out.getvalue().strip() or 'nothing'}  ({attempt})")
        printed.append((code, out.getvalue().split()))
    first, second = printed
    if first[0] != 0 or len(first[1]) != 1:
        return [f"step {number}: send exited {first[0]}, printed {first[1]}"]
    if second != first:
        return [f"step {number}: the retried send printed {second}, not {first}"]
    return []


# --- What Cortex received --------------------------------------------------------------


def _stored(cortex: FakeCortex) -> list[dict[str, Any]]:
    """Every deploy the stand-in Cortex stored, oldest first, with its entity."""
    return sorted(cortex.all_deploys(), key=lambda d: (str(d.get("timestamp")), d["entity"]))


def _show_cortex(cortex: FakeCortex, say: Say) -> list[str]:
    """Print the table of deploys and one full body; the differences from the story."""
    stored = _stored(cortex)
    say("")
    say(f"What Cortex received ({len(stored)} deploys):")
    for line in _table(stored):
        say(f"  {line}")
    example = _example_body(cortex)
    if example is not None:
        say("")
        say(f"One full body, as POSTed to {example[0]}:")
        say(json.dumps(example[1], indent=2))
    return _compare(stored) + [f"Cortex refused a request: {v}" for v in cortex.violations]


def _table(stored: list[dict[str, Any]]) -> list[str]:
    """Rows of entity, environment, type, short sha, timestamp and title, aligned."""
    rows = [("ENTITY", "ENVIRONMENT", "TYPE", "SHA", "TIMESTAMP", "TITLE")]
    for deploy in stored:
        title = str(deploy.get("title", ""))
        rows.append(
            (
                str(deploy["entity"]),
                str(deploy.get("environment", "-")),
                str(deploy.get("type", "")),
                str(deploy.get("sha", "-"))[:8],
                str(deploy.get("timestamp", "")),
                title if len(title) <= 40 else title[:39] + "~",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _example_body(cortex: FakeCortex) -> tuple[str, Any] | None:
    """The most telling body Cortex received: the ROLLBACK, else the last deploy."""
    posts = [r for r in cortex.requests_to("POST") if isinstance(r.body, dict)]
    chosen = [r for r in posts if r.body.get("type") == "ROLLBACK"] or posts
    return (chosen[-1].path, chosen[-1].body) if chosen else None


def _compare(stored: list[dict[str, Any]]) -> list[str]:
    """What Cortex holds that the story does not expect, and what it lacks."""
    from collections import Counter

    from bridge.demo_events import EXPECTED_DEPLOYS

    fields = ("entity", "environment", "type", "sha", "timestamp")
    held = Counter(tuple(str(d.get(f)) for f in fields) for d in stored)
    expected = (*EXPECTED_DEPLOYS, _sent_deploy())
    wanted = Counter(tuple(getattr(e, f) for f in fields) for e in expected)
    return [f"Cortex lacks the deploy {' '.join(t)}" for t in wanted - held] + [
        f"Cortex holds an unexpected deploy {' '.join(t)}" for t in held - wanted
    ]


def _conclude(failures: list[str], say: Say) -> None:
    """The verdict: each failed expectation, or the next steps once all held."""
    from bridge.demo_events import EXPECTED_DEPLOYS, STORY

    say("")
    if failures:
        for failure in failures:
            say(f"FAILED: {failure}")
        say(f"demo: {len(failures)} expectation(s) failed.")
        return
    say(
        f"Every expectation held: {len(STORY)} answers as expected, one deploy recorded by "
        f"send, exactly {len(EXPECTED_DEPLOYS) + 1} deploys in Cortex."
    )
    say("")
    for line in NEXT_STEPS:
        say(line)


NEXT_STEPS = (
    "Next steps: run the bridge for real",
    "  export CORTEX_API_TOKEN=...       # a Cortex API key that may write deploys",
    "  export GITHUB_WEBHOOK_SECRET=...  # the secret you set on the GitHub webhook",
    "  export GITLAB_WEBHOOK_TOKEN=...   # the secret token you set on the GitLab webhook",
    "  export FLUX_WEBHOOK_SECRET=...    # the config turns Flux on: its Provider's token",
    "  # (or take `flux: {enabled: true}` out; sources you do not use: `enabled: false`)",
    "  export BRIDGE_DATABASE_URL=sqlite:///bridge.db  # or postgresql+psycopg://... for replicas",
    "  # save the config printed at the top as bridge.yaml (a start), then:",
    "  cortex-deploy-bridge check-config --config bridge.yaml",
    "  cortex-deploy-bridge serve --bind 0.0.0.0:8080 --config bridge.yaml",
    "  GitHub webhook: https://<your-host>/webhooks/github  (content type application/json;",
    "                  events: Deployment statuses; Workflow runs, as it maps workflows)",
    "  GitLab webhook: https://<your-host>/webhooks/gitlab  (trigger: Deployment events)",
    "  Flux, Argo CD:  https://<your-host>/webhooks/flux, /webhooks/argocd (docs/gitops.md)",
    "  Or skip the receiver: `cortex-deploy-bridge send` in any CI job (see --help).",
    "  Or try each part first, still with no account: docs/try-it.md (stand-ins for Cortex,",
    "  GitHub and GitLab: python -m bridge.fakecortex, python -m bridge.fakescm).",
)


# --- --keep-running --------------------------------------------------------------------


def _keep_running(stage: Stage, say: Say) -> None:
    """Print where everything listens and the secrets to post with; wait for Ctrl-C (or a
    SIGTERM: `kill`, a container's stop), then stop everything and remove the demo's files."""
    import signal
    import time

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # as Ctrl-C: the files went only on Ctrl-C once

    # Caught before anything says the demo is running: a SIGTERM sent on reading that stops it.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        say("")
        for line in _running_lines(stage):
            say(line)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopping: the receiver, the worker and the stand-in Cortex; the demo's files go")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _running_lines(stage: Stage) -> list[str]:
    """Where the receiver and stand-in listen, their secrets, and commands to try."""
    rt, url, cortex = stage.runtime, stage.receiver_url, stage.cortex
    ping = '{"zen":"Design for failure.","hook_id":1}'
    return [
        f"Still running; Ctrl-C stops everything and deletes {stage.workdir}.",
        f"  receiver         {url}",
        f"    GitHub webhook {url}/webhooks/github  secret: {rt.github_secret}",
        f"    GitLab webhook {url}/webhooks/gitlab  X-Gitlab-Token: {rt.gitlab_token}",
        f"    admin API      {url}/api/deliveries  Authorization: Bearer {rt.admin_token}",
        f"  stand-in Cortex  {cortex.url}  Authorization: Bearer {cortex.token}",
        f"  database         {rt.config.database}",
        "  Try:",
        f"    curl -s -H 'Authorization: Bearer {cortex.token}' "
        f"'{cortex.url}/api/v1/catalog/payments-api/deploys?page=0&pageSize=50'",
        f"    body='{ping}'",
        f"    curl -s {url}/webhooks/github -H 'Content-Type: application/json' "
        '-H \'X-GitHub-Event: ping\' -H "X-Hub-Signature-256: sha256=$(printf %s "$body" '
        f"| openssl dgst -sha256 -hmac '{rt.github_secret}' | sed 's/^.* //')\" -d \"$body\"",
    ]
