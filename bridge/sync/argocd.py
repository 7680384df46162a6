"""Argo CD as a sync source: each Application's ``status.history`` (``sync --argocd URL``).

``GET <URL>/api/v1/applications`` with ``Authorization: Bearer $ARGOCD_AUTH_TOKEN`` answers
an ApplicationList (argo-cd pkg/apis/application/v1alpha1: ``items`` of Applications, one
answer, no pages; server/application ``List``). Each Application keeps its last syncs, oldest
first, in ``status.history`` (``revisionHistoryLimit``, 10 by default): RevisionHistory
{``id``, ``revision``, ``revisions``, ``deployedAt``, ``deployStartedAt``, ``source(s)``,
``initiatedBy``}. A history entry is what one successful sync operation left: it is rebuilt
into the notification the published template renders for that operation (its
``deployStartedAt`` is the operation's ``startedAt``) and handed to the webhook parser
(:mod:`bridge.sources.argocd`): the same DeployEvent and idempotency key as the webhook.

The list is one request a read, bounded as every SCM answer is (docs/limits.md): 16 MiB and
the JSON shape caps of :mod:`bridge.sync.fetch`, the tries and waits of :mod:`bridge.sync.api`.
It is asked for whole: Argo CD's ``fields`` query parameter selects from a fixed set of an
Application's fields (argo-cd pkg/apiclient/application/forwarder_overwrite.go, ``appFields``)
that holds neither ``status.history`` nor ``metadata.uid``, so a narrowed list would read no
deploys at all. The token is sent only to the origin of the URL given: a redirect elsewhere is
refused by the fetcher, nothing sent there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from bridge.secrets import VARIABLE
from bridge.sources import argocd as notifications
from bridge.sync.api import GITHUB_LIMITS, ApiClient, ScmError
from bridge.sync.found import parsed
from bridge.sync.reader import Found, Window

PATH = "/api/v1/applications"


def argocd_client(url: str, token: str, **options: Any) -> ApiClient:
    """A client for the Argo CD API server at ``url`` (its UI's address) with ``token``."""
    # Argo CD sends no rate-limit headers; any names do (none will be found).
    headers = {"Authorization": f"Bearer {token}"}
    return ApiClient(
        url,
        headers,
        limits=GITHUB_LIMITS,
        secrets=(token,),
        token_name=VARIABLE["argocd-api"],
        **options,
    )


class ArgoCDReader:
    """The sync history of every Application one Argo CD API server lists."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api

    @property
    def name(self) -> str:
        """``argocd:<host>``."""
        return f"argocd:{urlsplit(self.api.base_url).netloc}"

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        """Each Application's history entries in the window, Applications by namespace/name."""
        done = _after(resume) if resume else ""
        for key, app in self._applications():
            if key <= done:
                continue
            for entry in _history(app):
                yield self._entry(app, entry, window)
            yield Found(None, "", json.dumps({"after": key}))

    def _applications(self) -> list[tuple[str, Mapping[str, Any]]]:
        """Every Application, by its namespace/name."""
        answer = self.api.get(PATH).json()
        if not isinstance(answer, Mapping):
            raise ScmError(f"{PATH} did not answer an ApplicationList")
        meta = answer.get("metadata")
        if isinstance(meta, Mapping) and meta.get("continue"):
            # Argo CD answers the whole list; a partial one would leave deploys unread.
            raise ScmError(f"{PATH} answered a partial list (metadata.continue): not supported")
        items = answer.get("items") or []
        if not isinstance(items, list):
            raise ScmError(f"{PATH} answered items that are not a list")
        apps = []
        for app in items:
            metadata = app.get("metadata") if isinstance(app, Mapping) else None
            if isinstance(metadata, Mapping):
                key = f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"
                apps.append((key, app))
        return sorted(apps, key=lambda pair: pair[0])

    def _entry(self, app: Mapping[str, Any], entry: Mapping[str, Any], window: Window) -> Found:
        started = entry.get("deployStartedAt")
        if not started:
            # Argo CD before 1.8 kept no start time: no key the webhook would also make.
            return Found(None, f"history entry {entry.get('id')!r} has no deployStartedAt")
        return parsed(notifications.parse_sync, self._notification(app, entry), window)

    def _notification(self, app: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
        """The body the published template renders for the operation ``entry`` recorded."""
        metadata = _object(app, "metadata")
        spec = _object(app, "spec")
        annotations = _object(metadata, "annotations")
        many = entry.get("sources") if isinstance(entry.get("sources"), list) else None
        sources = many or ([entry["source"]] if isinstance(entry.get("source"), Mapping) else [])
        namespace, name = metadata.get("namespace"), metadata.get("name")
        return {
            "app": {
                "uid": metadata.get("uid"),
                "name": name,
                "namespace": namespace,
                "project": spec.get("project"),
                "labels": metadata.get("labels"),
                "annotations": {
                    key: annotations.get(key) for key in ("cortex.io/tag", "cortex.io/environment")
                },
                "destination": spec.get("destination"),
                "sources": [_source(s) for s in sources if isinstance(s, Mapping)],
            },
            "operation": {
                "phase": "Succeeded",  # history keeps the syncs that succeeded
                "startedAt": entry.get("deployStartedAt"),
                "finishedAt": entry.get("deployedAt"),
                "initiatedBy": entry.get("initiatedBy"),
                "revision": entry.get("revision"),
                "revisions": entry.get("revisions"),
            },
            "url": f"{self.api.base_url}/applications/{namespace}/{name}",
        }


def _history(app: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    history = _object(app, "status").get("history")
    if not isinstance(history, list):
        return []
    return [entry for entry in history if isinstance(entry, Mapping)]


def _object(item: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = item.get(key)
    return value if isinstance(value, Mapping) else {}


def _source(source: Mapping[str, Any]) -> dict[str, Any]:
    return {key: source.get(key) for key in ("repoURL", "path", "chart", "targetRevision")}


def _after(resume: str) -> str:
    """The Application a saved resume point says was read last; ScmError for one this
    reader cannot have given (it is only ever {"after": "<namespace>/<name>"})."""
    try:
        position = json.loads(resume)
    except ValueError:
        position = None
    if isinstance(position, dict) and set(position) == {"after"}:
        after = position["after"]
        if isinstance(after, str):
            return after
    raise ScmError(f"not a resume point of this reader: {resume[:80]!r}")
