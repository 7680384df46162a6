"""`cortex-deploy-bridge worker --metrics-bind`: a real worker process, scraped over loopback."""

from __future__ import annotations

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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.commands.worker import Address, ProbeServer, metrics_address
from bridge.fakecortex import FakeCortex
from bridge.health import CortexWatch, Probes
from bridge.store import StoreError
from tests.conftest import TOKEN
from tests.receiver_kit import client_for, github_post, make_runtime

SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
CONFIG = (
    "cortex:\n  timeout_seconds: 2\n"
    "delivery:\n  lease_seconds: 3\n  backoff_base_seconds: 0.2\n  backoff_max_seconds: 1\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    """GET over loopback: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def samples(page: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A /metrics page as ``{(sample name, labels): value}``."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
    }


def value(page: str, name: str, **labels: str) -> float | None:
    """One sample of a /metrics page; None when it is not there."""
    return samples(page).get((name, frozenset(labels.items())))


def wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A SQLite database holding one successful deployment, stored by the real receiver."""
    runtime = make_runtime(tmp_path)
    try:
        answer = github_post(
            client_for(runtime), "deployment_status", "deployment_status.success.payload-entities"
        )
        assert answer.status_code == 202, answer.get_json()
    finally:
        runtime.store.close()
    return f"sqlite:///{tmp_path / 'bridge.db'}"


class WorkerProcess:
    """One `worker` process with its metrics server on a free loopback port."""

    def __init__(self, tmp_path: Path, database: str, cortex_url: str, **env: str) -> None:
        self.port = free_port()
        config = tmp_path / "worker.yaml"
        config.write_text(CONFIG)
        self.argv = [
            SCRIPT,
            "worker",
            "--poll",
            "0.2",
            "--config",
            str(config),
            "--metrics-bind",
            f"127.0.0.1:{self.port}",
        ]
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "CORTEX_API_TOKEN": TOKEN,
            "CORTEX_API_URL": cortex_url,
            "BRIDGE_DATABASE_URL": database,
            **env,
        }
        self.log = tmp_path / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=log, start_new_session=True
            )

        def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return get(self.port, "/healthz")[0] == 200
            except OSError:
                return False

        wait_for(answers, timeout=20)
        return self

    def stop(self) -> int:
        """SIGTERM, as Docker and Kubernetes stop it; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=40)


@pytest.fixture
def worker_process(tmp_path: Path, database: str, cortex: FakeCortex) -> Iterator[WorkerProcess]:
    made = WorkerProcess(tmp_path, database, cortex.url)
    yield made
    if made.proc is not None and made.proc.poll() is None:
        made.proc.kill()
        made.proc.wait(timeout=10)


def stale_counters(directory: Path) -> None:
    """What another process (a receiver sharing the directory) left: 41 deliveries."""
    code = "from bridge import metrics; metrics.DELIVERIES.labels('delivered').inc(41)"
    env = {"PATH": os.environ["PATH"], "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert list(directory.iterdir()), "the other process left its counter file"


# --- the worker's /metrics -------------------------------------------------------------------


@pytest.mark.parametrize(
    "multiproc",
    [
        pytest.param(None, id="no-multiproc-dir"),
        pytest.param("shared", id="dir-shared-with-another-process"),
        pytest.param("missing", id="dir-missing"),
    ],
)
def test_scrape_after_a_delivery_counts_it_once(
    tmp_path: Path, database: str, cortex: FakeCortex, multiproc: str | None
) -> None:
    env = {}
    directory = tmp_path / "prometheus"
    if multiproc == "shared":
        directory.mkdir()
        stale_counters(directory)
    if multiproc is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    before = sorted(directory.iterdir()) if directory.exists() else []
    worker = WorkerProcess(tmp_path, database, cortex.url, **env).start()
    try:

        def delivered_page() -> str | None:
            status, page = get(worker.port, "/metrics")
            assert status == 200, page
            counted = value(page, "bridge_deliveries_total", outcome="delivered")
            return page if counted else None

        page = wait_for(delivered_page)
    finally:
        assert worker.stop() == 0, worker.log.read_text()
    # The sample deployment names two entities: one event, two Cortex records.
    assert sorted(d["entity"] for d in cortex.all_deploys()) == ["payments-api", "payments-worker"]
    # This process's delivery, once: nothing another process left in the directory.
    assert value(page, "bridge_deliveries_total", outcome="delivered") == 1.0
    assert value(page, "bridge_delivery_seconds_count", outcome="delivered") == 1.0
    # The queue gauges, read from the database at scrape time.
    assert value(page, "bridge_queue_events", status="delivered") == 1.0
    assert value(page, "bridge_queue_events", status="queued") == 0.0
    assert value(page, "bridge_queue_oldest_due_seconds") == 0.0
    assert value(page, "bridge_dead_letters") == 0.0
    version = next(
        dict(labels)["version"]
        for (name, labels) in samples(page)
        if name == "bridge_relay_info" and ("role", "worker") in labels
    )
    assert value(page, "bridge_relay_info", role="worker", version=version) == 1.0
    # Counted in memory: no files of the worker's in the directory a receiver would sum.
    after = sorted(directory.iterdir()) if directory.exists() else []
    assert after == before


def test_probes_answer_and_sigterm_stops_the_server_too(
    worker_process: WorkerProcess, cortex: FakeCortex
) -> None:
    worker_process.start()
    assert get(worker_process.port, "/healthz") == (200, '{"status": "ok"}\n')
    status, body = get(worker_process.port, "/readyz")
    # Cortex's word on the token: the start-up check's (accepted), or a delivery's since.
    assert json.loads(body) == {"status": "ok", "cortex": "ok"}
    assert status == 200
    assert get(worker_process.port, "/metrics?name[]=x")[0] == 200  # a query is ignored
    assert get(worker_process.port, "/nope")[0] == 404
    wait_for(lambda: len(cortex.all_deploys()) == 2)
    wait_for(lambda: json.loads(get(worker_process.port, "/readyz")[1]).get("cortex") == "ok")
    assert worker_process.stop() == 0
    with pytest.raises(OSError):
        get(worker_process.port, "/healthz")
    log = worker_process.log.read_text()
    assert "Traceback" not in log
    # No access log: scrapes every few seconds would drown the delivery lines.
    assert "GET /" not in log


# --- bad --metrics-bind values ----------------------------------------------------------------


def run_worker(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": "http://127.0.0.1:9",
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'never.db'}",
    }
    return subprocess.run(
        [SCRIPT, "worker", *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("9464", id="no-port"),
        pytest.param("127.0.0.1:", id="empty-port"),
        pytest.param("127.0.0.1:http", id="named-port"),
        pytest.param("127.0.0.1:70000", id="port-out-of-range"),
        pytest.param("::1:9464", id="ipv6-without-brackets"),
    ],
)
def test_a_bad_metrics_bind_is_one_line_and_exit_2(tmp_path: Path, raw: str) -> None:
    done = run_worker(tmp_path, "--metrics-bind", raw)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"cortex-deploy-bridge worker: error: argument --metrics-bind: must be HOST:PORT, "
        f"or off; got {raw!r} (see --help)"
    ]
    assert not (tmp_path / "never.db").exists()


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_worker(tmp_path, "--metrics-bind", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"cortex-deploy-bridge: error: --metrics-bind 127.0.0.1:{port}: cannot listen there "
        "(address already in use)"
    ]
    # Refused before the database was touched.
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("127.0.0.1:9464", Address("127.0.0.1", 9464), id="ipv4"),
        pytest.param("0.0.0.0:9464", Address("0.0.0.0", 9464), id="all-ipv4"),  # noqa: S104
        pytest.param(":9464", Address("", 9464), id="every-interface"),
        pytest.param("localhost:9100", Address("localhost", 9100), id="name"),
        pytest.param("[::1]:9464", Address("::1", 9464), id="ipv6"),
        pytest.param("off", None, id="off"),
        pytest.param("OFF", None, id="off-any-case"),
        pytest.param("", None, id="empty"),
    ],
)
def test_metrics_bind_values(raw: str, expected: Address | None) -> None:
    assert metrics_address(raw) == expected


def test_metrics_bind_is_off_by_default() -> None:
    from bridge.cli import build_parser

    assert build_parser("worker").parse_args(["worker"]).metrics_bind is None
    assert str(Address("::1", 9464)) == "[::1]:9464"


# --- the probe server when the database is down ------------------------------------------------


class UnreachableStore:
    """A store whose database does not answer."""

    def ping(self) -> None:
        raise StoreError("database error: connection refused")

    def counts(self) -> dict[str, int]:
        raise StoreError("database error: connection refused")

    def oldest_due_age(self, now: datetime) -> float | None:
        raise StoreError("database error: connection refused")


def test_without_the_database_readyz_and_metrics_are_503_healthz_200() -> None:
    running = threading.Event()
    thread = threading.Thread(target=running.wait, daemon=True)
    thread.start()
    server = ProbeServer(Address("127.0.0.1", free_port()))
    probes = Probes(UnreachableStore(), lambda: datetime.now(timezone.utc), role="worker")  # type: ignore[arg-type]
    server.start(probes.delivering([thread], CortexWatch()))
    try:
        port = server.address.port
        assert get(port, "/healthz") == (200, '{"status": "ok"}\n')
        for path in ("/readyz", "/metrics"):
            status, body = get(port, path)
            assert status == 503, path
            assert json.loads(body) == {"status": "unavailable", "reason": "database unreachable"}
        # A delivery thread that died: alive no more, so a liveness probe restarts the process.
        running.set()
        thread.join(timeout=5)
        status, body = get(port, "/healthz")
        assert status == 503
        assert json.loads(body)["reason"] == "1 of 1 delivery threads stopped"
    finally:
        server.stop()


def ask(port: int, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request of any method over loopback: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        conn.close()


def test_the_probe_server_takes_head_and_refuses_other_methods_as_the_receiver_does(
    tmp_path: Path,
) -> None:
    # One page, two doors (bridge.health): a HEAD was a 501 of HTML here, a 200 at the
    # receiver; a POST a 501 of HTML, a 405 of JSON there.
    runtime = make_runtime(tmp_path)
    receiver = client_for(runtime)
    server = ProbeServer(Address("127.0.0.1", free_port()))
    server.start(Probes(runtime.store, runtime.clock, role="worker"))
    try:
        port = server.address.port
        for path in ("/healthz", "/readyz", "/metrics"):
            status, headers, body = ask(port, "HEAD", path)
            assert (status, body) == (receiver.head(path).status_code, b""), path
            assert int(headers["Content-Length"]) > 0
            for method in ("POST", "PUT", "DELETE", "BREW"):
                status, headers, body = ask(port, method, path)
                assert status == 405 == receiver.open(path, method=method).status_code, method
                assert headers["Allow"] == "GET, HEAD"
                assert headers["Content-Type"] == "application/json"
                assert json.loads(body)["status"] == "rejected"
    finally:
        server.stop()
        runtime.store.close()


# --- the Cortex token ---------------------------------------------------------------------------


def test_a_token_cortex_refuses_stops_the_worker_in_one_line(
    tmp_path: Path, database: str, cortex: FakeCortex
) -> None:
    made = WorkerProcess(tmp_path, database, cortex.url, CORTEX_API_TOKEN="your-cortex-api-token")
    done = subprocess.run(
        made.argv, env=made.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("cortex-deploy-bridge: error: CORTEX_API_TOKEN is refused by Cortex")
    assert "(401)" in line
    assert "your-cortex-api-token" not in done.stderr + done.stdout
    assert [r.method for r in cortex.received] == ["GET"]  # the check, and no delivery


def test_skipping_the_check_then_readyz_and_metrics_report_the_refusal(
    tmp_path: Path, database: str, cortex: FakeCortex
) -> None:
    made = WorkerProcess(tmp_path, database, cortex.url, CORTEX_API_TOKEN="wrong-token")
    made.argv.append("--skip-token-check")
    made.start()
    try:
        wait_for(lambda: get(made.port, "/readyz")[0] == 503)
        body = json.loads(get(made.port, "/readyz")[1])
        assert body["cortex"] == "unauthorized"
        assert "CORTEX_API_TOKEN" in body["reason"]
        page = get(made.port, "/metrics")[1]
        assert value(page, "bridge_cortex_unauthorized") == 1.0
        assert value(page, "bridge_cortex_last_status") == 401.0
        assert get(made.port, "/healthz")[0] == 200  # alive: fixing the token drains the queue
    finally:
        assert made.stop() == 0
    assert cortex.all_deploys() == []
    assert "wrong-token" not in made.log.read_text()


def test_an_unreachable_cortex_at_start_is_a_warning_and_readyz_says_so(
    tmp_path: Path, database: str
) -> None:
    made = WorkerProcess(tmp_path, database, f"http://127.0.0.1:{free_port()}")
    made.start()
    try:
        assert json.loads(get(made.port, "/readyz")[1]) == {"status": "ok", "cortex": "unreachable"}
    finally:
        assert made.stop() == 0
    assert "could not check CORTEX_API_TOKEN" in made.log.read_text()


def test_the_worker_process_masks_the_cortex_token_the_receivers_never_held(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    # docs/operations.md gives the receivers the webhook secrets and the worker alone the
    # Cortex token: a webhook echoing the token was stored as it came, and the worker command
    # (whose runtime held no secret) sent it on to Cortex.
    import copy

    from tests.conftest import load_sample

    runtime = make_runtime(tmp_path)
    try:
        doc = copy.deepcopy(load_sample("github/deployment_status.success.json"))
        doc["deployment"]["description"] = f"ship {TOKEN} now"
        answer = github_post(client_for(runtime), "deployment_status", doc)
        assert answer.status_code == 202 and "notes" not in answer.get_json()
    finally:
        runtime.store.close()
    worker = WorkerProcess(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}", cortex.url)
    worker.start()
    try:
        wait_for(cortex.all_deploys)
    finally:
        assert worker.stop() == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["title"] == "ship *** now"
    assert TOKEN not in json.dumps(cortex.all_deploys())
