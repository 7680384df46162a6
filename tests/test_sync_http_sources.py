"""`sync --source NAME` end to end: each seed platform's stand-in, the stand-in Cortex, the CLI.

The config file names the stand-in under ``http_sources`` with its preset, as a user would;
routing is the webhooks' (no route: the entity is named like the repository's last segment).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.fakecortex import FakeCortex
from bridge.mapping import key_of
from bridge.times import parse_timestamp
from tests.conftest import TOKEN
from tests.http_standins import PhasedApi, QoderApi, SpiceApi, StandIn

PLATFORM_TOKEN = "pat-e2e-5d1f9b"
SHA = "0123456789abcdef0123456789abcdef01234567"
WINDOW = ("--since", "2026-11-01", "--until", "2026-12-01")


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Platform:
    """One seed platform: its stand-in, its preset, and how to fill it."""

    preset: str
    make: Callable[[], StandIn]
    # Adds deploys: two that succeeded in the window, one that failed, one in progress, one
    # from October (outside the window); returns the ids of the two that succeeded.
    fill: Callable[[Any], list[str]]
    finished_key: str  # the item's field that holds the finish time (the recorded timestamp)
    sha: str | None  # the sha the succeeded deploys carry, where the platform has one


def fill_phased(api: PhasedApi) -> list[str]:
    api.add("dpl_001", "completed", at(3))
    api.add("dpl_002", "completed", at(5))
    api.add("dpl_003", "failed", at(6))
    api.add("dpl_004", "in_progress", at(7))
    api.add("dpl_000", "completed", datetime(2026, 10, 20, tzinfo=timezone.utc))
    return ["dpl_001", "dpl_002"]


def fill_qoder(api: QoderApi) -> list[str]:
    api.add("dep_001", at(3))
    api.add("dep_002", at(5), status="paused")
    api.add("dep_000", datetime(2026, 10, 20, tzinfo=timezone.utc))
    return ["dep_001", "dep_002"]


def fill_spice(api: SpiceApi) -> list[str]:
    api.add(1, "succeeded", datetime(2026, 10, 20, tzinfo=timezone.utc), sha=SHA)
    api.add(2, "succeeded", at(3), sha=SHA)
    api.add(3, "succeeded", at(5), sha=SHA)
    api.add(4, "failed", at(6), sha=SHA)
    api.add(5, "queued", at(7), sha=SHA)
    return ["2", "3"]


PLATFORMS = [
    pytest.param(
        Platform(
            "phased", lambda: PhasedApi(token=PLATFORM_TOKEN), fill_phased, "completedAt", None
        ),
        id="phased",
    ),
    pytest.param(
        Platform("qoder", lambda: QoderApi(token=PLATFORM_TOKEN), fill_qoder, "created_at", None),
        id="qoder",
    ),
    pytest.param(
        Platform("spice", lambda: SpiceApi(token=PLATFORM_TOKEN), fill_spice, "updated_at", SHA),
        id="spice",
    ),
]


@pytest.fixture(params=PLATFORMS)
def platform(request: pytest.FixtureRequest) -> Iterator[tuple[Platform, Any]]:
    """A running stand-in of one platform; fails the test if it saw a request it refused."""
    chosen: Platform = request.param
    with chosen.make() as stand_in:
        yield chosen, stand_in
        assert stand_in.violations == [], stand_in.violations


def write_config(tmp_path: Path, stand_in: Any, preset: str, extra: str = "") -> Path:
    """A config with one http source, ``ships``, on ``preset`` pointed at the stand-in."""
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "http_sources:\n"
        "  ships:\n"
        f"    preset: {preset}\n"
        f"    url: {stand_in.url}\n"
        "    token_env: SHIPS_TOKEN\n"
        "    repository: acme/ships-web\n"
        "    environment: production\n" + extra
    )
    return path


def environ_for(tmp_path: Path, cortex: FakeCortex, config: Path) -> dict[str, str]:
    return {
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "BRIDGE_CONFIG": str(config),
        "SHIPS_TOKEN": PLATFORM_TOKEN,
    }


def sync(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    """Run ``sync --source ships ... --output json``; the exit code and the JSON report."""
    code = main(["sync", "--source", "ships", *WINDOW, *args, "--output", "json"], environ)
    return code, json.loads(capsys.readouterr().out)


@dataclass(frozen=True)
class Filled:
    """A platform's stand-in, filled, and the environment of a sync of it."""

    platform: Platform
    stand_in: Any
    succeeded: list[str]
    environ: dict[str, str]


@pytest.fixture
def filled(tmp_path: Path, cortex: FakeCortex, platform: tuple[Platform, Any]) -> Filled:
    chosen, stand_in = platform
    succeeded = chosen.fill(stand_in)
    environ = environ_for(tmp_path, cortex, write_config(tmp_path, stand_in, chosen.preset))
    return Filled(chosen, stand_in, succeeded, environ)


def test_missing_deploys_are_recorded_once_and_a_second_sync_writes_nothing(
    cortex: FakeCortex, filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    chosen, stand_in, succeeded, environ = (
        filled.platform,
        filled.stand_in,
        filled.succeeded,
        filled.environ,
    )
    code, report = sync(environ, capsys)

    assert code == 0, report
    recorded = [r for r in report["deploys"] if r["verdict"] == "recorded"]
    assert sorted(r["deploy"] for r in recorded) == [f"deployment/{i}" for i in succeeded]
    stored = cortex.all_deploys()
    assert len(stored) == len(succeeded)
    items = {str(item["id"]): item for item in stand_in.deploys}
    for record in stored:
        ident = record["customData"]["bridge"]["idempotencyKey"].split(":")[3]
        item = items[ident]
        assert record["entity"] == "ships-web"  # no routes: the repository's last segment
        assert record["environment"] == "production"
        assert record["sha"] == chosen.sha if chosen.sha else "sha" not in record
        assert parse_timestamp(record["timestamp"]) == parse_timestamp(item[chosen.finished_key])
        assert key_of(record) == f"ships:acme/ships-web:deployment:{ident}:production:ships-web"

    posts = len(cortex.requests_to("POST"))
    code, report = sync(environ, capsys)
    assert code == 0
    assert len(cortex.requests_to("POST")) == posts  # nothing written the second time
    verdicts = [r["verdict"] for r in report["deploys"] if r["verdict"] != "skipped"]
    assert verdicts == ["present"] * len(succeeded)


def test_dry_run_exits_3_and_writes_nothing(
    cortex: FakeCortex, filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = sync(filled.environ, capsys, "--dry-run")

    assert code == 3
    assert report["summary"]["missing"] == len(filled.succeeded)
    assert cortex.requests_to("POST") == [] and cortex.all_deploys() == []


def test_the_progress_line_counts_the_sources_requests(
    cortex: FakeCortex, filled: Filled, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["sync", "--source", "ships", *WINDOW, "--dry-run"], filled.environ)
    assert code == 3
    err = capsys.readouterr().err
    made = len(filled.stand_in.received)
    assert made >= 1 and f"{made} page{'s' if made > 1 else ''} read" in err, err


def test_routes_match_an_http_source_by_name_and_by_repository(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    with SpiceApi(token=PLATFORM_TOKEN) as api:
        fill_spice(api)
        by_source = "routes:\n  - match: {source: ships}\n    entities: [ships-frontend]\n"
        environ = environ_for(tmp_path, cortex, write_config(tmp_path, api, "spice", by_source))
        assert sync(environ, capsys)[0] == 0
        by_repository = (
            "routes:\n  - match: {repository: 'acme/ships-*', environment: prod*}\n"
            "    entities: ['{owner}-{repo}']\n"
        )
        write_config(tmp_path, api, "spice", by_repository)
        assert sync(environ, capsys)[0] == 0
    entities = sorted(d["entity"] for d in cortex.all_deploys())
    assert entities == ["acme-ships-web"] * 2 + ["ships-frontend"] * 2


def test_an_unknown_source_name_is_one_line_exit_2(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    with SpiceApi(token=PLATFORM_TOKEN) as api:
        environ = environ_for(tmp_path, cortex, write_config(tmp_path, api, "spice"))
        code = main(["sync", "--source", "shipz"], environ)
        assert api.received == []
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == (
        "cortex-deploy-bridge: error: --source 'shipz': no such entry in http_sources "
        "(configured: ships)\n"
    )
    assert cortex.received == []


def test_an_unset_token_variable_is_one_line_naming_it(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    with SpiceApi(token=PLATFORM_TOKEN) as api:
        fill_spice(api)
        environ = environ_for(tmp_path, cortex, write_config(tmp_path, api, "spice"))
        del environ["SHIPS_TOKEN"]
        code = main(["sync", "--source", "ships", *WINDOW], environ)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "SHIPS_TOKEN" in err
    assert "is not set" in err and PLATFORM_TOKEN not in err
    assert cortex.received == []


def test_a_refused_token_fails_the_run_in_one_line_exit_1(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    with SpiceApi(token=PLATFORM_TOKEN) as api:
        fill_spice(api)
        environ = environ_for(tmp_path, cortex, write_config(tmp_path, api, "spice"))
        environ["SHIPS_TOKEN"] = "pat-wrong-77aa"
        code = main(["sync", "--source", "ships", *WINDOW], environ)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 1
    assert len(errors) == 1 and "SHIPS_TOKEN" in errors[0]
    assert "pat-wrong-77aa" not in err and PLATFORM_TOKEN not in err
    assert cortex.requests_to("POST") == []


def test_a_newest_first_list_is_recorded_oldest_first_so_a_rollback_is_one(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was recorded as listed, newest first: a redeploy of an older sha came out DEPLOY.
    other = "b" * 40
    with SpiceApi(token=PLATFORM_TOKEN) as api:
        api.add(1, "succeeded", at(3), sha=SHA)
        api.add(2, "succeeded", at(4), sha=other)
        api.add(3, "succeeded", at(5), sha=SHA)
        environ = environ_for(tmp_path, cortex, write_config(tmp_path, api, "spice"))
        code, report = sync(environ, capsys)
    assert code == 0, report
    stored = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
    assert [(d["sha"], d["type"]) for d in stored] == [
        (SHA, "DEPLOY"),
        (other, "DEPLOY"),
        (SHA, "ROLLBACK"),
    ]


def test_a_source_echoing_its_token_into_a_deploy_puts_none_in_cortex(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # A platform that echoes the request's token into a deploy's message: the report masked
    # it, but Cortex's record held it, for everyone who reads the catalog.
    with SpiceApi(token=PLATFORM_TOKEN) as api:
        api.add(2, "succeeded", at(3), sha=SHA)
        api.add(3, "succeeded", at(5), sha=SHA)
        api.deploys[0]["commit_message"] = f"Deploy with {PLATFORM_TOKEN}"
        api.deploys[0]["created_by"] = f"dana {PLATFORM_TOKEN}"
        environ = environ_for(tmp_path, cortex, write_config(tmp_path, api, "spice"))
        code, report = sync(environ, capsys)
    assert code == 0, report
    assert PLATFORM_TOKEN not in json.dumps(cortex.all_deploys())
    assert [d["title"] for d in sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])] == [
        "Deploy with ***",
        "Deploy 3",
    ]
    (echoed,) = [row for row in report["deploys"] if "masked" in (row.get("detail") or "")]
    assert "title" in echoed["detail"] and "deployer name" in echoed["detail"]
    assert PLATFORM_TOKEN not in json.dumps(report)
