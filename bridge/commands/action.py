"""`action`: the GitHub Action entrypoint (what the Action's step runs); reads INPUT_*."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from bridge.commands.helptext import describe

ABOUT = """\
The GitHub Action's entrypoint: what the Action's step runs. It takes no flags: the Action's
inputs come as INPUT_<NAME> variables (INPUT_CORTEX_API_TOKEN, as the composite step sets
them, or INPUT_CORTEX-API-TOKEN, as a Docker step would) and the workflow's context as
GITHUB_* variables and the event file.
Writes the deploy-uuid and payload outputs, a step summary, and errors as annotations."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags: GitHub passes the inputs as INPUT_* variables."""
    describe(
        parser,
        ABOUT,
        environment=[
            ("INPUT_*", "the Action's inputs (cortex-api-token, entity-tag, environment, ...)"),
            ("CORTEX_API_TOKEN", "used when the cortex-api-token input is empty"),
            ("CORTEX_API_URL", "used when the cortex-api-url input is empty"),
            ("GITHUB_*", "the run's context: GITHUB_EVENT_PATH, GITHUB_SHA, GITHUB_RUN_ID, ..."),
            ("GITHUB_OUTPUT", "where the deploy-uuid and payload outputs are written"),
            ("GITHUB_STEP_SUMMARY", "where the summary table is written"),
        ],
        examples=[
            "# a workflow step (the usual way):",
            "- uses: <owner>/cortex-deploy-bridge@<version>",
            "  with:",
            "    cortex-api-token: ${{ secrets.CORTEX_API_TOKEN }}",
            "",
            "# try it locally, sending nothing:",
            "GITHUB_ACTIONS=true GITHUB_REPOSITORY=acme/app INPUT_DRY_RUN=true \\",
            "    cortex-deploy-bridge action",
        ],
        exit_codes=[
            (0, "recorded, already recorded, or its event's deploy failed; or fail-on-error false"),
            (1, "Cortex refused the deploy or could not be reached"),
            (2, "a bad input, environment variable or cortex.yaml"),
        ],
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``action``: the GitHub Action entrypoint; inputs come from INPUT_* variables."""
    from bridge.action.run import run_action

    return run_action(environ)
