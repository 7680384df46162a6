"""Structured (JSON) logs, one object per line, with secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from itertools import islice
from typing import Any

from bridge.redact import masked, spellings

try:  # the server's dependency: a fifth of the stdlib's time for a line (issue 18)
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover (the base install logs nothing of this kind)
    _orjson_dumps = None  # type: ignore[assignment]

# Attributes every LogRecord has; anything else was passed in ``extra`` and is logged.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# How many a record's __init__ sets: ``extra`` (and what makeLogRecord is given) comes after
# them in the record's __dict__, so only what follows is looked at.
_SET_BY_INIT = len(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """Format records as JSON with time, level, logger, message and the ``extra`` fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)
        # Worked out once: a receiver logs a line for every webhook it refuses or ignores.
        self._spellings = spellings(self.secrets)
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line; the secrets masked in its values (the names of its fields and the
        logger's are the code's own: a short secret never garbles them)."""
        data: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": masked(record.getMessage(), self._spellings),
        }
        for key, value in islice(record.__dict__.items(), _SET_BY_INIT, None):
            if key not in _STANDARD:
                data[key] = masked(value, self._spellings)
        if record.exc_info:
            data["exception"] = masked(self.formatException(record.exc_info), self._spellings)
        return _dumps(data)

    def _time(self, created: float) -> str:
        """RFC 3339 UTC with milliseconds; the part up to the second is made once a second."""
        second = int(created)
        if second != self._second:
            moment = datetime.fromtimestamp(second, timezone.utc)
            self._second, self._stamp = second, moment.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"


def _dumps(data: dict[str, Any]) -> str:
    """``data`` as one line of JSON; anything JSON has no type for, as its ``str``."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(data, default=str).decode()
        except TypeError:  # what orjson does not encode (an int past 64 bits, a non-str key)
            pass
    return json.dumps(data, default=str)


class JsonLines(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that writes and flushes each line under the one lock ``handle`` takes.

    The stdlib's ``emit`` calls its own ``flush``, which takes the handler's lock a second
    time for every line: under gevent's patched threading, a Python-level lock.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write the formatted record and a newline, then flush."""
        try:
            stream = self.stream
            stream.write(self.format(record) + self.terminator)
            stream.flush()
        except RecursionError:  # as the stdlib's emit: not turned into a printed error
            raise
        except Exception:
            self.handleError(record)


def configure(*, secrets: Iterable[str] = (), level: str = "INFO") -> None:
    """Send the bridge's logs to stderr as JSON lines."""
    handler = JsonLines(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger("bridge")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # What no line shows, not worked out for every record (the logging HOWTO, "Optimization"):
    # the caller's file and line, the thread, the process and its name.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def gunicorn_logger(secrets: Iterable[str] = ()) -> type:
    """gunicorn's logger class, with its own lines (start, stop, errors) in our JSON.

    gunicorn formats ``gunicorn.error`` with a text format of its own; this subclass puts
    :class:`JsonFormatter` on whatever handlers gunicorn set up, each time it sets them up.
    """
    from gunicorn.glogging import Logger

    formatter = JsonFormatter(secrets)

    class JsonLogger(Logger):  # type: ignore[misc]
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(formatter)

    return JsonLogger
