"""Where a value sits in a JSON answer: dotted paths with list look-ups. Pure.

A path is keys joined by dots, each optionally followed by one list selector:

- ``deployments``, ``commit.sha``: keys of nested objects;
- ``phases[0]``, ``phases[-1]``: an element of a list by position (negative from the end);
- ``phases[name=orchestrate].startedAt``: the first element of a list whose ``name`` is
  ``orchestrate`` (compared as text), then its ``startedAt``.

A missing key, an index past the end, no matching element, or a value of the wrong kind
reads as None: an API that leaves a field out means "not known", never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.errors import ConfigError

_STEP = re.compile(
    r"(?P<key>[^.\[\]=]+)"
    r"(?:\[(?:(?P<index>-?\d{1,6})|(?P<field>[^.\[\]=]+)=(?P<value>[^\[\]]*))\])?"
)


@dataclass(frozen=True)
class Step:
    """One key, then optionally an index or a ``field=value`` look-up in the list there."""

    key: str
    index: int | None = None
    field: str | None = None
    value: str | None = None

    def take(self, data: Any) -> Any:
        """The value this step leads to from ``data``, or None."""
        if not isinstance(data, Mapping):
            return None
        value = data.get(self.key)
        if self.index is None and self.field is None:
            return value
        if not isinstance(value, list):
            return None
        if self.index is not None:
            return value[self.index] if -len(value) <= self.index < len(value) else None
        return next((item for item in value if _has(item, self.field, self.value)), None)


def _has(item: Any, field: str | None, wanted: str | None) -> bool:
    if not isinstance(item, Mapping) or field is None:
        return False
    value = item.get(field)
    return value is not None and not isinstance(value, (Mapping, list)) and str(value) == wanted


@dataclass(frozen=True)
class FieldPath:
    """A parsed path; ``text`` is how the config spelled it (for messages)."""

    text: str
    steps: tuple[Step, ...]

    def get(self, data: Any) -> Any:
        """The value at this path in ``data``, or None; the empty path is ``data`` itself."""
        for step in self.steps:
            data = step.take(data)
            if data is None:
                return None
        return data


def parse_path(value: Any, key: str) -> FieldPath:
    """A path from the config; a ConfigError naming ``key`` when it cannot be one."""
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a dotted path (a string), got {value!r}")
    text = value.strip()
    if not text:
        raise ConfigError(key, "must not be empty")
    steps = []
    for part in text.split("."):
        match = _STEP.fullmatch(part)
        if match is None:
            raise ConfigError(
                key,
                f"not a field path: {text!r} (expected keys joined by dots, each optionally "
                "followed by [index] or [field=value])",
            )
        index = match["index"]
        steps.append(
            Step(
                key=match["key"],
                index=int(index) if index is not None else None,
                field=match["field"],
                value=match["value"],
            )
        )
    return FieldPath(text, tuple(steps))


ROOT = FieldPath("", ())
