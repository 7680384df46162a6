"""Reading the YAML file and validating it, section by section, into a :class:`Config`."""

from __future__ import annotations

import os
import string
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

import yaml

from bridge.config.environ import apply_environ, read_regular
from bridge.config.http_sources import parse_http_sources
from bridge.config.settings import (
    DEFAULT_CORTEX_URL,
    DEFAULT_DATABASE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ENTITIES,
    DEFAULT_MAX_UNVERIFIED_BYTES,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_ROUTE,
    GITOPS_SOURCES,
    MOST_BODY_BYTES,
    MOST_ENTITIES,
    MOST_SETTING,
    MOST_UNVERIFIED_BYTES,
    SOURCES,
    TEMPLATE_FIELDS,
    Config,
    CortexSettings,
    DeliverySettings,
    Environments,
    Match,
    RecordMode,
    RecordSettings,
    RollbackSettings,
    RouteRule,
    ServerSettings,
    Sources,
    SourceSettings,
    SyncSettings,
    WorkflowRule,
)
from bridge.config.values import (
    as_bool,
    as_choice,
    as_database_url,
    as_integer,
    as_list,
    as_mapping,
    as_name,
    as_positive,
    as_required,
    as_string,
    as_strings,
    http_url,
)
from bridge.errors import ConfigError
from bridge.model import character_problem, entity_problem
from bridge.urls import scm_name_problem

_NO_ENV: Mapping[str, str] = MappingProxyType({})


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (the last would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """The mapping, after checking that no key appears twice in it."""
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # `? [a]`: a list or a mapping as a key
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a key must be a name, not a {type(key).__name__}",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Config:
    """The config from a YAML file (None: no file, the defaults), with environment overrides."""
    if path is None:
        return parse_config(None, environ=environ)
    name = os.fspath(path)
    if not name.strip():
        raise ConfigError("config", "the config file's path is empty")
    text = _read_text(name)
    try:
        # The loader's constructor already reads, and refuses NUL and other control bytes.
        loader = _StrictLoader(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(name, exc, text) from None
    except RecursionError:
        raise ConfigError(name, "invalid yaml: nested too deeply") from None
    return parse_config(data, environ=environ)


# A config file is a page or two; a path to something else (a log, /dev/zero, a pipe) is
# refused before it is read whole.
MAX_CONFIG_BYTES = 1024 * 1024


def _read_text(name: str) -> str:
    """The config file's text: a regular file of UTF-8 text, at most MAX_CONFIG_BYTES."""
    try:
        data = read_regular(name, MAX_CONFIG_BYTES)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(name, f"cannot read the config file: {reason}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(name, f"the config file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "cannot read the config file: not utf-8 text") from exc


def _yaml_error(name: str, exc: yaml.YAMLError, text: str) -> ConfigError:
    """A one-line ConfigError naming the file and line of a YAML error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark else name
        return ConfigError(where, f"invalid yaml: {exc.problem or exc.context}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return ConfigError(
            f"{name}:{line}",
            f"invalid yaml: character #x{exc.character:04x} is not allowed in a config file",
        )
    return ConfigError(name, "invalid yaml: " + " ".join(str(exc).split()))


TOP_KEYS = tuple(Config.__dataclass_fields__)


def parse_config(data: Any, *, environ: Mapping[str, str] = _NO_ENV) -> Config:
    """Validate a loaded YAML document (None: empty) and apply the environment overrides."""
    top = as_mapping(data, "", TOP_KEYS)
    record = as_mapping(top.get("record"), "record", ("mode", "failures"))
    rollback = as_mapping(top.get("rollback"), "rollback", ("detect",))
    config = Config(
        cortex=_parse_cortex(top.get("cortex")),
        database=as_database_url(top.get("database", DEFAULT_DATABASE), "database"),
        sources=_parse_sources(top.get("sources")),
        routes=_parse_routes(top.get("routes")),
        environments=_parse_environments(top.get("environments")),
        workflows=_parse_workflows(top.get("workflows")),
        record=RecordSettings(
            mode=RecordMode(as_choice(record.get("mode", "final"), "record.mode", RecordMode)),
            failures=as_bool(record.get("failures", False), "record.failures"),
        ),
        rollback=RollbackSettings(detect=as_bool(rollback.get("detect", True), "rollback.detect")),
        server=_parse_server(top.get("server")),
        delivery=_parse_delivery(top.get("delivery")),
        sync=_parse_sync(top.get("sync")),
        http_sources=parse_http_sources(top.get("http_sources")),
    )
    _check_lease(config)
    _check_route_sizes(config)
    _check_source_names(config)
    return apply_environ(config, environ)


def _parse_cortex(value: Any) -> CortexSettings:
    data = as_mapping(value, "cortex", tuple(CortexSettings.__dataclass_fields__))
    per_minute = as_integer(
        data.get("requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE), "cortex.requests_per_minute"
    )
    if per_minute < 0:
        raise ConfigError(
            "cortex.requests_per_minute", f"must be 0 (no limit) or more, got {per_minute}"
        )
    return CortexSettings(
        url=http_url(data.get("url", DEFAULT_CORTEX_URL), "cortex.url"),
        timeout_seconds=as_positive(
            data.get("timeout_seconds", 10),
            "cortex.timeout_seconds",
            MOST_SETTING["cortex.timeout_seconds"],
        ),
        requests_per_minute=per_minute,
    )


def _parse_sources(value: Any) -> Sources:
    data = as_mapping(value, "sources", SOURCES)
    defaults = Sources()
    settings = {}
    for name in SOURCES:
        source = as_mapping(data.get(name), f"sources.{name}", ("enabled",))
        default = defaults.enabled(name)  # the SCMs on, the GitOps controllers off
        enabled = as_bool(source.get("enabled", default), f"sources.{name}.enabled")
        settings[name] = SourceSettings(enabled=enabled)
    return Sources(**settings)


def _parse_routes(value: Any) -> tuple[RouteRule, ...]:
    """The routes; with no ``routes`` key, the one default route (every repo to ``{repo}``)."""
    if value is None:
        return (DEFAULT_ROUTE,)
    return tuple(
        _parse_route(item, f"routes[{i}]") for i, item in enumerate(as_list(value, "routes"))
    )


def _parse_route(value: Any, path: str) -> RouteRule:
    data = as_mapping(value, path, ("match", "entities", "payload_entities", "environment"))
    match = _parse_match(as_required(data, "match", path), f"{path}.match", route=True)
    entities = as_strings(as_required(data, "entities", path), f"{path}.entities")
    if not entities:
        raise ConfigError(f"{path}.entities", "must list at least one entity")
    for j, template in enumerate(entities):
        _check_template(template, f"{path}.entities[{j}]")
        if "{project}" in template and match.source not in (None, "argocd"):
            raise ConfigError(
                f"{path}.entities[{j}]",
                f"{{project}} is an Argo CD Application's: {match.source} events have none",
            )
    globs = as_strings(data.get("payload_entities", []), f"{path}.payload_entities")
    environment = data.get("environment")
    if environment is not None:
        environment = as_name(environment, f"{path}.environment")
    return RouteRule(path, match, entities, payload_entities=globs, environment=environment)


def _parse_workflows(value: Any) -> tuple[WorkflowRule, ...]:
    rules = []
    for i, item in enumerate(as_list(value, "workflows")):
        path = f"workflows[{i}]"
        data = as_mapping(item, path, ("match", "environment"))
        match = _parse_match(as_required(data, "match", path), f"{path}.match", route=False)
        environment = data.get("environment")
        if "environment" in data:
            environment = as_name(environment, f"{path}.environment")
        rules.append(WorkflowRule(path, match, environment))
    return tuple(rules)


def _parse_match(value: Any, path: str, *, route: bool) -> Match:
    """A ``match`` mapping: routes match on environment, workflow rules on workflow."""
    keys = (
        ("repository", "environment", "source", "object", "project")
        if route
        else ("repository", "workflow", "source")
    )
    data = as_mapping(value, path, keys)
    globs = {key: as_string(item, f"{path}.{key}") for key, item in data.items()}
    match = Match(**globs)  # a source's name is checked by _check_source_names
    _never_matches(match, path)
    return match


def _never_matches(match: Match, path: str) -> None:
    """ConfigError naming the key when no event can match: a rule that silently routes
    nothing is a mistake. ``repository`` is a repository's (GitHub, GitLab, an http source);
    ``object`` a GitOps object's (Flux, Argo CD); ``project`` an Argo CD Application's."""
    gitops = match.source in GITOPS_SOURCES
    if match.repository is not None and (match.object is not None or match.project is not None):
        other = "object" if match.object is not None else "project"
        why = "a repository is no GitOps object: no event has both"
        raise ConfigError(f"{path}.{other}", f"{why} (match one or the other)")
    if gitops and match.repository is not None:
        raise ConfigError(
            f"{path}.repository",
            f"{match.source} events name a cluster object, not a repository: match object",
        )
    if match.source is not None and match.object is not None and not gitops:
        raise ConfigError(
            f"{path}.object", f"{match.source} events name a repository: match repository"
        )
    if match.source is not None and match.project is not None and match.source != "argocd":
        raise ConfigError(f"{path}.project", "only Argo CD events have a project")


def _parse_environments(value: Any) -> Environments:
    data = as_mapping(value, "environments", ("include", "exclude", "rename"))
    include = as_strings(data.get("include", ["*"]), "environments.include")
    if not include:
        raise ConfigError("environments.include", "must list at least one glob ('*': all)")
    rename = {}
    for key, target in as_mapping(data.get("rename"), "environments.rename", None).items():
        rename[key] = as_name(target, f"environments.rename.{key}")
    return Environments(
        include=include,
        exclude=as_strings(data.get("exclude", []), "environments.exclude"),
        rename=rename,
    )


def _parse_server(value: Any) -> ServerSettings:
    data = as_mapping(value, "server", tuple(ServerSettings.__dataclass_fields__))

    def within(key: str, default: int, most: int) -> int:
        number = as_integer(data.get(key, default), f"server.{key}")
        if not 1 <= number <= most:
            raise ConfigError(f"server.{key}", f"must be from 1 to {most:,}, got {number!r}")
        return number

    return ServerSettings(
        max_body_bytes=within("max_body_bytes", DEFAULT_MAX_BODY_BYTES, MOST_BODY_BYTES),
        max_entities_per_event=within(
            "max_entities_per_event", DEFAULT_MAX_ENTITIES, MOST_ENTITIES
        ),
        max_unverified_bytes=within(
            "max_unverified_bytes", DEFAULT_MAX_UNVERIFIED_BYTES, MOST_UNVERIFIED_BYTES
        ),
    )


def _parse_delivery(value: Any) -> DeliverySettings:
    keys = tuple(DeliverySettings.__dataclass_fields__)
    data = as_mapping(value, "delivery", keys)
    defaults = DeliverySettings()
    attempts = as_integer(data.get("max_attempts", 0), "delivery.max_attempts")
    if attempts < 0:
        raise ConfigError("delivery.max_attempts", f"must be 0 (unlimited) or more, got {attempts}")
    seconds = {
        key: as_positive(
            data.get(key, getattr(defaults, key)),
            f"delivery.{key}",
            MOST_SETTING[f"delivery.{key}"],
        )
        for key in keys
        if key != "max_attempts"
    }
    settings = DeliverySettings(max_attempts=attempts, **seconds)
    if settings.backoff_max_seconds < settings.backoff_base_seconds:
        raise ConfigError(
            "delivery.backoff_max_seconds",
            f"must be at least backoff_base_seconds, got {settings.backoff_max_seconds:g}",
        )
    return settings


def _parse_sync(value: Any) -> SyncSettings:
    """``sync:``: what the relay reconciles, how often, and how far back."""
    data = as_mapping(value, "sync", tuple(SyncSettings.__dataclass_fields__))
    defaults = SyncSettings()
    github = as_strings(data.get("github", []), "sync.github")
    for i, repository in enumerate(github):  # the rule sync's flags are checked by
        problem = scm_name_problem(repository, "github-repository")
        if problem is not None:
            raise ConfigError(f"sync.github[{i}]", problem)
    gitlab = as_strings(data.get("gitlab", []), "sync.gitlab")
    for i, path in enumerate(gitlab):
        problem = scm_name_problem(path.removesuffix("/*"), "gitlab-group")
        if problem is not None or "//" in path:
            raise ConfigError(f"sync.gitlab[{i}]", f"expected GROUP or GROUP/PROJECT, got {path!r}")
    return SyncSettings(
        interval_minutes=as_positive(
            data.get("interval_minutes", defaults.interval_minutes),
            "sync.interval_minutes",
            MOST_SETTING["sync.interval_minutes"],
        ),
        look_back_hours=as_positive(
            data.get("look_back_hours", defaults.look_back_hours),
            "sync.look_back_hours",
            MOST_SETTING["sync.look_back_hours"],
        ),
        github=github,
        gitlab=gitlab,
        http=as_strings(data.get("http", []), "sync.http"),
        argocd=tuple(
            http_url(url, f"sync.argocd[{i}]")
            for i, url in enumerate(as_strings(data.get("argocd", []), "sync.argocd"))
        ),
    )


def _check_lease(config: Config) -> None:
    """A lease shorter than one Cortex call would let a second worker take a live delivery."""
    if config.delivery.lease_seconds <= config.cortex.timeout_seconds:
        raise ConfigError(
            "delivery.lease_seconds",
            f"must be longer than cortex.timeout_seconds ({config.cortex.timeout_seconds:g})",
        )


def _check_route_sizes(config: Config) -> None:
    """A route may not give more entities than one event may be recorded on."""
    limit = config.server.max_entities_per_event
    for rule in config.routes:
        if len(rule.entities) > limit:
            raise ConfigError(
                f"{rule.name}.entities",
                f"lists {len(rule.entities)} entities, more than "
                f"server.max_entities_per_event ({limit})",
            )


def _check_source_names(config: Config) -> None:
    """Rules and ``sync.http`` name only sources that exist: webhook ones or http_sources."""
    matches = [(rule.name, rule.match) for rule in config.routes]
    matches += [(rule.name, rule.match) for rule in config.workflows]
    for name, match in matches:
        if match.source is not None:
            as_choice(match.source, f"{name}.match.source", config.source_names)
    for i, name in enumerate(config.sync.http):
        if name not in config.http_sources:
            known = ", ".join(config.http_sources) or "none"
            raise ConfigError(
                f"sync.http[{i}]", f"no http_sources entry named {name!r} (configured: {known})"
            )


def _check_template(template: str, path: str) -> None:
    """Entity templates may use only the TEMPLATE_FIELDS ({repo}, {owner}, {name}, ...); and
    the model's rule for an entity holds of the template's own text: a tag every event the
    route matches would be refused for (a 400 GitHub does not retry) is refused here."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(path, f"unbalanced braces in {template!r}") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            known = ", ".join(f"{{{field}}}" for field in TEMPLATE_FIELDS)
            raise ConfigError(
                path, f"unknown placeholder in {template!r} (expected one of: {known})"
            )
    literal = "".join(text for text, *_ in parts)
    if literal == template:  # no placeholder: the tag itself
        problem = entity_problem(template)
    else:
        character = character_problem(literal)
        problem = None if character is None else f"holds {character}"
    if problem is not None:
        raise ConfigError(path, f"{template[:60]!r} {problem}")
