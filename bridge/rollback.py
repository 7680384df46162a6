"""An entity's deploy history, as the core's DEPLOY-or-ROLLBACK rule reads it
(bridge.record.core.type_of). Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PastDeploy:
    """One earlier deploy of an entity to an environment: its sha and its own time."""

    sha: str
    timestamp: datetime


def same_sha(a: str, b: str) -> bool:
    """Compare commit shas, letting an abbreviated one (7+ hex) match its full form."""
    a, b = a.strip().lower(), b.strip().lower()
    if not a or not b:
        return False
    if len(a) == len(b):
        return a == b
    short, full = sorted((a, b), key=len)
    return len(short) >= 7 and full.startswith(short)
