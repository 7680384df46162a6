"""What users type that once ended in a traceback: each is now one line naming the flag, the
variable or the key, with exit code 2, and nothing is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main
from bridge.fakecortex import FakeCortex
from tests.conftest import TOKEN

SHA = "a" * 40


def one_error(err: str, named: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("usage:")]
    assert len(lines) == 1 and named in lines[0], err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        # --timeout reached the socket: "ValueError: Timeout value out of range".
        (["send", "--entity-tag", "x", "--timeout", "-1"], "--timeout"),
        (["send", "--entity-tag", "x", "--timeout", "nan"], "--timeout"),
        (["send", "--entity-tag", "x", "--timeout", "1e308"], "--timeout"),
        (["send", "--entity-tag", "x", "--timeout", "0"], "--timeout"),
        (["send", "--entity-tag", "x", "--timeout", "3601"], "--timeout"),
        # One message named both flags, whichever was wrong.
        (["worker", "--threads", "0"], "--threads"),
        (["worker", "--poll", "-1"], "--poll"),
        (["serve", "--workers", "0"], "--workers"),
        (["serve", "--connections", "many"], "--connections"),
        (["serve", "--body-timeout", "inf"], "--body-timeout"),
    ],
)
def test_a_bad_number_names_its_flag(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    environ = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    with pytest.raises(SystemExit) as done:
        main(argv, environ)
    assert done.value.code == 2
    assert "argument " + named in one_error(capsys.readouterr().err, named)
    assert cortex.received == []


def test_the_longest_timeout_is_taken(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    argv = ["send", "--entity-tag", "x", "--sha", SHA, "--deploy-id", "t-1", "--timeout", "3600"]
    assert main(argv, environ) == 0, capsys.readouterr().err
    assert len(cortex.all_deploys()) == 1


def test_a_token_of_two_lines_is_named_never_shown(
    cortex: FakeCortex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # http.client refused it in a traceback ("Invalid header value"), the token in it.
    argv = ["send", "--entity-tag", "x", "--sha", SHA, "--deploy-id", "t-2"]
    two_lines = "secret-token\nX-Injected: 1"
    assert main(argv, {"CORTEX_API_TOKEN": two_lines, "CORTEX_API_URL": cortex.url}) == 2
    err = capsys.readouterr().err
    assert "secret-token" not in err
    assert "line" in one_error(err, "CORTEX_API_TOKEN:")
    token_file = tmp_path / "token"
    token_file.write_text("secret-token\x00\n")
    environ = {"CORTEX_API_TOKEN_FILE": str(token_file), "CORTEX_API_URL": cortex.url}
    assert main(argv, environ) == 2
    err = capsys.readouterr().err
    assert "secret-token" not in err
    one_error(err, "CORTEX_API_TOKEN_FILE:")
    # A file's final line break is no second line.
    token_file.write_text(TOKEN + "\n")
    assert main(argv, environ) == 0
    assert cortex.received and all(r.path.startswith("/api/") for r in cortex.received)


def test_the_actions_token_input_of_two_lines_is_named(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.action.inputs import Inputs
    from bridge.action.output import Reporter
    from bridge.action.run import run_step

    inputs = Inputs(entity_tag="x", sha=SHA, deploy_id="t-3", cortex_api_token="tok\r\nen")
    code = run_step(inputs, {"CORTEX_API_URL": cortex.url}, Reporter(()))
    assert code == 2
    err = capsys.readouterr()
    assert "tok" not in err.err + err.out
    # The input, as this reporter (send's) names it: the variable that stands for it.
    assert "CORTEX_API_TOKEN: the secret holds a control character" in err.err
    assert cortex.received == []


@pytest.mark.parametrize(
    ("since", "why"),
    [
        ("99999999d", "is not from 1970-01-01"),  # OverflowError in a traceback
        ("1969-12-31", "is not from 1970-01-01"),
        ("0001-01-01T00:00:00+01:00", "is neither a date"),
    ],
)
def test_syncs_window_out_of_range_is_one_line(
    capsys: pytest.CaptureFixture[str], since: str, why: str
) -> None:
    argv = ["sync", "--github", "acme/api", "--since", since, "--dry-run"]
    assert main(argv, {"GITHUB_TOKEN": "gh-token"}) == 2
    assert why in one_error(capsys.readouterr().err, "--since")


def test_a_list_as_a_config_key_names_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "TypeError: unhashable type: 'list'" in a traceback.
    config = tmp_path / "bridge.yaml"
    config.write_text("sources:\n  ? [a]\n  : 1\n")
    assert main(["check-config", "--config", str(config)], {}) == 2
    line = one_error(capsys.readouterr().err, f"{config}:2")
    assert "a key must be a name, not a list" in line


def test_check_config_fails_on_a_secret_file_serve_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said the secret was missing, exit 0, where serve refuses to start.
    environ = {"GITHUB_WEBHOOK_SECRET_FILE": str(tmp_path / "nowhere")}
    assert main(["check-config"], environ) == 2
    captured = capsys.readouterr()
    assert "GITHUB_WEBHOOK_SECRET: unusable: " in captured.out
    errors = [line for line in captured.err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "GITHUB_WEBHOOK_SECRET_FILE: cannot read" in errors[0]


def test_a_database_that_cannot_be_opened_is_named_without_its_password(tmp_path: Path) -> None:
    # "database error: unable to open database file" named neither the setting nor the path.
    from bridge.store import Store, StoreError

    missing = f"sqlite:///{tmp_path}/no/such/dir/bridge.db"
    with pytest.raises(StoreError) as caught:
        Store.from_url(missing)
    assert str(caught.value).endswith(f"(database {missing})")
    with pytest.raises(StoreError) as caught:
        Store.from_url("postgresql://bob:s3cr3t@127.0.0.1:1/bridge")
    assert "s3cr3t" not in str(caught.value)
    # As it was given, the password masked.
    assert str(caught.value).endswith("(database postgresql://bob:***@127.0.0.1:1/bridge)")
    # A password given as a query parameter (libpq's, SQLAlchemy's) was shown whole.
    with pytest.raises(StoreError) as caught:
        Store.from_url("postgresql+psycopg://bob@127.0.0.1:1/bridge?password=s3cr3t")
    assert "s3cr3t" not in str(caught.value)
    assert str(caught.value).endswith(
        "(database postgresql+psycopg://bob@127.0.0.1:1/bridge?password=***)"
    )


def test_a_bug_is_one_line_its_secrets_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # An answer of a shape no check foresaw once ended sync in a traceback.
    import bridge.commands.check_config as command

    def broken(*_: object) -> int:
        raise AttributeError("'str' object has no attribute 'get' near tok-3141 and gh-2718")

    monkeypatch.setattr(command, "run", broken)
    token_file = tmp_path / "github-token"
    token_file.write_text("gh-2718\n")
    environ = {"CORTEX_API_TOKEN": "tok-3141", "GITHUB_TOKEN_FILE": str(token_file)}
    assert main(["check-config"], environ) == 1
    line = one_error(capsys.readouterr().err, "internal error (AttributeError: ")
    assert "tok-3141" not in line and "gh-2718" not in line  # a file's secret too
    assert "BRIDGE_TRACEBACK=1" in line
    with pytest.raises(AttributeError):
        main(["check-config"], {**environ, "BRIDGE_TRACEBACK": "1"})


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://[::1", "must be an http(s) url"),  # was an internal error (ValueError)
        ("http://[::1]x:5", "must be an http(s) url"),  # was retried as unreachable
        ("https://ghes.example/api/v3?x=1#f", "no '?' or '#'"),
        ("http://argocd.example/x?y#z", "no '?' or '#'"),  # GETs /x?y, not the API's path
    ],
)
def test_a_base_url_that_cannot_be_one_is_one_line_exit_2(
    url: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, environ in (
        (["sync", "--github", "a/b", "--dry-run"], {"GITHUB_API_URL": url, "GITHUB_TOKEN": "t"}),
        (["sync", "--argocd", url, "--dry-run"], {"ARGOCD_AUTH_TOKEN": "t"}),
        (["check-config"], {"CORTEX_API_URL": url}),
    ):
        assert main(argv, {"CORTEX_API_TOKEN": "c", **environ}) == 2, argv
        err = capsys.readouterr().err
        assert said in err and "internal error" not in err and "Traceback" not in err, err


def test_a_base_url_with_a_port_and_an_ipv6_host_is_taken() -> None:
    from bridge.config.values import http_url

    assert http_url("http://[::1]:8080/api/", "x") == "http://[::1]:8080/api"
    assert http_url("https://h.example/list?app=42", "x", query=True).endswith("?app=42")
