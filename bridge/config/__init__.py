"""The receiver's configuration: the YAML file, validated, and routing an event to entities.

Pure except :func:`load_config`, which reads the file, and :func:`database_url_from`, which
reads the file ``BRIDGE_DATABASE_URL_FILE`` names. Every problem is a ``ConfigError`` naming
the dotted key (``routes[1].match.repostory``). Unknown keys are errors, so a typo never
silently does nothing; secrets are refused, they come only from the environment. An empty
value (``cortex:`` with nothing under it) means the default.

Routing (:func:`route`) goes in this order, and the first step that fails says why:

1. the event's source must be enabled (``sources.<source>.enabled``), or be an
   ``http_sources`` entry (read by ``sync``; its deploys carry the entry's ``repository``, so
   routes match them by repository or by ``source: <name>``, and the default route names the
   entity after the repository's last segment, as for webhooks);
2. a ``workflow_run`` (GitHub) or ``pipeline`` (GitLab) is a deploy only when a ``workflows``
   rule matches it; the rule's ``environment`` supplies the environment (else the event's own,
   which these events do not have);
3. ``environments.rename`` maps the name (exact, applied once), then ``environments.exclude``
   and ``environments.include`` judge the renamed name, exclude winning. A deploy with no
   environment is judged as the empty name: only ``*`` includes it or excludes it;
4. entities: the first matching route gives them. When the event names its own (a GitHub
   deployment's ``payload.cortex.entities``), that route must allow each of them by a glob of
   its ``payload_entities`` (default: none), and they are used instead of its ``entities``;
   otherwise the event is ignored, with the reason. Anyone who may create a deployment could
   otherwise record deploys on any entity of the catalog.

Globs have :func:`fnmatch.fnmatchcase` semantics: ``*`` matches any run of characters,
``/`` included, so ``acme/*`` matches ``acme/payments-api`` and also the GitLab subgroup
project ``acme/backend/api`` (to pick one subgroup, write ``acme/backend/*``). Repository
globs ignore case, as GitHub and GitLab do for paths; environment and workflow globs do not.
A ``workflow`` glob is tried on the workflow's name, its file path and the file's name
(``Deploy*``, ``.github/workflows/deploy.yml``, ``deploy.yml``). GitLab pipelines carry
their name and path in the same ``details`` keys (``workflow``, ``workflowPath``).

The modules: :mod:`~bridge.config.settings` (the dataclasses and defaults),
:mod:`~bridge.config.loading` (the file and its validation), :mod:`~bridge.config.values`
(typed values, :func:`redact_url`), :mod:`~bridge.config.environ` (environment overrides),
:mod:`~bridge.config.routing` (:func:`route`), :mod:`~bridge.config.describing`
(:func:`describe`, for ``check-config``) and :mod:`~bridge.config.http_sources` (the
``http_sources`` section, with :mod:`~bridge.config.http_paths` and
:mod:`~bridge.config.http_presets`). Import from ``bridge.config`` itself.
"""

from __future__ import annotations

from bridge.config.describing import describe
from bridge.config.environ import database_url_from
from bridge.config.loading import TOP_KEYS, load_config, parse_config
from bridge.config.routing import route
from bridge.config.settings import (
    ALL_SECRETS,
    DATABASE_FILE_VARIABLE,
    DATABASE_VARIABLE,
    DEFAULT_CORTEX_URL,
    DEFAULT_DATABASE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ENTITIES,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_ROUTE,
    GITOPS_SOURCES,
    SECRET_HOMES,
    SECRET_KEY,
    SOURCES,
    TEMPLATE_FIELDS,
    WORKFLOW_EVENTS,
    Config,
    CortexSettings,
    DeliverySettings,
    Environments,
    Match,
    RecordMode,
    RecordSettings,
    RollbackSettings,
    Route,
    RouteRule,
    ServerSettings,
    Sources,
    SourceSettings,
    SyncSettings,
    WorkflowRule,
)
from bridge.redact import redact_url

__all__ = [
    "ALL_SECRETS",
    "DATABASE_FILE_VARIABLE",
    "DATABASE_VARIABLE",
    "DEFAULT_CORTEX_URL",
    "DEFAULT_DATABASE",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ENTITIES",
    "DEFAULT_REQUESTS_PER_MINUTE",
    "DEFAULT_ROUTE",
    "GITOPS_SOURCES",
    "SECRET_HOMES",
    "SECRET_KEY",
    "SOURCES",
    "TEMPLATE_FIELDS",
    "TOP_KEYS",
    "WORKFLOW_EVENTS",
    "Config",
    "CortexSettings",
    "DeliverySettings",
    "Environments",
    "Match",
    "RecordMode",
    "RecordSettings",
    "RollbackSettings",
    "Route",
    "RouteRule",
    "ServerSettings",
    "SourceSettings",
    "Sources",
    "SyncSettings",
    "WorkflowRule",
    "database_url_from",
    "describe",
    "load_config",
    "parse_config",
    "redact_url",
    "route",
]
