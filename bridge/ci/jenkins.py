"""Jenkins: core build variables and the Git plugin's GIT_* variables.

Docs: https://www.jenkins.io/doc/book/pipeline/jenkinsfile/#using-environment-variables (each
Jenkins serves the full list at ${JENKINS_URL}env-vars.html); the Git plugin's variables:
https://plugins.jenkins.io/git/#plugin-content-environment-variables; BUILD_USER and
BUILD_USER_EMAIL come from https://plugins.jenkins.io/build-user-vars-plugin/ where installed.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.ci.context import CiContext, Env, branch_name, compact, repository_from_url
from bridge.model import DeployRef

NAME = "jenkins"


def detect(environ: Mapping[str, str]) -> bool:
    """JENKINS_URL is set in every build of a Jenkins whose URL is configured."""
    return bool(Env(environ)("JENKINS_URL"))


def context(environ: Mapping[str, str]) -> CiContext:
    """A build's job and number name it; a rebuild or replay is a new build number."""
    env = Env(environ)
    job, number = env("JOB_NAME"), env("BUILD_NUMBER")
    return CiContext(
        source=NAME,
        repository=repository_from_url(env("GIT_URL", "GIT_URL_1")) or "",
        event="build",
        ref=DeployRef("build", f"{job}#{number}") if job and number else None,
        sha=env("GIT_COMMIT"),
        branch=branch_name(env("BRANCH_NAME", "GIT_BRANCH")),
        url=env("BUILD_URL"),
        deployer_name=env("BUILD_USER"),
        deployer_email=env("BUILD_USER_EMAIL"),
        workspace=env("WORKSPACE"),
        details=compact({"job": job, "buildNumber": number}),
    )
