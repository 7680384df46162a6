"""`send`: record one deploy from flags and the CI context (GitLab CI, any CI)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from bridge.commands.helptext import describe

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
            ("CORTEX_API_URL", "Cortex API base URL (default: https://api.getcortexapp.com)"),
            ("HTTPS_PROXY, NO_PROXY", "proxy for Cortex, and hosts that bypass it"),
            ("CORTEX_DEPLOY_JOB_ID", "GitLab: record this deploy job (from its dotenv report),"),
            ("", "with CORTEX_DEPLOY_JOB_URL, _JOB_STARTED_AT, _JOB_FINISHED_AT,"),
            ("", "CORTEX_DEPLOY_ENVIRONMENT and CORTEX_DEPLOY_ENVIRONMENT_URL"),
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
    add = parser.add_argument
    add(
        "--entity-tag",
        action="append",
        default=[],
        metavar="TAG",
        help="Cortex entity tag; repeat or comma-separate for several "
        "(default: info.x-cortex-tag of cortex.yaml, else the repository's name)",
    )
    add("--environment", default="", help="deploy environment (default: from the CI job)")
    add(
        "--type",
        default="auto",
        metavar="TYPE",
        help="DEPLOY, SCALE, ROLLBACK, RESTART, or auto: ROLLBACK when the sha was "
        "deployed to this environment before and is not the latest (default: auto)",
    )
    add("--title", default="", help="title (default: the commit's first line)")
    add("--sha", default="", help="commit sha (default: from the CI job)")
    add("--url", default="", help="link to the deploy (default: the CI job or run page)")
    add("--deployer-name", default="", help="who deployed (default: from the CI job)")
    add("--deployer-email", default="", help="deployer's email (default: from the CI job)")
    add("--timestamp", default="", help="when it finished, RFC 3339 (default: now, UTC)")
    add(
        "--custom-data",
        default="",
        metavar="JSON_OR_YAML",
        help="a mapping merged into the deploy's customData",
    )
    add(
        "--deploy-id",
        default="",
        metavar="ID",
        help="name this deploy where the CI has no build id (or to override it), so that "
        "running the same command again finds the record instead of making a second one",
    )
    add(
        "--cortex-api-url",
        default="",
        help="Cortex API base URL (default: $CORTEX_API_URL or https://api.getcortexapp.com)",
    )
    add(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="per-request timeout (default: 10)",
    )
    add(
        "--fail-on-error",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="exit 1 when the deploy cannot be recorded (default: on)",
    )
    add(
        "--dry-run",
        action="store_true",
        help="print what would be sent; send nothing (reads history when a token is set)",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``send``: record one deploy from flags and the CI context."""
    from bridge.action.inputs import Inputs
    from bridge.action.output import Reporter
    from bridge.action.run import run_step

    inputs = Inputs(
        api_url=args.cortex_api_url,
        entity_tag="\n".join(args.entity_tag),
        environment=args.environment,
        type=args.type,
        title=args.title,
        sha=args.sha,
        url=args.url,
        deployer_name=args.deployer_name,
        deployer_email=args.deployer_email,
        timestamp=args.timestamp,
        custom_data=args.custom_data,
        deploy_id=args.deploy_id,
        fail_on_error=args.fail_on_error,
        dry_run=args.dry_run,
    )
    return run_step(inputs, environ, Reporter(()), timeout=args.timeout)
