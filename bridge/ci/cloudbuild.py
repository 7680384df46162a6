"""Google Cloud Build: the default substitutions, passed to the step's environment.

Docs: https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values
(substitutions are not environment variables by themselves: docs/send.md shows the step's
``env:`` list that passes them under their own names).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from bridge.ci.context import CiContext, Env, compact
from bridge.model import DeployRef

NAME = "cloudbuild"


def detect(environ: Mapping[str, str]) -> bool:
    """$BUILD_ID and $PROJECT_ID passed in (checked after every other CI, Jenkins included)."""
    env = Env(environ)
    return bool(env("BUILD_ID") and env("PROJECT_ID"))


def context(environ: Mapping[str, str]) -> CiContext:
    """$BUILD_ID names the build; a retried build is a new build with a new id.

    Cloud Build names no person in its substitutions.
    """
    env = Env(environ)
    build_id, project, location = env("BUILD_ID") or "", env("PROJECT_ID"), env("LOCATION")
    region = f";region={quote(location, safe='')}" if location else ""
    url = (
        f"https://console.cloud.google.com/cloud-build/builds{region}/"
        f"{quote(build_id, safe='')}?project={quote(project or '', safe='')}"
    )
    return CiContext(
        source=NAME,
        repository=env("REPO_FULL_NAME", "REPO_NAME") or "",
        event="build",
        ref=DeployRef("build", build_id),
        sha=env("COMMIT_SHA"),
        branch=env("TAG_NAME", "BRANCH_NAME"),
        url=url,
        details=compact({"project": project, "trigger": env("TRIGGER_NAME")}),
    )
