"""How a delivery is shown: one shape for the admin API and the ``deliveries`` command.

Pure and light: no Flask, no SQLAlchemy (the command imports this to print what it read).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bridge.redact import masked

if TYPE_CHECKING:
    from bridge.store import Delivery

# The largest page the admin API and ``deliveries list`` hand out at once.
MAX_PAGE = 200
# Delivery ids are BIGINT on PostgreSQL (and SQLite's INTEGER): 1 to 2**63 - 1.
MAX_ID = 2**63 - 1


def counted(raw: str, most: int) -> int | None:
    """The number from 1 to ``most`` that ``raw`` spells, or None: plain ASCII digits only (no
    sign, no spaces, no ``_``, no other script's digits, all of which ``int`` takes). The one
    reading of an id, a limit or a cursor, for the admin API, the console and ``deliveries``."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(most)):
        return None
    value = int(raw)
    return value if 1 <= value <= most else None


def delivery_id(raw: str) -> int | None:
    """The delivery id ``raw`` names, or None when no delivery can have it: in the range a
    database holds (an id past it would overflow the driver's 64-bit parameter)."""
    return counted(raw, MAX_ID)


def stamp(moment: datetime | None) -> str | None:
    """An aware time as RFC 3339 UTC with a ``Z`` (None stays None)."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


def show_delivery(d: Delivery, *, full: bool, spelled: tuple[str, ...]) -> dict[str, Any]:
    """A delivery as the admin API shows it, with each of ``spelled`` (the process's secrets,
    :func:`bridge.redact.spellings`) and every URL's password masked in its text; ``full``
    adds the dedupe key and the payload."""
    event = d.payload.get("event", {})
    shown: dict[str, Any] = {
        "id": d.id,
        "status": d.status,
        "source": d.source,
        "event": d.event_name,
        "repository": event.get("repository"),
        "environment": event.get("environment"),
        "sha": event.get("sha"),
        "deploy_status": event.get("status"),
        "entities": d.payload.get("entities", []),
        "attempts": d.attempts,
        "received_at": stamp(d.received_at),
        "next_attempt_at": stamp(d.next_attempt_at),
        "delivered_at": stamp(d.delivered_at),
        "last_error": d.last_error,
        "results": d.results,
    }
    if full:
        shown["dedupe_key"] = d.dedupe_key
        shown["payload"] = d.payload
    return masked(shown, spelled)  # type: ignore[no-any-return]


def delivery_page(
    rows: Sequence[Delivery], cursor: int | None, spelled: tuple[str, ...]
) -> dict[str, Any]:
    """One page of the delivery log: ``data``, ``has_more`` and ``next_cursor`` (a string)."""
    return {
        "data": [show_delivery(d, full=False, spelled=spelled) for d in rows],
        "has_more": cursor is not None,
        "next_cursor": str(cursor) if cursor is not None else None,
    }
