"""The ``http_sources:`` config section: any deployment-list API, described. Pure.

Each entry names where the list is (``url``), the bearer token's environment variable
(``token_env``; the token itself never comes from the file), how the list pages
(``pagination``), where the items are in an answer (``items``), which field holds what
(``fields``), how the API's status words map onto the bridge's lifecycle (``status``) and the
repository its deploys are routed as (``repository``). ``preset: <name>`` starts from one of
:data:`~bridge.config.http_presets.PRESETS` and the entry's own keys override it. Every problem
is a ConfigError naming the dotted key (``http_sources.spice.pagination.limit``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bridge.config.http_paths import ROOT, FieldPath, parse_path
from bridge.config.http_presets import PRESETS
from bridge.config.settings import DATABASE_VARIABLE, MOST_SETTING, SECRET_KEY, SOURCES
from bridge.config.values import (
    as_choice,
    as_integer,
    as_mapping,
    as_name,
    as_positive,
    as_string,
    http_url,
)
from bridge.errors import ConfigError
from bridge.model import MAX_REPOSITORY, Status
from bridge.secrets import ALL_SECRETS

PAGE, CURSOR, NEWEST_FIRST = "page", "cursor", "newest-first"
STYLES = (PAGE, CURSOR, NEWEST_FIRST)
# A status word mapped to this is known and deliberately not recorded (a reason is given).
SKIP = "skip"
# Bounds: a page holds at most MAX_PAGE_SIZE items, a read makes at most max_pages requests
# (a runaway cursor fails loudly instead of looping), and a page's body is read up to
# MAX_BODY_BYTES (http_source.py).
MAX_PAGE_SIZE = 1000
DEFAULT_MAX_PAGES = 1000
MAX_MAX_PAGES = 100_000
DEFAULT_TIMEOUT_SECONDS = 30.0

KEYS = (
    "preset",
    "url",
    "token_env",
    "pagination",
    "items",
    "fields",
    "status",
    "repository",
    "environment",
    "params",
    "timeout_seconds",
)
# The keys each pagination style takes, with their defaults.
PAGINATION_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    PAGE: {
        "page_param": "page",
        "size_param": "pageSize",
        "size": 100,
        "first_page": 1,
        "max_pages": DEFAULT_MAX_PAGES,
        "newest_first_by": None,
    },
    CURSOR: {
        "cursor_param": "after_id",
        "limit_param": "limit",
        "limit": 100,
        "has_more": "has_more",
        "next_cursor": "next_page",
        "max_pages": DEFAULT_MAX_PAGES,
        "newest_first_by": None,
    },
    NEWEST_FIRST: {"limit_param": "limit", "limit": 100},
}
REQUIRED_FIELDS = ("id", "status", "finished_at")
OPTIONAL_FIELDS = (
    "started_at",
    "sha",
    "environment",
    "url",
    "title",
    "deployer",
    "deployer_email",
)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Pagination:
    """How the list pages; ``size`` is the page size or limit asked for."""

    style: str
    size_param: str
    size: int
    max_pages: int = 1
    page_param: str = "page"  # page
    first_page: int = 1  # page
    cursor_param: str = "after_id"  # cursor
    has_more: FieldPath = ROOT  # cursor
    next_cursor: FieldPath = ROOT  # cursor
    # When set, the API lists items newest first by this field, and reading stops once a
    # page reaches items older than the window (with OVERLAP, http_source.py).
    newest_first_by: FieldPath | None = None


@dataclass(frozen=True)
class FieldPaths:
    """Where each field is in one item: paths tried in order, the first present wins."""

    id: tuple[FieldPath, ...]
    status: tuple[FieldPath, ...]
    finished_at: tuple[FieldPath, ...]
    started_at: tuple[FieldPath, ...] = ()
    sha: tuple[FieldPath, ...] = ()
    environment: tuple[FieldPath, ...] = ()
    url: tuple[FieldPath, ...] = ()
    title: tuple[FieldPath, ...] = ()
    deployer: tuple[FieldPath, ...] = ()
    deployer_email: tuple[FieldPath, ...] = ()


@dataclass(frozen=True)
class HttpSourceSpec:
    """One ``http_sources`` entry, validated, presets applied."""

    name: str
    url: str
    token_env: str
    pagination: Pagination
    items: FieldPath
    fields: FieldPaths
    # Lower-cased source word -> our status, or None for SKIP.
    status: Mapping[str, Status | None] = field(hash=False)
    repository: str
    environment: str | None = None  # used when the item names none
    params: Mapping[str, str] = field(default_factory=dict, hash=False)
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    preset: str | None = None


def parse_http_sources(raw: Any) -> dict[str, HttpSourceSpec]:
    """The ``http_sources`` section (None: empty), each entry validated with its preset."""
    section = as_mapping(raw, "http_sources", None)
    specs = {}
    for name, entry in section.items():
        path = f"http_sources.{name}"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                path, "a source name is lower-case letters, digits, '-' and '_' (at most 63)"
            )
        if name in SOURCES:
            raise ConfigError(path, f"{name!r} is the webhook source's name: choose another")
        specs[name] = _parse_entry(name, entry, path)
    return specs


def _parse_entry(name: str, entry: Any, path: str) -> HttpSourceSpec:
    data = _with_preset(_raw_mapping(entry, path, KEYS), path)
    url = http_url(_need(data, "url", path), f"{path}.url", query=True)
    parts = urlsplit(url)
    if parts.password or any(SECRET_KEY.search(key) for key, _ in parse_qsl(parts.query)):
        raise ConfigError(f"{path}.url", "secrets come only from the environment: use token_env")
    token_env = as_string(_need(data, "token_env", path), f"{path}.token_env").strip()
    if not _VARIABLE.fullmatch(token_env):
        raise ConfigError(
            f"{path}.token_env", f"must name an environment variable, got {token_env!r}"
        )
    # A token goes only to the origin it was made for: the bridge's own secrets (Cortex's
    # token, the webhooks', the admin's, the SCM readers') are never sent to a source's URL.
    # Upper-cased: Windows finds a variable whatever the case it is asked in.
    own = {*ALL_SECRETS, DATABASE_VARIABLE}
    if token_env.upper().removesuffix("_FILE") in own:
        raise ConfigError(
            f"{path}.token_env",
            f"{token_env} is the bridge's own secret, never sent to a source's url: "
            "give this source a variable of its own",
        )
    pagination = _parse_pagination(_need(data, "pagination", path), f"{path}.pagination")
    params = _parse_params(data.get("params"), f"{path}.params", pagination)
    environment = data.get("environment")
    return HttpSourceSpec(
        name=name,
        url=url,
        token_env=token_env,
        pagination=pagination,
        items=_items_path(data.get("items"), f"{path}.items"),
        fields=_parse_fields(_need(data, "fields", path), f"{path}.fields"),
        status=_parse_status(_need(data, "status", path), f"{path}.status"),
        repository=as_name(
            _need(data, "repository", path), f"{path}.repository", MAX_REPOSITORY, strip=True
        ),
        environment=None if environment is None else as_name(environment, f"{path}.environment"),
        params=params,
        timeout_seconds=as_positive(
            data.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS),
            f"{path}.timeout_seconds",
            MOST_SETTING["http_sources.*.timeout_seconds"],
        ),
        preset=data.get("preset"),
    )


def _raw_mapping(value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """Like the config's mappings, but a key set to null stays (null means "none" here)."""
    if isinstance(value, Mapping):
        for key in value:
            if isinstance(key, str) and key not in allowed and SECRET_KEY.search(key):
                raise ConfigError(
                    f"{path}.{key}",
                    "secrets come only from the environment: name the variable in token_env",
                )
    as_mapping(value, path, allowed)
    return dict(value or {})


def _need(data: Mapping[str, Any], key: str, path: str) -> Any:
    if data.get(key) is None:
        hint = f" (or a preset: {', '.join(PRESETS)})" if key not in ("url", "token_env") else ""
        raise ConfigError(f"{path}.{key}", f"is required{hint}")
    return data[key]


def _with_preset(data: dict[str, Any], path: str) -> dict[str, Any]:
    """The entry over its preset: top keys replace, mappings merge one level deep.

    A ``pagination`` of another style than the preset's replaces it whole, since the
    preset's parameters belong to its own style.
    """
    if data.get("preset") is None:
        return data
    preset = as_choice(data["preset"], f"{path}.preset", tuple(PRESETS))
    merged: dict[str, Any] = dict(PRESETS[preset])
    for key, value in data.items():
        base = merged.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            restyled = key == "pagination" and value.get("style", base["style"]) != base["style"]
            merged[key] = value if restyled else {**base, **value}
        else:
            merged[key] = value
    return merged


def _parse_pagination(value: Any, path: str) -> Pagination:
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a mapping with a style ({' or '.join(STYLES)})")
    style = as_choice(value.get("style"), f"{path}.style", STYLES)
    defaults = PAGINATION_DEFAULTS[style]
    data = {**defaults, **as_mapping(value, path, ("style", *defaults))}
    size_key = "size" if style == PAGE else "limit"
    size = as_integer(data[size_key], f"{path}.{size_key}")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ConfigError(f"{path}.{size_key}", f"must be 1 to {MAX_PAGE_SIZE}, got {size}")
    max_pages = as_integer(data.get("max_pages", 1), f"{path}.max_pages")
    if not 1 <= max_pages <= MAX_MAX_PAGES:
        raise ConfigError(f"{path}.max_pages", f"must be 1 to {MAX_MAX_PAGES}, got {max_pages}")
    names = {
        key: as_string(data[key], f"{path}.{key}").strip()
        for key in ("page_param", "size_param", "cursor_param", "limit_param")
        if key in data
    }
    if len(set(names.values())) < len(names):
        raise ConfigError(path, f"query parameter names must differ, got {sorted(names.values())}")
    sorted_by = data.get("newest_first_by")
    return Pagination(
        style=style,
        size_param=names.get("size_param") or names["limit_param"],
        size=size,
        max_pages=max_pages,
        page_param=names.get("page_param", "page"),
        first_page=_first_page(data.get("first_page", 1), f"{path}.first_page"),
        cursor_param=names.get("cursor_param", "after_id"),
        has_more=parse_path(data["has_more"], f"{path}.has_more") if "has_more" in data else ROOT,
        next_cursor=(
            parse_path(data["next_cursor"], f"{path}.next_cursor")
            if "next_cursor" in data
            else ROOT
        ),
        newest_first_by=(
            None if sorted_by is None else parse_path(sorted_by, f"{path}.newest_first_by")
        ),
    )


def _first_page(value: Any, path: str) -> int:
    number = as_integer(value, path)
    if number not in (0, 1):
        raise ConfigError(path, f"must be 0 or 1, got {number}")
    return number


def _items_path(value: Any, path: str) -> FieldPath:
    """Where the list is; none (or "") means the answer itself is the list."""
    if value is None or value == "":
        return ROOT
    return parse_path(value, path)


def _parse_fields(value: Any, path: str) -> FieldPaths:
    data = _raw_mapping(value, path, REQUIRED_FIELDS + OPTIONAL_FIELDS)
    for key in REQUIRED_FIELDS:
        if data.get(key) is None:
            raise ConfigError(f"{path}.{key}", "is required")
    paths = {key: _paths(data.get(key), f"{path}.{key}") for key in data}
    return FieldPaths(**paths)


def _paths(value: Any, path: str) -> tuple[FieldPath, ...]:
    """A path, a list of paths tried in order, or null (the field is not known)."""
    if value is None:
        return ()
    if isinstance(value, list):
        if not value:
            raise ConfigError(path, "must list at least one path (or be null)")
        return tuple(parse_path(item, f"{path}[{i}]") for i, item in enumerate(value))
    return (parse_path(value, path),)


def _parse_status(value: Any, path: str) -> Mapping[str, Status | None]:
    data = as_mapping(value, path, None)
    choices = (*(status.value for status in Status), SKIP)
    table: dict[str, Status | None] = {}
    for word, target in data.items():
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"{path}.{word}", "a status word must be a non-empty string")
        if target is None:
            continue  # removed from a preset's table: the word is unmapped again
        chosen = as_choice(target, f"{path}.{word}", choices)
        table[word.strip().lower()] = None if chosen == SKIP else Status(chosen)
    if not any(status is not None for status in table.values()):
        raise ConfigError(path, "must map at least one status word onto " + ", ".join(choices[:-1]))
    return MappingProxyType(table)


def _parse_params(value: Any, path: str, pagination: Pagination) -> Mapping[str, str]:
    """Fixed query parameters (filters such as an app id); never a paging one or a secret."""
    data = as_mapping(value, path, None)
    taken = {pagination.size_param, pagination.page_param, pagination.cursor_param}
    params = {}
    for key, item in data.items():
        where = f"{path}.{key}"
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(where, "a query parameter name must be a non-empty string")
        if SECRET_KEY.search(key):
            raise ConfigError(where, "secrets come only from the environment: use token_env")
        if key in taken and (pagination.style != NEWEST_FIRST or key == pagination.size_param):
            raise ConfigError(where, "is a paging parameter: set it under pagination")
        if isinstance(item, bool):
            params[key] = "true" if item else "false"
        elif isinstance(item, (str, int)) and str(item).strip():
            params[key] = str(item).strip()
        else:
            raise ConfigError(where, f"must be a string, a number or true/false, got {item!r}")
    return MappingProxyType(params)
