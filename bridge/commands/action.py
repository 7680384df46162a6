"""`action`: the GitHub Action entrypoint (what the container runs); reads INPUT_*."""

from __future__ import annotations

import argparse
from collections.abc import Mapping


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags: GitHub passes the inputs as INPUT_* variables."""


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``action``: the GitHub Action entrypoint; inputs come from INPUT_* variables."""
    from bridge.errors import UsageError
    from bridge.send import inputs_from_action
    from bridge.step import EXIT_USAGE, ActionReporter, run_step

    try:
        inputs = inputs_from_action(environ)
    except UsageError as exc:
        reporter = ActionReporter((), environ)
        reporter.error(reporter.describe(exc))
        return EXIT_USAGE
    return run_step(inputs, environ, ActionReporter((inputs.token,), environ))
