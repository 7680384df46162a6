"""The core's reading of Cortex's records (bridge.record.core): pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.mapping import run_attempt
from bridge.model import DeployEvent, DeployRef, Status
from bridge.record.core import Listing, as_held

AT = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"


def record(uuid: str, key: str | None, *, stamp: str | None = None, **fields: Any) -> dict:
    custom: dict[str, Any] = {"status": "succeeded"}
    if key is not None:
        custom["bridge"] = {"idempotencyKey": key, **({"recordedAt": stamp} if stamp else {})}
    return {"uuid": uuid, "customData": custom, **fields}


def event(**changes: Any) -> DeployEvent:
    base = DeployEvent(
        source="github",
        repository="acme/api",
        event="deployment_status",
        ref=DeployRef("deployment", "1"),
        status=Status.SUCCEEDED,
        timestamp=AT,
        title="t",
        sha=SHA,
        environment="production",
    )
    return DeployEvent(**{**base.__dict__, **changes})


def test_of_two_records_with_one_key_the_newer_goes_whichever_order_they_are_listed() -> None:
    older = record("b-uuid", "k", stamp="2026-11-23T12:00:01.000Z")
    newer = record("a-uuid", "k", stamp="2026-11-23T12:00:02.000Z")
    for listed in ([older, newer], [newer, older]):
        (double,) = Listing().add(listed).doubles()
        assert (double.keep, double.delete) == ("b-uuid", ("a-uuid",))


def test_records_without_the_key_are_never_doubles() -> None:
    listing = Listing().add(
        [record("1", None, sha=SHA), record("2", None, sha=SHA), record("3", "k")]
    )
    assert listing.doubles() == []
    assert listing.known("k") is not None and listing.known("k").uuid == "3"  # type: ignore[union-attr]


def test_a_keyless_record_matches_one_deploy_of_its_sha_and_environment_near_in_time() -> None:
    stamp = (AT + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    other = record("x", None, sha=SHA[:7], environment="production", timestamp=stamp)
    listing = Listing().add([other])
    window = timedelta(hours=1)
    assert listing.keyless_match(event(environment="staging"), window) is None
    assert listing.keyless_match(event(timestamp=AT + timedelta(hours=2)), window) is None
    assert listing.keyless_match(event(), window) == other
    assert listing.keyless_match(event(), window) is None  # taken by the first deploy


def test_a_dropped_record_is_forgotten() -> None:
    listing = Listing().add([record("1", "k", stamp="a"), record("2", "k", stamp="b")])
    listing.drop("2")
    assert listing.doubles() == [] and listing.uuids("k") == ["1"]


RUN_KEY = "github:acme/api:run:{}:production:{}"


def at(minutes: int) -> str:
    return (AT + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_key_names_an_attempt_of_a_run_only_where_it_is_that_runs_key_on_the_entity() -> None:
    gone = event(run="555", environment="eu:west")
    key = "github:acme/api:run:555/12:eu:west:api"
    assert run_attempt(key, gone, "555", "api") == "12"
    assert run_attempt(key, gone, "55", "api") is None
    assert run_attempt(key, gone, "555", "web") is None
    assert run_attempt(key.replace("555/12", "5555/1"), gone, "555", "api") is None
    assert run_attempt(key.replace("555/12", "555/x"), gone, "555", "api") is None
    assert run_attempt(key.replace("github", "gitlab"), gone, "555", "api") is None


def test_a_deploy_whose_run_is_gone_is_held_as_the_attempt_recorded_nearest_it() -> None:
    # Run 555 deployed at 12:00 (attempt 1) and, re-run, at 12:30 (attempt 2): each attempt
    # recorded; records of another run, entity, sha or environment are no match.
    listing = Listing().add(
        [
            record(
                "two",
                RUN_KEY.format("555/2", "api"),
                sha=SHA,
                environment="production",
                timestamp=at(29),
            ),
            record(
                "one",
                RUN_KEY.format("555/1", "api"),
                sha=SHA[:7],
                environment="production",
                timestamp=at(-1),
            ),
            record(
                "run",
                RUN_KEY.format("5555/1", "api"),
                sha=SHA,
                environment="production",
                timestamp=at(0),
            ),
            record(
                "web",
                RUN_KEY.format("555/3", "web"),
                sha=SHA,
                environment="production",
                timestamp=at(0),
            ),
            record(
                "sha",
                RUN_KEY.format("555/4", "api"),
                sha="f" * 40,
                environment="production",
                timestamp=at(0),
            ),
        ]
    )
    first = event(run="555", started_at=AT - timedelta(minutes=5))
    second = event(
        run="555",
        ref=DeployRef("deployment", "2"),
        timestamp=AT + timedelta(minutes=30),
        started_at=AT + timedelta(minutes=25),
    )
    assert as_held(first, "api", listing).ref == DeployRef("run", "555/1")
    assert as_held(first, "api", listing).ref == DeployRef("run", "555/1")  # asked again
    assert as_held(second, "api", listing).ref == DeployRef("run", "555/2")
    # A third deploy of the run finds no record left for it; one hours away, none near it.
    third = event(run="555", ref=DeployRef("deployment", "3"), started_at=AT)
    assert as_held(third, "api", listing) == third
    later = event(run="555", ref=DeployRef("deployment", "4"), timestamp=AT + timedelta(hours=3))
    assert as_held(later, "api", Listing().add(listing.deploys)) == later


def test_a_deploy_held_under_its_own_key_or_naming_no_run_stays_itself() -> None:
    mine = event(run="555")
    own = record(
        "own",
        "github:acme/api:deployment:1:production:api",
        sha=SHA,
        environment="production",
        timestamp=at(0),
    )
    run = record(
        "run", RUN_KEY.format("555/1", "api"), sha=SHA, environment="production", timestamp=at(0)
    )
    assert as_held(mine, "api", Listing().add([own, run])) == mine
    assert as_held(event(), "api", Listing().add([run])) == event()
