"""Deploy defaults from a GitLab CI job (docs.gitlab.com "Predefined CI/CD variables")."""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci import CiContext
from bridge.model import DeployRef
from bridge.times import parse_timestamp


def context(environ: Mapping[str, str]) -> CiContext:
    """Deploy defaults for a job running in GitLab CI."""

    def var(name: str) -> str | None:
        return environ.get(name) or None

    started = var("CI_JOB_STARTED_AT")
    try:
        started_at = parse_timestamp(started) if started else None
    except ValueError:
        started_at = None
    details = {
        "jobId": var("CI_JOB_ID"),
        "jobName": var("CI_JOB_NAME"),
        "pipelineId": var("CI_PIPELINE_ID"),
        "pipelineUrl": var("CI_PIPELINE_URL"),
        "ref": var("CI_COMMIT_REF_NAME"),
        "environmentUrl": var("CI_ENVIRONMENT_URL"),
        "tier": var("CI_ENVIRONMENT_TIER"),
    }
    # The job id is what GitLab's Deployment Hook calls deployable_id: the webhook receiver
    # names the same deploy the same way.
    job_id = var("CI_JOB_ID")
    return CiContext(
        source="gitlab",
        repository=environ.get("CI_PROJECT_PATH", ""),
        event="job",
        ref=DeployRef("job", job_id) if job_id else None,
        sha=var("CI_COMMIT_SHA"),
        environment=var("CI_ENVIRONMENT_NAME"),
        title=var("CI_COMMIT_TITLE"),
        url=var("CI_JOB_URL"),
        deployer_name=var("GITLAB_USER_NAME"),
        deployer_email=var("GITLAB_USER_EMAIL"),
        started_at=started_at,
        workspace=var("CI_PROJECT_DIR"),
        details={k: v for k, v in details.items() if v},
    )
