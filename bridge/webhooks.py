"""The receiver's webhook endpoints, as plain WSGI: from a POST to its answer.

A handler per source reads its request from the WSGI environ alone: the body (within the
process's room for bodies whose signature is not checked yet, :class:`InFlight`), the
sender's signature or token (checked here, never logged), the JSON; then ``ingest`` decides,
and the answer is one JSON Response. ``WebhookDispatch`` answers a POST to a webhook path
before Flask does anything; ``bridge.app`` wires these handlers into the Flask app, whose
error handlers answer with the same :func:`error_response`. Cortex is never called inside a
request: the worker delivers what the outbox holds.
"""

from __future__ import annotations

import hmac
import io
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from flask import Response
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.wsgi import get_content_length

from bridge import metrics
from bridge.errors import MalformedEvent, SignatureError
from bridge.ingest import Intake, dedupe_key, ingest
from bridge.sources import argocd, flux
from bridge.store import StoreError

if TYPE_CHECKING:
    from bridge.app import Runtime

log = logging.getLogger("bridge.receiver")


# The WSGI environ of one request.
Environ = dict[str, Any]


# -- bodies whose signature is not checked yet: what one process holds of them, bounded


# Seconds a refused sender is asked to wait: bodies in flight are done (or timed out by
# serve's --body-timeout) within seconds.
RETRY_AFTER_SECONDS = 5


class Busy(Exception):
    """503: the process holds as many unverified bytes as it may; try again later."""

    def __init__(self, reason: str, *, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class InFlight:
    """Bytes of bodies whose signature is not checked yet, held by one process: at most
    ``limit`` at any moment (``server.max_unverified_bytes``).

    GitHub signs the whole body (X-Hub-Signature-256 is an HMAC of every byte), so a body is
    read in full before anyone knows who sent it. Without a bound, anonymous clients decide
    how much memory a worker holds: 40 connections sending 24 MiB each took one worker to
    1,355 MB. A request whose next bytes would pass the limit is answered ``503`` with
    ``Retry-After`` (:class:`Busy`) and its bytes are let go. Bytes are counted as they are
    read, a chunk at a time (:func:`read_body` asks its :class:`Hold` for room before each
    read), so a client that announces a large Content-Length and then sends slowly holds at
    most one chunk it has not sent.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most ever held at once (for tests and benchmarks)
        self.lock = threading.Lock()

    @contextmanager
    def hold(self) -> Iterator[Hold]:
        """A hold for one request's body, every byte of it given back when the block ends."""
        hold = Hold(self)
        try:
            yield hold
        finally:
            with self.lock:
                self.held -= hold.size


@dataclass
class Hold:
    """The bytes one request holds of its process's :class:`InFlight`."""

    pool: InFlight
    size: int = 0

    def grow_to(self, size: int) -> None:
        """Hold ``size`` bytes in all (before reading them); Busy when the process has no room."""
        more = size - self.size
        if more <= 0:
            return
        pool = self.pool
        with pool.lock:
            if pool.held + more > pool.limit:
                raise Busy(
                    f"this receiver holds {pool.limit} bytes of bodies whose signature is not "
                    "checked yet (server.max_unverified_bytes); try again later"
                )
            pool.held += more
            pool.peak = max(pool.peak, pool.held)
        self.size = size


# -- the endpoints: a handler per source, the dispatch in front of Flask, the answer


class BadRequest(Exception):
    """A 4xx answer with a reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
    """The one place a webhook answered without storing an event (4xx, ignored) is noted:
    one log line and one row for the console's bounded journal.

    "Why didn't my deploy show up?" is answered by the line: the reason, the source, the event
    and the delivery id (what GitHub's and GitLab's delivery logs show), the status answered.
    Never the body nor a header's secret: the reason names a field, never a signature.
    Ignored events are most of a busy hook's traffic, so this stays one cheap call.
    """
    ignored = code < 400
    if log.isEnabledFor(logging.INFO if ignored else logging.WARNING):
        fields = {
            "source": source,
            "event": event[:_LOGGED_ID] or None,
            "delivery_id": delivery[:_LOGGED_ID] if delivery else None,
            "status_code": code,
            "answer": status,
            "reason": reason,
        }
        if ignored:
            log.info("webhook ignored", extra=fields)
        else:
            log.warning("webhook rejected", extra=fields)
    rt.turned_away.note(
        source=source, event=event, delivery=delivery or "", code=code, answer=status, reason=reason
    )


class WebhookDispatch:
    """WSGI: a POST to a webhook path goes straight to its handler; all else to Flask.

    Answering an ignored event is most of a busy hook's traffic, and Flask's own work per
    request (contexts, sessions, signals, URL matching twice) was more than half of its
    cost: here a webhook costs its handler and one Response. The handlers read only the
    environ, and every error they raise is answered by :meth:`refused`, with what Flask's
    error handlers answer too, so a webhook's answer is the same whichever way it came.
    """

    def __init__(
        self,
        flask_app: Callable[..., Any],
        handlers: dict[str, Callable[[Environ], Response]],
        rt: Runtime,
    ) -> None:
        self.flask_app = flask_app
        self.handlers = handlers
        self.rt = rt

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        """Answer a webhook, or hand the request to Flask."""
        handler = self.handlers.get(environ.get("PATH_INFO", ""))
        if handler is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        try:
            response = handler(environ)
        except Exception as exc:  # every error gets its answer, whichever way it came
            response = self.refused(exc, environ)
        return response(environ, start_response)

    def refused(self, exc: Exception, environ: Environ) -> Response:
        """The answer to an error a webhook's handler raised (``error_answer``); a 4xx noted."""
        code, status, reason = error_answer(exc, environ)
        if code < 500:
            source = environ.get("PATH_INFO", "").rsplit("/", 1)[-1]
            event_header, delivery_headers = WEBHOOK_HEADERS.get(source, ("", ()))
            delivery = next((v for h in delivery_headers if (v := environ.get(h, "")).strip()), "")
            event = environ.get(event_header, "")
            _turned_away(
                self.rt,
                source=source,
                event=event,
                delivery=delivery,
                code=code,
                status=status,
                reason=reason,
            )
        return _error_json(exc, code, status=status, reason=reason)


def webhook_handlers(rt: Runtime, intake: Intake) -> dict[str, Callable[[Environ], Response]]:
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
        return _answered(
            "github",
            event,
            payload,
            key=key,
            delivery=delivery,
            rt=rt,
            intake=intake,
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
        return _answered(
            "gitlab",
            event,
            payload,
            key=key,
            delivery=delivery,
            rt=rt,
            intake=intake,
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
        return _answered(
            "flux",
            event,
            payload,
            key=None,
            delivery=None,
            rt=rt,
            intake=intake,
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
        return _answered(
            "argocd",
            argocd.EVENT,
            payload,
            key=None,
            delivery=None,
            rt=rt,
            intake=intake,
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
    process has none left (:class:`InFlight`): a body over one read is read a chunk at a time.

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


def _answered(
    source: str,
    event: str,
    payload: Any,
    *,
    key: str | None,
    delivery: str | None,
    rt: Runtime,
    intake: Intake,
    received: tuple[Environ, bytes],
) -> Response:
    """Ingest one webhook and answer it; ``received`` (its environ and body) is kept, redacted,
    with the event only when one is stored."""
    answer = ingest(
        source,
        event,
        payload,
        key=key,
        delivery_id=delivery,
        intake=intake,
        store=rt.store,
        clock=rt.clock,
        received=received,
    )
    body = answer.body
    status = body["status"]
    if answer.queued:
        rt.wake.set()
    if status == "ignored" or answer.status >= 400:
        _turned_away(
            rt,
            source=source,
            event=event,
            delivery=delivery,
            code=answer.status,
            status=status,
            reason=body["reason"],
        )
    elif log.isEnabledFor(logging.INFO):
        log.info(status, extra={"source": source, "event": event, "delivery_id": delivery, **body})
    # The counter of these labels, once counted before: a lookup (metrics closes the labels).
    counter = metrics.WEBHOOK_COUNTERS.get((source, event, status))
    if counter is not None:
        counter.inc()
    else:
        metrics.count_webhook(source, event or metrics.NO_EVENT, status)
    # What jsonify answers, for half its cost: every delivery gets one of these. The status
    # and the whole Content-Type given here, nothing is left for Werkzeug to work out.
    return Response(orjson.dumps(body), status=answer.status, content_type="application/json")


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


# -- who sent it: signatures and tokens (pure: the secret and the header in, SignatureError out)

# "sha256=" + lower-case hex HMAC-SHA256 of the raw body, keyed with the hook's secret
# (docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries).
_GITHUB_PREFIX = "sha256="


def verify_github(secret: str, body: bytes, header: str | None) -> None:
    """Check X-Hub-Signature-256 against the raw body; raise SignatureError when it fails."""
    if not secret:
        # An empty key is a key anyone can sign with: refuse rather than accept everything.
        raise SignatureError("no webhook secret to verify against")
    if not header or not header.strip():
        raise SignatureError("missing X-Hub-Signature-256")
    given = header.strip()
    if not given.startswith(_GITHUB_PREFIX):
        raise SignatureError("X-Hub-Signature-256 is not a sha256= signature")
    # hmac.digest: OpenSSL's one-shot HMAC, no HMAC object to build (same bytes as hmac.new).
    digest = hmac.digest(secret.encode("utf-8"), body, "sha256").hex()
    # Compare bytes: compare_digest refuses str holding non-ASCII, which a header may.
    expected = (_GITHUB_PREFIX + digest).encode("ascii")
    if not hmac.compare_digest(expected, given.lower().encode("utf-8", "backslashreplace")):
        raise SignatureError("signature does not match")


def verify_gitlab(token: str, header: str | None) -> None:
    """Check X-Gitlab-Token against the configured token; raise SignatureError when it fails."""
    if not token:
        raise SignatureError("no webhook token to verify against")
    if not header:
        raise SignatureError("missing X-Gitlab-Token")
    # GitLab sends the secret token itself, line breaks removed, and signs nothing
    # (app/services/web_hook_service.rb, build_headers; webhooks.md "Secret token").
    expected = token.replace("\r", "").replace("\n", "").encode("utf-8", "backslashreplace")
    given = header.encode("utf-8", "backslashreplace")
    if not hmac.compare_digest(expected, given):
        raise SignatureError("X-Gitlab-Token does not match")


# Flux's generic-hmac Provider: "X-Signature: <hash-function>=<hex HMAC of the body>", keyed
# with the Provider secret's `token`; sha256 today, "which may change in the future", and the
# verification example in its docs takes these four (fluxcd notification-controller,
# docs/spec/v1beta3/providers.md, "Generic webhook with HMAC").
_FLUX_HASHES = ("sha224", "sha256", "sha384", "sha512")


def verify_flux(secret: str, body: bytes, header: str | None) -> None:
    """Check Flux's X-Signature against the raw body; raise SignatureError when it fails."""
    if not secret:
        raise SignatureError("no webhook secret to verify against")
    if not header or not header.strip():
        raise SignatureError("missing X-Signature")
    name, sep, given = header.strip().partition("=")
    name = name.strip().lower()
    if not sep or name not in _FLUX_HASHES:
        raise SignatureError("X-Signature is not a sha256= (or sha224/384/512=) signature")
    digest = hmac.digest(secret.encode("utf-8"), body, name).hex().encode("ascii")
    if not hmac.compare_digest(digest, given.strip().lower().encode("utf-8", "backslashreplace")):
        raise SignatureError("signature does not match")


_BEARER = "bearer "


def verify_bearer(token: str, header: str | None) -> None:
    """Check ``Authorization: Bearer <token>`` (Argo CD's webhook service sends the header the
    ConfigMap sets); raise SignatureError when it fails."""
    if not token:
        raise SignatureError("no webhook token to verify against")
    if not header or not header.strip():
        raise SignatureError("missing Authorization")
    value = header.strip()
    if value[: len(_BEARER)].lower() != _BEARER:
        raise SignatureError("Authorization is not a Bearer token")
    given = value[len(_BEARER) :].strip().encode("utf-8", "backslashreplace")
    if not hmac.compare_digest(token.encode("utf-8", "backslashreplace"), given):
        raise SignatureError("Authorization does not match")


# -- errors: one answer for each, whichever way the request came


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
