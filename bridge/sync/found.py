"""What the SCM readers share: an item rebuilt as its webhook payload, parsed by its parser."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.sources.fields import Parser, keep_all
from bridge.sync.api import ScmError
from bridge.sync.reader import Found, Window


def parsed(parser: Parser, payload: Mapping[str, Any], window: Window) -> Found:
    """The webhook parser's event for a rebuilt payload; why not, if it is not a deploy.

    A deploy that finished outside the window is an empty Found, which reports nothing.
    """
    try:
        event = parser(payload, keep_all)
    except UnsupportedEvent as exc:
        return Found(None, exc.reason)
    except MalformedEvent as exc:
        return Found(None, str(exc))
    if not window.since <= event.timestamp < window.until:
        # Read because the lists go by creation (or update) time; not the window's: left
        # out quietly, as a deploy the API did not list would be (an empty Found).
        return Found(None)
    return Found(event)


def json_list(value: object, where: str) -> list[Any]:
    """A list the API must answer; ScmError naming where otherwise."""
    if not isinstance(value, list):
        raise ScmError(f"{where} did not answer a list")
    return value
