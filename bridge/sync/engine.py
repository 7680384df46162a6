"""The reconcile: each deploy a reader finds, routed as its webhook would be, compared with Cortex.

For every deploy and entity the verdict is one of :class:`Verdict`. Cortex's deploys of an
entity are read once per sync (the client's listing), not searched per deploy. What is missing
is recorded through :func:`bridge.action.recorder.record`, the path the Action and ``send`` take, so
the request, the key and rollback detection are theirs. Recording goes oldest first, segment
by segment between a reader's resume points, so that a redeploy of an older sha meets its
earlier deploy in the history; after each segment the resume point is saved.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bridge.action import recorder
from bridge.config import Config, route
from bridge.cortex import CortexClient
from bridge.delivery import LOOKUP_WINDOW, Action, Known, Policy, decide, made_by_bridge, routed
from bridge.errors import BridgeError, CortexError, UnsupportedEvent
from bridge.mapping import idempotency_key, key_of
from bridge.model import DeployEvent
from bridge.rollback import PastDeploy, past_deploys, same_sha
from bridge.store.sync_state import RUNNING
from bridge.sync.reader import Found, Reader, Window
from bridge.times import format_timestamp, parse_timestamp

if TYPE_CHECKING:
    from bridge.store import Store
    from bridge.store.sync_state import Progress


class Verdict(str, enum.Enum):
    """What the comparison found for one deploy and entity."""

    PRESENT = "present"  # Cortex holds it under its idempotency key
    MATCHED = "matched"  # a record without key, same sha, environment and time: another tool's
    DOUBLED = "doubled"  # Cortex holds its key more than once
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


class EntityDeploys:
    """One entity's deploys in Cortex, read once, kept current as the sync records more.

    It is the history :func:`bridge.action.recorder.record` reads (through :class:`SyncHistory`), so
    the recorder sees this sync's own records without reading the listing again.
    """

    def __init__(self, client: CortexClient) -> None:
        self.client = client
        self._deploys: dict[str, list[dict[str, Any]]] = {}
        # Indexes of the same records, so that comparing stays linear in an entity's deploys:
        # uuids by idempotency key, and records without a key by environment and short sha.
        self._records: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._keyless: dict[str, dict[tuple[str | None, str], list[dict[str, Any]]]] = {}
        self._matched: set[str] = set()  # uuids of keyless records already matched

    def deploys(self, entity: str) -> list[dict[str, Any]]:
        """Cortex's deploys of ``entity`` (read on first use)."""
        if entity not in self._deploys:
            self._deploys[entity] = []
            self._records[entity] = defaultdict(list)
            self._keyless[entity] = defaultdict(list)
            for deploy in self.client.iter_deploys(entity):
                self._keep(entity, deploy)
        return self._deploys[entity]

    def uuids(self, entity: str, key: str) -> list[str]:
        """The uuids of ``entity``'s records that carry idempotency ``key``."""
        self.deploys(entity)
        return [str(deploy.get("uuid")) for deploy in self._records[entity].get(key, [])]

    def known(self, entity: str, key: str) -> Known | None:
        """The record of ``entity`` that carries idempotency ``key`` (the first, if doubled)."""
        self.deploys(entity)
        found = self._records[entity].get(key)
        return made_by_bridge(found[:1]).get(key) if found else None

    def add(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep a record this sync made, as Cortex's listing will show it."""
        self.deploys(entity)
        self._keep(
            entity,
            {
                "uuid": uuid,
                "sha": event.sha,
                "environment": event.environment,
                "timestamp": format_timestamp(event.timestamp),
                "customData": {"status": state, "bridge": {"idempotencyKey": key}},
            },
        )

    def keyless_match(
        self, entity: str, event: DeployEvent, window: timedelta
    ) -> dict[str, Any] | None:
        """A record without a key of the same sha and environment, near in time, not yet taken."""
        if not event.sha:
            return None
        self.deploys(entity)
        for deploy in self._keyless[entity].get((event.environment, _short(event.sha)), []):
            uuid = str(deploy.get("uuid"))
            if uuid in self._matched or not same_sha(str(deploy.get("sha")), event.sha):
                continue
            when = _moment(deploy.get("timestamp"))
            if when is not None and abs(when - event.timestamp) <= window:
                self._matched.add(uuid)
                return deploy
        return None

    def forget(self) -> None:
        """Drop what was read (between readers: memory stays flat over an organisation)."""
        self._deploys.clear()
        self._records.clear()
        self._keyless.clear()
        self._matched.clear()

    def _keep(self, entity: str, deploy: dict[str, Any]) -> None:
        self._deploys[entity].append(deploy)
        key, sha = key_of(deploy), deploy.get("sha")
        if key is not None:
            self._records[entity][key].append(deploy)
        elif isinstance(sha, str) and len(sha.strip()) >= 7:
            self._keyless[entity][(deploy.get("environment"), _short(sha))].append(deploy)


class SyncHistory:
    """The core's history (bridge.delivery.History) over the listing a sync already read."""

    def __init__(self, deploys: EntityDeploys) -> None:
        self.deploys = deploys

    def known(self, entity: str, key: str) -> Known | None:
        """This deploy's record in the listing."""
        return self.deploys.known(entity, key)

    def past(self, entity: str, environment: str | None, key: str) -> list[PastDeploy]:
        """The environment's earlier deploys from the listing."""
        return past_deploys(self.deploys.deploys(entity), environment, skip_key=key)

    def remember(self, event: DeployEvent, entity: str, key: str, uuid: str, *, state: str) -> None:
        """Keep what was recorded in the listing, for the deploys compared after it."""
        self.deploys.add(event, entity, key, uuid, state=state)

    def forget(self, key: str) -> None:
        """Nothing to forget: a sync only creates."""


def _short(sha: str) -> str:
    """The part of a sha that an abbreviated one shares (git abbreviates to 7 at least)."""
    return sha.strip().lower()[:7]


def _moment(value: object) -> datetime | None:
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Options:
    """What a sync does beyond reading: the user's filters and whether it writes."""

    dry_run: bool = False
    environment: str | None = None  # only deploys routed to this environment
    limit: int | None = None  # stop after this many deploys found
    restart: bool = False  # ignore saved progress
    match_window: timedelta = LOOKUP_WINDOW


class Reconciler:
    """Compare readers' deploys with Cortex and record what is missing."""

    def __init__(
        self,
        config: Config,
        client: CortexClient,
        *,
        store: Store | None,
        clock: Callable[[], datetime],
        options: Options = Options(),
    ) -> None:
        self.config = config
        self.client = client
        self.cortex = EntityDeploys(client)
        self.store = store
        self.clock = clock
        self.options = options
        self.tally = Tally()

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
                self._finish(reader.name)
                return
            yield from self._flush(reader.name, pending)
        except BridgeError:
            # The source failed mid-page: what was found missing before is still missing.
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
        final = Policy(lifecycle=False, failures=self.config.record.failures)
        decision = decide(event.status, None, final)
        try:
            if decision.action is Action.SKIP:
                raise UnsupportedEvent(decision.reason)
            where = route(self.config, event)
        except UnsupportedEvent as exc:
            yield self._row(_row(name, event, Verdict.SKIPPED, exc.reason))
            return
        event = routed(event, where)
        if self.options.environment is not None and event.environment != self.options.environment:
            reason = f"environment {event.environment!r} is not --environment"
            yield self._row(_row(name, event, Verdict.SKIPPED, reason))
            return
        for entity in where.entities:
            try:
                verdict, detail = self._verdict(event, entity)
            except CortexError as exc:
                yield self._row(_row(name, event, Verdict.FAILED, str(exc), entity))
                continue
            if verdict is Verdict.MISSING and not self.options.dry_run:
                pending.append((event, entity))
                continue
            yield self._row(_row(name, event, verdict, detail, entity))

    def _verdict(self, event: DeployEvent, entity: str) -> tuple[Verdict, str]:
        key = idempotency_key(event, entity)
        uuids = self.cortex.uuids(entity, key)
        if len(uuids) > 1:
            return Verdict.DOUBLED, f"{len(uuids)} records with its key: {', '.join(uuids)}"
        if uuids:
            return Verdict.PRESENT, uuids[0]
        recorded = self.store.sync.recorded_uuid(key) if self.store is not None else None
        if recorded is not None:
            return Verdict.PRESENT, f"{recorded} (recorded by an earlier sync)"
        match = self.cortex.keyless_match(entity, event, self.options.match_window)
        if match is not None:
            return Verdict.MATCHED, f"{match.get('uuid')}: same sha, no key (made by another tool)"
        return Verdict.MISSING, "not in cortex"

    # -- recording --------------------------------------------------------------------------

    def _flush(self, name: str, pending: list[tuple[DeployEvent, str]]) -> Iterator[Row]:
        """Record the segment's missing deploys, oldest first."""
        pending.sort(key=lambda item: item[0].timestamp)
        for event, entity in pending:
            yield self._row(self._record(name, event, entity))
        pending.clear()

    def _record(self, name: str, event: DeployEvent, entity: str) -> Row:
        # Recorded as the Action records (its retry loop), with the listing already read as
        # the history.
        outcome = recorder.record(
            self.client,
            event,
            entity,
            history=SyncHistory(self.cortex),
            rollback=self.config.rollback.detect,
        )
        if outcome.error is not None:
            return _row(name, event, Verdict.FAILED, str(outcome.error), entity)
        uuid = outcome.uuid or ""
        if outcome.existing:
            return _row(name, event, Verdict.PRESENT, uuid, entity)
        if self.store is not None:
            key = idempotency_key(event, entity)
            self.store.sync.mark_recorded(key, reader=name, uuid=uuid, now=self.clock())
        return _row(name, event, Verdict.RECORDED, f"{uuid} ({outcome.type.value})", entity)

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
        if self.store is not None and not self.options.dry_run:
            self.store.sync.save_resume(name, resume, now=self.clock())

    def _finish(self, name: str) -> None:
        if self.store is not None and not self.options.dry_run:
            self.store.sync.finish_sync(name, now=self.clock())


def _row(
    name: str, event: DeployEvent, verdict: Verdict, detail: str, entity: str | None = None
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
    )


def grouped(rows: list[Row]) -> dict[Verdict, list[Row]]:
    """Rows by verdict (for tests and small reports)."""
    out: dict[Verdict, list[Row]] = defaultdict(list)
    for row in rows:
        out[row.verdict].append(row)
    return out
