"""Routing an event to its entities and environment (the order is in :mod:`bridge.config`)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from bridge.config.settings import (
    DEFAULT_ROUTE,
    SOURCES,
    WORKFLOW_EVENTS,
    Config,
    Environments,
    Match,
    Route,
    RouteRule,
    WorkflowRule,
)
from bridge.errors import UnsupportedEvent
from bridge.model import DeployEvent


def route(config: Config, event: DeployEvent) -> Route:
    """The entities and environment an event is recorded under, or UnsupportedEvent why not."""
    _check_source(config, event.source)
    environment = event.environment
    if event.event in WORKFLOW_EVENTS:
        environment = _workflow_rule(config.workflows, event).environment or environment
    if environment is not None:
        environment = config.environments.rename.get(environment, environment)
    _check_environment(config.environments, environment)
    for rule in config.routes:
        if not _matches(rule.match, event, environment):
            continue
        if event.entities:
            allowed = _allowed(rule, event.entities)
            return Route(allowed, environment, f"{rule.name}.payload_entities")
        return Route(_render(rule, event.repository), environment, rule.name)
    where = f"environment {environment!r}" if environment is not None else "with no environment"
    raise UnsupportedEvent(f"no route matches repository {event.repository!r} {where}")


def _check_source(config: Config, source: str) -> None:
    """A webhook source that is enabled, or a configured http source (read only by sync)."""
    if source not in config.source_names:
        raise UnsupportedEvent(f"source {source!r} is not supported")
    if source in SOURCES and not config.sources.enabled(source):
        raise UnsupportedEvent(f"source {source!r} is disabled by sources.{source}.enabled")


def _workflow_rule(rules: tuple[WorkflowRule, ...], event: DeployEvent) -> WorkflowRule:
    """The first ``workflows`` rule that makes this run a deploy."""
    for rule in rules:
        if _matches(rule.match, event, None):
            return rule
    name = event.details.get("workflow") or event.details.get("workflowPath") or event.event
    raise UnsupportedEvent(
        f"workflow {name!r} of {event.repository!r} is not a deploy workflow (see workflows)"
    )


def _check_environment(environments: Environments, environment: str | None) -> None:
    """Exclude wins over include; no environment is judged as the empty name."""
    name = environment or ""
    what = (
        f"environment {environment!r}"
        if environment is not None
        else "a deploy with no environment"
    )
    for pattern in environments.exclude:
        if fnmatchcase(name, pattern):
            raise UnsupportedEvent(f"{what} is excluded by environments.exclude {pattern!r}")
    if not any(fnmatchcase(name, pattern) for pattern in environments.include):
        raise UnsupportedEvent(f"{what} is not included by environments.include")


def _matches(match: Match, event: DeployEvent, environment: str | None) -> bool:
    """Every field the rule sets matches the event."""
    if match.source is not None and match.source != event.source:
        return False
    if match.repository is not None and not fnmatchcase(
        event.repository.casefold(), match.repository.casefold()
    ):
        return False
    if match.environment is not None and (
        environment is None or not fnmatchcase(environment, match.environment)
    ):
        return False
    return match.workflow is None or _workflow_matches(event, match.workflow)


def _workflow_matches(event: DeployEvent, pattern: str) -> bool:
    """The glob against the workflow's name, its file path, or the file's name."""
    name = event.details.get("workflow")
    path = event.details.get("workflowPath")
    candidates = [name, path, path.rsplit("/", 1)[-1] if isinstance(path, str) else None]
    return any(isinstance(c, str) and fnmatchcase(c, pattern) for c in candidates)


def _allowed(rule: RouteRule, entities: tuple[str, ...]) -> tuple[str, ...]:
    """The entities a deployment's payload names, when every one is allowed by the route."""
    where = "the default route" if rule is DEFAULT_ROUTE else rule.name
    if not rule.payload_entities:
        raise UnsupportedEvent(
            f"the deployment's payload names entities (payload.cortex.entities) and {where} "
            "allows none (its payload_entities)"
        )
    for tag in entities:
        if not any(fnmatchcase(tag, glob) for glob in rule.payload_entities):
            shown = tag if len(tag) <= 60 else tag[:57] + "..."
            raise UnsupportedEvent(
                f"entity {shown!r} named by the deployment's payload is not allowed by "
                f"{rule.name}.payload_entities"
            )
    return entities


def _render(rule: RouteRule, repository: str) -> tuple[str, ...]:
    """The rule's entity templates for one repository; empty results dropped, order kept."""
    owner, _, repo = repository.rpartition("/")
    names = (t.format(repo=repo, owner=owner, repository=repository) for t in rule.entities)
    entities = tuple(dict.fromkeys(name for name in names if name))
    if not entities:
        raise UnsupportedEvent(f"{rule.name} gives no entity for {repository!r}")
    return entities
