"""`deliveries list|show|retry` and `check-config`, run in-process on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.store import DEAD, DELIVERED, DELIVERING, QUEUED, Store
from tests.receiver_kit import ADMIN_TOKEN, client_for, runtime_on

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
CORTEX_ERROR = "cortex rejected the deploy (400): entity 'payments-api' is not in the catalog"
SECRET_VALUES = {
    "GITHUB_WEBHOOK_SECRET": "gh-secret-value-81c2",
    "CORTEX_API_TOKEN": "ctx-token-value-4d09",
}

Run = tuple[int, str, str]


def cli(capsys: pytest.CaptureFixture[str], environ: dict[str, str], *argv: str) -> Run:
    """Run the command in-process: (exit code, stdout, stderr)."""
    try:
        code = main(list(argv), environ)
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def payload(repository: str, environment: str, entity: str) -> dict[str, Any]:
    """What the outbox keeps for one event (see bridge.ingest.ingest)."""
    return {
        "event": {
            "source": "github",
            "repository": repository,
            "event": "deployment_status",
            "status": "succeeded",
            "sha": "9f2c4e1b7a3d5c6e8f0a1b2c3d4e5f6a7b8c9d0e",
            "environment": environment,
        },
        "entities": [entity],
        "rule": "routes[0]",
    }


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """Five deliveries: 1 dead, 2 delivered, 3 in flight, 4 and 5 queued (either backend)."""
    with Store.from_url(db_url) as opened:
        for i in range(5):
            opened.enqueue(
                dedupe_key=f"github:hook:{i}",
                source="github",
                event_name="deployment_status",
                payload=payload(f"acme/service-{i}", "production", f"service-{i}"),
                now=T0 + timedelta(minutes=i),
            )
        later = T0 + timedelta(hours=1)
        (dead,) = opened.claim(owner="w", now=later, lease_seconds=60)
        opened.settle(
            dead.id,
            "dead",
            owner="w",
            error=CORTEX_ERROR,
            results={"service-0": {"action": "rejected"}},
            now=later,
        )
        (done,) = opened.claim(owner="w", now=later, lease_seconds=60)
        results = {"service-1": {"action": "created", "uuid": "d-0001", "type": "DEPLOY"}}
        opened.settle(done.id, "delivered", owner="w", results=results, now=later)
        opened.claim(owner="w", now=later, lease_seconds=60)  # id 3 stays in flight
        yield opened


@pytest.fixture
def env(db_url: str, store: Store) -> dict[str, str]:
    """An environment naming the populated database (and nothing else)."""
    return {"BRIDGE_DATABASE_URL": db_url}


# --- deliveries list -----------------------------------------------------------------------


def test_list_prints_an_aligned_table_newest_first(capsys, env) -> None:
    code, out, err = cli(capsys, env, "deliveries", "list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split()[:9] == [
        "id",
        "status",
        "source",
        "event",
        "repository",
        "environment",
        "entities",
        "attempts",
        "received",
    ]
    assert [row.split()[0] for row in rows] == ["5", "4", "3", "2", "1"]
    # Aligned: every column starts where its header does.
    for column in ("status", "repository", "received", "last error"):
        start = header.index(column)
        assert all(row[start - 2 : start] == "  " and row[start] != " " for row in rows)
    dead = rows[-1]
    assert dead.split()[1:4] == [DEAD, "github", "deployment_status"]
    assert dead.split()[4:8] == ["acme/service-0", "production", "service-0", "1"]
    assert "2026-11-23 10:00:00Z" in dead
    assert CORTEX_ERROR[:20] in dead
    assert CORTEX_ERROR not in dead and dead.endswith("...")  # shortened
    assert "more:" not in out


def test_list_pages_with_the_cursor(capsys, env) -> None:
    seen: list[str] = []
    argv = ["deliveries", "list", "--limit", "2"]
    for _ in range(5):
        code, out, _ = cli(capsys, env, *argv)
        assert code == 0
        lines = out.splitlines()
        footer = lines[-1] if lines[-1].startswith("more: ") else None
        seen += [line.split()[0] for line in lines[1 : -1 if footer else None]]
        if footer is None:
            break
        assert footer == f"more: --after {seen[-1]}"
        argv = ["deliveries", "list", "--limit", "2", *footer.removeprefix("more: ").split()]
    assert seen == ["5", "4", "3", "2", "1"]


@pytest.mark.parametrize(
    ("status", "ids"),
    [
        pytest.param(DEAD, ["1"], id="dead"),
        pytest.param(DELIVERED, ["2"], id="delivered"),
        pytest.param(DELIVERING, ["3"], id="delivering"),
        pytest.param(QUEUED, ["5", "4"], id="queued"),
    ],
)
def test_list_filters_by_status(capsys, env, status: str, ids: list[str]) -> None:
    code, out, _ = cli(capsys, env, "deliveries", "list", "--status", status)
    assert code == 0
    rows = out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ids
    assert all(row.split()[1] == status for row in rows)


def test_list_says_when_nothing_matches(capsys, env) -> None:
    code, out, _ = cli(capsys, env, "deliveries", "list", "--status", "retrying")
    assert (code, out) == (0, "no deliveries with status retrying\n")


def test_list_json_is_the_admin_api_page(capsys, env, db_url: str) -> None:
    code, out, _ = cli(capsys, env, "deliveries", "list", "--limit", "2", "--json")
    assert code == 0
    page = json.loads(out)
    assert list(page) == ["data", "has_more", "next_cursor"]
    assert [d["id"] for d in page["data"]] == [5, 4]
    assert page["has_more"] is True
    assert page["next_cursor"] == "4"
    code, out, _ = cli(capsys, env, "deliveries", "list", "--after", "2", "--json")
    last = json.loads(out)
    assert [d["id"] for d in last["data"]] == [1]
    assert (last["has_more"], last["next_cursor"]) == (False, None)
    runtime = runtime_on(db_url)  # the same database
    try:
        api = client_for(runtime).get(
            "/api/deliveries?limit=2", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    finally:
        runtime.store.close()
    assert api.status_code == 200
    assert api.json == page


# --- deliveries show -----------------------------------------------------------------------


def test_show_prints_fields_results_and_last_error(capsys, env) -> None:
    code, out, err = cli(capsys, env, "deliveries", "show", "2")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    for line in (
        "id: 2",
        "status: delivered",
        "source: github",
        "event: deployment_status",
        "repository: acme/service-1",
        "environment: production",
        "deploy status: succeeded",
        "entities: service-1",
        "attempts: 1",
        "received: 2026-11-23T10:01:00Z",
        "delivered: 2026-11-23T11:00:00Z",
        "dedupe key: github:hook:1",
        "results:",
        "  service-1: action=created type=DEPLOY uuid=d-0001",
        "last error: -",
    ):
        assert line in lines
    code, out, _ = cli(capsys, env, "deliveries", "show", "1")
    assert f"last error: {CORTEX_ERROR}" in out.splitlines()


def test_a_delivered_row_shows_no_stale_error(capsys, tmp_path: Path) -> None:
    """An attempt failed, the next one delivered: the failure is history, not the state."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    later = T0 + timedelta(hours=1)
    with Store.from_url(url) as log:
        log.enqueue(
            dedupe_key="github:hook:retried",
            source="github",
            event_name="deployment_status",
            payload=payload("acme/service-6", "production", "service-6"),
            now=T0,
        )
        (row,) = log.claim(owner="w", now=T0, lease_seconds=60)
        log.settle(
            row.id,
            "retrying",
            owner="w",
            error="cortex: 503",
            next_attempt_at=later,
            results={},
            now=T0,
        )
        (again,) = log.claim(owner="w", now=later, lease_seconds=60)
        log.settle(again.id, "delivered", owner="w", results={}, now=later)
    env = {"BRIDGE_DATABASE_URL": url}
    code, out, _ = cli(capsys, env, "deliveries", "list")
    (listed,) = out.splitlines()[1:]
    assert code == 0 and DELIVERED in listed and listed.endswith("  -"), listed
    assert "503" not in listed
    code, out, _ = cli(capsys, env, "deliveries", "show", str(row.id))
    lines = out.splitlines()
    assert "last error: -" in lines
    assert "error before delivery: cortex: 503" in lines


def test_show_json_is_the_admin_api_delivery(capsys, env, db_url: str) -> None:
    code, out, _ = cli(capsys, env, "deliveries", "show", "1", "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["status"] == DEAD
    assert shown["last_error"] == CORTEX_ERROR
    assert shown["dedupe_key"] == "github:hook:0"
    assert shown["payload"]["entities"] == ["service-0"]
    runtime = runtime_on(db_url)
    try:
        api = client_for(runtime).get(
            "/api/deliveries/1", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    finally:
        runtime.store.close()
    assert api.json == shown


def test_show_of_an_unknown_id_fails(capsys, env) -> None:
    assert cli(capsys, env, "deliveries", "show", "999") == (
        1,
        "",
        "cortex-deploy-bridge: error: no delivery 999\n",
    )


# --- deliveries retry ----------------------------------------------------------------------


def test_retry_requeues_a_dead_letter(capsys, env, store: Store) -> None:
    code, out, err = cli(capsys, env, "deliveries", "retry", "1")
    assert (code, err) == (0, "")
    assert out == "requeued 1; a running worker picks it up within a second\n"
    requeued = store.get(1)
    assert requeued is not None
    assert requeued.status == QUEUED
    assert requeued.next_attempt_at is not None


def test_retry_all_dead(capsys, env, store: Store) -> None:
    code, out, _ = cli(capsys, env, "deliveries", "retry", "--all-dead")
    assert code == 0
    assert out.splitlines()[0] == "requeued 1; a running worker picks it up within a second"
    assert store.counts()[DEAD] == 0
    code, out, _ = cli(capsys, env, "deliveries", "retry", "--all-dead")
    assert (code, out) == (0, "no dead deliveries\n")


@pytest.mark.parametrize(
    ("delivery_id", "message"),
    [
        pytest.param("999", "no delivery 999", id="unknown"),
        pytest.param("2", "delivery 2 is delivered: nothing to retry", id="delivered"),
        pytest.param("3", "delivery 3 is delivering: nothing to retry", id="in-flight"),
    ],
)
def test_retry_refuses_what_cannot_be_retried(
    capsys, env, store: Store, delivery_id: str, message: str
) -> None:
    before = store.counts()
    code, out, err = cli(capsys, env, "deliveries", "retry", delivery_id)
    assert (code, out, err) == (1, "", f"cortex-deploy-bridge: error: {message}\n")
    assert store.counts() == before


def test_retry_of_several_ids_reports_each(capsys, env, store: Store) -> None:
    code, out, err = cli(capsys, env, "deliveries", "retry", "1", "999", "4")
    assert code == 1
    assert out.splitlines() == [
        "requeued 1",
        "requeued 4",
        "a running worker picks them up within a second",
    ]
    assert err == "cortex-deploy-bridge: error: no delivery 999\n"


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        pytest.param(["list", "--status", "lost"], "--status", id="unknown-status"),
        pytest.param(["list", "--limit", "0"], "--limit", id="limit-0"),
        pytest.param(["list", "--limit", "201"], "--limit", id="limit-201"),
        pytest.param(["list", "--limit", "ten"], "--limit", id="limit-text"),
        pytest.param(["list", "--after", "x9"], "--after", id="cursor-text"),
        pytest.param(["show", "abc"], "ID", id="show-text-id"),
        pytest.param(["show", "0"], "ID", id="show-zero-id"),
        pytest.param(["retry", "1.5"], "ID", id="retry-text-id"),
        pytest.param(["show", "9223372036854775808"], "ID", id="show-id-past-64-bits"),
        pytest.param(["show", "--", "-1"], "ID", id="show-negative-id"),
        pytest.param(["retry", "9" * 5000], "ID", id="retry-huge-id"),
        pytest.param(["retry", "1_0"], "ID", id="retry-underscored-id"),
        pytest.param(["retry", " 1"], "ID", id="retry-spaced-id"),
        pytest.param(["retry", "\uff11"], "ID", id="retry-wide-digit-id"),
        pytest.param(["retry", "--", "-9223372036854775809"], "ID", id="retry-negative-id"),
        pytest.param(["retry"], "--all-dead", id="retry-nothing"),
        pytest.param(["retry", "1", "--all-dead"], "--all-dead", id="retry-both"),
        pytest.param([], "ACTION", id="no-action"),
        pytest.param(["list", "--config", "missing.yaml"], "missing.yaml", id="no-config"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, env, argv: list[str], named: str) -> None:
    code, out, err = cli(capsys, env, "deliveries", *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("cortex-deploy-bridge") and "error:" in err
    assert named in err
    assert "Traceback" not in err


def test_bad_config_key_is_named(capsys, env, tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("record:\n  mode: sometimes\n")
    code, _, err = cli(capsys, env, "deliveries", "list", "--config", str(config))
    assert code == 2
    assert err.startswith("cortex-deploy-bridge: error: record.mode: ")


# --- a database without the bridge's tables ------------------------------------------------


def test_a_database_without_bridge_tables_is_left_alone(capsys, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE unrelated (id INTEGER)")
    conn.close()
    env = {"BRIDGE_DATABASE_URL": f"sqlite:///{other}"}
    code, out, err = cli(capsys, env, "deliveries", "list")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "has no bridge tables" in err and f"sqlite:///{other}" in err
    with sqlite3.connect(other) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert tables == ["unrelated"]  # create=False: nothing was added


def test_a_wrong_sqlite_path_creates_nothing(capsys, tmp_path: Path) -> None:
    wrong = tmp_path / "typo.db"
    env = {"BRIDGE_DATABASE_URL": f"sqlite:///{wrong}"}
    code, _, err = cli(capsys, env, "deliveries", "retry", "1")
    assert code == 2
    assert "has no bridge tables" in err and str(wrong) in err
    assert not wrong.exists()


def test_an_unreachable_database_is_named_without_its_password(capsys) -> None:
    env = {"BRIDGE_DATABASE_URL": "postgresql://bridge:hunter2@127.0.0.1:1/bridge"}
    code, _, err = cli(capsys, env, "deliveries", "list")
    assert code == 1
    assert err.count("\n") == 1
    assert "bridge:***@127.0.0.1:1/bridge" in err
    assert "hunter2" not in err


# --- check-config --------------------------------------------------------------------------

CONFIG = """\
sources:
  gitlab: {enabled: false}
routes:
  - match: {repository: "acme/payments-api"}
    entities: [payments-api]
  - match: {repository: "acme/*", environment: "prod*"}
    entities: ["{repo}"]
environments:
  exclude: ["review/*"]
  rename: {prod: production}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """A valid config: GitLab off, two routes, a rename and an exclude."""
    path = tmp_path / "bridge.yaml"
    path.write_text(CONFIG)
    return path


def test_check_config_ok_describes_the_config(capsys, config_file: Path) -> None:
    code, out, _ = cli(capsys, {}, "check-config", str(config_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"config OK: {config_file}"
    assert "sources: github enabled, gitlab disabled, flux disabled, argocd disabled" in lines
    assert "routes[0]: repository 'acme/payments-api' -> payments-api" in lines
    assert any(
        line.startswith("environments: ") and "'prod' -> 'production'" in line for line in lines
    )


def test_check_config_finds_the_path_by_flag_then_environment(capsys, config_file: Path) -> None:
    code, out, _ = cli(capsys, {}, "check-config", "--config", str(config_file))
    assert (code, out.splitlines()[0]) == (0, f"config OK: {config_file}")
    code, out, _ = cli(capsys, {"BRIDGE_CONFIG": str(config_file)}, "check-config")
    assert (code, out.splitlines()[0]) == (0, f"config OK: {config_file}")


def test_check_config_without_a_file_checks_the_defaults(capsys) -> None:
    code, out, _ = cli(capsys, {}, "check-config")
    assert code == 0
    assert out.startswith("config OK: built-in defaults")
    assert "default: every repository -> {repo}" in out.splitlines()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(
            "routes:\n  - match: {repostory: x}\n    entities: [a]\n",
            "routes[0].match.repostory",
            id="typo",
        ),
        pytest.param(
            "sources:\n  github: {secret: abc}\n", "sources.github.secret", id="secret-in-file"
        ),
        pytest.param("record: {mode: sometimes}\n", "record.mode", id="bad-value"),
    ],
)
def test_check_config_names_the_bad_key(capsys, tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, out, err = cli(capsys, {}, "check-config", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"cortex-deploy-bridge: error: {key}: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("target", "source", "expected"),
    [
        pytest.param(
            "acme/payments-api:prod",
            "github",
            "try github acme/payments-api, environment 'prod': -> payments-api (routes[0]), "
            "recorded as environment 'production'",
            id="first-route-renamed",
        ),
        pytest.param(
            "acme/web:production",
            "github",
            "try github acme/web, environment 'production': -> web (routes[1])",
            id="template",
        ),
        pytest.param(
            "acme/web",
            "github",
            "try github acme/web, no environment: ignored: no route matches repository "
            "'acme/web' with no environment",
            id="no-route",
        ),
        pytest.param(
            "acme/web:review/42",
            "github",
            "try github acme/web, environment 'review/42': ignored: environment 'review/42' "
            "is excluded by environments.exclude 'review/*'",
            id="excluded",
        ),
        pytest.param(
            "acme/payments-api:prod",
            "gitlab",
            "try gitlab acme/payments-api, environment 'prod': ignored: source 'gitlab' is "
            "disabled by sources.gitlab.enabled",
            id="source-off",
        ),
    ],
)
def test_check_config_try_shows_the_route(
    capsys, config_file: Path, target: str, source: str, expected: str
) -> None:
    argv = ("check-config", str(config_file), "--try", target, "--source", source)
    code, out, _ = cli(capsys, {}, *argv)
    assert code == 0
    assert out.splitlines()[-1] == expected


def test_check_config_describes_and_tries_an_http_source(capsys, tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "http_sources:\n"
        "  shipyard: {preset: phased, url: 'https://ship.example.test/api/deploys',\n"
        "             token_env: SHIPYARD_TOKEN, repository: acme/shipyard-web}\n"
    )
    argv = ("check-config", str(path), "--source", "shipyard", "--try", "acme/shipyard-web:prod")
    code, out, _ = cli(capsys, {}, *argv)
    assert code == 0
    lines = out.splitlines()
    assert (
        "http_sources.shipyard: https://ship.example.test/api/deploys (page, size 100, preset "
        "phased), repository 'acme/shipyard-web', token from SHIPYARD_TOKEN"
    ) in lines
    assert lines[-1] == (
        "try shipyard acme/shipyard-web, environment 'prod': -> shipyard-web (default)"
    )
    code, out, err = cli(capsys, {}, "check-config", str(path), "--source", "shipyrad")
    assert (code, out) == (2, "")
    assert err == (
        "cortex-deploy-bridge: error: --source: 'shipyrad' is not a source (expected one of: "
        "github, gitlab, flux, argocd, shipyard)\n"
    )


def test_check_config_try_needs_a_repository(capsys) -> None:
    code, _, err = cli(capsys, {}, "check-config", "--try", ":prod")
    assert code == 2
    assert "--try" in err and err.count("\n") == 1


def test_check_config_lists_secrets_by_name_only(capsys, tmp_path: Path) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text("admin-value-from-file-77\n")
    environ = {**SECRET_VALUES, "BRIDGE_ADMIN_TOKEN_FILE": str(token_file)}
    code, out, err = cli(capsys, environ, "check-config")
    assert code == 0
    lines = out.splitlines()
    assert "  GITHUB_WEBHOOK_SECRET: set" in lines
    assert "  GITLAB_WEBHOOK_TOKEN: missing" in lines
    assert "  CORTEX_API_TOKEN: set" in lines
    assert "  BRIDGE_ADMIN_TOKEN: set (from BRIDGE_ADMIN_TOKEN_FILE)" in lines
    for value in (*SECRET_VALUES.values(), "admin-value-from-file-77"):
        assert value not in out + err
    # GitLab is enabled by default and has no token: a warning, not a failure.
    assert err == (
        "cortex-deploy-bridge: warning: sources.gitlab is enabled but GITLAB_WEBHOOK_TOKEN is "
        "not set: serve will refuse to start (unless --allow-unsigned)\n"
    )


def test_check_config_does_not_warn_for_a_disabled_source(capsys, config_file: Path) -> None:
    code, _, err = cli(capsys, SECRET_VALUES, "check-config", str(config_file))
    assert (code, err) == (0, "")


# --- import cost ---------------------------------------------------------------------------


def test_command_modules_load_no_server_dependencies() -> None:
    code = (
        "import sys; import bridge.commands.deliveries, bridge.commands.check_config, "
        "bridge.views; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'sqlalchemy', 'gunicorn', 'psycopg', 'prometheus_client', 'yaml')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
