"""A deploy recorded after deploys that followed it types them again (core.retype_later):
what it judges them by, what it sends, and what else it must leave as it is."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex, Fault
from bridge.fakecortex.schema import validate_save_deploy_request
from bridge.model import DeployEvent, DeployRef, DeployType, Status
from bridge.record.core import (
    Listing,
    Policy,
    _retyped,
    detected_types,
    misjudged,
    retype_later,
    retype_listing,
)
from bridge.record.retrying import record
from bridge.rollback import PastDeploy, same_sha
from bridge.store.store import LeaseLost
from bridge.sync.engine import EntityDeploys, Options, Reconciler, Row, SyncHistory, Verdict
from bridge.sync.reader import Found, Window
from bridge.times import format_timestamp
from tests.conftest import TOKEN

ENTITY = "payments-api"
A, B, C = "a" * 40, "b" * 40, "c" * 40
T0 = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)


def deploy(
    n: int,
    sha: str,
    *,
    status: Status = Status.SUCCEEDED,
    at: datetime | None = None,
    environment: str | None = "production",
) -> DeployEvent:
    """Deploy ``n`` (a day apart, unless ``at``) of ``sha``, as its webhook says it."""
    return DeployEvent(
        source="github",
        repository="acme/payments-api",
        event="deployment_status",
        ref=DeployRef("deployment", str(n)),
        status=status,
        timestamp=at or T0 + timedelta(days=n),
        title=f"deploy {n}",
        sha=sha,
        environment=environment,
    )


@pytest.fixture
def client(cortex: FakeCortex) -> Iterator[CortexClient]:
    made = CortexClient(cortex.url, TOKEN, timeout=5)
    yield made
    made.close()


def types(cortex: FakeCortex) -> list[tuple[str, str]]:
    """Each record's title and type, by time."""
    by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
    return [(d["title"], d["type"]) for d in by_time]


def test_a_failed_deploy_recorded_late_does_not_count_as_deployed(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # The history is of deploys that succeeded: delivered in order, the failed deploy between
    # them changes nothing, and delivered late it must not either.
    record(client, deploy(0, A), ENTITY)
    record(client, deploy(2, A), ENTITY)
    failed = record(client, deploy(1, B, status=Status.FAILED), ENTITY)  # record.failures
    assert failed.ok and failed.done == "created"
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "DEPLOY"]


LIFECYCLE = Policy(lifecycle=True, failures=False)


def _late_start(client: CortexClient) -> DeployEvent:
    """record.mode lifecycle: deploys 0 and 2 of A recorded, then deploy 1's start (of B),
    late: recorded as a start record; the start."""
    record(client, deploy(0, A), ENTITY, policy=LIFECYCLE)
    record(client, deploy(2, A), ENTITY, policy=LIFECYCLE)
    start = deploy(1, B, status=Status.IN_PROGRESS, at=T0 + timedelta(days=1))
    assert record(client, start, ENTITY, policy=LIFECYCLE).done == "created"
    return start


def test_a_late_start_that_fails_leaves_the_later_types_as_they_were(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # record.mode lifecycle: the start of a deploy delivered late is no deploy yet; it failed,
    # its record goes, and the deploy after it was never a return.
    start = _late_start(client)
    end = replace(start, status=Status.FAILED, timestamp=start.timestamp + timedelta(minutes=5))
    assert record(client, end, ENTITY, policy=LIFECYCLE).done == "deleted"
    assert types(cortex) == [("deploy 0", "DEPLOY"), ("deploy 2", "DEPLOY")]


def test_a_late_deploy_typed_again_when_its_end_comes(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # record.mode lifecycle: the late deploy's start made its record, its end updates it; it
    # is a deploy once it ended so, and then the return after it is a ROLLBACK.
    start = _late_start(client)
    end = replace(start, status=Status.SUCCEEDED, timestamp=start.timestamp + timedelta(minutes=5))
    assert record(client, end, ENTITY, policy=LIFECYCLE).done == "updated"
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK"]


def test_a_sync_types_again_the_later_deploys_it_recorded_itself(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # A sync records segment by segment (a reader's pages, GitLab's deployments then its
    # pipelines): a later segment may hold earlier deploys than one recorded before, and its
    # listing holds what the sync recorded as their keys alone.
    listings = EntityDeploys(client)
    for n, sha in ((2, A), (0, A), (1, B)):
        outcome = record(client, deploy(n, sha), ENTITY, history=SyncHistory(listings))
        assert outcome.done == "created"
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK"]


def test_a_record_changed_since_the_listing_was_read_keeps_its_change(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # A sync's listing is read once per entity; the relay updates a record meanwhile (its
    # webhook's url): the update that types it again must not put the old record back.
    record(client, deploy(0, A), ENTITY)
    record(client, deploy(2, A), ENTITY)
    listings = EntityDeploys(client)
    listings.listing(ENTITY)  # read now
    (later,) = [d for d in cortex.all_deploys() if d["title"] == "deploy 2"]
    body = {k: later[k] for k in ("title", "timestamp", "type", "sha", "environment")}
    url = "https://ci.example/run/2"
    client.update_deploy(ENTITY, later["uuid"], {**body, "url": url, **_custom(later)})
    record(client, deploy(1, B), ENTITY, history=SyncHistory(listings))
    (now,) = [d for d in cortex.all_deploys() if d["title"] == "deploy 2"]
    assert (now["type"], now.get("url")) == ("ROLLBACK", url)
    # The listing shows the type Cortex holds now.
    (kept,) = [d for d in listings.listing(ENTITY).deploys if d.get("title") == "deploy 2"]
    assert kept["type"] == "ROLLBACK"


def test_an_unchanged_type_costs_no_request(cortex: FakeCortex, client: CortexClient) -> None:
    # A sync's late deploy after the relay's: its listing serves the judgment, and where no
    # type changes nothing more is asked of Cortex.
    for n, sha in ((0, A), (2, B), (3, C)):
        record(client, deploy(n, sha), ENTITY)
    listings = EntityDeploys(client)
    listings.listing(ENTITY)
    asked = len(cortex.requests_to("GET"))
    record(client, deploy(1, A), ENTITY, history=SyncHistory(listings))
    assert len(cortex.requests_to("GET")) == asked
    assert len(cortex.requests_to("PUT")) == 0


def _custom(deploy: dict[str, object]) -> dict[str, object]:
    return {"customData": deploy["customData"]}


def test_a_search_without_an_environment_types_no_other_environments_records(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # Deploys without an environment are judged by each other; a search for them (None:
    # every environment) must not hand the judgment production's records.
    record(client, deploy(0, A), ENTITY)
    record(client, deploy(2, A), ENTITY)
    record(client, deploy(3, C, environment=None), ENTITY)
    late = deploy(1, B, environment=None)
    past = [PastDeploy(A, T0), PastDeploy(C, T0 + timedelta(days=3))]
    assert retype_later(late, ENTITY, past, listing=Listing(), cortex=client) == []
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "DEPLOY"]


def test_a_record_deleted_meanwhile_does_not_stop_the_others(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # Two later records to type again; Cortex no longer holds the first when it is updated (a
    # person deleted it, a 404): the second is typed still.
    for n, sha in ((0, A), (2, A), (3, B), (4, C)):
        record(client, deploy(n, sha), ENTITY)
    assert [t for _, t in types(cortex)] == ["DEPLOY"] * 4
    cortex.inject(Fault("status", status=404, method="PUT"))
    record(client, deploy(1, C), ENTITY)  # deploy 2 a return to A, deploy 4 to C
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "DEPLOY", "DEPLOY", "ROLLBACK"]


def test_the_deploys_own_record_dated_later_by_another_face_is_not_a_later_deploy(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # The webhook dates a deploy at its run's end, the Action at its step, half an hour
    # before: that record is this deploy's, not one that followed it.
    for n, sha in ((0, A), (1, B), (2, A), (3, C)):
        record(client, deploy(n, sha), ENTITY)
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK", "DEPLOY"]
    step = replace(deploy(2, A), timestamp=T0 + timedelta(days=2, minutes=-30))
    past = [PastDeploy(sha, T0 + timedelta(days=n)) for n, sha in ((0, A), (1, B), (3, C))]
    listing = Listing().add(client.iter_deploys(ENTITY))
    assert retype_later(step, ENTITY, past, listing=listing, cortex=client) == []
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK", "DEPLOY"]


def test_an_update_keeps_the_deployer_cortex_lists_either_way() -> None:
    listed = {
        "uuid": "0b6f3c3e-7d1a-4c55-9d1e-1f0f5a0c9a11",
        "title": "deploy 2",
        "timestamp": "2026-11-22T10:00:00Z",
        "type": "DEPLOY",
        "sha": A,
        "environment": "production",
        "url": None,
        "deployer": {"name": None, "email": "ana@acme.example"},
        "deployerName": "Ana",
        "deployerEmail": "ana@acme.example",
        "serviceId": 7,
        "id": 12,
        "customData": {"bridge": {"typeDetected": True}},
    }
    body = _retyped(listed, DeployType.ROLLBACK)
    assert validate_save_deploy_request(body) == []
    assert body["deployer"] == {"name": "Ana", "email": "ana@acme.example"}
    assert body["type"] == "ROLLBACK" and "url" not in body


def test_a_type_a_person_set_since_stays(cortex: FakeCortex, client: CortexClient) -> None:
    # The record still says its type was detected, but a person has made it RESTART since.
    record(client, deploy(0, A), ENTITY)
    record(client, deploy(2, A), ENTITY)
    (later,) = [d for d in cortex.all_deploys() if d["title"] == "deploy 2"]
    body = {k: later[k] for k in ("title", "timestamp", "sha", "environment")}
    client.update_deploy(ENTITY, later["uuid"], {**body, "type": "RESTART", **_custom(later)})
    record(client, deploy(1, B), ENTITY)
    assert types(cortex) == [
        ("deploy 0", "DEPLOY"),
        ("deploy 1", "DEPLOY"),
        ("deploy 2", "RESTART"),
    ]


def test_a_lease_lost_while_typing_again_leaves_the_deploy_recorded(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # The fence (the reconcile's lease) stops the update that types a later deploy again: the
    # deploy was created all the same, and the face is told so, not that nothing was written
    # (a sync then released the key it reserved, and another replica could record it again).
    record(client, deploy(0, A), ENTITY)
    record(client, deploy(2, A), ENTITY)
    writes = []

    def fence() -> None:
        writes.append(1)
        if len(writes) > 1:
            raise LeaseLost("another replica holds the lease")

    done = record(client, deploy(1, B), ENTITY, fence=fence)
    assert done.uuid is not None and len(cortex.all_deploys()) == 3
    assert types(cortex)[2] == ("deploy 2", "DEPLOY")  # not typed again: the lease was lost


def _judged_one_by_one(past: list[PastDeploy], sha: str, when: datetime) -> DeployType:
    """The rule as a sentence: ROLLBACK where ``sha`` was deployed before ``when`` and is
    none of the latest deploys before it (more than one where tied in time), shas matched
    as ``same_sha`` matches them."""
    earlier = sorted((p for p in past if p.timestamp < when), key=lambda p: p.timestamp)
    latest = [p for p in earlier if p.timestamp == earlier[-1].timestamp] if earlier else []
    if not sha or not earlier or any(same_sha(p.sha, sha) for p in latest):
        return DeployType.DEPLOY
    return DeployType.ROLLBACK if any(same_sha(p.sha, sha) for p in earlier) else DeployType.DEPLOY


@pytest.mark.parametrize("seed", range(40))
def test_one_walk_types_every_deploy_as_the_rule_types_each(seed: int) -> None:
    # The reconcile judges every record of an environment in one walk of its history
    # (detected_types); each type must be the one the rule gives the deploy alone: ties in
    # time, abbreviated and upper-case shas, deploys with no sha.
    rng = random.Random(seed)
    shas = [A, B, C, A[:7], B[:12].upper(), "", " " + C.upper()]
    past = [
        PastDeploy(rng.choice(shas), T0 + timedelta(hours=rng.randrange(12)))
        for _ in range(rng.randrange(15))
    ]
    deploys = [
        (rng.choice(shas), T0 + timedelta(hours=rng.randrange(13)))
        for _ in range(rng.randrange(1, 15))
    ]
    assert detected_types(past, deploys) == [_judged_one_by_one(past, s, w) for s, w in deploys]
    rng.shuffle(past)  # as another face holds the same history: the same types
    assert detected_types(past, deploys) == [_judged_one_by_one(past, s, w) for s, w in deploys]


def test_deploys_tied_in_time_type_a_later_deploy_alike_in_any_order() -> None:
    # Two deploys of one environment dated alike (GitLab's and GitHub's times are to the
    # second): which came last is not known, and the faces hold them in orders of their own
    # (the relay's store by key, Cortex's listing as Cortex lists it). Judged by that order,
    # the reconcile typed again what the relay typed, and back as its listing's order
    # changed: a return to either is no ROLLBACK, in any order.
    past = [PastDeploy(A, T0), PastDeploy(B, T0)]
    later = [(A, T0 + timedelta(hours=1)), (B, T0 + timedelta(hours=1))]
    assert detected_types(past, later) == [DeployType.DEPLOY] * 2
    assert detected_types(past[::-1], later) == [DeployType.DEPLOY] * 2
    records = [_listed(0, A, "DEPLOY"), _listed(0, B, "DEPLOY", key="k0b")]
    records[1]["uuid"] = "u0b"
    records.append(_listed(1, A, "DEPLOY"))
    assert misjudged(Listing().add(records)) == []
    assert misjudged(Listing().add([records[1], records[0], records[2]])) == []


def test_one_walk_is_linear_in_a_sha256_repositorys_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SHA-256 repositories' shas have 64 digits (bridge.sources.fields.FULL_SHA), another
    # tool's records may hold 7: the walk compared each deploy with every sha before it,
    # 51 s for an environment of 20,000 such records, at every reconcile.
    calls = []

    def counted(a: str, b: str) -> bool:
        calls.append(1)
        return same_sha(a, b)

    monkeypatch.setattr("bridge.record.core.same_sha", counted)
    rng = random.Random(7)
    shas = [f"{rng.getrandbits(256):064x}" for _ in range(2000)]
    shas[0] = shas[0][:7]  # one abbreviated sha, then 40-digit ones
    shas[1000:] = [s[:40] for s in shas[1000:]]
    past = [PastDeploy(s, T0 + timedelta(minutes=n)) for n, s in enumerate(shas)]
    deploys = [(p.sha, p.timestamp) for p in past] + [(shas[5], T0 + timedelta(days=9))]
    judged = detected_types(past, deploys)
    assert judged[-1] is DeployType.ROLLBACK and set(judged[:-1]) == {DeployType.DEPLOY}
    assert len(calls) < 10 * len(deploys)


class _Deploys:
    """A sync reader over deploys in memory."""

    name = "github:acme/payments-api"

    def __init__(self, events: list[DeployEvent]) -> None:
        self.events = events

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        for n, event in enumerate(self.events):
            yield Found(event, resume=str(n) if n == len(self.events) - 1 else None)


def _repair(client: CortexClient, events: list[DeployEvent], **given: Any) -> list[Row]:
    """``sync --repair`` over ``events`` (``dry_run``, and ``rollback`` for the config)."""
    detect = given.pop("rollback", True)
    config = parse_config({"cortex": {"url": client.base_url}, "rollback": {"detect": detect}})
    options = Options(repair=True, **given)
    engine = Reconciler(config, client, store=None, clock=lambda: T0, options=options)
    window = Window(T0 - timedelta(days=1), T0 + timedelta(days=9))
    return list(engine.sync(_Deploys(events), window))


def _retyping_lost(cortex: FakeCortex, client: CortexClient) -> list[DeployEvent]:
    """Deploys 0 and 2 of A, then 1 of B, late, whose retyping of deploy 2 was lost (its
    lease, as the fence's second write); the three deploys."""
    events = [deploy(0, A), deploy(2, A), deploy(1, B)]
    record(client, events[0], ENTITY)
    record(client, events[1], ENTITY)
    writes = []

    def fence() -> None:
        writes.append(1)
        if len(writes) > 1:
            raise LeaseLost("another replica holds the lease")

    record(client, events[2], ENTITY, fence=fence)
    assert types(cortex)[2] == ("deploy 2", "DEPLOY")  # left wrong
    return events


def test_sync_repair_types_again_what_a_lost_retyping_left(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # A retyping that failed (a lease lost, an outage's 429s past the budget) is logged, not
    # tried again: the reconcile (which repairs) and sync --repair put the type right.
    events = _retyping_lost(cortex, client)
    looked = _repair(client, events, dry_run=True)
    (said,) = [r for r in looked if r.verdict is Verdict.RETYPED]
    later = next(d for d in cortex.all_deploys() if d["title"] == "deploy 2")
    assert said.detail == f"would type {later['uuid']} ROLLBACK (is DEPLOY)"
    assert said.entity == ENTITY and len(cortex.requests_to("PUT")) == 0  # a dry run
    done = _repair(client, events)
    (row,) = [r for r in done if r.verdict is Verdict.RETYPED]
    assert row.detail == f"typed {later['uuid']} ROLLBACK (was DEPLOY)"
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
    (now,) = [d for d in cortex.all_deploys() if d["title"] == "deploy 2"]
    assert {k: v for k, v in now.items() if k != "type"} == {
        k: v for k, v in later.items() if k != "type"
    }  # only its type changed
    # Right now: a second repair has nothing to type, and asks nothing to.
    puts = len(cortex.requests_to("PUT"))
    assert not [r for r in _repair(client, events) if r.verdict is Verdict.RETYPED]
    assert len(cortex.requests_to("PUT")) == puts


def test_sync_repair_types_nothing_with_rollback_detection_off(
    cortex: FakeCortex, client: CortexClient
) -> None:
    events = _retyping_lost(cortex, client)
    done = _repair(client, events, rollback=False)
    assert not [r for r in done if r.verdict is Verdict.RETYPED]
    assert types(cortex)[2] == ("deploy 2", "DEPLOY")


def test_sync_repair_leaves_types_it_did_not_detect(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # A type a user gave, a person's RESTART since, another tool's record, one without the
    # mark: a repair judges none of them, however the history reads.
    given = replace(deploy(2, A), type=DeployType.DEPLOY)  # send --type DEPLOY
    events = [deploy(0, A), deploy(1, B), given, deploy(3, B), deploy(4, A)]
    for event in events:
        record(client, event, ENTITY)
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "DEPLOY", "ROLLBACK", "ROLLBACK"]
    fourth, fifth = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])[3:]
    body = {k: fourth[k] for k in ("title", "timestamp", "sha", "environment")}
    client.update_deploy(ENTITY, fourth["uuid"], {**body, "type": "RESTART", **_custom(fourth)})
    unmarked = dict(fifth["customData"]["bridge"])
    del unmarked["typeDetected"]  # made before records said so
    custom = {"customData": {**fifth["customData"], "bridge": unmarked}}
    body = {k: fifth[k] for k in ("title", "timestamp", "sha", "environment")}
    client.update_deploy(ENTITY, fifth["uuid"], {**body, "type": "DEPLOY", **custom})
    other = {"title": "their deploy", "timestamp": "2026-11-26T10:00:00Z", "type": "ROLLBACK"}
    client.create_deploy(ENTITY, {**other, "sha": C, "environment": "production"})
    done = _repair(client, events)
    assert not [r for r in done if r.verdict is Verdict.RETYPED]
    assert [t for _, t in types(cortex)] == [
        "DEPLOY",
        "DEPLOY",
        "DEPLOY",
        "RESTART",
        "DEPLOY",
        "ROLLBACK",
    ]


def test_sync_repair_types_again_after_a_late_deploy_given_its_type(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # A late deploy whose type was given (send --type DEPLOY) reads no history, so it types
    # nothing again itself: a repair judges the later records against it.
    events = [deploy(0, A), deploy(2, A), replace(deploy(1, B), type=DeployType.DEPLOY)]
    for event in events:
        record(client, event, ENTITY)
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "DEPLOY"]
    done = _repair(client, events)
    assert [r.verdict for r in done].count(Verdict.RETYPED) == 1
    assert [t for _, t in types(cortex)] == ["DEPLOY", "DEPLOY", "ROLLBACK"]


def _listed(n: int, sha: str, kind: str, *, key: str | None = None) -> dict[str, Any]:
    """A record as Cortex lists it: deploy ``n`` (a day apart) of ``sha``, typed ``kind`` by
    rollback detection, keyed ``key`` (deploy n's own by default)."""
    bridge = {"idempotencyKey": key or f"k{n}", "typeDetected": True}
    return {
        "uuid": f"u{n}",
        "title": f"deploy {n}",
        "timestamp": format_timestamp(T0 + timedelta(days=n)),
        "type": kind,
        "sha": sha,
        "environment": "production",
        "customData": {"status": "succeeded", "bridge": bridge},
    }


def test_a_records_own_key_dated_before_it_is_not_its_history() -> None:
    # Two records of one deploy, dated apart (the Action at its step, the webhook at its
    # run's end) before their double is removed: each is judged as record_one judges the
    # deploy, without its own key's records, so the later one is no DEPLOY of a sha just
    # deployed but a return to A.
    records = [
        _listed(0, A, "DEPLOY"),
        _listed(1, B, "DEPLOY"),
        _listed(2, A, "ROLLBACK", key="k2"),
        _listed(3, A, "ROLLBACK", key="k2"),
    ]
    assert misjudged(Listing().add(records)) == []
    records[3]["type"] = "DEPLOY"
    assert misjudged(Listing().add(records)) == [(records[3], DeployType.ROLLBACK)]


def test_a_repair_leaves_a_start_record_to_its_end(
    cortex: FakeCortex, client: CortexClient
) -> None:
    # record.mode lifecycle: a start record's type is judged again by its end, which another
    # face may record at any moment (the relay's webhook, the Action's step). A repair that
    # typed the start again put back the record as it read it: an end recorded between its
    # read and its update was undone, the deploy in progress again.
    record(client, deploy(0, A), ENTITY, policy=LIFECYCLE)
    start = deploy(2, A, status=Status.IN_PROGRESS)
    record(client, start, ENTITY, policy=LIFECYCLE)
    writes = []

    def fence() -> None:
        writes.append(1)
        if len(writes) > 1:
            raise LeaseLost("another replica holds the lease")

    record(client, deploy(1, B), ENTITY, policy=LIFECYCLE, fence=fence)  # its retyping lost
    assert types(cortex)[2] == ("deploy 2", "DEPLOY")
    read = Listing().add(client.iter_deploys(ENTITY))  # the repair's read
    end = replace(start, status=Status.SUCCEEDED, timestamp=start.timestamp + timedelta(hours=1))
    assert record(client, end, ENTITY, policy=LIFECYCLE).done == "updated"  # then the end
    retype_listing(read, ENTITY, client, fresh=lambda: read)
    (ended,) = [d for d in cortex.all_deploys() if d["title"] == "deploy 2"]
    assert ended["customData"]["status"] == "succeeded"
    assert ended["type"] == "ROLLBACK"  # as its end judged it
