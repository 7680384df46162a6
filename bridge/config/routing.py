"""Routing an event to its entities and environment (the order is in :mod:`bridge.config`)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from bridge.config.settings import (
    DEFAULT_ROUTE,
    GITOPS_SOURCES,
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
    if event.source not in config.recorded_sources:
        _check_source(config, event.source)
    environments = config.environments
    environment = event.environment
    if event.event in WORKFLOW_EVENTS:
        environment = _workflow_rule(config.workflows, event).environment or environment
    if environment is not None:
        # environments.rename, applied once, exactly.
        environment = environments.rename.get(environment, environment)
        if not environments.everything:
            _check_environment(environments, environment)
    for rule in config.routes:
        if not rule.match.anything and not _matches(rule.match, event, environment):
            continue
        # An event with no environment of its own (a GitOps object without the label) takes
        # the route's, renamed and judged as an event's own would be.
        where = environment
        if where is None and rule.environment is not None:
            where = environments.rename.get(rule.environment, rule.environment)
        if not environments.everything:
            _check_environment(environments, where)
        if event.entities:
            allowed = _allowed(rule, event)
            return Route(allowed, where, f"{rule.name}.payload_entities")
        # The rule's entity templates for this event; empty results dropped, order kept.
        owner, _, repo = event.repository.rpartition("/")
        names = {
            "repo": repo,
            "owner": owner,
            "repository": event.repository,
            "name": repo,
            "namespace": owner,
            "project": _project(event) or "",
        }
        entities = tuple(dict.fromkeys(n for n in (t.format(**names) for t in rule.entities) if n))
        if not entities:
            raise UnsupportedEvent(f"{rule.name} gives no entity for {event.repository!r}")
        return Route(entities, where, rule.name)
    if environment is None:
        _check_environment(config.environments, None)
    where = f"environment {environment!r}" if environment is not None else "with no environment"
    what = "object" if event.source in GITOPS_SOURCES else "repository"
    raise UnsupportedEvent(f"no route matches {what} {event.repository!r} {where}")


def _check_source(config: Config, source: str) -> None:
    """Why a source records nothing: not a webhook source nor a configured http source (read
    only by sync), or a webhook source that is disabled."""
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
    """Every field the rule sets matches the event.

    A GitOps event (Flux, Argo CD) names a cluster object, not a repository: ``repository``
    globs never match it, and ``object`` and ``project`` globs match nothing else.
    """
    if match.source is not None and match.source != event.source:
        return False
    gitops = event.source in GITOPS_SOURCES
    if match.repository is not None and (
        gitops or not fnmatchcase(event.repository.casefold(), match.repository.casefold())
    ):
        return False
    if match.object is not None and (not gitops or not fnmatchcase(event.repository, match.object)):
        return False
    if match.project is not None:
        project = _project(event)
        if project is None or not fnmatchcase(project, match.project):
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


def _allowed(rule: RouteRule, event: DeployEvent) -> tuple[str, ...]:
    """The entities the event itself names, when every one is allowed by the route.

    A GitHub deployment names them in its payload (payload.cortex.entities); a GitOps object
    in an annotation or label, which ``details["entitiesFrom"]`` names.
    """
    where = "the default route" if rule is DEFAULT_ROUTE else rule.name
    named_in = event.details.get("entitiesFrom")
    if isinstance(named_in, str):
        names, named_by = f"the {named_in} names entities", f"the {named_in}"
    else:
        names = "the deployment's payload names entities (payload.cortex.entities)"
        named_by = "the deployment's payload"
    if not rule.payload_entities:
        raise UnsupportedEvent(f"{names} and {where} allows none (its payload_entities)")
    for tag in event.entities:
        if not any(fnmatchcase(tag, glob) for glob in rule.payload_entities):
            shown = tag if len(tag) <= 60 else tag[:57] + "..."
            raise UnsupportedEvent(
                f"entity {shown!r} named by {named_by} is not allowed by "
                f"{rule.name}.payload_entities"
            )
    return event.entities


def _project(event: DeployEvent) -> str | None:
    """An Argo CD Application's project (None for every other source)."""
    project = event.details.get("project") if event.source == "argocd" else None
    return project if isinstance(project, str) else None
