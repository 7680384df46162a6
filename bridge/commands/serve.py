"""`serve`: the webhook receiver under gunicorn, with the delivery worker inside each process.

Every gunicorn worker process builds its own runtime after the fork (its own database
connections) and, unless ``--no-worker``, runs a delivery thread woken at once by the
requests that process stores. On PostgreSQL it is also woken at once by every other process
and replica (LISTEN/NOTIFY); on SQLite it finds their events on its next idle poll.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from bridge.commands.common import (
    EXIT_USAGE,
    add_config_flag,
    cortex_client,
    fail,
    load,
    log_secrets,
    open_store,
    secrets_of,
    worker_owner,
)
from bridge.errors import BridgeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``serve``."""
    add_config_flag(parser)
    parser.add_argument(
        "--bind",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to listen on (default: 127.0.0.1:8080; 0.0.0.0:8080 in a container)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, metavar="N", help="gunicorn worker processes (default: 2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        metavar="N",
        help="threads per worker process (default: 4)",
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="receive only; run `cortex-deploy-bridge worker` elsewhere",
    )
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="accept webhooks of a source whose secret is not set (unsafe)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Check everything that can be checked up front, then hand over to gunicorn."""
    if args.workers < 1 or args.threads < 1:
        return fail("--workers and --threads must be at least 1")
    # Counters must be shared by every gunicorn process: set before prometheus_client loads.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bridge-metrics-")
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
    try:
        if not args.no_worker:
            cortex_client(config, environ).close()
            from bridge.sync.periodic import check_reconcile

            check_reconcile(config, environ)  # the sync: section's tokens
        open_store(config).close()  # create or upgrade the schema once, before forking
    except BridgeError as exc:
        return fail(str(exc), EXIT_USAGE)
    from bridge import logs

    logs.configure(secrets=log_secrets(secrets, config.database), level=args.log_level)
    _serve(args, config, environ)
    return 0


def _build_app(args: argparse.Namespace, config: Any, environ: Mapping[str, str]) -> Any:
    """In a gunicorn worker process: the app, and the delivery thread beside it."""
    from bridge.app import create_app
    from bridge.relay import make_budget, make_runtime, make_worker, wake_on_notify
    from bridge.sync.periodic import start_reconcile
    from bridge.worker import start_in_thread

    secrets = secrets_of(environ)
    runtime = make_runtime(config, secrets, allow_unsigned=args.allow_unsigned)
    if not args.no_worker:
        worker = make_worker(runtime, cortex_client(config, environ), owner=worker_owner())
        start_in_thread(worker, threading.Event())
        # Lives as long as the process (a daemon thread), like the delivery thread.
        wake_on_notify(runtime.store, [worker.wake])
        start_reconcile(
            config,
            runtime.store,
            cortex_client(config, environ),
            environ,
            owner=worker_owner(),
            clock=runtime.clock,
            stop=threading.Event(),
            budget=make_budget(runtime),
        )
    return create_app(runtime)


def _child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _serve(args: argparse.Namespace, config: Any, environ: Mapping[str, str]) -> None:
    """Run gunicorn, configured from our flags rather than its own command line."""
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": args.bind,
                "workers": args.workers,
                "threads": args.threads,
                # gthread, except that a process with every thread busy leaves new
                # connections to the others (see gthread_balanced.py).
                "worker_class": "bridge.gthread_balanced.BalancedThreadWorker",
                "timeout": 60,
                "graceful_timeout": 20,
                "keepalive": 5,
                "accesslog": None,
                "errorlog": "-",
                "loglevel": args.log_level,
                "child_exit": _child_exit,
                "proc_name": "cortex-deploy-bridge",
                "control_socket_disable": True,
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return _build_app(args, config, environ)

    Application().run()
