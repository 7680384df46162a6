"""When to try again, how long to wait, and the one loop that does it.

:class:`RetryPolicy` (pure) says how long and when to give up; :func:`drive` is the one retry
driver, for the Cortex client's callers (the Action, ``send``, ``sync``), the http-source
reader and the GitHub/GitLab/Argo CD client alike: each passes its own policy, its own reading
of which failures may pass (``classify``), and the sleep and clock it runs on. It sits beside
neither client, so the SCM side imports nothing of Cortex's package to use it.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by total time.

    The other side's own wait (``Retry-After``, a rate limit's reset) wins over the computed
    delay, up to ``max_retry_after``. A request is tried at most ``max_attempts`` times, of
    which at most ``max_failures`` may fail without the other side saying when to come back
    (a 5xx, a lost connection; None: no bound of their own), and gives up rather than wait
    past ``max_elapsed`` seconds in all.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    max_elapsed: float = 180.0
    max_failures: int | None = None

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


@dataclass(frozen=True)
class Again:
    """A failure worth another attempt, and the wait the other side asked for, if it said."""

    after: float | None = None


def drive(
    attempt: Callable[[int], T],
    *,
    policy: RetryPolicy,
    classify: Callable[[Exception], Again | None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[Exception, float], None] | None = None,
    gave_up: Callable[[Exception, str], Exception] | None = None,
) -> T:
    """``attempt(1)``, ``attempt(2)``, ... until one returns.

    A failure ``classify`` does not call worth another attempt is raised as it is. So is one
    after the policy's bounds are spent, unless ``gave_up`` is given: it then makes the error
    raised from that failure and the reason ("gave up after 8 tries", "waiting 90s more would
    pass ..."). ``on_retry`` hears each failure and the wait before the next attempt. Time
    spent is the clock's, and never less than the waits slept (an injected sleep counts too).
    """
    started, number, failures, waited = clock(), 1, 0, 0.0
    while True:
        try:
            return attempt(number)
        except Exception as exc:
            again = classify(exc)
            if again is None:
                raise
            failures += again.after is None
            delay = policy.delay(number, again.after)
            spent = max(clock() - started, waited)
            reason = _spent(policy, number, failures, spent, delay)
            if reason is not None:
                if gave_up is None:
                    raise
                raise gave_up(exc, reason) from None
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            waited += delay
            number += 1


def _spent(
    policy: RetryPolicy, number: int, failures: int, spent: float, delay: float
) -> str | None:
    """Why no attempt follows attempt ``number``, or None when one may."""
    most_failures = policy.max_failures
    if number >= policy.max_attempts or (most_failures is not None and failures >= most_failures):
        return f"gave up after {number} tries"
    if spent + delay > policy.max_elapsed:
        return (
            f"waiting {delay:.0f}s more would pass {policy.max_elapsed:.0f}s for this request, "
            "too long to wait; run again later"
        )
    return None
