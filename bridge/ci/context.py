"""What a CI job says about the deploy it runs, and the small readers every provider shares.

Pure: a provider reads a mapping of environment variables and returns a CiContext.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from bridge.model import DeployRef
from bridge.times import parse_timestamp


@dataclass(frozen=True)
class CiContext:
    """What the CI job says about the deploy; every field is a default the user may override.

    ``ref`` names the build (a stable id that a re-run of the same build keeps); None when
    the environment has no such id.
    """

    source: str  # the provider: "github", "gitlab", "jenkins", ..., or "cli" outside any CI
    repository: str
    event: str
    ref: DeployRef | None = None
    sha: str | None = None
    branch: str | None = None
    environment: str | None = None
    title: str | None = None
    url: str | None = None
    deployer_name: str | None = None
    deployer_email: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    workspace: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    # Why the step records nothing: the event that started it says the deploy did not
    # succeed (a deployment_status of failure, a workflow_run that failed).
    not_recorded: str | None = None


class Env:
    """Read environment variables: stripped, and empty counts as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def __call__(self, *names: str) -> str | None:
        """The first of ``names`` that is set to something."""
        for name in names:
            value = self.environ.get(name, "").strip()
            if value:
                return value
        return None

    def moment(self, name: str) -> datetime | None:
        """An RFC 3339 time, or None when unset or unreadable (a default, never an error)."""
        value = self(name)
        try:
            return parse_timestamp(value) if value else None
        except ValueError:
            return None


_SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:(?!//)(?P<path>.+)$")


def repository_from_url(url: str | None) -> str | None:
    """``owner/name`` (GitLab: with subgroups) from a clone URL, never its credentials.

    ``https://user:token@github.com/acme/app.git``, ``git@github.com:acme/app.git`` and
    ``ssh://git@host:7999/acme/app.git`` all give ``acme/app``.
    """
    if not url:
        return None
    scp = _SCP_LIKE.match(url)
    path = scp["path"] if scp else urlsplit(url).path
    path = path.strip("/")
    path = path[: -len(".git")] if path.endswith(".git") else path
    return path or None


def branch_name(ref: str | None) -> str | None:
    """``main`` from ``refs/heads/main`` or ``origin/main``; a tag ref keeps its name."""
    if not ref:
        return None
    for prefix in ("refs/heads/", "refs/tags/", "origin/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :] or None
    return ref


def compact(details: Mapping[str, Any]) -> dict[str, Any]:
    """The details without the ones the job did not have."""
    return {key: value for key, value in details.items() if value not in (None, "")}
