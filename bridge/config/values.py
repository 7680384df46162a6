"""Typed values of the config file: each checks one value and names its dotted key on error.

A URL shown in an error is masked by :func:`bridge.redact.redact_url`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.config.settings import ALL_SECRETS, SECRET_HOMES, SECRET_KEY
from bridge.errors import ConfigError
from bridge.model import MAX_NAME, environment_problem
from bridge.redact import redact_url
from bridge.urls import PSYCOPG_SCHEME, base_url_problem, port_problem, psycopg_url


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _shown(value: Any) -> str:
    """The offending value for a message: scalars as repr, containers by kind."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple, set)):
        return "a list"
    return repr(value)


def as_mapping(value: Any, path: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
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


def as_required(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise ConfigError(f"{path}.{key}", "is required")
    return data[key]


def as_list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list, got {_shown(value)}")
    return value


def as_string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(path, f"must be a string, got {_shown(value)}")
    if not value.strip():
        raise ConfigError(path, "must not be empty")
    return value


def as_strings(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(path, f"must be a list of strings, got {_shown(value)}")
    return tuple(as_string(item, f"{path}[{i}]") for i, item in enumerate(value))


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"must be true or false, got {_shown(value)}")
    return value


def as_integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(path, f"must be an integer, got {_shown(value)}")
    return value


def as_positive(value: Any, path: str, most: float) -> float:
    """A number (of seconds, minutes, hours) greater than zero, at most ``most``: past it the
    date arithmetic it takes part in overflows (a crashed reconcile, a worker that never
    delivers) long before it could mean anything."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"must be a number, got {_shown(value)}")
    if not 0 < value <= most:  # nan and inf too
        raise ConfigError(path, f"must be a positive number, at most {most:,.0f}: got {value!r}")
    return float(value)


def as_name(value: Any, path: str, most: int = MAX_NAME, *, strip: bool = False) -> str:
    """A name the config gives every event it applies to (an environment; with ``most``
    MAX_REPOSITORY, a repository), by the model's rule for an event's: a value every such
    event would be refused for is refused here, naming the key."""
    name = as_string(value, path)
    name = name.strip() if strip else name
    problem = environment_problem(name, most)
    if problem is not None:
        raise ConfigError(path, f"{name[:60]!r} {problem}")
    return name


def as_choice(value: Any, path: str, choices: Any) -> str:
    """One of ``choices`` (strings, or a str enum)."""
    names = [getattr(choice, "value", choice) for choice in choices]
    if value not in names or not isinstance(value, str):
        expected = " or ".join(repr(name) for name in names)
        raise ConfigError(path, f"must be {expected}, got {_shown(value)}")
    return value


def http_url(value: Any, path: str, *, query: bool = False) -> str:
    """An http(s) base URL a token may be sent to, without its trailing ``/``
    (:func:`bridge.urls.base_url_problem`, the rule every face checks)."""
    url = as_string(value, path).strip()
    problem = base_url_problem(url, query=query)
    if problem:
        raise ConfigError(path, problem)
    return url.rstrip("/")


def as_database_url(value: Any, path: str) -> str:
    """A SQLAlchemy URL the bridge can use; ``postgresql://`` means psycopg 3."""
    url = psycopg_url(as_string(value, path).strip())
    if url.startswith(PSYCOPG_SCHEME):
        rest = url.removeprefix(PSYCOPG_SCHEME)
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        if authority.count("@") > 1:  # the driver would take part of the password for a host
            raise ConfigError(path, "the user info holds an '@': percent-encode it as %40")
        after = rest[len(authority) :]
        cut_short = "@" in after.split("/", 1)[0] or "@" in after.split("?", 1)[0].split("#", 1)[0]
        if "@" not in authority and cut_short:
            # "u:pa/ss@host": the part before the '/' would be read as host and port, and a
            # message naming that port would show the start of the password.
            raise ConfigError(
                path, "the user info holds '/', '?' or '#': percent-encode them (%2F, %3F, %23)"
            )
        problem = port_problem(authority, show="@" in authority)  # else a password may stand there
        if problem:
            raise ConfigError(path, problem)
    for prefix in ("sqlite:///", PSYCOPG_SCHEME):
        if url.startswith(prefix) and len(url) > len(prefix):
            return url
    if path.endswith("_FILE") and "://" not in url:  # a password file named by mistake
        raise ConfigError(
            path, "must hold a sqlite:/// or postgresql:// url; what it holds is no url (not shown)"
        )
    shown = redact_url(url)
    raise ConfigError(path, f"must be a sqlite:/// or postgresql:// url, got {shown!r}")
