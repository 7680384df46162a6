"""BRIDGE_DATABASE_URL_FILE: the database URL (and its password) from a mounted secret file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config
from bridge.errors import ConfigError

PASSWORD = "s3cret-pw-6b1d"
URL = f"postgresql://bridge:{PASSWORD}@db.internal:5432/bridge"
STORED = f"postgresql+psycopg://bridge:{PASSWORD}@db.internal:5432/bridge"
SHOWN = "postgresql+psycopg://bridge:***@db.internal:5432/bridge"


@pytest.fixture
def url_file(tmp_path: Path) -> Path:
    """A secret file as Docker and Kubernetes mount them: the URL and a trailing newline."""
    path = tmp_path / "database_url"
    path.write_text(URL + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="file-only"),
        pytest.param({"BRIDGE_DATABASE_URL": ""}, id="plain-variable-empty"),
        pytest.param({"BRIDGE_DATABASE_URL": "  "}, id="plain-variable-blank"),
    ],
)
def test_the_url_comes_from_the_file(url_file: Path, environ: dict[str, str]) -> None:
    config = load_config(None, {**environ, "BRIDGE_DATABASE_URL_FILE": str(url_file)})
    assert config.database == STORED  # newline dropped, postgresql:// means psycopg


def test_the_file_wins_over_the_config_file(tmp_path: Path, url_file: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text("database: sqlite:///from-the-config.db\n")
    config = load_config(config_file, {"BRIDGE_DATABASE_URL_FILE": str(url_file)})
    assert config.database == STORED


def test_an_empty_file_variable_is_unset(tmp_path: Path) -> None:
    environ = {"BRIDGE_DATABASE_URL": "sqlite:///plain.db", "BRIDGE_DATABASE_URL_FILE": ""}
    assert load_config(None, environ).database == "sqlite:///plain.db"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(
            lambda d: d / "missing",
            "cannot read {path!r} (no such file or directory)",
            id="missing",
        ),
        pytest.param(lambda d: d, "cannot read {path!r} (is a directory)", id="a-directory"),
        pytest.param(lambda d: _write(d / "empty", "\n"), "{path!r} is empty", id="empty"),
        pytest.param(
            lambda d: _write(d / "bin", b"\xff\xfe"), "{path!r} is not utf-8 text", id="binary"
        ),
    ],
)
def test_a_bad_file_is_named(tmp_path: Path, make: Callable[[Path], Path], reason: str) -> None:
    path = str(make(tmp_path))
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"BRIDGE_DATABASE_URL_FILE": path})
    assert caught.value.key == "BRIDGE_DATABASE_URL_FILE"
    assert caught.value.reason == reason.format(path=path)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_both_set_is_an_error_as_in_the_postgres_image(url_file: Path) -> None:
    environ = {"BRIDGE_DATABASE_URL": URL, "BRIDGE_DATABASE_URL_FILE": str(url_file)}
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ)
    assert str(caught.value) == (
        "BRIDGE_DATABASE_URL_FILE: BRIDGE_DATABASE_URL is set too: set only one "
        "(an empty one counts as unset)"
    )


def test_a_bad_url_in_the_file_is_named_without_its_password(tmp_path: Path) -> None:
    path = _write(tmp_path / "database_url", f"mysql://bridge:{PASSWORD}@db/bridge\n")
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"BRIDGE_DATABASE_URL_FILE": str(path)})
    assert caught.value.key == "BRIDGE_DATABASE_URL_FILE"
    assert "mysql://bridge:***@db/bridge" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("held", "variable"),
    [
        (f"{PASSWORD}\n", "BRIDGE_DATABASE_URL_FILE"),  # the postgres image's password file
        (f"postgresql://bridge:{PASSWORD}/bridge", "BRIDGE_DATABASE_URL"),  # '@host' left out
    ],
)
def test_what_holds_a_password_is_never_shown_in_the_error(
    tmp_path: Path, held: str, variable: str
) -> None:
    environ = {variable: held}
    if variable.endswith("_FILE"):
        environ[variable] = str(_write(tmp_path / "db", held))
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ)
    assert caught.value.key == variable and PASSWORD not in str(caught.value), caught.value


def test_the_client_keys_password_is_masked_where_the_url_is_shown() -> None:
    from bridge.redact import redact_url

    shown = redact_url(f"postgresql://bridge@db/bridge?sslmode=verify-full&sslpassword={PASSWORD}")
    assert PASSWORD not in shown and "sslpassword=***" in shown


# --- through the commands ---------------------------------------------------------------------


def cli(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], *argv: str
) -> tuple[int, str, str]:
    """Run the command in-process: (exit code, stdout, stderr)."""
    code = main(list(argv), environ)
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_shows_where_the_url_came_from_never_the_password(
    capsys: pytest.CaptureFixture[str], url_file: Path
) -> None:
    code, out, err = cli(capsys, {"BRIDGE_DATABASE_URL_FILE": str(url_file)}, "check-config")
    assert code == 0
    lines = out.splitlines()
    assert f"database: {SHOWN}" in lines
    assert "  BRIDGE_DATABASE_URL: set (from BRIDGE_DATABASE_URL_FILE)" in lines
    assert PASSWORD not in out + err


@pytest.mark.parametrize(
    ("environ", "state"),
    [
        pytest.param({"BRIDGE_DATABASE_URL": URL}, "set", id="plain"),
        pytest.param({}, "not set (the config's database)", id="unset"),
    ],
)
def test_check_config_reports_the_plain_variable_too(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], state: str
) -> None:
    code, out, err = cli(capsys, environ, "check-config")
    assert code == 0
    assert f"  BRIDGE_DATABASE_URL: {state}" in out.splitlines()
    assert PASSWORD not in out + err


@pytest.mark.parametrize("command", [["check-config"], ["deliveries", "list"]])
def test_commands_refuse_an_unreadable_file_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "missing"
    code, out, err = cli(capsys, {"BRIDGE_DATABASE_URL_FILE": str(missing)}, *command)
    assert (code, out) == (2, "")
    assert err == (
        f"cortex-deploy-bridge: error: BRIDGE_DATABASE_URL_FILE: cannot read {str(missing)!r} "
        "(no such file or directory)\n"
    )


def test_commands_refuse_both_variables_in_one_line(
    capsys: pytest.CaptureFixture[str], url_file: Path
) -> None:
    environ = {"BRIDGE_DATABASE_URL": URL, "BRIDGE_DATABASE_URL_FILE": str(url_file)}
    code, out, err = cli(capsys, environ, "check-config")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "BRIDGE_DATABASE_URL is set too" in err
    assert PASSWORD not in err


def test_the_database_password_is_among_what_logs_redact() -> None:
    from bridge.commands.common import log_secrets, secrets_of
    from bridge.config import parse_config

    environ = {"CORTEX_API_TOKEN": "ctx-token"}
    secrets = secrets_of(environ)

    def redacted(database: str) -> list[str]:
        return log_secrets(secrets, parse_config({"database": database}), environ)

    assert {"p@ss-w0rd", "ctx-token"} <= set(
        redacted("postgresql+psycopg://bridge:p%40ss-w0rd@db:5432/bridge")
    )
    assert redacted("sqlite:///bridge.db") == list(secrets.values())  # no password there


def test_http_source_tokens_are_among_what_logs_redact() -> None:
    from bridge.commands.common import log_secrets, secrets_of
    from bridge.config import parse_config

    environ = {"CORTEX_API_TOKEN": "ctx-token", "SHIPS_TOKEN": "pat-ships-77"}
    config = parse_config(
        {
            "http_sources": {
                "ships": {
                    "preset": "spice",
                    "url": "https://api.example.com/v1/apps/4/deployments",
                    "token_env": "SHIPS_TOKEN",
                    "repository": "acme/ships",
                },
            }
        }
    )
    assert "pat-ships-77" in log_secrets(secrets_of(environ), config, environ)
