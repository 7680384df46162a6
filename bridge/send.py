"""``send`` and ``action``: turn flags or action inputs plus the CI context into deploys.

The parsing here is pure and raises InputError naming the bad input (each face spells the
name its own way); the few edges (the event file, cortex.yaml, ``git``) are small functions
of their own.
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

from bridge.ci.context import CiContext
from bridge.errors import InputError, UsageError
from bridge.mapping import first_line
from bridge.model import DeployEvent, DeployRef, DeployType, Status
from bridge.times import parse_timestamp

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


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID = 255


def plain(name: str, value: str) -> str:
    """``value`` when it has no control character (it becomes part of a key or a URL)."""
    if _CONTROL.search(value):
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
    if not _HEX_SHA.match(text):
        raise InputError("sha", f"{value!r} is not a hex commit sha")
    return text.lower()


def context_sha(ctx: CiContext) -> str | None:
    """The CI's commit sha when it is one (7 to 64 hex digits), lower-cased; else None.

    Anything else (a ref name, an option-like ``--output=FILE``) is never used, nor passed
    to git.
    """
    return ctx.sha.lower() if ctx.sha and _HEX_SHA.match(ctx.sha) else None


def parse_deploy_id(value: str) -> DeployRef | None:
    """``--deploy-id``: the user's own name for this deploy, or None when not given."""
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_ID:
        raise InputError("deploy-id", f"longer than {MAX_ID} characters")
    return DeployRef("id", plain("deploy-id", text))


def resolve_ref(inputs: Inputs, ctx: CiContext) -> DeployRef | None:
    """What names the deploy: the deploy id given, else the CI build's own id, else None."""
    return parse_deploy_id(inputs.deploy_id) or ctx.ref


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


def build_event(
    inputs: Inputs,
    ctx: CiContext,
    *,
    now: datetime,
    ref: DeployRef,
    sha: str | None,
    title: str | None,
) -> DeployEvent:
    """The deploy event the inputs describe, context filling every empty input."""
    deploy_type = parse_type(inputs.type)
    custom = parse_custom_data(inputs.custom_data)
    timestamp = parse_when(inputs.timestamp, ctx.finished_at or now)
    url = parse_url("url", inputs.url) if inputs.url.strip() else ctx.url
    environment = plain("environment", inputs.environment.strip() or ctx.environment or "")
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
        environment=environment or None,
        url=url,
        deployer_name=inputs.deployer_name.strip() or ctx.deployer_name,
        deployer_email=inputs.deployer_email.strip() or ctx.deployer_email,
        started_at=started,
        finished_at=finished,
        details={**({"ref": ctx.branch} if ctx.branch else {}), **ctx.details},
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
        info = data.get("info") if isinstance(data, dict) else None
        tag = info.get("x-cortex-tag") if isinstance(info, dict) else None
        if isinstance(tag, str) and tag.strip():
            if _CONTROL.search(tag.strip()):
                raise UsageError(f"{name}: info.x-cortex-tag contains a control character")
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
    raise InputError(
        "entity-tag", "none given, no cortex.yaml with info.x-cortex-tag, and no repository"
    )


def git(workspace: str | None, *args: str, revision: str) -> str | None:
    """One line of ``git <args> --end-of-options <revision>`` in the workspace, or None.

    ``--end-of-options`` makes git read ``revision`` as a revision whatever it looks like.
    """
    if not workspace or not (Path(workspace) / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", workspace, *args, "--end-of-options", revision],
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
        return context_sha(ctx)
    sha = parse_sha(inputs.sha)
    if len(sha) < 40:
        full = git(ctx.workspace, "rev-parse", "--verify", "--quiet", revision=f"{sha}^{{commit}}")
        if full and full.startswith(sha):
            return full
    return sha


def resolve_title(inputs: Inputs, ctx: CiContext, sha: str | None) -> str | None:
    """The title from context; where the event has none, the commit's subject from git."""
    if inputs.title.strip() or ctx.title:
        return ctx.title
    if not sha or not _HEX_SHA.match(sha):
        return None
    return git(ctx.workspace, "log", "-1", "--format=%s", revision=sha)


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
