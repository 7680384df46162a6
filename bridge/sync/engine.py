"""The reconcile: each deploy a reader finds, routed as its webhook would be, compared with Cortex.

For every deploy and entity the verdict is one of :class:`Verdict`. Cortex's deploys of an
entity are read once per sync (the client's listing), not searched per deploy. What is missing
is recorded through :func:`bridge.record.retrying.record`, the path the Action and ``send`` take, so
the request, the key and rollback detection are theirs. Recording goes oldest first, segment
by segment between a reader's resume points, so that a redeploy of an older sha meets its
earlier deploy in the history; after each segment the resume point is saved.
"""

from __future__ import annotations

import enum
import uuid as uuidlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bridge.config import Config
from bridge.cortex.client import Cortex
from bridge.errors import (
    BridgeError,
    CortexError,
    CortexUnauthorized,
    InvalidDeploy,
    UnsupportedEvent,
)
from bridge.mapping import idempotency_key
from bridge.model import DeployEvent, Status
from bridge.record import retrying as recorder
from bridge.record.core import (
    LOOKUP_WINDOW,
    Action,
    Known,
    Listing,
    Policy,
    as_held,
    decide,
    misjudged,
    remove_doubles,
    retype_listing,
    route_checked,
    status_of,
)
from bridge.rollback import PastDeploy
from bridge.store.sync_state import RUNNING
from bridge.sync.reader import Found, Reader, Window
from bridge.times import format_timestamp

if TYPE_CHECKING:
    from bridge.store import Store
    from bridge.store.sync_state import Progress


class Verdict(str, enum.Enum):
    """What the comparison found for one deploy and entity."""

    PRESENT = "present"  # Cortex holds it under its idempotency key
    MATCHED = "matched"  # a record without key, same sha, environment and time: another tool's
    DOUBLED = "doubled"  # Cortex holds its key more than once
    REPAIRED = "repaired"  # it did, and --repair deleted the newer records
    RETYPED = "retyped"  # --repair typed the record again: its detected type was wrong since
    FINISHED = "finished"  # Cortex held only its start: its end recorded (or the start deleted)
    MISSING = "missing"  # not in Cortex: would be recorded (dry run)
    RECORDED = "recorded"
    SKIPPED = "skipped"  # not a deploy to record, and why
    FAILED = "failed"  # Cortex refused or failed the record


@dataclass(frozen=True)
class Row:
    """One line of the report."""

    reader: str
    verdict: Verdict
    detail: str = ""
    repository: str = ""
    deploy: str = ""  # the source's ref: "deployment/123", "run/55/1", "job/9"
    environment: str | None = None
    entity: str | None = None
    sha: str | None = None
    finished: datetime | None = None
    # Cortex's listing showed the deploy missing (a FAILED row may not know: Cortex unread).
    missing: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "verdict": self.verdict.value,
            "reader": self.reader,
            "repository": self.repository,
            "deploy": self.deploy,
            "environment": self.environment,
            "entity": self.entity,
            "sha": self.sha,
            "finished": format_timestamp(self.finished) if self.finished else None,
            "detail": self.detail,
        }


@dataclass
class Tally:
    """Counts of a whole sync, for the summary, the exit code and the progress line."""

    verdicts: dict[Verdict, int] = field(default_factory=lambda: dict.fromkeys(Verdict, 0))
    deploys: int = 0  # deploys found (before entities)

    def add(self, row: Row) -> None:
        """Count one row."""
        self.verdicts[row.verdict] += 1


# Pages of an entity's records a sync reads at most (docs/limits.md): 100,000 records, in 100
# requests; an entity with more is reported failed, nothing recorded on it (a record past the
# bound would look missing).
SYNC_PAGES = 100


class EntityDeploys:
    """Each entity's deploys in Cortex, read once per sync, kept current as the sync records.

    It is the history the core reads (through :class:`SyncHistory`), so the core sees this
    sync's own records without reading the listing again; the match of a record without a
    key is the core's (bridge.record.core).
    """

    def __init__(self, client: Cortex) -> None:
        self.client = client
        self._listings: dict[str, Listing] = {}

    def listing(self, entity: str, *, fresh: bool = False) -> Listing:
        """Cortex's records of ``entity`` (read on first use, or again when ``fresh``)."""
        if fresh or entity not in self._listings:
            deploys = self.client.iter_deploys(entity, max_pages=SYNC_PAGES)
            self._listings[entity] = Listing().add(deploys)
        return self._listings[entity]

    def deploys(self, entity: str) -> list[dict[str, Any]]:
        """Cortex's deploys of ``entity``."""
        return [dict(d) for d in self.listing(entity).deploys]

    def uuids(self, entity: str, key: str) -> list[str]:
        """The uuids of ``entity``'s records that carry idempotency ``key``."""
        return self.listing(entity).uuids(key)

    def add(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep a record this sync made or updated, as Cortex's listing will show it; with no
        ``uuid``, the deploy's record was deleted (the start of a deploy that failed)."""
        listing = self.listing(entity)
        held = {str(d.get("uuid")): status_of(d) for d in listing.keyed.get(key, [])}
        if uuid and held.get(uuid) == state:
            return  # the listing shows it so already
        for old in held if not uuid else [uuid] if uuid in held else []:
            listing.drop(old)  # deleted; or updated, and shown again below
        if not uuid:
            return
        listing.add(
            [
                {
                    "uuid": uuid,
                    "sha": event.sha,
                    "environment": event.environment,
                    "timestamp": format_timestamp(event.timestamp),
                    "customData": {"status": state, "bridge": {"idempotencyKey": key}},
                }
            ]
        )

    def keyless_match(
        self, entity: str, event: DeployEvent, window: timedelta
    ) -> Mapping[str, Any] | None:
        """The core's keyless match in the entity's listing."""
        return self.listing(entity).keyless_match(event, window)

    def entities(self) -> list[str]:
        """The entities whose listing was read."""
        return sorted(self._listings)

    def forget(self) -> None:
        """Drop what was read (between readers: memory stays flat over an organisation)."""
        self._listings.clear()


class SyncHistory:
    """The core's history (bridge.record.core.History) over the listing a sync already read.

    With a ``store`` (the relay's database: the reconcile's, or ``sync``'s on
    BRIDGE_DATABASE_URL), a deploy recorded as succeeded joins the deploy history kept there
    too, as the relay's own deliveries do: the relay judges later deploys by that history and
    reads Cortex back only to its newest deploy, so a deploy recorded late, before that one,
    would otherwise never count there (a return to its sha a DEPLOY).
    """

    def __init__(self, deploys: EntityDeploys, store: Store | None = None) -> None:
        self.deploys = deploys
        self.store = store

    def recall(
        self, entity: str, event: DeployEvent, key: str, *, past: bool
    ) -> tuple[Known | None, list[PastDeploy]]:
        """Nothing of its own (the listing shows what any face made); the environment's
        earlier deploys from the listing, when asked for."""
        if not past:
            return None, []
        return None, Listing().add(self.deploys.deploys(entity)).history(event.environment, key)

    def seen(self, entity: str, event: DeployEvent, *, fresh: bool) -> Listing:
        """The entity's listing, read once per sync (again after an unclear try); not
        ``shared``: no check per create, the sync checks each segment's records at once after."""
        return self.deploys.listing(entity, fresh=fresh)

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep what was recorded in the listing, for the deploys compared after it; and a
        deploy that succeeded in the store's history, where it keeps the pair's."""
        self.deploys.add(event, entity, key, uuid, state=state)
        if self.store is not None and uuid and state == Status.SUCCEEDED.value and event.sha:
            self.store.records.add_to_kept_history(
                entity=entity,
                environment=event.environment,
                key=key,
                deploy=PastDeploy(event.sha, event.timestamp),
            )

    def forget(self, key: str) -> None:
        """Nothing to forget: a sync deletes only a start record, which ``remember`` (with no
        uuid) has dropped from the listing, and doubles, which the listing drops itself."""


class Lease(Protocol):
    """The periodic reconcile's hold on its turn (bridge/sync/periodic.py)."""

    def renew(self) -> None:
        """Hold the turn on; raise BridgeError when another replica has it now."""

    def check(self) -> None:
        """Raise BridgeError unless the turn is still held (right before each Cortex write)."""


@dataclass(frozen=True)
class Options:
    """What a sync does beyond reading: the user's filters and whether it writes."""

    dry_run: bool = False
    environment: str | None = None  # only deploys routed to this environment
    limit: int | None = None  # stop after this many deploys found
    restart: bool = False  # ignore saved progress
    match_window: timedelta = LOOKUP_WINDOW
    repair: bool = False  # delete the newer of records carrying one key (dry run: report)


class Reconciler:
    """Compare readers' deploys with Cortex and record what is missing."""

    def __init__(
        self,
        config: Config,
        client: Cortex,
        *,
        store: Store | None,
        clock: Callable[[], datetime],
        options: Options = Options(),
        lease: Lease | None = None,
        owner: str | None = None,
        spelled: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.client = client
        self.cortex = EntityDeploys(client)
        self.store = store
        self.clock = clock
        self.options = options
        self.lease = lease
        # What is recorded: finished deploys, the way record.mode final records them.
        self.policy = Policy(lifecycle=False, failures=config.record.failures)
        # Whether a deploy may have a start record to finish (record.mode lifecycle).
        self.starts = Policy.of(config.record).lifecycle
        # Run right before each write to Cortex: the reconcile's lease check (none for sync).
        self._fence = lease.check if lease is not None else None
        # Who reserves each missing deploy in the store before recording it.
        self.owner = owner or f"sync-{uuidlib.uuid4()}"
        self.tally = Tally()
        # The secrets this run holds (bridge.redact.spellings): a deploy a field of which
        # holds one (a source echoing its token) is skipped, never recorded.
        self.spelled = spelled
        self._notes: dict[str, str] = {}  # by key: what the validation shortened
        self._reported: set[tuple[str, str]] = set()  # (entity, key) doubles already shown

    def sync(self, reader: Reader, window: Window) -> Iterator[Row]:
        """Every row of one reader's window, recording as it goes (unless a dry run)."""
        saved = self.interrupted(reader.name)
        if saved is not None:
            window = Window(saved.since, saved.until)
        # Asked for before the progress row is made: a source that fails at once (a listing
        # that failed, bridge.sync.targets.Unlisted) leaves no run behind to continue.
        found_items = reader.read(window, resume=saved.resume if saved is not None else None)
        if saved is None:
            self._start(reader.name, window)
        pending: list[tuple[DeployEvent, str]] = []
        try:
            for found in found_items:
                if found.event is not None or found.skipped:
                    if self.limit_reached():
                        break
                    yield from self._compare(reader.name, found, pending)
                if found.resume is not None:
                    yield from self._flush(reader.name, pending)
                    self._save(reader.name, found.resume)
            else:
                yield from self._flush(reader.name, pending)
                yield from self._repair_rest(reader.name)
                self._finish(reader.name)
                return
            yield from self._flush(reader.name, pending)
        except Exception:
            # The source failed mid-page (or its reader did): what was found missing before is
            # still missing.
            yield from self._flush(reader.name, pending)
            raise
        finally:
            self.cortex.forget()

    def limit_reached(self) -> bool:
        """True once ``--limit`` deploys were found."""
        return self.options.limit is not None and self.tally.deploys >= self.options.limit

    # -- comparing --------------------------------------------------------------------------

    def _compare(
        self, name: str, found: Found, pending: list[tuple[DeployEvent, str]]
    ) -> Iterator[Row]:
        self.tally.deploys += 1
        event = found.event
        if event is None:
            yield self._row(Row(name, Verdict.SKIPPED, found.skipped))
            return
        # The history is of finished deploys: recorded the way record.mode final records them.
        decision = decide(event.status, None, self.policy)
        unrecorded = decision.reason if decision.action is Action.SKIP else None
        try:
            # A deploy that ended unrecorded (a failure, record.failures false) may still have
            # a start record (record.mode lifecycle, its end's webhook lost): looked for below.
            if unrecorded is not None and not (event.status.is_final and self.starts):
                raise UnsupportedEvent(unrecorded)
            # The model's one validation, as a webhook gets it: what an SCM or an http
            # source answered is checked like any payload, and skipped with its reason.
            where, checked = route_checked(self.config, event, self.spelled)
        except UnsupportedEvent as exc:
            yield self._row(_row(name, event, Verdict.SKIPPED, unrecorded or exc.reason))
            return
        except InvalidDeploy as exc:
            yield self._row(_row(name, event, Verdict.SKIPPED, unrecorded or str(exc)))
            return
        event = checked.event
        shortened = "; ".join(f"{field}: {text}" for field, text in checked.notes)
        if self.options.environment is not None and event.environment != self.options.environment:
            reason = f"environment {event.environment!r} is not --environment"
            yield self._row(_row(name, event, Verdict.SKIPPED, reason))
            return
        looked: list[tuple[str, Verdict, str]] = []
        for entity in where.entities:
            try:
                looked.append((entity, *self._verdict(event, entity, unrecorded)))
            except CortexUnauthorized:
                raise  # the token: every deploy would fail alike, so the run stops here
            except CortexError as exc:
                looked.append((entity, Verdict.FAILED, str(exc)))
        if unrecorded is not None and all(v is Verdict.SKIPPED for _, v, _ in looked):
            # No entity holds a start record of it: one row, not one per entity.
            yield self._row(_row(name, event, Verdict.SKIPPED, unrecorded))
            return
        for entity, verdict, detail in looked:
            if verdict in (Verdict.MISSING, Verdict.FINISHED) and not self.options.dry_run:
                pending.append((event, entity))
                if shortened:  # told in the row that records it
                    self._notes[idempotency_key(event, entity)] = shortened
                continue
            yield self._row(_row(name, event, verdict, detail, entity))

    def _verdict(
        self, event: DeployEvent, entity: str, unrecorded: str | None
    ) -> tuple[Verdict, str]:
        """What Cortex holds of the deploy on ``entity``; ``unrecorded``: why the deploy is
        not one to record (it failed), where it is not. A deploy whose run is gone is looked
        for as the record of it names it (the core's ``as_held``), and the row says so."""
        held = as_held(event, entity, self.cortex.listing(entity))
        key = idempotency_key(held, entity)
        uuids = self.cortex.uuids(entity, key)
        if len(uuids) > 1:
            if self.options.repair:
                return self._repair(entity, [key])[0]
            return Verdict.DOUBLED, f"{len(uuids)} records with its key: {', '.join(uuids)}"
        if uuids:
            verdict, detail = self._held(held, entity, key, uuids[0])
            if held.ref != event.ref and verdict is Verdict.PRESENT:
                detail += f" (recorded as {held.ref.kind}/{held.ref.id})"
            return verdict, detail
        if unrecorded is not None:
            return Verdict.SKIPPED, unrecorded
        recorded = self.store.sync.recorded_uuid(key) if self.store is not None else None
        if recorded is not None:
            return Verdict.PRESENT, f"{recorded} (recorded by an earlier sync)"
        match = self.cortex.keyless_match(entity, event, self.options.match_window)
        if match is not None:
            return Verdict.MATCHED, f"{match.get('uuid')}: same sha, no key (made by another tool)"
        return Verdict.MISSING, "not in cortex"

    def _held(self, event: DeployEvent, entity: str, key: str, uuid: str) -> tuple[Verdict, str]:
        """The deploy's one record: present, or only its start (``record.mode: lifecycle``,
        the end's webhook lost), which the core finishes as the end would have: its end
        recorded, or the start of a deploy that did not succeed deleted."""
        known = self.cortex.listing(entity).known(key)
        if known is None:
            return Verdict.PRESENT, uuid
        if decide(event.status, known, self.policy, event.timestamp).action is Action.SKIP:
            return Verdict.PRESENT, uuid
        if self.options.dry_run:
            return Verdict.MISSING, f"its end: only its start is recorded ({uuid}, {known.state})"
        return Verdict.FINISHED, uuid

    # -- repairing --------------------------------------------------------------------------

    def _repair(self, entity: str, keys: list[str] | None) -> list[tuple[Verdict, str]]:
        """Delete the newer records of each doubled key (of ``keys``, or all the listing shows);
        a dry run only says what it would delete. Only records with the bridge's key go."""
        listing = self.cortex.listing(entity)
        doubles = [d for d in listing.doubles(keys) if (entity, d.key) not in self._reported]
        self._reported.update((entity, d.key) for d in doubles)
        if self.options.dry_run:
            return [
                (Verdict.DOUBLED, f"would delete {', '.join(d.delete)}; {d.keep} stays")
                for d in doubles
            ]
        done = remove_doubles(
            listing, entity, self.client, fence=self._fence, keys=[d.key for d in doubles]
        )
        return [(Verdict.REPAIRED, f"deleted {', '.join(d.delete)}; {d.keep} stays") for d in done]

    def _repair_rest(self, name: str) -> Iterator[Row]:
        """With --repair, the doubles of every entity this reader listed, over its history;
        then the types rollback detection gave that it would not give now (a retyping that
        failed, a record deleted since)."""
        if not self.options.repair:
            return
        for entity in self.cortex.entities():
            try:
                found = self._repair(entity, None) + self._retype(entity)
            except CortexUnauthorized:
                raise  # the token: every deploy would fail alike, so the run stops here
            except CortexError as exc:
                yield self._row(Row(name, Verdict.FAILED, str(exc), entity=entity))
                continue
            for verdict, detail in found:
                yield self._row(Row(name, verdict, detail, entity=entity))

    def _retype(self, entity: str) -> list[tuple[Verdict, str]]:
        """The entity's records whose detected type is judged otherwise now, typed again (a
        dry run only says so); none with ``rollback.detect: false``."""
        if not self.config.rollback.detect:
            return []
        listing = self.cortex.listing(entity)
        if self.options.dry_run:
            return [
                (Verdict.RETYPED, f"would type {d.get('uuid')} {kind.value} (is {d.get('type')})")
                for d, kind in misjudged(listing)
            ]
        done = retype_listing(
            listing,
            entity,
            self.client,
            fresh=lambda: self.cortex.listing(entity, fresh=True),
            fence=self._fence,
        )
        return [
            (Verdict.RETYPED, f"typed {uuid} {now.value} (was {was})") for uuid, was, now in done
        ]

    # -- recording --------------------------------------------------------------------------

    def _flush(self, name: str, pending: list[tuple[DeployEvent, str]]) -> Iterator[Row]:
        """Record the segment's missing deploys, oldest first."""
        pending.sort(key=lambda item: item[0].timestamp)
        made: dict[str, list[str]] = defaultdict(list)
        for event, entity in pending:
            row = self._record(name, event, entity)
            if row.verdict is Verdict.RECORDED:
                made[entity].append(idempotency_key(event, entity))
            yield self._row(row)
        pending.clear()
        # Another face (the relay, from a webhook late by as long as this segment took) may
        # have recorded one of these meanwhile: each entity read again once, the newer goes.
        for entity, keys in made.items():
            try:
                remove_doubles(
                    self.cortex.listing(entity, fresh=True),
                    entity,
                    self.client,
                    fence=self._fence,
                    keys=keys,
                )
            except CortexUnauthorized:
                raise  # the token: every deploy would fail alike, so the run stops here
            except CortexError as exc:
                yield self._row(
                    Row(name, Verdict.FAILED, f"checking for doubles: {exc}", entity=entity)
                )

    def _record(self, name: str, event: DeployEvent, entity: str) -> Row:
        # Recorded through the core's retry loop, with the listing already read as the
        # history; the key reserved in the store first, so that two replicas' reconciles never
        # both record it; each write fenced by the reconcile's lease, when there is one.
        key = idempotency_key(event, entity)
        if self.store is not None:
            seconds = self.config.sync.interval_minutes * 60
            if not self.store.sync.reserve(
                key, owner=self.owner, now=self.clock(), seconds=seconds
            ):
                recorded = self.store.sync.recorded_uuid(key)
                if recorded is not None:
                    return _row(name, event, Verdict.PRESENT, f"{recorded} (another sync)", entity)
                # Reserved, not recorded: another sync is writing it, or one killed while it
                # wrote left the reservation, which lapses after sync.interval_minutes. Not in
                # Cortex's listing, so not "present": a run after that records it.
                why = (
                    "another sync holds its key (a reservation lapses after "
                    f"sync.interval_minutes, {self.config.sync.interval_minutes}); run again then"
                )
                return _row(name, event, Verdict.FAILED, why, entity, missing=True)
        try:
            outcome = recorder.record(
                self.client,
                event,
                entity,
                history=SyncHistory(self.cortex, self.store),
                rollback=self.config.rollback.detect,
                fence=self._fence,
                policy=self.policy,
            )
        except BridgeError:  # the lease lost: nothing written
            self._release(key)
            raise
        if isinstance(outcome.error, CortexUnauthorized):
            self._release(key)
            raise outcome.error  # the token: every deploy would fail alike
        return self._outcome_row(name, event, entity, key, outcome)

    def _outcome_row(
        self, name: str, event: DeployEvent, entity: str, key: str, outcome: recorder.Outcome
    ) -> Row:
        """The row of what the core did; the key kept as recorded where a record holds the
        deploy now, its reservation released where none was made."""
        uuid = outcome.uuid or ""
        if outcome.error is not None or outcome.existing or outcome.done in ("deleted", "skipped"):
            self._release(key)
        if outcome.error is not None:
            return _row(name, event, Verdict.FAILED, str(outcome.error), entity, missing=True)
        if outcome.existing:
            return _row(name, event, Verdict.PRESENT, uuid, entity)
        if outcome.done == "skipped":  # what was found on a try after an unclear one
            return _row(name, event, Verdict.SKIPPED, outcome.reason, entity)
        if outcome.done == "deleted":  # the start of a deploy that did not succeed
            why = f"deleted {uuid}: the start record of a deploy that ended {event.status.value}"
            return _row(name, event, Verdict.FINISHED, why, entity)
        if self.store is not None:
            self.store.sync.mark_recorded(key, reader=name, uuid=uuid, now=self.clock())
        verdict, detail = Verdict.RECORDED, f"{uuid} ({outcome.type.value})"
        if outcome.done == "updated":  # its start was recorded: now its end is
            verdict = Verdict.FINISHED
            detail = f"{uuid} ({outcome.type.value}): its end recorded, {event.status.value}"
        if key in self._notes:
            detail += f"; {self._notes.pop(key)}"
        return _row(name, event, verdict, detail, entity)

    def _release(self, key: str) -> None:
        if self.store is not None:
            self.store.sync.release(key, owner=self.owner)

    def _row(self, row: Row) -> Row:
        self.tally.add(row)
        return row

    # -- progress ---------------------------------------------------------------------------

    def interrupted(self, name: str) -> Progress | None:
        """The saved progress a sync of reader ``name`` continues, if any (not a dry run)."""
        if self.store is None or self.options.dry_run or self.options.restart:
            return None
        saved = self.store.sync.sync_progress(name)
        return saved if saved is not None and saved.state == RUNNING else None

    def _start(self, name: str, window: Window) -> None:
        """Note a new run of reader ``name`` over ``window`` (not a dry run)."""
        if self.store is not None and not self.options.dry_run:
            now = self.clock()
            self.store.sync.start_sync(name, since=window.since, until=window.until, now=now)

    def _save(self, name: str, resume: str) -> None:
        if self.lease is not None:
            self.lease.renew()  # a page read: the lease runs on from here
        if self.store is not None and not self.options.dry_run:
            self.store.sync.save_resume(name, resume, now=self.clock())

    def _finish(self, name: str) -> None:
        if self.store is not None and not self.options.dry_run:
            self.store.sync.finish_sync(name, now=self.clock())


def _row(
    name: str,
    event: DeployEvent,
    verdict: Verdict,
    detail: str,
    entity: str | None = None,
    *,
    missing: bool = False,
) -> Row:
    return Row(
        reader=name,
        verdict=verdict,
        detail=detail,
        repository=event.repository,
        deploy=f"{event.ref.kind}/{event.ref.id}",
        environment=event.environment,
        entity=entity,
        sha=event.sha,
        finished=event.timestamp,
        missing=missing,
    )


def grouped(rows: list[Row]) -> dict[Verdict, list[Row]]:
    """Rows by verdict (for tests and small reports)."""
    out: dict[Verdict, list[Row]] = defaultdict(list)
    for row in rows:
        out[row.verdict].append(row)
    return out
