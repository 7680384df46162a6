"""Fill the inputs left empty from the CI context, and build the deploy event.

The CI context itself comes from :mod:`bridge.ci` (pure); the few edges here (the event
file, cortex.yaml, ``git``) are small functions of their own.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.action.inputs import (
    Inputs,
    import_yaml,
    parse_custom_data,
    parse_deploy_id,
    parse_entities,
    parse_sha,
    parse_type,
    parse_url,
    parse_when,
    plain,
)
from bridge.ci.context import CiContext
from bridge.errors import InputError, UsageError
from bridge.model import FULL_SHA, HEX_SHA, DeployEvent, DeployRef, Status, first_line, has_control


def context_sha(ctx: CiContext) -> str | None:
    """The CI's commit sha when it is one (7 to 64 hex digits), lower-cased; else None.

    Anything else (a ref name, an option-like ``--output=FILE``) is never used, nor passed
    to git.
    """
    return ctx.sha.lower() if ctx.sha and HEX_SHA.fullmatch(ctx.sha) else None


def resolve_ref(inputs: Inputs, ctx: CiContext) -> DeployRef | None:
    """What names the deploy: the deploy id given, else the CI build's own id, else None."""
    return parse_deploy_id(inputs.deploy_id) or ctx.ref


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
    # The input's checked as the input's; the context's by the model, as the event's.
    given = inputs.environment.strip()
    environment = plain("environment", given) if given else ctx.environment or ""
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
        # The context's email is its deployer's: never beside another name given.
        deployer_email=inputs.deployer_email.strip()
        or (None if inputs.deployer_name.strip() else ctx.deployer_email),
        started_at=started,
        finished_at=finished,
        details={**({"ref": ctx.branch} if ctx.branch else {}), **ctx.details},
        type=deploy_type,
        custom=custom,
    )


# -- edges: files and git ------------------------------------------------------------------


def read_event_file(path: str | None) -> tuple[dict[str, Any], str | None]:
    """GitHub's event payload (GITHUB_EVENT_PATH), and what was wrong with it when it could not
    be read (the payload is then empty); none given is an empty payload, nothing wrong."""
    if not path:
        return {}, None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, f"cannot read {path}: {(exc.strerror or type(exc).__name__).lower()}"
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested past what is read
        return {}, f"{path} is not a JSON document this step can read"
    if not isinstance(data, dict):
        return {}, f"{path} holds no JSON object"
    return data, None


# A Cortex descriptor is a page or two; one past this is not read (nor parsed) for its tag.
MAX_DESCRIPTOR_BYTES = 1024 * 1024


def descriptor_tag(workspace: str | None) -> str | None:
    """``info.x-cortex-tag`` from cortex.yaml / cortex.yml at the workspace root, if any."""
    root = Path(workspace or ".")
    for name in ("cortex.yaml", "cortex.yml"):
        path = root / name
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_DESCRIPTOR_BYTES:
            raise UsageError(f"{name}: larger than {MAX_DESCRIPTOR_BYTES} bytes; not read")
        yaml = import_yaml(name)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.MarkedYAMLError as exc:
            # Where and what, as check-config says it of a config file: a parser's class name
            # (ParserError) tells a user nothing to fix.
            mark = exc.problem_mark or exc.context_mark
            where = f"{name}:{mark.line + 1}" if mark is not None else name
            said = " ".join(str(exc.problem or exc.context or "").split())[:200]
            raise UsageError(f"{where}: invalid YAML: {said}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{name}: cannot read it: not UTF-8 text") from None
        except RecursionError:
            raise UsageError(f"{name}: invalid YAML: nested too deeply") from None
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"{name}: cannot read it ({type(exc).__name__})") from None
        info = data.get("info") if isinstance(data, dict) else None
        tag = info.get("x-cortex-tag") if isinstance(info, dict) else None
        if isinstance(tag, str) and tag.strip():
            if has_control(tag.strip()):
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


def workspace(ctx: CiContext) -> str:
    """Where git is asked: the CI's checkout, else (``send`` run by hand) the checkout the
    current directory is in (itself or the nearest directory above it holding ``.git``, as
    git finds it), else the current directory."""
    if ctx.workspace:
        return ctx.workspace
    here = Path.cwd()
    return str(next((d for d in (here, *here.parents) if (d / ".git").exists()), here))


def resolve_sha(inputs: Inputs, ctx: CiContext) -> str | None:
    """The full commit sha: the input (expanded with git when short), else the context's.

    Cortex is given the full sha (what its links and the rollback check compare), so an
    abbreviated one is expanded by ``git rev-parse`` in the CI's workspace, or, outside a
    CI, in the checkout the current directory is in; one that git cannot expand there is
    refused, naming the flag, rather than recorded short.
    """
    if not inputs.sha.strip():
        # The CI's own value: expanded where git can, else kept (with a notice), since
        # refusing it would fail a pipeline over what its CI chose to say.
        given = context_sha(ctx)
        return given and (_expand(given, workspace(ctx)) or given)
    sha = parse_sha(inputs.sha)
    where = workspace(ctx)
    full = _expand(sha, where)
    if full:
        return full
    if len(sha) > 40:  # not a shortened SHA-1; only a SHA-256 repository's 64 are longer
        raise InputError("sha", f"{sha!r} is {len(sha)} hex digits: a full sha has 40 (or 64)")
    raise InputError(
        "sha",
        f"{sha!r} is abbreviated, and no git repository at {where} has that commit to "
        f"expand it: give the full 40-hex sha (`git rev-parse {sha}` prints it)",
    )


def _expand(sha: str, where: str) -> str | None:
    """``sha`` itself when full; else the full sha git has for it at ``where``, or None."""
    if FULL_SHA.fullmatch(sha):
        return sha
    full = git(where, "rev-parse", "--verify", "--quiet", revision=f"{sha}^{{commit}}")
    return full if full and FULL_SHA.fullmatch(full) and full.startswith(sha) else None


def resolve_title(inputs: Inputs, ctx: CiContext, sha: str | None) -> str | None:
    """The title from context; where the event has none, the commit's subject from git."""
    if inputs.title.strip() or ctx.title:
        return ctx.title
    if not sha or not HEX_SHA.fullmatch(sha):
        return None
    return git(workspace(ctx), "log", "-1", "--format=%s", revision=sha)
