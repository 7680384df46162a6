"""THE core: record one deploy on one entity, deciding create, update, delete or skip once.

Every face calls :func:`record_one`: the relay's worker (bridge/worker.py, with the store as
its history and its lease as the fence), the Action and ``send``, ``sync`` and the periodic
reconcile (through bridge/record/retrying.py, with Cortex's own listing as the history).
``decide`` is the recording policy (final or lifecycle mode, failures or not), stated once;
the receiver asks it too (``ignore_reason``) before it stores an event. :class:`Listing` is
how every face reads what Cortex holds for one entity (pure), and ``type_of`` the deploy's
type (DEPLOY or ROLLBACK from the history).

How the faces converge on one record per deploy and entity, stated here once:

1. a face that did not make the deploy's record itself looks in Cortex before creating one
   (its history's ``seen``: one read per entity for many deploys where the face can keep it),
   by the idempotency key (for a deploy whose run is gone, one of that run's: ``as_held``),
   then for another tool's record without one (the keyless match);
2. after a create, when another face may record the same entity (the listing it looked in is
   ``shared``), Cortex is read again, and of two records with one key the newer is deleted
   (both faces pick the same);
3. every read of Cortex removes the doubles it shows the same way, and ``sync --repair``
   does over history. Only records carrying the bridge's key are ever deleted.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Protocol

from bridge.cortex.client import Cortex
from bridge.errors import BridgeError, CortexRejected, CortexTooMany, UnsupportedEvent
from bridge.mapping import build_deploy_request, idempotency_key, key_of, run_attempt
from bridge.model import (
    Checked,
    DeployEvent,
    DeployRef,
    DeployType,
    Status,
    check_deploy,
)
from bridge.rollback import PastDeploy, same_sha
from bridge.times import format_timestamp, parse_timestamp

if TYPE_CHECKING:  # the Action's path must not load the config (and YAML) to record
    from bridge.config import Config, RecordSettings, Route

log = logging.getLogger(__name__)

# How far from the event's own time a record made by another path (the Action step, an
# earlier attempt whose answer was lost, a lifecycle start) is looked for before creating one.
LOOKUP_WINDOW = timedelta(hours=1)
# The longest a deploy's run is taken to last (GitHub Actions' longest workflow run, 35 days):
# how far before its end another face may have dated it.
LONGEST_RUN = timedelta(days=35)


def dated_from(event: DeployEvent) -> datetime:
    """The earliest time another face may have dated ``event``'s deploy: its start, where the
    event knows it (the Action dates a deploy at its step, a webhook at its run's end, hours
    later after post-deploy jobs or an approval), else its own time."""
    started = event.started_at
    if started is None or started >= event.timestamp:
        return event.timestamp
    return max(started, event.timestamp - LONGEST_RUN)


class Action(str, enum.Enum):
    """What one event does to one entity's Cortex record."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """An action and, for SKIP, why."""

    action: Action
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    """What is recorded: ``record.mode`` lifecycle or final, and ``record.failures``."""

    lifecycle: bool = False
    failures: bool = False

    @classmethod
    def of(cls, settings: RecordSettings) -> Policy:
        """The policy the config's ``record`` section states."""
        return cls(lifecycle=settings.mode == "lifecycle", failures=settings.failures)


def decide(
    status: Status, known: Known | None, policy: Policy, at: datetime | None = None
) -> Decision:
    """What an event of ``status``, of time ``at``, does to the record of its deploy, given
    what is known of it.

    A deploy's events may come in any order (GitHub does not order a deployment's events, and
    two replicas take them at once): a record only moves forward, pending to in_progress to
    an end; of two ends, the later one stays (with ``record.failures``, a failure delivered
    after the success that followed it changes nothing); and a deploy that ended without a
    record (a failure, not recorded) is known so (``Known`` with no uuid), so that its start,
    come late, makes none."""
    if known is not None and not known.uuid:
        again = status.is_final and status.value != known.state  # it was run again, and ended
        if again and (status is Status.SUCCEEDED or policy.failures):
            return Decision(Action.CREATE)
        return Decision(Action.SKIP, f"the deploy already ended {known.state}, unrecorded")
    if known is not None and known.state == status.value:
        return Decision(Action.SKIP, f"already recorded as {known.uuid} ({status.value})")
    if known is not None and Status(known.state).is_final and not status.is_final:
        return Decision(Action.SKIP, f"the deploy already ended {known.state}")
    if known is not None and known.state == Status.IN_PROGRESS.value and status is Status.PENDING:
        return Decision(Action.SKIP, "the deploy is already in_progress")
    later = _later_end(known, at) if known is not None and status.is_final else None
    if known is not None and later is not None:
        return Decision(Action.SKIP, f"the deploy ended {known.state} later, {later}")
    if status.is_final:
        if status is Status.SUCCEEDED or policy.failures:
            return Decision(Action.UPDATE if known else Action.CREATE)
        unrecorded = f"{status.value} deploys are not recorded (record.failures is false)"
        if known is None:
            return Decision(Action.SKIP, unrecorded)
        if Status(known.state).is_final:  # it succeeded: a later failure does not undo that
            return Decision(Action.SKIP, f"the deploy already ended {known.state}; {unrecorded}")
        return Decision(Action.DELETE)  # the start record of a deploy that did not succeed
    if not policy.lifecycle:
        return Decision(
            Action.SKIP, f"{status.value} is not final: only finished deploys are recorded"
        )
    return Decision(Action.UPDATE if known else Action.CREATE)


def _later_end(known: Known, at: datetime | None) -> str | None:
    """When the record's end came, where that was after ``at``; else None."""
    if known.ended is None or at is None or at >= known.ended:
        return None
    return format_timestamp(known.ended)


def ignore_reason(status: Status, config: Config) -> str | None:
    """Why the receiver need not store an event of ``status`` at all, or None when it must.

    The policy asked for every record the deploy may already have (in lifecycle mode, a start
    record): an event skipped whatever is recorded records nothing, now or later.
    """
    return _ignore_reason(status, config.record)


# Asked for every delivery the receiver gets; a few (status, record section) pairs ever occur.
@functools.lru_cache(maxsize=64)
def _ignore_reason(status: Status, record: RecordSettings) -> str | None:
    policy = Policy.of(record)
    earlier: list[Known | None] = [None]
    if policy.lifecycle:
        earlier.append(Known("a start record", Status.IN_PROGRESS.value))
    decisions = [decide(status, k, policy) for k in earlier]
    if all(d.action is Action.SKIP for d in decisions):
        return decisions[0].reason
    return None


# -- what Cortex holds for one entity (pure) ---------------------------------------------
#
# Every face reads it the same way: a record carrying the bridge's idempotency key is that
# deploy's record, whichever face made it, and so, for a deploy that names its run but not the
# attempt (the run deleted), is a record keyed by an attempt of that run, of its sha, near in
# time (the run match); a record without a key of the same sha and environment, near in time,
# is another tool's record of the deploy (the keyless match); two records with one key are a
# double, and the newer goes (Listing.doubles). Only records that carry the key are ever
# counted as doubles: another tool's records are never deleted.


@dataclass(frozen=True)
class Known:
    """What is known of one deploy's record in Cortex: its uuid, the status it holds, when a
    face made it (``customData.bridge.recordedAt``, '' when unknown: an update keeps it),
    when the deploy started, where the record says (an update whose event does not keeps it),
    and, for an end, when it ended (the record's ``timestamp``; None where unknown); and the
    type the record holds, where read from Cortex."""

    uuid: str
    state: str
    stamp: str = ""
    started: datetime | None = None
    ended: datetime | None = None
    type: DeployType | None = None


@dataclass(frozen=True)
class Double:
    """A deploy Cortex holds more than once under one key: the one kept, the ones to delete."""

    key: str
    keep: str
    delete: tuple[str, ...]


_STATUSES = frozenset(s.value for s in Status)


def status_of(deploy: Mapping[str, Any]) -> str:
    """The status a Cortex deploy record holds; one made without one counts as succeeded."""
    custom = deploy.get("customData")
    status = custom.get("status") if isinstance(custom, dict) else None
    return status if isinstance(status, str) and status in _STATUSES else Status.SUCCEEDED.value


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


@dataclass(eq=False)
class Listing:
    """One entity's records in Cortex, indexed by key and, for records without one, by sha:
    ``Listing().add(deploys)``.

    Plain attributes a reader may test before asking more: ``keyed`` (the records of each key
    carried), ``keyless`` (records without a key, by environment and short sha), ``doubled``
    (some key is held more than once), ``shared`` (another face may record these deploys).
    Records with a key are also kept by environment and short sha, for the run match.
    """

    deploys: list[Mapping[str, Any]] = field(default_factory=list, init=False)
    keyed: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict, init=False)
    keyless: defaultdict[tuple[Any, str], list[Mapping[str, Any]]] = field(
        default_factory=functools.partial(defaultdict, list), init=False
    )
    doubled: bool = field(default=False, init=False)
    # Set by the history that read it: another face may record these deploys too, so the
    # core reads Cortex again after it creates one (see the module's docstring, 2).
    shared: bool = field(default=False, init=False)
    _matched: set[str] = field(default_factory=set, init=False)  # keyless records taken
    _keyed_shas: defaultdict[tuple[Any, str], list[Mapping[str, Any]]] = field(
        default_factory=functools.partial(defaultdict, list), init=False
    )
    # Records the run match gave a deploy: uuid -> the key of the deploy it was given to.
    _taken: dict[str, str] = field(default_factory=dict, init=False)

    def add(self, deploys: Iterable[Mapping[str, Any]]) -> Listing:
        """Keep records (read, or just made by this face); the listing itself."""
        for deploy in deploys:
            self.deploys.append(deploy)
            key, sha = key_of(deploy), deploy.get("sha")
            shas = self.keyless if key is None else self._keyed_shas
            if key is not None:
                records = self.keyed.setdefault(key, [])
                records.append(deploy)
                self.doubled = self.doubled or len(records) > 1
            if isinstance(sha, str) and len(sha.strip()) >= 7:
                shas[(deploy.get("environment"), _short(sha))].append(deploy)
        return self

    def drop(self, uuid: str) -> None:
        """Forget a record deleted in Cortex."""
        self.deploys = [d for d in self.deploys if d.get("uuid") != uuid]
        for key, records in list(self.keyed.items()):
            records[:] = [d for d in records if d.get("uuid") != uuid]
            if not records:
                del self.keyed[key]
        for records in self._keyed_shas.values():
            records[:] = [d for d in records if d.get("uuid") != uuid]
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
        oldest = records[0]
        custom = oldest.get("customData")
        started = _moment(custom.get("startedAt")) if isinstance(custom, dict) else None
        state = status_of(oldest)
        ended = _moment(oldest.get("timestamp")) if Status(state).is_final else None
        held = oldest.get("type")
        kind = next((t for t in DeployType if t.value == held), None)
        return Known(str(oldest["uuid"]), state, recorded_at(oldest), started, ended, kind)

    def history(self, environment: str | None, skip_key: str) -> list[PastDeploy]:
        """The deploys these records show the environment ran, whichever face or tool made
        them, leaving out the deploy ``skip_key`` names: what ``type_of`` judges from.

        As the relay's own history holds them: a record of a deploy that failed, was
        cancelled or has not finished (its customData.status) is none; one without a status
        (another tool's) is.
        """
        return [past for _, past in self.keyed_history(environment, skip_key)]

    def keyed_history(
        self, environment: str | None, skip_key: str
    ) -> list[tuple[str | None, PastDeploy]]:
        """:meth:`history`, each deploy with the idempotency key its record carries (None:
        another tool's record)."""
        found = []
        for deploy in self.deploys:
            sha = deploy.get("sha")
            if deploy.get("environment") != environment or not isinstance(sha, str):
                continue  # the other environments' records: no time to read
            stamp = _moment(deploy.get("timestamp"))
            key = key_of(deploy)
            if stamp and status_of(deploy) == Status.SUCCEEDED.value and key != skip_key:
                found.append((key, PastDeploy(sha, stamp)))
        return found

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

    def run_match(self, event: DeployEvent, entity: str) -> str | None:
        """The attempt of the run ``event`` came from (``event.run``) whose record on
        ``entity`` is this deploy's, or None: a record keyed by that run, any attempt, of the
        event's sha and environment, dated from an hour before the deploy's start (as another
        face may date it, :func:`dated_from`) to an hour after its end, not given to another
        deploy of the run.

        Of several (the run was re-run, and more than one attempt deployed), the one dated
        nearest the deploy, from its start to its end; then the oldest record: a re-run starts
        after the attempt before it ended, so where each attempt's deploy was recorded, each
        deploy is given its own. A record is given to one deploy only (asked again for the
        same deploy, the same).
        """
        if event.run is None or not event.sha:
            return None
        own = idempotency_key(event, entity)
        start, end = dated_from(event), event.timestamp
        near: list[tuple[timedelta, tuple[str, str], str, str]] = []
        for deploy in self._keyed_shas.get((event.environment, _short(event.sha)), []):
            uuid, key = str(deploy.get("uuid")), key_of(deploy)
            attempt = run_attempt(key, event, event.run, entity) if key is not None else None
            if attempt is None or self._taken.get(uuid, own) != own:
                continue
            when = _moment(deploy.get("timestamp"))
            if when is None or not same_sha(str(deploy.get("sha")), event.sha):
                continue
            off = max(start - when, when - end, timedelta(0))
            if off <= LOOKUP_WINDOW:
                near.append((off, _age(deploy), uuid, attempt))
        if not near:
            return None
        _, _, uuid, attempt = min(near)
        self._taken[uuid] = own
        return attempt

    def doubles(self, keys: Iterable[str] | None = None) -> list[Double]:
        """Every key (of ``keys``, or all) held more than once: keep the oldest, delete the rest."""
        wanted = self.keyed.keys() if keys is None else keys
        found = []
        for key in sorted(k for k in set(wanted) if len(self.keyed.get(k, ())) > 1):
            uuids = self.uuids(key)
            if len(uuids) > 1:
                found.append(Double(key, uuids[0], tuple(uuids[1:])))
        return found


# -- recording -------------------------------------------------------------------------------


class History(Protocol):
    """What the core reads and remembers of an entity's deploys (store or Cortex listing)."""

    def recall(
        self, entity: str, event: DeployEvent, key: str, *, past: bool
    ) -> tuple[Known | None, list[PastDeploy]]:
        """The record this face itself made for this deploy (idempotency ``key``), if any;
        and, when ``past`` is asked for, the entity's earlier deploys to the event's
        environment, whichever face recorded them, leaving out this deploy's own (else an
        empty list)."""

    def seen(self, entity: str, event: DeployEvent, *, fresh: bool) -> Listing:
        """Cortex's records of ``entity`` around ``event`` (read, or kept from a recent read;
        ``fresh``: read now, whatever is kept), ``shared`` when another face may record this
        entity's deploys too (the core checks after creating)."""

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Cortex now holds ``uuid`` for this deploy, with ``customData.status`` ``state``."""

    def forget(self, key: str) -> None:
        """Cortex no longer holds a record for this deploy."""


# Called right before each write to Cortex; raises to stop it (the relay's lease check).
Fence = Callable[[], None]


@dataclass(frozen=True)
class Done:
    """What recording one deploy on one entity did."""

    # created, updated, found, matched (another tool's record), deleted, skipped, planned
    action: str
    type: DeployType  # as judged, whether or not a record was written; found: as recorded
    uuid: str | None = None
    payload: dict[str, Any] | None = field(default=None, hash=False)
    reason: str = ""
    key: str = ""  # the deploy's idempotency key on the entity
    stamp: str = ""  # customData.bridge.recordedAt of the record written, '' if none
    # The later deploys' records typed again, as this one came before them (retype_later).
    retyped: tuple[str, ...] = ()


def type_of(event: DeployEvent, past: Sequence[PastDeploy]) -> DeployType:
    """The deploy's type: as the event says, else from the entity's earlier deploys to the
    event's environment (``past``: none when rollback detection is off or the event has no
    sha): ROLLBACK when its sha was deployed before and is not the latest deploy (nor one dated
    alike with it), else DEPLOY.

    The history is ordered by the deploys' own times, not by arrival, so an event that
    arrives late is judged against what had really happened before it.
    """
    if event.type is not None:
        return event.type
    return detected_types(past, [(event.sha or "", event.timestamp)])[0]


_TIME = operator.attrgetter("timestamp")


def detected_types(
    past: Sequence[PastDeploy], deploys: Sequence[tuple[str, datetime]]
) -> list[DeployType]:
    """The type rollback detection gives a deploy of each (sha, time) of ``deploys``, against
    ``past``: ROLLBACK where the sha is one of the deploys before that time and none of the
    latest of them (more than one where they are dated alike: which came last is not
    known, and every face holds them in an order of its own), else DEPLOY. One walk of the
    history in time order for all of them (a reconcile judges every record of an
    environment), not a sort of it per deploy."""
    history = sorted(past, key=_TIME)
    types = [DeployType.DEPLOY] * len(deploys)
    seen: set[str] = set()
    # The shas of 7 characters or more by their first 7: the ones an abbreviated sha, or one
    # an abbreviated sha of the history is of, may match (same_sha), compared one by one.
    by_start: defaultdict[str, set[str]] = defaultdict(set)
    latest: list[str] = []  # the shas of the latest deploys before, all of those tied in time
    latest_at: datetime | None = None
    at = 0
    for i in sorted(range(len(deploys)), key=lambda i: deploys[i][1]):
        sha, when = deploys[i]
        while at < len(history) and history[at].timestamp < when:
            deployed = history[at]
            if deployed.timestamp != latest_at:
                latest, latest_at = [], deployed.timestamp
            latest.append(deployed.sha.strip().lower())
            seen.add(latest[-1])
            if len(latest[-1]) >= 7:
                by_start[latest[-1][:7]].add(latest[-1])
            at += 1
        wanted = sha.strip().lower()
        if not wanted or not at or any(same_sha(s, wanted) for s in latest):
            continue
        if wanted in seen or any(same_sha(s, wanted) for s in by_start.get(wanted[:7], ())):
            types[i] = DeployType.ROLLBACK
    return types


def as_held(event: DeployEvent, entity: str, listing: Listing) -> DeployEvent:
    """``event`` as the record ``listing`` holds of it on ``entity`` names it.

    That is ``event`` itself, unless it names the run it came from but not the attempt
    (``event.run``: a GitHub deployment whose run was deleted, keyed by the deployment) and
    no record carries its own key: then, where a record made under that run is this deploy's
    (:meth:`Listing.run_match`), the event of that attempt, so that the record is found, or
    updated, as its own deploy's, never made a second time. Every face asks it before it
    looks for the deploy's key.
    """
    if event.run is None or idempotency_key(event, entity) in listing.keyed:
        return event
    attempt = listing.run_match(event, entity)
    if attempt is None:
        return event
    return replace(event, ref=DeployRef("run", f"{event.run}/{attempt}"))


def _as_held_in(event: DeployEvent, entity: str, history: History) -> DeployEvent:
    """:func:`as_held`, the listing read only for an event that names its run alone."""
    if event.run is None:
        return event
    return as_held(event, entity, history.seen(entity, event, fresh=False))


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def record_one(
    event: DeployEvent,
    entity: str,
    *,
    history: History,
    cortex: Cortex,
    policy: Policy,
    rollback: bool = True,
    fence: Fence | None = None,
    unclear: bool = False,
    dry_run: bool = False,
    clock: Callable[[], datetime] = _utc_now,
) -> Done:
    """Record ``event`` on ``entity`` once, whatever happened before; raises CortexError.

    A record this face did not make itself is looked for in Cortex first (by key, then the
    keyless match), by every face; after a create, when another face may record the same
    deploy, Cortex is read again and the newer of two records with the key is deleted.
    ``unclear``: an earlier attempt may have reached Cortex, so read afresh. ``fence`` runs
    right before each write; ``dry_run`` reads but never writes.
    """
    event = _as_held_in(event, entity, history)
    key = idempotency_key(event, entity)
    # What this face made itself, and the history the type is judged from (rollback
    # detection, on a sha): read first, since the history's first read (Cortex's listing)
    # may show a record of this deploy that another face made.
    wanted = rollback and event.type is None and bool(event.sha)
    known, past = history.recall(entity, event, key, past=wanted)
    deploy_type = type_of(event, past)
    body = build_deploy_request(event, entity, deploy_type, detected=wanted)
    known, match, listing = _look_first(
        known,
        event,
        entity,
        key,
        history=history,
        cortex=cortex,
        fence=fence,
        fresh=unclear,
        dry_run=dry_run,
    )
    if match is not None:
        reason = "a record without a key of the same sha, made by another tool"
        return Done("matched", type=deploy_type, uuid=match, payload=body, reason=reason, key=key)
    decision = decide(event.status, known, policy, event.timestamp)
    if decision.action is Action.SKIP:
        if known is not None and known.uuid and known.state == event.status.value:
            held = known.type or deploy_type  # as recorded: judged then, not now
            return Done("found", uuid=known.uuid, type=held, payload=body, key=key)
        if known is None and event.status.is_final and policy.lifecycle and not dry_run:
            # Ended, unrecorded, before its start came: a start that comes late makes none.
            history.remember(event, entity, key, "", state=event.status.value)
        return Done("skipped", type=deploy_type, reason=decision.reason, key=key)
    if dry_run:
        uuid = known.uuid if known else None
        return Done("planned", uuid=uuid, type=deploy_type, payload=body, key=key)
    if decision.action is Action.DELETE:
        read = listing if listing is not None else history.seen(entity, event, fresh=True)
        return _delete(
            event, entity, key, deploy_type, read, history=history, cortex=cortex, fence=fence
        )
    # A deploy that ended unrecorded, run again and ended so: its record is made now.
    known = None if decision.action is Action.CREATE else known
    # Every record says when it was first made, and an update keeps it, so that every face
    # tells the newer of two records with one key the same way.
    if known is None:
        # Always to the millisecond: stamps of one width order as text as they do in time
        # (format_timestamp leaves ".000" out, and "05.300Z" sorts before "05Z").
        stamp = clock().astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"
    else:  # an update: this face's own record may not have its stamp kept, nor its start
        known = _kept(event, entity, key, known, history)
        stamp = known.stamp
        body = _started(event, entity, deploy_type, known, detected=wanted) or body
    sent = _stamped(body, stamp) if stamp else body
    if known is not None:
        made, verb = _update(
            event, entity, key, known, sent, history=history, cortex=cortex, fence=fence
        )
    else:
        made = cortex.create_deploy(entity, sent, guard=fence)
        verb = "created"
    uuid = str(made["uuid"])
    history.remember(event, entity, key, uuid, state=event.status.value)
    kept = uuid
    if verb == "created" and listing is not None and listing.shared:
        kept = _converge(
            event, entity, key, uuid, stamp, history=history, cortex=cortex, fence=fence
        )
    # Only now a deploy that happened (created, or its start record ended so): where it came
    # after deploys that followed it, their detected types are judged again.
    was = known.state if known is not None else None
    retyped = _retype_after(
        event,
        entity,
        past if wanted and was != Status.SUCCEEDED.value else [],
        listing=listing,
        history=history,
        cortex=cortex,
        fence=fence,
    )
    if kept != uuid:
        history.remember(event, entity, key, kept, state=event.status.value)
        return Done("found", uuid=kept, type=deploy_type, payload=body, key=key, retyped=retyped)
    return Done(
        verb, uuid=uuid, type=deploy_type, payload=sent, key=key, stamp=stamp, retyped=retyped
    )


def _retype_after(
    event: DeployEvent,
    entity: str,
    past: Sequence[PastDeploy],
    *,
    listing: Listing | None,
    history: History,
    cortex: Cortex,
    fence: Fence | None,
) -> tuple[str, ...]:
    """After ``event``'s deploy is recorded as one that succeeded: where it came after deploys
    that followed it (``past``, the history its type was judged from: an outage's retries
    delivered out of order, a webhook lost and read by sync since, a lifecycle deploy whose
    start came after them), their detected types are judged again (:func:`retype_later`).
    Each record typed again is logged (the relay's log says why a type changed in Cortex); a
    failure too: the deploy is recorded, the later ones keep their types (until a reconcile
    or ``sync --repair``: :func:`retype_listing`); and never raised, since the caller would
    take the deploy for unrecorded (a sync releases the key it reserved then). The uuids of
    the records typed again."""
    if event.status is not Status.SUCCEEDED:
        return ()
    if not any(p.timestamp > event.timestamp for p in past):
        return ()
    try:
        read = listing if listing is not None else history.seen(entity, event, fresh=False)
        changed = retype_later(event, entity, past, listing=read, cortex=cortex, fence=fence)
    except BridgeError as exc:  # Cortex's error, or the fence's (a lease lost: no more writes)
        log.warning(
            "later deploys not typed again",
            extra={"entity": entity, "environment": event.environment, "error": str(exc)},
        )
        return ()
    if changed:
        log.info(
            "later deploys typed again",
            extra={"entity": entity, "environment": event.environment, "uuids": changed},
        )
    return tuple(changed)


def retype_later(
    event: DeployEvent,
    entity: str,
    past: Sequence[PastDeploy],
    *,
    listing: Listing,
    cortex: Cortex,
    fence: Fence | None = None,
) -> list[str]:
    """Type again the records of the environment's deploys later than ``event`` (just
    recorded, after them), where rollback detection typed them (``typeDetected``): the uuids
    of the records whose type changed.

    A deploy back to an earlier sha was recorded DEPLOY while the deploy it went back from was
    not known yet; once that one is recorded, the return is a ROLLBACK (and a deploy judged a
    ROLLBACK against what it no longer follows, a DEPLOY). Each record is judged as
    ``type_of`` judges any deploy, against ``past``, ``event`` (where it succeeded: a failed
    or unfinished deploy is in no history) and the later records that succeeded; a type the
    user gave, or another tool's record, is never touched.

    The records are those of ``listing`` (the one the face looked in), where it shows every
    later deploy ``past`` knows of as Cortex holds it; else (the relay's search was made before
    this batch's records, a sync's listing holds what it recorded as its key alone) one
    search of Cortex from the event on; and where a record's type is to change, the records
    are read then as Cortex holds them now, so that the update keeps what another face
    changed since the listing was read (a search, only then). Past what one search reads
    (CortexTooMany) nothing is changed. ``listing`` is kept as Cortex now holds the types.
    """
    later = [p for p in past if p.timestamp > event.timestamp]
    if not later:
        return []
    # The records as Cortex answered them: a face keeps the records it made itself in its
    # listing as their key, uuid and status alone (no type, no mark, no title to keep), so
    # where one of them is a later deploy, Cortex is searched.
    shown: list[Mapping[str, Any]] | None
    shown = [d for d in listing.deploys if d.get("environment") == event.environment and _whole(d)]
    times = {format_timestamp(when) for d in shown if (when := _moment(d.get("timestamp")))}
    read = any(format_timestamp(p.timestamp) not in times for p in later)
    if read:
        shown = _later_in_cortex(event, entity, past, cortex)
    retyped = _judged(event, entity, past, shown or [])
    if retyped and not read:
        # An update puts the whole record back as it was read: a listing read earlier (a
        # sync's, once per entity; the relay's, kept through a batch) may be older than what
        # another face changed since (an end recorded, a url added). Read as it is now.
        shown = _later_in_cortex(event, entity, past, cortex)
        retyped = _judged(event, entity, past, shown or [])
    return _typed(retyped, entity, listing, cortex, fence)


def _typed(
    retyped: Sequence[tuple[Mapping[str, Any], DeployType]],
    entity: str,
    listing: Listing,
    cortex: Cortex,
    fence: Fence | None,
) -> list[str]:
    """Update each record of ``retyped`` to its type (and ``listing``'s copy): the uuids of
    those updated, a record deleted meanwhile (404) left out."""
    changed = []
    for deploy, judged in retyped:
        uuid = str(deploy["uuid"])
        try:
            cortex.update_deploy(entity, uuid, _retyped(deploy, judged), guard=fence)
        except CortexRejected as exc:
            if exc.status != 404:
                raise
            continue  # deleted meanwhile (a double removed, a person): the others still are
        for kept in listing.deploys:  # as Cortex holds it now
            if kept.get("uuid") == uuid and isinstance(kept, dict) and "type" in kept:
                kept["type"] = judged.value
        changed.append(uuid)
    return changed


def misjudged(listing: Listing) -> list[tuple[Mapping[str, Any], DeployType]]:
    """The records of ``listing`` (every record of one entity) that rollback detection typed
    (``typeDetected``) and would type otherwise now, judged against their environment's
    history as the listing shows it, each with its type now: a retyping that failed (an
    outage's 429s, a lease lost), or a record deleted since. What :func:`retype_listing`
    updates, and a dry run reports."""
    found: list[tuple[Mapping[str, Any], DeployType]] = []
    for environment in {d.get("environment") for d in listing.deploys}:
        keyed = listing.keyed_history(environment, skip_key="")
        records = [
            (d, when)
            for d in listing.deploys
            if d.get("environment") == environment and (when := _detected_at(d))
        ]
        past = [p for _, p in keyed]
        judged = detected_types(past, [(d["sha"], when) for d, when in records])
        # A deploy's history leaves out its own key's records (record_one's), where one is
        # dated before it (two faces that dated it apart, before their double was removed).
        first: dict[str | None, datetime] = {}
        for key, p in keyed:
            first[key] = min(p.timestamp, first.get(key, p.timestamp))
        for (deploy, when), walked in zip(records, judged, strict=True):
            key = key_of(deploy)
            kind = walked
            if key is not None and first.get(key, when) < when:
                others = [p for k, p in keyed if k != key]
                kind = detected_types(others, [(deploy["sha"], when)])[0]
            if kind.value != deploy.get("type"):
                found.append((deploy, kind))
    return found


def retype_listing(
    listing: Listing,
    entity: str,
    cortex: Cortex,
    *,
    fresh: Callable[[], Listing],
    fence: Fence | None = None,
) -> list[tuple[str, str, DeployType]]:
    """Type again the records :func:`misjudged` finds in ``listing``: where there are any,
    ``fresh()`` reads the entity's records again first (an update puts the whole record back,
    so as Cortex holds it now) and they are judged again from that. Each record updated: its
    uuid, its type before and its type now."""
    if not misjudged(listing):
        return []
    listing = fresh()
    found = [(deploy, str(deploy.get("type")), kind) for deploy, kind in misjudged(listing)]
    changed = set(_typed([(d, kind) for d, _, kind in found], entity, listing, cortex, fence))
    return [(str(d["uuid"]), was, kind) for d, was, kind in found if str(d["uuid"]) in changed]


def _later_in_cortex(
    event: DeployEvent, entity: str, past: Sequence[PastDeploy], cortex: Cortex
) -> list[Mapping[str, Any]] | None:
    """The records of the environment's deploys from ``event`` to the newest of ``past``, as
    Cortex holds them now (one search); None past what one search reads."""
    newest = max(p.timestamp for p in past)
    try:
        found = cortex.search_deploys(
            entity,
            environment=event.environment,
            after=event.timestamp,
            before=newest + LOOKUP_WINDOW,
        )
        # Without an environment the search reads every one: its deploys are those without.
        return [d for d in found if d.get("environment") == event.environment]
    except CortexTooMany:
        return None


def _judged(
    event: DeployEvent,
    entity: str,
    past: Sequence[PastDeploy],
    shown: Sequence[Mapping[str, Any]],
) -> list[tuple[Mapping[str, Any], DeployType]]:
    """The records of ``shown`` later than ``event`` whose detected type ``type_of`` judges
    otherwise now, each with its type judged; not ``event``'s own on ``entity`` (another face
    may date the same deploy later: the Action at its step, a webhook at its run's end)."""
    own = idempotency_key(event, entity)
    later = [
        (d, when)
        for d in shown
        if (when := _detected_at(d)) and when > event.timestamp and key_of(d) != own
    ]
    known = list(past)
    if event.status is Status.SUCCEEDED:  # as every history counts deploys: those that did
        known.append(PastDeploy(str(event.sha), event.timestamp))
    known += [PastDeploy(d["sha"], when) for d, when in later if status_of(d) == "succeeded"]
    types = detected_types(known, [(d["sha"], when) for d, when in later])
    judged = zip(later, types, strict=True)
    return [(d, kind) for (d, _), kind in judged if kind.value != d.get("type")]


def _whole(deploy: Mapping[str, Any]) -> bool:
    """Whether ``deploy`` is a record as Cortex lists it (its type and title, which every
    record has), not what a face kept of a record it made (see :meth:`History.remember`)."""
    return "type" in deploy and "title" in deploy


# The types rollback detection gives.
_DETECTED_TYPES = (DeployType.DEPLOY.value, DeployType.ROLLBACK.value)


def _detected_at(deploy: Mapping[str, Any]) -> datetime | None:
    """The time of a record of a sha that rollback detection typed (``typeDetected``), or
    None for any other record (a type the user gave, another tool's record), and for one of
    a deploy that has not ended (a lifecycle's start record): its end types it again, as
    Cortex holds the history then, and may be recorded by another face at any moment (an
    update of the start as it was read would undo that end)."""
    custom = deploy.get("customData")
    bridge = custom.get("bridge") if isinstance(custom, dict) else None
    sha = deploy.get("sha")
    if not isinstance(bridge, dict) or bridge.get("typeDetected") is not True:
        return None
    if deploy.get("type") not in _DETECTED_TYPES:
        return None  # a person set another since (SCALE, RESTART): theirs stays
    if not Status(status_of(deploy)).is_final:
        return None
    if not isinstance(sha, str) or not sha:
        return None
    if not isinstance(deploy.get("uuid"), str) or not isinstance(deploy.get("title"), str):
        return None  # no record to update, or none an update could keep
    return _moment(deploy.get("timestamp"))


def _retyped(deploy: Mapping[str, Any], deploy_type: DeployType) -> dict[str, Any]:
    """The SaveDeployRequest that keeps Cortex's record ``deploy`` as it is but its type."""
    body: dict[str, Any] = {
        name: deploy[name]
        for name in ("title", "timestamp", "sha", "environment", "url", "customData")
        if deploy.get(name) is not None
    }
    body["type"] = deploy_type.value
    # Cortex lists the deployer as an object, and as the deprecated flat fields too: each
    # field from either, so that an object without one does not drop the flat one.
    given = deploy.get("deployer")
    given = given if isinstance(given, dict) else {}
    deployer = {}
    for name, flat in (("name", "deployerName"), ("email", "deployerEmail")):
        value = given.get(name)
        value = value if isinstance(value, str) else deploy.get(flat)
        if isinstance(value, str):
            deployer[name] = value
    if deployer:
        body["deployer"] = deployer
    return body


def _with_end(known: Known, event: DeployEvent, entity: str, key: str, history: History) -> Known:
    """``known``, with when its end came where ``event`` is another end of the deploy and that
    is not known (the relay keeps no time of an end): read from Cortex then, as it holds the
    record now. Rare: a deploy that failed and succeeded, with ``record.failures``."""
    if known.ended is not None or not event.status.is_final:
        return known
    if known.state == event.status.value or not Status(known.state).is_final:
        return known
    return history.seen(entity, event, fresh=True).known(key) or known


def _look_first(
    known: Known | None,
    event: DeployEvent,
    entity: str,
    key: str,
    *,
    history: History,
    cortex: Cortex,
    fence: Fence | None,
    fresh: bool,
    dry_run: bool,
) -> tuple[Known | None, str | None, Listing | None]:
    """The deploy's record: this face's own (``known``), else Cortex's by key (with when it
    was made); else the uuid of another tool's record without a key (the keyless match); and
    Cortex's listing looked in, if it was. ``known`` without a uuid (the deploy ended
    unrecorded) comes back as it was where Cortex holds no record of the deploy. The doubles
    the listing shows are removed on the way."""
    if known is not None and known.uuid:
        return _with_end(known, event, entity, key, history), None, None
    # No record of its own (or only that the deploy ended unrecorded): Cortex is looked in.
    listing = history.seen(entity, event, fresh=fresh)
    if listing.doubled and not dry_run:
        remove_doubles(listing, entity, cortex, fence=fence)
    found = listing.known(key) if key in listing.keyed else None
    if found is not None:
        history.remember(event, entity, key, found.uuid, state=found.state)
        return found, None, listing
    match = listing.keyless_match(event, LOOKUP_WINDOW) if listing.keyless else None
    return known, None if match is None else str(match.get("uuid")), listing


def _started(
    event: DeployEvent, entity: str, deploy_type: DeployType, known: Known, *, detected: bool
) -> dict[str, Any] | None:
    """The body of an update whose record knows an earlier start than its event says (Flux's
    end of a revision says none; a deployment's in_progress comes after its creation started
    it): with that start, and so its duration. A deploy starts once."""
    started = known.started
    if started is None or started > event.timestamp:
        return None
    if event.started_at is not None and event.started_at <= started:
        return None
    return build_deploy_request(
        replace(event, started_at=started), entity, deploy_type, detected=detected
    )


def _delete(
    event: DeployEvent,
    entity: str,
    key: str,
    deploy_type: DeployType,
    read: Listing,
    *,
    history: History,
    cortex: Cortex,
    fence: Fence | None,
) -> Done:
    """Delete the start record of a deploy that did not succeed, as Cortex holds it now (``read``:
    a listing just read): where another face has recorded the deploy's end meanwhile (the
    Action's step, before the job failed after it), the deploy happened, and its record stays."""
    now = read.known(key)
    if now is not None and Status(now.state).is_final:
        history.remember(event, entity, key, now.uuid, state=now.state)
        return Done(
            "skipped", type=deploy_type, reason=f"the deploy already ended {now.state}", key=key
        )
    if now is not None:
        cortex.delete_deploy(entity, now.uuid, guard=fence)
    # Known as ended, unrecorded: a start of it that comes late makes no record again.
    history.remember(event, entity, key, "", state=event.status.value)
    uuid = now.uuid if now is not None else None
    return Done("deleted", uuid=uuid, type=deploy_type, key=key)


def _stamped(body: dict[str, Any], stamp: str) -> dict[str, Any]:
    """``body`` saying when its record was first made (customData.bridge.recordedAt)."""
    custom = body["customData"]
    return {**body, "customData": {**custom, "bridge": {**custom["bridge"], "recordedAt": stamp}}}


def _update(
    event: DeployEvent,
    entity: str,
    key: str,
    known: Known,
    body: dict[str, Any],
    *,
    history: History,
    cortex: Cortex,
    fence: Fence | None,
) -> tuple[dict[str, Any], str]:
    """PUT the deploy's record: Cortex's answer, and "updated". Where Cortex no longer holds it
    (another face removed it as the newer of two records with the key, or a person deleted
    it), the record Cortex holds for the key now is updated instead, else one is created."""
    try:
        return cortex.update_deploy(entity, known.uuid, body, guard=fence), "updated"
    except CortexRejected as exc:
        if exc.status != 404:
            raise
    history.forget(key)
    kept = history.seen(entity, event, fresh=True).known(key)
    if kept is not None and kept.uuid != known.uuid:
        if kept.stamp:  # the record kept says when it was made: an update keeps that
            body = _stamped(body, kept.stamp)
        return cortex.update_deploy(entity, kept.uuid, body, guard=fence), "updated"
    return cortex.create_deploy(entity, body, guard=fence), "created"


def _kept(event: DeployEvent, entity: str, key: str, known: Known, history: History) -> Known:
    """``known`` with when its record was made, and when its deploy started where this face
    does not know it, as Cortex's listing shows them, where this face did not keep the stamp
    (a record another face, process or version made: its stamp and start stay)."""
    if known.stamp:
        return known
    found = history.seen(entity, event, fresh=False).known(key)
    if found is None:
        return known
    return replace(known, stamp=found.stamp, started=known.started or found.started)


def _converge(
    event: DeployEvent,
    entity: str,
    key: str,
    uuid: str,
    stamp: str,
    *,
    history: History,
    cortex: Cortex,
    fence: Fence | None,
) -> str:
    """Read Cortex again after a create; where two faces created at once, delete the newer
    record of the key. The uuid that stays."""
    after = history.seen(entity, event, fresh=True)
    if uuid not in after.uuids(key):  # the listing may not show a record this new yet
        mine = {"idempotencyKey": key, "recordedAt": stamp}
        after.add([{"uuid": uuid, "customData": {"bridge": mine}}])
    remove_doubles(after, entity, cortex, fence=fence, keys=[key])
    known = after.known(key)
    return known.uuid if known is not None else uuid


def remove_doubles(
    listing: Listing,
    entity: str,
    cortex: Cortex,
    *,
    fence: Fence | None = None,
    keys: Iterable[str] | None = None,
) -> list[Double]:
    """Delete the newer records of every key ``listing`` shows more than once (of ``keys``).

    Only records carrying the bridge's key are ever deleted; the oldest of each key stays.
    """
    doubles = listing.doubles(keys)
    for double in doubles:
        for uuid in double.delete:
            cortex.delete_deploy(entity, uuid, guard=fence)
            listing.drop(uuid)
    return doubles


def route_checked(
    config: Config, event: DeployEvent, spelled: Sequence[str] = ()
) -> tuple[Route, Checked]:
    """Where an event goes (``routes``) and the model's one check of it as routed: for every
    face that routes what it read (the webhook, ``sync``, the reconcile). ``spelled``: the
    face's secrets (:func:`bridge.redact.spellings`), which no field may hold.

    What cannot be stored is refused (InvalidDeploy) before what is not recorded is ignored
    (UnsupportedEvent): with no route, the event as it came is checked first. The reasons
    come in one order: what the payload itself named, the event's fields (as it came, when
    its route renames the environment), then the entities it is routed to.
    """
    # Here, not at the top: bridge.config loads PyYAML, which the Action's checkout may lack.
    from bridge.config import route

    limit = config.server.max_entities_per_event
    try:
        where = route(config, event)
    except UnsupportedEvent:
        check_deploy(event, event.entities, max_entities=limit, spelled=spelled)
        raise
    if where.environment != event.environment:  # the rare case that costs a second check
        check_deploy(event, event.entities, max_entities=limit, spelled=spelled)
    as_routed = replace(event, environment=where.environment)  # the environment renamed
    checked = check_deploy(
        as_routed, where.entities, max_entities=limit, named=event.entities, spelled=spelled
    )
    return where, checked
