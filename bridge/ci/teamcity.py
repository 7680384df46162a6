"""TeamCity: the predefined build parameters TeamCity also exports as environment variables.

Docs: https://www.jetbrains.com/help/teamcity/predefined-build-parameters.html (only the
parameters listed with an ``env.`` name reach the environment; teamcity.build.id,
teamcity.serverUrl and vcsroot.url do not, so docs/send.md shows how to pass them).
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, compact
from bridge.model import DeployRef

NAME = "teamcity"


def detect(environ: Mapping[str, str]) -> bool:
    """TEAMCITY_VERSION is set in every TeamCity build."""
    return bool(Env(environ)("TEAMCITY_VERSION"))


def context(environ: Mapping[str, str]) -> CiContext:
    """The configuration and its build number name the build (the default number format,
    %build.counter%, is unique per configuration; a re-run is a new build)."""
    env = Env(environ)
    configuration, number = env("TEAMCITY_BUILDCONF_NAME"), env("BUILD_NUMBER")
    project = env("TEAMCITY_PROJECT_NAME")
    return CiContext(
        source=NAME,
        repository="",
        event="build",
        ref=DeployRef("build", f"{project}/{configuration}#{number}")
        if configuration and number
        else None,
        sha=env("BUILD_VCS_NUMBER"),
        details=compact(
            {"project": project, "configuration": configuration, "buildNumber": number}
        ),
    )
