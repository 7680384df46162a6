"""Parse the timestamps sources send, and format them the one way Cortex gets them (UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

# One grammar on every Python the bridge supports (3.10's fromisoformat takes a fraction of
# exactly 3 or 6 digits and an offset with a colon only): RFC 3339 and ISO 8601's extended
# form (a fraction of any length, ',' or '.'; seconds optional; an offset of +HH, +HHMM or
# +HH:MM), with a space for the 'T'; and GitLab webhooks' "2021-04-28 21:50:00 +0200" and
# "2021-04-28 21:50:00 UTC" (doc/user/project/integrations/webhook_events.md).
_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<minute>\d{2}:\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?"
    r"\s*(?P<zone>UTC|[Zz]|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,  # 0-9 only: "\d" would take Arabic-Indic and other digits
)
# Unix seconds: what `date +%s` gives, and CI systems' epoch variables.
_EPOCH = re.compile(r"\d{9,11}(\.\d+)?", re.ASCII)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339, ISO 8601 or GitLab-style timestamp into an aware UTC datetime.

    A timestamp without a zone is refused: guessing its zone is how deploys land at the
    wrong hour. A fraction finer than a microsecond is cut to one.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    if _EPOCH.fullmatch(value):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    zone = match["zone"]
    if zone is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (add 'Z' or '+00:00')")
    if zone in ("UTC", "Z", "z"):
        zone = "+00:00"
    else:
        digits = zone[1:].replace(":", "")
        zone = f"{zone[0]}{digits[:2]}:{digits[2:] or '00'}"
    fraction = ((match["fraction"] or "") + "000000")[:6]
    second = match["second"] or "00"
    try:
        parsed = datetime.fromisoformat(
            f"{match['date']}T{match['minute']}:{second}.{fraction}{zone}"
        )
    except ValueError:  # a month 13, a day 32, an hour 24, an offset of 25 hours
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+01:00: before the first moment Python has
        raise ValueError(f"timestamp {text!r} is out of range") from None


def format_timestamp(moment: datetime) -> str:
    """Format as RFC 3339 in UTC with a 'Z', milliseconds only when there are some."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    utc = moment.astimezone(timezone.utc)
    if utc.microsecond:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_between(start: datetime, end: datetime) -> float:
    """Whole-millisecond duration from ``start`` to ``end``, never negative."""
    delta = end - start
    return max(round(delta / timedelta(milliseconds=1)) / 1000, 0.0)
