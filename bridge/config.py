"""The receiver's configuration: the YAML file, validated, and routing an event to entities.

Pure except :func:`load_config`, which reads the file, and :func:`database_url_from`, which
reads the file ``BRIDGE_DATABASE_URL_FILE`` names. Every problem is a ``ConfigError`` naming
the dotted key (``routes[1].match.repostory``). Unknown keys are errors, so a typo never
silently does nothing; secrets are refused, they come only from the environment. An empty
value (``cortex:`` with nothing under it) means the default.

Routing (:func:`route`) goes in this order, and the first step that fails says why:

1. the event's source must be enabled (``sources.<source>.enabled``);
2. a ``workflow_run`` (GitHub) or ``pipeline`` (GitLab) is a deploy only when a ``workflows``
   rule matches it; the rule's ``environment`` supplies the environment (else the event's own,
   which these events do not have);
3. ``environments.rename`` maps the name (exact, applied once), then ``environments.exclude``
   and ``environments.include`` judge the renamed name, exclude winning. A deploy with no
   environment is judged as the empty name: only ``*`` includes it or excludes it;
4. entities: the ones the event names itself (a GitHub deployment's payload) are used as they
   are and the routes are not consulted, since the sender said exactly what it deployed; the
   steps above still apply. Otherwise the first matching route gives them.

Globs have :func:`fnmatch.fnmatchcase` semantics: ``*`` matches any run of characters,
``/`` included, so ``acme/*`` matches ``acme/payments-api`` and also the GitLab subgroup
project ``acme/backend/api`` (to pick one subgroup, write ``acme/backend/*``). Repository
globs ignore case, as GitHub and GitLab do for paths; environment and workflow globs do not.
A ``workflow`` glob is tried on the workflow's name, its file path and the file's name
(``Deploy*``, ``.github/workflows/deploy.yml``, ``deploy.yml``). GitLab pipelines carry
their name and path in the same ``details`` keys (``workflow``, ``workflowPath``).
"""

from __future__ import annotations

import enum
import os
import re
import string
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Any

import yaml

from bridge.errors import ConfigError, UnsupportedEvent
from bridge.model import DeployEvent

DEFAULT_CORTEX_URL = "https://api.getcortexapp.com"
# Cortex allows a client about 1000 requests/min (PRODUCT.md); the fleet keeps a tenth of it
# spare for the Action steps and people sharing the same account.
DEFAULT_REQUESTS_PER_MINUTE = 900
DEFAULT_DATABASE = "sqlite:///bridge.db"
DATABASE_VARIABLE, DATABASE_FILE_VARIABLE = "BRIDGE_DATABASE_URL", "BRIDGE_DATABASE_URL_FILE"
# GitHub caps webhook payloads at 25 MB and drops bigger ones (docs.github.com, "Webhook
# events and payloads"); nothing larger is a genuine delivery.
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024
SOURCES = ("github", "gitlab")
# Runs of a CI workflow: deploys only when a `workflows` rule says so.
WORKFLOW_EVENTS = frozenset({"workflow_run", "pipeline"})
TEMPLATE_FIELDS = ("repo", "owner", "repository")
# Where each secret lives instead, by the config section it was misplaced in.
SECRET_HOMES = {
    "sources.github": "GITHUB_WEBHOOK_SECRET",
    "sources.gitlab": "GITLAB_WEBHOOK_TOKEN",
    "cortex": "CORTEX_API_TOKEN",
}
ALL_SECRETS = "GITHUB_WEBHOOK_SECRET, GITLAB_WEBHOOK_TOKEN, CORTEX_API_TOKEN or BRIDGE_ADMIN_TOKEN"
# A key named like a secret: token, api_token, webhook_secret, password, api_key, ...
SECRET_KEY = re.compile(r"(^|[_-])(token|secret|password|passwd|api[_-]?key)$", re.IGNORECASE)
_NO_ENV: Mapping[str, str] = MappingProxyType({})


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

    def enabled(self, name: str) -> bool:
        """True when ``name`` is a known source and it is enabled."""
        settings = getattr(self, name, None) if name in SOURCES else None
        return isinstance(settings, SourceSettings) and settings.enabled


@dataclass(frozen=True)
class Match:
    """What a rule matches; a field left None matches anything."""

    repository: str | None = None  # glob, case-insensitive
    environment: str | None = None  # glob on the renamed environment
    source: str | None = None  # "github" or "gitlab", exact
    workflow: str | None = None  # glob on the workflow's name, path or file name


@dataclass(frozen=True)
class RouteRule:
    """``routes[i]``: events it matches are recorded on these entities (templates)."""

    name: str  # "routes[0]", or "default" for the built-in catch-all
    match: Match
    entities: tuple[str, ...]


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


@dataclass(frozen=True)
class DeliverySettings:
    """How the worker retries a stored event before it gives up on it."""

    dead_letter_after_seconds: float = 86400.0  # a day
    max_attempts: int = 0  # 0: unlimited until dead_letter_after_seconds
    lease_seconds: float = 60.0
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0


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


@dataclass(frozen=True)
class Route:
    """Where one event is recorded: the entities, the (renamed) environment, and why."""

    entities: tuple[str, ...]
    environment: str | None
    rule: str  # "routes[0]", "default", or "event" when the event named its entities


# --- Loading -----------------------------------------------------------------------------


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


# --- Validation --------------------------------------------------------------------------

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
    )
    _check_lease(config)
    return _apply_environ(config, environ)


def _apply_environ(config: Config, environ: Mapping[str, str]) -> Config:
    """CORTEX_API_URL and BRIDGE_DATABASE_URL (or BRIDGE_DATABASE_URL_FILE) win over the file."""
    url = environ.get("CORTEX_API_URL", "").strip()
    if url:
        config = replace(
            config, cortex=replace(config.cortex, url=_http_url(url, "CORTEX_API_URL"))
        )
    name, database = database_url_from(environ)
    if database:
        config = replace(config, database=_database_url(database, name))
    return config


def database_url_from(environ: Mapping[str, str]) -> tuple[str, str]:
    """(the variable the database URL came from, the URL); the URL is "" when none is set.

    A PostgreSQL URL carries a password, so it may come from a file (a Docker or Kubernetes
    secret) named by BRIDGE_DATABASE_URL_FILE, surrounding whitespace and the trailing
    newline dropped. Both set is an error, as in the official postgres image
    (POSTGRES_PASSWORD_FILE): which one was meant cannot be known, and a guess could open
    another database. An empty variable counts as unset.
    """
    value = environ.get(DATABASE_VARIABLE, "").strip()
    path = environ.get(DATABASE_FILE_VARIABLE, "").strip()
    if not path:
        return DATABASE_VARIABLE, value
    if value:
        raise ConfigError(
            DATABASE_FILE_VARIABLE,
            f"{DATABASE_VARIABLE} is set too: set only one (an empty one counts as unset)",
        )
    try:
        with open(path, encoding="utf-8") as file:
            value = file.read().strip()
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(DATABASE_FILE_VARIABLE, f"cannot read {path!r} ({reason})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(DATABASE_FILE_VARIABLE, f"{path!r} is not utf-8 text") from exc
    if not value:
        # Falling back to the default SQLite file would split the fleet across two databases.
        raise ConfigError(DATABASE_FILE_VARIABLE, f"{path!r} is empty")
    return DATABASE_FILE_VARIABLE, value


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
    if "source" in globs:
        _choice(globs["source"], f"{path}.source", SOURCES)
    return Match(**globs)


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


def _check_lease(config: Config) -> None:
    """A lease shorter than one Cortex call would let a second worker take a live delivery."""
    if config.delivery.lease_seconds <= config.cortex.timeout_seconds:
        raise ConfigError(
            "delivery.lease_seconds",
            f"must be longer than cortex.timeout_seconds ({config.cortex.timeout_seconds:g})",
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


# --- Typed values ------------------------------------------------------------------------


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _shown(value: Any) -> str:
    """The offending value for a message: scalars as repr, containers by kind."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    return repr(value)


def _mapping(value: Any, path: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
    """A mapping with string keys, all in ``allowed`` (None: any); None is empty.

    In a config section (``allowed`` given), a key with an empty value means its default.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        message = f"must be a mapping, got {_shown(value)}"
        raise ConfigError(path, message if path else f"the config {message}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(_join(path, key), f"keys must be strings, got {key!r}")
        if allowed is not None and key not in allowed:
            raise ConfigError(_join(path, key), _unknown_key(key, path, allowed))
    return {k: v for k, v in value.items() if v is not None or allowed is None}


def _unknown_key(key: str, path: str, allowed: tuple[str, ...]) -> str:
    """Why a key is refused: a secret in the wrong place, or a typo."""
    if SECRET_KEY.search(key):
        home = next((v for k, v in SECRET_HOMES.items() if path.startswith(k)), ALL_SECRETS)
        return f"secrets come only from the environment: set {home}"
    return f"unknown key (expected one of: {', '.join(allowed)})"


def _required(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise ConfigError(f"{path}.{key}", "is required")
    return data[key]


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list, got {_shown(value)}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_shown(value)}")
    if not value.strip():
        raise ConfigError(path, "must not be empty")
    return value


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of strings, got {_shown(value)}")
    return tuple(_string(item, f"{path}[{i}]") for i, item in enumerate(value))


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_shown(value)}")
    return value


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {_shown(value)}")
    return value


def _positive(value: Any, path: str) -> float:
    """A number of seconds, greater than zero."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"must be a number, got {_shown(value)}")
    if not value > 0 or value == float("inf"):
        raise ConfigError(path, f"must be a positive number, got {value!r}")
    return float(value)


def _choice(value: Any, path: str, choices: Any) -> str:
    """One of ``choices`` (strings, or a str enum)."""
    names = [getattr(choice, "value", choice) for choice in choices]
    if value not in names or not isinstance(value, str):
        expected = " or ".join(repr(name) for name in names)
        raise ConfigError(path, f"must be {expected}, got {_shown(value)}")
    return value


def _http_url(value: Any, path: str) -> str:
    url = _string(value, path).strip()
    if not re.fullmatch(r"https?://[^/\s?#]+(/\S*)?", url):
        raise ConfigError(path, f"must be an http(s) url, got {url!r}")
    return url.rstrip("/")


def _database_url(value: Any, path: str) -> str:
    """A SQLAlchemy URL the bridge can use; ``postgresql://`` means psycopg 3."""
    url = _string(value, path).strip()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    for prefix in ("sqlite:///", "postgresql+psycopg://"):
        if url.startswith(prefix) and len(url) > len(prefix):
            return url
    shown = redact_url(url)
    raise ConfigError(path, f"must be a sqlite:/// or postgresql:// url, got {shown!r}")


def redact_url(url: str) -> str:
    """The URL with any password (in the user info or a ``password=`` query) masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    tail = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", tail)
    return f"{scheme}{sep}{netloc}{tail}"


# --- Routing -----------------------------------------------------------------------------


def route(config: Config, event: DeployEvent) -> Route:
    """The entities and environment an event is recorded under, or UnsupportedEvent why not."""
    _check_source(config.sources, event.source)
    environment = event.environment
    if event.event in WORKFLOW_EVENTS:
        environment = _workflow_rule(config.workflows, event).environment or environment
    if environment is not None:
        environment = config.environments.rename.get(environment, environment)
    _check_environment(config.environments, environment)
    if event.entities:
        return Route(tuple(event.entities), environment, "event")
    for rule in config.routes:
        if _matches(rule.match, event, environment):
            return Route(_render(rule, event.repository), environment, rule.name)
    where = f"environment {environment!r}" if environment is not None else "with no environment"
    raise UnsupportedEvent(f"no route matches repository {event.repository!r} {where}")


def _check_source(sources: Sources, source: str) -> None:
    if source not in SOURCES:
        raise UnsupportedEvent(f"source {source!r} is not supported")
    if not sources.enabled(source):
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


def _render(rule: RouteRule, repository: str) -> tuple[str, ...]:
    """The rule's entity templates for one repository; empty results dropped, order kept."""
    owner, _, repo = repository.rpartition("/")
    names = (t.format(repo=repo, owner=owner, repository=repository) for t in rule.entities)
    entities = tuple(dict.fromkeys(name for name in names if name))
    if not entities:
        raise UnsupportedEvent(f"{rule.name} gives no entity for {repository!r}")
    return entities


# --- Describing --------------------------------------------------------------------------


def describe(config: Config) -> list[str]:
    """Human lines for ``check-config``: what the bridge does with this config."""
    cortex, record, delivery = config.cortex, config.record, config.delivery
    sources = ", ".join(
        f"{name} {'enabled' if config.sources.enabled(name) else 'disabled'}" for name in SOURCES
    )
    routes = [
        f"{rule.name}: {_describe_match(rule.match)} -> {', '.join(rule.entities)}"
        for rule in config.routes
    ] or ["routes: none (only events that name their own entities are recorded)"]
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
        f"server: max_body_bytes {config.server.max_body_bytes}",
        f"delivery: dead letter after {delivery.dead_letter_after_seconds:g}s, max attempts "
        f"{delivery.max_attempts or 'unlimited'}, lease {delivery.lease_seconds:g}s, backoff "
        f"{delivery.backoff_base_seconds:g}s to {delivery.backoff_max_seconds:g}s",
    ]


def _describe_match(match: Match) -> str:
    fields = ("repository", "environment", "workflow", "source")
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
