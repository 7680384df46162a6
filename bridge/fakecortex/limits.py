"""A Cortex-like rate limit: at most N requests in any sliding minute, then 429s."""

from __future__ import annotations

import math
from collections import deque

from bridge.fakecortex.faults import Fault


def over_rate_limit(admitted: deque[float], per_minute: int, now: float) -> Fault | None:
    """A 429 when a request at ``now`` would pass ``per_minute``; else count it in.

    ``admitted`` holds when each request of the last minute came; it is pruned and appended
    to in place. ``per_minute`` 0 means no limit.
    """
    if not per_minute:
        return None
    while admitted and admitted[0] <= now - 60.0:
        admitted.popleft()
    if len(admitted) >= per_minute:
        wait = max(1, math.ceil(admitted[0] + 60.0 - now))
        return Fault.rate_limited(retry_after=wait)
    admitted.append(now)
    return None
