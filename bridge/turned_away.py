"""The receiver's note of each webhook it rejected (4xx) or ignored, for the console.

Answering an ignored event is most of a busy hook's traffic and must stay cheap: a note is
appended to a bounded buffer in memory, and a thread writes what has gathered to the
store's bounded journal (bridge/store/journal.py) once a second, in one transaction. When
the buffer is full the oldest notes go first, as the journal keeps only the newest anyway.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from bridge.errors import BridgeError
from bridge.store.journal import (
    APART,
    MAX_TURNED_AWAY,
    MAX_UNAUTHORIZED,
    Journal,
    TurnedAway,
)

log = logging.getLogger("bridge.receiver")

FLUSH_SECONDS = 1.0


class TurnedAwayLog:
    """A buffer of turned-away webhooks, written to the journal in batches."""

    def __init__(self, journal: Journal, clock: Callable[[], datetime]) -> None:
        self.journal = journal
        self.clock = clock
        # Plain tuples: a frozen dataclass per note cost more than the rest of noting it.
        self._notes: collections.deque[tuple[datetime, str, str, str, int, str, str]] = (
            collections.deque(maxlen=MAX_TURNED_AWAY)
        )
        # Those refused before their sender was verified, apart: a flood of them pushes out
        # none of the rest.
        self._refused: collections.deque[tuple[datetime, str, str, str, int, str, str]] = (
            collections.deque(maxlen=MAX_UNAUTHORIZED)
        )
        self._flushing = threading.Lock()
        self._thread: threading.Thread | None = None

    def note(
        self, *, source: str, event: str, delivery: str, code: int, answer: str, reason: str
    ) -> None:
        """Remember one webhook answered without storing an event (cheap: no I/O)."""
        (self._refused if answer in APART else self._notes).append(
            (self.clock(), source, event or "-", delivery or "-", code, answer, reason)
        )

    def flush(self) -> None:
        """Write what has gathered; a failing database drops it with one warning."""
        with self._flushing:
            taken = []
            for notes in (self._refused, self._notes):
                while notes:
                    taken.append(TurnedAway(*notes.popleft()))
            taken.sort(key=lambda row: row.received_at)  # as they came, so ids follow time
            try:
                self.journal.add_turned_away(taken)
            except BridgeError as exc:
                log.warning(
                    "could not keep the turned-away webhooks",
                    extra={"count": len(taken), "error": str(exc)},
                )

    def start(self, stop: threading.Event) -> threading.Thread:
        """Flush every FLUSH_SECONDS in a daemon thread until ``stop`` is set."""

        def run() -> None:
            while not stop.wait(FLUSH_SECONDS):
                try:
                    self.flush()
                except Exception:  # a bug must not end the notes for good
                    log.exception("keeping the turned-away webhooks failed")
            self.flush()

        self._thread = threading.Thread(target=run, name="bridge-turned-away", daemon=True)
        self._thread.start()
        return self._thread
