"""Bitbucket Pipelines: default variables.

Docs: https://support.atlassian.com/bitbucket-cloud/docs/variables-and-secrets/ ("Default
variables").
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact
from bridge.model import DeployRef

NAME = "bitbucket"


def detect(environ: Mapping[str, str]) -> bool:
    """BITBUCKET_PIPELINE_UUID is set in every step of a pipeline."""
    return bool(Env(environ)("BITBUCKET_PIPELINE_UUID"))


def context(environ: Mapping[str, str]) -> CiContext:
    """The pipeline's UUID names it: "Rerun failed steps" stays in the same pipeline.

    Bitbucket names no person in the environment, only the triggerer's UUID (in details).
    """
    env = Env(environ)
    pipeline = env("BITBUCKET_PIPELINE_UUID")
    repository, number = env("BITBUCKET_REPO_FULL_NAME"), env("BITBUCKET_BUILD_NUMBER")
    url = None
    if repository and number:
        url = f"https://bitbucket.org/{repository}/pipelines/results/{number}"
    return CiContext(
        source=NAME,
        repository=repository or "",
        event="build",
        ref=DeployRef("build", pipeline) if pipeline else None,
        sha=env("BITBUCKET_COMMIT"),
        branch=env("BITBUCKET_BRANCH", "BITBUCKET_TAG"),
        environment=env("BITBUCKET_DEPLOYMENT_ENVIRONMENT"),
        url=url,
        workspace=env("BITBUCKET_CLONE_DIR"),
        details=compact(
            {
                "buildNumber": number,
                "stepRunNumber": env("BITBUCKET_STEP_RUN_NUMBER"),
                "triggererUuid": env("BITBUCKET_STEP_TRIGGERER_UUID"),
            }
        ),
    )
