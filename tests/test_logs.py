"""The bridge's log lines: one JSON object per line, the record's own fields and its ``extra``,
secrets masked, each line out as soon as it is logged."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from bridge import logs
from tests.conftest import bridge_logs_to

SECRET = "s3cr3t-token-value"


@pytest.fixture
def stream() -> Iterator[io.TextIOWrapper]:
    """Where ``bridge`` logs, as ``serve`` configures it, for one test: a block-buffered text
    stream over bytes, so that a line not flushed is not seen."""
    raw = io.BytesIO()
    text = io.TextIOWrapper(raw, encoding="utf-8", line_buffering=False, write_through=False)
    with bridge_logs_to(text, [SECRET]):
        yield text


def written(stream: io.TextIOWrapper) -> list[str]:
    """The lines that reached the bytes under ``stream`` (nothing still in its buffer)."""
    raw = stream.buffer.raw if hasattr(stream.buffer, "raw") else stream.buffer
    assert isinstance(raw, io.BytesIO)
    return raw.getvalue().decode().splitlines()


def test_a_line_has_the_record_fields_then_the_extra_ones_in_their_order(
    stream: io.TextIOWrapper,
) -> None:
    extra = {"source": "github", "event": "push", "delivery_id": "d-1", "status_code": 200}
    logging.getLogger("bridge.receiver").info("webhook %s", "ignored", extra=extra)
    [line] = written(stream)
    data = json.loads(line)
    assert list(data) == ["time", "level", "logger", "message", *extra]
    assert data["level"] == "info" and data["logger"] == "bridge.receiver"
    assert data["message"] == "webhook ignored"
    assert {k: data[k] for k in extra} == extra


def test_each_line_is_written_out_when_logged(stream: io.TextIOWrapper) -> None:
    log = logging.getLogger("bridge.test")
    for n in range(3):
        log.warning("line %d", n)
        # Block-buffered, the stream would hold it: the handler flushes each line.
        assert [json.loads(line)["message"] for line in written(stream)] == [
            f"line {k}" for k in range(n + 1)
        ]


def test_none_of_the_records_own_attributes_is_logged() -> None:
    formatter = logs.JsonFormatter()
    record = logging.getLogger("bridge.x").makeRecord(
        "bridge.x", logging.WARNING, "/a/b.py", 7, "m", (), None, extra={"id": 3}
    )
    # Another handler's formatter ran first and left its fields on the record.
    logging.Formatter("%(asctime)s %(message)s").format(record)
    assert json.loads(formatter.format(record)) == {
        "time": json.loads(formatter.format(record))["time"],
        "level": "warning",
        "logger": "bridge.x",
        "message": "m",
        "id": 3,
    }


def test_fields_given_to_make_log_record_are_logged_and_masked() -> None:
    formatter = logs.JsonFormatter([SECRET])
    record = logging.makeLogRecord({"msg": "m", "url": f"https://h/?t={SECRET}", "n": 1})
    data = json.loads(formatter.format(record))
    assert data["url"] == "https://h/?t=***" and data["n"] == 1
    assert SECRET not in formatter.format(record)


def test_an_exception_is_logged_with_its_traceback_masked(stream: io.TextIOWrapper) -> None:
    try:
        raise ValueError(f"bad token {SECRET}")
    except ValueError:
        logging.getLogger("bridge.test").exception("failed", extra={"step": "x"})
    [line] = written(stream)
    data = json.loads(line)
    assert data["step"] == "x" and data["level"] == "error"
    assert "ValueError: bad token ***" in data["exception"]
    assert SECRET not in line


def test_a_short_secret_is_masked_in_values_never_in_field_or_logger_names() -> None:
    # A database password "bridge" garbled the logger's name ("***.startup") and field
    # names ("corte***_url" for a secret "x"): the code's own names are not the secret.
    formatter = logs.JsonFormatter(["bridge", "x"])
    record = logging.makeLogRecord(
        {
            "name": "bridge.startup",
            "msg": "connected as bridge",
            "cortex_url": "https://bridge.example",
            "results": {"later": ["bridge", 3, None], "bridge": "x"},  # keys: data, masked
            "attempts": 2,
        }
    )
    data = json.loads(formatter.format(record))
    assert data["logger"] == "bridge.startup"
    assert data["message"] == "connected as ***"
    assert data["cortex_url"] == "https://***.e***ample"
    assert data["results"] == {"later": ["***", 3, None], "***": "***"}
    assert data["attempts"] == 2


def test_a_url_password_in_a_field_is_masked_as_every_face_shows_it() -> None:
    # The logs mask as the admin API, the console and ``deliveries`` do (redact.masked): a
    # URL's password is masked even where it is no configured secret.
    formatter = logs.JsonFormatter([SECRET])
    try:
        raise ValueError("could not reach postgresql://bridge:hunter22@db/bridge")
    except ValueError:
        record = logging.makeLogRecord(
            {
                "msg": "connecting to %s",
                "args": ("postgresql://bridge:hunter22@db:5432/bridge",),
                "database": "postgresql://bridge:hunter22@db:5432/bridge",
                "nested": {"urls": ["https://u:pw-in-url@h/x"]},
                "exc_info": sys.exc_info(),
            }
        )
    line = formatter.format(record)
    data = json.loads(line)
    assert data["message"] == "connecting to postgresql://***@db:5432/bridge"
    assert "postgresql://***@db/bridge" in data["exception"]
    assert data["database"] == "postgresql://***@db:5432/bridge"
    assert data["nested"] == {"urls": ["https://***@h/x"]}
    assert "hunter22" not in line and "pw-in-url" not in line


def test_a_value_json_has_no_type_for_is_its_text_masked_keys_too() -> None:
    formatter = logs.JsonFormatter([SECRET])
    record = logging.makeLogRecord(
        {"msg": "m", "odd": {("a", SECRET): {SECRET}}, "when": ValueError(SECRET)}
    )
    line = formatter.format(record)
    data = json.loads(line)
    assert data["odd"] == {"('a', '***')": "{'***'}"}
    assert data["when"] == "***"
    assert SECRET not in line
