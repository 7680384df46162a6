"""`cortex-deploy-bridge serve` as a real process: refuses unsigned, survives kill -9, keeps
answering while slow clients hold connections, checks the Cortex token, starts and stops
cleanly."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
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

    def __init__(
        self, tmp_path: Path, cortex_url: str, *extra: str, database: str = "", **env: str
    ) -> None:
        self.port = free_port()
        self.tmp = tmp_path / "tmp"  # serve's temp directories go here, and must not stay
        self.tmp.mkdir(exist_ok=True)
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "TMPDIR": str(self.tmp),
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "GITLAB_WEBHOOK_TOKEN": "gl-serve-token",
            "CORTEX_API_TOKEN": TOKEN,
            "CORTEX_API_URL": cortex_url,
            "BRIDGE_DATABASE_URL": database or f"sqlite:///{tmp_path / 'relay.db'}",
            "BRIDGE_ADMIN_TOKEN": "admin",
        }
        self.env.update(env)
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

    def run(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run to its end (a refused start): exit code and output."""
        return subprocess.run(
            [SCRIPT, *self.args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop_with(self, signum: int) -> int:
        """Send ``signum`` to the master alone, as a supervisor does; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=40)

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


# --- slow clients ------------------------------------------------------------------------------


class SlowClients:
    """Connections that hold a server's attention: headers or a body trickled, or idle."""

    def __init__(self, port: int, each: int) -> None:
        self.port = port
        self.socks: dict[str, list[socket.socket]] = {"headers": [], "body": [], "idle": []}
        for _ in range(each):
            headers = socket.create_connection(("127.0.0.1", port), timeout=10)
            headers.sendall(b"POST /webhooks/github HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
            body = socket.create_connection(("127.0.0.1", port), timeout=10)
            body.sendall(
                b"POST /webhooks/github HTTP/1.1\r\nHost: bridge\r\nX-GitHub-Event: ping\r\n"
                b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
            )
            idle = socket.create_connection(("127.0.0.1", port), timeout=10)
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")  # then kept open, idle
            self.socks["headers"].append(headers)
            self.socks["body"].append(body)
            self.socks["idle"].append(idle)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self) -> None:
        while not self.stop.wait(0.5):
            for kind in ("headers", "body"):
                for sock in self.socks[kind]:
                    # Closed by the server (a deadline): fine, nothing more to send there.
                    with contextlib.suppress(OSError):
                        sock.sendall(b"a" if kind == "headers" else b" ")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        for socks in self.socks.values():
            for sock in socks:
                sock.close()


@pytest.mark.slow
def test_slow_clients_do_not_keep_signed_webhooks_waiting(
    tmp_path: Path, cortex: FakeCortex, db_url: str
) -> None:
    # 30 slow connections against 2 processes: gthread's 2 x 4 threads stalled on 8. Every
    # webhook sent meanwhile is answered (within GitHub's 10 s) and delivered, on SQLite and
    # on PostgreSQL, by the delivery thread inside serve.
    served = Served(tmp_path, cortex.url, database=db_url).start()
    slow = SlowClients(served.port, each=10)
    try:
        answers = [served.post_github(deployment(n), f"slow-{n}") for n in range(10)]
    finally:
        slow.close()
    try:
        assert [status for status, _ in answers] == [202] * 10, answers
        wait_for(lambda: len(cortex.all_deploys()) == 10, timeout=60)
        assert sorted(d["sha"] for d in cortex.all_deploys()) == [f"{n:040x}" for n in range(10)]
    finally:
        served.stop()


# --- start and stop ----------------------------------------------------------------------------


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path, cortex: FakeCortex) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        served = Served(tmp_path, cortex.url, "--bind", f"127.0.0.1:{port}")
        done = served.run()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cortex-deploy-bridge: error: --bind 127.0.0.1:{port}: cannot listen there "
        "(address already in use)"
    ]
    assert not list(served.tmp.iterdir())  # no metrics directory left behind


def test_logs_are_json_gunicorns_too_and_the_temp_directory_goes(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    served = Served(tmp_path, cortex.url).start()
    assert [p.name[:15] for p in served.tmp.iterdir()] == ["bridge-metrics-"]
    assert served.stop_with(signal.SIGTERM) == 0
    lines = served.log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line, or this fails
    said = {(r["logger"], r["message"]) for r in records}
    assert ("gunicorn.error", "Shutting down: Master") in said
    assert ("bridge.startup", "CORTEX_API_TOKEN accepted by Cortex") in said
    assert not list(served.tmp.iterdir())


def test_ctrl_c_stops_without_a_traceback(tmp_path: Path, cortex: FakeCortex) -> None:
    served = Served(tmp_path, cortex.url).start()
    assert served.proc is not None
    os.killpg(served.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process
    assert served.proc.wait(timeout=40) == 0
    log = served.log.read_text()
    assert "Traceback" not in log
    assert all(json.loads(line) for line in log.splitlines())
    assert not list(served.tmp.iterdir())


def test_allow_unsigned_warns_naming_each_unsigned_source(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    served = Served(tmp_path, cortex.url, "--allow-unsigned", GITHUB_WEBHOOK_SECRET="")
    served.env.pop("GITLAB_WEBHOOK_TOKEN")
    served.start()
    served.stop()
    warned = [
        r
        for r in map(json.loads, served.log.read_text().splitlines())
        if r["level"] == "warning" and "unsigned" in r["message"]
    ]
    assert sorted(r["variable"] for r in warned) == [
        "GITHUB_WEBHOOK_SECRET",
        "GITLAB_WEBHOOK_TOKEN",
    ]
    assert sorted(r["source"] for r in warned) == ["github", "gitlab"]


def test_help_names_the_environment_examples_and_exit_codes() -> None:
    for command in ("serve", "worker"):
        done = subprocess.run(
            [SCRIPT, command, "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        for part in ("environment:", "CORTEX_API_TOKEN", "examples:", "exit codes:"):
            assert part in done.stdout, (command, part)
        assert "--skip-token-check" in done.stdout


# --- the Cortex token --------------------------------------------------------------------------


def test_a_token_cortex_refuses_stops_the_start_in_one_line(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    served = Served(tmp_path, cortex.url, CORTEX_API_TOKEN="your-cortex-api-token")
    done = served.run()
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("cortex-deploy-bridge: error: CORTEX_API_TOKEN is refused by Cortex")
    assert "(401)" in line and "--skip-token-check" in line
    assert "your-cortex-api-token" not in done.stderr + done.stdout
    assert [r.method for r in cortex.received] == ["GET"]  # the one cheap read, nothing else
    assert not (tmp_path / "relay.db").exists()  # nothing stored
    assert not list(served.tmp.iterdir())


def test_skipping_the_check_starts_and_readyz_reports_the_refusal(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    served = Served(
        tmp_path, cortex.url, "--skip-token-check", "--workers", "1", CORTEX_API_TOKEN="wrong"
    ).start()
    try:
        assert served.get("/readyz") == (200, {"status": "ok", "cortex": "unknown"})
        assert served.post_github(deployment(1), "bad-token-1")[0] == 202
        wait_for(lambda: served.get("/readyz")[0] == 503)
        body = served.get("/readyz")[1]
        assert body["cortex"] == "unauthorized"
        assert "CORTEX_API_TOKEN" in body["reason"]
        metrics = served.request("GET", "/metrics")[1]
        assert "bridge_cortex_unauthorized 1.0" in metrics
        assert "bridge_cortex_last_status 401.0" in metrics
        assert cortex.all_deploys() == []
    finally:
        served.stop()
    assert "wrong" not in served.log.read_text()


def test_cortex_unreachable_at_start_is_a_warning_and_readyz_says_so(tmp_path: Path) -> None:
    # What `serve --help` says: only a refused token stops the start; an unreachable Cortex
    # is a warning, webhooks are stored, and delivered once Cortex answers.
    port = free_port()
    served = Served(tmp_path, f"http://127.0.0.1:{port}", "--workers", "1").start()
    try:
        assert served.get("/readyz") == (200, {"status": "ok", "cortex": "unreachable"})
        assert served.post_github(deployment(3), "while-down-3")[0] == 202
        with FakeCortex(token=TOKEN, port=port) as cortex:
            wait_for(lambda: len(cortex.all_deploys()) == 1)
            wait_for(lambda: served.get("/readyz")[1].get("cortex") == "ok")
    finally:
        served.stop()
    records = [json.loads(line) for line in served.log.read_text().splitlines()]
    assert any(
        r["level"] == "warning" and r["message"].startswith("could not check CORTEX_API_TOKEN")
        for r in records
    )


def test_help_says_what_an_unreachable_cortex_does() -> None:
    for command in ("serve", "worker"):
        done = subprocess.run(
            [SCRIPT, command, "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        text = " ".join(done.stdout.split())
        assert "A Cortex that cannot be reached is not a failure" in text, command
        assert '"cortex": "unreachable"' in text, command


def test_a_refused_webhook_is_one_json_log_line_of_serve(served: Served) -> None:
    served.start()
    body = json.dumps(deployment(4)).encode()
    status, _ = served.request(
        "POST",
        "/webhooks/github",
        body,
        {
            "X-GitHub-Event": "deployment_status",
            "X-GitHub-Delivery": "forged-4",
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
            "Content-Type": "application/json",
        },
    )
    assert status == 401
    served.stop()
    records = [json.loads(line) for line in served.log.read_text().splitlines()]
    [line] = [r for r in records if r["message"] == "webhook rejected"]
    assert line["delivery_id"] == "forged-4"
    assert (line["source"], line["event"], line["status_code"]) == (
        "github",
        "deployment_status",
        401,
    )
    assert SECRET not in served.log.read_text()


def test_a_body_that_does_not_arrive_in_time_is_408_and_stores_nothing(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    served = Served(tmp_path, cortex.url, "--body-timeout", "1").start()
    try:
        body = json.dumps(deployment(7)).encode()
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        head = (
            "POST /webhooks/github HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: deployment_status\r\nX-GitHub-Delivery: late-7\r\n"
            f"X-Hub-Signature-256: {sig}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
            sock.sendall(head + body[:10])  # the rest never comes
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 1s" in answer
        assert served.get("/api/deliveries")[1]["data"] == []
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("8080", "must be HOST:PORT or unix:PATH", id="no-host-part"),
        pytest.param("127.0.0.1:http", "must be HOST:PORT or unix:PATH", id="named-port"),
        pytest.param("127.0.0.1:70000", "must be HOST:PORT or unix:PATH", id="port-out-of-range"),
        pytest.param("unix:", "the socket's path is empty (unix:PATH)", id="unix-without-a-path"),
    ],
)
def test_a_bad_bind_is_one_line_and_exit_2(
    tmp_path: Path, cortex: FakeCortex, value: str, reason: str
) -> None:
    served = Served(tmp_path, cortex.url, "--bind", value)
    done = served.run()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cortex-deploy-bridge: error: --bind {value}: {reason}"
    ]
    assert not (tmp_path / "relay.db").exists()


def test_serve_listens_on_a_unix_socket(tmp_path: Path, cortex: FakeCortex) -> None:
    path = tmp_path / "bridge.sock"
    served = Served(tmp_path, cortex.url, "--bind", f"unix:{path}")
    assert served.proc is None
    with served.log.open("ab") as log:
        served.proc = subprocess.Popen(
            [SCRIPT, *served.args], env=served.env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        wait_for(path.exists)

        def healthy() -> bool:
            with socket.socket(socket.AF_UNIX) as sock:
                try:
                    sock.connect(str(path))
                except OSError:
                    return False
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nConnection: close\r\n\r\n")
                return sock.recv(65536).startswith(b"HTTP/1.1 200")

        wait_for(healthy)
    finally:
        served.stop()


def test_a_webhook_echoing_an_http_sources_token_reaches_cortex_masked(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    # serve holds the http sources' tokens (its reconcile reads them, its logs mask them),
    # but its receiver looked only for the registry's secrets and the database's password:
    # a deploy echoing one was recorded with it, for everyone who reads the catalog.
    token = "ships-platform-token-4c2e9a"
    served = Served(tmp_path, cortex.url, SHIPS_TOKEN=token)
    with (tmp_path / "bridge.yaml").open("a") as config:
        config.write(
            "http_sources:\n  ships:\n    preset: spice\n    url: https://ships.example\n"
            "    token_env: SHIPS_TOKEN\n    repository: acme/ships-web\n"
        )
    try:
        served.start()
        doc = deployment(1)
        doc["deployment"]["description"] = f"shipped with {token}"
        status, body = served.post_github(doc, "d-1")
        assert (status, body["status"]) == (202, "queued"), body
        assert any(note.startswith("title:") for note in body.get("notes", ())), body
        wait_for(lambda: len(cortex.all_deploys()) == 1)
        assert token not in json.dumps(cortex.all_deploys())
        assert cortex.all_deploys()[0]["title"] == "shipped with ***"
    finally:
        served.stop()


def _raw(port: int, request: bytes) -> bytes:
    """``request`` as written, and all the answer until the connection closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_request_gunicorn_cannot_parse_is_answered_in_json(served: Served) -> None:
    # gunicorn refuses these before the app sees them, with an HTML page of its own: the
    # receiver's answers are JSON with a reason, these too, with gunicorn's status.
    served.start()
    post = b"POST /webhooks/github HTTP/1.1\r\nHost: bridge\r\n"
    cases = [
        (post + b"X-Long: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n", 431),
        (post + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n", 431),
        (post + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
        (b"GARBAGE\r\n\r\n", 400),
        (post + b"X-Folded: a\r\n  b\r\nContent-Length: 0\r\n\r\n", 400),
    ]
    for request, status in cases:
        answer = _raw(served.port, request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), answer[:300]
        assert b"Content-Type: application/json" in head
        said = json.loads(body)
        assert said["status"] == "rejected" and said["reason"], said
    assert served.get("/api/deliveries")[1]["data"] == []
