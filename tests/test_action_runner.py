"""The composite Action's own code, on what differs between runners.

action.yml's POSIX step is run here with `sh -e` (as the runner runs `shell: sh`) against
stand-in interpreters on PATH; its Windows step (Windows PowerShell) cannot run on this
machine, so its text is checked against the POSIX step's rules. The Python side is run with
Windows-shaped inputs: CRLF in the event file, cortex.yaml and inputs; paths with spaces;
outputs written with LF on every OS. The whole Action under a runner implementation is in
tests/test_action_act.py; the release tree (`release.py action-tree`) is built here too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest
import yaml

from bridge.action.step import tree_paths
from bridge.cli import main
from bridge.fakecortex import FakeCortex
from tests.conftest import TOKEN

ROOT = Path(__file__).resolve().parents[1]
RELEASE_SCRIPT = ROOT / ".github" / "scripts" / "release.py"
SH = shutil.which("sh") or "/bin/sh"
ERROR = re.compile(r"^::error title=Cortex Deploy Bridge::no Python 3\.10 or newer on this runner")
FULL_SHA = "0123456789abcdef0123456789abcdef01234567"


def action_steps() -> dict[str, dict[str, Any]]:
    """action.yml's steps by id."""
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    return {step["id"]: step for step in action["runs"]["steps"]}


def fake_python(directory: Path, name: str, *, probe: int) -> None:
    """An interpreter stand-in: ``-c`` (the version probe) exits ``probe``; a run prints its
    arguments one per line and exits 7 (a code the step must pass through)."""
    path = directory / name
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -c ]; then exit {probe}; fi\n'
        f"echo 'ran {name}'\n"
        'for arg in "$@"; do echo "arg:$arg"; done\n'
        "exit 7\n",
        encoding="utf-8",
    )
    path.chmod(0o755)


def run_posix_step(
    tmp_path: Path, interpreters: dict[str, int], *, action_path: str = "/actions/v0"
) -> subprocess.CompletedProcess[str]:
    """action.yml's POSIX step under ``sh -e``, PATH holding only ``interpreters``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, probe in interpreters.items():
        fake_python(bin_dir, name, probe=probe)
    script = tmp_path / "step.sh"
    script.write_text(action_steps()["posix"]["run"], encoding="utf-8")
    return subprocess.run(
        [SH, "-e", str(script)],
        env={"PATH": str(bin_dir), "GITHUB_ACTION_PATH": action_path},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("interpreters", "chosen"),
    [
        pytest.param({"python3": 0, "python": 0}, "python3", id="python3-first"),
        pytest.param({"python3": 1, "python": 0}, "python", id="python3-too-old"),
        pytest.param({"python": 0}, "python", id="no-python3"),
        # The macOS /usr/bin/python3 stub without the developer tools, or Windows' Store
        # alias, exits non-zero on any code: the next candidate is tried.
        pytest.param({"python3": 9009, "python": 0}, "python", id="python3-stub"),
    ],
)
def test_posix_step_runs_the_first_python_310(
    tmp_path: Path, interpreters: dict[str, int], chosen: str
) -> None:
    done = run_posix_step(tmp_path, interpreters)
    lines = done.stdout.splitlines()
    assert lines[0] == f"ran {chosen}"
    assert lines[1:] == ["arg:-I", "arg:-X", "arg:utf8", "arg:/actions/v0/bridge/action/step.py"]
    assert done.returncode == 7  # the bridge's exit code is the step's


@pytest.mark.parametrize(
    "interpreters",
    [
        pytest.param({}, id="none"),
        pytest.param({"python3": 1, "python": 1}, id="all-too-old"),
    ],
)
def test_posix_step_without_python_310_fails_in_one_error_line(
    tmp_path: Path, interpreters: dict[str, int]
) -> None:
    done = run_posix_step(tmp_path, interpreters)
    assert done.returncode == 2
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    assert ERROR.match(line) and "actions/setup-python" in line


def test_posix_step_keeps_a_path_with_spaces_whole(tmp_path: Path) -> None:
    path = "/home/runner/work/_actions/my org/cortex deploy/v0"
    done = run_posix_step(tmp_path, {"python3": 0}, action_path=path)
    assert f"arg:{path}/bridge/action/step.py" in done.stdout.splitlines()


def test_windows_step_follows_the_posix_steps_rules() -> None:
    """The Windows PowerShell step cannot run here: its text says the same as the POSIX one."""
    posix, windows = action_steps()["posix"], action_steps()["windows"]
    script = windows["run"]
    assert windows["env"] == posix["env"]
    # python3, python, then the py launcher asking for a Python 3; the first 3.10+ wins.
    assert "foreach ($candidate in 'python3', 'python', 'py')" in script
    assert "if ($candidate -eq 'py') { $launcher = @('-3') }" in script
    probe = "-c 'import sys; sys.exit(sys.version_info < (3, 10))'"
    assert probe in script and probe in posix["run"]
    # The tree's step.py by the translated variable, with Windows separators; UTF-8 both ways.
    assert "Join-Path $env:GITHUB_ACTION_PATH 'bridge\\action\\step.py'" in script
    assert "& $found.Source @launcher -I -X utf8 $step\n  exit $LASTEXITCODE" in (
        script.replace("          ", "  ")
    )
    assert "[Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false }" in script
    # A native command's stderr must not stop the script (Windows PowerShell 5.1 turns it
    # into an error record, and the runner prepends $ErrorActionPreference = 'stop').
    assert script.startswith("$ErrorActionPreference = 'Continue'\n")
    error = [line for line in script.splitlines() if "::error" in line]
    (line,) = error
    said = re.search(r'"(::error[^"]*)"', line)
    assert said and ERROR.match(said[1]) and "py -3" in said[1]
    assert said[1].replace(", py -3", "") in posix["run"]
    assert script.rstrip().endswith("exit 2")


@pytest.mark.parametrize(
    ("path", "root"),
    [
        pytest.param(
            PureWindowsPath(
                "C:\\actions runner\\_work\\_actions\\acme\\cortex-deploy-bridge\\v0"
                "\\bridge\\action\\step.py"
            ),
            PureWindowsPath("C:\\actions runner\\_work\\_actions\\acme\\cortex-deploy-bridge\\v0"),
            id="windows",
        ),
        pytest.param(
            PurePosixPath("/__w/_actions/acme/cortex-deploy-bridge/v0/bridge/action/step.py"),
            PurePosixPath("/__w/_actions/acme/cortex-deploy-bridge/v0"),
            id="container-job",
        ),
        pytest.param(
            PurePosixPath("/Users/runner/work/_actions/a b/c d/v0/bridge/action/step.py"),
            PurePosixPath("/Users/runner/work/_actions/a b/c d/v0"),
            id="macos-spaces",
        ),
    ],
)
def test_step_finds_its_tree_from_the_runners_spelling(path: Any, root: Any) -> None:
    assert tree_paths(path) == (root, root / "_vendor")


# --- the Python side with what a Windows checkout and runner hand it -----------------------


@pytest.fixture
def windows_shaped(tmp_path: Path, cortex: FakeCortex) -> dict[str, str]:
    """A runner's variables whose files have CRLF line ends (a Windows checkout's)."""
    workspace = tmp_path / "work space"
    workspace.mkdir()
    (workspace / "cortex.yaml").write_bytes(b"info:\r\n  x-cortex-tag: from-descriptor\r\n")
    event = tmp_path / "event file.json"
    body = {"head_commit": {"id": FULL_SHA, "message": "Ship it\r\n\r\nbody"}}
    event.write_bytes(json.dumps(body, indent=2).replace("\n", "\r\n").encode())
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": FULL_SHA,
        "GITHUB_RUN_ID": "77",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_ACTOR": "mona",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(tmp_path / "output file"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary file.md"),
        "INPUT_CORTEX_API_TOKEN": TOKEN,
        "INPUT_CORTEX_API_URL": cortex.url,
        "INPUT_ENVIRONMENT": "production",
        "INPUT_TYPE": "DEPLOY",
        "INPUT_CUSTOM_DATA": "version: 1.4.2\r\nregion: eu\r\n",
        "INPUT_FAIL_ON_ERROR": "true",
        "INPUT_DRY_RUN": "false",
    }


def test_crlf_files_and_inputs_read_as_on_linux(
    windows_shaped: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["action"], windows_shaped) == 0, capsys.readouterr()
    (deploy,) = cortex.all_deploys()
    assert deploy["entity"] == "from-descriptor"  # cortex.yaml with CRLF
    body = deploy
    assert body["title"] == "Ship it"  # the event file's first line, no \r
    assert body["customData"]["version"] == "1.4.2" and body["customData"]["region"] == "eu"
    # The files the runner reads get LF only: on Windows a CRLF would stay inside a value.
    output = Path(windows_shaped["GITHUB_OUTPUT"]).read_bytes()
    summary = Path(windows_shaped["GITHUB_STEP_SUMMARY"]).read_bytes()
    assert b"\r" not in output and b"\r" not in summary
    assert b"deploy-uuid<<" in output and b"| from-descriptor |" in summary


def test_crlf_entity_list_splits_like_lf(
    windows_shaped: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    windows_shaped["INPUT_ENTITY_TAG"] = "alpha\r\nbeta\r\n"
    assert main(["action"], windows_shaped) == 0, capsys.readouterr()
    assert sorted(d["entity"] for d in cortex.all_deploys()) == ["alpha", "beta"]


# --- the release's tree: written from this checkout, run on a bare Python ---------------


@pytest.fixture(scope="module")
def action_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``release.py action-tree`` of this checkout, in a directory whose name has a space."""
    tree = tmp_path_factory.mktemp("tree") / "cortex deploy bridge"
    done = subprocess.run(
        [sys.executable, str(RELEASE_SCRIPT), "action-tree", str(tree)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tree


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with nothing installed (no pip even), like a runner's own."""
    home = tmp_path_factory.mktemp("bare")
    venv.create(home, with_pip=False, symlinks=os.name != "nt")
    return home / ("Scripts" if os.name == "nt" else "bin")


def test_action_tree_holds_the_checkout_and_pure_python_pyyaml(action_tree: Path) -> None:
    assert (action_tree / "action.yml").read_bytes() == (ROOT / "action.yml").read_bytes()
    assert (action_tree / "bridge" / "action" / "step.py").is_file()
    assert (action_tree / "templates" / "cortex-deploy.yml").is_file()
    vendored = action_tree / "_vendor"
    assert (vendored / "yaml" / "__init__.py").is_file()
    assert (vendored / "PyYAML.LICENSE").is_file()
    pin = (ROOT / "requirements" / "action.txt").read_text(encoding="utf-8")
    (line,) = [x for x in (vendored / "vendor.txt").read_text().splitlines() if "==" in x]
    # The pin's line, its --hash continuation aside (pip-compile writes `pyyaml==6.0.4 \\`).
    assert line.lower() in [x.rstrip("\\ ").lower() for x in pin.splitlines()]
    # Nothing compiled (one Python on one platform), nothing the checkout ignores.
    assert not [p for p in action_tree.rglob("*") if p.suffix in {".so", ".pyd", ".pyc"}]
    assert not (action_tree / ".venv").exists() and not (action_tree / ".git").exists()


def test_action_tree_refuses_a_used_directory(tmp_path: Path) -> None:
    (tmp_path / "old").write_text("x")
    for target in (tmp_path, ROOT / "tree-inside"):
        done = subprocess.run(
            [sys.executable, str(RELEASE_SCRIPT), "action-tree", str(target)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert not (ROOT / "tree-inside").exists()


def test_action_tree_step_runs_on_a_bare_python(
    action_tree: Path, bare_python: Path, tmp_path: Path, cortex: FakeCortex
) -> None:
    """The POSIX step from the tree, a bare Python first on PATH: YAML from _vendor/ only."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "cortex.yml").write_text("info:\n  x-cortex-tag: payments-api\n")
    script = tmp_path / "step.sh"
    script.write_text(action_steps()["posix"]["run"], encoding="utf-8")
    env = {
        "PATH": f"{bare_python}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "GITHUB_ACTION_PATH": str(action_tree),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": FULL_SHA,
        "GITHUB_RUN_ID": "5",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(tmp_path / "out"),
        "INPUT_CORTEX_API_TOKEN": TOKEN,
        "INPUT_CORTEX_API_URL": cortex.url,
        "INPUT_TYPE": "DEPLOY",
        "INPUT_CUSTOM_DATA": "release: {train: 7}",
        # What -I must keep out: a PYTHONPATH with another `bridge` and `yaml`.
        "PYTHONPATH": str(tmp_path / "shadow"),
    }
    (tmp_path / "shadow" / "bridge").mkdir(parents=True)
    (tmp_path / "shadow" / "bridge" / "__init__.py").write_text("raise SystemExit(99)\n")
    done = subprocess.run(
        [SH, "-e", str(script)],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (deploy,) = cortex.all_deploys()
    assert deploy["entity"] == "payments-api"
    assert deploy["customData"]["release"] == {"train": 7}
    assert f"::add-mask::{TOKEN}" in done.stdout.splitlines()


@pytest.mark.parametrize("where", ["custom-data", "cortex.yaml"])
def test_checkout_without_pyyaml_names_the_fix_in_one_line(
    bare_python: Path, tmp_path: Path, where: str
) -> None:
    """`uses: ./` (or @main) runs the checkout, which has no _vendor/: YAML needs PyYAML."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    env = {
        "PATH": f"{bare_python}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "GITHUB_ACTION_PATH": str(ROOT),
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": FULL_SHA,
        "GITHUB_WORKSPACE": str(workspace),
        "INPUT_CORTEX_API_TOKEN": TOKEN,
        "INPUT_TYPE": "DEPLOY",
        "INPUT_DRY_RUN": "true",
    }
    if where == "custom-data":
        env["INPUT_CUSTOM_DATA"] = "team: payments"
    else:
        (workspace / "cortex.yaml").write_text("info:\n  x-cortex-tag: a\n")
    script = tmp_path / "step.sh"
    script.write_text(action_steps()["posix"]["run"], encoding="utf-8")
    done = subprocess.run(
        [SH, "-e", str(script)],
        env=env,
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (error,) = [line for line in done.stdout.splitlines() if line.startswith("::error")]
    assert where in error and "pip install PyYAML" in error


def interpreters_here() -> dict[tuple[int, int], str]:
    """The real CPython interpreters this machine has, by version (pyenv's, or on PATH)."""
    found: dict[tuple[int, int], str] = {}
    candidates = [shutil.which(f"python3.{minor}") for minor in range(6, 16)]
    candidates += [str(p) for p in Path.home().glob(".pyenv/versions/*/bin/python[23].*[0-9]")]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [
                candidate,
                "-c",
                "import sys; print('%d %d %s' % (sys.version_info[:2] + (sys.executable,)))",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip():
            # The interpreter itself (a pyenv shim needs pyenv on PATH, and the step's has not).
            major, minor, executable = probe.stdout.strip().split(" ", 2)
            found.setdefault((int(major), int(minor)), executable)
    return found


@pytest.mark.system  # every Python on this machine, each a process
def test_tree_runs_on_each_python_310_plus_here_after_an_older_python3(
    action_tree: Path, tmp_path: Path
) -> None:
    """Real interpreters: an old `python3` (3.9, 2.7...) is passed over for `python`, and the
    tree's code (with its vendored PyYAML) runs on every 3.10+ this machine has."""
    found = interpreters_here()
    old = [path for version, path in found.items() if version < (3, 10)]
    new = {version: path for version, path in found.items() if version >= (3, 10)}
    if not old or not new:
        pytest.skip(f"needs a Python older than 3.10 and one 3.10+ here; found {sorted(found)}")
    script = tmp_path / "step.sh"
    script.write_text(action_steps()["posix"]["run"], encoding="utf-8")
    for version, path in sorted(new.items()):
        bin_dir = tmp_path / f"bin-{version[0]}.{version[1]}"
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(old[0])
        (bin_dir / "python").symlink_to(path)
        done = subprocess.run(
            [SH, "-e", str(script)],
            env={
                "PATH": str(bin_dir),
                "GITHUB_ACTION_PATH": str(action_tree),
                "GITHUB_ACTIONS": "true",
                "GITHUB_REPOSITORY": "acme/payments-api",
                "GITHUB_SHA": FULL_SHA,
                "GITHUB_WORKSPACE": str(tmp_path),
                "INPUT_CORTEX_API_TOKEN": TOKEN,
                "INPUT_ENTITY_TAG": "payments-api",
                "INPUT_TYPE": "DEPLOY",
                "INPUT_DRY_RUN": "true",
                "INPUT_CUSTOM_DATA": f"python: {{minor: {version[1]}}}",
            },
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (version, done.stdout + done.stderr)
        assert f'"minor": {version[1]}' in done.stdout, (version, done.stdout)
