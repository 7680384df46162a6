"""The config file: validation that names the bad key, defaults, overrides, and routing."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
import yaml

from bridge.config import (
    Config,
    DeliverySettings,
    Match,
    RecordMode,
    Route,
    RouteRule,
    describe,
    load_config,
    parse_config,
    redact_url,
    route,
)
from bridge.errors import ConfigError, UnsupportedEvent
from bridge.model import DeployEvent, DeployRef, Status

EXAMPLE = Path(__file__).parent.parent / "examples" / "bridge.yaml"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)


def parse(text: str, **environ: str) -> Config:
    return parse_config(yaml.safe_load(dedent(text)), environ=environ)


def make(**overrides: Any) -> DeployEvent:
    fields: dict[str, Any] = {
        "source": "github",
        "repository": "acme/payments-api",
        "event": "deployment_status",
        "ref": DeployRef("deployment", "1"),
        "status": Status.SUCCEEDED,
        "timestamp": T0,
        "title": "Deploy",
        "environment": "production",
    }
    fields.update(overrides)
    return DeployEvent(**fields)


HTTP_SOURCES = """\
http_sources:
  shipyard:
    preset: spice
    url: https://deploys.example.test/v1/apps/7/deployments
    token_env: SHIPYARD_TOKEN
    repository: acme/shipyard-web
"""


# http_sources, sync.http and match.source name what is configured (see the section below).
HTTP_KEY_ERRORS = [
    pytest.param(
        HTTP_SOURCES.replace("    token_env: SHIPYARD_TOKEN\n", ""),
        "http_sources.shipyard.token_env",
        "is required",
        id="no-token-env",
    ),
    pytest.param(
        HTTP_SOURCES.replace("https://deploys", "ftp://deploys"),
        "http_sources.shipyard.url",
        "must be an http(s) url",
        id="bad-url",
    ),
    pytest.param(
        HTTP_SOURCES + "    api_token: abc\n",
        "http_sources.shipyard.api_token",
        "secrets come only from the environment",
        id="token-in-file",
    ),
    pytest.param(
        HTTP_SOURCES + "    pagination: {style: sideways}\n",
        "http_sources.shipyard.pagination.style",
        "must be 'page' or 'cursor' or 'newest-first'",
        id="bad-style",
    ),
    pytest.param(
        HTTP_SOURCES + "sync: {http: [shipyrad]}",
        "sync.http[0]",
        "no http_sources entry named 'shipyrad' (configured: shipyard)",
        id="sync-unknown-name",
    ),
    pytest.param(
        "sync: {http: [shipyard]}",
        "sync.http[0]",
        "no http_sources entry named 'shipyard' (configured: none)",
        id="sync-no-entries",
    ),
    pytest.param(
        "sync: {http: shipyard}",
        "sync.http",
        "must be a list of strings",
        id="sync-not-a-list",
    ),
    pytest.param(
        HTTP_SOURCES + "routes: [{match: {source: shipyrad}, entities: [x]}]",
        "routes[0].match.source",
        "must be 'github' or 'gitlab' or 'flux' or 'argocd' or 'shipyard', got 'shipyrad'",
        id="route-unknown-source",
    ),
    pytest.param(
        "workflows: [{match: {source: bitbucket}}]",
        "workflows[0].match.source",
        "must be 'github' or 'gitlab' or 'flux' or 'argocd', got 'bitbucket'",
        id="workflow-unknown-source",
    ),
]


# --- Validation: every error names its key -----------------------------------------------

SECRETS = (
    "GITHUB_WEBHOOK_SECRET, GITLAB_WEBHOOK_TOKEN, FLUX_WEBHOOK_SECRET, ARGOCD_WEBHOOK_TOKEN, "
    "CORTEX_API_TOKEN or BRIDGE_ADMIN_TOKEN"
)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        pytest.param("- a", "", "the config must be a mapping, got a list", id="top-list"),
        pytest.param(
            "routse: []",
            "routse",
            "unknown key (expected one of: cortex, database, sources, routes, environments, "
            "workflows, record, rollback, server, delivery, sync, http_sources)",
            id="top-typo",
        ),
        pytest.param(
            "cortex: https://x", "cortex", "must be a mapping, got 'https://x'", id="cortex-str"
        ),
        pytest.param(
            "cortex: {url: ftp://x}",
            "cortex.url",
            "must be an http(s) url, got 'ftp://x'",
            id="cortex-url",
        ),
        pytest.param(
            "cortex: {url: 'https://'}",
            "cortex.url",
            "must be an http(s) url",
            id="cortex-url-no-host",
        ),
        pytest.param(
            "cortex: {timeout_seconds: ten}",
            "cortex.timeout_seconds",
            "must be a number, got 'ten'",
            id="timeout-str",
        ),
        pytest.param(
            "cortex: {timeout_seconds: true}",
            "cortex.timeout_seconds",
            "must be a number, got True",
            id="timeout-bool",
        ),
        pytest.param(
            "cortex: {timeout_seconds: 0}",
            "cortex.timeout_seconds",
            "must be a positive number, at most 3,600: got 0",
            id="timeout-zero",
        ),
        pytest.param(
            "cortex: {requests_per_minute: -1}",
            "cortex.requests_per_minute",
            "must be 0 (no limit) or more, got -1",
            id="rpm-negative",
        ),
        pytest.param(
            "cortex: {requests_per_minute: 15.5}",
            "cortex.requests_per_minute",
            "must be an integer, got 15.5",
            id="rpm-float",
        ),
        pytest.param(
            "cortex: {requests_per_minute: false}",
            "cortex.requests_per_minute",
            "must be an integer, got False",
            id="rpm-bool",
        ),
        pytest.param(
            "cortex: {requests_per_minute: '900/min'}",
            "cortex.requests_per_minute",
            "must be an integer, got '900/min'",
            id="rpm-str",
        ),
        pytest.param(
            "cortex: {rate_limit: 900}",
            "cortex.rate_limit",
            "unknown key (expected one of: url, timeout_seconds, requests_per_minute)",
            id="cortex-typo",
        ),
        pytest.param(
            "cortex: {token: abc}",
            "cortex.token",
            "secrets come only from the environment: set CORTEX_API_TOKEN",
            id="secret-cortex",
        ),
        pytest.param(
            "cortex: {api_token: abc}",
            "cortex.api_token",
            "set CORTEX_API_TOKEN",
            id="secret-api-token",
        ),
        pytest.param(
            "sources: {github: {secret: s}}",
            "sources.github.secret",
            "set GITHUB_WEBHOOK_SECRET",
            id="secret-github",
        ),
        pytest.param(
            "sources: {github: {webhook_secret: s}}",
            "sources.github.webhook_secret",
            "set GITHUB_WEBHOOK_SECRET",
            id="secret-github-webhook",
        ),
        pytest.param(
            "sources: {gitlab: {token: t}}",
            "sources.gitlab.token",
            "set GITLAB_WEBHOOK_TOKEN",
            id="secret-gitlab",
        ),
        pytest.param("admin_token: t", "admin_token", f"set {SECRETS}", id="secret-top"),
        pytest.param(
            "routes: [{match: {}, entities: [x], password: p}]",
            "routes[0].password",
            "secrets come only",
            id="secret-route",
        ),
        pytest.param(
            "sources: {bitbucket: {enabled: true}}",
            "sources.bitbucket",
            "unknown key (expected one of: github, gitlab, flux, argocd)",
            id="source-unknown",
        ),
        pytest.param(
            "sources: {github: true}",
            "sources.github",
            "must be a mapping, got True",
            id="source-bool",
        ),
        pytest.param(
            "sources: {github: {enabled: 'no'}}",
            "sources.github.enabled",
            "must be true or false, got 'no'",
            id="enabled-str",
        ),
        pytest.param(
            "sources: {github: {enable: false}}",
            "sources.github.enable",
            "unknown key (expected one of: enabled)",
            id="enabled-typo",
        ),
        pytest.param(
            "routes: {match: {}}", "routes", "must be a list, got a mapping", id="routes-mapping"
        ),
        pytest.param(
            "routes: [payments]", "routes[0]", "must be a mapping, got 'payments'", id="route-str"
        ),
        pytest.param(
            "routes: [{entities: [x]}]", "routes[0].match", "is required", id="route-no-match"
        ),
        pytest.param(
            "routes: [{match: {}}]", "routes[0].entities", "is required", id="route-no-entities"
        ),
        pytest.param(
            "routes: [{match: {}, entities: []}]",
            "routes[0].entities",
            "must list at least one entity",
            id="entities-empty",
        ),
        pytest.param(
            "routes: [{match: {}, entities: x}]",
            "routes[0].entities",
            "must be a list of strings, got 'x'",
            id="entities-str",
        ),
        pytest.param(
            "routes: [{match: {}, entities: [x, 3]}]",
            "routes[0].entities[1]",
            "must be a string, got 3",
            id="entity-int",
        ),
        pytest.param(
            "routes: [{match: {}, entities: [' ']}]",
            "routes[0].entities[0]",
            "must not be empty",
            id="entity-blank",
        ),
        pytest.param(
            "routes: [{match: {}, entities: [x]}, {match: {}, entities: ['{nme}']}]",
            "routes[1].entities[0]",
            "unknown placeholder in '{nme}' (expected one of: {repo}, {owner}, {repository}, "
            "{name}, {namespace}, {project})",
            id="template-unknown",
        ),
        pytest.param(
            "routes: [{match: {}, entities: ['{repo!r}']}]",
            "routes[0].entities[0]",
            "unknown placeholder",
            id="template-conversion",
        ),
        pytest.param(
            "routes: [{match: {}, entities: ['{repo:>9}']}]",
            "routes[0].entities[0]",
            "unknown placeholder",
            id="template-spec",
        ),
        pytest.param(
            "routes: [{match: {}, entities: ['{}']}]",
            "routes[0].entities[0]",
            "unknown placeholder",
            id="template-positional",
        ),
        pytest.param(
            "routes: [{match: {}, entities: ['{repo']}]",
            "routes[0].entities[0]",
            "unbalanced braces in '{repo'",
            id="template-braces",
        ),
        pytest.param(
            "routes: [{match: {}, entities: [x]}, {match: {repostory: a}, entities: [x]}]",
            "routes[1].match.repostory",
            "unknown key (expected one of: repository, environment, source, object, project)",
            id="match-typo",
        ),
        pytest.param(
            "routes: [{match: {workflow: D*}, entities: [x]}]",
            "routes[0].match.workflow",
            "unknown key",
            id="route-workflow-key",
        ),
        pytest.param(
            "routes: [{match: {source: bitbucket}, entities: [x]}]",
            "routes[0].match.source",
            "must be 'github' or 'gitlab' or 'flux' or 'argocd', got 'bitbucket'",
            id="match-source",
        ),
        pytest.param(
            "routes: [{match: {repository: [a]}, entities: [x]}]",
            "routes[0].match.repository",
            "must be a string, got a list",
            id="match-list",
        ),
        pytest.param(
            "routes: [{match: acme/*, entities: [x]}]",
            "routes[0].match",
            "must be a mapping, got 'acme/*'",
            id="match-str",
        ),
        pytest.param(
            "workflows: [{match: {environment: prod}}]",
            "workflows[0].match.environment",
            "unknown key (expected one of: repository, workflow, source)",
            id="workflow-match-env",
        ),
        pytest.param(
            "workflows: [{environment: prod}]",
            "workflows[0].match",
            "is required",
            id="workflow-no-match",
        ),
        pytest.param(
            "workflows: [{match: {}, environment: [prod]}]",
            "workflows[0].environment",
            "must be a string, got a list",
            id="workflow-env-list",
        ),
        pytest.param(
            "workflows: [{match: {}, env: prod}]",
            "workflows[0].env",
            "unknown key (expected one of: match, environment)",
            id="workflow-typo",
        ),
        pytest.param(
            "workflows: deploy", "workflows", "must be a list, got 'deploy'", id="workflows-str"
        ),
        pytest.param(
            "environments: {include: 'prod*'}",
            "environments.include",
            "must be a list of strings, got 'prod*'",
            id="include-str",
        ),
        pytest.param(
            "environments: {include: []}",
            "environments.include",
            "must list at least one glob",
            id="include-empty",
        ),
        pytest.param(
            "environments: {exclude: [review/*, 7]}",
            "environments.exclude[1]",
            "must be a string, got 7",
            id="exclude-int",
        ),
        pytest.param(
            "environments: {rename: {prod: [production]}}",
            "environments.rename.prod",
            "must be a string, got a list",
            id="rename-list",
        ),
        pytest.param(
            "environments: {rename: {prod: }}",
            "environments.rename.prod",
            "must be a string, got None",
            id="rename-empty",
        ),
        pytest.param(
            "environments: {rename: {1: one}}",
            "environments.rename.1",
            "keys must be strings, got 1",
            id="rename-int-key",
        ),
        pytest.param(
            "environments: {renames: {}}",
            "environments.renames",
            "unknown key (expected one of: include, exclude, rename)",
            id="environments-typo",
        ),
        pytest.param(
            "record: {mode: eventual}",
            "record.mode",
            "must be 'final' or 'lifecycle', got 'eventual'",
            id="record-mode",
        ),
        pytest.param(
            "record: {failures: 'sometimes'}",
            "record.failures",
            "must be true or false, got 'sometimes'",
            id="record-failures",
        ),
        pytest.param(
            "rollback: {detect: 1}",
            "rollback.detect",
            "must be true or false, got 1",
            id="rollback-int",
        ),
        pytest.param(
            "rollback: {detection: true}",
            "rollback.detection",
            "unknown key (expected one of: detect)",
            id="rollback-typo",
        ),
        pytest.param("database: 5", "database", "must be a string, got 5", id="database-int"),
        pytest.param(
            "database: mysql://u:hunter2@db/x",
            "database",
            "must be a sqlite:/// or postgresql:// url, got 'mysql://u:***@db/x'",
            id="database-mysql",
        ),
        pytest.param(
            "database: 'sqlite://'",
            "database",
            "must be a sqlite:/// or postgresql:// url",
            id="database-sqlite-memory",
        ),
        pytest.param(
            "database: 'sqlite:///'",
            "database",
            "must be a sqlite:/// or postgresql:// url",
            id="database-no-path",
        ),
        pytest.param(
            "routes: [{match: {repository: 'acme/*', object: 'apps/*'}, entities: [x]}]",
            "routes[0].match.object",
            "no event has both",
            id="route-repository-and-object",
        ),
        pytest.param(
            "routes: [{match: {repository: 'acme/*', project: p}, entities: [x]}]",
            "routes[0].match.project",
            "no event has both",
            id="route-repository-and-project",
        ),
        pytest.param(
            "routes: [{match: {source: github, object: 'apps/*'}, entities: [x]}]",
            "routes[0].match.object",
            "github events name a repository",
            id="route-github-object",
        ),
        pytest.param(
            "routes: [{match: {source: flux, repository: 'acme/*'}, entities: [x]}]",
            "routes[0].match.repository",
            "flux events name a cluster object",
            id="route-flux-repository",
        ),
        pytest.param(
            "routes: [{match: {source: flux, project: p}, entities: [x]}]",
            "routes[0].match.project",
            "only Argo CD events have a project",
            id="route-flux-project",
        ),
        pytest.param(
            "routes: [{match: {source: flux}, entities: ['{project}-x']}]",
            "routes[0].entities[0]",
            "flux events have none",
            id="route-flux-project-template",
        ),
        pytest.param(
            "database: postgresql+psycopg//u:Pg5ecretPW@h/db",
            "database",
            "got '***@h/db'",
            id="database-no-colon-password-masked",
        ),
        pytest.param(
            "database: postgresql://u:Pg5ec@retPW@h/db",
            "database",
            "percent-encode it as %40",
            id="database-at-in-password",
        ),
        pytest.param(
            "database: postgresql+psycopg2://h/db",
            "database",
            "must be a sqlite:///",
            id="database-psycopg2",
        ),
        pytest.param(
            "server: {max_body_bytes: 1.5}",
            "server.max_body_bytes",
            "must be an integer, got 1.5",
            id="body-float",
        ),
        pytest.param(
            "server: {max_body_bytes: 0}",
            "server.max_body_bytes",
            "must be from 1 to 104,857,600, got 0",
            id="body-zero",
        ),
        pytest.param(
            "server: {max_body_bytes: 104857601}",
            "server.max_body_bytes",
            "must be from 1 to 104,857,600, got 104857601",
            id="body-past-most",
        ),
        pytest.param(
            "server: {max_unverified_bytes: 1073741825}",
            "server.max_unverified_bytes",
            "must be from 1 to 1,073,741,824, got 1073741825",
            id="unverified-past-most",
        ),
        pytest.param(
            "server: {max_entities_per_event: 1001}",
            "server.max_entities_per_event",
            "must be from 1 to 1,000, got 1001",
            id="entities-past-most",
        ),
        pytest.param(
            "server: {max_unverified_bytes: 0}",
            "server.max_unverified_bytes",
            "must be from 1 to 1,073,741,824, got 0",
            id="unverified-zero",
        ),
        pytest.param(
            "server: {max_entities_per_event: 0}",
            "server.max_entities_per_event",
            "must be from 1 to 1,000, got 0",
            id="entities-zero",
        ),
        pytest.param(
            "server: {max_entities_per_event: many}",
            "server.max_entities_per_event",
            "must be an integer, got 'many'",
            id="entities-text",
        ),
        pytest.param(
            "routes: [{match: {}, entities: [a], payload_entities: acme-*}]",
            "routes[0].payload_entities",
            "must be a list of strings",
            id="payload-entities-not-a-list",
        ),
        pytest.param(
            "routes: [{match: {}, entities: [a], payload_entities: ['']}]",
            "routes[0].payload_entities[0]",
            "must not be empty",
            id="payload-entities-empty-glob",
        ),
        pytest.param(
            "server: {max_entities_per_event: 2}\nroutes: [{match: {}, entities: [a, b, c]}]",
            "routes[0].entities",
            "lists 3 entities, more than server.max_entities_per_event (2)",
            id="route-over-entity-limit",
        ),
        pytest.param(
            "server: {port: 80}",
            "server.port",
            "unknown key (expected one of: max_body_bytes, max_entities_per_event, "
            "max_unverified_bytes)",
            id="server-typo",
        ),
        pytest.param(
            "delivery: {max_attempts: -1}",
            "delivery.max_attempts",
            "must be 0 (unlimited) or more, got -1",
            id="attempts-negative",
        ),
        pytest.param(
            "delivery: {max_attempts: 'many'}",
            "delivery.max_attempts",
            "must be an integer, got 'many'",
            id="attempts-str",
        ),
        pytest.param(
            "delivery: {dead_letter_after_seconds: -5}",
            "delivery.dead_letter_after_seconds",
            "must be a positive number, at most 31,622,400: got -5",
            id="dead-letter-negative",
        ),
        pytest.param(
            "delivery: {lease_seconds: .inf}",
            "delivery.lease_seconds",
            "must be a positive number, at most 86,400: got inf",
            id="lease-inf",
        ),
        # Past their most, the date arithmetic overflowed: a reconcile thread dead from its
        # first run, a worker that never delivered (docs/limits.md).
        pytest.param(
            "sync: {interval_minutes: 100000000000000}",
            "sync.interval_minutes",
            "must be a positive number, at most 10,080: got 100000000000000",
            id="interval-huge",
        ),
        pytest.param(
            "sync: {look_back_hours: 99999999999}",
            "sync.look_back_hours",
            "at most 87,840",
            id="look-back-huge",
        ),
        pytest.param(
            "delivery: {dead_letter_after_seconds: 200000000000000}",
            "delivery.dead_letter_after_seconds",
            "at most 31,622,400",
            id="dead-letter-huge",
        ),
        pytest.param(
            "delivery: {lease_seconds: 5}",
            "delivery.lease_seconds",
            "must be longer than cortex.timeout_seconds (10)",
            id="lease-short",
        ),
        pytest.param(
            "delivery: {backoff_base_seconds: 60, backoff_max_seconds: 10}",
            "delivery.backoff_max_seconds",
            "must be at least backoff_base_seconds, got 10",
            id="backoff-inverted",
        ),
        pytest.param(
            "delivery: {lease_secs: 5}",
            "delivery.lease_secs",
            "unknown key (expected one of: dead_letter_after_seconds, max_attempts",
            id="delivery-typo",
        ),
        *HTTP_KEY_ERRORS,
    ],
)
def test_errors_name_the_key(text: str, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.key == key
    assert message in caught.value.reason
    assert str(caught.value) == (f"{key}: {caught.value.reason}" if key else caught.value.reason)


def test_unknown_key_message_in_full() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("routes: [{match: {}, entities: [x]}, {match: {repostory: a}, entities: [x]}]")
    assert str(caught.value) == (
        "routes[1].match.repostory: unknown key (expected one of: repository, environment, source, "
        "object, project)"
    )


@pytest.mark.parametrize(
    ("environ", "key", "message"),
    [
        pytest.param(
            {"CORTEX_API_URL": "api.example.com"},
            "CORTEX_API_URL",
            "must be an http(s) url, got 'api.example.com'",
            id="cortex-url",
        ),
        pytest.param(
            {"BRIDGE_DATABASE_URL": "mysql://u:pw@h/db"},
            "BRIDGE_DATABASE_URL",
            "got 'mysql://u:***@h/db'",
            id="database",
        ),
    ],
)
def test_bad_environment_overrides_name_the_variable(
    environ: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(None, environ=environ)
    assert caught.value.key == key
    assert message in caught.value.reason


# --- Defaults and overrides --------------------------------------------------------------


def test_no_file_means_the_documented_defaults() -> None:
    config = load_config(None, {})
    assert config == Config()
    assert config.cortex.url == "https://api.getcortexapp.com"
    assert config.cortex.timeout_seconds == 10
    assert config.cortex.requests_per_minute == 900
    assert config.database == "sqlite:///bridge.db"
    assert config.sources.enabled("github") and config.sources.enabled("gitlab")
    assert config.routes == (RouteRule("default", Match(), ("{repo}",)),)
    assert config.environments.include == ("*",) and config.environments.exclude == ()
    assert config.workflows == ()
    assert config.record.mode is RecordMode.FINAL and config.record.failures is False
    assert config.rollback.detect is True
    assert config.server.max_body_bytes == 26214400  # PRODUCT.md: over 25 MiB get 413
    assert config.server.unverified_limit == 32 * 1048576
    assert config.server.max_entities_per_event == 20
    assert config.delivery == DeliverySettings(
        dead_letter_after_seconds=86400,
        max_attempts=0,
        lease_seconds=60,
        backoff_base_seconds=1,
        backoff_max_seconds=300,
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("# nothing but a comment\n", id="comment"),
        pytest.param("cortex:\nsources:\n  github:\nrecord: {mode: }\n", id="empty-values"),
    ],
)
def test_empty_file_or_empty_values_mean_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    assert load_config(str(path), {}) == Config()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("cortex: {requests_per_minute: 0}", 0, id="off"),
        pytest.param("cortex: {requests_per_minute: 1}", 1, id="one"),
        pytest.param("cortex: {requests_per_minute: 600}", 600, id="lower"),
        pytest.param("cortex: {requests_per_minute: }", 900, id="empty-is-default"),
    ],
)
def test_requests_per_minute(text: str, expected: int) -> None:
    assert parse(text).cortex.requests_per_minute == expected


def test_explicit_empty_routes_record_nothing() -> None:
    config = parse("routes: []")
    assert config.routes == ()
    for event in (make(), make(entities=("x",))):
        with pytest.raises(UnsupportedEvent, match="no route matches"):
            route(config, event)


@pytest.mark.parametrize(
    ("text", "environ", "url", "database"),
    [
        pytest.param("", {}, "https://api.getcortexapp.com", "sqlite:///bridge.db", id="defaults"),
        pytest.param(
            "cortex: {url: 'https://cortex.example.com/'}\ndatabase: sqlite:////var/lib/b.db",
            {},
            "https://cortex.example.com",
            "sqlite:////var/lib/b.db",
            id="file",
        ),
        pytest.param(
            "cortex: {url: 'https://file.example.com'}\ndatabase: sqlite:///file.db",
            {"CORTEX_API_URL": "http://localhost:8080/", "BRIDGE_DATABASE_URL": "sqlite:///env.db"},
            "http://localhost:8080",
            "sqlite:///env.db",
            id="environment-wins",
        ),
        pytest.param(
            "database: postgresql://bridge:pw@db:5432/bridge",
            {},
            "https://api.getcortexapp.com",
            "postgresql+psycopg://bridge:pw@db:5432/bridge",
            id="postgresql-normalised",
        ),
        pytest.param(
            "",
            {"BRIDGE_DATABASE_URL": "postgresql+psycopg://db/bridge", "CORTEX_API_URL": " "},
            "https://api.getcortexapp.com",
            "postgresql+psycopg://db/bridge",
            id="psycopg-kept-blank-ignored",
        ),
    ],
)
def test_url_and_database(text: str, environ: dict[str, str], url: str, database: str) -> None:
    config = parse(text, **environ)
    assert (config.cortex.url, config.database) == (url, database)


def test_the_product_example_and_ours_are_valid(tmp_path: Path) -> None:
    product = tmp_path / "product.yaml"
    product.write_text(PRODUCT_EXAMPLE)
    config = load_config(str(product), {})
    assert [rule.entities for rule in config.routes] == [("payments-api",), ("{repo}",)]
    assert config.environments.rename == {"prod": "production"}
    assert config.workflows[0].environment == "production"
    assert config.sync.github == ("acme/*",) and config.sync.gitlab == ("acme-group",)
    assert config.http_sources["spice"].repository == "acme/spice-app"
    assert config.http_sources["spice"].pagination.style == "newest-first"
    example = load_config(str(EXAMPLE), {})
    assert example.record.mode is RecordMode.FINAL
    assert len(example.routes) == 4 and len(example.workflows) == 2
    assert example.cortex == Config().cortex  # the example spells out the defaults


PRODUCT_EXAMPLE = """\
cortex:
  url: https://api.getcortexapp.com
  timeout_seconds: 10
database: sqlite:///bridge.db
sources:
  github: {enabled: true}
  gitlab: {enabled: true}
routes:
  - match: {repository: "acme/payments-api"}
    entities: [payments-api]
  - match: {repository: "acme/*", environment: "prod*"}
    entities: ["{repo}"]
environments:
  include: ["*"]
  exclude: ["review/*"]
  rename: {prod: production}
workflows:
  - match: {repository: "acme/*", workflow: "Deploy*"}
    environment: production
record:
  mode: final
  failures: false
rollback:
  detect: true
sync:
  interval_minutes: 15
  look_back_hours: 48
  github: ["acme/*"]
  gitlab: ["acme-group"]
http_sources:
  spice:
    url: https://api.spice.ai/v1/apps/42/deployments
    token_env: SPICE_API_TOKEN
    pagination: {style: newest-first, limit: 100}
    items: deployments
    fields: {id: id, status: status, sha: commit_sha, finished_at: updated_at,
             started_at: started_at, deployer: created_by, environment: null}
    status: {succeeded: succeeded, failed: failed, queued: pending, created: pending,
             in_progress: in_progress}
    repository: acme/spice-app
"""


# --- Loading the file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        pytest.param(
            None, "", "cannot read the config file: no such file or directory", id="missing"
        ),
        pytest.param("routes:\n  - match: {repository: a\n", ":3", "invalid yaml:", id="syntax"),
        pytest.param("cortex:\n\turl: x\n", ":2", "invalid yaml: found character '\\t'", id="tab"),
        pytest.param(
            "record: {mode: final}\nrecord: {mode: lifecycle}\n",
            ":2",
            "invalid yaml: duplicate key 'record'",
            id="duplicate-top",
        ),
        pytest.param(
            "routes:\n  - match: {repository: a, repository: b}\n    entities: [x]\n",
            ":2",
            "duplicate key 'repository'",
            id="duplicate-nested",
        ),
        pytest.param("a: !!python/object:os.system x\n", ":1", "invalid yaml:", id="unsafe-tag"),
        pytest.param(
            b"cortex: {url: '\xff'}\n",
            "",
            "cannot read the config file: not utf-8 text",
            id="not-utf8",
        ),
    ],
)
def test_file_errors_name_the_file(
    tmp_path: Path, content: str | bytes | None, where: str, message: str
) -> None:
    path = tmp_path / "bridge.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), {})
    assert caught.value.key == f"{path}{where}"
    assert message in caught.value.reason


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file: is a directory"):
        load_config(str(tmp_path), {})


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "sources:\n  github: &off {enabled: false}\n  gitlab:\n    <<: *off\n    enabled: true\n"
    )
    config = load_config(path, {})
    assert not config.sources.enabled("github") and config.sources.enabled("gitlab")


def test_validation_errors_from_a_file_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("record:\n  mode: eventual\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), {})
    assert str(caught.value) == "record.mode: must be 'final' or 'lifecycle', got 'eventual'"


# --- Routing -----------------------------------------------------------------------------

ROUTING = """\
routes:
  - match: {repository: "acme/payments-api"}
    entities: [payments-api]
    payload_entities: [mine, "payments-*"]
  - match: {repository: "acme/backend/*", source: gitlab}
    entities: ["{owner}--{repo}", "{repository}", "{owner}--{repo}"]
  - match: {repository: "acme/*", environment: "prod*"}
    entities: ["{repo}"]
  - match: {repository: "ACME/tools"}
    entities: [tools]
  - match: {repository: "other/*"}
    entities: [other]
    payload_entities: [a, "b*"]
environments:
  exclude: ["review/*"]
  rename: {prod: production, review-app: review/app}
workflows:
  - match: {repository: "acme/*", workflow: "Deploy*"}
    environment: production
  - match: {repository: "acme/site", workflow: "publish.yml"}
    environment: prod
  - match: {repository: "acme/*", workflow: ".github/workflows/release.yml", source: github}
  - match: {source: gitlab, workflow: deploy}
    environment: production
"""


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            make(), Route(("payments-api",), "production", "routes[0]"), id="first-match-wins"
        ),
        pytest.param(
            make(repository="acme/billing"),
            Route(("billing",), "production", "routes[2]"),
            id="glob",
        ),
        pytest.param(
            make(repository="acme/billing", environment="prod-eu"),
            Route(("billing",), "prod-eu", "routes[2]"),
            id="environment-glob",
        ),
        pytest.param(
            make(repository="acme/billing", environment="prod"),
            Route(("billing",), "production", "routes[2]"),
            id="renamed",
        ),
        pytest.param(
            make(source="gitlab", repository="acme/backend/ledger", environment="staging"),
            Route(("acme/backend--ledger", "acme/backend/ledger"), "staging", "routes[1]"),
            id="gitlab-subgroup-templates",
        ),
        pytest.param(
            make(repository="acme/backend/ledger"),
            Route(("ledger",), "production", "routes[2]"),
            id="star-crosses-slash",
        ),
        pytest.param(
            make(repository="acme/Tools", environment="staging"),
            Route(("tools",), "staging", "routes[3]"),
            id="repository-ignores-case",
        ),
        pytest.param(
            make(repository="other/x", environment="staging", entities=("a", "b-2")),
            Route(("a", "b-2"), "staging", "routes[4].payload_entities"),
            id="payload-entities-allowed",
        ),
        pytest.param(
            make(entities=("mine",)),
            Route(("mine",), "production", "routes[0].payload_entities"),
            id="payload-entities-win-where-allowed",
        ),
        pytest.param(
            make(
                repository="acme/billing",
                event="workflow_run",
                environment=None,
                details={"workflow": "Deploy API", "workflowPath": ".github/workflows/cd.yml"},
            ),
            Route(("billing",), "production", "routes[2]"),
            id="workflow-by-name",
        ),
        pytest.param(
            make(
                repository="acme/site",
                event="workflow_run",
                environment=None,
                details={"workflow": "Publish", "workflowPath": ".github/workflows/publish.yml"},
            ),
            Route(("site",), "production", "routes[2]"),
            id="workflow-by-file-name-renamed",
        ),
        pytest.param(
            make(
                event="workflow_run",
                environment=None,
                details={"workflow": "Release", "workflowPath": ".github/workflows/release.yml"},
            ),
            Route(("payments-api",), None, "routes[0]"),
            id="workflow-by-path-no-environment",
        ),
        pytest.param(
            make(
                source="gitlab",
                repository="acme/backend/ledger",
                event="pipeline",
                environment=None,
                details={"workflow": "deploy"},
            ),
            Route(("acme/backend--ledger", "acme/backend/ledger"), "production", "routes[1]"),
            id="gitlab-pipeline",
        ),
    ],
)
def test_routing(event: DeployEvent, expected: Route) -> None:
    assert route(parse(ROUTING), event) == expected


@pytest.mark.parametrize(
    ("text", "event", "reason"),
    [
        pytest.param(
            ROUTING + "sources: {gitlab: {enabled: false}}",
            make(source="gitlab"),
            "source 'gitlab' is disabled by sources.gitlab.enabled",
            id="disabled-source",
        ),
        pytest.param(
            ROUTING,
            make(source="bitbucket"),
            "source 'bitbucket' is not supported",
            id="unknown-source",
        ),
        pytest.param(
            ROUTING,
            make(environment="review/feature-x"),
            "environment 'review/feature-x' is excluded by environments.exclude 'review/*'",
            id="excluded",
        ),
        pytest.param(
            ROUTING,
            make(environment="review-app"),
            "environment 'review/app' is excluded by environments.exclude 'review/*'",
            id="renamed-then-excluded",
        ),
        pytest.param(
            ROUTING,
            make(environment="review/x", entities=("x",)),
            "environment 'review/x' is excluded by environments.exclude 'review/*'",
            id="explicit-entities-still-excluded",
        ),
        pytest.param(
            "environments: {include: ['prod*', staging], exclude: [prod-old]}",
            make(environment="prod-old"),
            "environment 'prod-old' is excluded by environments.exclude 'prod-old'",
            id="exclude-wins",
        ),
        pytest.param(
            "environments: {include: [production]}",
            make(environment="staging"),
            "environment 'staging' is not included by environments.include",
            id="not-included",
        ),
        pytest.param(
            "environments: {include: [production]}",
            make(environment=None),
            "a deploy with no environment is not included by environments.include",
            id="no-environment-not-included",
        ),
        pytest.param(
            ROUTING,
            make(repository="else/thing"),
            "no route matches repository 'else/thing' environment 'production'",
            id="no-route",
        ),
        pytest.param(
            ROUTING,
            make(entities=("mine", "theirs")),
            "entity 'theirs' named by the deployment's payload is not allowed by "
            "routes[0].payload_entities",
            id="payload-entity-not-allowed",
        ),
        pytest.param(
            ROUTING,
            make(repository="acme/billing", entities=("billing",)),
            "the deployment's payload names entities (payload.cortex.entities) and routes[2] "
            "allows none (its payload_entities)",
            id="payload-entities-where-none-allowed",
        ),
        pytest.param(
            "",
            make(entities=("payments-api",)),
            "the deployment's payload names entities (payload.cortex.entities) and the default "
            "route allows none (its payload_entities)",
            id="payload-entities-by-default",
        ),
        pytest.param(
            "routes: []",
            make(entities=("x",)),
            "no route matches repository 'acme/payments-api' environment 'production'",
            id="payload-entities-without-routes",
        ),
        pytest.param(
            ROUTING,
            make(repository="acme/billing", environment=None),
            "no route matches repository 'acme/billing' with no environment",
            id="no-environment-no-route",
        ),
        pytest.param(
            ROUTING,
            make(
                repository="acme/api",
                event="workflow_run",
                environment=None,
                details={"workflow": "CI", "workflowPath": ".github/workflows/ci.yml"},
            ),
            "workflow 'CI' of 'acme/api' is not a deploy workflow (see workflows)",
            id="not-a-deploy-workflow",
        ),
        pytest.param(
            ROUTING,
            make(
                source="gitlab",
                event="pipeline",
                environment=None,
                details={"workflowPath": "release.yml"},
            ),
            "workflow 'release.yml' of 'acme/payments-api' is not a deploy workflow "
            "(see workflows)",
            id="rule-for-other-source",
        ),
        pytest.param(
            "",
            make(event="workflow_run", environment=None, details={"workflow": "Deploy"}),
            "workflow 'Deploy' of 'acme/payments-api' is not a deploy workflow (see workflows)",
            id="no-workflows-by-default",
        ),
        pytest.param(
            "",
            make(source="gitlab", event="pipeline", environment=None),
            "workflow 'pipeline' of 'acme/payments-api' is not a deploy workflow (see workflows)",
            id="pipeline-without-name",
        ),
        pytest.param(
            "routes: [{match: {}, entities: ['{owner}']}]",
            make(repository="solo"),
            "routes[0] gives no entity for 'solo'",
            id="empty-entity",
        ),
    ],
)
def test_events_that_record_nothing_say_why(text: str, event: DeployEvent, reason: str) -> None:
    with pytest.raises(UnsupportedEvent) as caught:
        route(parse(text), event)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(make(), Route(("payments-api",), "production", "default"), id="github"),
        pytest.param(
            make(source="gitlab", repository="acme/backend/api", environment="review/x"),
            Route(("api",), "review/x", "default"),
            id="gitlab-subgroup",
        ),
        pytest.param(
            make(environment=None), Route(("payments-api",), None, "default"), id="no-environment"
        ),
    ],
)
def test_default_routing(event: DeployEvent, expected: Route) -> None:
    assert route(Config(), event) == expected


# --- Describing --------------------------------------------------------------------------


def test_describe_says_what_names_the_entities_of_a_gitops_route() -> None:
    """A GitOps object names its entities by its tag annotation, not a deployment's payload."""
    config = parse_config(
        {
            "routes": [
                {
                    "match": {"source": "flux", "object": "apps/*"},
                    "entities": ["{name}"],
                    "payload_entities": ["payments-*"],
                },
                {
                    "match": {"source": "argocd", "project": "payments"},
                    "entities": ["{name}"],
                    "payload_entities": ["payments-*"],
                },
            ]
        }
    )
    lines = describe(config)
    assert (
        "routes[0]: object 'apps/*' source 'flux' -> {name} "
        "(the object's cortex-tag metadata may name payments-*)"
    ) in lines
    assert (
        "routes[1]: project 'payments' source 'argocd' -> {name} "
        "(the Application's cortex.io/tag may name payments-*)"
    ) in lines


def test_describe_the_example() -> None:
    lines = describe(
        load_config(str(EXAMPLE), {"BRIDGE_DATABASE_URL": "postgresql://b:s3cret@db/b"})
    )
    assert (
        "cortex: https://api.getcortexapp.com (timeout 10s, at most 900 requests/min from all "
        "workers)"
    ) in lines
    assert "database: postgresql+psycopg://b:***@db/b" in lines
    assert "sources: github enabled, gitlab enabled, flux disabled, argocd disabled" in lines
    assert (
        "routes[0]: repository 'acme/payments-api' -> payments-api, payments-db "
        "(a deployment's payload may name payments-*)"
    ) in lines
    assert "routes[1]: repository 'acme/backend/*' source 'gitlab' -> backend-{repo}" in lines
    assert (
        "workflows[0]: repository 'acme/*' workflow 'Deploy*' -> environment 'production'" in lines
    )
    assert (
        "environments: include '*'; exclude 'review/*', 'preview-*'; "
        "rename 'prod' -> 'production', 'stg' -> 'staging'"
    ) in lines
    assert "record: mode final, failures not recorded" in lines
    assert "rollback: detect on" in lines
    assert (
        "server: max_body_bytes 26214400, max_entities_per_event 20, max_unverified_bytes 33554432"
        in lines
    )
    assert not any("s3cret" in line for line in lines)


def test_describe_a_budget_turned_off() -> None:
    lines = describe(parse("cortex: {requests_per_minute: 0}"))
    assert "cortex: https://api.getcortexapp.com (timeout 10s, no request limit)" in lines


def test_describe_the_defaults() -> None:
    lines = describe(Config())
    assert "default: every repository -> {repo}" in lines
    assert "workflows: none (workflow_run and pipeline events are ignored)" in lines
    assert (
        "delivery: dead letter after 86400s, max attempts unlimited, lease 60s, backoff 1s to 300s"
    ) in lines


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:///bridge.db", "sqlite:///bridge.db", id="sqlite"),
        pytest.param(
            "postgresql+psycopg://u:pw@h:5432/db",
            "postgresql+psycopg://u:***@h:5432/db",
            id="password",
        ),
        pytest.param(
            "postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db", id="no-password"
        ),
        pytest.param(
            "postgresql+psycopg://u:p@ss@h/db",
            "postgresql+psycopg://u:***@h/db",
            id="at-in-password",
        ),
        pytest.param(
            "postgresql+psycopg://h/db?user=u&password=pw&sslmode=require",
            "postgresql+psycopg://h/db?user=u&password=***&sslmode=require",
            id="query-password",
        ),
        pytest.param("not a url", "not a url", id="not-a-url"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --- http sources: parsed with the config, routed, described ------------------------------


def test_http_sources_are_part_of_the_config() -> None:
    config = parse(HTTP_SOURCES + "sync: {http: [shipyard]}")
    spec = config.http_sources["shipyard"]
    assert (spec.url, spec.token_env, spec.repository) == (
        "https://deploys.example.test/v1/apps/7/deployments",
        "SHIPYARD_TOKEN",
        "acme/shipyard-web",
    )
    assert config.source_names == ("github", "gitlab", "flux", "argocd", "shipyard")
    assert config.sync.http == ("shipyard",) and config.sync.enabled
    assert Config().http_sources == {}
    assert Config().source_names == ("github", "gitlab", "flux", "argocd")


def shipyard_deploy(**overrides: Any) -> DeployEvent:
    """A deploy as the http reader makes it: source = the entry, its configured repository."""
    return make(source="shipyard", repository="acme/shipyard-web", event="deployment", **overrides)


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        pytest.param("", Route(("shipyard-web",), "production", "default"), id="default-route"),
        pytest.param(
            "routes: [{match: {source: shipyard}, entities: [ships]}]",
            Route(("ships",), "production", "routes[0]"),
            id="by-source",
        ),
        pytest.param(
            "routes: [{match: {source: github}, entities: [gh]},"
            " {match: {repository: 'acme/ship*'}, entities: ['{owner}-{repo}']}]",
            Route(("acme-shipyard-web",), "production", "routes[1]"),
            id="by-repository",
        ),
    ],
)
def test_http_source_deploys_are_routed(routes: str, expected: Route) -> None:
    assert route(parse(HTTP_SOURCES + routes), shipyard_deploy()) == expected


def test_http_source_deploys_follow_environment_rules() -> None:
    config = parse(HTTP_SOURCES + "environments: {rename: {prod: production}, exclude: [dev]}")
    assert route(config, shipyard_deploy(environment="prod")).environment == "production"
    with pytest.raises(UnsupportedEvent, match=r"excluded by environments\.exclude 'dev'"):
        route(config, shipyard_deploy(environment="dev"))


def test_an_unconfigured_source_is_not_routed() -> None:
    with pytest.raises(UnsupportedEvent, match="source 'shipyard' is not supported"):
        route(Config(), shipyard_deploy())


def test_webhook_sources_stay_switchable_beside_http_ones() -> None:
    config = parse(HTTP_SOURCES + "sources: {github: {enabled: false}}")
    assert route(config, shipyard_deploy()).entities == ("shipyard-web",)
    with pytest.raises(UnsupportedEvent, match=r"disabled by sources\.github\.enabled"):
        route(config, make())


def test_describe_http_sources_and_their_reconcile() -> None:
    lines = describe(parse(HTTP_SOURCES + "sync: {http: [shipyard], github: [acme/api]}"))
    assert (
        "http_sources.shipyard: https://deploys.example.test/v1/apps/7/deployments "
        "(newest-first, limit 100, preset spice), repository 'acme/shipyard-web', "
        "token from SHIPYARD_TOKEN"
    ) in lines
    assert "sync: every 15 min, the last 48 h of github acme/api, http shipyard" in lines
    assert not any(line.startswith("http_sources") for line in describe(Config()))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"routes": [{"match": {"repository": "acme/*"}, "entities": ["a\x1bb"]}]}, "entities[0]"),
        (
            {"routes": [{"match": {"repository": "acme/*"}, "entities": ["ok", ".."]}]},
            "entities[1]",
        ),
        ({"routes": [{"match": {"repository": "acme/*"}, "entities": ["x" * 256]}]}, "entities[0]"),
        ({"routes": [{"match": {"repository": "acme/*"}, "entities": ["a\u202e{repo}"]}]}, "[0]"),
        (
            {"routes": [{"match": {"repository": "*"}, "entities": ["x"], "environment": "a\nb"}]},
            "routes[0].environment",
        ),
        ({"environments": {"rename": {"prod": "pro\x00d"}}}, "environments.rename.prod"),
        ({"workflows": [{"match": {"workflow": "*"}, "environment": "p" * 256}]}, "environment"),
    ],
)
def test_a_route_value_every_event_would_be_refused_for_is_refused_at_load(
    data: dict[str, Any], key: str
) -> None:
    # check-config said OK, and the receiver answered every matching webhook 400 (GitHub does
    # not retry): the model's rule for an entity and an environment, checked at load.
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert key in str(caught.value), caught.value


@pytest.mark.parametrize(
    ("key", "value"),
    [("environment", "prod\x1b[31m"), ("environment", "e" * 256), ("repository", "acme/\nx")],
)
def test_an_http_sources_names_are_checked_at_load_as_routes_are(key: str, value: str) -> None:
    source = {
        "preset": "spice",
        "url": "https://api.spice.ai/v1/apps/42/deployments",
        "token_env": "SPICE_API_TOKEN",
        "repository": "acme/spice-app",
        key: value,
    }
    with pytest.raises(ConfigError, match=re.escape(f"http_sources.spice.{key}")):
        parse_config({"http_sources": {"spice": source}})
