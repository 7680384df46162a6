"""A deploy's page URL: one rule (bridge.urls.page_problem) for every face. A URL with user
info (``user:password@``) once reached Cortex, where everyone sees the deploy's URL, and the
console's "event as read"; ``CORTEX_DEPLOY_JOB_URL`` took what ``--url`` refused."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from typing import Any

import pytest

from bridge.cli import main
from bridge.errors import InvalidDeploy
from bridge.fakecortex import FakeCortex
from bridge.model import DeployEvent, DeployRef, Status, bounded
from bridge.urls import page_problem
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import client_for, github_post, make_runtime

SHA = "b" * 40


@pytest.mark.parametrize(
    ("url", "api", "problem"),
    [
        ("https://github.com/acme/api/actions/runs/1", False, None),
        ("HTTPS://ci.example:8443/job/7", False, None),
        ("https://api.github.com/repos/acme/api/deployments/1", True, None),
        ("https://api.github.com/repos/acme/api/deployments/1", False, "API URL"),
        ("https://gitlab.example/api/v4/projects/1", False, "API URL"),
        ("https://user:pa55w0rd@ci.example/job/7", True, "user info"),
        ("https://token@ci.example/", True, "user info"),
        ("notaurl", True, "not an absolute"),
        ("ftp://ci.example/x", True, "not an absolute"),
        ("https:///path-only", True, "not an absolute"),
        ("http://[::1/", True, "not an absolute"),
    ],
)
def test_the_one_rule(url: str, api: bool, problem: str | None) -> None:
    found = page_problem(url, api=api)
    assert (found is None) if problem is None else (problem in str(found)), found


def event(**changes: Any) -> DeployEvent:
    made = DeployEvent(
        source="cli",
        repository="acme/api",
        event="send",
        ref=DeployRef("id", "u-1"),
        status=Status.SUCCEEDED,
        timestamp=datetime(2026, 11, 23, tzinfo=timezone.utc),
        title="Ship it",
        sha=SHA,
    )
    return dataclasses.replace(made, **changes)


def test_the_model_refuses_a_url_with_user_info_never_showing_it() -> None:
    with pytest.raises(InvalidDeploy) as caught:
        bounded(event(url="https://deployer:pa55w0rd@ci.example/job/7"))
    assert caught.value.field == "url" and "pa55w0rd" not in str(caught.value)
    with pytest.raises(InvalidDeploy):
        bounded(event(url="notaurl"))
    assert bounded(event(url="https://ci.example/job/7")).url == "https://ci.example/job/7"


def test_a_webhooks_url_with_user_info_is_passed_over_for_the_next(
    tmp_path: Any, cortex: FakeCortex
) -> None:
    runtime = make_runtime(tmp_path)
    try:
        doc = load_sample("github/deployment_status.success.json")
        doc.pop("workflow_run", None)
        doc["deployment"]["payload"] = {}
        status = doc["deployment_status"]
        status["target_url"] = "https://user:pa55w0rd@ci.example/job/7"
        status["log_url"] = "https://ci.example/job/7/log"
        status["environment_url"] = "https://tok:ghp_secret@app.example/"
        answer = github_post(client_for(runtime), "deployment_status", doc)
        assert answer.status_code == 202, answer.json
        (stored,), _ = runtime.store.list_deliveries()
    finally:
        runtime.store.close()
    kept = repr(stored.payload)
    assert "pa55w0rd" not in kept and "ghp_secret" not in kept
    assert stored.payload["event"]["url"] == "https://ci.example/job/7/log"


@pytest.mark.parametrize(
    ("argv", "environ", "named"),
    [
        (["--url", "https://u:pa55w0rd@ci.example/job/7"], {}, "--url"),
        (
            [],
            {
                "GITLAB_CI": "true",
                "CI_JOB_ID": "41",
                "CI_PROJECT_PATH": "acme/api",
                "CORTEX_DEPLOY_JOB_ID": "40",
                "CORTEX_DEPLOY_JOB_URL": "notaurl",
            },
            "CORTEX_DEPLOY_JOB_URL",
        ),
        (
            [],
            {
                "GITLAB_CI": "true",
                "CI_JOB_ID": "41",
                "CI_PROJECT_PATH": "acme/api",
                "CORTEX_DEPLOY_JOB_ID": "40",
                "CORTEX_DEPLOY_JOB_URL": "https://u:pa55w0rd@gitlab.example/-/jobs/40",
            },
            "CORTEX_DEPLOY_JOB_URL",
        ),
    ],
)
def test_send_refuses_a_page_url_in_one_line_naming_where_it_came_from(
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
    named: str,
) -> None:
    base = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url, **environ}
    code = main(["send", "--entity-tag", "api", "--sha", SHA, "--deploy-id", "p-1", *argv], base)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and named in err[0], err
    assert "pa55w0rd" not in err[0]
    assert cortex.received == []
