"""The shared rate budget's arithmetic: a token bucket that may run into debt. Pure.

Every replica's workers draw from one bucket kept in the database. A draw never fails and
never loops: it takes its token even when none is left, and the debt says how long to wait
(the bucket refills at ``rate`` tokens a second, so a debt of n tokens is paid off in
n / rate seconds, and draws in debt are spaced 1 / rate apart). So one short UPDATE per
request meters the whole fleet. The formulas are written once, on operands that may be
floats (the tests, the wait) or SQL expressions (the UPDATE), with ``least``/``greatest``
given for each: ``min``/``max`` on floats, the database's own functions in SQL.

Times are seconds since the epoch, from the caller's clock. A replica whose clock runs
behind never refills the bucket (the elapsed time is never negative), one running ahead
pushes ``counted_at`` forward and so refills nothing for the others until their clocks catch
up: skew slows the fleet down, it never lets it go faster than ``rate``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# What the formulas take: floats, or SQLAlchemy column expressions.
Number = Any
Pick = Callable[[Number, Number], Number]

# When Cortex answers 429 without Retry-After, the fleet pauses this long.
DEFAULT_PAUSE_SECONDS = 10.0


def capacity(per_minute: int) -> float:
    """The most requests a full bucket lets out at once: one second's worth, at least one."""
    # Cortex counts requests per minute: a full bucket spent at once, then a minute of
    # refill, must stay under its limit. At 900/min that is 15 + 900 in any one minute.
    return max(per_minute / 60.0, 1.0)


def refill(
    tokens: Number,
    counted_at: Number,
    paused_until: Number,
    now: Number,
    *,
    rate: float,
    capacity: float,
    least: Pick = min,
    greatest: Pick = max,
) -> Number:
    """Tokens at ``now``: ``rate`` a second since the last count or the pause's end, capped."""
    since = greatest(counted_at, paused_until)
    return least(tokens + greatest(now - since, 0.0) * rate, capacity)


def take(
    tokens: Number,
    counted_at: Number,
    paused_until: Number,
    now: Number,
    *,
    rate: float,
    capacity: float,
    least: Pick = min,
    greatest: Pick = max,
) -> tuple[Number, Number]:
    """One request drawn: the tokens left (negative: in debt) and the new ``counted_at``."""
    left = (
        refill(
            tokens,
            counted_at,
            paused_until,
            now,
            rate=rate,
            capacity=capacity,
            least=least,
            greatest=greatest,
        )
        - 1.0
    )
    return left, greatest(counted_at, now)


def pause(
    tokens: Number, paused_until: Number, until: Number, *, least: Pick = min, greatest: Pick = max
) -> tuple[Number, Number]:
    """Cortex said 429: no request before ``until``, and no saved-up burst right after it."""
    return least(tokens, 0.0), greatest(paused_until, until)


def wait_seconds(tokens_left: float, paused_until: float, now: float, *, rate: float) -> float:
    """Seconds before the request whose draw left ``tokens_left`` may be sent (0: at once)."""
    return max(paused_until - now, 0.0) + max(-tokens_left, 0.0) / rate
