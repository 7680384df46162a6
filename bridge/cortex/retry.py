"""When to try Cortex again, and how long to wait. Pure: the caller sleeps."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by total time.

    Cortex's own ``Retry-After`` wins over the computed delay, up to ``max_retry_after``.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    max_elapsed: float = 180.0

    def delay(
        self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        # The exponent is capped: past 30 doublings every delay is max_delay anyway.
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(max(attempt - 1, 0), 30)))
        # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"), with a floor
        # of half the ceiling so a retry never comes back instantly.
        return (rng or random).uniform(ceiling / 2, ceiling)


def parse_retry_after(header: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not header:
        return None
    value = header.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan" and "inf" parse as floats, but say nothing of when to come back
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    from email.utils import parsedate_to_datetime  # rare: keep it off the start-up path

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)
