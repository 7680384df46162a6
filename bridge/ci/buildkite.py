"""Buildkite: the agent's BUILDKITE_* variables.

Docs: https://buildkite.com/docs/pipelines/configure/environment-variables
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact, repository_from_url
from bridge.model import DeployRef, first_line

NAME = "buildkite"


def detect(environ: Mapping[str, str]) -> bool:
    """BUILDKITE is always "true" in a Buildkite job."""
    return Env(environ)("BUILDKITE") == "true"


def context(environ: Mapping[str, str]) -> CiContext:
    """The build's UUID names it: a retried job runs in the same build, with the same id."""
    env = Env(environ)
    build_id = env("BUILDKITE_BUILD_ID")
    return CiContext(
        source=NAME,
        repository=repository_from_url(env("BUILDKITE_REPO")) or "",
        event="build",
        ref=DeployRef("build", build_id) if build_id else None,
        sha=env("BUILDKITE_COMMIT"),
        branch=env("BUILDKITE_BRANCH", "BUILDKITE_TAG"),
        title=first_line(env("BUILDKITE_MESSAGE")) or None,
        url=env("BUILDKITE_BUILD_URL"),
        deployer_name=env("BUILDKITE_BUILD_CREATOR"),
        deployer_email=env("BUILDKITE_BUILD_CREATOR_EMAIL"),
        workspace=env("BUILDKITE_BUILD_CHECKOUT_PATH"),
        details=compact(
            {
                "pipeline": env("BUILDKITE_PIPELINE_SLUG"),
                "buildNumber": env("BUILDKITE_BUILD_NUMBER"),
                "jobId": env("BUILDKITE_JOB_ID"),
            }
        ),
    )
