"""Helpers for receiver tests: a runtime on a fresh database, signed requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from bridge.app import Runtime, create_app
from bridge.config import Config, parse_config
from bridge.store import Store
from tests.conftest import load_sample

GITHUB_SECRET = "gh-hook-secret-7a1f"
GITLAB_TOKEN = "gl-hook-token-93cd"
FLUX_SECRET = "flux-hmac-token-2b8e"
ARGOCD_TOKEN = "argocd-notify-token-6d1c"
ADMIN_TOKEN = "admin-token-5e2b"


def make_runtime(tmp_path: Path, config: dict[str, Any] | None = None, **kw: Any) -> Runtime:
    """A runtime with a fresh SQLite database under ``tmp_path``."""
    return runtime_on(f"sqlite:///{tmp_path / 'bridge.db'}", config, **kw)


# Most samples' GitHub deployments name payments-api and payments-worker in their payload
# (payload.cortex.entities), which routes allow only by their payload_entities globs;
# deployment_status.success does not (it is recorded under the default config, as a user
# trying the bridge with it expects), deployment_status.success.payload-entities does.
SAMPLE_ROUTES = [{"match": {}, "entities": ["{repo}"], "payload_entities": ["payments-*"]}]


def runtime_on(database: str, config: dict[str, Any] | None = None, **kw: Any) -> Runtime:
    """A runtime on the database at ``database`` (conftest's ``db_url``: either backend).

    With no ``routes`` in ``config``, SAMPLE_ROUTES: every repository to ``{repo}``, and the
    entities the samples' deployment payloads name allowed.
    """
    parsed: Config = parse_config({"routes": SAMPLE_ROUTES, **(config or {})})
    store = Store.from_url(database)
    kw.setdefault("github_secret", GITHUB_SECRET)
    kw.setdefault("gitlab_token", GITLAB_TOKEN)
    kw.setdefault("flux_secret", FLUX_SECRET)
    kw.setdefault("argocd_token", ARGOCD_TOKEN)
    kw.setdefault("admin_token", ADMIN_TOKEN)
    return Runtime(config=parsed, store=store, **kw)


def client_for(runtime: Runtime) -> FlaskClient:
    """A Flask test client of the receiver."""
    return create_app(runtime).test_client()


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    """X-Hub-Signature-256 for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_post(
    client: FlaskClient,
    event: str,
    payload: Any,
    *,
    delivery: str | None = None,
    secret: str = GITHUB_SECRET,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST a signed GitHub delivery; ``payload`` is a sample name or a document."""
    doc = load_sample(f"github/{payload}.json") if isinstance(payload, str) else payload
    body = json.dumps(doc).encode()
    sent = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    sent.update(headers or {})
    return client.post("/webhooks/github", data=body, headers=sent)


def gitlab_post(
    client: FlaskClient,
    event: str,
    payload: Any,
    *,
    uuid_: str | None = None,
    token: str = GITLAB_TOKEN,
) -> Any:
    """POST a GitLab delivery with its secret token."""
    doc = load_sample(f"gitlab/{payload}.json") if isinstance(payload, str) else payload
    headers = {
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "X-Gitlab-Event-UUID": uuid_ or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/gitlab", data=json.dumps(doc).encode(), headers=headers)


def flux_post(
    client: FlaskClient,
    payload: Any,
    *,
    secret: str = FLUX_SECRET,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST a Flux event as notification-controller's generic-hmac Provider does."""
    doc = load_sample(f"flux/{payload}.json") if isinstance(payload, str) else payload
    body = json.dumps(doc).encode()
    sent = {
        "Content-Type": "application/json",
        "Gotk-Component": str(doc.get("reportingController", "")),
        "User-Agent": "Go-http-client/1.1",
        "X-Signature": sign(body, secret),
    }
    sent.update(headers or {})
    return client.post("/webhooks/flux", data=body, headers=sent)


def argocd_post(
    client: FlaskClient,
    payload: Any,
    *,
    token: str = ARGOCD_TOKEN,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST an Argo CD notification as its webhook service does with the published config."""
    doc = load_sample(f"argocd/{payload}.json") if isinstance(payload, str) else payload
    sent = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "User-Agent": "Go-http-client/1.1",
    }
    sent.update(headers or {})
    return client.post("/webhooks/argocd", data=json.dumps(doc).encode(), headers=sent)


def fixed_clock(moment: datetime | None = None) -> Any:
    """A clock stuck at ``moment``."""
    at = moment or datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    return lambda: at
