"""Packaging: the Dockerfiles, action.yml, the workflows and the GitLab templates.

These check the files users and GitHub read directly, so a typo there fails here and not in
a user's pipeline. External linters (hadolint, check-jsonschema) are run when installed (the
`dev` extra brings both) and the test says so when it skips. No network.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ACTION = ROOT / "action.yml"
DOCKERFILE = ROOT / "Dockerfile"
RELAY_DOCKERFILE = ROOT / "Dockerfile.relay"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = ROOT / "requirements" / "action.txt"
SERVER_REQUIREMENTS = ROOT / "requirements" / "server.txt"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GITLAB_TEMPLATE = ROOT / "templates" / "cortex-deploy.yml"
COMMAND = "cortex-deploy-bridge"

# The action's inputs and their defaults, as PRODUCT.md ("Action (action.yml, composite)")
# fixes them. None: no default, an empty input falls back to the workflow's context.
INPUT_DEFAULTS: dict[str, str | None] = {
    "cortex-api-token": None,
    "cortex-api-url": None,  # empty: CORTEX_API_URL, else the public Cortex (inputs.py)
    "entity-tag": None,
    "environment": None,
    "type": "auto",
    "title": None,
    "sha": None,
    "url": None,
    "deployer-name": None,
    "deployer-email": None,
    "timestamp": None,
    "custom-data": None,
    "fail-on-error": "true",
    "dry-run": "false",
}
OUTPUTS = {"deploy-uuid", "payload"}
KEBAB = re.compile(r"[a-z]+(-[a-z]+)*")
INPUT_REF = re.compile(r"\$\[\[\s*inputs\.([\w-]+)\s*\]\]")


def find_tool(name: str) -> str | None:
    """The executable beside this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """The tool's path, or skip the test naming what is missing."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]' brings it)")
    return path


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a linter from the project root, capturing its report."""
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def check_schema(schema: str, *files: Path) -> None:
    """Validate files against one of check-jsonschema's built-in schemas."""
    tool = require_tool("check-jsonschema")
    done = run_tool(tool, "--builtin-schema", schema, *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr


def load_pyproject() -> dict[str, Any]:
    """pyproject.toml, parsed (tomllib, or tomli on Python 3.10)."""
    if sys.version_info >= (3, 11):
        import tomllib as toml
    else:  # Python 3.10: pytest depends on tomli there
        toml = pytest.importorskip("tomli", reason="no TOML parser (tomllib or tomli)")
    return dict(toml.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")))


def normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def action() -> dict[str, Any]:
    """action.yml, parsed."""
    data = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def test_dockerfile_passes_hadolint() -> None:
    tool = require_tool("hadolint")
    done = run_tool(tool, str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_entrypoint_is_the_action_command() -> None:
    entrypoints = [args for keyword, args in dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert entrypoints, "Dockerfile has no ENTRYPOINT"
    # Exec form (JSON): no shell between GitHub and the command, signals reach it.
    assert json.loads(entrypoints[-1]) == [COMMAND, "action"]
    scripts = load_pyproject()["project"]["scripts"]
    assert COMMAND in scripts, f"[project.scripts] does not declare {COMMAND!r}"


def test_dockerfile_keeps_the_default_root_user() -> None:
    # A job's mounted checkout and output files belong to the host's user: root writes them
    # whatever the uid (GitHub's "Dockerfile support", USER, for `uses: docker://` steps).
    users = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    assert users == []


def test_dockerfile_installs_pinned_requirements_then_the_project_alone() -> None:
    instructions = dockerfile_instructions()
    copies = " ".join(args for keyword, args in instructions if keyword == "COPY")
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert "requirements/action.txt" in copies
    assert any("--requirement" in run or " -r " in run for run in runs)
    assert any(re.search(r"pip install --no-deps --no-cache-dir \.(\s|$)", run) for run in runs)
    # The server extras must never reach the image.
    assert not any("[server]" in run or "[dev]" in run for run in runs)


def dockerignored(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching rule wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for negated, pattern in rules:
        globs = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatchcase(prefix, glob) for prefix in prefixes for glob in globs):
            ignored = not negated
    return ignored


def dockerignore_rules() -> list[tuple[bool, str]]:
    """(negated, pattern) per rule of .dockerignore."""
    rules = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, line.lstrip("!").strip("/")))
    return rules


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        pytest.param("pyproject.toml", False, id="pyproject"),
        pytest.param("README.md", False, id="readme"),
        pytest.param("bridge/__init__.py", False, id="package"),
        pytest.param("bridge/py.typed", False, id="py.typed"),
        pytest.param("bridge/schemas/config.json", False, id="package-data"),
        pytest.param("requirements/action.txt", False, id="requirements"),
        pytest.param("requirements/server.txt", False, id="relay-requirements"),
        pytest.param(".env.example", True, id="dotenv-example"),
        pytest.param("deploy/kubernetes/kustomization.yaml", True, id="deploy"),
        pytest.param(".git/config", True, id="git"),
        pytest.param(".venv/bin/python", True, id="venv"),
        pytest.param("tests/conftest.py", True, id="tests"),
        pytest.param("bridge.db", True, id="database"),
        pytest.param(".env", True, id="dotenv"),
        pytest.param("bridge/__pycache__/cli.cpython-312.pyc", True, id="bytecode"),
        pytest.param("cortex_deploy_bridge.egg-info/PKG-INFO", True, id="egg-info"),
    ],
)
def test_dockerignore_lets_in_only_the_build_inputs(path: str, ignored: bool) -> None:
    assert dockerignored(path, dockerignore_rules()) is ignored


def read_pins(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of a requirements file; every line must be ``==``.

    A requirement's ``--hash`` options (on continuation lines) are not part of the pin.
    """
    pins = {}
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for raw in text.splitlines():
        line = re.sub(r"\s--hash=\S+", "", raw.split("#", 1)[0]).strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)", line)
        assert match, f"{path.name}: not pinned with ==: {line!r}"
        pins[normalize(match[1])] = match[2]
    return pins


def test_action_requirements_pin_exactly_the_runtime_dependencies() -> None:
    from packaging.requirements import Requirement

    declared = {
        normalize(req.name): req
        for req in map(Requirement, load_pyproject()["project"]["dependencies"])
    }
    pins = read_pins(REQUIREMENTS)
    assert set(pins) == set(declared)
    for name, version in pins.items():
        assert declared[name].specifier.contains(version), (
            f"{name}=={version} is outside pyproject's {declared[name]}"
        )


# --- Dockerfile.relay -------------------------------------------------------------------

RELAY_UID = "10001"


def relay_instruction(keyword: str) -> list[str]:
    """The arguments of every ``keyword`` instruction of Dockerfile.relay."""
    return [args for kw, args in dockerfile_instructions(RELAY_DOCKERFILE) if kw == keyword]


def test_relay_dockerfile_passes_hadolint() -> None:
    tool = require_tool("hadolint")
    done = run_tool(tool, str(RELAY_DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_relay_dockerfile_uses_the_action_image_base() -> None:
    # One pinned slim base for both images: Python patch releases reach them together.
    (base,) = relay_instruction("FROM")
    assert [args for kw, args in dockerfile_instructions() if kw == "FROM"] == [base]
    # By digest too (tests/test_supply_chain.py): python:3.12-slim-bookworm@sha256:...
    assert re.fullmatch(r"python:3\.\d+(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_relay_dockerfile_runs_serve_on_8080_as_non_root() -> None:
    (entrypoint,) = relay_instruction("ENTRYPOINT")
    (cmd,) = relay_instruction("CMD")
    assert json.loads(entrypoint) == [COMMAND]
    assert json.loads(cmd) == ["serve", "--bind", "0.0.0.0:8080"]
    assert relay_instruction("EXPOSE") == ["8080"]
    # Numeric, so Kubernetes' runAsNonRoot can verify it; the last USER wins.
    assert relay_instruction("USER")[-1] == f"{RELAY_UID}:{RELAY_UID}"
    runs = " ".join(relay_instruction("RUN"))
    assert f"--uid {RELAY_UID}" in runs


def test_relay_cmd_is_a_valid_serve_command_line() -> None:
    if not cli_available():
        pytest.skip("bridge.cli is not written yet")
    from bridge.cli import build_parser

    (cmd,) = relay_instruction("CMD")
    args = build_parser("serve").parse_args(json.loads(cmd))
    assert (args.command, args.bind) == ("serve", "0.0.0.0:8080")


def test_relay_database_defaults_to_sqlite_in_a_volume_the_user_owns() -> None:
    assert relay_instruction("VOLUME") == ['["/data"]']
    from bridge.config import load_config

    # The default URL (sqlite:///bridge.db) is relative to the working directory: /data.
    assert relay_instruction("WORKDIR")[-1] == "/data"
    assert load_config(None, {}).database == "sqlite:///bridge.db"
    # Not set in the image, so that BRIDGE_DATABASE_URL_FILE needs no emptying of it.
    assert "BRIDGE_DATABASE_URL" not in " ".join(relay_instruction("ENV"))
    runs = relay_instruction("RUN")
    assert any(f"chown {RELAY_UID}:{RELAY_UID} /data" in run for run in runs)


def test_relay_healthcheck_asks_healthz_without_curl() -> None:
    (check,) = relay_instruction("HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request.urlopen('http://127.0.0.1:8080/healthz'" in argv[2]
    assert "--timeout=" in options
    # The check's own code must run: compile it as the image's Python would.
    compile(argv[2], "<healthcheck>", "exec")


def test_relay_installs_pinned_server_requirements_then_the_project_alone() -> None:
    copies = " ".join(relay_instruction("COPY"))
    runs = relay_instruction("RUN")
    assert "requirements/server.txt" in copies
    assert any("--requirement /tmp/requirements-server.txt" in run for run in runs)
    assert any(re.search(r"pip install --no-deps --no-cache-dir \.(\s|$)", run) for run in runs)
    assert not any("[server]" in run or "[dev]" in run for run in runs)


def test_server_requirements_pin_the_server_extra_and_pyyaml() -> None:
    from packaging.requirements import Requirement

    project = load_pyproject()["project"]
    pins = read_pins(SERVER_REQUIREMENTS)
    top = project["dependencies"] + project["optional-dependencies"]["server"]
    for req in map(Requirement, top):
        name = normalize(req.name)
        assert name in pins, f"server.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {req}"
        for extra in req.extras:  # psycopg[binary] -> psycopg-binary
            assert normalize(f"{req.name}-{extra}") in pins, f"{req} needs its {extra} package"
    # The two images run the same PyYAML.
    assert pins["pyyaml"] == read_pins(REQUIREMENTS)["pyyaml"]
    assert "cortex-deploy-bridge" not in pins


def installed_closure(roots: list[str], environment: dict[str, str]) -> dict[str, str] | None:
    """Installed ``{name: version}`` that ``roots`` need under ``environment``; None if absent."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        key = (normalize(req.name), frozenset(req.extras))
        if key in visited:
            continue
        visited.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            return None
        found[key[0]] = dist.version
        extras = ["", *sorted(req.extras)]
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or any(
                sub.marker.evaluate({**environment, "extra": extra}) for extra in extras
            ):
                todo.append(sub)
    return found


def test_server_requirements_are_closed_under_dependencies() -> None:
    # What `pip install '.[server]'` brings on the image's platform (Linux, Python 3.12), from
    # the metadata of the installed packages; comparable only where those are the pinned ones.
    project = load_pyproject()["project"]
    environment = {
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_machine": "x86_64",
    }
    roots = project["dependencies"] + project["optional-dependencies"]["server"]
    closure = installed_closure(roots, environment)
    if closure is None:
        pytest.skip("the server extra is not installed here (pip install -e '.[server]')")
    pins = read_pins(SERVER_REQUIREMENTS)
    # A difference fails: `.ci/run` installs with `-c requirements/server.txt`, so a version
    # here that is not the pin means the pin no longer installs (yanked, or out of the
    # extra's range) or this environment was made another way; skipping hid a stale pin.
    differ = {
        name: (pins[name], version)
        for name, version in closure.items()
        if name in pins and pins[name] != version
    }
    assert not differ, (
        f"installed versions differ from requirements/server.txt (pin, installed): {differ}; "
        "install with `pip install -e '.[dev]' -c requirements/server.txt` (as .ci/run does), "
        "or refresh the pins as that file says"
    )
    assert set(pins) == set(closure), "server.txt pins more or less than the extra needs"


# --- action.yml -------------------------------------------------------------------------


def test_action_metadata_matches_github_schema() -> None:
    check_schema("vendor.github-actions", ACTION)


def test_action_is_composite_with_one_step_per_shell(action: dict[str, Any]) -> None:
    runs = action["runs"]
    # Composite: no image to build or pull, so macOS, Windows and runners without Docker run it.
    assert runs["using"] == "composite"
    steps = {step["id"]: step for step in runs["steps"]}
    assert set(steps) == {"posix", "windows"}
    assert steps["posix"]["shell"] == "sh"
    assert steps["posix"]["if"] == "runner.os != 'Windows'"
    assert steps["windows"]["shell"] == "powershell"
    assert steps["windows"]["if"] == "runner.os == 'Windows'"
    for step in steps.values():
        # The tree's own code, found through the variable a container: job translates.
        assert "GITHUB_ACTION_PATH" in step["run"]
        assert "github.action_path" not in step["run"]
        assert "pip" not in step["run"] and "docker" not in step["run"].lower()
        assert "${{" not in step["run"], "inputs reach the script through env, never inline"
    assert {"name", "description", "branding"} <= set(action)
    assert {"icon", "color"} <= set(action["branding"])


def test_action_steps_pass_every_input_as_input_underscored(action: dict[str, Any]) -> None:
    wanted = {
        f"INPUT_{name.upper().replace('-', '_')}": f"${{{{ inputs.{name} }}}}"
        for name in action["inputs"]
    }
    for step in action["runs"]["steps"]:
        assert step["env"] == wanted, step["id"]


def test_action_inputs_are_exactly_the_contract(action: dict[str, Any]) -> None:
    assert set(action["inputs"]) == set(INPUT_DEFAULTS)


def test_action_inputs_are_kebab_case_and_described(action: dict[str, Any]) -> None:
    for name, spec in action["inputs"].items():
        assert KEBAB.fullmatch(name), f"input {name!r} is not kebab-case"
        description = spec.get("description", "")
        assert isinstance(description, str)
        assert len(description.split()) >= 5, f"input {name!r} is not described"


@pytest.mark.parametrize(("name", "default"), list(INPUT_DEFAULTS.items()))
def test_action_input_default(action: dict[str, Any], name: str, default: str | None) -> None:
    spec = action["inputs"][name]
    description = spec["description"]
    assert spec.get("required", False) is (name == "cortex-api-token")
    if default is None:
        # Empty means "from the context": no default the runner would pass instead.
        assert spec.get("default", "") == ""
        if name != "cortex-api-token":
            assert "empty" in description.lower(), f"{name}: says nothing of an empty value"
    else:
        # A quoted string: YAML's true/false would reach the container as "True".
        assert spec.get("default") == default
        assert f"`{default}`" in description, f"{name}: description does not state {default!r}"


def test_action_outputs(action: dict[str, Any]) -> None:
    outputs = action["outputs"]
    assert set(outputs) == OUTPUTS
    for name, spec in outputs.items():
        assert spec.get("description"), f"output {name!r} is not described"
        # A composite action's output is one of its steps' (whichever ran on this OS).
        assert spec["value"] == (
            f"${{{{ steps.posix.outputs.{name} || steps.windows.outputs.{name} }}}}"
        )


def cli_available() -> bool:
    """Whether the command's module imports (the console script may not be installed)."""
    try:
        import bridge.cli  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def run_cli(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console script, run as its generated wrapper does: ``sys.exit(run())``."""
    code = "import sys; from bridge.cli import run; sys.exit(run())"
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_flags_mirror_the_action_inputs(tmp_path: Path) -> None:
    if not cli_available():
        pytest.skip("bridge.cli is not written yet")
    done = run_cli("send", "--help", env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    flags = set(re.findall(r"--[a-z][a-z-]*", done.stdout))
    # The token is a secret: only from the environment, never a flag (PRODUCT.md).
    wanted = {f"--{name}" for name in INPUT_DEFAULTS} - {"--cortex-api-token"}
    assert wanted <= flags, f"send lacks {sorted(wanted - flags)}"


def runner_env(action: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    """INPUT_* as the runner sets them: every given or defaulted input, hyphens kept."""
    env = {}
    for name, spec in action["inputs"].items():
        value = given.get(name, spec.get("default", ""))
        if value != "" or name in given:
            env[f"INPUT_{name.upper()}"] = str(value)
    return env


def read_outputs(path: Path) -> dict[str, str]:
    """Step outputs from a GITHUB_OUTPUT file (``name=value`` and heredoc blocks)."""
    outputs, lines = {}, iter(path.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, _, delimiter = line.partition("<<")
            outputs[name] = "\n".join(iter(lines.__next__, delimiter))
        elif "=" in line:
            name, _, value = line.partition("=")
            outputs[name] = value
    return outputs


def test_entrypoint_reads_every_action_input(action: dict[str, Any], tmp_path: Path) -> None:
    if not cli_available():
        pytest.skip("bridge.cli is not written yet")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"head_commit": {"message": "from the event"}}))
    output = tmp_path / "output"
    given = {
        "cortex-api-token": "ctx-dummy-token-7d2c",
        "entity-tag": "alpha, beta",
        "environment": "staging",
        "type": "DEPLOY",  # not auto: a dry run with auto would read history from Cortex
        "title": "Release 1.4.2",
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "url": "https://deploys.example.com/1",
        "deployer-name": "Jane Doe",
        "deployer-email": "jane@example.com",
        "timestamp": "2024-05-14T09:11:47Z",
        "custom-data": "version: 1.4.2",
        "dry-run": "true",
    }
    # A clean environment: the runner's own GITHUB_* (when this runs in CI) must not leak in.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": "f" * 40,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "42",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_OUTPUT": str(output),
        **runner_env(action, given),
    }
    done = run_cli("action", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # The token appears once, in its own ::add-mask:: command, and nowhere else.
    shown = [line for line in done.stdout.splitlines() if not line.startswith("::add-mask::")]
    assert f"::add-mask::{given['cortex-api-token']}" in done.stdout.splitlines()
    assert not any(given["cortex-api-token"] in line for line in shown)
    outputs = read_outputs(output)
    assert outputs["deploy-uuid"] == ""  # a dry run records nothing
    payloads = json.loads(outputs["payload"])
    assert [p["customData"]["bridge"]["idempotencyKey"].rsplit(":", 1)[-1] for p in payloads] == [
        "alpha",
        "beta",
    ]
    for payload in payloads:
        assert payload["title"] == given["title"]
        assert payload["sha"] == given["sha"]
        assert payload["environment"] == given["environment"]
        assert payload["url"] == given["url"]
        assert payload["type"] == "DEPLOY"
        assert payload["timestamp"] == given["timestamp"]
        assert payload["deployer"] == {"name": "Jane Doe", "email": "jane@example.com"}
        assert payload["customData"]["version"] == "1.4.2"


# --- workflows --------------------------------------------------------------------------


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_workflow_matches_github_schema(workflow: Path) -> None:
    check_schema("vendor.github-workflows", workflow)


# --- GitLab template (a CI/CD component) ------------------------------------------------


def load_documents(path: Path) -> list[Any]:
    """Every YAML document of a file (a spec:inputs header, then the configuration)."""
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def test_gitlab_template_has_the_catalog_component_layout() -> None:
    # The CI/CD Catalog finds components as templates/<name>.yml or templates/<name>/template.yml.
    components = sorted((ROOT / "templates").glob("*.yml")) + sorted(
        (ROOT / "templates").glob("*/template.yml")
    )
    assert components == [GITLAB_TEMPLATE]
    header, config = load_documents(GITLAB_TEMPLATE)
    assert set(header) == {"spec"} and set(header["spec"]) == {"inputs"}
    assert {".cortex-deploy-report", "record-deploy-to-cortex"} == set(config)


def test_gitlab_template_matches_gitlab_schema(tmp_path: Path) -> None:
    # check-jsonschema reads one document per file: split the spec header from the jobs.
    files = []
    for index, document in enumerate(load_documents(GITLAB_TEMPLATE)):
        file = tmp_path / f"{GITLAB_TEMPLATE.stem}.{index}.json"
        file.write_text(json.dumps(document))
        files.append(file)
    check_schema("vendor.gitlab-ci", *files)


def test_gitlab_template_declares_and_uses_its_inputs() -> None:
    header, config = load_documents(GITLAB_TEMPLATE)
    inputs = header["spec"]["inputs"]
    assert set(inputs) == {
        "deploy-job",
        "stage",
        "entity-tag",
        "environment",
        "type",
        "title",
        "custom-data",
        "fail-on-error",
        "dry-run",
        "image",
    }
    # The deploy job has no sensible default: GitLab refuses the include without it.
    assert "default" not in inputs["deploy-job"]
    assert all("default" in spec for name, spec in inputs.items() if name != "deploy-job")
    assert all(spec.get("description") for spec in inputs.values())
    assert inputs["fail-on-error"] == {
        **inputs["fail-on-error"],
        "type": "boolean",
        "default": True,
    }
    assert inputs["image"]["default"].startswith(f"{IMAGE}:")
    assert set(INPUT_REF.findall(json.dumps(config))) == set(inputs)


def test_gitlab_recording_job_follows_the_deploy_job() -> None:
    _, config = load_documents(GITLAB_TEMPLATE)
    job = config["record-deploy-to-cortex"]
    # needs: with artifacts, so the deploy job's dotenv report reaches this job's variables.
    assert job["needs"] == [{"job": "$[[ inputs.deploy-job ]]", "artifacts": True}]
    assert job["stage"] == "$[[ inputs.stage ]]"
    # The image's entrypoint is the GitHub Action; GitLab must get a shell instead.
    assert job["image"] == {"name": "$[[ inputs.image ]]", "entrypoint": [""]}
    report = config[".cortex-deploy-report"]
    assert report["artifacts"] == {"reports": {"dotenv": "cortex-deploy.env"}}


def as_text(value: Any) -> str:
    """An input's value as GitLab writes it into a string (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def render(value: Any, inputs: dict[str, Any]) -> Any:
    """GitLab's interpolation of ``$[[ inputs.x ]]`` into the configuration's strings."""
    if isinstance(value, str):
        return INPUT_REF.sub(lambda m: as_text(inputs[m[1]]), value)
    if isinstance(value, list):
        return [render(item, inputs) for item in value]
    if isinstance(value, dict):
        return {key: render(item, inputs) for key, item in value.items()}
    return value


def rendered_template(inputs: dict[str, Any]) -> dict[str, Any]:
    """The template's configuration as GitLab includes it with ``inputs``."""
    header, config = load_documents(GITLAB_TEMPLATE)
    defaults = {
        n: spec["default"] for n, spec in header["spec"]["inputs"].items() if "default" in spec
    }
    rendered = render(config, {**defaults, **inputs})
    assert isinstance(rendered, dict)
    return rendered


def run_lines(lines: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A job's script lines under sh, as a GitLab shell runner runs them; stops at a failure."""
    shell = shutil.which("sh")
    if shell is None:
        pytest.skip("no POSIX sh to run the job script")
    done = subprocess.CompletedProcess[str]([], 0, "", "")
    for line in lines:
        done = subprocess.run(
            [shell, "-c", line],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            break
    return done


GITLAB_JOB = {
    "CI_JOB_ID": "4211",
    "CI_JOB_URL": "https://gitlab.example.com/acme/payments-api/-/jobs/4211",
    "CI_JOB_STARTED_AT": "2026-11-23T10:00:00Z",
}


def read_dotenv(path: Path) -> dict[str, str]:
    """A dotenv report as GitLab accepts it: KEY=value lines and nothing else."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*=.+", line) for line in lines), lines
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        pytest.param(
            {"CI_ENVIRONMENT_NAME": "production", "CI_ENVIRONMENT_URL": "https://pay.example.com"},
            {
                "CORTEX_DEPLOY_ENVIRONMENT": "production",
                "CORTEX_DEPLOY_ENVIRONMENT_URL": "https://pay.example.com",
            },
            id="with-environment",
        ),
        pytest.param({"CI_ENVIRONMENT_NAME": "staging"}, {"CORTEX_DEPLOY_ENVIRONMENT": "staging"}),
        pytest.param(
            {"GITLAB_USER_NAME": "Mona Lisa", "GITLAB_USER_EMAIL": "mona@example.com"},
            {
                "CORTEX_DEPLOY_USER_NAME": "Mona Lisa",
                "CORTEX_DEPLOY_USER_EMAIL": "mona@example.com",
            },
            id="who-ran-it",
        ),
        pytest.param({}, {}, id="no-environment"),
    ],
)
def test_gitlab_deploy_report_writes_the_deploy_jobs_variables(
    tmp_path: Path, environment: dict[str, str], expected: dict[str, str]
) -> None:
    report = rendered_template({"deploy-job": "deploy"})[".cortex-deploy-report"]
    env = {"PATH": os.environ.get("PATH", ""), **GITLAB_JOB, **environment}
    done = run_lines(report["after_script"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    written = read_dotenv(tmp_path / report["artifacts"]["reports"]["dotenv"])
    finished = written.pop("CORTEX_DEPLOY_JOB_FINISHED_AT")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", finished)
    assert written == {
        "CORTEX_DEPLOY_JOB_ID": "4211",
        "CORTEX_DEPLOY_JOB_URL": GITLAB_JOB["CI_JOB_URL"],
        "CORTEX_DEPLOY_JOB_STARTED_AT": GITLAB_JOB["CI_JOB_STARTED_AT"],
        **expected,
    }


def run_recording_job(
    tmp_path: Path, inputs: dict[str, Any], report: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[str] | None, dict[str, str]]:
    """The recording job with ``report`` inherited, a stand-in command: (run, argv, its env)."""
    job = rendered_template({"deploy-job": "deploy-production", **inputs})[
        "record-deploy-to-cortex"
    ]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    argv_file, env_file = tmp_path / "argv", tmp_path / "env"
    stub = bindir / COMMAND
    stub.write_text(
        f"#!/bin/sh\nprintf '%s\\0' \"$@\" > '{argv_file}'\n"
        f"env | grep ^CORTEX_DEPLOY_ > '{env_file}'\n"
    )
    stub.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env |= {key: str(value) for key, value in job["variables"].items()} | report
    done = run_lines(job["script"], env, tmp_path)
    if not argv_file.exists():
        return done, None, {}
    seen = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    return done, argv_file.read_text().split("\0")[:-1], seen


REPORT = {
    "CORTEX_DEPLOY_JOB_ID": "4211",
    "CORTEX_DEPLOY_JOB_URL": GITLAB_JOB["CI_JOB_URL"],
    "CORTEX_DEPLOY_JOB_STARTED_AT": "2026-11-23T10:00:00Z",
    "CORTEX_DEPLOY_JOB_FINISHED_AT": "2026-11-23T10:03:10Z",
    "CORTEX_DEPLOY_ENVIRONMENT": "production",
}


@pytest.mark.parametrize(
    ("inputs", "report", "argv"),
    [
        pytest.param(
            {}, REPORT, ["send", "--type", "auto", "--environment", "production"], id="defaults"
        ),
        pytest.param(
            {
                "entity-tag": "payments-api,ledger",
                "environment": "staging",
                "type": "ROLLBACK",
                "title": "Release 1.4.2",
                "custom-data": '{"version": "1.4.2"}',
                "fail-on-error": False,
                "dry-run": True,
            },
            REPORT,
            [
                "send",
                "--type",
                "ROLLBACK",
                "--environment",
                "staging",
                "--entity-tag",
                "payments-api,ledger",
                "--title",
                "Release 1.4.2",
                "--custom-data",
                '{"version": "1.4.2"}',
                "--no-fail-on-error",
                "--dry-run",
            ],
            id="inputs-win",
        ),
        pytest.param(
            {"environment": "review/x", "entity-tag": "a\nb"},
            {k: v for k, v in REPORT.items() if k != "CORTEX_DEPLOY_ENVIRONMENT"},
            ["send", "--type", "auto", "--environment", "review/x", "--entity-tag", "a\nb"],
            id="environment-from-the-input",
        ),
    ],
)
def test_gitlab_recording_job_sends_the_deploy_jobs_deploy(
    tmp_path: Path, inputs: dict[str, Any], report: dict[str, str], argv: list[str]
) -> None:
    done, got, seen = run_recording_job(tmp_path, inputs, report)
    assert done.returncode == 0, done.stderr
    assert got == argv
    # send reads the deploy job's id, page and times from the report, as inherited.
    assert seen == report


@pytest.mark.parametrize(
    ("report", "named"),
    [
        pytest.param({}, "extends: .cortex-deploy-report", id="no-report"),
        pytest.param(
            {k: v for k, v in REPORT.items() if k != "CORTEX_DEPLOY_ENVIRONMENT"},
            "'environment'",
            id="no-environment",
        ),
    ],
)
def test_gitlab_recording_job_refuses_in_one_line_and_sends_nothing(
    tmp_path: Path, report: dict[str, str], named: str
) -> None:
    done, got, _ = run_recording_job(tmp_path, {}, report)
    assert done.returncode == 2
    assert got is None, "send ran"
    assert done.stderr.count("\n") == 1 and named in done.stderr, done.stderr
    assert "'deploy-production'" in done.stderr


# --- the release: one version story -----------------------------------------------------

RELEASE_SCRIPT = ROOT / ".github" / "scripts" / "release.py"
RELEASE_WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CI_WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
# The GitHub repository the docs name (pyproject's Homepage): where the Action, the images
# and the templates are published.
REPOSITORY = "cortex-deploy-bridge/cortex-deploy-bridge"
IMAGE = f"ghcr.io/{REPOSITORY}"
DIGEST = "sha256:" + "0123456789abcdef" * 4


@functools.cache
def load_release_script() -> Any:
    """.github/scripts/release.py, imported from its path (it is not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("release_script", RELEASE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def release() -> Any:
    """The release script, as a module."""
    return load_release_script()


def test_homepage_is_the_repository_the_docs_name() -> None:
    assert load_pyproject()["project"]["urls"]["Homepage"] == f"https://github.com/{REPOSITORY}"


def test_release_reads_the_package_version(release: Any) -> None:
    import bridge

    assert release.read_version() == bridge.__version__


@pytest.mark.parametrize(
    ("version", "tag", "major", "tags"),
    [
        pytest.param("0.1.0", "v0.1.0", "v0", ["v0.1.0", "v0", "latest"], id="0.x"),
        pytest.param("1.2.3", "v1.2.3", "v1", ["v1.2.3", "v1", "latest"], id="final"),
        pytest.param("1.3.0rc1", "v1.3.0rc1", "v1", ["v1.3.0rc1"], id="pre-release"),
    ],
)
def test_release_names(release: Any, version: str, tag: str, major: str, tags: list[str]) -> None:
    names = release.release_names(version, "Cortex-Deploy-Bridge/cortex-deploy-bridge")
    assert (names.tag, names.major, names.prerelease) == (tag, major, tags == [tag])
    assert names.image == IMAGE  # ghcr.io takes lower case only
    assert names.image_tags(names.image) == [f"{IMAGE}:{t}" for t in tags]


def release_checkout(tmp_path: Path) -> Path:
    """The files the release script reads and writes, copied under ``tmp_path``."""
    for name in ("action.yml", "bridge/__init__.py", "templates/cortex-deploy.yml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        pytest.param(["names", "--repository", "acme"], "--repository", id="no-owner"),
        pytest.param(["pin", "--image", IMAGE, "--digest", "sha256:abc"], "--digest"),
        pytest.param(["pin", "--image", IMAGE, "--digest", "latest"], "--digest"),
        pytest.param(["pin", "--image", "ghcr.io/Acme/x", "--digest", DIGEST], "--image"),
        pytest.param(["pin", "--image", "docker.io/a/b", "--digest", DIGEST], "--image"),
    ],
)
def test_release_script_refuses_a_bad_value_in_one_line(
    release: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    root = release_checkout(tmp_path)
    assert release.main(["--root", str(root), *argv], {}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert (root / "action.yml").read_text() == ACTION.read_text()
    assert (root / "templates/cortex-deploy.yml").read_text() == GITLAB_TEMPLATE.read_text()


def test_release_script_refuses_an_unknown_version(release: Any) -> None:
    for version in ("1.2", "v1.2.3", "1.2.3-rc.1", "01.2.3"):
        with pytest.raises(release.ReleaseError, match="version"):
            release.release_names(version, REPOSITORY)


def test_released_component_runs_the_pushed_image(release: Any, tmp_path: Path) -> None:
    root = release_checkout(tmp_path)
    argv = ["--root", str(root), "pin", "--image", IMAGE, "--digest", DIGEST]
    assert release.main(argv, {}) == 0
    # The component runs the image, by the digest; the rest of it is unchanged.
    header, config = load_documents(root / "templates/cortex-deploy.yml")
    original_header, original_config = load_documents(GITLAB_TEMPLATE)
    assert header["spec"]["inputs"].pop("image")["default"] == f"{IMAGE}@{DIGEST}"
    original_header["spec"]["inputs"].pop("image")
    assert (header, config) == (original_header, original_config)
    # The composite Action has no image to pin: action.yml is the checkout's.
    assert (root / "action.yml").read_text() == ACTION.read_text()
    # A second pin finds no `ghcr.io/...:tag` default left and says so rather than pin twice.
    assert release.main(argv, {}) == 2


def test_release_pins_nothing_when_the_component_cannot_be_pinned(
    release: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = release_checkout(tmp_path)
    template = root / "templates/cortex-deploy.yml"
    template.write_text(GITLAB_TEMPLATE.read_text().replace(f"{IMAGE}:", "example.com/x:"))
    before = template.read_text()
    argv = ["--root", str(root), "pin", "--image", IMAGE, "--digest", DIGEST]
    assert release.main(argv, {}) == 2
    assert "templates/cortex-deploy.yml" in capsys.readouterr().err
    assert template.read_text() == before


def test_names_command_writes_the_step_outputs(release: Any, tmp_path: Path) -> None:
    import bridge

    output = tmp_path / "output"
    assert release.main(["names", "--repository", REPOSITORY], {"GITHUB_OUTPUT": str(output)}) == 0
    outputs = read_outputs(output)
    names = release.release_names(bridge.__version__, REPOSITORY)
    assert outputs["tag"] == names.tag and outputs["image"] == IMAGE
    assert outputs["image-tags"].splitlines() == names.image_tags(IMAGE)
    assert outputs["relay-image-tags"].splitlines() == names.image_tags(f"{IMAGE}-relay")


def workflow_jobs(path: Path) -> dict[str, Any]:
    """The jobs of a workflow file."""
    jobs = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]
    assert isinstance(jobs, dict)
    return jobs


def step(job: dict[str, Any], **match: str) -> dict[str, Any]:
    """The one step of ``job`` whose keys have the given values."""
    (found,) = [s for s in job["steps"] if all(s.get(k) == v for k, v in match.items())]
    return dict(found)


def test_release_tags_the_action_tree_with_the_component_pinned_to_its_image() -> None:
    jobs = workflow_jobs(RELEASE_WORKFLOW)
    push = step(jobs["images"], id="action-image")
    assert push["uses"].startswith("docker/build-push-action@")
    assert push["with"]["push"] is True and "file" not in push["with"]  # the Dockerfile
    # Pushed under the names' image-tags, which are all IMAGE:<tag> (test above)...
    assert push["with"]["tags"] == "${{ needs.names.outputs.image-tags }}"
    assert jobs["images"]["outputs"]["digest"] == "${{ steps.action-image.outputs.digest }}"
    # ... the tag's tree is the one `action-tree` writes, from the pinned PyYAML ...
    steps = jobs["tag"]["steps"]
    runs = [s.get("run", "") for s in steps]
    install = runs.index("python -m pip install --requirement requirements/action.txt")
    write = next(i for i, run in enumerate(runs) if " action-tree " in run)
    commit = next(i for i, run in enumerate(runs) if "git tag --annotate" in run)
    assert install < write < commit
    tree = '"$RUNNER_TEMP/release-tree"'
    assert f"release.py action-tree {tree}" in runs[write]
    assert 'git --work-tree="$tree" add --all' in runs[commit]
    assert f"tree={tree}" in runs[commit]
    # ... and its GitLab component is pinned to that same image, at that push's digest.
    assert steps[write]["env"] == {
        "IMAGE": "${{ needs.names.outputs.image }}",
        "DIGEST": "${{ needs.images.outputs.digest }}",
    }
    assert f"--root {tree}" in runs[write]
    assert 'pin --image "$IMAGE" --digest "$DIGEST"' in runs[write]
    assert set(jobs["tag"]["needs"]) == {"names", "images"}


def test_release_runs_the_ci_checks_before_publishing_anything() -> None:
    jobs = workflow_jobs(RELEASE_WORKFLOW)
    assert jobs["checks"]["uses"] == "./.github/workflows/ci.yml"
    ci = yaml.safe_load(CI_WORKFLOW.read_text(encoding="utf-8"))
    assert "workflow_call" in ci[True]  # YAML 1.1 reads the key `on` as True
    assert "checks" in jobs["images"]["needs"]
    # Everything published comes after the images, which come after the checks.
    assert jobs["distribution"]["needs"] == ["names", "tag"] and jobs["pypi"]["needs"] == (
        "distribution"
    )


def test_ci_runs_the_same_check_as_a_laptop() -> None:
    check = workflow_jobs(CI_WORKFLOW)["check"]
    assert [s["run"] for s in check["steps"] if "run" in s] == ["bash .ci/run"]
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for command in (
        "hadolint Dockerfile\n",
        "hadolint Dockerfile.relay\n",
        "--builtin-schema vendor.github-actions action.yml",
        "--builtin-schema vendor.github-workflows .github/workflows/*.yml",
        "--builtin-schema vendor.compose-spec docker-compose.yml",
        "mypy\n",
        'python -m pytest -m "system or not system" "$@"',
    ):
        assert command in script, f".ci/run does not run {command.strip()!r}"


def test_pypi_is_published_by_trusted_publishing() -> None:
    job = workflow_jobs(RELEASE_WORKFLOW)["pypi"]
    assert job["environment"]["name"] == "pypi"
    assert job["permissions"] == {"id-token": "write"}
    publish = next(s for s in job["steps"] if s.get("uses", "").startswith("pypa/"))
    assert publish["uses"].startswith("pypa/gh-action-pypi-publish@")
    # No token: PyPI trusts the workflow's OIDC identity.
    assert "password" not in publish.get("with", {})
    assert "secrets." not in RELEASE_WORKFLOW.read_text(encoding="utf-8").replace(
        "secrets.GITHUB_TOKEN", ""
    )


# Every place a user copies a version from: the Action ref, the image tags, the template URLs.
VERSION_REFERENCES = {
    "action": re.compile(rf"\b{re.escape(REPOSITORY)}@(?P<ref>[^\s'\"`)]+)"),
    "image": re.compile(rf"\b{re.escape(IMAGE)}(?:-relay)?:(?P<ref>[\w.-]+)"),
    "kustomize": re.compile(r"^\s+newTag:\s*(?P<ref>\S+)", re.M),
    "template": re.compile(
        rf"raw\.githubusercontent\.com/{re.escape(REPOSITORY)}/(?P<ref>[^/]+)/(?P<path>[\w./-]+)"
    ),
}
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "action.yml",
    ROOT / "docker-compose.yml",
    ROOT / ".env.example",
    *sorted((ROOT / "docs").glob("**/*.md")),
    *sorted((ROOT / "templates").glob("**/*.yml")),
    *sorted((ROOT / "deploy").glob("**/*.yaml")),
    *sorted((ROOT / "examples").glob("**/*")),
]


def test_every_version_reference_is_one_the_release_publishes(release: Any) -> None:
    import bridge

    names = release.release_names(bridge.__version__, REPOSITORY)
    published = {names.tag, names.major}
    found: dict[str, int] = dict.fromkeys(VERSION_REFERENCES, 0)
    wrong = []
    for path in DOCUMENTS:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for kind, pattern in VERSION_REFERENCES.items():
            for match in pattern.finditer(text):
                found[kind] += 1
                where = f"{path.relative_to(ROOT)}: {match[0]}"
                if match["ref"] not in published:
                    wrong.append(where)
                if kind == "template" and not (ROOT / match["path"]).is_file():
                    wrong.append(f"{where} (no such file)")
    assert wrong == [], f"not published by the release of {names.tag}: {wrong}"
    assert all(found.values()), f"no reference of some kind found: {found}"


# --- README: a user's page --------------------------------------------------------------

README = ROOT / "README.md"
# Pages other changes write; linked from the README already. Empty this once they exist.
PAGES_WRITTEN_ELSEWHERE: set[str] = set()


def code_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line index, language, body) of each fenced code block of a Markdown text."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        if lines[index].startswith("```"):
            end = lines.index("```", index + 1)
            blocks.append((index, lines[index][3:], "\n".join(lines[index + 1 : end])))
            index = end
        index += 1
    return blocks


def test_readme_says_what_it_is_then_gives_the_two_fresh_machine_commands() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    (first, setup), (second, check) = [(i, body) for i, _, body in code_blocks(text)[:2]]
    # A title, then one paragraph of what it is, before any command.
    assert lines[0] == "# cortex-deploy-bridge" and lines[1] == ""
    paragraphs = [p for p in "\n".join(lines[2:first]).split("\n\n") if p.strip()]
    assert len(paragraphs) == 2, "what it is, then the line introducing the first command"
    assert "Cortex" in paragraphs[0] and "no Cortex account" in paragraphs[1]
    assert first < 20 and second < first + 9
    # The path that needs no account first: a clone line, then one line that sets up and
    # runs the bridge (on SQLite, against a stand-in Cortex); then the whole check.
    clone, run = setup.split("\n")
    assert clone == (
        f"git clone https://github.com/{REPOSITORY}.git && cd {REPOSITORY.split('/')[1]}"
    )
    assert run.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert run.endswith("&& cortex-deploy-bridge demo")
    assert check == "bash .ci/run"
    # No command in the page binds every interface with a made-up secret.
    assert "change-me" not in text
    assert "docs/try-it.md" in "\n".join(lines[second : second + 8])


def test_readme_is_a_short_page_whose_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)#][^)]*)\)", text)}
    local = {t for t in targets if not t.startswith("https://")}
    missing = {t for t in local if not (ROOT / t).exists()} - PAGES_WRITTEN_ELSEWHERE
    assert missing == set()
    assert {"docs/action.md", "docs/gitlab.md", "docs/operations.md"} <= local
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            path = (page.parent / target).resolve()
            assert path.exists() or path.relative_to(ROOT).as_posix() in PAGES_WRITTEN_ELSEWHERE, (
                f"{page.name}: {target}"
            )


def test_readme_states_the_python_versions_ci_tests() -> None:
    versions = workflow_jobs(CI_WORKFLOW)["check"]["strategy"]["matrix"]["python-version"]
    assert load_pyproject()["project"]["requires-python"] == f">={versions[0]}"
    assert f"Python {versions[0]} to {versions[-1]}" in README.read_text(encoding="utf-8")


def test_docs_show_the_action_versions_ci_uses() -> None:
    # One place to bump: the examples users copy use what this repository's CI runs.
    # CI pins each action by commit with its version in a comment: "@<sha> # v6.0.2" is v6.
    used = dict(
        re.findall(
            r"uses: (actions/[\w-]+)@[0-9a-f]{40} # (v\d+)",
            CI_WORKFLOW.read_text(encoding="utf-8"),
        )
    )
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for action, ref in re.findall(r"uses: (actions/[\w-]+)@(\S+)", page.read_text("utf-8")):
            assert used.get(action) == ref, f"{page.name}: {action}@{ref}, CI uses {used}"


def test_classifiers_name_the_python_versions_ci_tests() -> None:
    versions = workflow_jobs(CI_WORKFLOW)["check"]["strategy"]["matrix"]["python-version"]
    classifiers = load_pyproject()["project"]["classifiers"]
    named = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.fullmatch(r".*:: 3\.\d+", c)]
    assert named == versions
