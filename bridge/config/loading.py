"""Reading the YAML file and validating it, section by section, into a :class:`Config`."""

from __future__ import annotations

import os
import string
from collections.abc import Hashable, Mapping
from types import MappingProxyType
from typing import Any

import yaml

from bridge.config.environ import _apply_environ
from bridge.config.http_sources import parse_http_sources
from bridge.config.settings import (
    DEFAULT_CORTEX_URL,
    DEFAULT_DATABASE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_ROUTE,
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
    _bool,
    _choice,
    _database_url,
    _http_url,
    _integer,
    _list,
    _mapping,
    _positive,
    _required,
    _string,
    _strings,
)
from bridge.errors import ConfigError

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
            if isinstance(key, Hashable) and key in seen:
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
    try:
        with open(name, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise ConfigError(name, f"cannot read the config file: {reason}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(name, "cannot read the config file: not utf-8 text") from exc
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise _yaml_error(name, exc) from exc
    finally:
        loader.dispose()
    return parse_config(data, environ=environ)


def _yaml_error(name: str, exc: yaml.YAMLError) -> ConfigError:
    """A ConfigError naming the file and line of a YAML syntax error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark else name
        return ConfigError(where, f"invalid yaml: {exc.problem or exc.context}")
    return ConfigError(name, f"invalid yaml: {exc}")


TOP_KEYS = tuple(Config.__dataclass_fields__)


def parse_config(data: Any, *, environ: Mapping[str, str] = _NO_ENV) -> Config:
    """Validate a loaded YAML document (None: empty) and apply the environment overrides."""
    top = _mapping(data, "", TOP_KEYS)
    record = _mapping(top.get("record"), "record", ("mode", "failures"))
    rollback = _mapping(top.get("rollback"), "rollback", ("detect",))
    config = Config(
        cortex=_parse_cortex(top.get("cortex")),
        database=_database_url(top.get("database", DEFAULT_DATABASE), "database"),
        sources=_parse_sources(top.get("sources")),
        routes=_parse_routes(top.get("routes")),
        environments=_parse_environments(top.get("environments")),
        workflows=_parse_workflows(top.get("workflows")),
        record=RecordSettings(
            mode=RecordMode(_choice(record.get("mode", "final"), "record.mode", RecordMode)),
            failures=_bool(record.get("failures", False), "record.failures"),
        ),
        rollback=RollbackSettings(detect=_bool(rollback.get("detect", True), "rollback.detect")),
        server=_parse_server(top.get("server")),
        delivery=_parse_delivery(top.get("delivery")),
        sync=_parse_sync(top.get("sync")),
        http_sources=parse_http_sources(top.get("http_sources")),
    )
    _check_lease(config)
    _check_source_names(config)
    return _apply_environ(config, environ)


def _parse_cortex(value: Any) -> CortexSettings:
    data = _mapping(value, "cortex", tuple(CortexSettings.__dataclass_fields__))
    per_minute = _integer(
        data.get("requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE), "cortex.requests_per_minute"
    )
    if per_minute < 0:
        raise ConfigError(
            "cortex.requests_per_minute", f"must be 0 (no limit) or more, got {per_minute}"
        )
    return CortexSettings(
        url=_http_url(data.get("url", DEFAULT_CORTEX_URL), "cortex.url"),
        timeout_seconds=_positive(data.get("timeout_seconds", 10), "cortex.timeout_seconds"),
        requests_per_minute=per_minute,
    )


def _parse_sources(value: Any) -> Sources:
    data = _mapping(value, "sources", SOURCES)
    settings = {}
    for name in SOURCES:
        source = _mapping(data.get(name), f"sources.{name}", ("enabled",))
        enabled = _bool(source.get("enabled", True), f"sources.{name}.enabled")
        settings[name] = SourceSettings(enabled=enabled)
    return Sources(**settings)


def _parse_routes(value: Any) -> tuple[RouteRule, ...]:
    """The routes; with no ``routes`` key, the one default route (every repo to ``{repo}``)."""
    if value is None:
        return (DEFAULT_ROUTE,)
    return tuple(
        _parse_route(item, f"routes[{i}]") for i, item in enumerate(_list(value, "routes"))
    )


def _parse_route(value: Any, path: str) -> RouteRule:
    data = _mapping(value, path, ("match", "entities"))
    match = _parse_match(_required(data, "match", path), f"{path}.match", route=True)
    entities = _strings(_required(data, "entities", path), f"{path}.entities")
    if not entities:
        raise ConfigError(f"{path}.entities", "must list at least one entity")
    for j, template in enumerate(entities):
        _check_template(template, f"{path}.entities[{j}]")
    return RouteRule(path, match, entities)


def _parse_workflows(value: Any) -> tuple[WorkflowRule, ...]:
    rules = []
    for i, item in enumerate(_list(value, "workflows")):
        path = f"workflows[{i}]"
        data = _mapping(item, path, ("match", "environment"))
        match = _parse_match(_required(data, "match", path), f"{path}.match", route=False)
        environment = data.get("environment")
        if "environment" in data:
            environment = _string(environment, f"{path}.environment")
        rules.append(WorkflowRule(path, match, environment))
    return tuple(rules)


def _parse_match(value: Any, path: str, *, route: bool) -> Match:
    """A ``match`` mapping: routes match on environment, workflow rules on workflow."""
    keys = (
        ("repository", "environment", "source") if route else ("repository", "workflow", "source")
    )
    data = _mapping(value, path, keys)
    globs = {key: _string(item, f"{path}.{key}") for key, item in data.items()}
    return Match(**globs)  # a source's name is checked by _check_source_names


def _parse_environments(value: Any) -> Environments:
    data = _mapping(value, "environments", ("include", "exclude", "rename"))
    include = _strings(data.get("include", ["*"]), "environments.include")
    if not include:
        raise ConfigError("environments.include", "must list at least one glob ('*': all)")
    rename = {}
    for key, target in _mapping(data.get("rename"), "environments.rename", None).items():
        rename[key] = _string(target, f"environments.rename.{key}")
    return Environments(
        include=include,
        exclude=_strings(data.get("exclude", []), "environments.exclude"),
        rename=rename,
    )


def _parse_server(value: Any) -> ServerSettings:
    data = _mapping(value, "server", ("max_body_bytes",))
    limit = _integer(data.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES), "server.max_body_bytes")
    if limit < 1:
        raise ConfigError("server.max_body_bytes", f"must be at least 1, got {limit!r}")
    return ServerSettings(max_body_bytes=limit)


def _parse_delivery(value: Any) -> DeliverySettings:
    keys = tuple(DeliverySettings.__dataclass_fields__)
    data = _mapping(value, "delivery", keys)
    defaults = DeliverySettings()
    attempts = _integer(data.get("max_attempts", 0), "delivery.max_attempts")
    if attempts < 0:
        raise ConfigError("delivery.max_attempts", f"must be 0 (unlimited) or more, got {attempts}")
    seconds = {
        key: _positive(data.get(key, getattr(defaults, key)), f"delivery.{key}")
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
    data = _mapping(value, "sync", tuple(SyncSettings.__dataclass_fields__))
    defaults = SyncSettings()
    github = _strings(data.get("github", []), "sync.github")
    for i, repository in enumerate(github):
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ConfigError(
                f"sync.github[{i}]", f"expected OWNER/REPO or OWNER/*, got {repository!r}"
            )
    gitlab = _strings(data.get("gitlab", []), "sync.gitlab")
    for i, path in enumerate(gitlab):
        if not path.strip("/") or "//" in path:
            raise ConfigError(f"sync.gitlab[{i}]", f"expected GROUP or GROUP/PROJECT, got {path!r}")
    return SyncSettings(
        interval_minutes=_positive(
            data.get("interval_minutes", defaults.interval_minutes), "sync.interval_minutes"
        ),
        look_back_hours=_positive(
            data.get("look_back_hours", defaults.look_back_hours), "sync.look_back_hours"
        ),
        github=github,
        gitlab=gitlab,
        http=_strings(data.get("http", []), "sync.http"),
    )


def _check_lease(config: Config) -> None:
    """A lease shorter than one Cortex call would let a second worker take a live delivery."""
    if config.delivery.lease_seconds <= config.cortex.timeout_seconds:
        raise ConfigError(
            "delivery.lease_seconds",
            f"must be longer than cortex.timeout_seconds ({config.cortex.timeout_seconds:g})",
        )


def _check_source_names(config: Config) -> None:
    """Rules and ``sync.http`` name only sources that exist: webhook ones or http_sources."""
    matches = [(rule.name, rule.match) for rule in config.routes]
    matches += [(rule.name, rule.match) for rule in config.workflows]
    for name, match in matches:
        if match.source is not None:
            _choice(match.source, f"{name}.match.source", config.source_names)
    for i, name in enumerate(config.sync.http):
        if name not in config.http_sources:
            known = ", ".join(config.http_sources) or "none"
            raise ConfigError(
                f"sync.http[{i}]", f"no http_sources entry named {name!r} (configured: {known})"
            )


def _check_template(template: str, path: str) -> None:
    """Entity templates may use only {repo}, {owner} and {repository}."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(path, f"unbalanced braces in {template!r}") from exc
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ConfigError(
                path,
                f"unknown placeholder in {template!r} (expected one of: {{repo}}, {{owner}}, "
                "{repository})",
            )
