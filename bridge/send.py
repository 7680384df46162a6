"""``send`` and ``action``: turn flags or action inputs plus the CI context into deploys.

The parsing here is pure and raises UsageError naming the bad input; the few edges (the
event file, cortex.yaml, ``git``) are small functions of their own.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.ci import CiContext
from bridge.errors import UsageError
from bridge.mapping import first_line
from bridge.model import DeployEvent, DeployRef, DeployType, Status
from bridge.times import format_timestamp, parse_timestamp

TYPES = ("auto", *(t.value for t in DeployType))
_HEX_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


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
    fail_on_error: bool = True
    dry_run: bool = False

    def secrets(self) -> tuple[str, ...]:
        """Values that must never be printed."""
        return (self.token,) if self.token else ()


def parse_bool(name: str, value: str, *, default: bool) -> bool:
    """An action-style boolean input ("true"/"false", as YAML 1.2 core schema spells it)."""
    text = value.strip().lower()
    if not text:
        return default
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise UsageError(f"{name}: expected true or false, got {value!r}")


def parse_type(value: str) -> DeployType | None:
    """DEPLOY, SCALE, ROLLBACK, RESTART, or auto (None: rollback detection decides)."""
    text = value.strip() or "auto"
    if text.lower() == "auto":
        return None
    try:
        return DeployType(text.upper())
    except ValueError:
        raise UsageError(f"type: {value!r} is not one of {', '.join(TYPES)}") from None


def parse_entities(value: str) -> tuple[str, ...]:
    """One or more entity tags, comma- or newline-separated, in order, without repeats."""
    tags = (part.strip() for part in re.split(r"[,\n]", value))
    return tuple(dict.fromkeys(tag for tag in tags if tag))


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
            raise UsageError(f"custom-data: neither JSON nor YAML{where}") from None
    if not isinstance(data, dict):
        raise UsageError(f"custom-data: expected a mapping, got {type(data).__name__}")
    return {str(key): _jsonable(val) for key, val in data.items()}


def _jsonable(value: Any) -> Any:
    """YAML dates and the like, made JSON-safe."""
    return json.loads(json.dumps(value, default=str))


def parse_sha(value: str) -> str:
    """A hex commit sha (7 to 64 digits), lower-cased."""
    text = value.strip()
    if not _HEX_SHA.match(text):
        raise UsageError(f"sha: {value!r} is not a hex commit sha")
    return text.lower()


def parse_url(name: str, value: str) -> str:
    """An absolute http(s) URL."""
    text = value.strip()
    if not re.match(r"^https?://[^\s/]+", text):
        raise UsageError(f"{name}: {value!r} is not an http(s) URL")
    return text


def parse_when(value: str, now: datetime) -> datetime:
    """The deploy's time: the given RFC 3339 timestamp, or now."""
    if not value.strip():
        return now
    try:
        return parse_timestamp(value)
    except ValueError as exc:
        raise UsageError(f"timestamp: {exc}") from None


def build_event(
    inputs: Inputs, ctx: CiContext, *, now: datetime, sha: str | None, title: str | None
) -> DeployEvent:
    """The deploy event the inputs describe, context filling every empty input."""
    deploy_type = parse_type(inputs.type)
    custom = parse_custom_data(inputs.custom_data)
    timestamp = parse_when(inputs.timestamp, now)
    url = parse_url("url", inputs.url) if inputs.url.strip() else ctx.url
    environment = inputs.environment.strip() or ctx.environment
    ref = ctx.ref or DeployRef("send", format_timestamp(timestamp))
    finished = timestamp
    started = ctx.started_at if ctx.started_at and ctx.started_at <= finished else None
    return DeployEvent(
        source=ctx.source,
        repository=ctx.repository,
        event=ctx.event,
        ref=ref,
        status=Status.SUCCEEDED,
        timestamp=timestamp,
        title=first_line(inputs.title) or title or "",
        sha=sha,
        environment=environment,
        url=url,
        deployer_name=inputs.deployer_name.strip() or ctx.deployer_name,
        deployer_email=inputs.deployer_email.strip() or ctx.deployer_email,
        started_at=started,
        finished_at=finished,
        details=ctx.details,
        type=deploy_type,
        custom=custom,
    )


# -- edges: files and git ------------------------------------------------------------------


def read_event_file(path: str | None) -> dict[str, Any]:
    """GitHub's event payload (GITHUB_EVENT_PATH); an unreadable one counts as empty."""
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def descriptor_tag(workspace: str | None) -> str | None:
    """``info.x-cortex-tag`` from cortex.yaml / cortex.yml at the workspace root, if any."""
    root = Path(workspace or ".")
    for name in ("cortex.yaml", "cortex.yml"):
        path = root / name
        if not path.is_file():
            continue
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise UsageError(f"{name}: cannot read it ({type(exc).__name__})") from None
        tag = data.get("info", {}).get("x-cortex-tag") if isinstance(data, dict) else None
        if isinstance(tag, str) and tag.strip():
            return tag.strip()
    return None


def resolve_entities(inputs: Inputs, ctx: CiContext) -> tuple[str, ...]:
    """The entity tags: the input, else cortex.yaml, else the repository's name."""
    tags = parse_entities(inputs.entity_tag)
    if tags:
        return tags
    tag = descriptor_tag(ctx.workspace)
    if tag:
        return (tag,)
    if ctx.repository:
        return (ctx.repository.rsplit("/", 1)[-1],)
    raise UsageError(
        "entity-tag: none given, no cortex.yaml with info.x-cortex-tag, and no repository"
    )


def git(workspace: str | None, *args: str) -> str | None:
    """One line of ``git`` output in the workspace, or None where git cannot tell."""
    if not workspace or not (Path(workspace) / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", workspace, *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and out else None


def resolve_sha(inputs: Inputs, ctx: CiContext) -> str | None:
    """The full commit sha: the input (expanded with git when short), else the context's."""
    if not inputs.sha.strip():
        return ctx.sha.lower() if ctx.sha and _HEX_SHA.match(ctx.sha) else ctx.sha
    sha = parse_sha(inputs.sha)
    if len(sha) < 40:
        full = git(ctx.workspace, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        if full and full.startswith(sha):
            return full
    return sha


def resolve_title(inputs: Inputs, ctx: CiContext, sha: str | None) -> str | None:
    """The title from context; where the event has none, the commit's subject from git."""
    if inputs.title.strip() or ctx.title:
        return ctx.title
    return git(ctx.workspace, "log", "-1", "--format=%s", sha) if sha else None


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
