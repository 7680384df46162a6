"""`cortex-deploy-bridge demo`: the tour runs end to end on loopback and checks itself."""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import pytest

from bridge import demo_events
from bridge.cli import main

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def test_demo_tells_the_story_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("bridge")
    before = (logger.level, list(logger.handlers), logger.propagate)
    assert main(["demo"], {}) == 0
    out, err = capsys.readouterr()
    for line in (
        '<- 200 {"status": "ignored", "reason": "in_progress is not final',
        '<- 200 {"status": "duplicate", "id": ',
        '<- 401 {"status": "unauthorized"',
        "worker -> Cortex: payments-api: created ROLLBACK",
        "What Cortex received (6 deploys):",
        "   $ cortex-deploy-bridge send --timestamp 2026-03-10T11:20:00Z",
        "   already recorded DEPLOY of ledger-api in production as ",
        "one deploy recorded by send, exactly 6 deploys in Cortex.",
        "Every expectation held",
        "export GITHUB_WEBHOOK_SECRET=",
        "/webhooks/gitlab",
    ):
        assert line in out
    assert out.count("<- 202 ") == 5
    assert "worker -> Cortex: inventory-api: created DEPLOY" in out  # the Flux deploy
    # The table: the GitLab deploy's short sha expanded, its "+0200" time shown in UTC.
    assert re.search(r"payments-api +production +DEPLOY +73b61b7c +2026-03-10T10:40:05Z", out)
    assert '"type": "ROLLBACK"' in out  # the full body shown as an example
    assert "Traceback" not in out + err
    assert '"level"' not in err  # no JSON log lines drowning the narration
    assert (logger.level, list(logger.handlers), logger.propagate) == before


def test_json_lists_what_cortex_stored(capsys: pytest.CaptureFixture[str]) -> None:
    # Settings meant for a real bridge must not carry the demo's deploys anywhere.
    real = {"CORTEX_API_URL": "https://192.0.2.1", "BRIDGE_DATABASE_URL": "sqlite:////nope/x.db"}
    assert main(["demo", "--json"], real) == 0
    out, err = capsys.readouterr()
    deploys = json.loads(out)
    assert len(deploys) == 6
    assert [d["type"] for d in deploys].count("ROLLBACK") == 1
    assert all(FULL_SHA.match(d["sha"]) for d in deploys)
    assert all(UTC_Z.match(d["timestamp"]) for d in deploys)
    assert {(d["entity"], d["sha"][:8], d["timestamp"]) for d in deploys} == {
        (e.entity, e.sha[:8], e.timestamp) for e in demo_events.EXPECTED_DEPLOYS
    } | {("ledger-api", "5d0c2f3a", "2026-03-10T11:20:00Z")}
    (sent,) = [d for d in deploys if d["entity"] == "ledger-api"]
    assert sent["url"] == "https://gitlab.acme.example/acme/backend/ledger-api/-/jobs/48220011"
    assert sent["customData"]["bridge"]["idempotencyKey"] == (
        "gitlab:acme/backend/ledger-api:job:48220011:production:ledger-api"
    )
    assert "Every expectation held" in err  # the narration went to stderr


def test_a_broken_expectation_exits_1_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    story = list(demo_events.STORY)
    story[2] = dataclasses.replace(story[2], status=202, answer="queued")  # the redelivery
    monkeypatch.setattr(demo_events, "STORY", tuple(story))
    assert main(["demo"], {}) == 1
    out = capsys.readouterr().out
    assert "FAILED: step 3: answered 200 'duplicate', expected 202 'queued'" in out
    assert "1 expectation(s) failed" in out
    assert "Next steps" not in out


def test_story_payloads_are_our_own_and_consistent() -> None:
    webhooks = [s for s in demo_events.STORY if s.source != "flux"]  # Flux sends no id
    assert len({s.delivery for s in webhooks}) == len(webhooks) - 1
    for expected in demo_events.EXPECTED_DEPLOYS:
        assert FULL_SHA.match(expected.sha) and UTC_Z.match(expected.timestamp)


def test_importing_the_demo_loads_no_server_dependencies() -> None:
    code = (
        "import sys, bridge.commands.demo, bridge.demo_events; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'sqlalchemy', 'werkzeug', 'yaml', 'prometheus_client')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


@pytest.fixture
def kept_running() -> Iterator[subprocess.Popen[str]]:
    """`demo --keep-running` as a process that takes Ctrl-C (SIGINT) as a terminal sends it."""
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from bridge.cli import run; run()"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", code, "demo", "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def _read_until(stream: IO[str], marker: str, *, seconds: float = 20) -> str:
    deadline, seen = time.monotonic() + seconds, ""
    while marker not in seen and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen += line
    return seen


def _get(url: str, token: str) -> Any:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        conn.request(
            "GET", f"{parts.path}?{parts.query}", headers={"Authorization": f"Bearer {token}"}
        )
        answer = conn.getresponse()
        assert answer.status == 200
        return json.loads(answer.read())
    finally:
        conn.close()


def test_keep_running_stops_on_sigterm_and_removes_its_files(
    kept_running: subprocess.Popen[str],
) -> None:
    # `kill` or a container's stop once left /tmp/bridge-demo-* behind.
    assert kept_running.stdout is not None and kept_running.stderr is not None
    shown = _read_until(kept_running.stdout, "  Try:")
    workdir = re.search(r"deletes (\S+)\.$", shown, re.MULTILINE)
    assert workdir and Path(workdir[1]).exists(), shown
    kept_running.send_signal(signal.SIGTERM)
    assert kept_running.wait(15) == 0
    assert "Traceback" not in kept_running.stdout.read() + kept_running.stderr.read()
    assert not Path(workdir[1]).exists()


def test_keep_running_serves_until_ctrl_c(kept_running: subprocess.Popen[str]) -> None:
    assert kept_running.stdout is not None and kept_running.stderr is not None
    shown = _read_until(kept_running.stdout, "  Try:")
    cortex = re.search(r"stand-in Cortex +(\S+) +Authorization: Bearer (\S+)", shown)
    admin = re.search(r"admin API +(\S+) +Authorization: Bearer (\S+)", shown)
    workdir = re.search(r"deletes (\S+)\.$", shown, re.MULTILINE)
    assert cortex and admin and workdir, shown
    listed = _get(f"{cortex[1]}/api/v1/catalog/payments-api/deploys?page=0&pageSize=50", cortex[2])
    assert listed["total"] == 3
    assert len(_get(admin[1], admin[2])["data"]) == 5  # the Flux deploy too
    kept_running.send_signal(signal.SIGINT)
    assert kept_running.wait(15) == 0
    assert "Traceback" not in kept_running.stdout.read() + kept_running.stderr.read()
    assert not Path(workdir[1]).exists()
