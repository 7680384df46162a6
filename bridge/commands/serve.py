"""`serve`: the webhook receiver under gunicorn, with the delivery worker inside each process.

Every gunicorn worker process builds its own runtime after the fork (its own database
connections) and, unless ``--no-worker``, runs a delivery thread woken at once by the
requests that process stores. On PostgreSQL it is also woken at once by every other process
and replica (LISTEN/NOTIFY); on SQLite it finds their events on its next idle poll.

The processes run gunicorn's gevent worker: each connection is a greenlet, so a client that
sends its request a byte at a time, or keeps a connection open and idle, holds a few
kilobytes rather than one of a handful of threads (benchmarks/RESULTS.md, "Slow clients").
gevent patches the standard library's blocking calls (sockets, locks, sleeps, ``select``)
to yield to other greenlets; the patch is applied in this process before anything that
blocks is imported (the database drivers choose how to wait when they are loaded), so the
delivery thread, the PostgreSQL listener and psycopg's waits all yield too.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from bridge.commands.common import (
    EXIT_USAGE,
    add_config_flag,
    check_cortex_token,
    cortex_client,
    count,
    fail,
    load,
    log_secrets,
    open_store,
    seconds,
    secrets_of,
    worker_owner,
)
from bridge.commands.helptext import describe
from bridge.errors import BridgeError
from bridge.urls import CORTEX_URL

ABOUT = """\
Run the webhook receiver for GitHub, GitLab, Flux and Argo CD (gunicorn, gevent worker
class), with the delivery worker inside each process unless --no-worker.

At start it checks the config, that every enabled source has its secret, that Cortex does
not refuse the token (one cheap read; --skip-token-check skips it), the database (creating
or upgrading its tables), and that --bind is free; any failure is one line and exit 2.
A Cortex that cannot be reached is not a failure: webhooks are still received and stored,
a warning is logged, /readyz says "cortex": "unreachable", and the events are delivered
once Cortex answers. Logs are JSON lines on stderr, gunicorn's own included."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``serve``."""
    describe(
        parser,
        ABOUT,
        environment=[
            ("CORTEX_API_TOKEN", "Cortex API token (needed unless --no-worker; or *_FILE)"),
            ("CORTEX_API_URL", f"Cortex API (default {CORTEX_URL})"),
            ("GITHUB_WEBHOOK_SECRET", "secret of the GitHub webhook (X-Hub-Signature-256)"),
            ("GITLAB_WEBHOOK_TOKEN", "secret token of the GitLab webhook (X-Gitlab-Token)"),
            ("FLUX_WEBHOOK_SECRET", "Flux generic-hmac Provider's token (X-Signature)"),
            ("ARGOCD_WEBHOOK_TOKEN", "Argo CD webhook service's Authorization: Bearer token"),
            (
                "BRIDGE_ADMIN_TOKEN",
                "turns on the admin API (/api/deliveries) and the web console (/console)",
            ),
            ("BRIDGE_DATABASE_URL", "sqlite:///bridge.db (default) or postgresql+psycopg://..."),
            ("BRIDGE_CONFIG", "the config file when --config is not given"),
        ],
        examples=[
            "cortex-deploy-bridge serve --bind 0.0.0.0:8080",
            "cortex-deploy-bridge serve --config bridge.yaml --workers 4 --no-worker",
        ],
        exit_codes=[
            (0, "stopped by SIGTERM or SIGINT"),
            (2, "refused to start (see above): one line on stderr names the flag or variable"),
        ],
        notes="Probes: GET /healthz, /readyz (the database, and Cortex not refusing the "
        "token), /metrics.",
    )
    add_config_flag(parser)
    parser.add_argument(
        "--bind",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on (default: 127.0.0.1:8080; 0.0.0.0:8080 in a container)",
    )
    parser.add_argument(
        "--workers",
        type=count("--workers"),
        default=2,
        metavar="N",
        help="gunicorn worker processes (default: 2)",
    )
    parser.add_argument(
        "--connections",
        type=count("--connections"),
        default=1000,
        metavar="N",
        help="most connections one process holds at once (default: 1000)",
    )
    parser.add_argument(
        "--body-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="a request body must arrive within this long, else 408 (default: 30)",
    )
    # gthread's thread count, before the gevent worker: accepted so that existing command
    # lines keep working, and said to have no effect.
    parser.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="receive only; run `cortex-deploy-bridge worker` elsewhere",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept webhooks of a source whose secret is not set (unsafe; warned at start)",
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
    """Check everything that can be checked up front, then hand over to gunicorn."""
    # Before anything that blocks is imported: the database drivers pick how they wait,
    # and the delivery worker's default sleep is bound, when they are loaded.
    cooperative()
    metrics_dir = MetricsDir()  # before prometheus_client is imported (by bridge.relay)
    try:
        return _checked_run(args, environ)
    finally:
        metrics_dir.remove()


def _checked_run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        config = load(args, environ)
    except BridgeError as exc:
        return fail(str(exc))
    from bridge.relay import missing_secrets

    secrets = secrets_of(environ)
    missing = missing_secrets(config, secrets)
    if missing and not args.allow_unsigned:
        return fail(
            f"{missing[0]} is not set: webhooks could not be verified "
            "(set it, disable the source in the config, or pass --allow-unsigned)"
        )
    if not args.no_worker:
        from bridge.sync.periodic import check_reconcile

        try:
            cortex_client(config, environ).close()  # CORTEX_API_TOKEN is set
            check_reconcile(config, environ)  # the sync: section's tokens
        except BridgeError as exc:
            return fail(str(exc), EXIT_USAGE)
    try:
        listener = bind(args.bind)
    except BridgeError as exc:
        return fail(str(exc))
    from bridge import logs

    logs.configure(secrets=log_secrets(secrets, config, environ), level=args.log_level)
    log = logging.getLogger("bridge.serve")
    answered: list[int] = []  # the start-up check's answer from Cortex, for /readyz
    for name in missing:
        log.warning(
            "webhooks are accepted unsigned: --allow-unsigned and %s is not set", name,
            extra={"source": name.split("_", 1)[0].lower(), "variable": name},
        )  # fmt: skip
    if args.threads is not None:
        log.warning("--threads has no effect: serve's processes take --connections instead")
    try:
        if not args.no_worker:
            refused = check_cortex_token(
                config, environ, skip=args.skip_token_check, noted=answered.append
            )
            if refused:
                return fail(refused)
        open_store(config).close()  # create or upgrade the schema once, before forking
    except BridgeError as exc:
        return fail(str(exc), EXIT_USAGE)
    _serve(args, config, environ, listener, secrets, answered=answered[-1] if answered else None)
    return 0


class MetricsDir:
    """A temporary PROMETHEUS_MULTIPROC_DIR for this serve's processes, removed at exit.

    Counters must be shared by every gunicorn process, so the variable is set before
    prometheus_client is first imported. A directory named by the operator is theirs: left
    as it is. gunicorn's worker processes leave through the same ``finally`` as the master
    (they are forked from inside it): only the process that made the directory removes it.
    """

    def __init__(self) -> None:
        self.path: str | None = None
        self.owner = os.getpid()
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self.path = tempfile.mkdtemp(prefix="bridge-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.path

    def remove(self) -> None:
        """Remove the directory (in the process that made it)."""
        if self.path is not None and os.getpid() == self.owner:
            shutil.rmtree(self.path, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            self.path = None


def bind(address: str) -> socket.socket:
    """A listening socket at ``HOST:PORT`` or ``unix:PATH`` (handed to gunicorn), or one line
    saying why not."""
    from bridge.errors import UsageError

    try:
        family, where = _address(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
    except ValueError as exc:
        raise UsageError(f"--bind {address}: {exc}") from None
    except OSError as exc:  # a host name that does not resolve, ...
        raise UsageError(f"--bind {address}: {(exc.strerror or str(exc)).lower()}") from None
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise UsageError(f"--bind {address}: cannot listen there ({reason})") from None
    return sock


def _address(address: str) -> tuple[int, Any]:
    """(family, address to bind) of ``HOST:PORT``, ``[IPV6]:PORT``, ``:PORT`` or ``unix:PATH``."""
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            # Linux binds an empty path to a random abstract name ("unix:$SOCK" with SOCK
            # unset): a receiver listening where nothing can find it.
            raise ValueError("the socket's path is empty (unix:PATH)")
        return socket.AF_UNIX, path
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("must be HOST:PORT or unix:PATH")
    # Port 0: any free port (gunicorn logs the one it got). No host: every interface
    # (AI_PASSIVE), as gunicorn binds it.
    found = socket.getaddrinfo(
        host or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    return found[0][0], found[0][4]


def cooperative() -> None:
    """Make this process's blocking calls yield to other greenlets (gevent's monkey patch)."""
    from gevent import monkey

    monkey.patch_all()


def _build_app(
    args: argparse.Namespace, config: Any, environ: Mapping[str, str], *, answered: int | None
) -> Any:
    """In a gunicorn worker process: the app, and the delivery thread beside it.

    ``answered``: the status of Cortex's answer to the start-up check (0: none came), so that
    /readyz reports it before this process has asked Cortex anything itself.
    """
    from bridge.app import create_app
    from bridge.gevent_worker import BodyDeadline
    from bridge.health import CortexWatch
    from bridge.relay import make_budget, make_runtime, make_worker, wake_on_notify
    from bridge.sync.periodic import start_reconcile
    from bridge.worker import start_in_thread

    secrets = secrets_of(environ)
    # Every secret the process holds is looked for in what a webhook would record: the http
    # sources' tokens (the reconcile's) too, as its logs mask them.
    held = [s for s in log_secrets(secrets, config, environ) if s not in secrets.values()]
    runtime = make_runtime(config, secrets, allow_unsigned=args.allow_unsigned, also=held)
    # The webhooks turned away or ignored, written to the console's journal once a second.
    runtime.turned_away.start(threading.Event())
    if not args.no_worker:
        watch = CortexWatch()
        if answered is not None:
            watch.saw(answered)
        client = cortex_client(config, environ, watch=watch)
        worker = make_worker(runtime, client, owner=worker_owner())
        thread = start_in_thread(worker, threading.Event())
        runtime.probes = runtime.probes.delivering([thread], watch)
        # Lives as long as the process (a daemon thread), like the delivery thread.
        wake_on_notify(runtime.store, [worker.wake])
        start_reconcile(
            config,
            runtime.store,
            cortex_client(config, environ, watch=watch),
            environ,
            owner=worker_owner(),
            clock=runtime.clock,
            stop=threading.Event(),
            budget=make_budget(runtime),
        )
    app = BodyDeadline(create_app(runtime), args.body_timeout)
    settle()
    return app


def settle() -> None:
    """Put what start-up made out of the garbage collector's way, for the process's life.

    A full collection walks every object the process holds: the ~75,000 that importing the
    app made took 20 ms to walk, and while it runs no greenlet answers. Frozen (moved to the
    permanent generation), they are never walked again, and a full collection walks what
    requests made since (benchmarks/RESULTS.md, "Receiver tail").
    """
    import gc

    gc.collect()
    gc.freeze()


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _serve(
    args: argparse.Namespace,
    config: Any,
    environ: Mapping[str, str],
    listener: socket.socket,
    secrets: Mapping[str, str],
    *,
    answered: int | None,
) -> None:
    """Run gunicorn on ``listener``, configured from our flags rather than its own CLI."""
    from gunicorn.app.base import BaseApplication

    from bridge import logs

    json_logger = logs.gunicorn_logger(log_secrets(secrets, config, environ))

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                # The socket bound above (gunicorn's fd:// form): a port in use was one
                # line there, where gunicorn would retry for 5 s and then print its own.
                "bind": f"fd://{listener.fileno()}",
                "workers": args.workers,
                "worker_class": "bridge.gevent_worker.GeventWorker",
                "worker_connections": args.connections,
                "timeout": 60,
                "graceful_timeout": 20,
                "keepalive": 5,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": args.log_level,
                "logger_class": json_logger,
                "child_exit": _child_exit,
                "proc_name": "cortex-deploy-bridge",
                "control_socket_disable": True,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _build_app(args, config, environ, answered=answered)

    Application().run()
