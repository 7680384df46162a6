"""The webhook receiver and admin API, as a Flask app factory.

Views stay thin: check the signature, decode, hand over to ``ingest``, answer. Cortex is
never called inside a request; the worker delivers what the outbox holds. The two webhook
views read only the WSGI environ, so that ``WebhookDispatch`` can answer a POST to them
without Flask's per-request work; Flask serves the probes and the admin API, and answers
errors with the same ``error_response``.
"""

from __future__ import annotations

import hmac
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

import orjson
from flask import Blueprint, Flask, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length

from bridge import metrics, views
from bridge.config import Config
from bridge.errors import MalformedEvent, SignatureError
from bridge.health import Probes
from bridge.inflight import Busy, Hold, InFlight
from bridge.ingest import Answer, dedupe_key, ingest
from bridge.received import received_copy
from bridge.signatures import verify_bearer, verify_flux, verify_github, verify_gitlab
from bridge.sources import argocd, flux
from bridge.sources.fields import shorten
from bridge.store import STATUSES, Delivery, Store, StoreError
from bridge.turned_away import TurnedAwayLog

log = logging.getLogger("bridge.receiver")


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


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
            )
            if s
        )


class BadRequest(Exception):
    """A 4xx answer with a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
    _add_error_handlers(app)
    if runtime.admin_token:  # else no console route exists: every /console path is a 404
        from bridge.console import console_blueprint

        app.register_blueprint(console_blueprint(runtime))
    return app


def _answer(answer: Answer, source: str, event: str) -> Response:
    metrics.count_webhook(source, event or metrics.NO_EVENT, answer.body["status"])
    # What jsonify answers, for half its cost: every delivery gets one of these. The status
    # and the whole Content-Type given here, nothing is left for Werkzeug to work out.
    return Response(
        orjson.dumps(answer.body), status=answer.status, content_type="application/json"
    )


# The WSGI environ of one request.
Environ = dict[str, Any]


def _add_webhooks(app: Flask, rt: Runtime) -> None:
    handlers = {path: _answering(h, rt) for path, h in _webhook_handlers(rt).items()}
    for path, handler in handlers.items():
        # Flask keeps the routes (what url_map lists, 405 for another method); a POST to one
        # is answered by WebhookDispatch below, before Flask, with this same handler.
        app.add_url_rule(path, path.rsplit("/", 1)[-1], _in_flask(handler), methods=["POST"])
    app.wsgi_app = WebhookDispatch(app.wsgi_app, handlers)  # type: ignore[method-assign]


def _in_flask(handler: Callable[[Environ], Response]) -> Callable[[], Response]:
    """A Flask view answering with ``handler``."""

    def view() -> Response:
        return handler(request.environ)

    return view


def _answering(handler: Callable[[Environ], Response], rt: Runtime) -> Callable[..., Response]:
    """``handler``, answering its errors itself (``error_response``), and noting the 4xx."""

    def answer(environ: Environ) -> Response:
        try:
            return handler(environ)
        except Exception as exc:  # every error gets its answer, whichever way it came
            code, status, reason = error_answer(exc, environ)
            if code < 500:
                source = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
                event_header, delivery_headers = WEBHOOK_HEADERS.get(source, ("", ()))
                delivery = next(
                    (v for h in delivery_headers if (v := environ.get(h, "")).strip()), ""
                )
                event = environ.get(event_header, "")
                _turned_away(
                    rt,
                    source=source,
                    event=event,
                    delivery=delivery,
                    code=code,
                    status=status,
                    reason=reason,
                )
            return _error_json(exc, code, status=status, reason=reason)

    return answer


def _turned_away(
    rt: Runtime,
    *,
    source: str,
    event: str,
    delivery: str | None,
    code: int,
    status: str,
    reason: str,
) -> None:
    """The one place a webhook answered without storing an event (4xx, ignored) is noted.

    One log line (:func:`log_unrecorded`) and one row for the console's bounded journal.
    """
    log_unrecorded(source, event, delivery, code, {"status": status, "reason": reason})
    rt.turned_away.note(
        source=source,
        event=event,
        delivery=delivery or "",
        code=code,
        answer=status,
        reason=reason,
    )


class WebhookDispatch:
    """WSGI: a POST to a webhook path goes straight to its handler; all else to Flask.

    Answering an ignored event is most of a busy hook's traffic, and Flask's own work per
    request (contexts, sessions, signals, URL matching twice) was more than half of its
    cost: here a webhook costs its handler and one Response. The handlers read only the
    environ, and every error they raise is answered by ``error_response``, which Flask's
    error handlers answer with too, so a webhook's answer is the same whichever way it came.
    """

    def __init__(
        self, flask_app: Callable[..., Any], handlers: dict[str, Callable[[Environ], Response]]
    ) -> None:
        self.flask_app = flask_app
        self.handlers = handlers

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        """Answer a webhook, or hand the request to Flask."""
        handler = self.handlers.get(environ.get("PATH_INFO", ""))
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        try:
            response = handler(environ)
        except Exception as exc:  # every error gets its answer, as in Flask
            response = error_response(exc, environ)
        return response(environ, start_response)


def _webhook_handlers(rt: Runtime) -> dict[str, Callable[[Environ], Response]]:
    limit = rt.config.server.max_body_bytes

    def github(environ: Environ) -> Response:
        # Headers straight from the WSGI environ (X-Foo is HTTP_X_FOO).
        header = environ.get
        # GitHub signs the whole body: it is read (within the process's unverified bytes)
        # before anyone knows who sent it, and those bytes count until the check is done.
        with rt.unverified.hold() as hold:
            body = read_body(environ, limit, hold=hold)
            if not (rt.allow_unsigned and not rt.github_secret):
                verify_github(rt.github_secret, body, header("HTTP_X_HUB_SIGNATURE_256"))
        event = header("HTTP_X_GITHUB_EVENT") or ""
        payload = _decode(environ, body, form_field="payload")
        if not event:
            raise BadRequest(400, "missing X-GitHub-Event header")
        delivery = header("HTTP_X_GITHUB_DELIVERY")
        key = dedupe_key(
            "github",
            ("X-GitHub-Delivery", delivery),
            scope=("X-GitHub-Hook-ID", header("HTTP_X_GITHUB_HOOK_ID")),
            body=body,
        )
        return _ingest(
            "github",
            event,
            payload,
            key=key,
            delivery=delivery,
            rt=rt,
            received=(environ, body),
        )

    def gitlab(environ: Environ) -> Response:
        header = environ.get
        unsigned = rt.allow_unsigned and not rt.gitlab_token
        if not unsigned:
            # GitLab's token is a header: checked before a byte of the body is read.
            verify_gitlab(rt.gitlab_token, header("HTTP_X_GITLAB_TOKEN"))
        with rt.unverified.hold() as hold:
            body = read_body(environ, limit, hold=hold if unsigned else None)
        payload = _decode(environ, body, form_field=None)
        event = header("HTTP_X_GITLAB_EVENT") or ""
        if not event:
            raise BadRequest(400, "missing X-Gitlab-Event header")
        # GitLab keeps Idempotency-Key across its retries of one event (webhooks docs).
        idempotency = header("HTTP_IDEMPOTENCY_KEY") or ""
        if idempotency.strip():
            named, delivery = "Idempotency-Key", idempotency
        else:
            named, delivery = "X-Gitlab-Event-UUID", header("HTTP_X_GITLAB_EVENT_UUID")
        key = dedupe_key("gitlab", (named, delivery), body=body)
        return _ingest(
            "gitlab",
            event,
            payload,
            key=key,
            delivery=delivery,
            rt=rt,
            received=(environ, body),
        )

    # Flux and Argo CD send no delivery id: a repeat is known by the deploy it reports and
    # its status (ingest's key=None), so that a reconcile's new message is still a repeat.
    def flux_(environ: Environ) -> Response:
        # Flux signs the whole body, as GitHub does: its bytes count until the check is done.
        with rt.unverified.hold() as hold:
            body = read_body(environ, limit, hold=hold)
            if not (rt.allow_unsigned and not rt.flux_secret):
                verify_flux(rt.flux_secret, body, environ.get("HTTP_X_SIGNATURE"))
        payload = _decode(environ, body, form_field=None)
        event = flux.event_name(payload)
        if not event:
            raise BadRequest(400, "Flux event payload has no 'involvedObject.kind'")
        return _ingest(
            "flux",
            event,
            payload,
            key=None,
            delivery=None,
            rt=rt,
            received=(environ, body),
        )

    def argocd_(environ: Environ) -> Response:
        unsigned = rt.allow_unsigned and not rt.argocd_token
        if not unsigned:
            # A header, as GitLab's token: checked before a byte of the body is read.
            verify_bearer(rt.argocd_token, environ.get("HTTP_AUTHORIZATION"))
        with rt.unverified.hold() as hold:
            body = read_body(environ, limit, hold=hold if unsigned else None)
        payload = _decode(environ, body, form_field=None)
        return _ingest(
            "argocd",
            argocd.EVENT,
            payload,
            key=None,
            delivery=None,
            rt=rt,
            received=(environ, body),
        )

    return {
        "/webhooks/github": github,
        "/webhooks/gitlab": gitlab,
        "/webhooks/flux": flux_,
        "/webhooks/argocd": argocd_,
    }


# Reads of a body with no Content-Length (chunked): small enough to stop soon past the limit.
_READ_SIZE = 64 * 1024


def read_body(environ: dict[str, Any], limit: int, *, hold: Hold | None = None) -> bytes:
    """The request's whole body; RequestEntityTooLarge (413) once it passes ``limit`` bytes.

    With a ``hold``, room is taken in it before each read, and Busy (503) raised where the
    process has none left (bridge/inflight.py): a body over one read is read a chunk at a time.

    However it is framed: a Content-Length over the limit is refused before anything is read,
    and a chunked body (no Content-Length; the server ends the stream, which gunicorn and
    Werkzeug say with ``wsgi.input_terminated``) is read to at most one byte past the limit and
    refused there. Werkzeug's own reading of such a stream stops *at* the limit and hands back
    the cut body as if it were whole. A body with a Content-Length is read straight from the
    server's stream, as many bytes as it says (Werkzeug's wrapping of it cost a tenth of
    answering an ignored event); one that ends early is a 400 (``ClientDisconnected``).
    """
    stream = environ["wsgi.input"]
    # Werkzeug's reading of the header: None when chunked or absent, 0 when not a number.
    length = get_content_length(environ)
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        if length > _READ_SIZE and hold is not None:
            return _read_held(stream, length, hold, exact=True)
        if hold is not None:
            hold.grow_to(length)
        body = stream.read(length) if length else b""
        while len(body) < length:  # a WSGI stream may hand over less than asked
            more = stream.read(length - len(body))
            if not more:
                raise ClientDisconnected()
            body += more
        return body
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and no end the server vouches for: nothing can be read safely
    if hold is not None:
        return _read_held(stream, limit + 1, hold, exact=False)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_READ_SIZE, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
        chunks.append(chunk)


def _read_held(stream: Any, most: int, hold: Hold, *, exact: bool) -> bytes:
    """Up to ``most`` bytes, a chunk at a time, room for each taken in ``hold`` first.

    ``exact``: ``most`` is the Content-Length, and a stream that ends before it is a 400.
    Otherwise ``most`` is one past the limit, and a body that reaches it is a 413 (that one
    byte, read only to tell, is not held: a body at the limit fits a process whose room is
    the limit). BytesIO hands its buffer over without a copy, so a body costs its size once.
    """
    buffer = io.BytesIO()
    size = 0
    held_at_most = most if exact else most - 1
    while size < most:
        want = min(_READ_SIZE, most - size)
        hold.grow_to(min(size + want, held_at_most))
        chunk = stream.read(want)
        if not chunk:
            if exact:
                raise ClientDisconnected()
            return buffer.getvalue()
        size += buffer.write(chunk)
    if not exact:
        raise RequestEntityTooLarge()
    return buffer.getvalue()


def _ingest(
    source: str,
    event: str,
    payload: Any,
    *,
    key: str | None,
    delivery: str | None,
    rt: Runtime,
    received: tuple[Environ, bytes],
) -> Response:
    """Ingest one webhook and answer it; ``received`` (its environ and body) is kept, redacted,
    with the event only when one is stored."""
    environ, body = received
    answer = ingest(
        source,
        event,
        payload,
        key=key,
        delivery_id=delivery,
        config=rt.config,
        store=rt.store,
        clock=rt.clock,
        received=lambda: received_copy(environ, body, rt.secrets),
    )
    if answer.queued:
        rt.wake.set()
    if answer.body["status"] == "ignored" or answer.status >= 400:
        _turned_away(
            rt,
            source=source,
            event=event,
            delivery=delivery,
            code=answer.status,
            status=answer.body["status"],
            reason=answer.body["reason"],
        )
    elif log.isEnabledFor(logging.INFO):
        log.info(
            answer.body["status"],
            extra={"source": source, "event": event, "delivery_id": delivery, **answer.body},
        )
    return _answer(answer, source, event)


# Each source's headers, as WSGI names them: the event's name, and the delivery id (the
# first that is not blank). Read only to say which webhook an error answer refused; the
# handlers read their own. A source added to the receiver adds its row.
WEBHOOK_HEADERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "github": ("HTTP_X_GITHUB_EVENT", ("HTTP_X_GITHUB_DELIVERY",)),
    # GitLab keeps Idempotency-Key across its retries; X-Gitlab-Event-UUID is per attempt.
    "gitlab": ("HTTP_X_GITLAB_EVENT", ("HTTP_IDEMPOTENCY_KEY", "HTTP_X_GITLAB_EVENT_UUID")),
    # Flux and Argo CD name neither the event nor the delivery in a header.
    "flux": ("", ()),
    "argocd": ("", ()),
}
# The longest event name or delivery id a log line carries: both are the sender's to choose.
_LOGGED_ID = 200


def log_unrecorded(
    source: str, event: str, delivery: str | None, code: int, body: dict[str, Any]
) -> None:
    """The one log line of a webhook that records nothing: rejected (4xx) or ignored (200).

    "Why didn't my deploy show up?" is answered here: the reason, the source, the event and
    the delivery id (what GitHub's and GitLab's delivery logs show), the status answered.
    Never the body nor a header's secret: the reason names a field, never a signature.
    Ignored events are most of a busy hook's traffic, so this stays one cheap call.
    """
    level = logging.INFO if code < 400 else logging.WARNING
    if log.isEnabledFor(level):
        log.log(
            level,
            "webhook ignored" if code < 400 else "webhook rejected",
            extra={
                "source": source,
                "event": event[:_LOGGED_ID] or None,
                "delivery_id": delivery[:_LOGGED_ID] if delivery else None,
                "status_code": code,
                "answer": body.get("status"),
                "reason": body.get("reason"),
            },
        )


def _decode(environ: Environ, body: bytes, *, form_field: str | None) -> Any:
    """The JSON document of a body: plain JSON, or GitHub's form encoding (``payload=``)."""
    # GitHub's and GitLab's own header exactly: nothing to parse (Werkzeug's parse of it was
    # a twentieth of answering an ignored event). Else its media type, as Werkzeug reads it.
    kind = environ.get("CONTENT_TYPE", "")
    if kind != "application/json":
        kind = parse_options_header(kind)[0].lower()
    if kind == "application/x-www-form-urlencoded" and form_field:
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "form body is not valid url-encoded text") from None
        values = fields.get(form_field)
        if not values:
            raise BadRequest(400, f"form body has no {form_field!r} field")
        text: bytes | str = values[0]
    elif kind == "application/json" or kind.endswith("+json"):
        text = body
    else:
        expected = "application/json or form-encoded payload=" if form_field else "application/json"
        raise BadRequest(415, f"content type {kind or 'none'!r} is not {expected}")
    try:
        # orjson: a third of the stdlib's time on a webhook body, which every delivery pays,
        # ignored or not. It refuses what is not JSON (NaN, lone surrogates, nesting past
        # 1,024 levels) with a ValueError, as the receiver should.
        return orjson.loads(text)
    except ValueError:
        raise BadRequest(400, "body is not valid JSON") from None


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
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {rt.admin_token}"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            return jsonify(status="error", reason="missing or wrong admin token"), 401
        return None

    @admin.get("/deliveries")
    def list_deliveries() -> tuple[Response, int]:
        status = request.args.get("status") or None
        if status is not None and status not in STATUSES:
            raise BadRequest(400, f"status must be one of {', '.join(STATUSES)}")
        limit = _int_arg("limit", 50, low=1, high=views.MAX_PAGE) or 50
        after = _int_arg("after", None, low=1, high=views.MAX_ID)
        rows, cursor = rt.store.list_deliveries(status=status, limit=limit, after=after)
        return jsonify(views.delivery_page(rows, cursor)), 200

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
        return jsonify(views.show_delivery(find(raw_id), full=True)), 200

    @admin.post("/deliveries/<path:raw_id>/retry")
    def retry_delivery(raw_id: str) -> tuple[Response, int]:
        found = find(raw_id)
        if not rt.store.retry(found.id, now=rt.clock()):
            raise BadRequest(409, f"delivery {found.id} is {found.status}: nothing to retry")
        rt.wake.set()
        return jsonify(id=found.id, status="queued"), 200

    app.register_blueprint(admin)


def _int_arg(name: str, default: int | None, *, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadRequest(400, f"{name} must be between {low} and {high}")
    return value


def _add_error_handlers(app: Flask) -> None:
    def answer(exc: Exception) -> Response:
        return error_response(exc, request.environ)

    for kind in (BadRequest, MalformedEvent, SignatureError, HTTPException, Exception):
        app.register_error_handler(kind, answer)


def error_response(exc: Exception, environ: Environ) -> Response:
    """The JSON answer to an error raised while answering a request; nothing was stored."""
    code, status, reason = error_answer(exc, environ)
    return _error_json(exc, code, status=status, reason=reason)


def _error_json(exc: Exception, code: int, *, status: str, reason: str) -> Response:
    """The JSON answer to ``exc``; a busy answer says when to come back (``Retry-After``)."""
    response = _json(code, status=status, reason=reason)
    if isinstance(exc, Busy):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def error_answer(exc: Exception, environ: Environ) -> tuple[int, str, str]:
    """The HTTP status, ``status`` and ``reason`` answering an error; nothing was stored."""
    if isinstance(exc, BadRequest):
        return exc.status, "rejected", exc.reason
    if isinstance(exc, Busy):
        source = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
        metrics.count_webhook(source, metrics.NO_EVENT, "busy")
        return 503, "busy", exc.reason
    if isinstance(exc, MalformedEvent):
        return 400, "rejected", str(exc)
    if isinstance(exc, SignatureError):
        source = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
        metrics.count_webhook(source, metrics.NO_EVENT, "unauthorized")
        return 401, "unauthorized", str(exc)
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        reason = "body too large" if status == 413 else (exc.description or exc.name)
        return status, "rejected", reason
    if isinstance(exc, (StoreError, SQLAlchemyError)):
        log.error("database unavailable", extra={"error": type(exc).__name__})
        return 503, "error", "storage unavailable; the event was not stored"
    log.exception("unexpected error", exc_info=exc)
    return 500, "error", "internal error; the event was not stored"


def _json(code: int, *, status: str, reason: str) -> Response:
    body = orjson.dumps({"status": status, "reason": reason})
    return Response(body, status=code, content_type="application/json")
