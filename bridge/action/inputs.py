"""The inputs of ``send`` and the Action, and their parsing. Pure: no I/O.

Parsing raises InputError naming the bad input; each face spells the name its own way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.errors import InputError
from bridge.model import HEX_SHA, DeployRef, DeployType
from bridge.times import parse_timestamp

TYPES = ("auto", *(t.value for t in DeployType))


@dataclass(frozen=True)
class Inputs:
    """The user's inputs as given (flags or INPUT_*); empty strings mean "from context"."""

    token: str = ""
    api_url: str = ""
    entity_tag: str = ""
    environment: str = ""
    type: str = "auto"
    title: str = ""
    sha: str = ""
    url: str = ""
    deployer_name: str = ""
    deployer_email: str = ""
    timestamp: str = ""
    custom_data: str = ""
    deploy_id: str = ""
    fail_on_error: bool = True
    dry_run: bool = False

    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed."""
        return (self.token,) if self.token else ()


@dataclass(frozen=True)
class Notice:
    """Something the user should fix, about one input (each face spells ``name`` its way)."""

    name: str
    text: str


CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID = 255


def plain(name: str, value: str) -> str:
    """``value`` when it has no control character (it becomes part of a key or a URL)."""
    if CONTROL.search(value):
        raise InputError(name, f"{value!r} contains a control character")
    return value


def parse_bool(name: str, value: str, *, default: bool) -> bool:
    """An action-style boolean input ("true"/"false", as YAML 1.2 core schema spells it)."""
    text = value.strip().lower()
    if not text:
        return default
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise InputError(name, f"expected true or false, got {value!r}")


def parse_type(value: str) -> DeployType | None:
    """DEPLOY, SCALE, ROLLBACK, RESTART, or auto (None: rollback detection decides)."""
    text = value.strip() or "auto"
    if text.lower() == "auto":
        return None
    try:
        return DeployType(text.upper())
    except ValueError:
        raise InputError("type", f"{value!r} is not one of {', '.join(TYPES)}") from None


def parse_entities(value: str) -> tuple[str, ...]:
    """One or more entity tags, comma- or newline-separated, in order, without repeats."""
    tags = (part.strip() for part in re.split(r"[,\n]", value))
    return tuple(dict.fromkeys(plain("entity-tag", tag) for tag in tags if tag))


def parse_custom_data(value: str) -> dict[str, Any]:
    """A JSON or YAML mapping (YAML only loaded when the text is not JSON)."""
    text = value.strip()
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise InputError("custom-data", f"neither JSON nor YAML{where}") from None
    if not isinstance(data, dict):
        raise InputError("custom-data", f"expected a mapping, got {type(data).__name__}")
    return {str(key): _jsonable(val) for key, val in data.items()}


def _jsonable(value: Any) -> Any:
    """YAML dates and the like, made JSON-safe."""
    return json.loads(json.dumps(value, default=str))


def parse_sha(value: str) -> str:
    """A hex commit sha (7 to 64 digits), lower-cased."""
    text = value.strip()
    if not HEX_SHA.fullmatch(text):
        raise InputError("sha", f"{value!r} is not a hex commit sha")
    return text.lower()


def parse_deploy_id(value: str) -> DeployRef | None:
    """``--deploy-id``: the user's own name for this deploy, or None when not given."""
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_ID:
        raise InputError("deploy-id", f"longer than {MAX_ID} characters")
    return DeployRef("id", plain("deploy-id", text))


def parse_url(name: str, value: str) -> str:
    """An absolute http(s) URL."""
    text = value.strip()
    if not re.match(r"^https?://[^\s/]+", text):
        raise InputError(name, f"{value!r} is not an http(s) URL")
    return text


def parse_when(value: str, default: datetime) -> datetime:
    """The deploy's time: the given RFC 3339 timestamp, or the default (the CI's, or now)."""
    if not value.strip():
        return default
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise InputError("timestamp", str(exc)) from None


def inputs_from_action(environ: Mapping[str, str]) -> Inputs:
    """Inputs of the Docker action: INPUT_<NAME>, hyphens kept (runner) or underscored."""

    def get(name: str, default: str = "") -> str:
        upper = name.upper()
        for key in (f"INPUT_{upper}", f"INPUT_{upper.replace('-', '_')}"):
            if environ.get(key, "").strip():
                return environ[key].strip()
        return default

    return Inputs(
        token=get("cortex-api-token"),
        api_url=get("cortex-api-url"),
        entity_tag=get("entity-tag"),
        environment=get("environment"),
        type=get("type", "auto"),
        title=get("title"),
        sha=get("sha"),
        url=get("url"),
        deployer_name=get("deployer-name"),
        deployer_email=get("deployer-email"),
        timestamp=get("timestamp"),
        custom_data=get("custom-data"),
        fail_on_error=parse_bool("fail-on-error", get("fail-on-error"), default=True),
        dry_run=parse_bool("dry-run", get("dry-run"), default=False),
    )
