"""Structured (JSON) logs, one object per line, with secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from bridge.redact import redact

# Attributes every LogRecord has; anything else was passed in ``extra`` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Format records as JSON with time, level, logger, message and the ``extra`` fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        """One JSON line."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(data, default=str))

    def redact(self, text: str) -> str:
        """The text with every secret replaced by ***."""
        return redact(text, self.secrets)


def configure(*, secrets: Iterable[str] = (), level: str = "INFO") -> None:
    """Send the bridge's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger("bridge")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


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
