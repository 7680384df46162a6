"""serve's gunicorn worker class: gunicorn's gevent worker, with a quiet quick stop.

gunicorn stops a gevent worker on SIGINT or SIGQUIT (Ctrl-C in a terminal reaches every
process) by raising SystemExit inside a greenlet, which gevent reports as a failure with
a traceback on the way out. Here those signals stop the worker as SIGTERM does: it stops
accepting, finishes the requests in hand (at most ``graceful_timeout``) and exits.
"""

from __future__ import annotations

from types import FrameType

from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]
    """gunicorn's gevent worker; SIGINT and SIGQUIT stop it gracefully."""

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """Stop as on SIGTERM: no more connections, the ones in hand are finished."""
        self.alive = False
