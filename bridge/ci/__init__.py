"""Deploy facts read from the CI job a command runs in (GitHub Actions, GitLab CI)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.model import DeployRef


@dataclass(frozen=True)
class CiContext:
    """What the CI job says about the deploy; every field is a default the user may override."""

    source: str  # "github", "gitlab", or "cli" outside any CI
    repository: str
    event: str
    ref: DeployRef | None = None
    sha: str | None = None
    environment: str | None = None
    title: str | None = None
    url: str | None = None
    deployer_name: str | None = None
    deployer_email: str | None = None
    started_at: datetime | None = None
    workspace: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def detect(environ: Mapping[str, str], event_payload: Mapping[str, Any] | None) -> CiContext:
    """The context of the CI this runs in, from its environment (and GitHub's event file)."""
    if environ.get("GITHUB_ACTIONS") == "true":
        from bridge.ci import github

        return github.context(environ, event_payload or {})
    if environ.get("GITLAB_CI") == "true":
        from bridge.ci import gitlab

        return gitlab.context(environ)
    return CiContext(source="cli", repository="", event="send", workspace=None)
