"""The receiver and its admin API, as a Flask app factory.

The webhook endpoints live in :mod:`bridge.webhooks` (check the signature, decode, hand over
to ``ingest``, answer): a webhook is read from the WSGI environ alone, so that
``WebhookDispatch`` answers a POST to one without Flask's per-request work. Flask serves the
probes and the admin API, and answers errors with the same ``error_response``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from bridge import views
from bridge.config import Config
from bridge.errors import MalformedEvent, SignatureError
from bridge.health import Probes
from bridge.ingest import prepare_intake
from bridge.redact import spellings
from bridge.sources.fields import shorten
from bridge.store import STATUSES, Delivery, Store
from bridge.turned_away import TurnedAwayLog
from bridge.webhooks import (
    HOOKS,
    BadRequest,
    Hook,
    InFlight,
    WebhookDispatch,
    error_response,
    verify_bearer,
)

log = logging.getLogger("bridge.receiver")


# The current time, aware, in UTC: the standard library's own call, no wrapper around it.
utcnow: Callable[[], datetime] = functools.partial(datetime.now, timezone.utc)


@dataclass
class Runtime:
    """What one process of the receiver works with; built once at start-up."""

    config: Config
    store: Store
    github_secret: str = ""
    gitlab_token: str = ""
    flux_secret: str = ""
    argocd_token: str = ""
    admin_token: str = ""
    # The other secrets the process holds (Cortex's token, the SCM readers', the database's
    # password): never used by the receiver, masked wherever it keeps or shows a webhook or
    # an error, as its own are.
    held: tuple[str, ...] = ()
    allow_unsigned: bool = False
    wake: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], datetime] = utcnow
    # /healthz, /readyz and /metrics; `serve` adds its delivery thread and Cortex's word.
    probes: Probes = field(init=False)
    # Bytes of bodies read before their signature is checked, in this process (bounded).
    unverified: InFlight = field(init=False)
    # The webhooks answered without storing an event, for the console; `serve` starts its
    # flushing thread (tests flush it by hand).
    turned_away: TurnedAwayLog = field(init=False)

    def __post_init__(self) -> None:
        self.probes = Probes(self.store, self.clock, role="serve")
        self.turned_away = TurnedAwayLog(self.store.journal, self.clock)
        self.unverified = InFlight(self.config.server.unverified_limit)

    @cached_property
    def spelled(self) -> tuple[str, ...]:
        """Every way :attr:`secrets` can be spelled (:func:`bridge.redact.spellings`), worked
        out once: what the admin API and the console mask."""
        return spellings(self.secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret the receiver knows: masked in whatever it keeps or shows."""
        return tuple(
            s
            for s in (
                self.github_secret,
                self.gitlab_token,
                self.flux_secret,
                self.argocd_token,
                self.admin_token,
                *self.held,
            )
            if s
        )


def create_app(runtime: Runtime) -> Flask:
    """A receiver bound to ``runtime``; nothing is read from the environment here."""
    app = Flask("bridge.app")
    app.config["MAX_CONTENT_LENGTH"] = runtime.config.server.max_body_bytes
    # "/api/deliveries//retry" is a delivery with an empty id (a JSON 404), not an HTML
    # redirect to a path with the slashes merged.
    app.url_map.merge_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["bridge"] = runtime
    _add_webhooks(app, runtime)
    _add_probes(app, runtime)
    _add_admin(app, runtime)
    _add_error_handlers(app, console=bool(runtime.admin_token))
    if runtime.admin_token:  # else no console route exists: every /console path is a 404
        from bridge.console import console_blueprint

        app.register_blueprint(console_blueprint(runtime))
    return app


def _add_webhooks(app: Flask, rt: Runtime) -> None:
    dispatch = WebhookDispatch(app.wsgi_app, rt, prepare_intake(rt.config, rt.secrets))
    for path, hook in HOOKS.items():
        # Flask keeps the routes (what url_map lists, 405 for another method); a POST to one
        # is answered by WebhookDispatch below, before Flask, the same way.
        app.add_url_rule(path, hook.source, _in_flask(hook, dispatch), methods=["POST"])
    app.wsgi_app = dispatch  # type: ignore[method-assign]


def _in_flask(hook: Hook, dispatch: WebhookDispatch) -> Any:
    """A Flask view answering ``hook``'s webhook as WebhookDispatch does, errors included."""

    def view() -> Response:
        try:
            return dispatch.answer(request.environ, hook)
        except Exception as exc:  # every error gets its answer, whichever way it came
            return dispatch.refused(exc, request.environ, hook)

    return view


def _add_probes(app: Flask, rt: Runtime) -> None:
    # One page for the receiver and a worker's --metrics-bind server (bridge.health).
    def probe(path: str) -> Response:
        page = rt.probes.page(path)
        assert page is not None
        status, kind, body = page
        return Response(body, status=status, content_type=kind)

    app.add_url_rule("/healthz", "healthz", lambda: probe("/healthz"), methods=["GET"])
    app.add_url_rule("/readyz", "readyz", lambda: probe("/readyz"), methods=["GET"])
    app.add_url_rule("/metrics", "metrics", lambda: probe("/metrics"), methods=["GET"])


def _add_admin(app: Flask, rt: Runtime) -> None:
    # A blueprint of its own, so that the guard runs for the admin API only: an app-wide
    # before_request cost every webhook a tenth of what answering an ignored one costs.
    admin = Blueprint("admin", __name__, url_prefix="/api")

    @admin.before_request
    def guard_admin() -> tuple[Response, int] | None:
        if not rt.admin_token:
            return jsonify(status="error", reason="not found"), 404
        try:  # Argo CD's check: the scheme in any case (RFC 9110), the token constant-time
            verify_bearer(rt.admin_token, request.headers.get("Authorization"))
        except SignatureError:
            refused = jsonify(status="error", reason="missing or wrong admin token")
            refused.headers["WWW-Authenticate"] = 'Bearer realm="cortex-deploy-bridge admin"'
            return refused, 401
        return None

    admin.after_request(_unkept)

    @admin.get("/deliveries")
    def list_deliveries() -> tuple[Response, int]:
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest(400, f"status must be one of {', '.join(STATUSES)}")
        limit = _int_arg("limit", 50, high=views.MAX_PAGE) or 50
        after = _int_arg("after", None, high=views.MAX_ID)
        rows, cursor = rt.store.list_deliveries(status=status, limit=limit, after=after)
        return jsonify(views.delivery_page(rows, cursor, rt.spelled)), 200

    def find(raw: str) -> Delivery:
        # Any path segment: "<int:...>" would hand an id past 64 bits to the driver (a 500)
        # and send "-1" to Flask's HTML 404.
        number = views.delivery_id(raw)
        found = rt.store.get(number) if number is not None else None
        if found is None:
            raise BadRequest(404, f"no delivery {shorten(raw)}")
        return found

    @admin.get("/deliveries/<path:raw_id>")
    def show_delivery(raw_id: str) -> tuple[Response, int]:
        return jsonify(views.show_delivery(find(raw_id), full=True, spelled=rt.spelled)), 200

    @admin.post("/deliveries/<path:raw_id>/retry")
    def retry_delivery(raw_id: str) -> tuple[Response, int]:
        found = find(raw_id)
        if not rt.store.retry(found.id, now=rt.clock()):
            raise BadRequest(409, f"delivery {found.id} is {found.status}: nothing to retry")
        rt.wake.set()
        return jsonify(id=found.id, status="queued"), 200

    app.register_blueprint(admin)


def _unkept(response: Response) -> Response:
    """An admin API answer: payloads and errors no cache keeps, no browser reads as a page."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _allowing(exc: Exception, response: Response) -> Response:
    """``response`` with a 405's ``Allow`` header (RFC 9110: the methods the path takes)."""
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


def _int_arg(name: str, default: int | None, *, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    value = views.counted(raw, high)
    if value is None:
        raise BadRequest(400, f"{name} must be between 1 and {high}, got {raw[:40]!r}")
    return value


def _add_error_handlers(app: Flask, *, console: bool) -> None:
    def answer(exc: Exception) -> Response:
        path = request.path
        under_console = path == "/console" or path.startswith("/console/")
        if console and under_console and isinstance(exc, HTTPException) and exc.code:
            from bridge.console import refused_page

            page = refused_page(exc.code)
            if page is not None:
                return _allowing(exc, page)
        answered = _allowing(exc, error_response(exc, request.environ))
        # The router's own 404 and 405 under /api come before the admin blueprint's.
        return _unkept(answered) if path == "/api" or path.startswith("/api/") else answered

    for kind in (BadRequest, MalformedEvent, SignatureError, HTTPException, Exception):
        app.register_error_handler(kind, answer)
