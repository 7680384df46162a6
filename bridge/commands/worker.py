"""`worker`: delivery workers alone, beside receivers started with `serve --no-worker`.

On PostgreSQL the process's workers are woken at once when any replica queues an event
(LISTEN/NOTIFY); on SQLite they look for new events every ``--poll`` seconds.

With ``--metrics-bind HOST:PORT`` the process also answers ``GET /metrics`` (the delivery
counters it keeps, the queue gauges from the database), ``/healthz`` and ``/readyz``, from a
stdlib HTTP server in a daemon thread: a worker needs no web framework for three pages, and
they are the receiver's own pages (bridge.health). It is off by default, so several workers
on one machine never fight over a port; the deployment files turn it on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import TYPE_CHECKING, NamedTuple

from bridge.commands.common import (
    add_config_flag,
    check_cortex_token,
    cortex_client,
    count,
    fail,
    load,
    log_secrets,
    seconds,
    secrets_of,
    worker_owner,
)
from bridge.commands.helptext import describe
from bridge.errors import BridgeError, UsageError
from bridge.urls import CORTEX_URL

if TYPE_CHECKING:
    from bridge.health import Probes

log = logging.getLogger("bridge.worker")

# The port the deployment files give --metrics-bind (the flag itself is off by default).
METRICS_PORT = 9464
OFF = ("", "off")


class Address(NamedTuple):
    """Where the metrics server listens; an empty host means every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def metrics_address(raw: str) -> Address | None:
    """``--metrics-bind``: ``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT``; None for off or empty."""
    text = raw.strip()
    if text.lower() in OFF:
        return None
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    valid = sep and port.isdigit() and 0 < int(port) < 65536 and (bracketed or ":" not in host)
    if not valid:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, or off; got {raw!r}")
    return Address(host, int(port))


ABOUT = """\
Run delivery workers alone: claim the events the receivers (`serve --no-worker`) stored,
record each in Cortex, retry with backoff, dead-letter what Cortex rejects for good.
Several workers, on any number of machines, share one PostgreSQL database safely.

At start it checks the config, that Cortex does not refuse CORTEX_API_TOKEN (one cheap
read; --skip-token-check skips it) and --metrics-bind; any failure is one line and exit 2.
A Cortex that cannot be reached is not a failure: the worker starts, warns, and delivers
once Cortex answers (/readyz says "cortex": "unreachable" meanwhile).
Logs are JSON lines on stderr."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``worker``."""
    describe(
        parser,
        ABOUT,
        environment=[
            ("CORTEX_API_TOKEN", "Cortex API token (required; or CORTEX_API_TOKEN_FILE)"),
            ("CORTEX_API_URL", f"Cortex API (default {CORTEX_URL})"),
            ("BRIDGE_DATABASE_URL", "sqlite:///bridge.db (default) or postgresql+psycopg://..."),
            ("BRIDGE_CONFIG", "the config file when --config is not given"),
        ],
        examples=[
            "cortex-deploy-bridge worker --threads 4",
            f"cortex-deploy-bridge worker --config bridge.yaml --metrics-bind :{METRICS_PORT}",
        ],
        exit_codes=[
            (0, "stopped by SIGTERM or SIGINT (the events in hand finished first)"),
            (2, "refused to start (see above): one line on stderr names the flag or variable"),
        ],
    )
    add_config_flag(parser)
    parser.add_argument(
        "--threads",
        type=count("--threads"),
        default=2,
        metavar="N",
        help="delivery threads in this process (default: 2)",
    )
    parser.add_argument(
        "--poll",
        type=seconds,
        default=1.0,
        metavar="SECONDS",
        help="how often an idle worker looks for new events (default: 1)",
    )
    parser.add_argument(
        "--metrics-bind",
        type=metrics_address,
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz here (default: off; "
        f"0.0.0.0:{METRICS_PORT} in a container)",
    )
    parser.add_argument(
        "--skip-token-check",
        action="store_true",
        help="do not ask Cortex whether CORTEX_API_TOKEN is accepted at start (air-gapped)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Deliver until SIGTERM or SIGINT, then finish the event in hand and stop."""
    count_in_this_process()
    try:
        config = load(args, environ)
        server = bind_probes(args.metrics_bind)
    except BridgeError as exc:
        return fail(str(exc))
    try:
        from bridge import logs
        from bridge.health import CortexWatch, Probes
        from bridge.relay import make_budget, make_runtime, make_worker, wake_on_notify
        from bridge.sync.periodic import check_reconcile, start_reconcile
        from bridge.worker import start_in_thread

        check_reconcile(config, environ)  # the sync: section's tokens, before any thread starts
        held = log_secrets(secrets_of(environ), config, environ)
        logs.configure(secrets=held, level=args.log_level)
        watch = CortexWatch()  # told the start-up check's answer: /readyz reports it at once
        refused = check_cortex_token(config, environ, skip=args.skip_token_check, noted=watch.saw)
        if refused:
            raise UsageError(refused)
        # The secrets it holds, the Cortex token first: never sent to Cortex in an event a
        # receiver stored without holding them (bridge.worker.Deliverer).
        runtime = make_runtime(config, {}, also=held)
        stop = threading.Event()
        budget = make_budget(runtime)
        workers = [
            make_worker(
                runtime,
                cortex_client(config, environ, watch=watch),
                owner=worker_owner(),
                wake=threading.Event(),
                idle_poll=args.poll,
                budget=budget,
            )
            for _ in range(args.threads)
        ]
        listener = wake_on_notify(runtime.store, [worker.wake for worker in workers])
        threads = [start_in_thread(worker, stop) for worker in workers]
        start_reconcile(
            config,
            runtime.store,
            cortex_client(config, environ),
            environ,
            owner=worker_owner(),
            clock=runtime.clock,
            stop=stop,
            budget=budget,
        )
    except BridgeError as exc:
        if server is not None:
            server.server_close()
        return fail(str(exc))
    if server is not None:
        probes = Probes(runtime.store, runtime.clock, role="worker")
        server.start(probes.delivering(threads, watch))
        log.info("serving /metrics, /healthz and /readyz", extra={"address": str(server.address)})

    def stop_now(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGINT, stop_now)
    while any(t.is_alive() for t in threads) and not stop.is_set():
        stop.wait(1.0)
    for thread in threads:
        thread.join(timeout=30)
    if server is not None:
        server.stop()  # after the workers: probes and scrapes answer while they finish
    if listener is not None:
        listener.stop()
    runtime.store.close()
    return 0


def bind_probes(address: Address | None) -> ProbeServer | None:
    """The probe server listening at ``address`` (not answering yet); None when off."""
    if address is None:
        return None
    try:
        return ProbeServer(address)
    except OSError as exc:  # the port is taken, the host is not this machine's, ...
        reason = (exc.strerror or str(exc)).lower()
        raise UsageError(f"--metrics-bind {address}: cannot listen there ({reason})") from exc


def count_in_this_process() -> None:
    """Keep this process's counters in memory even when PROMETHEUS_MULTIPROC_DIR is set.

    prometheus_client picks where values live once, when it is imported, from that variable
    (``serve`` sets it for its gunicorn processes). A worker is one process: files there
    would be summed into the page of any receiver sharing the directory (counting this
    worker's deliveries twice), and cannot be written at all if the directory is missing.
    Once the library is loaded this changes nothing; :func:`bridge.metrics.worker_exposition`
    is right in either mode.
    """
    if "prometheus_client" not in sys.modules:
        for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
            os.environ.pop(name, None)


class ProbeServer(ThreadingHTTPServer):
    """``/metrics``, ``/healthz`` and ``/readyz`` of a worker process, on a daemon thread.

    Bound when made, so a taken port fails start-up before the database is touched; it
    answers once :meth:`start` has given it the probes (bridge.health) to answer with.
    """

    daemon_threads = True

    def __init__(self, address: Address) -> None:
        self.address = address
        if ":" in address.host:
            self.address_family = socket.AF_INET6
        super().__init__((address.host, address.port), ProbeHandler)
        self.probes: Probes | None = None
        self._thread: threading.Thread | None = None

    def start(self, probes: Probes) -> None:
        """Answer requests from now on, in a daemon thread."""
        self.probes = probes
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.1},  # stop() waits for a poll to end
            name="bridge-metrics",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and close the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()

    def page(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        assert self.probes is not None
        page = self.probes.page(path)
        if page is None:
            return 404, "application/json", json.dumps({"status": "not found"}).encode() + b"\n"
        return page


class ProbeHandler(BaseHTTPRequestHandler):
    """GET and HEAD, as the receiver's probes take them; every answer closes the connection."""

    server: ProbeServer
    timeout = 10  # a client that stalls holds one thread for this long, never the workers
    server_version = "cortex-deploy-bridge"

    def do_GET(self) -> None:
        """Answer one probe or scrape."""
        status, kind, body = self.server.page(self.path.partition("?")[0])
        self._answer(status, kind, body)

    def do_HEAD(self) -> None:
        """A GET's status and headers, without its body (RFC 9110; load balancers ask so)."""
        self.do_GET()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Every refusal as JSON, as the receiver answers it: a method other than GET and HEAD
        (the standard library's 501, a server error for the client's request) is 405."""
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code, reason = HTTPStatus.METHOD_NOT_ALLOWED, "the method is not allowed: GET or HEAD"
        else:
            reason = HTTPStatus(code).phrase.lower()
        body = json.dumps({"status": "rejected", "reason": reason}).encode() + b"\n"
        self._answer(code, "application/json", body, allow=code == HTTPStatus.METHOD_NOT_ALLOWED)

    def _answer(self, status: int, kind: str, body: bytes, *, allow: bool = False) -> None:
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if allow:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """No access log: probes and scrapes come every few seconds and say nothing."""
