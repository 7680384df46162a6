"""`cortex-deploy-bridge serve` as a real process: refuses unsigned, survives kill -9."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.fakecortex import FakeCortex, Fault
from tests.conftest import TOKEN, load_sample

SECRET = "serve-test-secret"
SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """One `serve` process group on loopback."""

    def __init__(self, tmp_path: Path, cortex_url: str, *extra: str) -> None:
        self.port = free_port()
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITLAB_WEBHOOK_TOKEN": "gl",
            "CORTEX_API_TOKEN": TOKEN,
            "CORTEX_API_URL": cortex_url,
            "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
            "BRIDGE_ADMIN_TOKEN": "admin",
        }
        config = tmp_path / "bridge.yaml"
        # Short leases and backoff keep the test quick; the defaults are a minute and more.
        config.write_text(
            "cortex:\n  timeout_seconds: 2\n"
            "delivery:\n  lease_seconds: 3\n  backoff_base_seconds: 0.2\n"
            "  backoff_max_seconds: 1\n"
        )
        self.args = [
            "serve",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "2",
            "--config",
            str(config),
            *extra,
        ]
        self.log = tmp_path / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [SCRIPT, *self.args], env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not start: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)  # master and every worker, no goodbye
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        try:
            return answer.status, json.loads(data)
        except ValueError:
            return answer.status, data.decode()

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path, headers={"Authorization": "Bearer admin"})

    def post_github(self, doc: dict[str, Any], delivery: str) -> tuple[int, Any]:
        body = json.dumps(doc).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return self.request(
            "POST",
            "/webhooks/github",
            body,
            {
                "X-GitHub-Event": "deployment_status",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sig,
                "Content-Type": "application/json",
            },
        )


@pytest.fixture
def served(tmp_path: Path, cortex: FakeCortex) -> Iterator[Served]:
    made = Served(tmp_path, cortex.url)
    yield made
    made.stop()


def deployment(n: int) -> dict[str, Any]:
    doc = load_sample("github/deployment_status.success.json")
    doc["deployment"]["id"] = 5_000_000 + n
    doc["deployment"]["payload"] = {}
    doc["deployment"]["sha"] = f"{n:040x}"
    return doc


def wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_refuses_to_start_unsigned(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "CORTEX_API_TOKEN": TOKEN,
        "GITLAB_WEBHOOK_TOKEN": "x",
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    done = subprocess.run(
        [SCRIPT, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cortex-deploy-bridge: error: GITHUB_WEBHOOK_SECRET is not set: webhooks could not be "
        "verified (set it, disable the source in the config, or pass --allow-unsigned)"
    ]


def test_delivers_and_reports(served: Served, cortex: FakeCortex) -> None:
    served.start()
    status, body = served.post_github(deployment(1), "d-1")
    assert (status, body["status"]) == (202, "queued")
    wait_for(lambda: len(cortex.all_deploys()) == 1)
    assert served.post_github(deployment(1), "d-1")[1]["status"] == "duplicate"
    metrics = served.request("GET", "/metrics")[1]
    assert (
        'bridge_webhooks_total{answer="queued",event="deployment_status",source="github"}'
        in metrics
    )
    assert "bridge_deliveries_total" in metrics


def test_kill_9_loses_nothing_and_doubles_nothing(served: Served, cortex: FakeCortex) -> None:
    cortex.inject(*[Fault("status", status=503) for _ in range(10_000)])  # Cortex is down
    served.start()
    acknowledged = []
    for n in range(30):
        status, body = served.post_github(deployment(n), f"k-{n}")
        assert status == 202, body
        acknowledged.append(n)
    served.kill9()
    cortex._faults.clear()  # Cortex is back
    served.start()
    wait_for(lambda: len(cortex.all_deploys()) >= len(acknowledged), timeout=60)
    time.sleep(1.5)  # anything doubled would show up now
    shas = sorted(d["sha"] for d in cortex.all_deploys())
    assert shas == sorted(f"{n:040x}" for n in acknowledged)
