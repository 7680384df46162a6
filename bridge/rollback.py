"""An entity's deploy history, as the core's DEPLOY-or-ROLLBACK rule reads it
(bridge.record.core.type_of). Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.mapping import key_of
from bridge.model import Status
from bridge.times import parse_timestamp

# customData.status of a bridge's record whose deploy the environment does not run.
_NOT_DEPLOYED = frozenset(s.value for s in Status if s is not Status.SUCCEEDED)


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


def past_deploys(
    deploys: Iterable[dict[str, Any]], environment: str | None, *, skip_key: str
) -> list[PastDeploy]:
    """The history of one environment from Cortex's records, leaving out this deploy's own.

    As the relay's own history holds them: the deploys that succeeded. A record the bridge
    made of a deploy that failed, was cancelled or has not finished (its customData.status)
    is no deploy the environment runs; a record without a status (another tool's) counts.
    """
    history = []
    for deploy in deploys:
        sha, stamp = deploy.get("sha"), deploy.get("timestamp")
        if deploy.get("environment") != environment or not isinstance(sha, str):
            continue
        if key_of(deploy) == skip_key or not isinstance(stamp, str):
            continue
        custom = deploy.get("customData")
        if isinstance(custom, dict) and custom.get("status") in _NOT_DEPLOYED:
            continue
        try:
            history.append(PastDeploy(sha, parse_timestamp(stamp)))
        except ValueError:
            continue
    return history
