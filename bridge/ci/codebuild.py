"""AWS CodeBuild: environment variables in build environments.

Docs: https://docs.aws.amazon.com/codebuild/latest/userguide/build-env-ref-env-vars.html
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from bridge.ci.context import CiContext, Env, branch_name, compact, repository_from_url
from bridge.model import DeployRef

NAME = "codebuild"


def detect(environ: Mapping[str, str]) -> bool:
    """CODEBUILD_BUILD_ID is set in every CodeBuild build."""
    return bool(Env(environ)("CODEBUILD_BUILD_ID"))


def console_url(build_arn: str | None, build_id: str) -> str | None:
    """The build's page in the AWS console, from its ARN (region and account)."""
    parts = (build_arn or "").split(":")
    if len(parts) < 6 or parts[2] != "codebuild" or ":" not in build_id:
        return None
    region, account = parts[3], parts[4]
    project = build_id.split(":", 1)[0]
    return (
        f"https://{region}.console.aws.amazon.com/codesuite/codebuild/{account}/projects/"
        f"{quote(project, safe='')}/build/{quote(build_id, safe='')}/?region={region}"
    )


def context(environ: Mapping[str, str]) -> CiContext:
    """CODEBUILD_BUILD_ID names the build; "Retry build" starts a new build with a new id."""
    env = Env(environ)
    build_id = env("CODEBUILD_BUILD_ID") or ""
    return CiContext(
        source=NAME,
        repository=repository_from_url(env("CODEBUILD_SOURCE_REPO_URL")) or "",
        event="build",
        ref=DeployRef("build", build_id) if build_id else None,
        sha=env("CODEBUILD_RESOLVED_SOURCE_VERSION"),
        branch=branch_name(env("CODEBUILD_WEBHOOK_HEAD_REF")),
        url=env("CODEBUILD_PUBLIC_BUILD_URL") or console_url(env("CODEBUILD_BUILD_ARN"), build_id),
        deployer_name=env("CODEBUILD_INITIATOR"),
        workspace=env("CODEBUILD_SRC_DIR"),
        details=compact({"buildNumber": env("CODEBUILD_BUILD_NUMBER")}),
    )
