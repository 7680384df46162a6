"""`check-config`: validate a config file, print what it does, which secrets are set, and routes.

Secrets are reported by name only (set or missing), never by value; so is where the database
URL came from (its password is shown masked in the ``database:`` line). A source that is
enabled but has no secret is a warning here, since ``serve`` refuses to start on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bridge.commands.common import add_config_flag, config_path, fail
from bridge.commands.helptext import describe as describe_command
from bridge.errors import UsageError
from bridge.secrets import SERVER_SECRETS, secret_from

if TYPE_CHECKING:
    from bridge.config import Config

# The order check-config reports them in: the webhook sources' first (bridge.secrets).
SECRETS = SERVER_SECRETS
DEFAULTS = "built-in defaults (no PATH, --config or $BRIDGE_CONFIG)"


def _target(raw: str) -> tuple[str, str | None]:
    """``REPOSITORY[:ENVIRONMENT]`` as (repository, environment or None)."""
    repository, _, environment = raw.partition(":")
    repository = repository.strip().strip("/")
    if not repository:
        raise argparse.ArgumentTypeError(f"must be REPOSITORY[:ENVIRONMENT], got {raw!r}")
    return repository, environment.strip() or None


ABOUT = """\
Validate a config file and print what it does: the Cortex URL and database it resolves to,
the sources, routes, environment and workflow rules, which secrets are set (by name, never
their values), and, with --try, where a deployment of a repository would be recorded. A bad
key is named in one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """An optional PATH, ``--config``, and ``--try`` routing probes."""
    describe_command(
        parser,
        ABOUT,
        environment=[
            ("BRIDGE_CONFIG", "the config file when neither PATH nor --config is given"),
            ("CORTEX_API_URL", "overrides cortex.url"),
            ("BRIDGE_DATABASE_URL", "overrides database (or BRIDGE_DATABASE_URL_FILE)"),
            ("GITHUB_WEBHOOK_SECRET", "these (or their *_FILE forms) are reported as set"),
            ("GITLAB_WEBHOOK_TOKEN", "or missing, never shown; a source enabled without its"),
            ("FLUX_WEBHOOK_SECRET", "secret is a warning, since serve refuses to start on it"),
            ("ARGOCD_WEBHOOK_TOKEN", ""),
            ("CORTEX_API_TOKEN", ""),
            ("BRIDGE_ADMIN_TOKEN", ""),
        ],
        examples=[
            "cortex-deploy-bridge check-config bridge.yaml",
            "cortex-deploy-bridge check-config bridge.yaml --try acme/payments-api:production",
            "cortex-deploy-bridge check-config bridge.yaml --source argocd --project payments "
            "--try argocd/payments-api",
        ],
        exit_codes=[
            (0, "the config is valid (warnings may be printed on stderr)"),
            (2, "the config is invalid, or a secret set cannot be used: the line names the key"),
        ],
    )
    parser.add_argument(
        "path",
        nargs="?",
        default=None,
        metavar="PATH",
        help="config file (default: --config, else $BRIDGE_CONFIG, else the built-in defaults)",
    )
    add_config_flag(parser)
    parser.add_argument(
        "--try",
        dest="tries",
        action="append",
        default=[],
        type=_target,
        metavar="REPOSITORY[:ENVIRONMENT]",
        help="show where a successful deployment of this repository (to this environment) "
        "is recorded, or why it is ignored; repeatable",
    )
    parser.add_argument(
        "--source",
        default="github",
        help="the source of the --try events: github, gitlab, flux, argocd or an http_sources "
        "name (default: github); for flux and argocd, --try names the object: NAMESPACE/NAME",
    )
    parser.add_argument(
        "--project",
        default=None,
        help="with --source argocd: the Application's project, for routes' project globs",
    )
    parser.add_argument(
        "--tag",
        default=None,
        metavar="ENTITY",
        help="with --source flux or argocd: the object's cortex.io/tag annotation",
    )


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``check-config``: exit 0 when the config is valid (warnings included), 2 when not."""
    from bridge.config import GITOPS_SOURCES, describe, load_config
    from bridge.errors import ConfigError

    if args.path and args.config and args.path != args.config:
        return fail("give the config file once: PATH or --config, not both")
    try:
        path = config_path(environ, ("PATH", args.path), ("--config", args.config))
        config = load_config(path, environ)
    except (ConfigError, UsageError) as exc:
        return fail(str(exc))
    if args.source not in config.source_names:
        known = ", ".join(config.source_names)
        return fail(f"--source: {args.source!r} is not a source (expected one of: {known})")
    if args.project and args.source != "argocd":
        return fail("--project is for --source argocd (an Application's project)")
    if args.tag and args.source not in GITOPS_SOURCES:
        return fail("--tag is for --source flux or argocd (the object's cortex.io/tag)")
    print(f"config OK: {path or DEFAULTS}")
    for line in describe(config):
        print(line)
    unusable = _report_secrets(config, environ)
    if unusable:  # serve and worker refuse to start on it: so does this check
        for problem in unusable[:-1]:
            fail(problem)
        return fail(unusable[-1])
    for repository, environment in args.tries:
        print(
            try_route(
                config, args.source, repository, environment, project=args.project, tag=args.tag
            )
        )
    return 0


def _report_secrets(config: Config, environ: Mapping[str, str]) -> list[str]:
    """Which secrets are set, by name; warnings on stderr for the ones a server needs. The
    problems of those set but unusable (an unreadable file, a second line), by name."""
    from bridge.config import SECRET_HOMES, SOURCES

    print("secrets (names only):")
    missing = set()
    unusable = []
    for name in SECRETS:
        state = _secret_state(environ, name)
        print(f"  {name}: {state}")
        if state.startswith("unusable: "):
            unusable.append(state.removeprefix("unusable: "))
        elif not state.startswith("set"):
            missing.add(name)
    print(f"  BRIDGE_DATABASE_URL: {_database_state(environ)}")
    for source in SOURCES:
        name = SECRET_HOMES[f"sources.{source}"]
        if config.sources.enabled(source) and name in missing:
            _warn(
                f"sources.{source} is enabled but {name} is not set: "
                "serve will refuse to start (unless --allow-unsigned)"
            )
    if "CORTEX_API_TOKEN" in missing:
        _warn("CORTEX_API_TOKEN is not set: the worker cannot deliver to Cortex")
    return unusable


def _secret_state(environ: Mapping[str, str], name: str) -> str:
    """``set``, ``set (from NAME_FILE)``, ``missing`` or ``unusable: why``; never the value."""
    try:
        value = secret_from(environ, name)
    except UsageError as exc:
        return f"unusable: {exc}"
    if not value:
        return "missing (admin API off)" if name == "BRIDGE_ADMIN_TOKEN" else "missing"
    return "set" if environ.get(name, "").strip() else f"set (from {name}_FILE)"


def _database_state(environ: Mapping[str, str]) -> str:
    """``set``, ``set (from BRIDGE_DATABASE_URL_FILE)`` or ``not set``; never the URL."""
    from bridge.config import DATABASE_VARIABLE, database_url_from

    name, url = database_url_from(environ)  # load_config has already refused a bad one
    if not url:
        return "not set (the config's database)"
    return "set" if name == DATABASE_VARIABLE else f"set (from {name})"


def try_route(
    config: Config,
    source: str,
    repository: str,
    environment: str | None,
    *,
    project: str | None = None,
    tag: str | None = None,
) -> str:
    """One line: where a successful deploy of ``repository`` goes, or why it is ignored.

    For Flux and Argo CD ``repository`` is the object (``namespace/name``), ``project`` the
    Application's project and ``tag`` its cortex.io/tag annotation, as their events carry them.
    """
    from datetime import datetime, timezone

    from bridge.config import GITOPS_SOURCES, route
    from bridge.errors import UnsupportedEvent
    from bridge.model import DeployEvent, DeployRef, Status

    gitops = source in GITOPS_SOURCES
    details = {"project": project} if project else {}
    if tag:
        details["entitiesFrom"] = "annotation cortex.io/tag"
    event = DeployEvent(
        source=source,
        repository=repository,
        event={"flux": "kustomization", "argocd": "sync"}.get(source, "deployment_status"),
        ref=DeployRef("deployment", "check-config"),
        status=Status.SUCCEEDED,
        timestamp=datetime.now(timezone.utc),
        title="check-config",
        environment=environment,
        details=details,
        entities=(tag,) if tag else (),
    )
    where = f"environment {environment!r}" if environment is not None else "no environment"
    what = f"{source} {'object ' if gitops else ''}{repository}"
    extra = "".join(
        f", {label} {value!r}" for label, value in (("project", project), ("tag", tag)) if value
    )
    head = f"try {what}, {where}{extra}"
    try:
        found = route(config, event)
    except UnsupportedEvent as exc:
        return f"{head}: ignored: {exc.reason}"
    line = f"{head}: -> {', '.join(found.entities)} ({found.rule})"
    if found.environment != environment:
        line += f", recorded as environment {found.environment!r}"
    return line


def _warn(message: str) -> None:
    print(f"cortex-deploy-bridge: warning: {message}", file=sys.stderr)
