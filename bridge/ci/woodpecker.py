"""Woodpecker CI: built-in environment variables (CI_PIPELINE_*; before v1, CI_BUILD_*).

Docs: https://woodpecker-ci.org/docs/usage/environment ("Built-in environment variables").
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact
from bridge.model import DeployRef, first_line

NAME = "woodpecker"


def detect(environ: Mapping[str, str]) -> bool:
    """CI is "woodpecker" in every Woodpecker step."""
    return Env(environ)("CI") == "woodpecker"


def context(environ: Mapping[str, str]) -> CiContext:
    """The pipeline number names it; a restart is a new pipeline (CI_PIPELINE_PARENT)."""
    env = Env(environ)
    number = env("CI_PIPELINE_NUMBER", "CI_BUILD_NUMBER")
    owner, name = env("CI_REPO_OWNER"), env("CI_REPO_NAME")
    return CiContext(
        source=NAME,
        repository=env("CI_REPO") or (f"{owner}/{name}" if owner and name else ""),
        event="build",
        ref=DeployRef("build", number) if number else None,
        sha=env("CI_COMMIT_SHA"),
        branch=env("CI_COMMIT_TAG", "CI_COMMIT_BRANCH"),
        environment=env("CI_PIPELINE_DEPLOY_TARGET"),
        title=first_line(env("CI_COMMIT_MESSAGE")) or None,
        url=env("CI_PIPELINE_URL", "CI_BUILD_LINK"),
        deployer_name=env("CI_COMMIT_AUTHOR"),
        deployer_email=env("CI_COMMIT_AUTHOR_EMAIL"),
        workspace=env("CI_WORKSPACE"),
        details=compact({"buildNumber": number, "parentBuild": env("CI_PIPELINE_PARENT")}),
    )
