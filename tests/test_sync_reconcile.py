"""The relay's periodic reconcile, and a sync SIGKILLed and run again."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.errors import ConfigError
from bridge.fakecortex import FakeCortex, Fault
from bridge.fakescm import FakeGitHub
from bridge.mapping import key_of
from bridge.store import Store
from bridge.store.schema import sync_leases
from bridge.sync import periodic
from bridge.times import format_timestamp
from tests.conftest import TOKEN, wait_until
from tests.http_standins import SpiceApi
from tests.test_sync import GH_TOKEN, SHA_A

NOW = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A stand-in GitHub with the org ``acme``: api (one deploy, no webhook ever sent), web."""
    with FakeGitHub(token=GH_TOKEN) as fake:
        fake.add_repo("acme/api", org="acme")
        fake.add_repo("acme/web", org="acme")
        fake.add_repo("other/thing", org="acme-other")
        fake.add_deployment(
            "acme/api",
            301,
            sha=SHA_A,
            environment="production",
            created_at="2026-11-10T09:00:00Z",
            states=[("SUCCESS", "2026-11-10T09:04:00Z")],
        )
        yield fake
        assert fake.violations == []


def reconcile_for(db_url: str, github: FakeGitHub, cortex: FakeCortex, owner: str):
    """A Reconcile of ``acme/*`` over the last 48 hours, as serve/worker make it."""
    config = parse_config(
        {"database": db_url, "sync": {"github": ["acme/*"], "look_back_hours": 48}},
        environ={"CORTEX_API_URL": cortex.url},
    )
    store = Store.from_url(db_url)
    client = CortexClient(cortex.url, TOKEN)
    environ = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": github.api_url}
    return periodic.Reconcile(config, store, client, environ, owner=owner, clock=lambda: NOW)


def test_the_reconcile_records_a_deploy_whose_webhook_never_came_one_replica_at_a_time(
    db_url: str, github: FakeGitHub, cortex: FakeCortex
) -> None:
    first = reconcile_for(db_url, github, cortex, "replica-1")
    second = reconcile_for(db_url, github, cortex, "replica-2")
    # Labelled by the sync: entry that listed the repository (a glob here), not by the
    # repository: a listing of any length makes one series (tests/test_metric_labels.py).
    recorded = periodic.RECORDED.labels("github:acme/*")
    before = recorded._value.get()
    try:
        assert first.run_once() is True
        assert second.run_once() is False  # the lease is held for the interval
        [stored] = cortex.all_deploys()
        assert (stored["entity"], stored["sha"]) == ("api", SHA_A)
        assert key_of(stored) == "github:acme/api:deployment:301:production:api"
        assert recorded._value.get() == before + 1
        assert periodic.LAST_SUCCESS.labels("github:acme/*")._value.get() == NOW.timestamp()
        # The next turn of the holder finds it present: nothing written again.
        posts = len(cortex.requests_to("POST"))
        assert first.run_once() is True
        assert len(cortex.requests_to("POST")) == posts
        # Once the lease lapses (the holder died), another replica takes over. The lease is
        # timed by the database's clock on PostgreSQL (this replica's on SQLite): both move.
        second.clock = lambda: NOW + timedelta(minutes=16)
        with second.store.sync.db.transaction(write=True) as conn:
            conn.execute(sync_leases.update().values(lease_until=NOW - timedelta(minutes=1)))
        assert second.run_once() is True
        # Each run that held the lease is kept, with what it found (the console's page).
        runs = first.store.journal.reconcile_runs()
        assert [run.owner for run in runs] == ["replica-2", "replica-1", "replica-1"]
        oldest = runs[-1]
        assert (oldest.since, oldest.until) == (NOW - timedelta(hours=48), NOW)
        assert oldest.sources == [
            {"source": "github:acme/api", "counts": {"recorded": 1}, "error": None},
            {"source": "github:acme/web", "counts": {}, "error": None},
        ]
        assert runs[1].sources[0]["counts"] == {"present": 1}
    finally:
        for one in (first, second):
            one.store.close()
            one.client.close()


def test_the_reconcile_removes_the_doubles_its_listings_show(
    db_url: str, github: FakeGitHub, cortex: FakeCortex
) -> None:
    """Two faces raced past each other's checks and both recorded a deploy: the reconcile's
    reading of the entity deletes the newer record of the key, as every face's reads do."""
    reconcile = reconcile_for(db_url, github, cortex, "replica-1")
    try:
        assert reconcile.run_once() is True
        [first] = cortex.all_deploys()
        body = {k: v for k, v in first.items() if k not in ("uuid", "entity")}
        bridge = dict(body["customData"]["bridge"], recordedAt="2099-01-01T00:00:00Z")
        body["customData"] = dict(body["customData"], bridge=bridge)  # made later: the newer
        reconcile.client.create_deploy("api", body)
        assert len(cortex.all_deploys()) == 2
        reconcile.clock = lambda: NOW + timedelta(minutes=16)
        with reconcile.store.sync.db.transaction(write=True) as conn:
            conn.execute(sync_leases.update().values(lease_until=NOW - timedelta(minutes=1)))
        assert reconcile.run_once() is True
        [kept] = cortex.all_deploys()
        assert kept["uuid"] == first["uuid"]
        runs = reconcile.store.journal.reconcile_runs()
        api = next(s for s in runs[0].sources if s["source"] == "github:acme/api")
        assert api["counts"] == {"repaired": 1}
    finally:
        reconcile.store.close()
        reconcile.client.close()


def test_a_cortex_outage_is_neither_missing_deploys_nor_a_success(
    db_url: str, github: FakeGitHub, cortex: FakeCortex
) -> None:
    """Cortex down: the reconcile cannot tell what it holds. Nothing counts as missing (the
    alert on it says webhooks are lost), and the source's last success stays where it was."""
    reconcile = reconcile_for(db_url, github, cortex, "replica-1")
    missing = periodic.MISSING.labels("github:acme/*")
    last = periodic.LAST_SUCCESS.labels("github:acme/*")
    last.set(0)
    before = missing._value.get()
    cortex.inject(*[Fault("status", status=503) for _ in range(200)])
    try:
        assert reconcile.run_once() is True
        assert cortex.all_deploys() == []
        assert missing._value.get() == before
        assert last._value.get() == 0
        (run,) = reconcile.store.journal.reconcile_runs()
        api = next(s for s in run.sources if s["source"] == "github:acme/api")
        assert api["counts"] == {"failed": 1} and "1 deploys failed" in api["error"]
    finally:
        reconcile.store.close()
        reconcile.client.close()


def test_the_reconcile_loop_runs_in_its_thread_until_stopped(
    tmp_path: Path, github: FakeGitHub, cortex: FakeCortex
) -> None:
    one = reconcile_for(f"sqlite:///{tmp_path / 'bridge.db'}", github, cortex, "replica-1")
    stop = threading.Event()
    thread = periodic.start_reconcile(
        one.config, one.store, one.client, one.environ, owner="r", clock=lambda: NOW, stop=stop
    )
    try:
        assert thread is not None
        wait_until(lambda: len(cortex.all_deploys()) == 1)
    finally:
        stop.set()
        assert thread is not None
        thread.join(timeout=5)
        one.store.close()
        one.client.close()
    assert not thread.is_alive()


def test_no_sync_section_starts_nothing(tmp_path: Path, cortex: FakeCortex) -> None:
    config = parse_config(None)
    store = Store.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        started = periodic.start_reconcile(
            config,
            store,
            CortexClient(cortex.url, TOKEN),
            {},
            owner="r",
            clock=lambda: NOW,
            stop=threading.Event(),
        )
        assert started is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param({"interval_minutes": 0}, "sync.interval_minutes", id="interval"),
        pytest.param({"look_back_hours": "soon"}, "sync.look_back_hours", id="look-back"),
        pytest.param({"github": ["acme"]}, "sync.github[0]", id="github-no-repo"),
        pytest.param({"github": "acme/api"}, "sync.github", id="github-not-a-list"),
        pytest.param({"gitlab": [""]}, "sync.gitlab[0]", id="gitlab-empty"),
        pytest.param({"repos": []}, "sync.repos", id="unknown-key"),
        pytest.param({"http": ["ships"]}, "sync.http[0]", id="http-not-configured"),
        pytest.param({"http": [""]}, "sync.http[0]", id="http-empty"),
    ],
)
def test_a_bad_sync_section_names_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sync": section})
    assert caught.value.key == key


def test_sync_section_defaults() -> None:
    settings = parse_config({"sync": {"gitlab": ["acme-group", "acme/web"]}}).sync
    assert (settings.interval_minutes, settings.look_back_hours) == (15.0, 48.0)
    assert settings.enabled and settings.gitlab == ("acme-group", "acme/web")
    assert not parse_config(None).sync.enabled


@pytest.mark.slow
def test_a_sync_killed_mid_run_continues_where_it_stopped_and_records_nothing_twice(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    with FakeGitHub(token=GH_TOKEN) as github:
        for n in range(250):  # three GraphQL pages: 100, 100, 50
            day, hour = 1 + n // 24, n % 24
            github.add_deployment(
                "acme/api",
                1000 + n,
                sha=f"{n:040x}",
                environment="production",
                created_at=f"2026-11-{day:02d}T{hour:02d}:00:00Z",
                states=[("SUCCESS", f"2026-11-{day:02d}T{hour:02d}:05:00Z")],
            )
        # Read oldest page first: 50 (after "200"), then 100 (after "100"), then the newest
        # 100. The second page's query hangs: the process is killed there.
        github.hold_after = "100"
        config = tmp_path / "bridge.yaml"
        config.write_text("cortex: {requests_per_minute: 0}\n")  # no budget waits here
        environ = {
            **os.environ,
            "CORTEX_API_TOKEN": TOKEN,
            "CORTEX_API_URL": cortex.url,
            "GITHUB_TOKEN": GH_TOKEN,
            "GITHUB_API_URL": github.api_url,
            "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
            "BRIDGE_CONFIG": str(config),
        }
        argv = [sys.executable, "-c", "from bridge.cli import run; run()", "sync"]
        argv += ["--github", "acme/api", "--since", "2026-11-01", "--until", "2026-12-01"]
        first = subprocess.Popen(
            argv, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            assert github.holding.wait(60), "the sync never reached the second page"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
            github.release.set()
        assert len(cortex.all_deploys()) == 50
        github.hold_after = None
        before = len(github.requests)
        second = subprocess.run(
            argv, env=environ, capture_output=True, text=True, timeout=120, check=False
        )
        assert second.returncode == 0, second.stderr
        # The rerun read only the pages not done yet, from the saved point.
        resumed = [
            r.body["variables"]["after"]
            for r in github.requests[before:]
            if r.path == "/graphql" and "latestStatus" in r.body["query"]
        ]
        assert resumed == ["100", None]
    keys = Counter(key_of(d) for d in cortex.all_deploys())
    assert len(keys) == 250  # nothing lost
    assert max(keys.values()) == 1  # nothing doubled


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_the_relay_refuses_to_start_when_the_sync_section_lacks_its_token(
    tmp_path: Path, cortex: FakeCortex, command: str
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'b.db'}\nsync: {{gitlab: [acme]}}\n")
    environ = {
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
        "GITHUB_WEBHOOK_SECRET": "s",
        "GITLAB_WEBHOOK_TOKEN": "t",
    }
    # A process of its own: serve makes its process cooperative (gevent) before it starts.
    script = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
    done = subprocess.run(
        [script, command, "--config", str(config)],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert "GITLAB_API_TOKEN is not set" in err and len(err.splitlines()) == 1


def test_check_config_describes_the_reconcile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("sync: {interval_minutes: 10, github: ['acme/*'], gitlab: [acme-group]}\n")
    assert main(["check-config", "--config", str(config)], {}) == 0
    out = capsys.readouterr().out
    assert "sync: every 10 min, the last 48 h of github acme/*, gitlab acme-group" in out


@pytest.mark.slow
@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_running_relay_reconciles_a_deploy_whose_webhook_never_came(
    tmp_path: Path, cortex: FakeCortex, command: str
) -> None:
    finished = datetime.now(timezone.utc) - timedelta(hours=1)
    with FakeGitHub(token=GH_TOKEN) as github:
        github.add_deployment(
            "acme/api",
            401,
            sha=SHA_A,
            environment="production",
            created_at=format_timestamp(finished - timedelta(minutes=5)),
            states=[("SUCCESS", format_timestamp(finished))],
        )
        config = tmp_path / "bridge.yaml"
        config.write_text("sync: {github: [acme/api], interval_minutes: 60, look_back_hours: 2}\n")
        environ = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "CORTEX_API_TOKEN": TOKEN,
            "CORTEX_API_URL": cortex.url,
            "GITHUB_TOKEN": GH_TOKEN,
            "GITHUB_API_URL": github.api_url,
            "GITHUB_WEBHOOK_SECRET": "s",
            "GITLAB_WEBHOOK_TOKEN": "t",
            "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'relay.db'}",
        }
        script = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
        argv = [script, command, "--config", str(config)]
        if command == "serve":
            argv += ["--bind", "127.0.0.1:0", "--workers", "1"]
        relay = subprocess.Popen(
            argv,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_until(lambda: len(cortex.all_deploys()) == 1, timeout=60)
        finally:
            os.killpg(relay.pid, signal.SIGTERM)
            relay.wait(timeout=30)
    [stored] = cortex.all_deploys()
    assert key_of(stored) == "github:acme/api:deployment:401:production:api"


SHIPS_TOKEN = "pat-reconcile-3e8a1c"


def http_reconcile_for(db_url: str, api: SpiceApi, cortex: FakeCortex, environ: dict[str, str]):
    """A Reconcile of the http source ``ships`` (the spice preset) over the last 48 hours."""
    config = parse_config(
        {
            "database": db_url,
            "sync": {"http": ["ships"], "look_back_hours": 48},
            "http_sources": {
                "ships": {
                    "preset": "spice",
                    "url": api.url,
                    "token_env": "SHIPS_TOKEN",
                    "repository": "acme/ships-web",
                    "environment": "production",
                }
            },
        },
        environ={"CORTEX_API_URL": cortex.url},
    )
    store = Store.from_url(db_url)
    client = CortexClient(cortex.url, TOKEN)
    return periodic.Reconcile(config, store, client, environ, owner="r1", clock=lambda: NOW)


def test_the_reconcile_records_a_missing_deploy_of_an_http_source(
    db_url: str, cortex: FakeCortex
) -> None:
    with SpiceApi(token=SHIPS_TOKEN) as api:
        api.add(7, "succeeded", NOW - timedelta(hours=3), sha=SHA_A)
        api.add(6, "succeeded", NOW - timedelta(days=5), sha=SHA_A)  # before the look-back
        one = http_reconcile_for(db_url, api, cortex, {"SHIPS_TOKEN": SHIPS_TOKEN})
        recorded = periodic.RECORDED.labels("http:ships")
        before = recorded._value.get()
        try:
            assert one.run_once() is True
            [stored] = cortex.all_deploys()
            assert (stored["entity"], stored["sha"]) == ("ships-web", SHA_A)
            assert key_of(stored) == "ships:acme/ships-web:deployment:7:production:ships-web"
            assert recorded._value.get() == before + 1
            assert periodic.LAST_SUCCESS.labels("http:ships")._value.get() == NOW.timestamp()
            posts = len(cortex.requests_to("POST"))
            one.clock = lambda: NOW + timedelta(minutes=16)  # the next turn
            assert one.run_once() is True
            assert len(cortex.requests_to("POST")) == posts
        finally:
            one.store.close()
            one.client.close()
        assert api.violations == []


def test_the_relay_refuses_to_start_when_an_http_source_lacks_its_token(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'b.db'}\n"
        "sync: {http: [ships]}\n"
        "http_sources:\n"
        "  ships: {preset: spice, url: 'http://127.0.0.1:9/v1/apps/1/deployments',\n"
        "          token_env: SHIPS_TOKEN, repository: acme/ships-web}\n"
    )
    environ = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    assert main(["worker", "--config", str(config)], environ) == 2
    err = capsys.readouterr().err.strip()
    assert "SHIPS_TOKEN: is not set" in err and len(err.splitlines()) == 1


def test_a_sources_error_kept_for_the_console_is_masked_of_every_held_secret(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    # Only the failing reader's own token was masked: the others it echoed were kept.
    from types import SimpleNamespace

    from bridge.errors import BridgeError

    db_url = f"sqlite:///{tmp_path / 'b.db'}?password=db-SECRET"
    config = parse_config({"sync": {"github": ["acme/*"]}}, environ={"CORTEX_API_URL": cortex.url})
    config = dataclasses.replace(config, database=db_url)
    environ = {
        "GITHUB_TOKEN": GH_TOKEN,
        "BRIDGE_ADMIN_TOKEN": "adm-SECRET",
        "GITLAB_API_TOKEN": "glpat-SECRET",
        "ARGOCD_AUTH_TOKEN": "argo-SECRET",
    }
    store = Store.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    client = CortexClient(cortex.url, TOKEN)
    reconcile = periodic.Reconcile(config, store, client, environ, owner="r", clock=lambda: NOW)
    said = "seen adm-SECRET glpat-SECRET argo-SECRET db-SECRET https://bob:pw@db.example/x"

    class Failing:
        def sync(self, reader: object, window: object) -> object:
            raise BridgeError(said)

    try:
        found = reconcile._one(Failing(), SimpleNamespace(name="github:acme/api"), None)  # type: ignore[arg-type]
    finally:
        store.close()
        client.close()
    assert "SECRET" not in found["error"] and "pw@" not in found["error"]
    assert found["error"].startswith("seen ***")


def test_the_reconcile_types_again_a_record_a_failed_retyping_left(
    db_url: str, github: FakeGitHub, cortex: FakeCortex
) -> None:
    """A late deploy's retyping of the deploys after it failed (an outage's 429s, a lease
    lost): the reconcile, which repairs as it reads, judges the type again at its next turn."""
    sha_b = "b" * 40
    github.add_deployment(
        "acme/api",
        302,
        sha=sha_b,
        environment="production",
        created_at="2026-11-10T10:00:00Z",
        states=[("SUCCESS", "2026-11-10T10:04:00Z")],
    )
    github.add_deployment(
        "acme/api",
        303,
        sha=SHA_A,
        environment="production",
        created_at="2026-11-10T11:00:00Z",
        states=[("SUCCESS", "2026-11-10T11:04:00Z")],
    )
    reconcile = reconcile_for(db_url, github, cortex, "replica-1")
    try:
        assert reconcile.run_once() is True
        by_time = sorted(cortex.all_deploys(), key=lambda d: d["timestamp"])
        assert [d["type"] for d in by_time] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
        # The return to A left DEPLOY, as a retyping that failed leaves it.
        back = by_time[2]
        body = {k: back[k] for k in ("title", "timestamp", "sha", "environment", "customData")}
        reconcile.client.update_deploy("api", back["uuid"], {**body, "type": "DEPLOY"})
        reconcile.clock = lambda: NOW + timedelta(minutes=16)
        with reconcile.store.sync.db.transaction(write=True) as conn:
            conn.execute(sync_leases.update().values(lease_until=NOW - timedelta(minutes=1)))
        assert reconcile.run_once() is True
        (now,) = [d for d in cortex.all_deploys() if d["uuid"] == back["uuid"]]
        assert now["type"] == "ROLLBACK"
        runs = reconcile.store.journal.reconcile_runs()
        api = next(s for s in runs[0].sources if s["source"] == "github:acme/api")
        assert api["counts"] == {"present": 3, "retyped": 1}
    finally:
        reconcile.store.close()
        reconcile.client.close()
