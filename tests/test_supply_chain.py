"""What the project runs and ships is pinned: actions by commit, base images by digest, and the
images' requirements by hash; releases run from the default branch or a tag, and everything
that publishes waits behind a protected environment.

A tag or a branch can be moved by whoever controls the action's repository (or steals its
token), and the next run executes what they pushed, here in the jobs that hold
``id-token: write`` and push images and tags. A commit sha cannot be moved.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# Every file a `uses:` can be in: the workflows and the Action's own metadata (a composite
# action's steps may use other actions).
USES_FILES = [
    *WORKFLOWS,
    *sorted(ROOT.glob("action.y*ml")),
    *sorted(ROOT.glob(".github/actions/*/action.y*ml")),
]
DOCKERFILES = sorted(ROOT.glob("Dockerfile*"))
COMPOSE_FILES = sorted([*ROOT.glob("docker-compose*.y*ml"), *ROOT.glob("compose*.y*ml")])
REQUIREMENTS = sorted((ROOT / "requirements").glob("*.txt"))
RELEASE = ROOT / ".github" / "workflows" / "release.yml"

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<comment>\s+#.*)?$")
PINNED_ACTION = re.compile(r"[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"\s+#\s*v\d+(?:\.\d+){0,2}\b")
PINNED_IMAGE = re.compile(r"docker://\S+@sha256:[0-9a-f]{64}")


def uses_problem(ref: str, comment: str | None) -> str | None:
    """Why a ``uses:`` value is not pinned, or None when it is."""
    if ref.startswith("./"):
        return None  # this repository, at the commit being run
    if ref.startswith("docker://"):
        return None if PINNED_IMAGE.fullmatch(ref) else "an image not pinned by digest"
    if not PINNED_ACTION.fullmatch(ref):
        return "not pinned by a full commit sha"
    if not comment or not VERSION_COMMENT.match(comment):
        return "pinned, but with no `# vX.Y.Z` comment naming its version"
    return None


def from_problem(line: str, stages: set[str]) -> str | None:
    """Why a Dockerfile ``FROM`` line's image is not pinned by digest, or None."""
    words = [w for w in line.split()[1:] if not w.startswith("--")]
    image = words[0]
    if image == "scratch" or image in stages:
        return None
    return None if re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", image) else "not pinned by digest"


def compose_problem(service: Any) -> str | None:
    """Why a Compose service's image is not pinned by digest, or None.

    A service that ``build``s this checkout runs the project's own image (its tag is the one
    the release publishes); any other image is someone else's, pinned like a ``FROM``.
    """
    if not isinstance(service, dict) or "image" not in service or "build" in service:
        return None
    image = str(service["image"])
    return None if re.fullmatch(r"[^\s$]+@sha256:[0-9a-f]{64}", image) else "not pinned by digest"


def every_uses(path: Path) -> list[tuple[int, str, str | None]]:
    """(line number, value, comment) of every ``uses:`` line of a YAML file."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        match = USES_LINE.match(line)
        if match:
            found.append((number, match["ref"].strip("'\""), match["comment"]))
    return found


def yaml_uses(document: Any) -> list[str]:
    """Every ``uses`` value anywhere in a parsed YAML document."""
    if isinstance(document, dict):
        own = [document["uses"]] if isinstance(document.get("uses"), str) else []
        return own + [u for value in document.values() for u in yaml_uses(value)]
    if isinstance(document, list):
        return [u for item in document for u in yaml_uses(item)]
    return []


@pytest.mark.parametrize("path", USES_FILES, ids=[p.name for p in USES_FILES])
def test_every_uses_is_pinned_by_commit_with_its_version(path: Path) -> None:
    lines = every_uses(path)
    # The line scan sees every `uses:` the YAML holds (none hides in a flow mapping).
    assert sorted(ref for _, ref, _ in lines) == sorted(
        yaml_uses(yaml.safe_load(path.read_text(encoding="utf-8")))
    )
    problems = [
        f"{path.name}:{number}: {ref}: {problem}"
        for number, ref, comment in lines
        if (problem := uses_problem(ref, comment)) is not None
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("line", "pinned"),
    [
        pytest.param("      - uses: actions/checkout@v6", False, id="major-tag"),
        pytest.param("      - uses: actions/checkout@v6.0.2", False, id="full-tag"),
        pytest.param("      - uses: pypa/gh-action-pypi-publish@release/v1", False, id="branch"),
        pytest.param("      - uses: actions/checkout@main", False, id="main"),
        pytest.param("      - uses: actions/checkout@de0fac2", False, id="short-sha"),
        pytest.param(
            "      - uses: actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd",
            False,
            id="sha-without-version",
        ),
        pytest.param(
            "      - uses: actions/checkout@de0fac2e4500dabe0009e67214ff5f5447ce83dd # v6.0.2",
            True,
            id="sha-with-version",
        ),
        pytest.param(
            "    uses: github/codeql-action/init@"
            "0123456789abcdef0123456789abcdef01234567 # v3.29.0",
            True,
            id="sha-of-an-action-in-a-subdirectory",
        ),
        pytest.param("        uses: ./", True, id="local"),
        pytest.param("    uses: ./.github/workflows/ci.yml", True, id="local-workflow"),
        pytest.param("      - uses: docker://alpine:3.20", False, id="image-by-tag"),
        pytest.param(
            "      - uses: docker://alpine@sha256:" + "ab" * 32, True, id="image-by-digest"
        ),
    ],
)
def test_the_check_tells_pinned_from_movable(line: str, pinned: bool) -> None:
    match = USES_LINE.match(line)
    assert match is not None
    assert (uses_problem(match["ref"], match["comment"]) is None) is pinned


def workflow_images(document: Any) -> list[str]:
    """The images of every job's ``container`` and ``services`` in a parsed workflow."""
    found = []
    for job in (document.get("jobs") or {}).values():
        container = job.get("container")
        if container is not None:
            found.append(container if isinstance(container, str) else container.get("image"))
        found += [service.get("image") for service in (job.get("services") or {}).values()]
    return found


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_every_workflow_image_is_pinned_by_digest(path: Path) -> None:
    images = workflow_images(yaml.safe_load(path.read_text(encoding="utf-8")))
    unpinned = [i for i in images if not re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", str(i))]
    assert not unpinned, f"{path.name}: not pinned by digest: {unpinned}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_every_from_is_pinned_by_digest(path: Path) -> None:
    stages: set[str] = set()
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not re.match(r"FROM\s", line, re.IGNORECASE):
            continue
        problem = from_problem(line, stages)
        if problem:
            problems.append(f"{path.name}:{number}: {line.strip()}: {problem}")
        named = re.search(r"\sAS\s+(\S+)", line, re.IGNORECASE)
        if named:
            stages.add(named[1])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("line", "pinned"),
    [
        pytest.param("FROM python:3.12-slim-bookworm", False, id="tag"),
        pytest.param("FROM python@sha256:abc", False, id="short-digest"),
        pytest.param("FROM python:3.12-slim@sha256:" + "0" * 64, True, id="digest"),
        pytest.param("FROM --platform=$BUILDPLATFORM python:3.12", False, id="flag-and-tag"),
        pytest.param("FROM build", True, id="an-earlier-stage"),
    ],
)
def test_the_from_check_tells_pinned_from_movable(line: str, pinned: bool) -> None:
    assert (from_problem(line, {"build"}) is None) is pinned


def test_there_is_a_compose_file_to_check() -> None:
    assert [p.name for p in COMPOSE_FILES] == ["docker-compose.yml"]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=[p.name for p in COMPOSE_FILES])
def test_every_third_party_compose_image_is_pinned_by_digest(path: Path) -> None:
    services = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]
    assert "postgres" in services  # the check reads the services where they are
    problems = [
        f"{path.name}: {name}: {service['image']}: {problem}"
        for name, service in services.items()
        if (problem := compose_problem(service))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("service", "pinned"),
    [
        pytest.param({"image": "postgres:16"}, False, id="tag"),
        pytest.param({"image": "postgres"}, False, id="no-tag"),
        pytest.param({"image": "postgres@sha256:abc"}, False, id="short-digest"),
        pytest.param({"image": "${PG_IMAGE:-postgres:16}"}, False, id="a-variable"),
        pytest.param({"image": "postgres:16@sha256:" + "0" * 64}, True, id="digest"),
        pytest.param({"image": "ghcr.io/x/relay:v0", "build": {"context": "."}}, True, id="ours"),
        pytest.param({"build": "."}, True, id="built-here-without-a-name"),
    ],
)
def test_the_compose_check_tells_pinned_from_movable(service: Any, pinned: bool) -> None:
    assert (compose_problem(service) is None) is pinned


def test_both_images_start_from_one_base() -> None:
    bases = {
        line.split()[1]
        for path in DOCKERFILES
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("FROM ")
    }
    assert len(bases) == 1, bases


def requirement_entries(path: Path) -> list[str]:
    """Each requirement of a file with its continuation lines joined, comments left out."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.parametrize("path", REQUIREMENTS, ids=[p.name for p in REQUIREMENTS])
def test_the_images_requirements_carry_hashes(path: Path) -> None:
    entries = requirement_entries(path)
    assert entries
    for entry in entries:
        requirement, *options = entry.split()
        assert "==" in requirement, entry
        assert options and all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", o) for o in options), (
            f"{path.name}: {requirement} has no --hash (pip's hash-checking mode needs one on "
            "every line)"
        )


def release_jobs() -> dict[str, Any]:
    return yaml.safe_load(RELEASE.read_text(encoding="utf-8"))["jobs"]


def needs_of(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs", [])
    return [needs] if isinstance(needs, str) else list(needs)


def test_a_release_runs_only_from_the_default_branch_or_a_tag() -> None:
    jobs = release_jobs()
    guard = jobs["ref"]
    script = "\n".join(step.get("run", "") for step in guard["steps"])
    env = {k: v for step in guard["steps"] for k, v in step.get("env", {}).items()}
    assert env["REF"] == "${{ github.ref }}"
    assert env["DEFAULT"] == "refs/heads/${{ github.event.repository.default_branch }}"
    assert '"$DEFAULT" | refs/tags/v*)' in script and "exit 1" in script

    # Every other job waits for the guard, directly or through the jobs it needs.
    def reaches_guard(name: str) -> bool:
        return name == "ref" or any(reaches_guard(n) for n in needs_of(jobs[name]))

    assert all(reaches_guard(name) for name in jobs)
    assert "release/" not in RELEASE.read_text(encoding="utf-8").split("jobs:", 1)[1]


PUBLISHING = {"packages": "write", "contents": "write", "id-token": "write"}


def test_every_job_that_publishes_waits_behind_a_protected_environment() -> None:
    jobs = release_jobs()
    publishing = {
        name
        for name, job in jobs.items()
        if any(job.get("permissions", {}).get(k) == v for k, v in PUBLISHING.items())
    }
    # The images (packages: write), the tags and the major tag's move (contents: write),
    # and PyPI (id-token: write).
    assert {"images", "tag", "pypi"} <= publishing
    for name in publishing:
        environment = jobs[name].get("environment")
        named = environment.get("name") if isinstance(environment, dict) else environment
        assert named in {"release", "pypi"}, f"job {name} publishes outside an environment"
