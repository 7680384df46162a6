"""Azure Pipelines: predefined variables (Build.*, System.*), as the agent exports them.

Docs: https://learn.microsoft.com/en-us/azure/devops/pipelines/build/variables (a variable
``Build.BuildId`` reaches scripts as ``BUILD_BUILDID``).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from bridge.ci.context import CiContext, Env, branch_name, compact
from bridge.model import DeployRef, first_line

NAME = "azure-pipelines"


def detect(environ: Mapping[str, str]) -> bool:
    """TF_BUILD is "True" when a script runs in a build task."""
    return (Env(environ)("TF_BUILD") or "").lower() == "true"


def context(environ: Mapping[str, str]) -> CiContext:
    """The run's Build.BuildId names it: re-running a failed stage or job keeps the run."""
    env = Env(environ)
    build_id = env("BUILD_BUILDID")
    collection = env("SYSTEM_COLLECTIONURI", "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI")
    project = env("SYSTEM_TEAMPROJECT")
    url = None
    if collection and project and build_id:
        url = f"{collection.rstrip('/')}/{quote(project)}/_build/results?buildId={build_id}"
    return CiContext(
        source=NAME,
        repository=env("BUILD_REPOSITORY_NAME") or "",
        event="build",
        ref=DeployRef("build", build_id) if build_id else None,
        sha=env("BUILD_SOURCEVERSION"),
        branch=branch_name(env("BUILD_SOURCEBRANCH")),
        title=first_line(env("BUILD_SOURCEVERSIONMESSAGE")) or None,
        url=url,
        deployer_name=env("BUILD_REQUESTEDFOR"),
        deployer_email=env("BUILD_REQUESTEDFOREMAIL"),
        workspace=env("BUILD_SOURCESDIRECTORY"),
        details=compact(
            {
                "pipeline": env("BUILD_DEFINITIONNAME"),
                "buildNumber": env("BUILD_BUILDNUMBER"),
                "jobAttempt": env("SYSTEM_JOBATTEMPT"),
            }
        ),
    )
