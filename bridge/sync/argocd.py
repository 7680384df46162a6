"""Argo CD as a sync source: each Application's ``status.history`` (``sync --argocd URL``).

With ``Authorization: Bearer $ARGOCD_AUTH_TOKEN``, two kinds of request (argo-cd
server/application ``List`` and ``Get``; shapes in pkg/apis/application/v1alpha1):

- ``GET <URL>/api/v1/applications?fields=items.metadata.name,items.metadata.namespace``: every
  Application's name, and nothing else (``fields`` selects from a fixed set of an
  Application's fields, argo-cd pkg/apiclient/application/forwarder_overwrite.go ``appFields``,
  which holds neither ``status.history`` nor ``metadata.uid``). One answer, no pages.
- ``GET <URL>/api/v1/applications/<name>?appNamespace=<namespace>``: one Application, whole.

Read whole in one list, an ordinary installation's Applications (a few hundred, each with its
resources and ten history entries) passed every bound an SCM answer has; one at a time, each
answer is one Application's. Each keeps its last syncs, oldest first, in ``status.history``
(``revisionHistoryLimit``, 10 by default): RevisionHistory {``id``, ``revision``,
``revisions``, ``deployedAt``, ``deployStartedAt``, ``source(s)``, ``initiatedBy``}. A history
entry is what one successful sync operation left: it is rebuilt into the notification the
published template renders for that operation (its ``deployStartedAt`` is the operation's
``startedAt``) and handed to the webhook parser (:mod:`bridge.sources.argocd`): the same
DeployEvent and idempotency key as the webhook.

Every answer is bounded as every SCM answer is (docs/limits.md): 16 MiB and the JSON shape
caps of :mod:`bridge.sync.fetch`, the tries and waits of :mod:`bridge.sync.api`. A name that is
no Kubernetes name is a skipped row, never part of a path. The token is sent only to the
origin of the URL given: a redirect elsewhere is refused by the fetcher, nothing sent there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from bridge.secrets import VARIABLE
from bridge.sources import argocd as notifications
from bridge.sources.fields import shorten
from bridge.sync.api import GITHUB_LIMITS, ApiClient, ScmError
from bridge.sync.found import parsed
from bridge.sync.reader import Found, Window

PATH = "/api/v1/applications"
NAMES = {"fields": "items.metadata.name,items.metadata.namespace"}
# A Kubernetes object name (DNS-1123 subdomain) and namespace (label): what Argo CD accepts.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


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
        """Each Application's history entries in the window, Applications by namespace/name,
        each read on its own."""
        done = _after(resume) if resume else ""
        names, unnamed = self._names()
        if not resume:
            # Names that are not text have no place in the order a resume point goes by:
            # said once, first, and not again by a read resumed after them.
            for why in unnamed:
                yield Found(None, why)
        for key, namespace, name in names:
            if key <= done:
                continue
            after = json.dumps({"after": key})
            app = _name_problem(namespace, name) or self._application(namespace, name)
            if isinstance(app, str):  # why it is not read
                yield Found(None, app, after)
                continue
            for entry in _history(app):
                yield self._entry(app, entry, window)
            yield Found(None, "", after)

    def _names(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        """Every Application's namespace/name, namespace and name, in that order; and why
        each listed one whose name or namespace is not text is not read."""
        answer = self.api.get(PATH, NAMES).json()
        if not isinstance(answer, Mapping):
            raise ScmError(f"{PATH} did not answer an ApplicationList")
        meta = answer.get("metadata")
        if isinstance(meta, Mapping) and meta.get("continue"):
            # Argo CD answers the whole list; a partial one would leave deploys unread.
            raise ScmError(f"{PATH} answered a partial list (metadata.continue): not supported")
        items = answer.get("items") or []
        if not isinstance(items, list):
            raise ScmError(f"{PATH} answered items that are not a list")
        apps, unnamed = [], []
        for app in items:
            metadata = app.get("metadata") if isinstance(app, Mapping) else None
            if isinstance(metadata, Mapping):
                namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
                if isinstance(namespace, str) and isinstance(name, str):
                    apps.append((f"{namespace}/{name}", namespace, name))
                elif problem := _name_problem(namespace, name):
                    unnamed.append(problem)
        return sorted(set(apps)), list(dict.fromkeys(unnamed))

    def _application(self, namespace: str, name: str) -> Mapping[str, Any] | str:
        """One Application, whole; or why not, where it is gone since the list was read."""
        params = {"appNamespace": namespace} if namespace else None
        try:
            app = self.api.get(f"{PATH}/{name}", params).json()
        except ScmError as exc:
            # Gone since listed: Argo CD answers 403 for an Application that is not there
            # where the token may not know whether it is (a listed one it may read).
            if exc.status in (403, 404):
                return f"application {namespace}/{name}: gone since listed ({exc.status})"
            raise
        if not isinstance(app, Mapping):
            raise ScmError(f"{PATH}/{name} did not answer an Application")
        return app

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


def _name_problem(namespace: object, name: object) -> str | None:
    """Why an Application the list named cannot be asked for (a name that is not text is
    no Kubernetes name either), or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return f"application name {_shown(name)} is not a Kubernetes name: not read"
    if namespace and not (isinstance(namespace, str) and _NAMESPACE.fullmatch(namespace)):
        return f"application namespace {_shown(namespace)} is not a Kubernetes name: not read"
    return None


def _shown(value: object) -> str:
    """A listed name as a skipped row says it: cut, in quotes when it is text."""
    return repr(value[:80]) if isinstance(value, str) else shorten(value)


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
