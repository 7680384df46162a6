"""Defensive reads of an untrusted webhook payload: every miss is None or a MalformedEvent.

A webhook body is whatever reached the receiver, so no read here may raise anything but
:class:`~bridge.errors.MalformedEvent`: no KeyError, no TypeError, whatever the JSON holds.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, overload

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.model import FULL_SHA, HEX_SHA, DeployEvent, Status
from bridge.times import parse_timestamp
from bridge.urls import page_problem

# The statuses whose events record nothing, and why (the receiver's, worked out once from
# ``record:``): a parser looks its event's status up as soon as it knows it, before the rest is
# read, and raises UnsupportedEvent with the reason, so that the many events a receiver
# ignores (a deployment's queued and in_progress states) cost little to answer.
Screen = Mapping[Status, str]
# A source's parser of one event: its payload to a DeployEvent, told the screen.
Parser = Callable[[Mapping[str, Any], Screen], DeployEvent]

# The screen that stops nothing: read every event in full.
keep_all: Screen = MappingProxyType({})


# What ends a value :func:`shorten` cut.
CUT = "..."


def shorten(value: object, limit: int = 60) -> str:
    """The repr of ``value``, cut so that a garbage payload cannot bloat an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def pick(table: Mapping[str, Status], key: str, reason: str) -> Status:
    """The status a source's state word maps to; a word not in the table records nothing.

    ``reason`` is the "ignored" reason with ``{}`` where the word goes (shortened): built only
    for a word that is not in the table, not for every event.
    """
    status = table.get(key)
    if status is None:
        raise UnsupportedEvent(reason.format(shorten(key)))
    return status


def compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries whose value is known (not None)."""
    return {key: value for key, value in values.items() if value is not None}


@functools.lru_cache(maxsize=512)
def _steps(path: str) -> tuple[str, ...]:
    # The parsers read a few dozen fixed paths, each on every event.
    return tuple(path.split("."))


@dataclass(frozen=True)
class Fields:
    """Typed, dotted-path reads of one event's payload; errors name the event and the path."""

    payload: Mapping[str, Any]
    event: str  # the event's name, as errors say it

    def get(self, path: str) -> Any:
        """The value at a dotted path, or None when any step is missing or not an object."""
        value: Any = self.payload
        for key in _steps(path):
            # A decoded JSON object is a dict: checked first, before the ABC's slower check.
            if type(value) is not dict and not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value

    def missing(self, path: str) -> MalformedEvent:
        """The error for a field the event must carry."""
        return MalformedEvent(f"{self.event} payload has no {path!r}")

    def bad(self, path: str, value: object) -> MalformedEvent:
        """The error for a field that is there but unusable."""
        return MalformedEvent(f"{self.event} payload has a bad {path!r}: {shorten(value)}")

    # mapping, text, number and moment take ``required=True`` for a field the event must carry
    # (``fields.text("repository.full_name", required=True)``): then a miss is not None but the
    # MalformedEvent :meth:`missing`, naming the first path. The overloads say so to mypy.

    @overload
    def mapping(self, path: str, *, required: Literal[True]) -> Mapping[str, Any]: ...
    @overload
    def mapping(self, path: str, *, required: bool = False) -> Mapping[str, Any] | None: ...
    def mapping(self, path: str, *, required: bool = False) -> Mapping[str, Any] | None:
        """An object, or None when absent or of another type."""
        value = self.get(path)
        if isinstance(value, Mapping):
            return value
        if required:
            raise self.missing(path)
        return None

    @overload
    def text(self, *paths: str, required: Literal[True]) -> str: ...
    @overload
    def text(self, *paths: str, required: bool = False) -> str | None: ...
    def text(self, *paths: str, required: bool = False) -> str | None:
        """The first non-blank string among ``paths``, stripped. A number, a boolean or a list
        there is a MalformedEvent naming the path (a deploy never loses its environment to a
        payload that gave it in another type); null, an absent key or an object (another
        shape of the payload, for a path that falls back to the next) count as absent."""
        for path in paths:
            value = self.get(path)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, (int, float, bool, list)):
                raise self.bad(path, value)
        if required:
            raise self.missing(paths[0])
        return None

    @overload
    def number(self, path: str, *, required: Literal[True]) -> int: ...
    @overload
    def number(self, path: str, *, required: bool = False) -> int | None: ...
    def number(self, path: str, *, required: bool = False) -> int | None:
        """A non-negative integer id (an int or a string of digits), None when absent."""
        value = self.get(path)
        if value is None:
            if required:
                raise self.missing(path)
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 30:
            return int(value)
        raise self.bad(path, value)

    @overload
    def moment(self, *paths: str, required: Literal[True]) -> datetime: ...
    @overload
    def moment(self, *paths: str, required: bool = False) -> datetime | None: ...
    def moment(self, *paths: str, required: bool = False) -> datetime | None:
        """The first present timestamp among ``paths``, in UTC; unparseable is malformed."""
        for path in paths:
            value = self.get(path)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise self.bad(path, value)
            try:
                return parse_timestamp(value)
            except (ValueError, OverflowError, OSError) as exc:
                raise self.bad(path, value) from exc
        if required:
            raise self.missing(paths[0])
        return None

    def sha(self, path: str, *, short: bool = False) -> str | None:
        """A full hex commit sha (40 digits, 64 in a SHA-256 repository), lower-cased, or None
        when absent; with ``short``, an abbreviated one too (GitLab's ``short_sha``)."""
        value = self.get(path)
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not (HEX_SHA if short else FULL_SHA).fullmatch(value):
            raise self.bad(path, value)
        return value.lower()

    def url(self, *paths: str) -> str | None:
        """The first page URL among ``paths``; API URLs, URLs with user info and non-URLs are
        skipped (bridge.urls.page_problem)."""
        for path in paths:
            value = self.text(path)
            if value is not None and page_problem(value, api=False) is None:
                return value
        return None
