"""The one normalized deploy event that every source produces and the mapper consumes.

Also the bounds of what the bridge stores and sends (docs/limits.md lists them): the limits
themselves, :func:`bounded` for an event and :func:`entity_problem` for an entity tag.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.errors import MalformedEvent

# Names: repository, environment, deployer name and email, entity tag, the source's deploy id.
MAX_NAME = 255
# A deploy's title. Cortex's API description states no maxLength for SaveDeployRequest.title;
# the bridge has always cut titles here (a commit's first line rarely comes close).
MAX_TITLE = 255
# A page's URL: what browsers and proxies handle everywhere (RFC 9110 says at least 8000 octets
# should be supported; a deploy's run or job page is a hundred or so).
MAX_URL = 2048
# The event as stored (JSON, the entities aside): ~1-2 KiB for a real deploy.
MAX_EVENT_BYTES = 16 * 1024
# A git commit id in hex: abbreviated (git's shortest is 7 digits) up to a full SHA-256 id.
HEX_SHA = re.compile(r"[0-9a-fA-F]{7,64}")
# A full commit id: 40 digits (SHA-1) or 64 (SHA-256 repositories). Use with fullmatch.
FULL_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
# A deploy's idempotency key (source, repository, deploy id, environment, entity) in UTF-8:
# it is a primary key, and PostgreSQL's btree entries stop at 2,704 bytes. Names of 255
# characters stay far below it in ASCII, but not in four-byte characters.
MAX_KEY_BYTES = 2048

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none of them belongs
# in a name, a key or a URL, and each can split a line of a log or a workflow command.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_RUN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def first_line(text: str | None) -> str:
    """The first non-empty line of a commit message, stripped."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


class DeployType(str, enum.Enum):
    """Cortex's deploy types (SaveDeployRequest.type)."""

    DEPLOY = "DEPLOY"
    SCALE = "SCALE"
    ROLLBACK = "ROLLBACK"
    RESTART = "RESTART"


class Status(str, enum.Enum):
    """The one lifecycle every source is mapped onto; what ``customData.status`` holds."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """True for the states a deploy ends in."""
        return self in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)


@dataclass(frozen=True)
class DeployRef:
    """What names one deploy at its source: a deployment id, a run and attempt, a job.

    ``kind`` is one of ``deployment``, ``run``, ``pipeline``, ``job``; ``id`` is the source's
    own identifier (``"<run id>/<attempt>"`` for runs). Together with the source, the
    repository, the environment and the entity it forms the idempotency key.
    """

    kind: str
    id: str


@dataclass(frozen=True)
class DeployEvent:
    """One deploy, as a source saw it, before any routing to Cortex entities."""

    source: str  # "github" or "gitlab": the SCM, whichever path (action, CI, webhook) saw it
    repository: str  # "owner/name"; GitLab: the full path with subgroups
    event: str  # the source's event name: push, deployment_status, workflow_run, pipeline, ...
    ref: DeployRef
    status: Status
    timestamp: datetime  # when it finished (or the event's own time), aware
    title: str
    sha: str | None = None
    environment: str | None = None
    url: str | None = None
    deployer_name: str | None = None
    deployer_email: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delivery_id: str | None = None
    # Where the event came from, for customData: run/job/pipeline ids, workflow name, ...
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # Cortex entities the source itself named (action input, a deployment's payload); empty
    # means "let the routes decide".
    entities: tuple[str, ...] = ()
    # An explicit type from the user; None means "auto" (rollback detection decides).
    type: DeployType | None = None
    # The user's own customData, merged over the bridge's.
    custom: Mapping[str, Any] = field(default_factory=dict, hash=False)


def event_to_dict(event: DeployEvent) -> dict[str, Any]:
    """A JSON-ready form of the event, for the outbox."""
    return {
        "source": event.source,
        "repository": event.repository,
        "event": event.event,
        "ref": {"kind": event.ref.kind, "id": event.ref.id},
        "status": event.status.value,
        "timestamp": event.timestamp.isoformat(),
        "title": event.title,
        "sha": event.sha,
        "environment": event.environment,
        "url": event.url,
        "deployer_name": event.deployer_name,
        "deployer_email": event.deployer_email,
        "started_at": event.started_at.isoformat() if event.started_at else None,
        "finished_at": event.finished_at.isoformat() if event.finished_at else None,
        "delivery_id": event.delivery_id,
        "details": dict(event.details),
        "entities": list(event.entities),
        "type": event.type.value if event.type else None,
        "custom": dict(event.custom),
    }


def event_from_dict(data: Mapping[str, Any]) -> DeployEvent:
    """The inverse of :func:`event_to_dict`."""

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    timestamp = when(data["timestamp"])
    assert timestamp is not None
    return DeployEvent(
        source=data["source"],
        repository=data["repository"],
        event=data["event"],
        ref=DeployRef(data["ref"]["kind"], data["ref"]["id"]),
        status=Status(data["status"]),
        timestamp=timestamp,
        title=data["title"],
        sha=data.get("sha"),
        environment=data.get("environment"),
        url=data.get("url"),
        deployer_name=data.get("deployer_name"),
        deployer_email=data.get("deployer_email"),
        started_at=when(data.get("started_at")),
        finished_at=when(data.get("finished_at")),
        delivery_id=data.get("delivery_id"),
        details=dict(data.get("details") or {}),
        entities=tuple(data.get("entities") or ()),
        type=DeployType(data["type"]) if data.get("type") else None,
        custom=dict(data.get("custom") or {}),
    )


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character (NUL, CR, LF, ESC, DEL, C1, U+2028/9)."""
    return _CONTROL.search(text) is not None


def escape_controls(text: str) -> str:
    """``text`` with each control character (as :func:`has_control`) spelled as an escape:
    ``\\n``, ``\\x1b``, ``\\u2028``, so that it shows and cannot split or redraw a line."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def entity_problem(tag: str) -> str | None:
    """What is wrong with ``tag`` as a Cortex entity tag, or None when it is usable.

    It becomes a path segment of Cortex's URL (``/catalog/{tag}/deploys``) and part of the
    idempotency key: no control characters, not ``.`` or ``..``, at most MAX_NAME characters.
    """
    if not tag.strip():
        return "is empty"
    if tag in (".", ".."):
        return f"is {tag!r}, which names no entity"
    if len(tag) > MAX_NAME:
        return f"is {len(tag)} characters long; at most {MAX_NAME}"
    if has_control(tag):
        return "holds a control character"
    return None


def _plain(text: str) -> str:
    """``text`` with each run of control characters replaced by one space, stripped."""
    return _CONTROL_RUN.sub(" ", text).strip()


def _one_line(text: str) -> str:
    """A title: its first line with text in it (a commit's subject), mended by :func:`_plain`.

    Lines end where ``str.splitlines`` ends them (LF, CR, VT, FF, FS, GS, RS, NEL, U+2028,
    U+2029), whichever face the title came from.
    """
    for line in text.splitlines():
        mended = _plain(line)
        if mended:
            return mended
    return ""


def bounded(event: DeployEvent) -> DeployEvent:
    """The event as the bridge stores it, or a MalformedEvent naming the field that cannot be.

    Fields that reach a key or a URL (repository, environment, deploy id, sha, url, delivery
    id) are refused when they hold a control character; names are refused past MAX_NAME
    characters and a URL past MAX_URL. Free text is mended instead: the title is its first
    line with text, and in it and the deployer each run of control characters becomes one
    space; the title is cut to MAX_TITLE. Last, the whole event must fit in MAX_EVENT_BYTES
    of JSON; the error names its largest field.
    """
    title = _one_line(event.title)[:MAX_TITLE]
    name = _plain(event.deployer_name) if event.deployer_name else None
    email = _plain(event.deployer_email) if event.deployer_email else None
    checked = (
        ("repository", event.repository, MAX_NAME),
        ("environment", event.environment, MAX_NAME),
        ("deploy id", event.ref.id, MAX_NAME),
        ("sha", event.sha, MAX_NAME),
        ("url", event.url, MAX_URL),
        ("delivery id", event.delivery_id, MAX_NAME),
        ("deployer name", name, MAX_NAME),
        ("deployer email", email, MAX_NAME),
    )
    for label, value, limit in checked:
        if value is None:
            continue
        if has_control(value):
            raise MalformedEvent(f"the event's {label} holds a control character")
        if len(value) > limit:
            raise MalformedEvent(
                f"the event's {label} is {len(value)} characters long; at most {limit}"
            )
    fixed = dataclasses.replace(
        event, title=title, deployer_name=name or None, deployer_email=email or None
    )
    _check_size(event_to_dict(fixed))
    return fixed


def _stored_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON (the standard library: ``send`` and the
    Action run on the base install, which has no orjson)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _check_size(data: Mapping[str, Any]) -> None:
    size = _stored_size(data)
    if size <= MAX_EVENT_BYTES:
        return
    parts = {key: value for key, value in data.items() if key != "details"}
    parts.update({f"details.{key}": value for key, value in data["details"].items()})
    largest = max(parts, key=lambda key: _stored_size(parts[key]))
    raise MalformedEvent(
        f"the event is {size} bytes stored, at most {MAX_EVENT_BYTES}: its {largest} is too long"
    )
