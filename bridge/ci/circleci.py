"""CircleCI: built-in environment variables.

Docs: https://circleci.com/docs/reference/variables/ ("Built-in environment variables").
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact, repository_from_url
from bridge.model import DeployRef

NAME = "circleci"


def detect(environ: Mapping[str, str]) -> bool:
    """CIRCLECI is "true" in every CircleCI job."""
    return Env(environ)("CIRCLECI") == "true"


def context(environ: Mapping[str, str]) -> CiContext:
    """The workflow's workspace and the job's name identify the deploy job.

    "Rerun from failed" starts a new workflow (a new CIRCLE_WORKFLOW_ID) that shares the
    original's workspace, so CIRCLE_WORKFLOW_WORKSPACE_ID is what a re-run keeps.
    """
    env = Env(environ)
    owner, name = env("CIRCLE_PROJECT_USERNAME"), env("CIRCLE_PROJECT_REPONAME")
    repository = f"{owner}/{name}" if owner and name else None
    workflow = env("CIRCLE_WORKFLOW_WORKSPACE_ID", "CIRCLE_WORKFLOW_ID")
    job = env("CIRCLE_JOB")
    return CiContext(
        source=NAME,
        repository=repository or repository_from_url(env("CIRCLE_REPOSITORY_URL")) or "",
        event="build",
        ref=DeployRef("build", f"{workflow}/{job}") if workflow and job else None,
        sha=env("CIRCLE_SHA1"),
        branch=env("CIRCLE_BRANCH", "CIRCLE_TAG"),
        url=env("CIRCLE_BUILD_URL"),
        deployer_name=env("CIRCLE_USERNAME"),
        details=compact(
            {
                "workflowId": env("CIRCLE_WORKFLOW_ID"),
                "job": job,
                "buildNumber": env("CIRCLE_BUILD_NUM"),
            }
        ),
    )
