"""`send`: record one deploy from flags and the CI context (GitLab CI, any CI)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from bridge.action.inputs import add_flags
from bridge.commands.common import seconds
from bridge.commands.helptext import describe
from bridge.urls import CORTEX_URL

ABOUT = """\
Record one deploy in Cortex from a CI job. Every flag is optional where the CI says it:
repository, commit, branch, job or run page, deployer and a build id are read from GitHub
Actions, GitLab CI, Jenkins, Buildkite, CircleCI, Azure Pipelines, Bitbucket Pipelines,
Travis CI, Drone, Woodpecker, TeamCity, AWS CodeBuild and Google Cloud Build (which variables,
per CI: docs/send.md). The build id names the deploy, so running the same command again in
the same build finds the record instead of making a second one; elsewhere, --deploy-id does.
Prints the Cortex deploy uuid(s), one per entity."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``send``: the action's inputs, as options."""
    describe(
        parser,
        ABOUT,
        environment=[
            ("CORTEX_API_TOKEN", "Cortex API token (required; or CORTEX_API_TOKEN_FILE)"),
            ("CORTEX_API_URL", f"Cortex API base URL (default: {CORTEX_URL})"),
            ("HTTPS_PROXY, NO_PROXY", "proxy for Cortex, and hosts that bypass it"),
            ("CORTEX_DEPLOY_JOB_ID", "GitLab: record this deploy job (from its dotenv report),"),
            ("", "with CORTEX_DEPLOY_JOB_URL, _JOB_STARTED_AT, _JOB_FINISHED_AT,"),
            ("", "CORTEX_DEPLOY_ENVIRONMENT, _ENVIRONMENT_URL, _USER_NAME, _USER_EMAIL"),
            ("(the CI's own)", "GITLAB_CI, JENKINS_URL, BUILDKITE, ...: see docs/send.md"),
        ],
        examples=[
            "# in a GitLab CI deploy job, after the deploy itself:",
            "cortex-deploy-bridge send --entity-tag payments-api",
            "",
            "# anywhere else: name the deploy so that a re-run finds it",
            "cortex-deploy-bridge send --entity-tag payments-api --environment production \\",
            '    --sha "$(git rev-parse HEAD)" --deploy-id "release-2026.11.3"',
        ],
        exit_codes=[
            (0, "recorded, or already recorded (or --no-fail-on-error)"),
            (1, "Cortex refused the deploy or could not be reached"),
            (2, "bad usage: a flag, an environment variable or cortex.yaml"),
        ],
    )
    add_flags(parser)
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="per-request timeout (default: 10)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``send``: record one deploy from flags and the CI context."""
    from bridge.action.inputs import inputs_from_flags
    from bridge.action.output import Reporter
    from bridge.action.run import run_step

    return run_step(inputs_from_flags(args), environ, Reporter(()), timeout=args.timeout)
