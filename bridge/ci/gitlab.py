"""Deploy defaults from a GitLab CI job.

Docs: https://docs.gitlab.com/ci/variables/predefined_variables/ (predefined CI/CD variables).

A job that records the deploy of another job (the deploy job writes ``CORTEX_DEPLOY_*`` to a
dotenv report, the recording job receives them through ``needs:``) records that job: its id,
url, times and environment, so it is keyed as the Deployment Hook for that job keys it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from bridge.ci.context import CiContext, Env, compact
from bridge.errors import UsageError
from bridge.model import DeployRef
from bridge.times import parse_timestamp
from bridge.urls import page_problem

NAME = "gitlab"


def detect(environ: Mapping[str, str]) -> bool:
    """GITLAB_CI is "true" in every GitLab CI job."""
    return Env(environ)("GITLAB_CI") == "true"


def _job_id(env: Env, name: str) -> str | None:
    value = env(name)
    if value is not None and not (value.isascii() and value.isdigit()):
        raise UsageError(f"{name}: {value!r} is not a GitLab job id")
    return value


def _moment(env: Env, name: str) -> datetime | None:
    value = env(name)
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _page(env: Env, name: str) -> str | None:
    value = env(name)
    problem = page_problem(value) if value is not None else None
    if problem is not None:
        raise UsageError(f"{name}: the URL {problem}")  # never the URL: it may hold a password
    return value


def context(environ: Mapping[str, str]) -> CiContext:
    """Deploy defaults for a job running in GitLab CI."""
    env = Env(environ)
    job_id = _job_id(env, "CI_JOB_ID")
    # The job id is what GitLab's Deployment Hook calls deployable_id: the webhook receiver
    # names the same deploy the same way.
    own = CiContext(
        source=NAME,
        repository=env("CI_PROJECT_PATH") or "",
        event="job",
        ref=DeployRef("job", job_id) if job_id else None,
        sha=env("CI_COMMIT_SHA"),
        branch=env("CI_COMMIT_REF_NAME"),
        environment=env("CI_ENVIRONMENT_NAME"),
        title=env("CI_COMMIT_TITLE"),
        url=_page(env, "CI_JOB_URL"),
        deployer_name=env("GITLAB_USER_NAME"),
        deployer_email=env("GITLAB_USER_EMAIL"),
        started_at=env.moment("CI_JOB_STARTED_AT"),
        workspace=env("CI_PROJECT_DIR"),
        details=compact(
            {
                "jobId": job_id,
                "jobName": env("CI_JOB_NAME"),
                "pipelineId": env("CI_PIPELINE_ID"),
                "pipelineUrl": env("CI_PIPELINE_URL"),
                "environmentUrl": env("CI_ENVIRONMENT_URL"),
                "tier": env("CI_ENVIRONMENT_TIER"),
            }
        ),
    )
    deploy_job = _job_id(env, "CORTEX_DEPLOY_JOB_ID")
    if deploy_job is not None:
        return _deploy_job(env, own, deploy_job)
    return replace(own, not_recorded=_not_a_deploy(env))


# environment:action values under which GitLab makes no deployment of the job (its
# Deployment Hook sends none): https://docs.gitlab.com/ci/yaml/#environmentaction
_NO_DEPLOYMENT = ("prepare", "stop", "verify", "access")
# CI_JOB_STATUS as after_script sees it for a job whose script did not succeed.
_NOT_SUCCEEDED = ("failed", "canceled")


def _not_a_deploy(env: Env) -> str | None:
    """Why this job, recording itself, is no deploy: its environment's action makes none, or
    (``send`` in ``after_script``) its script failed or was canceled; None for a deploy."""
    action = (env("CI_ENVIRONMENT_ACTION") or "start").lower()
    if env("CI_ENVIRONMENT_NAME") and action in _NO_DEPLOYMENT:
        return f"CI_ENVIRONMENT_ACTION is {action}: GitLab makes no deployment of this job"
    status = (env("CI_JOB_STATUS") or "").lower()
    if status in _NOT_SUCCEEDED:
        return f"CI_JOB_STATUS is {status}: the deploy job did not succeed"
    return None


def _deploy_job(env: Env, own: CiContext, job_id: str) -> CiContext:
    """The deploy job named by CORTEX_DEPLOY_JOB_ID, recorded from this later job: the
    pipeline's facts stay, the job's own (id, page, times, environment, who ran it) are the
    deploy job's."""
    project = env("CI_PROJECT_URL")
    page = f"{project.rstrip('/')}/-/jobs/{job_id}" if project else None
    return replace(
        own,
        ref=DeployRef("job", job_id),
        environment=env("CORTEX_DEPLOY_ENVIRONMENT") or own.environment,
        url=_page(env, "CORTEX_DEPLOY_JOB_URL") or page,
        # Who ran the deploy job (a manual job's player), not who started the pipeline: the
        # pipeline's email never beside another person's name.
        deployer_name=env("CORTEX_DEPLOY_USER_NAME") or own.deployer_name,
        deployer_email=env("CORTEX_DEPLOY_USER_EMAIL")
        or (None if env("CORTEX_DEPLOY_USER_NAME") else own.deployer_email),
        started_at=_moment(env, "CORTEX_DEPLOY_JOB_STARTED_AT"),
        finished_at=_moment(env, "CORTEX_DEPLOY_JOB_FINISHED_AT"),
        details=compact(
            {
                "jobId": job_id,
                "recordedByJobId": own.details.get("jobId"),
                "pipelineId": own.details.get("pipelineId"),
                "pipelineUrl": own.details.get("pipelineUrl"),
                "environmentUrl": env("CORTEX_DEPLOY_ENVIRONMENT_URL"),
            }
        ),
    )
