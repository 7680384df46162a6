"""Travis CI: default environment variables.

Docs: https://docs.travis-ci.com/user/environment-variables/#default-environment-variables
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact
from bridge.model import DeployRef, first_line

NAME = "travis"


def detect(environ: Mapping[str, str]) -> bool:
    """TRAVIS is "true" in every Travis CI job."""
    return Env(environ)("TRAVIS") == "true"


def context(environ: Mapping[str, str]) -> CiContext:
    """TRAVIS_BUILD_ID names the build: restarting a build or one of its jobs keeps it.

    Travis names no person in the environment.
    """
    env = Env(environ)
    build_id = env("TRAVIS_BUILD_ID")
    return CiContext(
        source=NAME,
        repository=env("TRAVIS_REPO_SLUG") or "",
        event="build",
        ref=DeployRef("build", build_id) if build_id else None,
        sha=env("TRAVIS_COMMIT"),
        branch=env("TRAVIS_TAG", "TRAVIS_BRANCH"),
        title=first_line(env("TRAVIS_COMMIT_MESSAGE")) or None,
        url=env("TRAVIS_JOB_WEB_URL", "TRAVIS_BUILD_WEB_URL"),
        workspace=env("TRAVIS_BUILD_DIR"),
        details=compact({"buildNumber": env("TRAVIS_BUILD_NUMBER"), "jobId": env("TRAVIS_JOB_ID")}),
    )
