"""The relay's reconcile: the ``sync`` engine every ``sync.interval_minutes``, one replica at once.

A webhook that never arrived (the relay was down, GitHub gave up after its 10 s timeout) is
recorded within one interval. Each run takes the ``reconcile`` lease in the database for one
interval; replicas that find it held skip their turn, and if the holder dies the lease lapses
and another takes over at its next turn. Runs look back ``sync.look_back_hours``, so a relay
that was down less than that catches up by itself.

A source is read within the bounds of :mod:`bridge.sync.fetch` (its origin only, answers
capped, tries and waits per request, pages per read; rate limits waited out only up to one
interval), and a source that fails or misbehaves is logged and skipped: the others are read.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge

from bridge.config import Config, SyncSettings
from bridge.cortex import CortexClient
from bridge.cortex.budget import Bucket as Budget
from bridge.cortex.budget import BudgetedCortex
from bridge.cortex.client import Cortex
from bridge.errors import BridgeError
from bridge.metrics import OTHER
from bridge.redact import masked, spellings
from bridge.secrets import held
from bridge.store import Store
from bridge.store.journal import ReconcileRun
from bridge.sync.engine import Options, Reconciler, Verdict
from bridge.sync.reader import Reader, Window
from bridge.sync.targets import Targets, make_readers, reading

log = logging.getLogger("bridge.reconcile")

LEASE = "reconcile"

MISSING = Counter(
    "bridge_reconcile_missing_total",
    "Deploys the periodic reconcile found missing from Cortex, by source.",
    ["source"],
)
RECORDED = Counter(
    "bridge_reconcile_recorded_total",
    "Deploys the periodic reconcile recorded in Cortex, by source.",
    ["source"],
)
# Rows of a deploy that was missing (or whose end was) and is no longer: counted missing and
# recorded alike, so that recorded well below missing still means Cortex refusing records.
_MADE = (Verdict.RECORDED, Verdict.FINISHED)
LAST_SUCCESS = Gauge(
    "bridge_reconcile_last_success_timestamp_seconds",
    "When the periodic reconcile last went through a source without error (Unix time).",
    ["source"],
    multiprocess_mode="max",
)


class LeaseLost(BridgeError):
    """Another replica runs the reconcile now: this one writes nothing more."""


class ReconcileLease:
    """This replica's turn at the reconcile, timed by the database's clock.

    Renewed at every page a reader gives and checked right before each write to Cortex, so
    a replica whose source reads slower than the interval keeps its turn as long as pages
    come, and one that lost it (stalled past it) stops before its next write.
    """

    def __init__(
        self, store: Store, *, owner: str, seconds: float, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.owner = owner
        self.seconds = seconds
        self.clock = clock

    def take(self) -> bool:
        """Take the turn (or renew it); False when another replica holds it."""
        return self.store.sync.take_lease(
            LEASE, owner=self.owner, now=self.clock(), seconds=self.seconds
        )

    def renew(self) -> None:
        """Hold the turn on; LeaseLost when another replica took it."""
        if not self.take():
            raise LeaseLost("reconcile lease lost to another replica")

    def check(self) -> None:
        """LeaseLost unless the turn is still held."""
        if not self.store.sync.holds(LEASE, owner=self.owner, now=self.clock()):
            raise LeaseLost("reconcile lease lost to another replica")


class Reconcile:
    """One process's share of the periodic reconcile."""

    def __init__(
        self,
        config: Config,
        store: Store,
        client: Cortex,
        environ: Mapping[str, str],
        *,
        owner: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.environ = environ
        self.owner = owner
        self.clock = clock
        # What the console's reconcile runs keep of an error is masked of every secret the
        # process holds, not only the failing reader's own token.
        tokens = [spec.token_env for spec in config.http_sources.values()]
        self._spelled = spellings(held(environ, database=config.database, token_envs=tokens))
        # Each entry's counters from the start, at 0: an alert on their increase() sees them
        # begin, and a dashboard shows the entry before it has found anything.
        for label in source_labels(config.sync):
            MISSING.labels(label)
            RECORDED.labels(label)
        # Per run: the labels of sources that went through, and of those that failed.
        self._passed: set[str] = set()
        self._failed: set[str] = set()

    def run_once(self) -> bool:
        """Reconcile every configured source, if this replica holds the lease; False if not."""
        settings = self.config.sync
        now = self.clock()
        lease = ReconcileLease(
            self.store, owner=self.owner, seconds=settings.interval_minutes * 60, clock=self.clock
        )
        if not lease.take():
            return False
        window = Window(now - timedelta(hours=settings.look_back_hours), now)
        targets = Targets.from_settings(settings)
        # One source's read, and any wait in it, ends within half the interval: a slow or
        # endless source holds neither the lease (renewed at each page) nor this thread past
        # it. The next turn comes.
        half = settings.interval_minutes * 60 / 2
        readers, apis = make_readers(
            targets, self.config, self.environ, max_wait=half, read_seconds=half
        )
        found: list[dict[str, Any]] = []
        reconciler = Reconciler(
            reading(self.config, targets),
            self.client,
            store=self.store,
            clock=self.clock,
            # Repair: the doubles its listings show go, as every face's reads remove them
            # (docs/delivery.md): a race the faces' own checks missed is swept here at last.
            options=Options(restart=True, repair=True),
            lease=lease,
            owner=self.owner,
            spelled=self._spelled,
        )
        self._passed.clear()
        self._failed.clear()
        try:
            for reader in readers():
                # Renewed before each source and at each page it gives (the engine), checked
                # before each write: a run longer than the interval keeps the lease, and a
                # replica that lost it stops before its next write.
                lease.renew()
                found.append(self._one(reconciler, reader, window))
        except LeaseLost:
            log.warning("reconcile lease lost to another replica; stopping this run")
        finally:
            for api in apis:
                api.close()
        # A glob's or group's entry went through when each of its sources did.
        for label in self._passed - self._failed:
            LAST_SUCCESS.labels(label).set(self.clock().timestamp())
        self._keep_run(now, window, found)
        return True

    def _keep_run(self, started: datetime, window: Window, found: list[dict[str, Any]]) -> None:
        """Keep what this run found in the store's journal (the console's reconcile runs)."""
        run = ReconcileRun(
            started_at=started,
            finished_at=self.clock(),
            owner=self.owner,
            since=window.since,
            until=window.until,
            sources=found,
        )
        try:
            self.store.journal.add_reconcile_run(run)
        except BridgeError as exc:
            log.warning("could not keep the reconcile run", extra={"error": str(exc)})

    def _one(self, reconciler: Reconciler, reader: Reader, window: Window) -> dict[str, Any]:
        name = reader.name
        label = source_label(name, self.config.sync)
        counts: collections.Counter[str] = collections.Counter()
        found: dict[str, Any] = {"source": name, "counts": counts, "error": None}
        try:
            for row in reconciler.sync(reader, window):
                counts[row.verdict.value] += 1
                # Missing: recorded, or known to be missing and not recorded. A deploy whose
                # look in Cortex failed (an outage) is not known to be missing.
                if row.verdict in _MADE or row.missing:
                    MISSING.labels(label).inc()
                if row.verdict in _MADE:
                    RECORDED.labels(label).inc()
                if row.verdict is Verdict.RECORDED:
                    log.info("reconcile recorded a missing deploy", extra=row.to_dict())
                elif row.verdict is Verdict.FINISHED:
                    log.info("reconcile finished a deploy's start record", extra=row.to_dict())
                elif row.verdict is Verdict.FAILED:
                    log.warning("reconcile could not record a deploy", extra=row.to_dict())
        except LeaseLost:
            raise
        except BridgeError as exc:
            log.warning("reconcile of a source failed", extra={"source": name, "error": str(exc)})
            found["error"] = masked(str(exc), self._spelled)
            self._failed.add(label)
            return found
        except Exception as exc:  # a source's bug, or its hostile answer, must not stop the others
            log.exception("reconcile of a source crashed", extra={"source": name})
            found["error"] = f"crashed: {type(exc).__name__}"
            self._failed.add(label)
            return found
        if counts[Verdict.FAILED.value]:
            # Not a run that went through the source: last_success stays where it was.
            found["error"] = f"{counts[Verdict.FAILED.value]} deploys failed; see the log"
            self._failed.add(label)
            return found
        self._passed.add(label)
        return found

    def loop(self, stop: threading.Event) -> None:
        """Run at once, then every interval, until ``stop`` is set; never raises."""
        while not stop.is_set():
            try:
                self.run_once()
            except BridgeError as exc:
                log.warning("reconcile failed", extra={"error": str(exc)})
            except Exception:  # a bug must not take the relay down with it
                log.exception("reconcile crashed")
            stop.wait(self.config.sync.interval_minutes * 60)


def source_label(name: str, settings: SyncSettings) -> str:
    """The metric label of a reader: the ``sync:`` entry that named it, else ``other``.

    A glob (``acme/*``) or a group lists what the SCM answers, however many that is; labelled
    by the entry, a source makes at most one series per entry it is configured with
    (``github:acme/*``, ``gitlab:acme-group``, ``github:acme/api``, ``http:spice``).
    """
    targets = Targets.from_settings(settings)
    kind, _, path = name.partition(":")
    entries: tuple[str, ...] = ()
    if kind == "github":
        # A name without a glob matches only itself (case-insensitive, as GitHub's names).
        entries = tuple(e for e in targets.github if fnmatchcase(path.casefold(), e.casefold()))
    elif kind == "gitlab":
        entries = tuple(p for p in targets.gitlab if p == path) + tuple(
            g for g in targets.gitlab_groups if path.startswith(g + "/")
        )
    elif kind == "http":
        entries = tuple(h for h in targets.http if h == path)
    elif kind == "argocd":  # its reader is named by the server's host and port
        entries = tuple(n for n in (urlsplit(u).netloc for u in targets.argocd) if n == path)
    return f"{kind}:{entries[0]}" if entries else OTHER


def source_labels(settings: SyncSettings) -> list[str]:
    """Every label :func:`source_label` can give the ``sync:`` entries (``other`` aside)."""
    targets = Targets.from_settings(settings)
    return [
        *(f"github:{e}" for e in targets.github),
        *(f"gitlab:{p}" for p in (*targets.gitlab, *targets.gitlab_groups)),
        *(f"http:{h}" for h in targets.http),
        *(f"argocd:{urlsplit(u).netloc}" for u in targets.argocd),
    ]


def check_reconcile(config: Config, environ: Mapping[str, str]) -> None:
    """UsageError naming the variable when ``sync:`` needs a token the environment lacks."""
    if config.sync.enabled:
        _, apis = make_readers(Targets.from_settings(config.sync), config, environ)
        for api in apis:
            api.close()


def start_reconcile(
    config: Config,
    store: Store,
    client: CortexClient,
    environ: Mapping[str, str],
    *,
    owner: str,
    clock: Callable[[], datetime],
    stop: threading.Event,
    budget: Budget | None = None,
) -> threading.Thread | None:
    """Start the reconcile loop in a daemon thread when ``sync:`` names sources; else None.

    Give it the process's shared Cortex ``budget`` (the one its delivery workers draw from)
    and a ``client`` of its own.
    """
    if not config.sync.enabled:
        return None
    check_reconcile(config, environ)
    cortex: Cortex = client if budget is None else BudgetedCortex(client, budget)
    reconcile = Reconcile(config, store, cortex, environ, owner=owner, clock=clock)
    thread = threading.Thread(
        target=reconcile.loop, args=(stop,), name="bridge-reconcile", daemon=True
    )
    thread.start()
    return thread
