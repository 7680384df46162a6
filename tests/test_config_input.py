"""Hostile or broken configuration input: one line naming the file, key or variable, exit 2.

The config file's bytes (NUL, invalid UTF-8), a Cortex URL with user info, a database URL
with a bad port, and ``*_FILE`` secrets that cannot be read: none of them may end in a
traceback, and none may let the token go where the URL's user info points.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_config, parse_config
from bridge.errors import ConfigError

Run = tuple[int, str, str]
CONTENT = "s3cr3t-in-a-file-5a7e"
SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))


def cli(capsys: pytest.CaptureFixture[str], environ: dict[str, str], *argv: str) -> Run:
    try:
        code = main(list(argv), environ)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *named: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith("cortex-deploy-bridge: error: ")
    assert "Traceback" not in err
    for name in named:
        assert name in err


# --- the config file's bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            b"cortex:\n  url: https://x\x00\n", ":2: invalid yaml: character #x0000", id="nul"
        ),
        pytest.param(
            b"record:\n  mode: \x1b[31m\n", ":2: invalid yaml: character #x001b", id="esc"
        ),
        pytest.param(b"cortex:\n  url: https://\xff\xfe\n", "not utf-8 text", id="not-utf8"),
        pytest.param(b"\xef\xbb\xbfrecord: {mode: \xc3}\n", "not utf-8 text", id="cut-utf8"),
    ],
)
def test_bad_bytes_in_the_config_file_are_one_line(
    capsys, tmp_path: Path, data: bytes, message: str
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_bytes(data)
    with pytest.raises(ConfigError, match=message):
        load_config(config, {})
    code, out, err = cli(capsys, {}, "check-config", str(config))
    assert code == 2 and out == ""
    one_line_error(err, str(config), message)


# --- Cortex URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        pytest.param(
            "https://api.getcortexapp.com@evil.example", "evil.example", id="host-as-user"
        ),
        pytest.param("https://u:p@cortex.internal", "cortex.internal", id="user-and-password"),
        pytest.param("https://token@cortex.internal/api", "cortex.internal", id="user-only"),
        pytest.param("http://a@b@evil.example:8080", "evil.example:8080", id="two-ats"),
    ],
)
def test_user_info_in_a_cortex_url_is_refused(capsys, tmp_path: Path, url: str, host: str) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(f"cortex:\n  url: {url!r}\n")
    code, out, err = cli(capsys, {}, "check-config", str(config))
    assert code == 2 and out == ""
    one_line_error(err, "cortex.url", f"its host would be {host!r}")
    assert ":p@" not in err
    code, out, err = cli(capsys, {"CORTEX_API_URL": url}, "check-config")
    assert code == 2
    one_line_error(err, "CORTEX_API_URL")


@pytest.mark.parametrize(
    "url", ["https://cortex.internal:99999", "https://cortex.internal:abc", "https://h:0/"]
)
def test_a_cortex_url_with_a_bad_port_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match=r"cortex\.url: port must be a number from 1 to 65535"):
        parse_config({"cortex": {"url": url}})


def test_a_plain_cortex_url_still_works() -> None:
    config = parse_config({"cortex": {"url": "https://cortex.internal:8443/base/"}})
    assert config.cortex.url == "https://cortex.internal:8443/base"


# --- database URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "given"),
    [
        pytest.param("postgresql+psycopg://bridge:pw-9f1c@h:99999/db", "99999", id="too-big"),
        pytest.param("postgresql://bridge@h:abc/db", "abc", id="not-a-number"),
        pytest.param("postgresql+psycopg://bridge:pw-9f1c@h:-1/db", "-1", id="negative"),
        pytest.param("postgresql://bridge@h:0/db", "0", id="zero"),
        # No '@': what stands as the port may be the password ("user:pw-9f1c/db"), not shown.
        pytest.param("postgresql://h:99999/db", None, id="no-user-too-big"),
        pytest.param("postgresql://bridge:pw-9f1c/db", None, id="no-at-a-password"),
    ],
)
def test_a_database_url_with_a_bad_port_is_one_line(capsys, url: str, given: str | None) -> None:
    for command in (["check-config"], ["deliveries", "list"]):
        code, out, err = cli(capsys, {"BRIDGE_DATABASE_URL": url}, *command)
        assert code == 2 and out == ""
        said = f"got {given!r}" if given else "port must be a number from 1 to 65535 (no '@'"
        one_line_error(err, "BRIDGE_DATABASE_URL", said)
        assert "pw-9f1c" not in err and (given is not None or "got" not in err)


def test_a_bad_port_in_the_config_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("database: postgresql://h:70000/db\n")
    with pytest.raises(ConfigError, match=r"^database: port must be"):
        load_config(config, {})


# --- *_FILE secrets ----------------------------------------------------------------------------


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00" + CONTENT.encode())
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (64 * 1024 + 1))
    unreadable = tmp_path / "unreadable"
    unreadable.write_text(CONTENT)
    unreadable.chmod(0)
    return {
        "not-utf8": (binary, "is not utf-8 text"),
        "too-long": (huge, "is longer than 65536 bytes"),
        "missing": (tmp_path / "missing", "no such file or directory"),
        "directory": (tmp_path, "is a directory"),
        "unreadable": (unreadable, "permission denied"),
    }


# (case, variable, command): every case once, every variable and both commands at least once.
SECRET_FILE_CASES = [
    ("not-utf8", "GITHUB_WEBHOOK_SECRET", "serve"),
    ("not-utf8", "CORTEX_API_TOKEN", "worker"),
    ("too-long", "GITLAB_WEBHOOK_TOKEN", "serve"),
    ("missing", "BRIDGE_ADMIN_TOKEN", "serve"),
    ("directory", "CORTEX_API_TOKEN", "serve"),
    ("unreadable", "GITHUB_WEBHOOK_SECRET", "worker"),
]


@pytest.mark.parametrize(("case", "variable", "command"), SECRET_FILE_CASES)
def test_a_secret_file_that_cannot_be_read_is_one_line(
    tmp_path: Path, case: str, variable: str, command: str
) -> None:
    # A process of its own: `serve` sets PROMETHEUS_MULTIPROC_DIR in its environment.
    path, reason = bad_files(tmp_path)[case]
    if case == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads any file")
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        f"{variable}_FILE": str(path),
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
    }
    done = subprocess.run(
        [SCRIPT, command], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    one_line_error(done.stderr, f"{variable}_FILE", reason)
    assert CONTENT not in done.stderr


@pytest.mark.parametrize("made", ["fifo", "big", "deep", "device"])
def test_a_config_file_that_is_no_config_is_one_line_quickly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, made: str
) -> None:
    # /dev/zero grew to 9 GB; a pipe hung for good; 5,000 nested brackets were an internal
    # error.
    path = tmp_path / "bridge.yaml"
    if made == "fifo":
        os.mkfifo(path)
    elif made == "big":
        path.write_text("# a comment\n" * 100_000)
    elif made == "deep":
        path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    else:
        path = Path("/dev/zero")
    code, out, err = cli(capsys, {}, "check-config", str(path))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["check-config", ""], ["check-config", "--config", " "]])
def test_an_empty_config_path_is_refused_not_taken_for_none(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = cli(capsys, {}, *argv)
    assert code == 2 and "the path is empty" in err and "config OK" not in out
