"""Assemble the relay's parts for one process: runtime, Cortex client, delivery worker."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from bridge import metrics
from bridge.app import Runtime, utcnow
from bridge.config import Config
from bridge.cortex import CortexClient
from bridge.delivery import Deliverer
from bridge.store import Delivery, Store
from bridge.worker import Worker


def make_runtime(
    config: Config,
    secrets: Mapping[str, str],
    *,
    allow_unsigned: bool = False,
    store: Store | None = None,
) -> Runtime:
    """A receiver runtime on the config's database, with the secrets from the environment."""
    return Runtime(
        config=config,
        store=store or Store.from_url(config.database),
        github_secret=secrets.get("GITHUB_WEBHOOK_SECRET", ""),
        gitlab_token=secrets.get("GITLAB_WEBHOOK_TOKEN", ""),
        admin_token=secrets.get("BRIDGE_ADMIN_TOKEN", ""),
        allow_unsigned=allow_unsigned,
    )


def _observe(delivery: Delivery, outcome: str, age: float) -> None:
    metrics.DELIVERIES.labels(outcome).inc()
    metrics.DELIVERY_AGE.labels(outcome).observe(age)


def make_worker(
    runtime: Runtime,
    client: CortexClient,
    *,
    owner: str,
    wake: threading.Event | None = None,
    idle_poll: float = 1.0,
) -> Worker:
    """A delivery worker for ``runtime``'s store, counting its outcomes in the metrics."""
    deliverer = Deliverer(runtime.store, client, runtime.config, clock=utcnow)
    return Worker(
        runtime.store,
        deliverer,
        runtime.config.delivery,
        owner=owner,
        clock=utcnow,
        wake=wake or runtime.wake,
        idle_poll=idle_poll,
        on_settled=_observe,
    )


def missing_secrets(config: Config, secrets: Mapping[str, str]) -> list[str]:
    """The secret variables an enabled source needs but the environment does not set."""
    needed = {"github": "GITHUB_WEBHOOK_SECRET", "gitlab": "GITLAB_WEBHOOK_TOKEN"}
    return [
        name
        for source, name in needed.items()
        if config.sources.enabled(source) and not secrets.get(name)
    ]
