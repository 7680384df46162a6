"""What ``check-config`` prints: the configuration as human lines, secrets redacted."""

from __future__ import annotations

from bridge.config.http_sources import PAGE
from bridge.config.settings import SOURCES, Config, Environments, Match
from bridge.redact import redact_url


def _who_names(match: Match) -> str:
    """What names the entities a route's ``payload_entities`` allow, for the events it
    matches: a GitHub deployment's payload, or a GitOps object's own tag (docs/gitops.md)."""
    if match.source == "argocd" or match.project is not None:
        return "the Application's cortex.io/tag"
    if match.source == "flux":
        return "the object's cortex-tag metadata"
    if match.object is not None:
        return "the object's tag"
    if match.repository is not None or match.source is not None:
        return "a deployment's payload"
    return "a deployment's payload or a GitOps object's tag"


def describe(config: Config) -> list[str]:
    """Human lines for ``check-config``: what the bridge does with this config."""
    cortex, record, delivery = config.cortex, config.record, config.delivery
    sources = ", ".join(
        f"{name} {'enabled' if config.sources.enabled(name) else 'disabled'}" for name in SOURCES
    )
    routes = [
        f"{rule.name}: {_describe_match(rule.match)} -> {', '.join(rule.entities)}"
        + (f", environment {rule.environment!r}" if rule.environment else "")
        + (
            f" ({_who_names(rule.match)} may name {', '.join(rule.payload_entities)})"
            if rule.payload_entities
            else ""
        )
        for rule in config.routes
    ] or ["routes: none (nothing is recorded)"]
    workflows = [
        f"{rule.name}: {_describe_match(rule.match)} -> "
        + (f"environment {rule.environment!r}" if rule.environment else "no environment")
        for rule in config.workflows
    ] or ["workflows: none (workflow_run and pipeline events are ignored)"]
    return [
        f"cortex: {cortex.url} (timeout {cortex.timeout_seconds:g}s, "
        + (
            f"at most {cortex.requests_per_minute} requests/min from all workers)"
            if cortex.requests_per_minute
            else "no request limit)"
        ),
        f"database: {redact_url(config.database)}",
        f"sources: {sources}",
        *routes,
        _describe_environments(config.environments),
        *workflows,
        f"record: mode {record.mode.value}, failures "
        + ("recorded" if record.failures else "not recorded"),
        f"rollback: detect {'on' if config.rollback.detect else 'off'}",
        f"server: max_body_bytes {config.server.max_body_bytes}, max_entities_per_event "
        f"{config.server.max_entities_per_event}, max_unverified_bytes "
        f"{config.server.unverified_limit}",
        f"delivery: dead letter after {delivery.dead_letter_after_seconds:g}s, max attempts "
        f"{delivery.max_attempts or 'unlimited'}, lease {delivery.lease_seconds:g}s, backoff "
        f"{delivery.backoff_base_seconds:g}s to {delivery.backoff_max_seconds:g}s",
        *_describe_sync(config),
        *_describe_http_sources(config),
    ]


def _describe_sync(config: Config) -> list[str]:
    """The reconcile's line, when the ``sync:`` section names sources."""
    sync = config.sync
    if not sync.enabled:
        return []
    names = [
        *(f"github {n}" for n in sync.github),
        *(f"gitlab {n}" for n in sync.gitlab),
        *(f"http {n}" for n in sync.http),
        *(f"argocd {redact_url(n)}" for n in sync.argocd),
    ]
    return [
        f"sync: every {sync.interval_minutes:g} min, the last {sync.look_back_hours:g} h of "
        + ", ".join(names)
    ]


def _describe_http_sources(config: Config) -> list[str]:
    """One line per ``http_sources`` entry: where it reads, how it pages, how it is routed."""
    lines = []
    for name, spec in config.http_sources.items():
        paging = spec.pagination
        size = "size" if paging.style == PAGE else "limit"
        preset = f", preset {spec.preset}" if spec.preset else ""
        lines.append(
            f"http_sources.{name}: {redact_url(spec.url)} ({paging.style}, {size} "
            f"{paging.size}{preset}), repository {spec.repository!r}, token from "
            f"{spec.token_env}"
        )
    return lines


def _describe_match(match: Match) -> str:
    fields = ("repository", "object", "project", "environment", "workflow", "source")
    parts = [f"{key} {getattr(match, key)!r}" for key in fields if getattr(match, key)]
    return " ".join(parts) or "every repository"


def _describe_environments(environments: Environments) -> str:
    parts = ["include " + ", ".join(repr(p) for p in environments.include)]
    if environments.exclude:
        parts.append("exclude " + ", ".join(repr(p) for p in environments.exclude))
    if environments.rename:
        pairs = (f"{old!r} -> {new!r}" for old, new in environments.rename.items())
        parts.append("rename " + ", ".join(pairs))
    return "environments: " + "; ".join(parts)
