"""Webhook sources: a table ``(source, event name) -> parser`` from payloads to DeployEvents.

Pure: parsers read a decoded JSON payload and return a :class:`~bridge.model.DeployEvent`, or
raise :class:`~bridge.errors.UnsupportedEvent` (records nothing, answered "ignored") or
:class:`~bridge.errors.MalformedEvent` (names the missing field, answered 400).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.model import DeployEvent
from bridge.sources import argocd, flux, github, gitlab
from bridge.sources.fields import Parser, Screen, keep_all, shorten

# The event name is GitHub's X-GitHub-Event header, GitLab's X-Gitlab-Event header, the kind
# of the object a Flux event is about, and "sync" for Argo CD's notifications.
PARSERS: Mapping[tuple[str, str], Parser] = MappingProxyType(
    {
        **{("github", name): parser for name, parser in github.PARSERS.items()},
        **{("gitlab", name): parser for name, parser in gitlab.PARSERS.items()},
        **{("flux", name): parser for name, parser in flux.PARSERS.items()},
        **{("argocd", name): parser for name, parser in argocd.PARSERS.items()},
    }
)

SOURCES = frozenset(source for source, _ in PARSERS)


def parse_event(
    source: str,
    event_name: str,
    payload: Any,
    *,
    delivery_id: str | None = None,
    screen: Screen = keep_all,
) -> DeployEvent:
    """The DeployEvent one webhook delivery describes, or why it records nothing.

    ``screen``: the statuses whose events record nothing, and why; the parser stops there
    (UnsupportedEvent) as soon as it knows the status, without reading the rest.
    """
    parser = PARSERS.get((source, event_name))
    if parser is None:
        raise UnsupportedEvent(_unsupported(source, event_name))
    if not isinstance(payload, Mapping):
        raise MalformedEvent(f"{event_name} payload is not a JSON object")
    return dataclasses.replace(parser(payload, screen), delivery_id=delivery_id)


def _unsupported(source: str, event_name: str) -> str:
    if source not in SOURCES:
        return f"source {shorten(source)} is not supported"
    if not isinstance(event_name, str) or not event_name.strip():
        return f"{source} deliveries without an event name are not recorded"
    name = event_name if len(event_name) <= 60 else event_name[:57] + "..."
    return f"{name} events are not recorded"


__all__ = ["PARSERS", "Parser", "Screen", "keep_all", "parse_event"]
