"""Drone: pipeline environment variables.

Docs: https://docs.drone.io/pipeline/environment/reference/
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact
from bridge.model import DeployRef, first_line

NAME = "drone"


def detect(environ: Mapping[str, str]) -> bool:
    """DRONE is "true" in every Drone step."""
    return Env(environ)("DRONE") == "true"


def context(environ: Mapping[str, str]) -> CiContext:
    """DRONE_BUILD_NUMBER names the build; a restart is a new build (DRONE_BUILD_PARENT)."""
    env = Env(environ)
    number = env("DRONE_BUILD_NUMBER")
    return CiContext(
        source=NAME,
        repository=env("DRONE_REPO") or "",
        event="build",
        ref=DeployRef("build", number) if number else None,
        sha=env("DRONE_COMMIT_SHA", "DRONE_COMMIT"),
        branch=env("DRONE_TAG", "DRONE_BRANCH", "DRONE_COMMIT_BRANCH"),
        environment=env("DRONE_DEPLOY_TO"),
        title=first_line(env("DRONE_COMMIT_MESSAGE")) or None,
        url=env("DRONE_BUILD_LINK"),
        deployer_name=env("DRONE_COMMIT_AUTHOR_NAME", "DRONE_COMMIT_AUTHOR"),
        deployer_email=env("DRONE_COMMIT_AUTHOR_EMAIL"),
        details=compact({"buildNumber": number, "parentBuild": env("DRONE_BUILD_PARENT")}),
    )
