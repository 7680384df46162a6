"""The CI a command runs in, read from its environment: one module per provider, one table.

Every provider module is pure (environment in, CiContext out) and cites the page that
documents its variables. Detection goes down the table; the first provider that recognises
its own marker variable wins, so providers whose variables are generic (Jenkins' BUILD_URL,
Cloud Build's BUILD_ID) come last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bridge.ci import (
    azure,
    bitbucket,
    buildkite,
    circleci,
    cloudbuild,
    codebuild,
    drone,
    github,
    gitlab,
    jenkins,
    teamcity,
    travis,
    woodpecker,
)
from bridge.ci.context import CiContext

Environ = Mapping[str, str]
Reader = Callable[[Environ, Any], CiContext]


def _env_only(read: Callable[[Environ], CiContext]) -> Reader:
    return lambda environ, _payload: read(environ)


# (name, is this the CI?, its context) in detection order.
PROVIDERS: tuple[tuple[str, Callable[[Environ], bool], Reader], ...] = (
    (github.NAME, github.detect, github.context),
    (gitlab.NAME, gitlab.detect, _env_only(gitlab.context)),
    (buildkite.NAME, buildkite.detect, _env_only(buildkite.context)),
    (circleci.NAME, circleci.detect, _env_only(circleci.context)),
    (azure.NAME, azure.detect, _env_only(azure.context)),
    (bitbucket.NAME, bitbucket.detect, _env_only(bitbucket.context)),
    (travis.NAME, travis.detect, _env_only(travis.context)),
    (woodpecker.NAME, woodpecker.detect, _env_only(woodpecker.context)),
    (drone.NAME, drone.detect, _env_only(drone.context)),
    (teamcity.NAME, teamcity.detect, _env_only(teamcity.context)),
    (codebuild.NAME, codebuild.detect, _env_only(codebuild.context)),
    (jenkins.NAME, jenkins.detect, _env_only(jenkins.context)),
    (cloudbuild.NAME, cloudbuild.detect, _env_only(cloudbuild.context)),
)


def provider(environ: Environ) -> str | None:
    """The name of the CI this runs in, or None outside any CI the bridge knows."""
    return next((name for name, detect, _ in PROVIDERS if detect(environ)), None)


def detect(environ: Environ, event_payload: Mapping[str, Any] | None = None) -> CiContext:
    """The context of the CI this runs in, from its environment (and GitHub's event file)."""
    for _name, is_it, read in PROVIDERS:
        if is_it(environ):
            return read(environ, event_payload or {})
    return CiContext(source="cli", repository="", event="send")


__all__ = ["PROVIDERS", "CiContext", "detect", "provider"]
