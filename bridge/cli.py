"""The ``cortex-deploy-bridge`` command: one entry point, one subcommand per face.

Subcommand modules are imported only when chosen, so ``send`` and ``action`` never load the
server's dependencies.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from bridge import __version__

EXIT_USAGE = 2

DESCRIPTION = """\
Record every deploy in Cortex exactly once: from a GitHub Action step, any CI job
(`send`), or GitHub and GitLab webhooks (`serve`)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        """One line naming the problem, then exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_send_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``send``: the action's inputs, as options."""
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


def cmd_send(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``send``: record one deploy from flags and the CI context."""
    from bridge.send import Inputs
    from bridge.step import Reporter, run_step

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
        fail_on_error=args.fail_on_error,
        dry_run=args.dry_run,
    )
    return run_step(inputs, environ, Reporter(()), timeout=args.timeout)


def cmd_action(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``action``: the GitHub Action entrypoint; inputs come from INPUT_* variables."""
    from bridge import workflow_commands as wc
    from bridge.errors import UsageError
    from bridge.send import inputs_from_action
    from bridge.step import ActionReporter, run_step

    try:
        inputs = inputs_from_action(environ)
    except UsageError as exc:
        print(wc.annotation("error", str(exc), title="Cortex deploy"))
        return EXIT_USAGE
    return run_step(inputs, environ, ActionReporter((inputs.token,), environ))


COMMANDS: dict[
    str,
    tuple[
        str,
        Callable[[argparse.ArgumentParser], None] | None,
        Callable[[argparse.Namespace, Mapping[str, str]], int],
    ],
] = {
    "send": (
        "record one deploy from flags and the CI context (GitLab CI, any CI)",
        add_send_flags,
        cmd_send,
    ),
    "action": (
        "the GitHub Action entrypoint: reads INPUT_* and the workflow context",
        None,
        cmd_action,
    ),
}


def build_parser() -> Parser:
    """The parser of every subcommand."""
    parser = Parser(
        prog="cortex-deploy-bridge",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (summary, add_flags, _) in COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:])
        if add_flags is not None:
            add_flags(child)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one subcommand; the exit code is 0 on success, 1 on failure, 2 on bad usage."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler = COMMANDS[args.command][2]
    try:
        return handler(args, os.environ if environ is None else environ)
    except KeyboardInterrupt:
        return 130


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
