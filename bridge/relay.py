"""Assemble the relay's parts for one process: runtime, Cortex client, delivery workers.

A process with delivery workers gives them one :class:`SharedBudget` (the fleet's Cortex
request budget) and, on PostgreSQL, one listener that wakes all of them when any replica
queues an event (:func:`wake_on_notify`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from bridge import metrics
from bridge.app import Runtime, utcnow
from bridge.config import Config
from bridge.cortex import CortexClient
from bridge.cortex.budget import BudgetedCortex, SharedBudget
from bridge.cortex.client import Cortex
from bridge.secrets import VARIABLE, WEBHOOK_SECRETS, url_passwords
from bridge.store import Delivery, Listener, Store
from bridge.worker import Deliverer, Worker, most_retry_after

# What a worker claims at once. With a shared budget it claims one: the events of a batch
# would wait their turns for the budget one after another while their leases ran out.
BATCH = 10
# The longest a request waits for its turn in the budget before its event is handed back
# (rescheduled), as a share of the lease: a few requests and their waits fit in one lease.
WAIT_SHARE_OF_LEASE = 0.25


def make_runtime(
    config: Config,
    secrets: Mapping[str, str],
    *,
    allow_unsigned: bool = False,
    store: Store | None = None,
    also: Iterable[str] = (),
) -> Runtime:
    """A receiver runtime on the config's database, with the secrets from the environment.
    ``also``: the other secrets the process holds (the http sources' tokens, which its
    reconcile reads), looked for in every webhook's fields as the registry's are."""
    return Runtime(
        config=config,
        store=store or Store.from_url(config.database),
        github_secret=secrets.get(WEBHOOK_SECRETS["github"], ""),
        gitlab_token=secrets.get(WEBHOOK_SECRETS["gitlab"], ""),
        flux_secret=secrets.get(WEBHOOK_SECRETS["flux"], ""),
        argocd_token=secrets.get(WEBHOOK_SECRETS["argocd"], ""),
        admin_token=secrets.get(VARIABLE["admin"], ""),
        held=(
            *(
                secrets.get(VARIABLE[name], "")
                for name in ("cortex", "github-api", "gitlab-api", "argocd-api")
            ),
            *url_passwords(config.database),
            *also,
        ),
        allow_unsigned=allow_unsigned,
    )


def _observe(delivery: Delivery, outcome: str, age: float) -> None:
    metrics.count_settled(outcome, age)


def make_budget(runtime: Runtime) -> SharedBudget | None:
    """The fleet's Cortex request budget; None when ``cortex.requests_per_minute`` is 0."""
    config = runtime.config
    if not config.cortex.requests_per_minute:
        return None
    return SharedBudget(
        runtime.store,
        config.cortex.requests_per_minute,
        clock=utcnow,
        max_wait_seconds=config.delivery.lease_seconds * WAIT_SHARE_OF_LEASE,
        max_pause_seconds=most_retry_after(config.delivery),
    )


def make_worker(
    runtime: Runtime,
    client: CortexClient,
    *,
    owner: str,
    wake: threading.Event | None = None,
    idle_poll: float = 1.0,
    budget: SharedBudget | None = None,
) -> Worker:
    """A delivery worker counting its outcomes in the metrics, drawing on the shared budget.

    Pass one ``budget`` to all of a process's workers; without one, the worker makes its own
    from the config. The worker's client draws on it (``client`` wrapped in a
    BudgetedCortex): give each worker its own client.
    """
    budget = budget or make_budget(runtime)
    cortex: Cortex = client if budget is None else BudgetedCortex(client, budget)
    deliverer = Deliverer(
        runtime.store, cortex, runtime.config, clock=utcnow, spelled=runtime.spelled
    )
    return Worker(
        runtime.store,
        deliverer,
        runtime.config.delivery,
        owner=owner,
        clock=utcnow,
        wake=wake or runtime.wake,
        batch=1 if budget is not None else BATCH,
        idle_poll=idle_poll,
        on_settled=_observe,
        budget=budget,
        secrets=runtime.secrets,
    )


def wake_on_notify(store: Store, wakes: Iterable[threading.Event]) -> Listener | None:
    """Set every one of ``wakes`` when any replica queues an event; None on SQLite (polls)."""
    events = tuple(wakes)

    def wake_all() -> None:
        for event in events:
            event.set()

    return store.listen(wake_all)


def missing_secrets(config: Config, secrets: Mapping[str, str]) -> list[str]:
    """The secret variables an enabled source needs but the environment does not set."""
    return [
        name
        for source, name in WEBHOOK_SECRETS.items()
        if config.sources.enabled(source) and not secrets.get(name)
    ]
