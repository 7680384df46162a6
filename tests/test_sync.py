"""`sync` end to end: the stand-in GitHub and GitLab, the stand-in Cortex, the real command."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.action.inputs import Inputs
from bridge.action.run import prepare
from bridge.cli import main
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex
from bridge.fakescm import FakeGitHub, FakeGitLab, Fault
from bridge.mapping import build_deploy_request, idempotency_key, key_of
from bridge.model import DeployRef, DeployType, Status
from bridge.record import retrying as recorder
from bridge.sources import parse_event
from bridge.store import Store
from bridge.sync.engine import Tally
from bridge.sync.github import GitHubReader, github_client
from bridge.sync.gitlab import GitLabReader, gitlab_client
from bridge.sync.reader import Window
from bridge.sync.report import ProgressLine
from bridge.times import parse_timestamp
from tests.conftest import TOKEN

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40
GH_TOKEN = "ghs-sync-test-7f3a"
GL_TOKEN = "glpat-sync-test-91c2"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A stand-in GitHub; fails the test if it saw a request it does not expect."""
    with FakeGitHub(token=GH_TOKEN) as fake:
        yield fake
        assert fake.violations == []


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    """A stand-in GitLab; fails the test if it saw a request it does not expect."""
    with FakeGitLab(token=GL_TOKEN) as fake:
        yield fake
        assert fake.violations == []


def environ_for(tmp_path: Path, cortex: FakeCortex, **extra: str) -> dict[str, str]:
    """The environment of one sync: tokens, the stand-ins' URLs, a fresh database."""
    return {
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "GITHUB_TOKEN": GH_TOKEN,
        "GITLAB_API_TOKEN": GL_TOKEN,
        **extra,
    }


def sync(
    environ: dict[str, str], capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    """Run ``sync ... --output json``; the exit code and the JSON report."""
    code = main(["sync", *args, "--output", "json"], environ)
    out = capsys.readouterr().out
    return code, json.loads(out)


def verdicts(report: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(verdict, deploy, entity) of each row that names a deploy."""
    return [(r["verdict"], r["deploy"], r["entity"]) for r in report["deploys"] if r["deploy"]]


def add_success(github: FakeGitHub, repo: str, id: int, sha: str, day: int, **kw: Any) -> None:
    """A deployment to production that succeeded on 2026-11-<day>."""
    github.add_deployment(
        repo,
        id,
        sha=sha,
        environment="production",
        created_at=f"2026-11-{day:02d}T10:00:00Z",
        states=[
            ("IN_PROGRESS", f"2026-11-{day:02d}T10:01:00Z"),
            ("SUCCESS", f"2026-11-{day:02d}T10:05:00Z"),
        ],
        **kw,
    )


WINDOW = ("--since", "2026-11-01", "--until", "2026-12-01")


def test_github_deploys_are_recorded_once_and_a_second_sync_writes_nothing(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    add_success(github, "acme/api", 102, SHA_B, 5)
    github.add_deployment(
        "acme/api",
        103,
        sha=SHA_C,
        environment="production",
        created_at="2026-11-06T10:00:00Z",
        states=[("FAILURE", "2026-11-06T10:02:00Z")],
    )
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    assert sorted(verdicts(report)) == [
        ("recorded", "deployment/101", "api"),
        ("recorded", "deployment/102", "api"),
        ("skipped", "deployment/103", None),
    ]
    stored = cortex.all_deploys()
    assert sorted(d["sha"] for d in stored) == [SHA_A, SHA_B]
    assert {d["timestamp"] for d in stored} == {"2026-11-03T10:05:00Z", "2026-11-05T10:05:00Z"}

    posts = len(cortex.requests_to("POST"))
    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 0
    assert len(cortex.requests_to("POST")) == posts  # 0 writes the second time
    assert sorted(v for v, _, _ in verdicts(report)) == ["present", "present", "skipped"]


def webhook_deployment_status(deployment_id: int, sha: str, *, run: dict[str, Any] | None = None):
    """The deployment_status webhook GitHub sends for a successful deploy (hand-written)."""
    payload: dict[str, Any] = {
        "action": "created",
        "deployment_status": {
            "id": 9001,
            "state": "success",
            "created_at": "2026-11-03T10:05:00Z",
            "updated_at": "2026-11-03T10:05:00Z",
            "log_url": "https://github.com/acme/api/actions/runs/555/job/777" if run else None,
            "creator": {"login": "octocat"},
        },
        "deployment": {
            "id": deployment_id,
            "sha": sha,
            "ref": "main",
            "environment": "production",
            "created_at": "2026-11-03T10:00:00Z",
            "creator": {"login": "octocat"},
            "payload": {},
        },
        "repository": {"full_name": "acme/api", "html_url": "https://github.com/acme/api"},
        "sender": {"login": "octocat"},
    }
    if run is not None:
        payload["workflow_run"] = run
    return parse_event("github", "deployment_status", payload, delivery_id="d-1")


def seed(cortex: FakeCortex, entity: str, body: dict[str, Any]) -> str:
    """Record ``body`` in the stand-in Cortex as another path (webhook, Action, curl) did."""
    with CortexClient(cortex.url, TOKEN) as client:
        return str(client.create_deploy(entity, body)["uuid"])


# GitHub's names ignore case: --github ACME/Api read acme/api's deploys, keyed them
# "github:ACME/Api:...", and recorded each a second time beside the webhook's.
@pytest.mark.parametrize("named", ["acme/api", "ACME/Api"])
def test_a_deploy_the_webhook_recorded_is_present_and_not_recorded_again(
    tmp_path: Path,
    cortex: FakeCortex,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    named: str,
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    hooked = webhook_deployment_status(101, SHA_A)
    uuid = seed(cortex, "api", build_deploy_request(hooked, "api", DeployType.DEPLOY))
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    posts = len(cortex.requests_to("POST"))

    code, report = sync(environ, capsys, "--github", named, *WINDOW)

    assert code == 0, report
    [row] = report["deploys"]
    assert (row["verdict"], row["detail"], row["repository"]) == ("present", uuid, "acme/api")
    assert len(cortex.requests_to("POST")) == posts


def test_an_actions_deployment_is_keyed_by_its_run_like_its_webhook(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    run = deploy_run(github, 2)  # its job is 777
    add_success(
        github,
        "acme/api",
        101,
        SHA_A,
        3,
        log_url="https://github.com/acme/api/actions/runs/555/job/777",
    )
    hooked = webhook_deployment_status(101, SHA_A, run=run)
    assert hooked.ref.id == "555/2"
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    assert verdicts(report) == [("recorded", "run/555/2", "api")]
    [stored] = cortex.all_deploys()
    assert key_of(stored) == idempotency_key(hooked, "api")


def test_a_record_without_key_by_another_tool_is_matched_and_reported_not_doubled(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    curl = {
        "title": "deployed by hand",
        "timestamp": "2026-11-03T10:20:00Z",
        "type": "DEPLOY",
        "sha": SHA_A,
        "environment": "production",
    }
    uuid = seed(cortex, "api", curl)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    [row] = report["deploys"]
    assert row["verdict"] == "matched"
    assert uuid in row["detail"]
    assert len(cortex.all_deploys()) == 1


def test_a_key_recorded_twice_in_cortex_is_reported_doubled(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    body = build_deploy_request(webhook_deployment_status(101, SHA_A), "api", DeployType.DEPLOY)
    seed(cortex, "api", body)
    seed(cortex, "api", {**body, "title": "a second copy"})
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    assert [r["verdict"] for r in report["deploys"]] == ["doubled"]


def test_dry_run_finds_missing_exits_3_and_writes_nothing(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    github.add_repo("acme/api", org="acme")
    github.add_repo("acme/web", org="acme")
    add_success(github, "acme/api", 101, SHA_A, 3)
    add_success(github, "acme/web", 201, SHA_B, 4)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github-org", "acme", "--dry-run", *WINDOW)

    assert code == 3
    assert sorted(verdicts(report)) == [
        ("missing", "deployment/101", "api"),
        ("missing", "deployment/201", "web"),
    ]
    assert report["summary"]["missing"] == 2
    assert cortex.requests_to("POST") == []
    # Recorded now, the same audit finds nothing missing: exit 0.
    assert sync(environ, capsys, "--github-org", "acme", *WINDOW)[0] == 0
    code, report = sync(environ, capsys, "--github-org", "acme", "--dry-run", *WINDOW)
    assert (code, report["summary"]["missing"], report["summary"]["present"]) == (0, 0, 2)


def test_routes_renames_and_environment_filters_apply_as_for_webhooks(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "routes:\n"
        "  - match: {repository: 'acme/*'}\n"
        "    entities: ['svc-{repo}']\n"
        "environments:\n"
        "  exclude: ['review/*']\n"
        "  rename: {production: prod}\n"
    )
    add_success(github, "acme/api", 101, SHA_A, 3)
    github.add_deployment(
        "acme/api",
        102,
        sha=SHA_B,
        environment="review/feature-x",
        created_at="2026-11-04T10:00:00Z",
        states=[("SUCCESS", "2026-11-04T10:01:00Z")],
    )
    environ = environ_for(
        tmp_path, cortex, GITHUB_API_URL=github.api_url, BRIDGE_CONFIG=str(config)
    )

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    rows = {r["deploy"]: r for r in report["deploys"]}
    assert rows["deployment/101"]["verdict"] == "recorded"
    assert (rows["deployment/101"]["entity"], rows["deployment/101"]["environment"]) == (
        "svc-api",
        "prod",
    )
    assert rows["deployment/102"]["verdict"] == "skipped"
    assert "environments.exclude" in rows["deployment/102"]["detail"]
    [stored] = cortex.all_deploys()
    assert (stored["entity"], stored["environment"]) == ("svc-api", "prod")


def test_github_rate_limits_are_waited_out(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    # A secondary limit on the first request, GraphQL's primary limit on its first query.
    github.inject(Fault(403, {"Retry-After": "0"}, {"message": "secondary rate limit"}))
    github.inject(
        Fault(
            200,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0"},
            {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]},
            path="/graphql",
        )
    )
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    assert [r["verdict"] for r in report["deploys"]] == ["recorded"]


@pytest.mark.parametrize("dry_run", [False, True], ids=["sync", "dry-run"])
def test_a_wrong_cortex_token_stops_the_sync_in_one_line_naming_it(
    tmp_path: Path,
    cortex: FakeCortex,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    dry_run: bool,
) -> None:
    # Each deploy was a "failed" row of its own, the run going on after the first 401: a
    # refused request per entity, and no line naming the variable.
    for n in range(3):
        add_success(github, "acme/api", 101 + n, SHA_A, 3 + n)
    wrong = "cortex-wrong-0x5eed"
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url, CORTEX_API_TOKEN=wrong)
    argv = ["sync", "--github", "acme/api", *WINDOW, *(["--dry-run"] if dry_run else [])]
    assert main(argv, environ) == 1
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ": error: " in ln]
    assert "github:acme/api: CORTEX_API_TOKEN: cortex refused the API token (401)" in line
    assert wrong not in err
    assert len(cortex.received) == 1  # the first refusal ends it
    assert cortex.all_deploys() == []


def test_a_wrong_github_token_fails_in_one_line_without_the_token(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeGitHub(token="the-right-one") as github:
        github.add_repo("acme/api")
        environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
        code = main(["sync", "--github", "acme/api", *WINDOW], environ)
    err = capsys.readouterr().err
    assert code == 1
    assert "answered 401" in err
    assert "GITHUB_TOKEN is missing, wrong or expired" in err  # which token: named
    assert GH_TOKEN not in err and "Traceback" not in err
    assert cortex.requests_to("POST") == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(["--since", "yesterday"], "--since", id="since"),
        pytest.param(["--until", "2026-13-01"], "--until", id="until"),
        pytest.param(["--since", "2026-12-02"], "--since", id="since-after-until"),
        pytest.param(["--limit", "0"], "--limit", id="limit"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    tmp_path: Path,
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    named: str,
) -> None:
    environ = environ_for(tmp_path, cortex)
    argv = ["sync", "--github", "acme/api", "--until", "2026-12-01", *args]
    assert main(argv, environ) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
    assert cortex.received == []


def test_missing_tokens_exit_2_naming_the_variable(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = environ_for(tmp_path, cortex)
    del environ["GITLAB_API_TOKEN"]
    assert main(["sync", "--gitlab", "acme/api"], environ) == 2
    assert "GITLAB_API_TOKEN" in capsys.readouterr().err


def test_gitlab_deploys_are_keyed_by_their_job_like_the_deployment_hook(
    tmp_path: Path, cortex: FakeCortex, gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    gitlab.add_project("acme/backend/api", group="acme")
    gitlab.add_deployment(
        "acme/backend/api",
        31,
        job=4401,
        sha=SHA_A,
        environment="production",
        status="success",
        updated_at="2026-11-03T10:05:00Z",
    )
    gitlab.add_deployment(
        "acme/backend/api",
        32,
        job=4402,
        sha=SHA_B,
        environment="production",
        status="failed",
        updated_at="2026-11-04T10:05:00Z",
    )
    hook = parse_event(
        "gitlab",
        "Deployment Hook",
        {
            "object_kind": "deployment",
            "status": "success",
            "status_changed_at": "2026-11-03 10:05:00 UTC",
            "deployment_id": 31,
            "deployable_id": 4401,
            "environment": "production",
            "project": {
                "path_with_namespace": "acme/backend/api",
                "web_url": "https://gitlab.example.com/acme/backend/api",
            },
            "short_sha": SHA_A[:8],
            "commit_url": f"https://gitlab.example.com/acme/backend/api/-/commit/{SHA_A}",
        },
    )
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)

    code, report = sync(environ, capsys, "--gitlab-group", "acme", *WINDOW)

    assert code == 0
    assert sorted(verdicts(report)) == [
        ("recorded", "job/4401", "api"),
        ("skipped", "job/4402", None),
    ]
    [stored] = cortex.all_deploys()
    assert key_of(stored) == idempotency_key(hook, "api")
    assert stored["sha"] == SHA_A
    # Again: present, nothing written.
    posts = len(cortex.requests_to("POST"))
    assert sync(environ, capsys, "--gitlab", "acme/backend/api", *WINDOW)[0] == 0
    assert len(cortex.requests_to("POST")) == posts


def test_gitlab_pipelines_count_where_workflows_say_and_rate_limits_are_waited(
    tmp_path: Path, cortex: FakeCortex, gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "workflows:\n"
        "  - match: {repository: 'acme/*', workflow: 'deploy'}\n"
        "    environment: production\n"
    )
    gitlab.add_project("acme/web")
    gitlab.add_pipeline(
        "acme/web", 900, sha=SHA_C, status="success", updated_at="2026-11-07T08:00:00Z"
    )
    gitlab.add_pipeline(
        "acme/web", 901, sha=SHA_B, status="success", updated_at="2026-11-07T09:00:00Z", name="test"
    )
    gitlab.inject(
        Fault(429, {"Retry-After": "0", "RateLimit-Reset": "0"}, {"message": "Retry later"})
    )
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url, BRIDGE_CONFIG=str(config))

    code, report = sync(environ, capsys, "--gitlab", "acme/web", *WINDOW)

    assert code == 0
    rows = {r["deploy"]: r["verdict"] for r in report["deploys"] if r["deploy"]}
    assert rows == {"pipeline/900": "recorded", "pipeline/901": "skipped"}
    [stored] = cortex.all_deploys()
    assert (stored["environment"], stored["sha"]) == ("production", SHA_C)


def test_progress_is_kept_and_a_finished_reader_is_marked_done(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    assert sync(environ, capsys, "--github", "acme/api", *WINDOW)[0] == 0
    store = Store.from_url(environ["BRIDGE_DATABASE_URL"])
    try:
        progress = store.sync.sync_progress("github:acme/api")
        assert progress is not None and progress.state == "done"
        [stored] = cortex.all_deploys()
        assert store.sync.recorded_uuid(key_of(stored) or "") == stored["uuid"]
    finally:
        store.close()


def test_an_unknown_http_source_fails_in_one_line_naming_it(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = environ_for(tmp_path, cortex)
    assert main(["sync", "--source", "spice"], environ) == 2
    err = capsys.readouterr().err.strip()
    assert "--source 'spice'" in err and len(err.splitlines()) == 1
    assert cortex.received == []


def test_the_table_lists_each_deploy_and_a_summary(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 3)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code = main(["sync", "--github", "acme/api", "--dry-run", *WINDOW], environ)
    out, err = capsys.readouterr()
    assert code == 3
    lines = out.splitlines()
    assert lines[0].split() == [
        "VERDICT",
        "REPOSITORY",
        "DEPLOY",
        "ENV",
        "ENTITY",
        "FINISHED",
        "DETAIL",
    ]
    assert lines[1].split()[:6] == [
        "missing",
        "acme/api",
        "deployment/101",
        "production",
        "api",
        "2026-11-03T10:05:00Z",
    ]
    assert lines[-1].startswith("summary: 0 present, 0 matched, 0 doubled, 1 missing")
    # Not a terminal: one plain progress line per source, no redraws.
    assert "\r" not in err
    assert "sync 1/1 github:acme/api · 2 pages read · 1 compared · 0 recorded · 1 missing" in err


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_progress_line_redraws_on_a_terminal_with_an_eta() -> None:
    tally = Tally()
    now = [0.0]
    terminal = Terminal()
    line = ProgressLine(terminal, tally, requests=lambda: 7, clock=lambda: now[0])
    line.source("github:acme/a", 1, 3)
    tally.deploys = 50
    now[0] = 10.0
    line.source("github:acme/b", 2, 3)  # one of three done in 10 s: 20 s to go
    assert terminal.getvalue().endswith(
        "\r\x1b[2Ksync 2/3 github:acme/b · 7 pages read · 50 compared · 0 recorded · 0 missing"
        " · 10s · ETA 20s"
    )


@pytest.mark.parametrize(("pages", "said"), [(0, "0 pages"), (1, "1 page"), (2, "2 pages")])
def test_the_progress_line_counts_pages_in_good_english(pages: int, said: str) -> None:
    line = ProgressLine(io.StringIO(), Tally(), requests=lambda: pages, clock=lambda: 0.0)
    line.source("github:acme/a", 1, 1)
    assert f"· {said} read ·" in line.text()


def test_pages_are_recorded_oldest_first_so_a_rollback_across_pages_is_detected(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # 150 deployments: two GraphQL pages. The newest redeploys the oldest's sha after others
    # (a rollback), and the two are on different pages.
    for n in range(150):
        day, hour = 2 + n // 24, n % 24
        github.add_deployment(
            "acme/api",
            5000 + n,
            sha=SHA_A if n in (0, 149) else f"{n:040x}",
            environment="production",
            created_at=f"2026-11-{day:02d}T{hour:02d}:00:00Z",
            states=[("SUCCESS", f"2026-11-{day:02d}T{hour:02d}:05:00Z")],
        )
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    assert report["summary"]["recorded"] == 150
    types = {d["customData"]["deploymentId"]: d["type"] for d in cortex.all_deploys()}
    assert types[5149] == "ROLLBACK"
    assert types[5000] == "DEPLOY"
    assert list(types.values()).count("ROLLBACK") == 1
    stamps = [d["timestamp"] for d in cortex.all_deploys()]
    assert stamps == sorted(stamps)  # recorded oldest first


def test_with_rollback_detection_off_a_redeployed_sha_is_recorded_as_a_deploy(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # A, then B, then A again: a rollback when detection is on (the test above), a DEPLOY
    # when the config turns it off.
    for n, sha in enumerate((SHA_A, SHA_B, SHA_A)):
        add_success(github, "acme/api", 7000 + n, sha, 2 + n)
    config = tmp_path / "bridge.yaml"
    config.write_text("rollback: {detect: false}\n")
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--config", str(config), "--github", "acme/api", *WINDOW)

    assert code == 0
    assert report["summary"]["recorded"] == 3
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY"] * 3


def test_deployments_made_while_a_repository_is_read_push_no_older_one_out(
    github: FakeGitHub,
) -> None:
    def deploy(n: int) -> None:
        day, hour = 2 + n // 24, n % 24
        github.add_deployment(
            "acme/api",
            5000 + n,
            sha=f"{n:040x}",
            environment="production",
            created_at=f"2026-11-{day:02d}T{hour:02d}:00:00Z",
            states=[("SUCCESS", f"2026-11-{day:02d}T{hour:02d}:05:00Z")],
        )

    for n in range(150):
        deploy(n)
    api = github_client(github.api_url, GH_TOKEN)
    reader = GitHubReader(api, "acme/api", runs_are_deploys=False)
    window = Window(
        parse_timestamp("2026-11-01T00:00:00Z"), parse_timestamp("2026-12-01T00:00:00Z")
    )
    seen: list[int] = []
    markers = 0
    for found in reader.read(window):
        if found.event is not None:
            seen.append(found.event.details["deploymentId"])
        elif found.resume is not None:
            markers += 1
            if markers == 1:  # the oldest page is done; three new deploys come in now
                for n in range(150, 153):
                    deploy(n)
    api.close()
    assert sorted(seen) == list(range(5000, 5153))


def test_a_source_failing_mid_page_still_records_what_was_found_missing_before(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_success(github, "acme/api", 101, SHA_A, 5)
    # Older, so read after 101 in the page; made by a run the token may not read.
    add_success(
        github, "acme/api", 102, SHA_B, 3, log_url="https://github.com/acme/api/actions/runs/777"
    )
    github.inject(
        Fault(403, {}, {"message": "Resource not accessible by integration"}, path="/runs/777")
    )
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code = main(["sync", "--github", "acme/api", *WINDOW], environ)

    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "cortex-deploy-bridge: error: github:acme/api: 127.0.0.1:"
        f"{github.url.rsplit(':', 1)[1]} answered 403 for /repos/acme/api/actions/runs/777: "
        "GITHUB_TOKEN lacks a scope or access to this repository; "
        "Resource not accessible by integration"
    )
    assert [d["sha"] for d in cortex.all_deploys()] == [SHA_A]
    assert "recorded" in out


def action_step(cortex: FakeCortex, run: int, attempt: int, at: str) -> str:
    """The Action step of a job (environment: production) of attempt ``attempt`` of run
    ``run``, recording its deploy on ``api`` at ``at``: the uuid it recorded."""
    actions = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/api",
        "GITHUB_RUN_ID": str(run),
        "GITHUB_RUN_ATTEMPT": str(attempt),
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_SHA": SHA_A,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_ACTOR": "octocat",
    }
    # The Action's own preparation of the deploy, from its inputs and the job's environment.
    step, _, _ = prepare(
        Inputs(environment="production", entity_tag="api"), actions, now=parse_timestamp(at)
    )
    with CortexClient(cortex.url, TOKEN) as client:
        uuid = recorder.record(client, step, "api").uuid
    assert uuid is not None
    return uuid


def deploy_run(github: FakeGitHub, *attempts: int) -> dict[str, Any]:
    """Run 555 of workflow Deploy (SHA_A), run ``attempts``; attempt n's job is 775 + n."""
    run: dict[str, Any] = {}
    for attempt in attempts:
        run = github.add_run(
            "acme/api",
            555,
            sha=SHA_A,
            name="Deploy",
            path=".github/workflows/deploy.yml",
            created_at="2026-11-03T09:59:00Z",
            updated_at="2026-11-03T10:06:00Z",
            attempt=attempt,
            jobs=(775 + attempt,),
        )
    return run


def test_a_deploy_the_action_step_recorded_in_its_job_is_present_not_doubled(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # The job (environment: production) made deployment 101 and ran the Action step.
    deploy_run(github, 1)
    log = "https://github.com/acme/api/actions/runs/555/job/776"
    add_success(github, "acme/api", 101, SHA_A, 3, log_url=log)
    action_step(cortex, 555, 1, "2026-11-03T10:05:30Z")
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    posts = len(cortex.requests_to("POST"))

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0
    assert verdicts(report) == [("present", "run/555/1", "api")]
    assert len(cortex.requests_to("POST")) == posts


# A deployment whose run was deleted (GitHub answers 404 for the run) was keyed by the
# deployment alone, and recorded a second time beside the record the Action step or the
# webhook had made under the run.
@pytest.mark.parametrize("face", ["action", "webhook"])
def test_a_deploy_recorded_under_its_run_is_present_once_the_run_is_deleted(
    tmp_path: Path,
    cortex: FakeCortex,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    face: str,
) -> None:
    run = deploy_run(github, 1)
    log = "https://github.com/acme/api/actions/runs/555/job/776"
    add_success(github, "acme/api", 101, SHA_A, 3, log_url=log)
    if face == "action":
        uuid = action_step(cortex, 555, 1, "2026-11-03T10:04:00Z")
    else:
        hooked = webhook_deployment_status(101, SHA_A, run=run)
        uuid = seed(cortex, "api", build_deploy_request(hooked, "api", DeployType.DEPLOY))
    github.delete_run("acme/api", 555)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    posts = len(cortex.requests_to("POST"))

    for dry_run in (("--dry-run",), ()):
        code, report = sync(environ, capsys, "--github", "acme/api", *dry_run, *WINDOW)

        assert code == 0, report
        [row] = report["deploys"]
        assert (row["verdict"], row["deploy"]) == ("present", "deployment/101")
        assert row["detail"] == f"{uuid} (recorded as run/555/1)"
    assert len(cortex.requests_to("POST")) == posts
    assert [d["uuid"] for d in cortex.all_deploys()] == [uuid]


def test_each_attempt_of_a_deleted_run_finds_the_record_of_its_own_deploy(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # Attempt 1 deployed at 10:00, attempt 2 (a re-run) at 10:20; the Action step recorded
    # each; then the run was deleted. Each deployment's log page names the run, not the attempt.
    deploy_run(github, 1, 2)
    for id, job, minute in ((101, 776, 0), (102, 777, 20)):
        github.add_deployment(
            "acme/api",
            id,
            sha=SHA_A,
            environment="production",
            created_at=f"2026-11-03T10:{minute:02d}:00Z",
            states=[("SUCCESS", f"2026-11-03T10:{minute + 5:02d}:00Z")],
            log_url=f"https://github.com/acme/api/actions/runs/555/job/{job}",
        )
    first = action_step(cortex, 555, 1, "2026-11-03T10:04:00Z")
    second = action_step(cortex, 555, 2, "2026-11-03T10:24:00Z")
    github.delete_run("acme/api", 555)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    posts = len(cortex.requests_to("POST"))

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0, report
    assert sorted((r["deploy"], r["verdict"], r["detail"]) for r in report["deploys"]) == [
        ("deployment/101", "present", f"{first} (recorded as run/555/1)"),
        ("deployment/102", "present", f"{second} (recorded as run/555/2)"),
    ]
    assert len(cortex.requests_to("POST")) == posts
    assert len(cortex.all_deploys()) == 2


def test_the_core_finds_a_deleted_runs_deploy_under_its_run_whichever_face_records_it(
    cortex: FakeCortex,
) -> None:
    # The event sync reads of deployment 101 once run 555 is gone, recorded through the core
    # by a face that reads Cortex itself (the Action's and send's history).
    uuid = action_step(cortex, 555, 1, "2026-11-03T10:04:00Z")
    gone = replace(webhook_deployment_status(101, SHA_A), run="555")
    posts = len(cortex.requests_to("POST"))
    with CortexClient(cortex.url, TOKEN) as client:
        for dry_run in (True, False):
            outcome = recorder.record(client, gone, "api", dry_run=dry_run)
            assert (outcome.done, outcome.uuid, outcome.existing) == ("found", uuid, True)
    assert len(cortex.requests_to("POST")) == posts
    assert [d["uuid"] for d in cortex.all_deploys()] == [uuid]


def test_a_deleted_runs_deploy_with_no_record_is_recorded_keyed_by_its_deployment(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # Records of the run that are not this deploy's: of another sha, dated hours from it, of
    # another environment.
    run = deploy_run(github, 1)
    log = "https://github.com/acme/api/actions/runs/555/job/776"
    add_success(github, "acme/api", 101, SHA_A, 3, log_url=log)
    hooked = webhook_deployment_status(101, SHA_A, run=run)
    for attempt, changes in (
        (1, {"sha": SHA_B}),
        (2, {"timestamp": parse_timestamp("2026-11-03T13:00:00Z")}),
        (3, {"environment": "staging"}),
    ):
        other = replace(hooked, ref=DeployRef("run", f"555/{attempt}"), **changes)
        seed(cortex, "api", build_deploy_request(other, "api", DeployType.DEPLOY))
    github.delete_run("acme/api", 555)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", "--dry-run", *WINDOW)
    assert (code, verdicts(report)) == (3, [("missing", "deployment/101", "api")])
    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0, report
    assert verdicts(report) == [("recorded", "deployment/101", "api")]
    keys = sorted(str(key_of(d)) for d in cortex.all_deploys())
    assert keys == [
        "github:acme/api:deployment:101:production:api",
        "github:acme/api:run:555/1:production:api",
        "github:acme/api:run:555/2:production:api",
        "github:acme/api:run:555/3:staging:api",
    ]


def test_sync_finishes_the_start_record_of_a_deleted_runs_deploy_under_its_run(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # record.mode lifecycle: the webhook recorded the deploy's start under its run; its end's
    # webhook was lost, and the run deleted since.
    config = tmp_path / "bridge.yaml"
    config.write_text("record: {mode: lifecycle}\n")
    run = deploy_run(github, 1)
    log = "https://github.com/acme/api/actions/runs/555/job/776"
    add_success(github, "acme/api", 101, SHA_A, 3, log_url=log)
    hooked = webhook_deployment_status(101, SHA_A, run=run)
    start = replace(
        hooked,
        status=Status.IN_PROGRESS,
        timestamp=parse_timestamp("2026-11-03T10:01:00Z"),
        finished_at=None,
    )
    uuid = seed(cortex, "api", build_deploy_request(start, "api", DeployType.DEPLOY))
    github.delete_run("acme/api", 555)
    environ = environ_for(
        tmp_path, cortex, GITHUB_API_URL=github.api_url, BRIDGE_CONFIG=str(config)
    )

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 0, report
    [row] = report["deploys"]
    assert (row["verdict"], row["deploy"]) == ("finished", "deployment/101")
    [stored] = cortex.all_deploys()
    assert stored["uuid"] == uuid
    assert key_of(stored) == idempotency_key(hooked, "api")
    assert stored["customData"]["status"] == "succeeded"


def test_more_runs_than_github_returns_for_one_range_are_read_in_halves(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(
        "workflows:\n  - match: {workflow: Deploy}\n    environment: production\n"
        "cortex: {requests_per_minute: 0}\n"
    )
    for n in range(1200):  # GitHub answers at most 1,000 runs for one created range
        at = f"2026-11-{1 + n // 60:02d}T{(n % 60) // 6:02d}:{n % 60:02d}:00Z"
        github.add_run(
            "acme/api",
            9000 + n,
            sha=f"{n:040x}",
            name="Deploy",
            path="d.yml",
            created_at=at,
            updated_at=at,
        )
    environ = environ_for(
        tmp_path, cortex, GITHUB_API_URL=github.api_url, BRIDGE_CONFIG=str(config)
    )

    code, report = sync(environ, capsys, "--github", "acme/api", "--dry-run", *WINDOW)

    assert code == 3
    deploys = [r["deploy"] for r in report["deploys"] if r["verdict"] == "missing"]
    assert len(deploys) == len(set(deploys)) == 1200


def test_github_org_also_takes_a_user_account(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    github.add_repo("octocat/site", user="octocat")
    add_success(github, "octocat/site", 101, SHA_A, 3)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github-org", "octocat", "--dry-run", *WINDOW)

    assert code == 3
    assert verdicts(report) == [("missing", "deployment/101", "site")]
    paths = [r.path for r in github.requests]
    assert paths[:2] == ["/orgs/octocat/repos", "/users/octocat/repos"]


def test_one_keyless_record_matches_one_deploy_by_short_sha_within_the_hour(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same sha deployed twice an hour and a half apart; another tool recorded it once,
    # with a short sha, near the second deploy; a record of another environment is no match.
    for id, minute in ((101, "09:00"), (102, "10:30")):
        github.add_deployment(
            "acme/api",
            id,
            sha=SHA_A,
            environment="production",
            created_at=f"2026-11-03T{minute}:00Z",
            states=[("SUCCESS", f"2026-11-03T{minute}:30Z")],
        )
    by_hand = {"title": "deployed", "type": "DEPLOY", "sha": SHA_A[:7], "environment": "production"}
    uuid = seed(cortex, "api", {**by_hand, "timestamp": "2026-11-03T10:40:00Z"})
    seed(cortex, "api", {**by_hand, "timestamp": "2026-11-03T09:00:40Z", "environment": "staging"})
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", "--dry-run", *WINDOW)

    assert code == 3
    rows = {r["deploy"]: r for r in report["deploys"]}
    assert rows["deployment/102"]["verdict"] == "matched"
    assert uuid in rows["deployment/102"]["detail"]
    assert rows["deployment/101"]["verdict"] == "missing"


def test_a_deployment_of_an_earlier_attempt_is_keyed_by_that_attempt(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy_run(github, 1, 2)  # the run was re-run (jobs 776, 777); the listing has attempt 2
    log = "https://github.com/acme/api/actions/runs/555/job/776"
    add_success(github, "acme/api", 101, SHA_A, 3, log_url=log)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", "--dry-run", *WINDOW)

    assert code == 3
    assert verdicts(report) == [("missing", "run/555/1", "api")]


def test_limit_stops_early_and_the_next_run_continues_the_same_window(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    for id, day in ((101, 3), (102, 4), (103, 5)):
        add_success(github, "acme/api", id, f"{id:040x}", day)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github", "acme/api", "--limit", "2", *WINDOW)

    assert code == 0
    assert report["summary"]["recorded"] == 2
    # No --since/--until: the interrupted window is continued, not today's default one.
    code = main(["sync", "--github", "acme/api", "--output", "json"], environ)
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 0
    assert (
        "github:acme/api: continuing the interrupted sync of 2026-11-01T00:00:00Z to "
        "2026-12-01T00:00:00Z (--restart starts over)"
    ) in err
    assert sorted(v for v, _, _ in verdicts(report)) == ["present", "present", "recorded"]
    assert len(cortex.all_deploys()) == 3


def test_a_gitlab_read_resumes_at_the_next_page_link(gitlab: FakeGitLab) -> None:
    for n in range(150):
        gitlab.add_deployment(
            "acme/web",
            n + 1,
            job=7000 + n,
            sha=f"{n:040x}",
            environment="production",
            status="success",
            updated_at=f"2026-11-{2 + n // 24:02d}T{n % 24:02d}:00:00Z",
        )
    api = gitlab_client(gitlab.url, GL_TOKEN)
    window = Window(
        parse_timestamp("2026-11-01T00:00:00Z"), parse_timestamp("2026-12-01T00:00:00Z")
    )
    reader = GitLabReader(api, "acme/web", runs_are_deploys=False)
    first = list(reader.read(window))
    resume = next(f.resume for f in first if f.resume)
    again = [f.event.ref.id for f in reader.read(window, resume=resume) if f.event is not None]
    api.close()
    assert [f.event.ref.id for f in first if f.event is not None][:100][-1] == "7099"
    assert again == [str(7000 + n) for n in range(100, 150)]


def test_an_entity_with_more_records_than_a_sync_reads_is_failed_not_doubled(
    tmp_path: Path,
    cortex: FakeCortex,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Records past the listing's bound were never read: the webhook's record of deployment 101,
    # behind them, looked missing and was recorded a second time.
    from bridge.cortex import client as cortex_client
    from bridge.sync import engine

    add_success(github, "acme/api", 101, SHA_A, 3)
    for n in range(4):
        seed(
            cortex,
            "api",
            {"title": f"other {n}", "timestamp": "2026-10-01T10:00:00Z", "type": "DEPLOY"},
        )
    # Behind the other records, past what a bound listing read.
    seed(
        cortex,
        "api",
        build_deploy_request(webhook_deployment_status(101, SHA_A), "api", DeployType.DEPLOY),
    )
    monkeypatch.setattr(cortex_client, "PAGE_SIZE", 2)
    monkeypatch.setattr(engine, "SYNC_PAGES", 2)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    posts = len(cortex.requests_to("POST"))

    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)

    assert code == 1 and len(cortex.requests_to("POST")) == posts
    said = json.dumps(report)
    assert "more than 4 deploys of api" in said, said
    # Read whole, the same deploy is found present.
    monkeypatch.setattr(engine, "SYNC_PAGES", 3)
    code, report = sync(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 0 and [r["verdict"] for r in report["deploys"]] == ["present"]
    assert len(cortex.requests_to("POST")) == posts


def test_a_listing_past_its_bound_is_an_error_unless_part_is_asked_for(
    cortex: FakeCortex, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.cortex import client as cortex_client
    from bridge.errors import CortexTooMany

    for n in range(5):
        seed(
            cortex, "api", {"title": f"d{n}", "timestamp": "2026-10-01T10:00:00Z", "type": "DEPLOY"}
        )
    monkeypatch.setattr(cortex_client, "PAGE_SIZE", 2)
    with CortexClient(cortex.url, TOKEN) as client:
        with pytest.raises(CortexTooMany, match="more than 4 deploys of api"):
            list(client.iter_deploys("api", max_pages=2))
        assert len(list(client.iter_deploys("api", max_pages=2, partial=True))) == 4
        assert len(list(client.iter_deploys("api", max_pages=3))) == 5


def test_a_listing_naming_what_it_should_not_skips_that_name_and_reads_the_rest(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hostile or broken listing: a name that is no OWNER/REPO ended the whole organisation
    # ("--github: expected OWNER/REPO", a flag never given), and another owner's repository
    # was read as the organisation's.
    github.orgs["acme"] = ["acme/a/b", "victim/secret", "acme/api"]
    github.deployments.setdefault("victim/secret", [])
    add_success(github, "acme/api", 101, SHA_A, 3)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)

    code, report = sync(environ, capsys, "--github-org", "acme", "--dry-run", *WINDOW)

    assert code == 3, report
    assert verdicts(report) == [("missing", "deployment/101", "api")]
    said = json.dumps(report)
    assert "'acme/a/b', not a full name" in said and "'victim/secret', not one of its own" in said
    assert "--github" not in said
    assert not any("victim" in r.path for r in github.requests)


@pytest.mark.parametrize("as_json", [False, True])
def test_a_rows_long_values_are_cut_saying_so(as_json: bool) -> None:
    # A hostile SCM's 100,000-character environment, skipped, was written whole in the row.
    import io

    from bridge.sync.engine import Row, Verdict
    from bridge.sync.report import MAX_SHOWN, Report

    out = io.StringIO()
    report = Report(out, json=as_json, secrets=["s3cr3t-token"])
    long = "e" * (MAX_SHOWN - 5) + "s3cr3t-token" + "e" * 100_000
    report.row(Row("gitlab:acme/api", Verdict.SKIPPED, "too long", "acme/api", "job/1", long))
    text = out.getvalue()
    assert len(text) < 3 * MAX_SHOWN and "(100,607 characters)" in text
    assert "s3cr" not in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--github-org", ""],
        ["--github-org", "a/b"],
        ["--github-org", ".."],
        ["--github", "a b/c"],
        ["--github", "a\x1b/b"],
        ["--github", "acme/.."],
        ["--gitlab", "acme/../x"],
        ["--gitlab-group", "acme group"],
        ["--github", "acme/api", "--environment", ""],
        ["--github", "acme/api", "--environment", "prod\nx"],
    ],
)
def test_a_name_that_would_go_into_an_api_path_as_it_is_is_a_usage_error(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # --github-org a/b asked GET /users/a/b/repos; --environment "" matched nothing and said
    # "nothing missing".
    from bridge.cli import main

    assert main(["sync", *argv], {"GITHUB_TOKEN": "t", "CORTEX_API_TOKEN": "c"}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and (
        "--github" in err or "--gitlab" in err or "--environment" in err
    ), err
