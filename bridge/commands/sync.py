"""`sync`: read deploys from GitHub, GitLab, Argo CD or an http source; record what Cortex
lacks."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from bridge.commands.common import EXIT_FAILED, EXIT_USAGE, add_config_flag, fail, load
from bridge.errors import BridgeError, CortexUnauthorized, UsageError
from bridge.urls import CORTEX_URL

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.cortex import CortexClient
    from bridge.cortex.client import Cortex
    from bridge.store import Store
    from bridge.sync.reader import Reader, Window
    from bridge.sync.targets import Client, Targets

EXIT_MISSING = 3  # --dry-run found deploys Cortex lacks
DEFAULT_SINCE = "30d"
_DURATION = re.compile(r"(\d+)([dhm])", re.ASCII)
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}

EPILOG = f"""\
environment:
  CORTEX_API_TOKEN      Cortex API token (required; CORTEX_API_TOKEN_FILE also works)
  CORTEX_API_URL        Cortex API (default {CORTEX_URL})
  GITHUB_TOKEN          GitHub token: fine-grained Deployments, Actions and Metadata read,
                        or classic `repo` (for --github / --github-org)
  GITHUB_API_URL        GitHub API (default https://api.github.com; GitHub Enterprise Server:
                        https://HOST/api/v3)
  GITLAB_API_TOKEN      GitLab token with the read_api scope (for --gitlab / --gitlab-group)
  GITLAB_URL            GitLab (default https://gitlab.com; self-managed: its URL)
  ARGOCD_AUTH_TOKEN     Argo CD API token (an account's token with applications, get), for
                        --argocd; sent only to that URL's origin
  (token_env)           for --source NAME: the variable its http_sources entry names
  BRIDGE_CONFIG         config file: routes, environments, workflows (as for webhooks),
                        http_sources (for --source)
  BRIDGE_DATABASE_URL   where progress is kept (default sqlite:///bridge.db), so an
                        interrupted sync continues; the Cortex budget is shared through it

examples:
  cortex-deploy-bridge sync --github acme/payments-api --since 90d
  cortex-deploy-bridge sync --github-org acme --dry-run          # the audit
  cortex-deploy-bridge sync --gitlab-group acme --since 2026-11-01 --until 2026-12-01
  cortex-deploy-bridge sync --github acme/api --dry-run --output json | jq .summary
  cortex-deploy-bridge sync --config bridge.yaml --source spice --since 90d
  cortex-deploy-bridge sync --config bridge.yaml --argocd https://argocd.example.com

exit codes:
  0  nothing missing, or all that was missing is now recorded
  1  failure (an API refused, Cortex failed a record)
  2  bad usage
  3  --dry-run found deploys missing from Cortex
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``sync``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_config_flag(parser)
    sources = parser.add_argument_group("sources (one or more, each may repeat)")
    sources.add_argument(
        "--github",
        action="append",
        default=[],
        metavar="OWNER/REPO",
        help="a GitHub repository: its deployments, and the runs of workflows the config's "
        "`workflows` counts (GITHUB_TOKEN)",
    )
    sources.add_argument(
        "--github-org",
        action="append",
        default=[],
        metavar="OWNER",
        help="every repository of a GitHub organization or user (GITHUB_TOKEN)",
    )
    sources.add_argument(
        "--gitlab",
        action="append",
        default=[],
        metavar="GROUP/PROJECT",
        help="a GitLab project (its full path): its deployments, and the pipelines the config's "
        "`workflows` counts (GITLAB_API_TOKEN)",
    )
    sources.add_argument(
        "--gitlab-group",
        action="append",
        default=[],
        metavar="GROUP",
        help="every project of a GitLab group, subgroups included (GITLAB_API_TOKEN)",
    )
    sources.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="a configured http source (http_sources.NAME in --config)",
    )
    sources.add_argument(
        "--argocd",
        action="append",
        default=[],
        metavar="URL",
        help="an Argo CD API server: its Applications' sync history",
    )
    parser.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        metavar="WHEN",
        help="a date (2026-11-01) or a duration back from now (30d, 12h); default 30d",
    )
    parser.add_argument("--until", default=None, metavar="WHEN", help="same forms; default now")
    parser.add_argument("--environment", default=None, help="only deploys to this environment")
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="stop after N deploys found"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="compare only: record nothing (the audit)"
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="also delete duplicate records carrying one bridge key (the oldest stays; "
        "records without the key are never touched), and type again records whose detected "
        "type the history no longer gives; with --dry-run only report them",
    )
    parser.add_argument(
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people, json for scripts (default: table)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="ignore the progress of an interrupted sync"
    )


def parse_when(value: str, flag: str, now: datetime) -> datetime:
    """A date, an RFC 3339 time, or a duration back from ``now`` (30d, 12h, 90m)."""
    from bridge.model import EARLIEST, LATEST
    from bridge.times import parse_timestamp

    text = value.strip()
    duration = _DURATION.fullmatch(text)
    beyond = UsageError(f"{flag}: {value!r} is not from 1970-01-01 up to 9999-01-01")
    when = None
    if duration:
        try:
            when = now - timedelta(**{_UNITS[duration[2]]: int(duration[1])})
        except OverflowError:
            raise beyond from None  # further back than datetime goes
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    else:
        with contextlib.suppress(ValueError):
            when = parse_timestamp(text)
    if when is None:
        raise UsageError(
            f"{flag}: {value!r} is neither a date (2026-11-01) nor a duration (30d, 12h)"
        )
    if not EARLIEST <= when < LATEST:  # a deploy's times (docs/limits.md)
        raise beyond
    return when


def window_of(args: argparse.Namespace, now: datetime) -> Window:
    """The window from ``--since``/``--until``."""
    from bridge.sync.reader import Window

    since = parse_when(args.since, "--since", now)
    until = parse_when(args.until, "--until", now) if args.until else now
    if since >= until:
        raise UsageError(f"--since {args.since!r} is not before --until {args.until or 'now'!r}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit: must be at least 1, got {args.limit}")
    if args.environment is not None:  # an empty one matched nothing, and said "nothing missing"
        from bridge.model import environment_problem

        problem = environment_problem(args.environment)
        if not args.environment.strip() or problem is not None:
            raise UsageError(f"--environment: {problem or 'is empty'}")
    return Window(since, until)


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the sync; 0 all present or recorded, 1 failure, 2 usage, 3 dry run found missing."""
    try:
        named = [
            args.github,
            args.github_org,
            args.gitlab,
            args.gitlab_group,
            args.source,
            args.argocd,
        ]
        if not any(named):
            raise UsageError(
                "name a source: --github, --github-org, --gitlab, --gitlab-group, --source "
                "or --argocd"
            )
        now = datetime.now(timezone.utc)
        window = window_of(args, now)
        config = load(args, environ)
        readers, apis = _readers(args, config, environ)
        config = _reading(args, config)
        client = _cortex(config, environ)
    except BridgeError as exc:
        return fail(str(exc), EXIT_USAGE)
    try:
        store = _store(config)
    except BridgeError as exc:
        return fail(str(exc), EXIT_FAILED)
    try:
        return _run(
            args,
            config,
            client=client,
            store=store,
            readers=readers,
            window=window,
            requests=lambda: sum(api.requests for api in apis),
            secrets=_secrets(config, environ),
        )
    finally:
        client.close()
        store.close()
        for api in apis:
            api.close()


def _run(
    args: argparse.Namespace,
    config: Config,
    *,
    client: CortexClient,
    store: Store,
    readers: Callable[[], Iterator[Reader]],
    window: Window,
    requests: Callable[[], int],
    secrets: list[str],
) -> int:
    from bridge.redact import spellings
    from bridge.sync.engine import Options, Reconciler, Verdict
    from bridge.sync.report import ProgressLine, Report, shown
    from bridge.times import format_timestamp

    cortex = _share_budget(client, store, config)
    options = Options(
        dry_run=args.dry_run,
        environment=args.environment,
        limit=args.limit,
        restart=args.restart,
        repair=args.repair,
    )
    reconciler = Reconciler(
        config,
        cortex,
        store=store,
        clock=lambda: datetime.now(timezone.utc),
        options=options,
        spelled=spellings(secrets),
    )
    report = Report(sys.stdout, json=args.output == "json", secrets=secrets)
    progress = ProgressLine(sys.stderr, reconciler.tally, requests=requests, secrets=secrets)
    error: str | None = None
    source = ""  # the source being read, which an error is about
    try:
        # Listed first (an organisation's repositories: a request per 100) to know the total.
        every = list(readers())
        for number, reader in enumerate(every, start=1):
            if reconciler.limit_reached():
                break
            saved = reconciler.interrupted(reader.name)
            if saved is not None:
                since, until = format_timestamp(saved.since), format_timestamp(saved.until)
                progress.note(
                    f"{reader.name}: continuing the interrupted sync of {since} to {until}"
                    " (--restart starts over)"
                )
            source = f"{reader.name}: "
            progress.source(reader.name, number, len(every))
            for row in reconciler.sync(reader, window):
                report.row(row)
                progress.tick()
    except BridgeError as exc:
        # Cortex refusing the token stops the run at once: the line names the variable.
        token = "CORTEX_API_TOKEN: " if isinstance(exc, CortexUnauthorized) else ""
        error = f"{source}{token}{exc}"
    except Exception as exc:
        # A bug, or a source's answer no rule foresaw: the report names the source, and the
        # CLI's one line (internal error) follows.
        error = f"{source}internal error ({type(exc).__name__})"
        raise
    finally:
        progress.done()
        report.close(reconciler.tally, dry_run=args.dry_run, error=error)
    verdicts = reconciler.tally.verdicts
    if error is not None:
        return fail(shown(error, secrets), EXIT_FAILED)
    if verdicts[Verdict.FAILED]:
        return EXIT_FAILED
    if args.dry_run and verdicts[Verdict.MISSING]:
        return EXIT_MISSING
    return 0


def _secrets(config: Config, environ: Mapping[str, str]) -> list[str]:
    """What sync's output must never show: every token it holds, and the server's secrets."""
    from bridge.commands.common import log_secrets, secrets_of

    return log_secrets(secrets_of(environ), config, environ)


def _targets(args: argparse.Namespace) -> Targets:
    from bridge.sync.targets import Targets

    return Targets(
        github=tuple(args.github),
        github_orgs=tuple(args.github_org),
        gitlab=tuple(args.gitlab),
        gitlab_groups=tuple(args.gitlab_group),
        http=tuple(args.source),
        argocd=tuple(args.argocd),
    )


def _reading(args: argparse.Namespace, config: Config) -> Config:
    """The config this sync routes with (a source named by a flag is read, enabled or not)."""
    from bridge.sync.targets import reading

    return reading(config, _targets(args))


def _readers(
    args: argparse.Namespace, config: Config, environ: Mapping[str, str]
) -> tuple[Callable[[], Iterator[Reader]], list[Client]]:
    """The readers the flags name (an organisation's repositories listed as they are read)."""
    from bridge.sync.targets import make_readers

    return make_readers(_targets(args), config, environ)


def _cortex(config: Config, environ: Mapping[str, str]) -> CortexClient:
    """A Cortex client that retries (there is no outbox here to retry for it)."""
    from bridge.cortex import CortexClient
    from bridge.cortex.transport import proxy_for
    from bridge.secrets import secret_from

    token = secret_from(environ, "CORTEX_API_TOKEN")
    if not token:
        raise UsageError("CORTEX_API_TOKEN is not set: sync reads and records deploys in Cortex")
    return CortexClient(
        config.cortex.url,
        token,
        timeout=config.cortex.timeout_seconds,
        proxy=proxy_for(config.cortex.url),
    )


def _store(config: Config) -> Store:
    from bridge.store import Store

    return Store.from_url(config.database)


def _share_budget(client: CortexClient, store: Store, config: Config) -> Cortex:
    """``client`` drawing each request from the budget the relay's workers share."""
    if not config.cortex.requests_per_minute:
        return client
    from bridge.cortex.budget import BudgetedCortex, SharedBudget

    budget = SharedBudget(
        store,
        config.cortex.requests_per_minute,
        clock=lambda: datetime.now(timezone.utc),
        # No lease to lose here: wait for a turn however far off, within reason.
        max_wait_seconds=config.delivery.backoff_max_seconds,
        max_pause_seconds=config.delivery.backoff_max_seconds,
    )
    return BudgetedCortex(client, budget)
