"""Secrets never shown: in plain text, and as a JSON log line spells them."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import logs
from bridge.redact import redact
from tests.conftest import bridge_logs_to, examples


def test_a_secret_is_masked_wherever_it_appears() -> None:
    assert redact("token=abc123 and abc123 again", ["abc123"]) == "token=*** and *** again"


def test_empty_secrets_mask_nothing() -> None:
    assert redact("nothing to hide", ["", ""]) == "nothing to hide"


def test_a_longer_secret_is_masked_whole_before_one_it_contains() -> None:
    assert redact("pw=hunter2-extra", ["hunter2", "hunter2-extra"]) == "pw=***"


def test_json_spellings_of_a_secret_are_masked_too() -> None:
    secret = 'pa"ss\\wörd'
    line = json.dumps({"message": f"connecting with {secret}"})
    assert secret not in line  # JSON escaped it: a plain replace would miss it
    assert redact(line, [secret]) == json.dumps({"message": "connecting with ***"})


def test_log_lines_never_carry_a_secret() -> None:
    secret = 'p@ss"wörd'
    stream = io.StringIO()
    with bridge_logs_to(stream, [secret]):
        logging.getLogger("bridge.test").info("db password %s", secret, extra={"url": secret})
    line = stream.getvalue()
    assert "***" in line and "wörd" not in line and "\\u00f6rd" not in line
    assert json.loads(line)["url"] == "***"


def test_the_time_of_a_line_is_rfc3339_utc_with_milliseconds() -> None:
    formatter = logs.JsonFormatter()
    for created in (0.0, 1.9995, 1764979062.123456, 1764979062.999, 1764979063.0005):
        record = logging.makeLogRecord({"msg": "x", "created": created})
        want = (
            datetime.fromtimestamp(created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        assert json.loads(formatter.format(record))["time"] == want, created


@settings(max_examples=examples(200), deadline=None)
@given(st.text(min_size=8, max_size=40).filter(lambda s: s.strip() == s and "***" not in s))
def test_no_spelling_of_any_secret_survives_a_log_line(secret: str) -> None:
    formatter = logs.JsonFormatter([secret])
    record = logging.makeLogRecord(
        {"msg": "token %s", "args": (secret,), "url": f"https://x.example/?t={secret}"}
    )
    line = formatter.format(record)
    for spelling in (
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    ):
        assert spelling not in line
