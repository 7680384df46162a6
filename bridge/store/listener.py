"""Wake a process's delivery workers the moment any replica queues an event: PostgreSQL LISTEN.

One connection per process, opened for this alone (held for the life of the process, it
must not take a slot in the store's pool), read by a daemon thread. When the connection
drops (PostgreSQL restarted, failed over, a network blip) the thread reconnects with backoff,
and on every (re)connect it wakes the workers once: notifications sent while nobody listened
are lost (https://www.postgresql.org/docs/current/sql-notify.html).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from bridge.retry import RetryPolicy
from bridge.store.schema import error_line

log = logging.getLogger("bridge.listener")

# Shown in pg_stat_activity, so an operator can tell the listeners from the pool.
APPLICATION_NAME = "cortex-deploy-bridge listener"
# libpq keepalives: a peer that vanished without a word (a NAT dropping the idle connection,
# a host powered off) is noticed within about a minute instead of the OS's two hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10}
# Reconnecting: the one backoff rule (bridge/retry.py), from 0.5 s up to 30 s between tries,
# for as long as the process lives (the attempt and time bounds are not used here).
RECONNECT = RetryPolicy(base_delay=0.5, max_delay=30.0)


class Listener:
    """A daemon thread that LISTENs on a channel and calls ``wake`` for each notification."""

    def __init__(
        self,
        connect_args: Sequence[Any],
        connect_params: dict[str, Any],
        *,
        channel: str,
        wake: Callable[[], None],
        poll_seconds: float = 1.0,
        backoff: RetryPolicy = RECONNECT,
    ) -> None:
        self._args = tuple(connect_args)
        self._params = {"application_name": APPLICATION_NAME, **KEEPALIVES, **connect_params}
        self.channel = channel
        self._wake = wake
        self._poll = poll_seconds
        self._backoff = backoff
        # Set while listening: tests wait on it, and it says whether wake-ups can arrive.
        self.listening = threading.Event()
        self.backend_pid: int | None = None  # the PostgreSQL backend listening, if any
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-listener", daemon=True)

    def start(self) -> Listener:
        """Start listening in the background."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and close the connection (within about one poll interval)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    failures = 0
                    self._listen(conn)
            except Exception as exc:  # any failure means reconnect: this thread must not die
                self.listening.clear()
                if self._stop.is_set():
                    return
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning(
                    "wake-up listener lost the database; reconnecting",
                    extra={"error": error_line(exc), "delay": round(delay, 2)},
                )
                self._stop.wait(delay)
        self.listening.clear()

    def _connect(self) -> Any:
        import psycopg
        from psycopg import sql

        conn = psycopg.connect(*self._args, **self._params, autocommit=True)
        try:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            conn.close()
            raise
        return conn

    def _listen(self, conn: Any) -> None:
        self.backend_pid = conn.info.backend_pid
        self.listening.set()
        self._wake()  # whatever was queued while nobody listened
        while not self._stop.is_set():
            # A bounded wait, so that stop() is noticed; psycopg raises when the link drops.
            for _ in conn.notifies(timeout=self._poll):
                self._wake()
                if self._stop.is_set():
                    return
