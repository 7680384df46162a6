"""The core's reading of Cortex's records (bridge.record.core): pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from bridge.model import DeployEvent, DeployRef, Status
from bridge.record.core import Listing

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
