"""What the commands share: config, secrets, the store, flags' values, one-line failures."""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import sys
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from bridge.errors import UsageError
from bridge.secrets import ALL_SECRETS, VARIABLE, held, secret_from

if TYPE_CHECKING:
    from bridge.config import Config
    from bridge.cortex import CortexClient
    from bridge.health import CortexWatch
    from bridge.store import Store

EXIT_FAILED, EXIT_USAGE = 1, 2


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--config PATH`` (default: $BRIDGE_CONFIG, else built-in defaults)."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None,
        help="YAML config file (default: $BRIDGE_CONFIG; none: defaults)",
    )


# The longest any seconds flag may ask for (--timeout, --poll, --body-timeout): an hour.
MAX_SECONDS = 3600.0


def seconds(text: str) -> float:
    """A seconds flag's value: a number above 0, at most MAX_SECONDS (argparse names the flag
    when it is not)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SECONDS:  # nan and inf too
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds above 0, at most {MAX_SECONDS:.0f}: got {text!r}"
        )
    return value


# The most of each count flag: enough for any one machine; a number past it (a typo, a
# runaway script) would fork processes or start threads until the host ran out of memory.
COUNT_MOST = {"--workers": 64, "--threads": 64, "--connections": 10_000}


def count(flag: str) -> Callable[[str], int]:
    """The parser of count flag ``flag`` (--threads, --workers, --connections): a whole
    number from 1 up to its most (COUNT_MOST)."""
    most = COUNT_MOST[flag]

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from 1 to {most:,}: got {text[:40]!r}"
            )
        return value

    return parse


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print one line naming the problem to stderr; return the exit code."""
    print(f"cortex-deploy-bridge: error: {message}", file=sys.stderr)
    return code


def load(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The config from ``--config`` or ``BRIDGE_CONFIG``, environment overrides applied."""
    from bridge.config import load_config

    return load_config(config_path(environ, ("--config", getattr(args, "config", None))), environ)


def config_path(environ: Mapping[str, str], *given: tuple[str, str | None]) -> str | None:
    """The config file's path: the first of the ``(flag, value)`` pairs given, else
    BRIDGE_CONFIG, else None (the built-in defaults). A flag given an empty path (an unset
    variable in a script: "--config $X") is a UsageError naming it, not the defaults."""
    for flag, value in given:
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: the path is empty")
    return (
        next((value for _, value in given if value), None) or environ.get("BRIDGE_CONFIG") or None
    )


def open_store(config: Config, *, create: bool = True) -> Store:
    """The store the config names."""
    from bridge.store import Store

    return Store.from_url(config.database, create=create)


def cortex_client(
    config: Config, environ: Mapping[str, str], *, watch: CortexWatch | None = None
) -> CortexClient:
    """A Cortex client for the worker: one attempt per call (the outbox retries).

    With ``watch``, every answer's status is noted there (for /readyz and the metrics).
    """
    from bridge.cortex import CortexClient
    from bridge.cortex.transport import proxy_for

    token = secret_from(environ, VARIABLE["cortex"])
    if not token:
        raise UsageError("CORTEX_API_TOKEN is not set: the worker cannot reach Cortex")
    proxy = proxy_for(config.cortex.url)
    transport = None
    if watch is not None:
        from bridge.health import WatchedTransport

        url, timeout = config.cortex.url.rstrip("/"), config.cortex.timeout_seconds
        transport = WatchedTransport(url, watch, read_timeout=timeout, proxy=proxy)
    return CortexClient(
        config.cortex.url,
        token,
        timeout=config.cortex.timeout_seconds,
        proxy=proxy,
        transport=transport,
    )


def check_cortex_token(
    config: Config,
    environ: Mapping[str, str],
    *,
    skip: bool,
    noted: Callable[[int], object] | None = None,
) -> str | None:
    """Why a delivering process must not start: Cortex refused CORTEX_API_TOKEN; else None.

    One cheap authenticated read. Only a refusal (401/403) stops the start: a Cortex that
    cannot be reached, or answers anything else, is logged as a warning, since deliveries
    wait in the outbox until it is back (and /readyz says ``"cortex": "unreachable"``).
    ``noted`` is told the status of Cortex's answer (0: none came), for /readyz.
    ``skip`` (``--skip-token-check``) asks nothing.
    """
    from bridge.errors import CortexError, CortexUnauthorized
    from bridge.redact import redact

    log = logging.getLogger("bridge.startup")
    if skip:
        log.info("CORTEX_API_TOKEN not checked with Cortex (--skip-token-check)")
        return None
    secrets = [secret_from(environ, VARIABLE["cortex"])]
    with cortex_client(config, environ) as client:
        try:
            client.check_access()
        except CortexError as exc:
            if noted is not None:
                noted(exc.status)
            said = " ".join(redact(str(exc), secrets).split())
            if isinstance(exc, CortexUnauthorized):
                return (
                    f"CORTEX_API_TOKEN is refused by Cortex at {client.base_url}: {said} "
                    "(set a valid token, or pass --skip-token-check to start anyway)"
                )
            log.warning(
                "could not check CORTEX_API_TOKEN with Cortex; starting anyway: deliveries "
                "wait in the outbox until Cortex answers",
                extra={"error": said, "cortex_url": client.base_url},
            )
            return None
    if noted is not None:
        noted(200)
    log.info("CORTEX_API_TOKEN accepted by Cortex", extra={"cortex_url": client.base_url})
    return None


def secrets_of(environ: Mapping[str, str]) -> dict[str, str]:
    """Every secret the server uses, from the environment (or ``*_FILE``)."""
    return {name: secret_from(environ, name) for name in ALL_SECRETS}


def log_secrets(
    secrets: Mapping[str, str], config: Config, environ: Mapping[str, str]
) -> list[str]:
    """What logs must never show: the secrets (:func:`secrets_of`), the database password,
    and the tokens of the configured http sources (their ``token_env``)."""
    tokens = [spec.token_env for spec in config.http_sources.values()]
    more = held(environ, database=config.database, token_envs=tokens, read=secrets)
    return [*secrets.values(), *(secret for secret in more if secret not in secrets.values())]


def worker_owner() -> str:
    """A lease owner name unique to this thread's worker: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
