"""The ``cortex-deploy-bridge`` command: one entry point, one subcommand per face.

Subcommand modules are imported only when chosen, so ``send`` and ``action`` never load the
server's dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from bridge import __version__

EXIT_FAILED, EXIT_USAGE = 1, 2
# What a shell reports for a command ended by SIGPIPE (128 + 13): `... | head` closed its end.
EXIT_PIPE_CLOSED = 141

DESCRIPTION = """\
Record every deploy in Cortex exactly once: from a GitHub Action step, any CI job
(`send`), or GitHub, GitLab, Flux and Argo CD webhooks (`serve`)."""

EPILOG = """\
examples:
  # try everything with no Cortex account (a stand-in Cortex, signed sample webhooks)
  cortex-deploy-bridge demo

  # in a CI job, after the deploy (CORTEX_API_TOKEN set)
  cortex-deploy-bridge send --entity-tag payments-api --environment production

  # the webhook relay, on SQLite (bridge.db) by default
  cortex-deploy-bridge serve --bind 127.0.0.1:8080

  # what Cortex lacks of 30 days of an organisation's deployments (--dry-run: report only)
  cortex-deploy-bridge sync --github-org acme --since 30d --dry-run

  cortex-deploy-bridge COMMAND --help   # each command's flags, variables and examples
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        """One line naming the problem, then exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# The import names of what pyproject.toml's `server` extra installs (tests/test_packaging.py
# checks the two agree). `send` and `action` import none of them: they run on the base install.
SERVER_MODULES = (
    "flask",
    "gunicorn",
    "gevent",
    "packaging",
    "sqlalchemy",
    "orjson",
    "psycopg",
    "prometheus_client",
    "requests",
)
SERVER_EXTRA = "cortex-deploy-bridge[server]"

# name -> (one-line summary, module under bridge.commands, whether it needs the server extra)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "send": (
        "record one deploy from flags and the CI context (GitLab CI, any CI)",
        "send",
        False,
    ),
    "action": (
        "the GitHub Action entrypoint: reads INPUT_* and the workflow context",
        "action",
        False,
    ),
    "serve": ("run the webhook receiver (gunicorn) with the delivery worker inside", "serve", True),
    "worker": (
        "run delivery workers alone (for scale-out beside `serve --no-worker`)",
        "worker",
        True,
    ),
    "deliveries": ("inspect and replay the delivery log: list, show, retry", "deliveries", True),
    "check-config": (
        "validate a config file and print what each route resolves to",
        "check_config",
        False,
    ),
    "sync": (
        "read deploys from GitHub, GitLab, Argo CD or an http source; record what Cortex lacks",
        "sync",
        True,
    ),
    "demo": (
        "a self-contained tour: stand-in Cortex, the bridge, signed sample webhooks",
        "demo",
        True,
    ),
}


def missing_extra(command: str) -> str | None:
    """Why ``command`` cannot run on this install (the server extra is missing), else None.

    Looked up, not imported: finding a module costs a directory listing, and the command
    imports what it needs itself.
    """
    if not COMMANDS[command][2]:
        return None
    from importlib.util import find_spec

    missing = [name for name in SERVER_MODULES if find_spec(name) is None]
    if not missing:
        return None
    return (
        f"`{command}` needs the server extra, which is not installed (no module "
        f"{missing[0]!r}): pip install '{SERVER_EXTRA}'"
    )


def _module(name: str) -> Any:
    return importlib.import_module(f"bridge.commands.{COMMANDS[name][1]}")


def build_parser(command: str | None = None) -> Parser:
    """The parser; only ``command``'s own flags are loaded (keeps start-up light)."""
    return _parsers(command)[0]


def _parsers(command: str | None) -> tuple[Parser, Parser | None]:
    """The parser, and ``command``'s own (None when no command is chosen)."""
    chosen = None
    parser = Parser(
        prog="cortex-deploy-bridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (summary, _, _) in COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:])
        if name == command:
            _module(name).add_arguments(child)
            chosen = child
    return parser, chosen


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one subcommand; the exit code is 0 on success, 1 on failure, 2 on bad usage."""
    try:
        try:
            return _main(argv, environ)
        finally:
            sys.stdout.flush()  # here, where a closed pipe is caught, rather than at exit
    except BrokenPipeError:
        return _pipe_closed()


def _main(argv: Sequence[str] | None, environ: Mapping[str, str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    asks_help = any(arg in ("-h", "--help") for arg in argv)
    # Before the flags are read: a missing extra is the problem to name, whatever the flags.
    problem = missing_extra(chosen) if chosen in COMMANDS and not asks_help else None
    if problem is not None:
        print(f"cortex-deploy-bridge: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    parser, command_parser = _parsers(chosen if chosen in COMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Named as the command's, as its other flags' errors are: its --help has the flags.
        (command_parser or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from bridge.errors import UsageError

    environ = os.environ if environ is None else environ
    try:
        return int(_module(args.command).run(args, environ))
    except UsageError as exc:
        # Bad usage found past a command's own checks (a *_FILE that cannot be read where a
        # server reads its secrets): still one line, never a traceback.
        print(f"cortex-deploy-bridge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader went away (`send ... | head`): main stops quietly, not a bug
    except Exception as exc:
        # A bug (an answer of a shape no check foresaw, say): one line, the secrets masked;
        # BRIDGE_TRACEBACK=1 shows where, for a report.
        if environ.get("BRIDGE_TRACEBACK"):
            raise
        from bridge.redact import redact
        from bridge.secrets import ALL_SECRETS, variable_or_file

        secrets = []
        for name in ALL_SECRETS:  # the files' secrets too; one that cannot be read shows none
            with contextlib.suppress(Exception):
                secrets.append(variable_or_file(environ, name)[1])
        said = redact(" ".join(f"{type(exc).__name__}: {exc}".split()), secrets)[:500]
        print(
            f"cortex-deploy-bridge: error: internal error ({said}); "
            "BRIDGE_TRACEBACK=1 shows where, for a bug report",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _pipe_closed() -> int:
    """The reader went away (``sync ... | head``): stop quietly, as a killed-by-SIGPIPE tool.

    Python would otherwise print a traceback, and a second error when it flushes stdout at
    exit; stdout is pointed at /dev/null so that flush has nowhere to fail (docs.python.org,
    "Note on SIGPIPE").
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real file (a test's capture): nothing to mend
            pass
    return EXIT_PIPE_CLOSED


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
