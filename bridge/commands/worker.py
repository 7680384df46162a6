"""`worker`: delivery workers alone, beside receivers started with `serve --no-worker`.

On PostgreSQL the process's workers are woken at once when any replica queues an event
(LISTEN/NOTIFY); on SQLite they look for new events every ``--poll`` seconds.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Mapping
from types import FrameType

from bridge.commands.common import (
    add_config_flag,
    cortex_client,
    fail,
    load,
    secrets_of,
    worker_owner,
)
from bridge.errors import BridgeError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``worker``."""
    add_config_flag(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        metavar="N",
        help="delivery threads in this process (default: 2)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often an idle worker looks for new events (default: 1)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Deliver until SIGTERM or SIGINT, then finish the event in hand and stop."""
    if args.threads < 1 or args.poll <= 0:
        return fail("--threads must be at least 1 and --poll above 0")
    try:
        config = load(args, environ)
        from bridge import logs
        from bridge.relay import make_budget, make_runtime, make_worker, wake_on_notify
        from bridge.worker import start_in_thread

        logs.configure(secrets=secrets_of(environ).values(), level=args.log_level)
        runtime = make_runtime(config, {})
        stop = threading.Event()
        budget = make_budget(runtime)
        workers = [
            make_worker(
                runtime,
                cortex_client(config, environ),
                owner=worker_owner(),
                wake=threading.Event(),
                idle_poll=args.poll,
                budget=budget,
            )
            for _ in range(args.threads)
        ]
        listener = wake_on_notify(runtime.store, [worker.wake for worker in workers])
        threads = [start_in_thread(worker, stop) for worker in workers]
    except BridgeError as exc:
        return fail(str(exc))

    def stop_now(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stop_now)
    signal.signal(signal.SIGINT, stop_now)
    while any(t.is_alive() for t in threads) and not stop.is_set():
        stop.wait(1.0)
    for thread in threads:
        thread.join(timeout=30)
    if listener is not None:
        listener.stop()
    runtime.store.close()
    return 0
