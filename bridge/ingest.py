"""From one verified, decoded webhook delivery to an answer: ignored, duplicate, or queued.

No HTTP here: the view hands over the decoded body and headers' facts, and turns the
``Answer`` into a response. The event is stored before "queued" is answered, with the copy
of the webhook the console shows (:func:`received_copy`). What a delivery needs of the
config is worked out once, when the receiver starts (:func:`prepare_intake`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from bridge.config import Config
from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.mapping import deploy_key
from bridge.model import MIN_SECRET, DeployEvent, Status, searched_secrets
from bridge.record.core import ignore_reason, route_checked
from bridge.redact import MASK, USERINFO, cut, mask, mask_userinfo, spellings
from bridge.sources import PARSERS, Parser, parse_event
from bridge.sources.fields import CUT
from bridge.store import Store
from bridge.store.store import MAX_KEY_LENGTH

MAX_ID_LENGTH = 200
# The fewest characters of a secret's start, just before a cut, that a refusal masks (unshown).
SHOWN = 4


@dataclass(frozen=True)
class Answer:
    """An HTTP status and its JSON body."""

    status: int
    body: dict[str, Any]
    queued: bool = False


def ignored(reason: str) -> Answer:
    """200: the event records nothing, and why."""
    return Answer(200, {"status": "ignored", "reason": reason})


# A header and its value (None when absent), for the de-duplication key.
Header = tuple[str, str | None]


def dedupe_key(source: str, delivery: Header, *, scope: Header | None = None, body: bytes) -> str:
    """The outbox's de-duplication key: the SCM's delivery id (in its hook), else a digest.

    No two different header sets give one key. An id is stripped and percent-escaped (``%`` and
    ``:``), so a ``:`` in a key only ever separates; GitHub's key always has both places, the
    hook's empty when its header is absent (``github::D`` is not ``github:1:D`` with no hook);
    and a key made from the body's digest, when there is no delivery id, has ``#`` after the
    source where every id's key has ``:``. Ids free of ``%`` and ``:`` with both GitHub
    headers present (every real delivery) give the keys earlier versions stored, so a
    redelivery of an event received before an upgrade is still a duplicate; stored rows need
    no rewriting (only keys of deliveries without the hook id header, or digest keys, which no
    real GitHub or GitLab delivery has, would read differently now).
    """
    headers = (delivery,) if scope is None else (scope, delivery)
    parts = [source]
    for name, given in headers:
        value = (given or "").strip()
        if len(value) > MAX_ID_LENGTH or not value.isprintable():
            # GitHub's and GitLab's ids are short printable GUIDs or numbers; anything else is
            # not one of theirs, and a NUL could not even be stored (PostgreSQL text).
            raise MalformedEvent(
                f"{name} is not a printable id of at most {MAX_ID_LENGTH} characters"
            )
        parts.append(value.replace("%", "%25").replace(":", "%3A"))
    if not parts[-1]:
        return f"{source}#sha256:{hashlib.sha256(body).hexdigest()}"
    key = ":".join(parts)
    if len(key) > MAX_KEY_LENGTH:
        # Escaping triples a ":" or "%": two ids of 200 of those would not fit the outbox.
        names = " and ".join(name for name, value in headers if value and value.strip())
        raise MalformedEvent(f"{names} are too long for a de-duplication key, once escaped")
    return key


def unshown(reason: str, spelled: tuple[str, ...]) -> str:
    """A reason the receiver answers, logs and keeps, with any secret it holds (``spelled``,
    :func:`bridge.redact.spellings`; those the model looks for, MIN_SECRET characters or
    more) masked. A parser's reason may show a value of the payload (a bad sha, a state, an
    event's name), cut to 60 characters (bridge.sources.fields.shorten): a secret the cut ran
    across is masked from its first MIN_SECRET characters on, so none of it shows. The
    model's own refusals name the field and never show it (bridge.model.check_deploy); a cut
    that left fewer of a secret's characters (the start of it just before the cut's "...")
    is masked too, from SHOWN characters on (fewer say nothing of it, and would mask any value
    whose last character a secret begins with)."""
    cut = CUT in reason
    if not cut and not any(spelling[:MIN_SECRET] in reason for spelling in spelled):
        return reason  # the usual case: one scan per secret, nothing built
    looked_for = searched_secrets(spelled)
    reason = mask(reason, looked_for)
    for spelling in looked_for:
        at = reason.find(spelling[:MIN_SECRET])
        if at != -1:
            reason = reason[:at] + MASK
    at = reason.find(CUT)
    while at != -1:
        before = reason[:at]
        shown = max(
            (n for s in looked_for for n in range(SHOWN, MIN_SECRET) if before.endswith(s[:n])),
            default=0,
        )
        if shown:
            reason = before[:-shown] + MASK + reason[at:]
            at += len(MASK) - shown
        at = reason.find(CUT, at + len(CUT))
    return reason


def event_key(event: DeployEvent) -> str:
    """The de-duplication key of a sender without delivery ids: the deploy and its status.

    Flux reports an applied revision again on every reconcile, each time with a new message,
    and retries identical bodies; Argo CD may notify twice of one operation. Any report of the
    same deploy in the same state is a repeat, whatever else its body says.
    """
    named = f"{deploy_key(event)}\n{event.status.value}".encode()
    return f"{event.source}#deploy:{hashlib.sha256(named).hexdigest()}"


@dataclass(frozen=True)
class Intake:
    """What ingesting a delivery needs of the config and the secrets, worked out once."""

    config: Config
    # The parsers of the enabled sources, by (source, event name): one lookup per delivery.
    parsers: Mapping[tuple[str, str], Parser]
    # The statuses whose events record nothing under ``record:`` (record/core's
    # ``ignore_reason``), and why: a parser stops reading there.
    skipped: Mapping[Status, str]
    # Every way the receiver's secrets can be spelled (bridge.redact), masked in the copy kept.
    secrets: tuple[str, ...]


def prepare_intake(config: Config, secrets: Iterable[str]) -> Intake:
    """The :class:`Intake` of ``config``: built when the receiver starts, not per delivery."""
    parsers = {key: p for key, p in PARSERS.items() if config.sources.enabled(key[0])}
    reasons = {status: ignore_reason(status, config) for status in Status}
    skipped = {status: reason for status, reason in reasons.items() if reason is not None}
    return Intake(config, MappingProxyType(parsers), MappingProxyType(skipped), spellings(secrets))


def ingest(
    source: str,
    event_name: str,
    payload: Any,
    *,
    key: str | None,
    delivery_id: str | None,
    intake: Intake,
    store: Store,
    clock: Callable[[], datetime],
    received: tuple[Mapping[str, Any], bytes] | None = None,
) -> Answer:
    """Parse, filter and route one delivery; store it when it records a deploy.

    ``received``: the webhook's WSGI environ and body, kept (:func:`received_copy`) with an
    event stored. ``key`` is the delivery's de-duplication key; None for a sender that gives
    no delivery id (Flux, Argo CD): the key is then the deploy's own and its status
    (:func:`event_key`).
    """
    config = intake.config
    parser = intake.parsers.get((source, event_name))
    try:
        if parser is not None and type(payload) is dict:
            event = dataclasses.replace(parser(payload, intake.skipped), delivery_id=delivery_id)
        elif not config.sources.enabled(source):
            return ignored(f"source {source} is disabled (sources.{source}.enabled)")
        else:  # an event not recorded, or a body that is not an object: parse_event says so
            event = parse_event(
                source, event_name, payload, delivery_id=delivery_id, screen=intake.skipped
            )
        # The model's one check, as routed: a field holding one of the receiver's secrets too.
        where, checked = route_checked(config, event, intake.secrets)
    except UnsupportedEvent as exc:
        return ignored(unshown(exc.reason, intake.secrets))
    except MalformedEvent as exc:
        return Answer(400, {"status": "rejected", "reason": unshown(str(exc), intake.secrets)})
    event = checked.event
    # Events of one deploy share a group: the outbox hands them out one at a time, in order,
    # so two workers never race to create one record (two hooks, a lifecycle's start and end).
    delivery_id_, created = store.enqueue(
        dedupe_key=key if key is not None else event_key(event),
        source=source,
        event_name=event_name,
        # The event as routed and checked, in the stored form the check made (Checked.stored),
        # and its entities: what the relay reads back (worker.Deliverer.deliver).
        payload={"event": checked.stored, "entities": list(where.entities), "rule": where.rule},
        now=clock(),
        group_key=deploy_key(event),
        received=received_copy(*received, intake.secrets) if received is not None else None,
    )
    if not created:
        return Answer(200, {"status": "duplicate", "id": delivery_id_})
    answer: dict[str, Any] = {"id": delivery_id_, "status": "queued"}
    if checked.notes:  # nothing shortened without a word
        answer["notes"] = [f"{field}: {text}" for field, text in checked.notes]
    return Answer(202, answer, queued=True)


# The most of a webhook's body kept with its delivery (docs/limits.md).
MAX_RECEIVED_BYTES = 64 * 1024

# Headers kept, by their WSGI names; values cut to 200 characters.
_KEPT = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_USER_AGENT": "User-Agent",
    "HTTP_X_GITHUB_EVENT": "X-GitHub-Event",
    "HTTP_X_GITHUB_DELIVERY": "X-GitHub-Delivery",
    "HTTP_X_GITHUB_HOOK_ID": "X-GitHub-Hook-ID",
    "HTTP_X_GITLAB_EVENT": "X-Gitlab-Event",
    "HTTP_X_GITLAB_EVENT_UUID": "X-Gitlab-Event-UUID",
    "HTTP_X_GITLAB_INSTANCE": "X-Gitlab-Instance",
    "HTTP_IDEMPOTENCY_KEY": "Idempotency-Key",
}


# A URL whose user info the cut may have split: "scheme://" and then no "@", "/" nor space
# to the end (what mask_userinfo needs the "@" of to find).
_OPEN_URL = re.compile(r"://[^/\s\"'@]*\Z")


def _unopened(text: str) -> str:
    """A cut text whose last URL may end in part of its user info: that part masked."""
    found = _OPEN_URL.search(text, max(0, len(text) - 512))
    return text if found is None else text[: found.start() + 3] + MASK


def received_copy(environ: Mapping[str, Any], body: bytes, secrets: tuple[str, ...]) -> str:
    """The JSON text kept for one webhook: ``{"headers": {...}, "body": "...", ...}``.

    Only headers that say what the webhook was are kept (never a signature, a token, a
    cookie); the body is cut to MAX_RECEIVED_BYTES, and every known secret (``secrets``: their
    spellings, from :func:`bridge.redact.spellings`) and any password in a URL is masked, so
    what the console shows is safe to show.
    """
    headers = {
        name: cut(str(environ[key]), 200, secrets)
        for key, name in _KEPT.items()
        if environ.get(key)
    }
    text = body[:MAX_RECEIVED_BYTES].decode("utf-8", "replace")
    if len(body) > MAX_RECEIVED_BYTES:
        # Masked before the cut (a secret across it is never kept in part): the next bytes,
        # as many as the longest secret could take, read too.
        reach = 4 * len(secrets[0]) + 4 if secrets else 0
        text = _unopened(
            cut(body[: MAX_RECEIVED_BYTES + reach].decode("utf-8", "replace"), len(text), secrets)
        )
    elif any(secret in text for secret in secrets):
        text = mask(text, secrets)
    if USERINFO.search(text) is not None:
        text = mask_userinfo(text)
    kept: dict[str, Any] = {"headers": headers, "body": text, "bytes": len(body)}
    if len(body) > MAX_RECEIVED_BYTES:
        kept["truncated"] = True
    # orjson writes the standard library's text (json.dumps, every character past "~"
    # escaped) whenever it writes none past "~" (an ASCII webhook, the usual one), in a fifth
    # of the time on a webhook's body (benchmarks/RESULTS.md, "Stored path CPU"); otherwise,
    # or for a lone surrogate orjson refuses, the standard library writes it.
    with contextlib.suppress(orjson.JSONEncodeError):
        written = orjson.dumps(kept)
        if written.isascii() and b"\x7f" not in written:
            return written.decode()
    return json.dumps(kept, separators=(",", ":"))
