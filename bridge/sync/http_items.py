"""One item of a deployment-list answer -> the bridge's DeployEvent, or why not. Pure.

An API's list is not a webhook the bridge must answer, so nothing here raises on a bad item:
an item that cannot be a deploy comes back as the reason (a string), which the sync reports as
skipped, and the rest of the list is read on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.config.http_paths import FieldPath
from bridge.config.http_sources import HttpSourceSpec
from bridge.model import FULL_SHA, DeployEvent, DeployRef, first_line
from bridge.sources.fields import shorten
from bridge.times import parse_timestamp
from bridge.urls import page_problem

# The event name http deploys carry (customData.event), and the kind of their DeployRef.
EVENT = "deployment"


def first(paths: tuple[FieldPath, ...], item: Any) -> Any:
    """The value at the first path that holds one (an empty string counts as none)."""
    for path in paths:
        value = path.get(item)
        if value is not None and value != "":
            return value
    return None


def item_id(spec: HttpSourceSpec, item: Any) -> str | None:
    """The item's id as text (a string or an integer), or None."""
    value = first(spec.fields.id, item)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def moment(paths: tuple[FieldPath, ...], item: Any) -> datetime | str | None:
    """The first timestamp at ``paths`` in UTC, None when absent, the reason when unreadable."""
    value = first(paths, item)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except (ValueError, OverflowError, OSError) as exc:
            return str(exc)
    return f"not a timestamp: {shorten(value)}"


def item_time(spec: HttpSourceSpec, item: Any) -> datetime | None:
    """When the item's deploy ended, else began (its event time); None when not readable."""
    for paths in (spec.fields.finished_at, spec.fields.started_at):
        when = moment(paths, item)
        if isinstance(when, datetime):
            return when
    return None


def to_event(spec: HttpSourceSpec, item: Any) -> DeployEvent | str:
    """The deploy an item describes, or the reason it is not one."""
    if not isinstance(item, Mapping):
        return f"an item that is not an object: {shorten(item)}"
    ident = item_id(spec, item)
    if ident is None:
        return f"an item with no id at {_where(spec.fields.id)}: {shorten(dict(item), 80)}"
    name = f"deployment {ident}"
    word = first(spec.fields.status, item)
    if not isinstance(word, str) or not word.strip():
        return f"{name}: no status at {_where(spec.fields.status)}"
    key = word.strip().lower()
    if key not in spec.status:
        return f"{name}: status {word!r} is not mapped in http_sources.{spec.name}.status"
    status = spec.status[key]
    if status is None:
        return f"{name}: status {word!r} is mapped to skip"
    finished = moment(spec.fields.finished_at, item)
    started = moment(spec.fields.started_at, item)
    if isinstance(finished, str):
        return f"{name}: bad time at {_where(spec.fields.finished_at)}: {finished}"
    if isinstance(started, str):
        return f"{name}: bad time at {_where(spec.fields.started_at)}: {started}"
    when = finished or started
    if when is None or (status.is_final and finished is None):
        return f"{name}: status {word!r} but no time at {_where(spec.fields.finished_at)}"
    environment = first(spec.fields.environment, item)
    if environment is not None and not _is_text(environment):
        # An object or a list: not recorded as "no environment" (a key of its own).
        where = _where(spec.fields.environment)
        return f"{name}: the environment at {where} is not text: {shorten(environment)}"
    return DeployEvent(
        source=spec.name,
        repository=spec.repository,
        event=EVENT,
        ref=DeployRef(EVENT, ident),
        status=status,
        timestamp=when,
        title=first_line(_text(spec.fields.title, item)),
        sha=_sha(first(spec.fields.sha, item)),
        environment=_text(spec.fields.environment, item) or spec.environment,
        url=_url(first(spec.fields.url, item)),
        deployer_name=_text(spec.fields.deployer, item),
        deployer_email=_email(first(spec.fields.deployer_email, item)),
        started_at=started,
        finished_at=finished if status.is_final else None,
        details={"deploymentId": ident, "sourceStatus": word.strip()},
    )


def _where(paths: tuple[FieldPath, ...]) -> str:
    return " or ".join(repr(path.text) for path in paths) or "(no path)"


def _is_text(value: Any) -> bool:
    """A string, or an integer written as text (not a boolean, an object or a list)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _text(paths: tuple[FieldPath, ...], item: Any) -> str | None:
    value = first(paths, item)
    return (str(value).strip() or None) if _is_text(value) else None


def _sha(value: Any) -> str | None:
    """Only a full sha (40 or 64 hex) is a commit Cortex can link; anything else is not known."""
    if isinstance(value, str) and FULL_SHA.fullmatch(value.strip()):
        return value.strip().lower()
    return None


def _url(value: Any) -> str | None:
    """A page a person can open (http or https, not an API URL), else not known."""
    if isinstance(value, str) and page_problem(value.strip(), api=False) is None:
        return value.strip()
    return None


def _email(value: Any) -> str | None:
    if isinstance(value, str) and "@" in value.strip() and " " not in value.strip():
        return value.strip()
    return None
