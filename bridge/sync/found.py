"""What the SCM readers share: an item rebuilt as its webhook payload, parsed by its parser."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.sources.fields import Parser, keep_all
from bridge.sync.api import ScmError
from bridge.sync.reader import Found, Window
from bridge.times import format_timestamp


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


def json_list(value: object, where: str, *, most: int) -> list[Any]:
    """A list the API must answer, of at most the ``most`` items asked for (``per_page``);
    ScmError naming where otherwise."""
    if not isinstance(value, list):
        raise ScmError(f"{where} did not answer a list")
    if len(value) > most:
        raise ScmError(f"{where} answered {len(value)} items where at most {most} were asked for")
    return value


def whole_seconds(moment: datetime, *, up: bool = False) -> str:
    """A time for an API's filter, in whole seconds (rounded up when ``up``): GitHub's search
    syntax takes no fraction, and a window's end rounded up loses nothing."""
    whole = moment.replace(microsecond=0)
    return format_timestamp(whole + timedelta(seconds=1) if up and whole != moment else whole)
