"""What Cortex holds for one entity, as a listing or a search showed it. Pure: no I/O.

Every face reads it the same way: a record carrying the bridge's idempotency key is that
deploy's record, whichever face made it; a record without a key of the same sha and
environment, near in time, is another tool's record of the deploy (the keyless match); two
records with one key are a double, and the newer goes (:meth:`Listing.doubles`). Only records
that carry the key are ever counted as doubles: another tool's records are never deleted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.mapping import key_of
from bridge.model import DeployEvent, Status
from bridge.rollback import same_sha
from bridge.times import parse_timestamp


@dataclass(frozen=True)
class Known:
    """What is known of one deploy's record in Cortex: its uuid, the status it holds, and when
    a face made it (``customData.bridge.recordedAt``, '' when unknown: an update keeps it)."""

    uuid: str
    state: str
    stamp: str = ""


@dataclass(frozen=True)
class Double:
    """A deploy Cortex holds more than once under one key: the one kept, the ones to delete."""

    key: str
    keep: str
    delete: tuple[str, ...]


def status_of(deploy: Mapping[str, Any]) -> str:
    """The status a Cortex deploy record holds; one made without one counts as succeeded."""
    custom = deploy.get("customData")
    status = custom.get("status") if isinstance(custom, dict) else None
    known = {s.value for s in Status}
    return status if isinstance(status, str) and status in known else Status.SUCCEEDED.value


def recorded_at(deploy: Mapping[str, Any]) -> str:
    """When a face made the record (``customData.bridge.recordedAt``), '' if it does not say."""
    custom = deploy.get("customData")
    bridge = custom.get("bridge") if isinstance(custom, dict) else None
    stamp = bridge.get("recordedAt") if isinstance(bridge, dict) else None
    return stamp if isinstance(stamp, str) else ""


def _age(deploy: Mapping[str, Any]) -> tuple[str, str]:
    """The order of a key's records, oldest first: by when it was made, then by uuid.

    Every face sorts the same records the same way, so two faces removing one double at once
    delete the same record and keep the same one. A record that does not say when it was made
    (made before the stamp existed) counts as the oldest.
    """
    return recorded_at(deploy), str(deploy.get("uuid"))


def _short(sha: str) -> str:
    """The part of a sha that an abbreviated one shares (git abbreviates to 7 at least)."""
    return sha.strip().lower()[:7]


def _moment(value: object) -> datetime | None:
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


class Listing:
    """One entity's records in Cortex, indexed by key and, for records without one, by sha.

    Plain attributes a reader may test before asking more: ``keyed`` (the records of each key
    carried), ``keyless`` (records without a key, by environment and short sha), ``doubled``
    (some key is held more than once).
    """

    def __init__(self, deploys: Iterable[Mapping[str, Any]] = ()) -> None:
        self.deploys: list[Mapping[str, Any]] = []
        self.keyed: dict[str, list[Mapping[str, Any]]] = {}
        self.keyless: dict[tuple[Any, str], list[Mapping[str, Any]]] = defaultdict(list)
        self.doubled = False
        self._matched: set[str] = set()  # keyless records already taken by a deploy
        for deploy in deploys:
            self.add(deploy)

    def add(self, deploy: Mapping[str, Any]) -> None:
        """Keep one record (read, or just made by this face)."""
        self.deploys.append(deploy)
        key, sha = key_of(dict(deploy)), deploy.get("sha")
        if key is not None:
            records = self.keyed.setdefault(key, [])
            records.append(deploy)
            self.doubled = self.doubled or len(records) > 1
        elif isinstance(sha, str) and len(sha.strip()) >= 7:
            self.keyless[(deploy.get("environment"), _short(sha))].append(deploy)

    def drop(self, uuid: str) -> None:
        """Forget a record deleted in Cortex."""
        self.deploys = [d for d in self.deploys if d.get("uuid") != uuid]
        for key, records in list(self.keyed.items()):
            records[:] = [d for d in records if d.get("uuid") != uuid]
            if not records:
                del self.keyed[key]
        self.doubled = any(len(records) > 1 for records in self.keyed.values())

    def carried_keys(self) -> set[str]:
        """The idempotency keys the records carry."""
        return set(self.keyed)

    def uuids(self, key: str) -> list[str]:
        """The uuids of the records carrying ``key``, oldest first."""
        return [str(d.get("uuid")) for d in sorted(self.keyed.get(key, []), key=_age)]

    def known(self, key: str) -> Known | None:
        """The record of the deploy ``key`` (the oldest, if doubled), with its stamp."""
        records = sorted(self.keyed.get(key, []), key=_age)
        if not records or not isinstance(records[0].get("uuid"), str):
            return None
        return Known(str(records[0]["uuid"]), status_of(records[0]), recorded_at(records[0]))

    def keyless_match(self, event: DeployEvent, window: timedelta) -> Mapping[str, Any] | None:
        """A record without a key of the event's sha and environment within ``window`` of its
        time, not yet matched to another deploy: another tool recorded this deploy."""
        if not event.sha:
            return None
        for deploy in self.keyless.get((event.environment, _short(event.sha)), []):
            uuid = str(deploy.get("uuid"))
            if uuid in self._matched or not same_sha(str(deploy.get("sha")), event.sha):
                continue
            when = _moment(deploy.get("timestamp"))
            if when is not None and abs(when - event.timestamp) <= window:
                self._matched.add(uuid)
                return deploy
        return None

    def doubles(self, keys: Iterable[str] | None = None) -> list[Double]:
        """Every key (of ``keys``, or all) held more than once: keep the oldest, delete the rest."""
        wanted = self.keyed.keys() if keys is None else keys
        found = []
        for key in sorted(k for k in set(wanted) if len(self.keyed.get(k, ())) > 1):
            uuids = self.uuids(key)
            if len(uuids) > 1:
                found.append(Double(key, uuids[0], tuple(uuids[1:])))
        return found
