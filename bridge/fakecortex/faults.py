"""Injected misbehaviour: queued :class:`Fault` objects and the random faults of chaos mode."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from bridge.fakecortex.schema import error

# The ways a chaos request fails: Cortex's 429 with Retry-After, gateway and server errors,
# a slow (but correct) answer, and a connection dropped before or after the deploy is stored.
CHAOS_KINDS = ("rate_limited", "500", "502", "503", "slow", "drop_before", "drop_after")


@dataclass
class Fault:
    """One injected misbehaviour, applied to the next matching request."""

    kind: str  # "status", "drop_before", "drop_after", "delay", "delay_after"
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    method: str | None = None  # only requests with this method, if set

    @property
    def label(self) -> str:
        """A short name for counting: the kind, or the status for a status fault."""
        if self.kind != "status":
            return self.kind
        return "rate_limited" if self.status == 429 else str(self.status)

    @classmethod
    def rate_limited(cls, retry_after: float = 1, **kw: Any) -> Fault:
        """A 429 with Retry-After, shaped like Cortex's TooManyRequestsProblemDetail."""
        body = {
            "type": "about:blank",
            "title": "Too Many Requests",
            "status": 429,
            "retryAfter": int(retry_after),
        }
        return cls(
            "status", status=429, headers={"Retry-After": f"{retry_after:g}"}, body=body, **kw
        )


def chaos_fault(kind: str, rng: random.Random, *, slow_seconds: float, retry_after: float) -> Fault:
    """One random fault of ``kind`` (one of CHAOS_KINDS)."""
    if kind == "rate_limited":
        return Fault.rate_limited(retry_after=retry_after)
    if kind == "slow":
        seconds = rng.uniform(slow_seconds / 2, slow_seconds)
        return Fault("delay", seconds=seconds)
    if kind in ("drop_before", "drop_after"):
        return Fault(kind)
    status = int(kind)
    body = error(status, "SERVER_ERROR", f"injected {status}")[2]
    return Fault("status", status=status, body=body)
