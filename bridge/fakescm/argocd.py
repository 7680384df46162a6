"""A stand-in Argo CD API server: ``GET /api/v1/applications`` (the list, whole or its
``fields`` only) and ``GET /api/v1/applications/<name>`` (one Application, with its history).

Shapes follow argo-cd's API (pkg/apis/application/v1alpha1/types.go: ApplicationList,
Application, RevisionHistory, OperationInitiator): the list is one answer (the server does
not page it); ``fields`` selects from the list's fixed set of field names
(pkg/apiclient/application/forwarder_overwrite.go, ``appFields``: metadata's name, namespace,
labels and annotations among them, never ``status.history``); one Application is asked for by
name, ``appNamespace`` naming its namespace; and the token is ``Authorization: Bearer
<token>``. Strict: any other path, method or query parameter, a field outside that set, a
missing or wrong token is refused and noted in ``violations``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from bridge.fakescm.base import Answer, ApiError, FakeApi, Request


class FakeArgoCD(FakeApi):
    """The stand-in; fill it with :meth:`add_application` and :meth:`add_history`."""

    def __init__(self, *, token: str = "argocd-test-token") -> None:  # noqa: S107
        super().__init__()
        self.token = token
        self.applications: list[dict[str, Any]] = []
        self.route("GET", r"/api/v1/applications", self._list)
        self.route("GET", r"/api/v1/applications/([^/]+)", self._get)

    def authorized(self, request: Request) -> bool:
        """``Authorization: Bearer <token>``, as argocd's API server reads it."""
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def add_application(
        self,
        name: str,
        *,
        namespace: str = "argocd",
        project: str = "default",
        annotations: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        repo: str = "https://github.com/acme/deploy.git",
    ) -> dict[str, Any]:
        """An Application with an empty history."""
        app: dict[str, Any] = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "resourceVersion": str(1000 + len(self.applications)),
                "creationTimestamp": "2026-01-05T09:00:00Z",
                **({"labels": labels} if labels else {}),
                **({"annotations": annotations} if annotations else {}),
            },
            "spec": {
                "project": project,
                "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
                "source": {"repoURL": repo, "path": f"apps/{name}", "targetRevision": "main"},
            },
            "status": {
                "sync": {"status": "Synced", "revision": ""},
                "health": {"status": "Healthy"},
                "history": [],
            },
        }
        self.applications.append(app)
        return app

    def add_history(
        self,
        app: dict[str, Any],
        *,
        revision: str,
        started: str | None,
        deployed: str,
        username: str | None = None,
    ) -> dict[str, Any]:
        """A RevisionHistory entry, as Argo CD appends one after a successful sync."""
        history = app["status"]["history"]
        entry: dict[str, Any] = {
            "id": len(history),
            "revision": revision,
            "deployedAt": deployed,
            "source": dict(app["spec"]["source"]),
            "initiatedBy": {"username": username} if username else {"automated": True},
        }
        if started is not None:
            entry["deployStartedAt"] = started
        history.append(entry)
        app["status"]["sync"]["revision"] = revision
        app["status"]["operationState"] = {
            "phase": "Succeeded",
            "startedAt": started or deployed,
            "finishedAt": deployed,
            "operation": {"initiatedBy": entry["initiatedBy"], "sync": {"revision": revision}},
            "syncResult": {"revision": revision},
        }
        return entry

    def _list(self, request: Request, found: re.Match[str]) -> Answer:
        unexpected = set(request.query) - {"fields"}
        if unexpected:
            raise ApiError(400, f"unexpected query parameters {sorted(unexpected)}")
        items: list[dict[str, Any]] = self.applications
        if "fields" in request.query:
            wanted = request.query["fields"].split(",")
            outside = [f for f in wanted if f.removeprefix("items.") not in SELECTABLE]
            if outside:
                raise ApiError(400, f"fields outside what Argo CD selects: {outside}")
            items = [_selected(app, wanted) for app in self.applications]
        return Answer(
            200, {"metadata": {"resourceVersion": str(5000 + len(self.requests))}, "items": items}
        )

    def _get(self, request: Request, found: re.Match[str]) -> Answer:
        unexpected = set(request.query) - {"appNamespace"}
        if unexpected:
            raise ApiError(400, f"unexpected query parameters {sorted(unexpected)}")
        name, namespace = found[1], request.query.get("appNamespace")
        for app in self.applications:
            meta = app["metadata"]
            if meta["name"] == name and namespace in (None, meta["namespace"]):
                return Answer(200, app)
        message = f'applications.argoproj.io "{name}" not found'
        return Answer(404, {"error": message, "code": 5, "message": message})


# The list's selectable fields (argo-cd forwarder_overwrite.go, appFields), those kept here.
SELECTABLE = frozenset(
    {"metadata.name", "metadata.namespace", "metadata.annotations", "metadata.labels", "spec"}
)


def _selected(app: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The ``items.``-prefixed ``fields`` of one Application, nested as Argo CD nests them."""
    picked: dict[str, Any] = {}
    for dotted in fields:
        parts = dotted.removeprefix("items.").split(".")
        value: Any = app
        for part in parts:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        into = picked
        for part in parts[:-1]:
            into = into.setdefault(part, {})
        into[parts[-1]] = value
    return picked
