"""`deliveries list|show|retry`: inspect and replay the delivery log, straight from its database.

No server is involved: the command opens the database the config (or ``BRIDGE_DATABASE_URL``)
names, never creating one, so a mistyped URL is an error instead of a new empty log. The
``--json`` shapes are the admin API's (:mod:`bridge.views`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bridge.commands.common import EXIT_FAILED, add_config_flag, fail, load
from bridge.commands.helptext import describe
from bridge.errors import UsageError
from bridge.redact import masked, spellings
from bridge.secrets import held
from bridge.views import MAX_ID, MAX_PAGE, counted

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.store import Delivery, Store

DEFAULT_LIMIT = 50
MAX_LIMIT = MAX_PAGE
ERROR_WIDTH = 48  # the last-error column of `list`; `show` prints it whole
NO_TABLES = "database has no bridge tables"

ABOUT = """\
Inspect and replay the delivery log: every webhook the receiver stored, its attempts at Cortex
and its status (queued, delivering, delivered, retrying, dead). `retry` queues dead or
retrying deliveries to be tried again now by a running worker."""

WHERE = """\
These commands read and write the delivery log in the database itself (the config's
`database`, or BRIDGE_DATABASE_URL): run them on a host that reaches that database (for
SQLite, the bridge's own host and volume). They never create a database or its tables."""


def _positive(high: int) -> Callable[[str], int]:
    """An argparse type: an integer from 1 to ``high`` (argparse names the argument)."""

    def parse(raw: str) -> int:
        value = counted(raw, high)  # as the admin API reads it
        if value is None:
            shown = raw if len(raw) <= 40 else raw[:37] + "..."
            raise argparse.ArgumentTypeError(
                f"must be an integer from 1 to {high:,}, got {shown!r}"
            )
        return value

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``list``, ``show`` and ``retry``, each with ``--config``."""
    describe(
        parser,
        ABOUT,
        environment=[
            ("BRIDGE_DATABASE_URL", "the delivery log's database (or BRIDGE_DATABASE_URL_FILE;"),
            ("", "else the config's database, else sqlite:///bridge.db)"),
            ("BRIDGE_CONFIG", "the config file when --config is not given"),
        ],
        examples=[
            "cortex-deploy-bridge deliveries list --status dead",
            "cortex-deploy-bridge deliveries show 42",
            "cortex-deploy-bridge deliveries retry --all-dead",
        ],
        exit_codes=[
            (0, "done"),
            (1, "no such delivery, one that cannot be retried, or an unreachable database"),
            (2, "bad usage, a bad config, or a database with no bridge tables"),
        ],
        notes=WHERE,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    an_id = _positive(MAX_ID)

    def action(name: str, summary: str, examples: Sequence[str]) -> argparse.ArgumentParser:
        child = actions.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog="examples:\n"
            + "\n".join(f"  cortex-deploy-bridge deliveries {name} {line}" for line in examples)
            + "\n\n"
            + WHERE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_config_flag(child)
        return child

    lister = action(
        "list",
        "deliveries newest first, a page at a time",
        ["--status dead", "--limit 20 --after 118", "--status retrying --json"],
    )
    lister.add_argument(
        "--status",
        default=None,
        help="only this status: queued, delivering, delivered, retrying or dead",
    )
    lister.add_argument(
        "--limit",
        type=_positive(MAX_LIMIT),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"page size, 1 to {MAX_LIMIT} (default: {DEFAULT_LIMIT})",
    )
    lister.add_argument(
        "--after",
        type=_positive(MAX_ID),
        default=None,
        metavar="CURSOR",
        help="the next page: the cursor the previous page ended with",
    )
    lister.add_argument("--json", action="store_true", help="the admin API's JSON page")

    shower = action(
        "show", "one delivery: its event, attempts, results and last error", ["42", "42 --json"]
    )
    shower.add_argument("id", type=an_id, metavar="ID", help="delivery id")
    shower.add_argument("--json", action="store_true", help="the admin API's JSON")

    retrier = action(
        "retry",
        "queue dead or retrying deliveries to be tried again now by a running worker",
        ["42", "42 57 63", "--all-dead"],
    )
    retrier.add_argument("ids", nargs="*", type=an_id, metavar="ID", help="delivery ids")
    retrier.add_argument("--all-dead", action="store_true", help="every dead delivery")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``deliveries``: list, show or retry stored deliveries."""
    from bridge.config import redact_url
    from bridge.store import STATUSES, StoreError

    if getattr(args, "status", None) is not None and args.status not in STATUSES:
        return fail(f"--status must be one of {', '.join(STATUSES)}, got {args.status!r}")
    if args.action == "retry" and bool(args.ids) == bool(args.all_dead):
        given = "both delivery ids and --all-dead" if args.ids else "no delivery id"
        return fail(f"retry needs delivery ids or --all-dead, got {given}")
    try:
        config = load(args, environ)
    except UsageError as exc:  # ConfigError included
        return fail(str(exc))
    # What it shows is masked as the admin API masks it: with the secrets this environment
    # holds, those that can be read (none is needed to read the log).
    tokens = [spec.token_env for spec in config.http_sources.values()]
    spelled = spellings(held(environ, database=config.database, token_envs=tokens, lenient=True))
    handlers = {"list": _list, "show": _show, "retry": _retry}
    try:
        with open_log(config) as store:
            return handlers[args.action](store, args, spelled)
    except UsageError as exc:
        return fail(str(exc))
    except StoreError as exc:  # unreachable, or a schema of another version
        return fail(f"{redact_url(config.database)}: {exc}", EXIT_FAILED)


def open_log(config: Config) -> Store:
    """The store the config names, as it is: UsageError when it holds no bridge tables."""
    from bridge.config import redact_url
    from bridge.store import Store, StoreError

    shown = redact_url(config.database)
    if _missing_sqlite_file(config.database):
        raise UsageError(f"{NO_TABLES}: {shown} does not exist (is the url right?)")
    try:
        return Store.from_url(config.database, create=False)
    except StoreError as exc:
        # check_schema's words for a database the bridge never started on.
        if "no bridge schema" in str(exc):
            raise UsageError(f"{NO_TABLES}: {shown} (is the url right?)") from exc
        raise


def _missing_sqlite_file(url: str) -> bool:
    """True for a SQLite file that does not exist: opening it would create it, empty."""
    if not url.startswith("sqlite:///"):
        return False
    path, _, query = url.removeprefix("sqlite:///").partition("?")
    if path in ("", ":memory:") or "uri=true" in query.lower():
        return False  # in memory, or a sqlite URI filename whose path this does not parse
    return not os.path.exists(path)


# --- list ---------------------------------------------------------------------------------

COLUMNS = (
    "id",
    "status",
    "source",
    "event",
    "repository",
    "environment",
    "entities",
    "attempts",
    "received",
    "last error",
)


def _list(store: Store, args: argparse.Namespace, spelled: tuple[str, ...]) -> int:
    from bridge.views import delivery_page

    rows, cursor = store.list_deliveries(status=args.status, limit=args.limit, after=args.after)
    if args.json:
        _print_json(delivery_page(rows, cursor, spelled))
        return 0
    if not rows:
        print("no deliveries" + (f" with status {args.status}" if args.status else ""))
        return 0
    for line in table([COLUMNS, *(masked(_row(d), spelled) for d in rows)]):
        print(line)
    if cursor is not None:
        print(f"more: --after {cursor}")
    return 0


def _row(d: Delivery) -> tuple[str, ...]:
    event = d.payload.get("event", {})
    return (
        str(d.id),
        d.status,
        d.source,
        d.event_name,
        _text(event.get("repository")),
        _text(event.get("environment")),
        ",".join(d.payload.get("entities", [])) or "-",
        str(d.attempts),
        d.received_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ"),
        shorten(current_error(d.status, d.last_error), ERROR_WIDTH),
    )


def current_error(status: str, last_error: str | None) -> str | None:
    """The error that still holds: none once delivered (an earlier attempt's is history)."""
    from bridge.store import DELIVERED

    return None if status == DELIVERED else last_error


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines with aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def shorten(text: str | None, width: int) -> str:
    """The first line of ``text``, cut to ``width`` characters with ``...``; ``-`` for none."""
    if not text:
        return "-"
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


# --- show ---------------------------------------------------------------------------------

# (label, key of the admin API's shape), in the order `show` prints them.
FIELDS = (
    ("id", "id"),
    ("status", "status"),
    ("source", "source"),
    ("event", "event"),
    ("repository", "repository"),
    ("environment", "environment"),
    ("sha", "sha"),
    ("deploy status", "deploy_status"),
    ("attempts", "attempts"),
    ("received", "received_at"),
    ("next attempt", "next_attempt_at"),
    ("delivered", "delivered_at"),
    ("dedupe key", "dedupe_key"),
)


def _show(store: Store, args: argparse.Namespace, spelled: tuple[str, ...]) -> int:
    from bridge.views import show_delivery

    found = store.get(args.id)
    if found is None:
        return fail(f"no delivery {args.id}", EXIT_FAILED)
    shown = show_delivery(found, full=True, spelled=spelled)
    if args.json:
        _print_json(shown)
        return 0
    for label, key in FIELDS:
        print(f"{label}: {_text(shown[key])}")
    print(f"entities: {', '.join(shown['entities']) or '-'}")
    print(f"rule: {_text(shown['payload'].get('rule'))}")
    results: Mapping[str, Any] = shown["results"]
    print("results:" + ("" if results else " none"))
    for entity, result in results.items():
        print(f"  {entity}: {_result(result)}")
    error = current_error(found.status, shown["last_error"])
    _print_error("last error", error)
    if error is None and shown["last_error"]:
        _print_error("error before delivery", shown["last_error"])
    return 0


def _print_error(label: str, error: str | None) -> None:
    # A multi-line error (a Cortex answer) goes below its label, indented like the results.
    text = _text(error)
    print(f"{label}:" + ("\n  " + text.replace("\n", "\n  ") if "\n" in text else f" {text}"))


def _result(result: Any) -> str:
    """One entity's outcome (``action created uuid ... type DEPLOY``) as ``key=value`` pairs."""
    if isinstance(result, Mapping):
        return " ".join(f"{key}={value}" for key, value in result.items())
    return json.dumps(result)


# --- retry --------------------------------------------------------------------------------


def _retry(store: Store, args: argparse.Namespace, spelled: tuple[str, ...]) -> int:
    ids = _dead_ids(store) if args.all_dead else list(dict.fromkeys(args.ids))
    if not ids:
        print("no dead deliveries")
        return 0
    now = datetime.now(timezone.utc)
    requeued, code = [], 0
    for delivery_id in ids:
        problem = _requeue(store, delivery_id, now=now)
        if problem:
            code = fail(problem, EXIT_FAILED)
        else:
            requeued.append(delivery_id)
    # The store wakes nothing: a running worker finds the rows on its next poll (<= 1 s).
    if len(requeued) == 1:
        print(f"requeued {requeued[0]}; a running worker picks it up within a second")
    elif requeued:
        for delivery_id in requeued:
            print(f"requeued {delivery_id}")
        print("a running worker picks them up within a second")
    return code


def _requeue(store: Store, delivery_id: int, *, now: datetime) -> str | None:
    """Queue one delivery again; what stopped it, if something did."""
    if store.retry(delivery_id, now=now):
        return None
    found = store.get(delivery_id)
    if found is None:
        return f"no delivery {delivery_id}"
    return f"delivery {delivery_id} is {found.status}: nothing to retry"


def _dead_ids(store: Store) -> list[int]:
    """Every dead delivery's id, oldest first."""
    from bridge.store import DEAD

    ids: list[int] = []
    cursor: int | None = None
    while True:
        rows, cursor = store.list_deliveries(status=DEAD, limit=MAX_LIMIT, after=cursor)
        ids.extend(d.id for d in rows)
        if cursor is None:
            return sorted(ids)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))
