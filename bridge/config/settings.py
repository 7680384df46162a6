"""The configuration's shape: its defaults, constants and frozen dataclasses; no logic."""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config.http_sources import HttpSourceSpec

from bridge import secrets
from bridge.urls import CORTEX_URL

DEFAULT_CORTEX_URL = CORTEX_URL
# Cortex allows a client about 1000 requests/min (PRODUCT.md); the fleet keeps a tenth of it
# spare for the Action steps and people sharing the same account.
DEFAULT_REQUESTS_PER_MINUTE = 900
DEFAULT_DATABASE = "sqlite:///bridge.db"
DATABASE_VARIABLE, DATABASE_FILE_VARIABLE = "BRIDGE_DATABASE_URL", "BRIDGE_DATABASE_URL_FILE"
# GitHub caps webhook payloads at 25 MB and drops bigger ones (docs.github.com, "Webhook
# events and payloads"); nothing larger is a genuine delivery.
# GitHub's cap, as the contract (PRODUCT.md) states it: a genuine delivery is never refused.
# Memory is bounded by what is read before a signature is checked (below), not by this.
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
# The most the config may set them to (docs/limits.md): 100 MiB of body, four times GitHub's
# cap, for an HTTP source or a GitLab that sends more; 1 GiB unverified per process; 1,000
# entities an event (each a Cortex request within one delivery's lease).
MOST_BODY_BYTES = 100 * 1024 * 1024
MOST_UNVERIFIED_BYTES = 1024 * 1024 * 1024
MOST_ENTITIES = 1000
# Bodies read before their signature is checked, per process (bridge.webhooks.InFlight): one
# body at the limit and room beside it for the small ones real deliveries are (10-30 KB).
DEFAULT_MAX_UNVERIFIED_BYTES = 32 * 1024 * 1024
# Entities one event is recorded on: each is a Cortex request and a record, so one event's
# work stays bounded (issue 8: thousands named in a payload outlived the delivery's lease).
DEFAULT_MAX_ENTITIES = 20
SOURCES = ("github", "gitlab", "flux", "argocd")
# GitOps controllers: their deploys are of cluster objects (namespace/name), not repositories;
# they are off unless the config enables them (docs/gitops.md).
GITOPS_SOURCES = frozenset({"flux", "argocd"})
# Runs of a CI workflow: deploys only when a `workflows` rule says so.
WORKFLOW_EVENTS = frozenset({"workflow_run", "pipeline"})
# {name} and {namespace}: a GitOps object's (for a repository: {repo} and {owner});
# {project}: an Argo CD application's project (empty elsewhere).
TEMPLATE_FIELDS = ("repo", "owner", "repository", "name", "namespace", "project")
# Where each secret lives instead, by the config section it was misplaced in.
SECRET_HOMES = {
    **{f"sources.{source}": name for source, name in secrets.WEBHOOK_SECRETS.items()},
    "cortex": secrets.VARIABLE["cortex"],
}
ALL_SECRETS = ", ".join(secrets.SERVER_SECRETS[:-1]) + f" or {secrets.SERVER_SECRETS[-1]}"
# A key named like a secret: token, api_token, webhook_secret, password, api_key, ...
SECRET_KEY = re.compile(r"(^|[_-])(token|secret|password|passwd|api[_-]?key)$", re.IGNORECASE)


class RecordMode(str, enum.Enum):
    """``final``: one record on success; ``lifecycle``: create at the start, update at the end."""

    FINAL = "final"
    LIFECYCLE = "lifecycle"


@dataclass(frozen=True)
class CortexSettings:
    """Where Cortex is; the token comes from ``CORTEX_API_TOKEN``, never from here."""

    url: str = DEFAULT_CORTEX_URL
    timeout_seconds: float = 10.0
    # Shared by every worker of every replica (through the database); 0: no limit.
    requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE


@dataclass(frozen=True)
class SourceSettings:
    """One SCM's webhook endpoint; its secret comes from the environment."""

    enabled: bool = True


@dataclass(frozen=True)
class Sources:
    """The webhook sources, by name."""

    github: SourceSettings = field(default_factory=SourceSettings)
    gitlab: SourceSettings = field(default_factory=SourceSettings)
    flux: SourceSettings = field(default_factory=lambda: SourceSettings(enabled=False))
    argocd: SourceSettings = field(default_factory=lambda: SourceSettings(enabled=False))

    def enabled(self, name: str) -> bool:
        """True when ``name`` is a known source and it is enabled."""
        settings = getattr(self, name, None) if name in SOURCES else None
        return isinstance(settings, SourceSettings) and settings.enabled


@dataclass(frozen=True)
class Match:
    """What a rule matches; a field left None matches anything."""

    repository: str | None = None  # glob, case-insensitive
    environment: str | None = None  # glob on the renamed environment
    source: str | None = None  # "github", "gitlab" or an http_sources name, exact
    workflow: str | None = None  # glob on the workflow's name, path or file name
    object: str | None = None  # GitOps: glob on the object's namespace/name
    project: str | None = None  # Argo CD: glob on the application's project
    # True when no field is set: the rule matches every event (worked out once, not per event).
    anything: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        globs = (self.repository, self.environment, self.source, self.workflow, self.object)
        object.__setattr__(self, "anything", all(g is None for g in (*globs, self.project)))


@dataclass(frozen=True)
class RouteRule:
    """``routes[i]``: events it matches are recorded on these entities (templates)."""

    name: str  # "routes[0]", or "default" for the built-in catch-all
    match: Match
    entities: tuple[str, ...]
    # Globs of the entities a deployment's own payload (payload.cortex.entities) may name
    # instead; empty: a payload that names entities is not recorded by this route.
    payload_entities: tuple[str, ...] = ()
    # The environment of the events it routes that carry none of their own (GitOps objects).
    environment: str | None = None


@dataclass(frozen=True)
class WorkflowRule:
    """``workflows[i]``: a workflow_run / pipeline it matches is a deploy."""

    name: str
    match: Match
    environment: str | None = None


@dataclass(frozen=True)
class Environments:
    """Which environments count, and what they are called in Cortex."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict, hash=False)
    # True when every environment counts (``*`` included, nothing excluded): nothing to check.
    everything: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "everything", "*" in self.include and not self.exclude)


@dataclass(frozen=True)
class RecordSettings:
    """How a deploy is recorded."""

    mode: RecordMode = RecordMode.FINAL
    failures: bool = False


@dataclass(frozen=True)
class RollbackSettings:
    """Whether a redeploy of an older sha is recorded as ROLLBACK."""

    detect: bool = True


@dataclass(frozen=True)
class ServerSettings:
    """Limits of the webhook receiver."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_entities_per_event: int = DEFAULT_MAX_ENTITIES
    max_unverified_bytes: int = DEFAULT_MAX_UNVERIFIED_BYTES

    @property
    def unverified_limit(self) -> int:
        """Bytes of unverified bodies one process holds at most: room for one body at least."""
        return max(self.max_unverified_bytes, self.max_body_bytes)


# The most each number of the config may be (docs/limits.md): well past any use, well short
# of what the date arithmetic or a timer can take.
MOST_SETTING = {
    "cortex.timeout_seconds": 3600.0,
    "delivery.dead_letter_after_seconds": 366 * 86400.0,  # a year
    "delivery.lease_seconds": 86400.0,
    "delivery.backoff_base_seconds": 86400.0,
    "delivery.backoff_max_seconds": 86400.0,
    "sync.interval_minutes": 7 * 1440.0,  # a week
    "sync.look_back_hours": 10 * 8784.0,  # ten years
    "http_sources.*.timeout_seconds": 3600.0,
}


@dataclass(frozen=True)
class DeliverySettings:
    """How the worker retries a stored event before it gives up on it."""

    dead_letter_after_seconds: float = 86400.0  # a day
    max_attempts: int = 0  # 0: unlimited until dead_letter_after_seconds
    lease_seconds: float = 60.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0


@dataclass(frozen=True)
class SyncSettings:
    """The relay's periodic reconcile (``sync:``); with no repositories or groups it is off."""

    interval_minutes: float = 15.0
    look_back_hours: float = 48.0
    github: tuple[str, ...] = ()  # OWNER/REPO, or OWNER/* (GITHUB_TOKEN's org listing)
    gitlab: tuple[str, ...] = ()  # GROUP/PROJECT, or GROUP (every project, subgroups too)
    http: tuple[str, ...] = ()  # names of http_sources entries
    argocd: tuple[str, ...] = ()  # Argo CD URLs (ARGOCD_AUTH_TOKEN)

    @property
    def enabled(self) -> bool:
        """True when there is something to reconcile."""
        return bool(self.github or self.gitlab or self.http or self.argocd)


DEFAULT_ROUTE = RouteRule("default", Match(), ("{repo}",))


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``Config()`` is the one used with no file."""

    cortex: CortexSettings = field(default_factory=CortexSettings)
    database: str = DEFAULT_DATABASE
    sources: Sources = field(default_factory=Sources)
    routes: tuple[RouteRule, ...] = (DEFAULT_ROUTE,)
    environments: Environments = field(default_factory=Environments)
    workflows: tuple[WorkflowRule, ...] = ()
    record: RecordSettings = field(default_factory=RecordSettings)
    rollback: RollbackSettings = field(default_factory=RollbackSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    # Deployment-list APIs read by `sync --source NAME` and `sync.http`, by name.
    http_sources: Mapping[str, HttpSourceSpec] = field(default_factory=dict, hash=False)

    # Worked out once per config, on first use, then plain attributes: asked of every event.
    @functools.cached_property
    def source_names(self) -> tuple[str, ...]:
        """Every source a deploy may come from: the webhook ones, then the http ones."""
        return (*SOURCES, *self.http_sources)

    @functools.cached_property
    def recorded_sources(self) -> frozenset[str]:
        """The sources a deploy is recorded from: enabled webhook ones, and every http one."""
        enabled = {name for name in SOURCES if self.sources.enabled(name)}
        return frozenset({*enabled, *self.http_sources})


@dataclass(frozen=True)
class Route:
    """Where one event is recorded: the entities, the (renamed) environment, and why."""

    entities: tuple[str, ...]
    environment: str | None
    rule: str  # "routes[0]", "default"; "routes[0].payload_entities" for a payload's own
