"""`send` under each CI it knows: the environment that CI documents, and a re-run of the build.

Each sample environment below is written from the provider's own variable reference (the page
cited in bridge/ci/<provider>.py), with made-up values in the documented formats.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bridge.ci import PROVIDERS, detect, provider
from bridge.ci.context import repository_from_url
from bridge.cli import main
from bridge.fakecortex import FakeCortex
from tests.conftest import TOKEN

SHA = "9f2c4e1b7a6d5c3e8f0a1b2c3d4e5f60718293a4"


@dataclass(frozen=True)
class Case:
    """One CI's environment and what `send` must read from it."""

    environ: dict[str, str]
    repository: str
    url: str
    deployer: dict[str, str] | None
    build: str  # the id part of the idempotency key
    environment: str | None = None


CASES: dict[str, Case] = {
    "jenkins": Case(
        {
            "JENKINS_URL": "https://jenkins.acme.example/",
            "JENKINS_HOME": "/var/jenkins_home",
            "BUILD_NUMBER": "153",
            "BUILD_ID": "153",
            "JOB_NAME": "payments/deploy-production",
            "BUILD_URL": "https://jenkins.acme.example/job/payments/job/deploy-production/153/",
            "BUILD_TAG": "jenkins-payments-deploy-production-153",
            "WORKSPACE": "/nonexistent/workspace",
            "GIT_COMMIT": SHA,
            "GIT_BRANCH": "origin/main",
            "GIT_URL": "https://ci-bot:s3cr3t@github.com/acme/payments-api.git",
            "BUILD_USER": "Jane Doe",
            "BUILD_USER_EMAIL": "jane@acme.example",
        },
        repository="acme/payments-api",
        url="https://jenkins.acme.example/job/payments/job/deploy-production/153/",
        deployer={"name": "Jane Doe", "email": "jane@acme.example"},
        build="payments/deploy-production#153",
    ),
    "buildkite": Case(
        {
            "CI": "true",
            "BUILDKITE": "true",
            "BUILDKITE_BUILD_ID": "0190a5b2-6c1e-4a53-9b2d-3f1d2c4b5a69",
            "BUILDKITE_BUILD_NUMBER": "1514",
            "BUILDKITE_BUILD_URL": "https://buildkite.com/acme/payments-api/builds/1514",
            "BUILDKITE_JOB_ID": "0190a5b2-7d2f-4b64-8c3e-4a2e3d5c6b7a",
            "BUILDKITE_REPO": "git@github.com:acme/payments-api.git",
            "BUILDKITE_COMMIT": SHA,
            "BUILDKITE_BRANCH": "main",
            "BUILDKITE_MESSAGE": "Retry settlement calls on 5xx\n\nLonger body",
            "BUILDKITE_BUILD_CREATOR": "Jane Doe",
            "BUILDKITE_BUILD_CREATOR_EMAIL": "jane@acme.example",
            "BUILDKITE_PIPELINE_SLUG": "payments-api",
        },
        repository="acme/payments-api",
        url="https://buildkite.com/acme/payments-api/builds/1514",
        deployer={"name": "Jane Doe", "email": "jane@acme.example"},
        build="0190a5b2-6c1e-4a53-9b2d-3f1d2c4b5a69",
    ),
    "circleci": Case(
        {
            "CI": "true",
            "CIRCLECI": "true",
            "CIRCLE_PROJECT_USERNAME": "acme",
            "CIRCLE_PROJECT_REPONAME": "payments-api",
            "CIRCLE_REPOSITORY_URL": "git@github.com:acme/payments-api.git",
            "CIRCLE_SHA1": SHA,
            "CIRCLE_BRANCH": "main",
            "CIRCLE_BUILD_NUM": "4242",
            "CIRCLE_BUILD_URL": "https://circleci.com/gh/acme/payments-api/4242",
            "CIRCLE_JOB": "deploy-production",
            "CIRCLE_WORKFLOW_ID": "6f8d1b2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "CIRCLE_WORKFLOW_WORKSPACE_ID": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
            "CIRCLE_USERNAME": "jdoe",
        },
        repository="acme/payments-api",
        url="https://circleci.com/gh/acme/payments-api/4242",
        deployer={"name": "jdoe"},
        build="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d/deploy-production",
    ),
    "azure-pipelines": Case(
        {
            "TF_BUILD": "True",
            "BUILD_BUILDID": "20871",
            "BUILD_BUILDNUMBER": "20261120.3",
            "BUILD_DEFINITIONNAME": "payments-api-deploy",
            "BUILD_REPOSITORY_NAME": "acme/payments-api",
            "BUILD_SOURCEVERSION": SHA,
            "BUILD_SOURCEBRANCH": "refs/heads/main",
            "BUILD_SOURCEVERSIONMESSAGE": "Retry settlement calls on 5xx",
            "BUILD_REQUESTEDFOR": "Jane Doe",
            "BUILD_REQUESTEDFOREMAIL": "jane@acme.example",
            "SYSTEM_COLLECTIONURI": "https://dev.azure.com/acme/",
            "SYSTEM_TEAMPROJECT": "Payments Platform",
            "SYSTEM_JOBATTEMPT": "1",
        },
        repository="acme/payments-api",
        url="https://dev.azure.com/acme/Payments%20Platform/_build/results?buildId=20871",
        deployer={"name": "Jane Doe", "email": "jane@acme.example"},
        build="20871",
    ),
    "bitbucket": Case(
        {
            "CI": "true",
            "BITBUCKET_BUILD_NUMBER": "389",
            "BITBUCKET_PIPELINE_UUID": "{2d9c3a4b-5e6f-4a7b-8c9d-0e1f2a3b4c5d}",
            "BITBUCKET_STEP_UUID": "{8e7d6c5b-4a3f-4e2d-9c1b-0a9f8e7d6c5b}",
            "BITBUCKET_STEP_RUN_NUMBER": "1",
            "BITBUCKET_STEP_TRIGGERER_UUID": "{5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d}",
            "BITBUCKET_REPO_FULL_NAME": "acme/payments-api",
            "BITBUCKET_COMMIT": SHA,
            "BITBUCKET_BRANCH": "main",
            "BITBUCKET_DEPLOYMENT_ENVIRONMENT": "production",
            "BITBUCKET_CLONE_DIR": "/nonexistent/build",
        },
        repository="acme/payments-api",
        url="https://bitbucket.org/acme/payments-api/pipelines/results/389",
        deployer=None,  # Bitbucket gives the triggerer's UUID only (kept in customData)
        build="{2d9c3a4b-5e6f-4a7b-8c9d-0e1f2a3b4c5d}",
        environment="production",
    ),
    "travis": Case(
        {
            "CI": "true",
            "TRAVIS": "true",
            "TRAVIS_BUILD_ID": "46812085",
            "TRAVIS_BUILD_NUMBER": "60",
            "TRAVIS_JOB_ID": "46812086",
            "TRAVIS_JOB_WEB_URL": "https://app.travis-ci.com/acme/payments-api/jobs/46812086",
            "TRAVIS_REPO_SLUG": "acme/payments-api",
            "TRAVIS_COMMIT": SHA,
            "TRAVIS_BRANCH": "main",
            "TRAVIS_COMMIT_MESSAGE": "Retry settlement calls on 5xx",
            "TRAVIS_BUILD_DIR": "/nonexistent/build",
        },
        repository="acme/payments-api",
        url="https://app.travis-ci.com/acme/payments-api/jobs/46812086",
        deployer=None,  # Travis names no person in the environment
        build="46812085",
    ),
    "drone": Case(
        {
            "CI": "true",
            "DRONE": "true",
            "DRONE_REPO": "acme/payments-api",
            "DRONE_COMMIT_SHA": SHA,
            "DRONE_BRANCH": "main",
            "DRONE_BUILD_NUMBER": "42",
            "DRONE_BUILD_LINK": "https://drone.acme.example/acme/payments-api/42",
            "DRONE_COMMIT_AUTHOR": "jdoe",
            "DRONE_COMMIT_AUTHOR_NAME": "Jane Doe",
            "DRONE_COMMIT_AUTHOR_EMAIL": "jane@acme.example",
            "DRONE_DEPLOY_TO": "production",
        },
        repository="acme/payments-api",
        url="https://drone.acme.example/acme/payments-api/42",
        deployer={"name": "Jane Doe", "email": "jane@acme.example"},
        build="42",
        environment="production",
    ),
    "woodpecker": Case(
        {
            "CI": "woodpecker",
            "CI_REPO": "acme/payments-api",
            "CI_REPO_OWNER": "acme",
            "CI_REPO_NAME": "payments-api",
            "CI_COMMIT_SHA": SHA,
            "CI_COMMIT_BRANCH": "main",
            "CI_PIPELINE_NUMBER": "17",
            "CI_PIPELINE_URL": "https://ci.acme.example/repos/7/pipeline/17",
            "CI_COMMIT_AUTHOR": "jdoe",
            "CI_COMMIT_AUTHOR_EMAIL": "jane@acme.example",
        },
        repository="acme/payments-api",
        url="https://ci.acme.example/repos/7/pipeline/17",
        deployer={"name": "jdoe", "email": "jane@acme.example"},
        build="17",
    ),
    "teamcity": Case(
        {
            "TEAMCITY_VERSION": "2025.11 (build 197398)",
            "TEAMCITY_PROJECT_NAME": "Payments",
            "TEAMCITY_BUILDCONF_NAME": "Deploy production",
            "BUILD_NUMBER": "311",
            "BUILD_VCS_NUMBER": SHA,
        },
        repository="",  # not in TeamCity's environment: --entity-tag and --url are passed
        url="",
        deployer=None,
        build="Payments/Deploy production#311",
    ),
    "codebuild": Case(
        {
            "CODEBUILD_BUILD_ID": "payments-deploy:b1e6661e-e4f2-4156-9ab9-82a19e2c0f11",
            "CODEBUILD_BUILD_ARN": "arn:aws:codebuild:eu-west-1:123456789012:build/"
            "payments-deploy:b1e6661e-e4f2-4156-9ab9-82a19e2c0f11",
            "CODEBUILD_BUILD_NUMBER": "88",
            "CODEBUILD_INITIATOR": "jdoe",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": SHA,
            "CODEBUILD_SOURCE_REPO_URL": "https://github.com/acme/payments-api.git",
            "CODEBUILD_WEBHOOK_HEAD_REF": "refs/heads/main",
            "CODEBUILD_SRC_DIR": "/nonexistent/src",
            "AWS_REGION": "eu-west-1",
        },
        repository="acme/payments-api",
        url="https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/123456789012/projects/"
        "payments-deploy/build/payments-deploy%3Ab1e6661e-e4f2-4156-9ab9-82a19e2c0f11/"
        "?region=eu-west-1",
        deployer={"name": "jdoe"},
        build="payments-deploy:b1e6661e-e4f2-4156-9ab9-82a19e2c0f11",
    ),
    "cloudbuild": Case(
        {
            "BUILD_ID": "8c2b4f0e-1d3a-4b5c-9e8f-7a6b5c4d3e2f",
            "PROJECT_ID": "acme-payments",
            "LOCATION": "europe-west1",
            "COMMIT_SHA": SHA,
            "REPO_FULL_NAME": "acme/payments-api",
            "BRANCH_NAME": "main",
        },
        repository="acme/payments-api",
        url="https://console.cloud.google.com/cloud-build/builds;region=europe-west1/"
        "8c2b4f0e-1d3a-4b5c-9e8f-7a6b5c4d3e2f?project=acme-payments",
        deployer=None,  # Cloud Build names no person in its substitutions
        build="8c2b4f0e-1d3a-4b5c-9e8f-7a6b5c4d3e2f",
    ),
}


def test_every_provider_has_a_sample() -> None:
    known = {name for name, _, _ in PROVIDERS} - {"github", "gitlab"}
    assert known == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_detects_its_own_ci(name: str) -> None:
    assert provider(CASES[name].environ) == name


@pytest.mark.parametrize("name", sorted(CASES))
def test_send_records_the_ci_context_and_a_rerun_finds_it(
    name: str, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    case = CASES[name]
    env = {**case.environ, "CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    argv = ["send", "--entity-tag", "payments-api", "--environment", "production"]
    if not case.url:
        argv += ["--url", "https://teamcity.acme.example/buildConfiguration/Deploy/311"]
    assert main(argv, env) == 0
    first = capsys.readouterr()
    assert "re-run" not in first.err and "again" not in first.err, first.err
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == SHA
    assert deploy["url"] == (
        case.url or "https://teamcity.acme.example/buildConfiguration/Deploy/311"
    )
    assert deploy.get("deployer") == case.deployer
    custom = deploy["customData"]
    assert custom["source"] == name
    # None where the CI names no repository (TeamCity): no empty field in the record.
    assert custom.get("repository") == (case.repository or None)
    assert custom["bridge"]["idempotencyKey"] == (
        f"{name}:{case.repository}:build:{case.build}:production:payments-api"
    )
    # The same command again in the same build: the record is found, not made twice.
    assert main(argv, env) == 0
    again = capsys.readouterr()
    assert again.out.split() == [deploy["uuid"]]
    assert len(cortex.all_deploys()) == 1
    assert len(cortex.requests_to("POST")) == 1


@pytest.mark.parametrize("name", sorted(c for c in CASES if CASES[c].environment))
def test_deploy_environment_from_the_ci(name: str) -> None:
    assert detect(CASES[name].environ).environment == CASES[name].environment


def test_credentials_in_a_clone_url_never_reach_the_record() -> None:
    ctx = detect(CASES["jenkins"].environ)
    assert ctx.repository == "acme/payments-api"
    assert "s3cr3t" not in repr(ctx)


@pytest.mark.parametrize(
    ("url", "repository"),
    [
        ("https://github.com/acme/app.git", "acme/app"),
        ("https://x-access-token:ghs_abc@github.com/acme/app", "acme/app"),
        ("git@github.com:acme/app.git", "acme/app"),
        ("ssh://git@bitbucket.example:7999/proj/app.git", "proj/app"),
        ("https://gitlab.example/group/sub/app.git", "group/sub/app"),
        ("", None),
    ],
)
def test_repository_from_clone_url(url: str, repository: str | None) -> None:
    assert repository_from_url(url) == repository
