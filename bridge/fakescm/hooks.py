"""Webhooks as GitHub and GitLab send them: where, which headers, how they are signed. Pure.

``python -m bridge.fakescm post`` sends one with these; a test or a script can too. Each
source is a row of :data:`SOURCES` (Flux and Argo CD add theirs): the receiver's path, the
variable that holds the secret (the one ``serve`` reads), how the headers are made from
the exact bytes sent, and how the event's name is told from a payload when not given.

- GitHub (docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers):
  ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body, keyed by the secret>``,
  ``X-GitHub-Event``, ``X-GitHub-Delivery`` (a GUID).
- GitLab (docs.gitlab.com/ee/user/project/integrations/webhooks.html): the secret token
  itself in ``X-Gitlab-Token``; ``X-Gitlab-Event`` (``Deployment Hook``, ...),
  ``X-Gitlab-Event-UUID`` and ``Idempotency-Key``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# (body, secret, event, delivery id) -> the request's headers
Headers = Callable[[bytes, str, str, str], dict[str, str]]


@dataclass(frozen=True)
class HookSource:
    """How one source delivers a webhook."""

    path: str  # the receiver's path for it
    secret_variable: str  # the environment variable holding the secret (as `serve` reads it)
    event_header: str
    headers: Headers
    event_of: Callable[[Any], str | None]  # the event a payload is, when it can be told


def github_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` of ``body``: ``sha256=`` and the HMAC-SHA256 hex digest."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _github_headers(body: bytes, secret: str, event: str, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bridge-fakescm",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": github_signature(secret, body),
    }


def _gitlab_headers(body: bytes, secret: str, event: str, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/bridge-fakescm",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": secret,
        "X-Gitlab-Event-UUID": delivery,
        "Idempotency-Key": delivery,
    }


# The top-level key that names a GitHub event's payload, in the order they are looked for:
# a deployment_status payload carries "deployment" too, and a deployment (or its status) made
# by an Actions job carries its "workflow_run", which a workflow_run payload never pairs with
# a "deployment".
_GITHUB_KEYS = ("deployment_status", "deployment", "workflow_run", "workflow_job")


def _github_event(payload: Any) -> str | None:
    if not isinstance(payload, Mapping):
        return None
    for key in _GITHUB_KEYS:
        if key in payload:
            return key
    return "ping" if "zen" in payload else None


# GitLab's object_kind -> the X-Gitlab-Event it is sent with.
_GITLAB_EVENTS = {
    "deployment": "Deployment Hook",
    "pipeline": "Pipeline Hook",
    "build": "Job Hook",
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
}


def _gitlab_event(payload: Any) -> str | None:
    kind = payload.get("object_kind") if isinstance(payload, Mapping) else None
    return _GITLAB_EVENTS.get(kind) if isinstance(kind, str) else None


SOURCES: dict[str, HookSource] = {
    "github": HookSource(
        "/webhooks/github",
        "GITHUB_WEBHOOK_SECRET",
        "X-GitHub-Event",
        _github_headers,
        _github_event,
    ),
    "gitlab": HookSource(
        "/webhooks/gitlab", "GITLAB_WEBHOOK_TOKEN", "X-Gitlab-Event", _gitlab_headers, _gitlab_event
    ),
}
