"""Argo CD notifications as DeployEvents: one sync operation of one Application.

Argo CD's ``webhook`` notification service posts the body its template renders
(argo-cd docs/operator-manual/notifications/services/webhook.md); the template this project
publishes (docs/gitops.md, ``template.cortex-deploy``) renders::

    {"app": {"uid", "name", "namespace", "project", "labels", "annotations",
             "destination", "sources": [{"repoURL", "path", "chart", "targetRevision"}]},
     "operation": {"phase", "startedAt", "finishedAt", "message",
                   "initiatedBy": {"username", "automated"}, "revision", "revisions"},
     "url": "<argocdUrl>/applications/<namespace>/<name>"}

from ``app.metadata``, ``app.spec`` and ``app.status.operationState`` (its ``syncResult``
revision(s), else the operation's requested ones). One sync operation is one deploy: it is
named by the Application's uid and the operation's ``startedAt``, which Argo CD also keeps as
the ``deployStartedAt`` of the history entry the operation leaves, so ``sync --argocd``
rebuilds this body from ``status.history`` and arrives at the same key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.model import MAX_NAME, MAX_TITLE, DeployEvent, DeployRef, Status, first_line
from bridge.sources.fields import Fields, Parser, Screen, compact, keep_all, pick
from bridge.sources.gitops import (
    ENVIRONMENT_KEYS,
    TAG_KEYS,
    git_sha,
    object_path,
    short_revision,
    tags,
)
from bridge.times import format_timestamp

# operationState.phase (pkg/apis/application/v1alpha1, synccommon.OperationPhase).
PHASES: Mapping[str, Status] = MappingProxyType(
    {
        "running": Status.IN_PROGRESS,
        "succeeded": Status.SUCCEEDED,
        "failed": Status.FAILED,
        "error": Status.FAILED,
    }
)
# The event name the receiver uses for every notification (they are all sync operations).
EVENT = "sync"
# Sources of a multi-source Application the bridge keeps (each is a revision in customData).
MAX_SOURCES = 20
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def parse_sync(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """One Application's sync operation: started (Running), Succeeded, Failed or Error."""
    fields = Fields(payload, "Argo CD notification")
    fields.mapping("app", required=True)
    fields.mapping("operation", required=True)
    phase = fields.text("operation.phase", required=True).lower()
    status = pick(PHASES, phase, "sync phase {} is not recorded")
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    started = fields.moment("operation.startedAt", required=True)
    timestamp = fields.moment("operation.finishedAt", required=True) if status.is_final else started
    uid = fields.text("app.uid", required=True)
    name = fields.text("app.name", required=True)
    path = object_path(fields.text("app.namespace", required=True), name)
    revisions = _revisions(fields)
    sha = next((found for found in (git_sha(r, bare=True) for r in revisions) if found), None)
    entities = tags(_label(fields, key) for key in TAG_KEYS)
    user, email = _initiator(fields)
    return DeployEvent(
        source="argocd",
        repository=path,
        event=EVENT,
        ref=DeployRef("operation", f"{uid}/{format_timestamp(started)}"),
        status=status,
        timestamp=timestamp,
        title=_title(name, revisions),
        sha=sha,
        environment=next((e for e in (_label(fields, k) for k in ENVIRONMENT_KEYS) if e), None),
        url=fields.url("url"),
        deployer_name=user,
        deployer_email=email,
        started_at=started,
        finished_at=timestamp if status.is_final else None,
        details=_details(fields, path, uid, revisions, entities),
        entities=entities,
    )


PARSERS: Mapping[str, Parser] = MappingProxyType({EVENT: parse_sync})


def _revisions(fields: Fields) -> list[str]:
    """The synced revision(s): one per source; the syncResult's, else the requested ones."""
    many = fields.get("operation.revisions")
    if many is not None and not isinstance(many, list):
        raise fields.bad("operation.revisions", many)
    if many:
        if len(many) > MAX_SOURCES:
            raise MalformedEvent(
                f"Argo CD notification names {len(many)} revisions; at most {MAX_SOURCES}"
            )
        if not all(isinstance(item, str) and item.strip() for item in many):
            raise fields.bad("operation.revisions", many)
        return [item.strip() for item in many]
    one = fields.text("operation.revision")
    return [one] if one else []


def _label(fields: Fields, key: str) -> str | None:
    """An annotation, else a label, of the Application (keys hold dots: read as mappings)."""
    for where in ("app.annotations", "app.labels"):
        found = (fields.mapping(where) or {}).get(key)
        if found is not None and not isinstance(found, str):
            raise fields.bad(f"{where}.{key}", found)
        if found and found.strip():
            return found.strip()
    return None


def _initiator(fields: Fields) -> tuple[str | None, str | None]:
    """Who started the operation: the user (their email when the name is one), or automated."""
    user = fields.text("operation.initiatedBy.username")
    if user is None:
        automated = fields.get("operation.initiatedBy.automated") is True
        return ("automated" if automated else None), None
    return user, (user if _EMAIL.fullmatch(user) else None)


def _title(name: str, revisions: Sequence[str]) -> str:
    what = ", ".join(short_revision(r) for r in revisions[:3]) or "its target"
    return f"Argo CD sync of {name} to {what}"[:MAX_TITLE]


def _details(
    fields: Fields, path: str, uid: str, revisions: list[str], entities: tuple[str, ...]
) -> dict[str, Any]:
    sources = fields.get("app.sources")
    if sources is not None and not isinstance(sources, list):
        raise fields.bad("app.sources", sources)
    return compact(
        {
            "application": path,
            "uid": uid,
            "project": _bounded(fields, "app.project"),
            "destination": _destination(fields),
            "revision": revisions[0][:MAX_NAME] if len(revisions) == 1 else None,
            "revisions": _paired(sources or [], revisions) if len(revisions) > 1 else None,
            "repoURL": _repo(sources or []) if len(revisions) <= 1 else None,
            "phase": fields.text("operation.phase"),
            "message": first_line(fields.text("operation.message"))[:MAX_TITLE] or None,
            "entitiesFrom": "annotation or label cortex.io/tag" if entities else None,
        }
    )


def _bounded(fields: Fields, path: str) -> str | None:
    value = fields.text(path)
    if value is not None and len(value) > MAX_NAME:
        raise MalformedEvent(f"Argo CD notification's {path} is longer than {MAX_NAME}")
    return value


def _destination(fields: Fields) -> str | None:
    """``server``/``name`` and ``namespace`` of where the Application deploys, as one line."""
    cluster = fields.text("app.destination.name", "app.destination.server")
    namespace = fields.text("app.destination.namespace")
    text = " ".join(part for part in (cluster, namespace) if part)
    return text[:MAX_NAME] or None


def _repo(sources: list[Any]) -> str | None:
    first = sources[0] if sources and isinstance(sources[0], Mapping) else {}
    url = first.get("repoURL")
    return url if isinstance(url, str) and url and len(url) <= MAX_NAME else None


def _paired(sources: list[Any], revisions: list[str]) -> list[dict[str, str]]:
    """Each source of a multi-source Application with the revision it was synced to."""
    paired = []
    for i, revision in enumerate(revisions):
        source = sources[i] if i < len(sources) and isinstance(sources[i], Mapping) else {}
        where = source.get("repoURL")
        entry = {"revision": revision[:MAX_NAME]}
        if isinstance(where, str) and where:
            entry["repoURL"] = where[:MAX_NAME]
        for key in ("path", "chart"):
            value = source.get(key)
            if isinstance(value, str) and value:
                entry[key] = value[:MAX_NAME]
        paired.append(entry)
    return paired


__all__ = ["EVENT", "PARSERS", "PHASES", "parse_sync"]
