"""`send` and `action` on the base install: what they import, and the wheel alone in a venv.

`pip install cortex-deploy-bridge` (no extras) is what the README tells a GitLab job and any
CI to run, and what the Action's tree carries: a test environment with the server extras
installed hides a missing dependency (it hid orjson once). So the import test runs the
commands in a subprocess and lists what they loaded, and the system test builds the wheel,
installs it alone in a fresh virtual environment, and records deploys from there against
the stand-in Cortex. `.ci/run` builds that environment once and names it in
BRIDGE_WHEEL_VENV; without it the test builds its own (pip reaches the package index).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.cli import SERVER_EXTRA, SERVER_MODULES, main
from bridge.fakecortex import FakeCortex
from tests.conftest import TOKEN
from tests.test_packaging import load_pyproject

ROOT = Path(__file__).resolve().parents[1]
FULL_SHA = "0123456789abcdef0123456789abcdef01234567"
SERVER_COMMANDS = ["serve", "worker", "sync", "deliveries", "demo"]
# The server extra's packages and what they pull in: none may load for `send` or `action`.
FORBIDDEN = {*SERVER_MODULES, "werkzeug", "jinja2", "greenlet", "zope", "urllib3", "certifi"}

# A child that runs the commands in one process and prints the top-level modules it loaded.
IMPORTS_PROBE = """
import json, sys
from bridge.cli import main
codes = []
for argv, env in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv, env))
    except SystemExit as exc:  # --help exits through argparse
        codes.append(exc.code)
loaded = sorted({name.partition(".")[0] for name in sys.modules})
print(json.dumps({"codes": codes, "modules": loaded}))
"""


def runner_env(tmp_path: Path, cortex: FakeCortex) -> dict[str, str]:
    """What a composite step of the Action sees: GITHUB_* and INPUT_* (underscored)."""
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": FULL_SHA,
        "GITHUB_RUN_ID": "31",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "INPUT_CORTEX_API_TOKEN": TOKEN,
        "INPUT_CORTEX_API_URL": cortex.url,
        "INPUT_ENTITY_TAG": "action-entity",
        "INPUT_TYPE": "DEPLOY",
        "INPUT_CUSTOM_DATA": "train: 7",  # YAML: the base install's PyYAML
    }


def send_env(cortex: FakeCortex) -> dict[str, str]:
    """What `send` needs outside any CI: the token and the stand-in's URL."""
    return {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}


SEND_ARGV = [
    "send",
    "--entity-tag",
    "send-entity",
    "--sha",
    FULL_SHA,
    "--environment",
    "production",
    "--deploy-id",
    "release-7",
]


def test_send_and_action_load_nothing_of_the_server_extra(
    tmp_path: Path, cortex: FakeCortex
) -> None:
    runs = [
        [["--help"], {}],
        [["send", "--help"], {}],
        [["action", "--help"], {}],
        [SEND_ARGV, send_env(cortex)],
        [["action"], runner_env(tmp_path, cortex)],
    ]
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS_PROBE, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["codes"] == [0, 0, 0, 0, 0]
    assert sorted(d["entity"] for d in cortex.all_deploys()) == ["action-entity", "send-entity"]
    assert FORBIDDEN.isdisjoint(result["modules"]), FORBIDDEN & set(result["modules"])


def test_server_modules_are_the_server_extra() -> None:
    """SERVER_MODULES, which the missing-extra check looks for, is pyproject's extra."""
    pyproject = load_pyproject()
    extra = pyproject["project"]["optional-dependencies"]["server"]
    names = {spec.split("[")[0].split(">")[0].split("=")[0].strip().lower() for spec in extra}
    as_imported = {"prometheus-client": "prometheus_client"}
    assert {as_imported.get(name, name) for name in names} == set(SERVER_MODULES)
    # ... and the base install's own dependencies are none of them.
    base = {spec.split(">")[0].lower() for spec in pyproject["project"]["dependencies"]}
    assert base == {"pyyaml"}


@pytest.mark.parametrize("command", SERVER_COMMANDS)
def test_server_command_without_the_extra_names_it_in_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As if Flask were not installed: the one edge patched is the module lookup."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "flask" else real(name, *a)
    )
    assert main([command], {}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"`{command}` needs the server extra" in err and f"pip install '{SERVER_EXTRA}'" in err


# --- the wheel, alone in a fresh venv (system) -----------------------------------------


def venv_bin(home: Path) -> Path:
    """A virtual environment's scripts directory."""
    return home / ("Scripts" if os.name == "nt" else "bin")


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the project's wheel alone: $BRIDGE_WHEEL_VENV, or built here."""
    given = os.environ.get("BRIDGE_WHEEL_VENV")
    if given:
        yield Path(given)
        return
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = (work / "dist").glob("cortex_deploy_bridge-*.whl")
    venv.create(work / "venv", with_pip=True)
    python = venv_bin(work / "venv") / "python"
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet", "install", wheel],
        check=True,
        timeout=300,
    )
    yield work / "venv"


def run_installed(
    home: Path, *argv: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """The venv's console script, with only ``env`` (and a PATH) around it."""
    return subprocess.run(
        [str(venv_bin(home) / "cortex-deploy-bridge"), *argv],
        env={"PATH": os.environ.get("PATH", ""), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.system
def test_wheel_alone_holds_the_project_and_pyyaml_only(wheel_venv: Path) -> None:
    listed = subprocess.run(
        [str(venv_bin(wheel_venv) / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert names - {"pip", "setuptools"} == {"cortex-deploy-bridge", "pyyaml"}


@pytest.mark.system
def test_wheel_alone_runs_send_and_action(
    wheel_venv: Path, tmp_path: Path, cortex: FakeCortex
) -> None:
    for argv in (["--help"], ["send", "--help"], ["action", "--help"]):
        done = run_installed(wheel_venv, *argv, env={}, cwd=tmp_path)
        assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
    sent = run_installed(wheel_venv, *SEND_ARGV, env=send_env(cortex), cwd=tmp_path)
    assert sent.returncode == 0, sent.stderr
    action = run_installed(wheel_venv, "action", env=runner_env(tmp_path, cortex), cwd=tmp_path)
    assert action.returncode == 0, action.stdout + action.stderr
    deploys = {d["entity"]: d for d in cortex.all_deploys()}
    assert set(deploys) == {"send-entity", "action-entity"}
    assert sent.stdout.split() == [deploys["send-entity"]["uuid"]]
    assert deploys["action-entity"]["customData"]["train"] == 7
    output = (tmp_path / "output").read_text(encoding="utf-8")
    assert deploys["action-entity"]["uuid"] in output
    # The same send again finds its record: nothing doubled.
    again = run_installed(wheel_venv, *SEND_ARGV, env=send_env(cortex), cwd=tmp_path)
    assert again.returncode == 0 and len(cortex.all_deploys()) == 2, again.stderr


@pytest.mark.system
@pytest.mark.parametrize("command", ["serve", "worker", "sync", "deliveries"])
def test_wheel_alone_server_commands_name_the_extra(
    wheel_venv: Path, tmp_path: Path, command: str
) -> None:
    done = run_installed(wheel_venv, command, env={}, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert f"pip install '{SERVER_EXTRA}'" in done.stderr
