"""The one normalized deploy event that every source produces and the mapper consumes.

Also the bounds of what the bridge stores and sends (docs/limits.md lists them): the limits
themselves, :func:`check_deploy` for an event and its entity tags, :func:`bounded` for the
event alone.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bridge.errors import InvalidDeploy
from bridge.redact import MASK, mask
from bridge.urls import page_problem

# Names: environment, deployer name and email, entity tag, the source's deploy id.
MAX_NAME = 255
# A repository's full path, longer: GitLab nests groups, and a GitOps deploy's "repository"
# is its Kubernetes object's namespace/name (63 + 1 + 253 characters at most).
MAX_REPOSITORY = 512
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
# How deep the user's customData (and a source's details) may nest: what Cortex keeps is read
# back by every face (json.loads), and a record nested near Python's recursion limit broke
# every later read of its entity.
MAX_DEPTH = 32

# A deploy's times (when it happened, started, finished): from the Unix epoch up to the year
# 9999, whose end is past what windows around a time can reach (datetime stops at 9999-12-31).
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)

# The keys of customData the bridge reads back from Cortex's records (the deploy's status, when
# it started, and its idempotency key and stamp): the user's own customData, merged over the
# bridge's, may not set them.
OWN_CUSTOM_KEYS = frozenset({"status", "startedAt", "bridge"})
# A secret shorter than this is not looked for in a deploy's fields: it would turn deploys
# away for the words they happen to hold ("production" as a webhook secret). A token is far
# longer.
MIN_SECRET = 12
# Free text, recorded with a secret in it masked.
_FREE_TEXT = ("title", "url", "deployer_name", "deployer_email", "custom", "details")
# The fields of an event's stored form as a refusal names them (the rest by their own name).
_LABELS = {
    "ref": "deploy id",
    "deployer_name": "deployer name",
    "deployer_email": "deployer email",
    "delivery_id": "delivery id",
    "entities": "entity",
    "started_at": "started at",
    "finished_at": "finished at",
}
# A free-text field as a note about it names it to the user.
_SAID = {"custom": "the event's customData", "details": "the source's details"}


def _said(label: str) -> str:
    return _SAID.get(label, f"the event's {label}")


# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidirectional
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): none of them belongs in a
# name, a key or a URL; each can split a line of a log or a workflow command, or show a name
# (a deployer, in Cortex's page) as other text than it is. And a lone surrogate
# (U+D800-U+DFFF: what JSON's "\\ud800" escape parses to, alone), which is no character at all:
# no UTF-8 encodes it, so no request, database or log line could carry it.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_CONTROL_RUN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]+"
)


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

    # True for the states a deploy ends in: a plain attribute of each member (asked of every
    # event, on the receiver's path and the worker's), set once as the class is made.
    is_final: bool

    def __init__(self, value: str) -> None:
        self.is_final = value in ("succeeded", "failed", "cancelled")


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
    # The run that made the deploy where ``ref`` cannot name it: a GitHub deployment whose run
    # was deleted, its attempt unknown (its log page names the run only). A record made under
    # any attempt of that run may be this deploy's (bridge.record.core.as_held).
    run: str | None = None


def event_to_dict(event: DeployEvent) -> dict[str, Any]:
    """A JSON-ready form of the event, for the outbox: every field, by its name.

    Times as ISO 8601, enums by value, a ref as a mapping, tuples as lists, mappings as dicts.
    """
    data: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        value = getattr(event, name)
        if value is None or kind is _PLAIN:
            data[name] = value
        elif kind is _TIME:
            data[name] = value.isoformat()
        elif kind is _REF:
            data[name] = {"kind": value.kind, "id": value.id}
        elif kind is _TUPLE:
            data[name] = list(value)
        elif kind is _MAPPING:
            data[name] = dict(value)
        else:  # an enum
            data[name] = value.value
    return data


def event_from_dict(data: Mapping[str, Any]) -> DeployEvent:
    """The inverse of :func:`event_to_dict` (a field missing from older rows: its default)."""
    given: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        if name not in data:
            continue
        value = data[name]
        if kind is _PLAIN:
            given[name] = value
        elif kind is _TIME:
            given[name] = datetime.fromisoformat(value) if value else None
        elif kind is _REF:
            given[name] = DeployRef(value["kind"], value["id"])
        elif kind is _TUPLE:
            given[name] = tuple(value or ())
        elif kind is _MAPPING:
            given[name] = dict(value or {})
        else:  # an enum: the class itself
            given[name] = kind(value) if value else None
    return DeployEvent(**given)


# The kinds of DeployEvent's fields, by how their stored form is written and read back: a
# field added to the event reaches the outbox and comes back without a hand-written pair to
# keep in step. An enum field's kind is its enum class.
_PLAIN, _TIME, _REF, _TUPLE, _MAPPING = "plain", "time", "ref", "tuple", "mapping"


def _kind(annotation: str) -> Any:
    """The kind of a field annotated ``annotation``."""
    if "datetime" in annotation:
        return _TIME
    if "DeployRef" in annotation:
        return _REF
    for named in (Status, DeployType):
        if named.__name__ in annotation:
            return named
    if "tuple" in annotation:
        return _TUPLE
    if "Mapping" in annotation:
        return _MAPPING
    return _PLAIN


_FIELDS = {f.name: _kind(str(f.type)) for f in dataclasses.fields(DeployEvent)}


def has_control(text: str) -> bool:
    """True when ``text`` holds a control character (NUL, CR, LF, ESC, DEL, C1, U+2028/9, the
    bidirectional overrides)."""
    return _CONTROL.search(text) is not None


def escape_controls(text: str) -> str:
    """``text`` with each control character (as :func:`has_control`) spelled as an escape:
    ``\\n``, ``\\x1b``, ``\\u2028``, so that it shows and cannot split or redraw a line."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


@dataclass(frozen=True)
class Checked:
    """A deploy as the bridge records it, and what was shortened or mended on the way
    (``(field, what was done)`` pairs, for the face to tell its user)."""

    event: DeployEvent
    # The event's stored form (:func:`event_to_dict`), as sized by the check: the outbox
    # keeps it as it is (the payload ``ingest`` writes), not encoded a second time.
    stored: Mapping[str, Any] = field(hash=False, repr=False)
    notes: tuple[tuple[str, str], ...] = ()


def check_deploy(
    event: DeployEvent,
    entities: Sequence[str] = (),
    *,
    max_entities: int | None = None,
    named: Sequence[str] | None = None,
    spelled: Sequence[str] = (),
) -> Checked:
    """THE validation of a deploy, called by every face before it records or stores one.

    The bounds and character rules of docs/limits.md: the event's fields (:func:`bounded`),
    each entity tag (:func:`_check_entities`), at most ``max_entities`` of them, and each
    entity's idempotency key within MAX_KEY_BYTES. Raises InvalidDeploy naming the field.

    The entities are checked before the fields. ``named``: the entities the event itself
    named, when ``entities`` are the ones a route gave it (a webhook, checked once as routed):
    then those named are checked first, the fields next, and the routed ones after them.
    ``spelled``: the face's secrets, as :func:`bridge.redact.spellings` spells them (those of
    at least MIN_SECRET characters looked for): one in a field that names the deploy, or in
    any of its entities (the event's own, ``entities``, ``named``), is refused before
    anything else is judged, as no other refusal shows a value holding it; one in free text
    is masked.
    """
    looked_for = searched_secrets(spelled)
    _refuse_secrets(event, (*entities, *(named or ())), looked_for)
    _check_entities(entities if named is None else named, max_entities)
    fixed, title_length, stored, masked = _bounded(event, looked_for)
    if named is not None and tuple(entities) != tuple(named):
        _check_entities(entities, max_entities)
    from bridge.mapping import idempotency_key  # it imports this module

    for tag in entities:
        size = len(idempotency_key(fixed, tag).encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise InvalidDeploy(
                "entity",
                f"the deploy's key (repository, environment, deploy id and entity "
                f"{_shown(tag)}) is {size} bytes in UTF-8; at most {MAX_KEY_BYTES}",
            )
    notes = tuple(
        (
            label,
            f"{_said(label)} holds a secret the bridge was given; recorded with it masked ({MASK})",
        )
        for label in masked
    )
    if title_length <= MAX_TITLE:
        return Checked(fixed, stored, notes)
    note = f"the title is {title_length} characters long; recorded as its first {MAX_TITLE}"
    return Checked(fixed, stored, (*notes, ("title", note)))


def _check_entities(entities: Sequence[str], max_entities: int | None) -> None:
    """At most ``max_entities`` tags, each usable as a Cortex entity tag; else InvalidDeploy.

    A tag becomes a path segment of Cortex's URL (``/catalog/{tag}/deploys``) and part of the
    idempotency key: not blank, not ``.`` or ``..``, at most MAX_NAME characters, and no
    control characters.
    """
    if max_entities is not None and len(entities) > max_entities:
        raise InvalidDeploy(
            "entity",
            f"the event names {len(entities)} entities, more than "
            f"server.max_entities_per_event ({max_entities})",
        )
    for tag in entities:
        problem = entity_problem(tag)
        if problem is not None:
            raise InvalidDeploy("entity", f"entity {_shown(tag)} {problem}")


def entity_problem(tag: str) -> str | None:
    """What keeps ``tag`` from being a Cortex entity tag, or None: the one rule, for an
    event's entities and the config's routes alike."""
    if not tag.strip():
        return "is empty"
    if tag in (".", ".."):
        return f"is {tag!r}, which names no entity"
    if len(tag) > MAX_NAME:
        return f"is {len(tag)} characters long; at most {MAX_NAME}"
    character = character_problem(tag)
    return None if character is None else f"holds {character}"


def environment_problem(name: str, most: int = MAX_NAME) -> str | None:
    """What keeps ``name`` from being an environment's name (with ``most``
    MAX_REPOSITORY, a repository's), or None: as the event's is checked, no control character
    and at most ``most`` characters."""
    character = character_problem(name)
    if character is not None:
        return f"holds {character}"
    if len(name) > most:
        return f"is {len(name)} characters long; at most {most}"
    return None


def character_problem(text: str) -> str | None:
    """Which character keeps ``text`` from being a name (a noun phrase), or None: a control
    character, or a lone surrogate (a byte that was no UTF-8 in an argument, a ``\\ud800``
    alone in JSON)."""
    found = _CONTROL.search(text)
    if found is None:
        return None
    if "\ud800" <= found.group() <= "\udfff":
        return "a byte or escape that is no text (not UTF-8: a lone surrogate)"
    return CONTROL


CONTROL = "a control character"  # what character_problem says of one


def _shown(value: str, limit: int = 60) -> str:
    """``value`` for a message: repr'd, cut so that garbage cannot bloat the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _deeper_than(value: Any, most: int) -> bool:
    """Whether ``value`` nests mappings and lists more than ``most`` levels deep (counted
    without recursion: the value itself may be nested past what recursion reaches)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            inner: Any = item.values()
        elif isinstance(item, (list, tuple)):
            inner = item
        else:
            continue
        if depth > most:
            return True
        stack.extend((child, depth + 1) for child in inner)
    return False


def bounded(event: DeployEvent) -> DeployEvent:
    """The event as the bridge stores it, or an InvalidDeploy naming the field that cannot be.

    Fields that reach a key or a URL (repository, environment, deploy id, sha, url, delivery
    id) are refused when they hold a control character; names are refused past MAX_NAME
    characters and a URL past MAX_URL; times outside [EARLIEST, LATEST) are refused. Free
    text is mended instead: the title is its first line with text, and in it and the deployer
    each run of control characters becomes one space; the title is cut to MAX_TITLE
    (check_deploy says so). Last, the whole event must fit in MAX_EVENT_BYTES of JSON; the
    error names its largest field.
    """
    return _bounded(event)[0]


def _bounded(
    event: DeployEvent, looked_for: tuple[str, ...] = ()
) -> tuple[DeployEvent, int, dict[str, Any], tuple[str, ...]]:
    """:func:`bounded`, the length of the mended title (its secrets masked) before it was cut,
    the bounded event's stored form (:func:`event_to_dict`), and the fields in which a secret
    was masked (``looked_for``, from :func:`searched_secrets`; :func:`_without_secrets`)."""
    # The title: its first line with text in it (a commit's subject). Lines end where
    # ``str.splitlines`` ends them (LF, CR, VT, FF, FS, GS, RS, NEL, U+2028, U+2029),
    # whichever face the title came from.
    # In it and the deployer, each run of control characters becomes one space.
    lines = (_CONTROL_RUN.sub(" ", line).strip() for line in event.title.splitlines())
    title = next((line for line in lines if line), "")
    name = _CONTROL_RUN.sub(" ", event.deployer_name).strip() if event.deployer_name else None
    email = _CONTROL_RUN.sub(" ", event.deployer_email).strip() if event.deployer_email else None
    checked = (
        ("repository", event.repository, MAX_REPOSITORY),
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
        character = character_problem(value)
        if character is not None:
            raise InvalidDeploy(label, f"the event's {label} holds {character}")
        if len(value) > limit:
            raise InvalidDeploy(
                label, f"the event's {label} is {len(value)} characters long; at most {limit}"
            )
    page = page_problem(event.url) if event.url is not None else None
    if page is not None:
        raise InvalidDeploy("url", f"the event's url {page}")
    for label, said, nested in (
        ("custom", "customData", event.custom),
        ("details", "the source's details", event.details),
    ):
        if _deeper_than(nested, MAX_DEPTH):
            raise InvalidDeploy(label, f"{said} nests deeper than {MAX_DEPTH} levels")
    own = sorted(OWN_CUSTOM_KEYS.intersection(event.custom))
    if own:
        raise InvalidDeploy(
            "custom",
            f"customData.{own[0]} is the bridge's own (what it reads back from Cortex's "
            "record): use another key",
        )
    for label, moment in (
        ("timestamp", event.timestamp),
        ("started at", event.started_at),
        ("finished at", event.finished_at),
    ):
        if moment is not None and not (
            moment.utcoffset() is not None and EARLIEST <= moment < LATEST
        ):
            raise InvalidDeploy(
                label,
                f"the event's {label} {moment.isoformat()} is not a UTC time from "
                "1970-01-01T00:00:00Z up to (not including) 9999-01-01T00:00:00Z",
            )
    # A secret in the title is masked before the title is cut: one that ran across the cut
    # would be found whole in neither part, and its first characters recorded.
    uncut = title
    title = mask(title, looked_for)
    fixed = dataclasses.replace(
        event, title=title[:MAX_TITLE], deployer_name=name or None, deployer_email=email or None
    )
    data = event_to_dict(fixed)
    fixed, data, text, masked = _without_secrets(
        fixed, data, _as_stored(data), looked_for, title_masked=title != uncut
    )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate in customData or the details, key or value
        parts = _parts(data)
        # Named by its field; a key that is itself no text, by its part of the event.
        bad = next(
            (key if _encodes(key) else key.partition(".")[0])
            for key in parts
            if not (_encodes(key) and _encodes(parts[key]))
        )
        raise InvalidDeploy(
            bad, f"the event's {bad} holds an escape that is no text (a lone surrogate)"
        ) from None
    if size > MAX_EVENT_BYTES:
        parts = _parts(data)
        largest = max(parts, key=lambda key: len(_as_stored(parts[key]).encode("utf-8")))
        raise InvalidDeploy(
            largest,
            f"the event is {size} bytes stored, at most {MAX_EVENT_BYTES}: "
            f"its {largest} is too long",
        )
    return fixed, len(title), data, masked


def _without_secrets(
    event: DeployEvent,
    data: dict[str, Any],
    text: str,
    looked_for: tuple[str, ...],
    *,
    title_masked: bool = False,
) -> tuple[DeployEvent, dict[str, Any], str, tuple[str, ...]]:
    """The event (its stored form ``data``, as ``text``) with no secret of ``spelled`` in it,
    and the labels of the fields masked: a source that echoes a token into a deploy would put
    it in Cortex, for everyone who reads the catalog.

    Free text (the title, the url, the deployer, customData and the source's details) is
    recorded with each secret masked (``***``); one in a field that names the deploy was
    refused before (:func:`_refuse_secrets`). ``looked_for``: the spellings of the secrets
    (:func:`searched_secrets`). ``title_masked``: the title was masked before it was cut
    (:func:`_bounded`); it is named first among the fields masked.
    """
    first = ("title",) if title_masked else ()
    # Looked for as the stored JSON spells each (a value holding the secret JSON-escaped, a
    # JSON document kept as text, has its escapes escaped again there).
    if not any(_stored_spelling(s) in text for s in looked_for):
        return event, data, text, first
    changed: dict[str, Any] = {}
    for name in _FREE_TEXT:
        value = getattr(event, name)
        hidden = _masked_deep(value, looked_for)  # as the values themselves spell them
        if hidden != value:
            changed[name] = hidden
    event = dataclasses.replace(event, **changed)
    data = event_to_dict(event)
    return event, data, _as_stored(data), (*first, *(_LABELS.get(n, n) for n in changed))


def without_secrets(
    event: DeployEvent, entities: Sequence[str], spelled: Sequence[str]
) -> tuple[DeployEvent, tuple[str, ...]]:
    """A stored event (checked when it was stored) with the secrets of ``spelled`` its check
    did not look for masked in its free text, and the labels of the fields masked; an
    InvalidDeploy naming the field when one names the deploy (its ``entities`` too), as
    :func:`check_deploy` judges them. What the relay applies before it sends: the receiver
    that stored the event may not have held the worker's secrets (the Cortex token)."""
    looked_for = searched_secrets(spelled)
    _refuse_secrets(event, entities, looked_for)
    data = event_to_dict(event)
    fixed, _, _, masked = _without_secrets(event, data, _as_stored(data), looked_for)
    return fixed, masked


def searched_secrets(spelled: Sequence[str]) -> tuple[str, ...]:
    """The spellings of the secrets (:func:`bridge.redact.spellings`) a deploy's fields are
    searched for: those of at least MIN_SECRET characters."""
    return tuple(s for s in spelled if len(s) >= MIN_SECRET)


def _refuse_secrets(event: DeployEvent, entities: Sequence[str], looked_for: Sequence[str]) -> None:
    """InvalidDeploy naming the first field that names the deploy (repository, environment,
    deploy id, sha, entities, delivery id) and holds one of ``looked_for``: a mask there would
    make another deploy of it, and an entity is part of the key and of the request's URL.
    ``entities``: those given apart from the event's own (a face's input, a route's)."""
    if not looked_for:
        return
    named = (
        ("repository", (event.repository,)),
        ("environment", (event.environment,)),
        ("deploy id", (event.ref.id,)),
        ("sha", (event.sha,)),
        ("entity", (*event.entities, *entities)),
        ("delivery id", (event.delivery_id,)),
    )
    # One look through them all first, the usual case: no secret in any. A secret (nor any
    # spelling of it) holds no line break, so none is found across two of them.
    joined = "\n".join(value for _, values in named for value in values if value)
    if not any(spelling in joined for spelling in looked_for):
        return
    for label, values in named:
        if any(s in value for value in values if value for s in looked_for):
            raise InvalidDeploy(
                label,
                f"the event's {label} holds a secret the bridge was given (a token echoed "
                "back?); it is never sent to Cortex",
            )


def _stored_spelling(spelling: str) -> str:
    """``spelling`` as it stands inside a JSON string of the stored form (:func:`_as_stored`:
    non-ASCII kept; a secret holds no control character, so only these two are escaped)."""
    if "\\" not in spelling and '"' not in spelling:
        return spelling
    return spelling.replace("\\", "\\\\").replace('"', '\\"')


def _masked_deep(value: Any, held: tuple[str, ...]) -> Any:
    """``value`` (text, or JSON-like data, keys included) with each of ``held`` masked; a
    number whose digits hold one (a password of digits) becomes its text, masked."""
    if isinstance(value, str):
        return mask(value, held)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        digits = _as_stored(value)
        hidden = mask(digits, held)
        return value if hidden == digits else hidden
    if isinstance(value, Mapping):
        return {_masked_deep(k, held): _masked_deep(v, held) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked_deep(item, held) for item in value]
    return value


def _parts(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's stored form by field, each of the details a field of its own: what an
    error names."""
    parts = {key: value for key, value in data.items() if key != "details"}
    parts.update({f"details.{key}": value for key, value in data["details"].items()})
    return parts


def _encodes(value: Any) -> bool:
    """True when ``value``'s stored form is text UTF-8 encodes (no lone surrogate in it)."""
    try:
        _as_stored(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# A value as compact JSON text, whose UTF-8 bytes are its stored size (the standard library:
# ``send`` and the Action run on the base install, which has no orjson).
_as_stored = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
