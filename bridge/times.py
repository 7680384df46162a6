"""Parse the timestamps sources send, and format them the one way Cortex gets them (UTC)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

# GitLab webhooks send "2021-04-28 21:50:00 +0200" or "2021-04-28 21:50:00 UTC"
# (doc/user/project/integrations/webhook_events.md); GitHub and CI send ISO 8601 / RFC 3339.
_GITLAB_STYLE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*"
    r"(?P<zone>UTC|Z|[+-]\d{2}:?\d{2})$"
)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339, ISO 8601 or GitLab-style timestamp into an aware UTC datetime.

    A timestamp without a zone is refused: guessing its zone is how deploys land at the
    wrong hour.
    """
    value = text.strip()
    if not value:
        raise ValueError("empty timestamp")
    if re.fullmatch(r"\d{9,11}(\.\d+)?", value):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    match = _GITLAB_STYLE.match(value)
    if match:
        zone = match["zone"]
        zone = "+00:00" if zone in ("UTC", "Z") else zone
        value = f"{match['date']}T{match['time']}{zone}"
    elif value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (add 'Z' or '+00:00')")
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
