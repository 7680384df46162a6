"""From one verified, decoded webhook delivery to an answer: ignored, duplicate, or queued.

No HTTP here: the view hands over the decoded body and headers' facts, and turns the
``Answer`` into a response. The event is stored before "queued" is answered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.config import Config, route
from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.mapping import deploy_key
from bridge.model import DeployEvent, Status, check_deploy
from bridge.record.core import ignore_reason, routed, to_payload
from bridge.sources import parse_event
from bridge.store import Store
from bridge.store.store import MAX_KEY_LENGTH

MAX_ID_LENGTH = 200


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
    headers = [header for header in (scope, delivery) if header is not None]
    values = [_delivery_id(*header) for header in headers]
    if not values[-1]:
        return f"{source}#sha256:{hashlib.sha256(body).hexdigest()}"
    key = ":".join([source, *(_escape(value) for value in values)])
    if len(key) > MAX_KEY_LENGTH:
        # Escaping triples a ":" or "%": two ids of 200 of those would not fit the outbox.
        names = " and ".join(name for name, value in headers if value and value.strip())
        raise MalformedEvent(f"{names} are too long for a de-duplication key, once escaped")
    return key


def event_key(event: DeployEvent) -> str:
    """The de-duplication key of a sender without delivery ids: the deploy and its status.

    Flux reports an applied revision again on every reconcile, each time with a new message,
    and retries identical bodies; Argo CD may notify twice of one operation. Any report of the
    same deploy in the same state is a repeat, whatever else its body says.
    """
    named = f"{deploy_key(event)}\n{event.status.value}".encode()
    return f"{event.source}#deploy:{hashlib.sha256(named).hexdigest()}"


def _delivery_id(name: str, value: str | None) -> str:
    value = (value or "").strip()
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        # GitHub's and GitLab's ids are short printable GUIDs or numbers; anything else is
        # not one of theirs, and a NUL could not even be stored (PostgreSQL text).
        raise MalformedEvent(f"{name} is not a printable id of at most {MAX_ID_LENGTH} characters")
    return value


def _escape(value: str) -> str:
    return value.replace("%", "%25").replace(":", "%3A")


def ingest(
    source: str,
    event_name: str,
    payload: Any,
    *,
    key: str | None,
    delivery_id: str | None,
    config: Config,
    store: Store,
    clock: Callable[[], datetime],
    received: Callable[[], str] | None = None,
) -> Answer:
    """Parse, filter and route one delivery; store it when it records a deploy.

    ``received``: makes the copy of the webhook kept with it (only for an event stored).
    ``key`` is the delivery's de-duplication key; None for a sender that gives no delivery id
    (Flux, Argo CD): the key is then the deploy's own and its status (:func:`event_key`).
    """
    if not config.sources.enabled(source):
        return ignored(f"source {source} is disabled (sources.{source}.enabled)")

    def screen(status: Status) -> None:
        reason = ignore_reason(status, config)
        if reason is not None:
            raise UnsupportedEvent(reason)

    try:
        event = parse_event(source, event_name, payload, delivery_id=delivery_id, screen=screen)
        limit = config.server.max_entities_per_event
        # The model's one validation: of what the payload named, then of what it is routed to.
        named = check_deploy(event, event.entities, max_entities=limit)
        event = named.event
        where = route(config, event)
        checked = check_deploy(routed(event, where), where.entities, max_entities=limit)
        notes = named.notes + checked.notes
    except UnsupportedEvent as exc:
        return ignored(exc.reason)
    except MalformedEvent as exc:
        return Answer(400, {"status": "rejected", "reason": str(exc)})
    payload = to_payload(event, where)
    if key is None:
        key = event_key(routed(event, where))
    # Events of one deploy share a group: the outbox hands them out one at a time, in order,
    # so two workers never race to create one record (two hooks, a lifecycle's start and end).
    delivery_id_, created = store.enqueue(
        dedupe_key=key,
        source=source,
        event_name=event_name,
        payload=payload,
        now=clock(),
        group_key=deploy_key(routed(event, where)),
        received=received() if received is not None else None,
    )
    if not created:
        return Answer(200, {"status": "duplicate", "id": delivery_id_})
    answer: dict[str, Any] = {"id": delivery_id_, "status": "queued"}
    if notes:  # nothing shortened without a word
        answer["notes"] = [f"{field}: {text}" for field, text in notes]
    return Answer(202, answer, queued=True)
