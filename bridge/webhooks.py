"""The receiver's webhook endpoints, as plain WSGI: from a POST to its answer.

Every source's webhook is answered by one handler (:meth:`WebhookDispatch.answer`), from a
row of :data:`HOOKS` that says how the source signs and names what it sends. It reads the
request from the WSGI environ alone: the sender's signature or token (checked here, never
logged), the body (within the process's room for bodies whose signature is not checked yet,
:class:`InFlight`), the JSON; then ``ingest`` decides, and the answer is one JSON Response.
``WebhookDispatch`` answers a POST to a webhook path before Flask does anything; ``bridge.app``
gives Flask the same answers on its routes, and its error handlers answer with the same
:func:`error_response`. Cortex is never called inside a
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
from bridge.store.journal import UNVERIFIED

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
    read, a chunk at a time (:func:`read_body` takes room before each read, and gives all it
    took back when its block ends), so a client that announces a large Content-Length and
    then sends slowly holds at most one chunk it has not sent.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most ever held at once (for tests and benchmarks)
        self.lock = threading.Lock()

    def take(self, more: int) -> None:
        """Hold ``more`` bytes (a negative ``more`` gives them back); Busy when the process
        has no room for them."""
        with self.lock:
            if more > 0 and self.held + more > self.limit:
                raise Busy(
                    f"this receiver holds {self.limit} bytes of bodies whose signature is not "
                    "checked yet (server.max_unverified_bytes); try again later"
                )
            self.held += more
            self.peak = max(self.peak, self.held)


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
    unverified: bool = False,
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
    # Kept apart in the console's journal when refused before its sender was verified.
    kept = UNVERIFIED if unverified and status == "rejected" else status
    rt.turned_away.note(
        source=source, event=event, delivery=delivery or "", code=code, answer=kept, reason=reason
    )


class WebhookDispatch:
    """WSGI: a POST to a webhook path is answered here (:meth:`answer`); all else goes to Flask.

    Answering an ignored event is most of a busy hook's traffic, and Flask's own work per
    request (contexts, sessions, signals, URL matching twice) was more than half of its
    cost: here a webhook costs its answer and one Response. A webhook is read from the
    environ alone, and every error raised while answering it is answered by :meth:`refused`,
    with what Flask's error handlers answer too; Flask's routes for the webhook paths answer
    with the same two methods, so a webhook's answer is the same whichever way it came.
    """

    def __init__(self, flask_app: Callable[..., Any], rt: Runtime, intake: Intake) -> None:
        self.flask_app = flask_app
        self.rt = rt
        self.intake = intake
        self.limit = rt.config.server.max_body_bytes

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        """Answer a webhook, or hand the request to Flask."""
        hook = HOOKS.get(environ.get("PATH_INFO", ""))
        if hook is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        try:
            response = self.answer(environ, hook)
        except Exception as exc:  # every error gets its answer, whichever way it came
            response = self.refused(exc, environ, hook)
        return response(environ, start_response)

    def answer(self, environ: Environ, hook: Hook) -> Response:
        """Check who sent one webhook, read it, ingest it, and answer; ``received`` (its
        environ and body) is kept, redacted, with the event only when one is stored."""
        rt = self.rt
        secret: str = getattr(rt, hook.secret)
        if not secret and not rt.config.sources.enabled(hook.source):
            # Not "no secret to verify against": the operator turned the source off.
            raise BadRequest(
                404, f"source {hook.source} is disabled (sources.{hook.source}.enabled)"
            )
        checked = not (rt.allow_unsigned and not secret)
        if checked and hook.check_token is not None:
            hook.check_token(secret, environ.get(hook.proof))
        # A signed body is read (within the process's unverified bytes) before anyone knows
        # who sent it, and those bytes count until the check is done; so does one unchecked.
        pool = rt.unverified if hook.check_body is not None or not checked else None
        with read_body(environ, self.limit, pool=pool) as body:
            if checked and hook.check_body is not None:
                hook.check_body(secret, body, environ.get(hook.proof))
        environ[VERIFIED] = True  # what is refused from here was refused its sender known
        event, payload, delivery, key = _read_webhook(environ, body, hook)
        source = hook.source
        answer = ingest(
            source,
            event,
            payload,
            key=key,
            delivery_id=delivery,
            intake=self.intake,
            store=rt.store,
            clock=rt.clock,
            received=(environ, body),
        )
        said = answer.body
        status = said["status"]
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
                reason=said["reason"],
            )
        elif log.isEnabledFor(logging.INFO):
            log.info(
                status, extra={"source": source, "event": event, "delivery_id": delivery, **said}
            )
        # The counter of these labels, once counted before: a lookup (metrics closes the labels).
        counter = metrics.WEBHOOK_COUNTERS.get((source, event, status))
        if counter is not None:
            counter.inc()
        else:
            metrics.count_webhook(source, event or metrics.NO_EVENT, status)
        # What jsonify answers, for half its cost: every delivery gets one of these. The status
        # and the whole Content-Type given here, nothing is left for Werkzeug to work out.
        return Response(orjson.dumps(said), status=answer.status, content_type="application/json")

    def refused(self, exc: Exception, environ: Environ, hook: Hook) -> Response:
        """The answer to an error raised while answering ``hook``'s webhook (``error_answer``);
        a 4xx noted."""
        code, status, reason = error_answer(exc, environ)
        if code < 500:
            # The first delivery id that is not blank, if any (as _read_webhook picks it).
            delivery = next(
                (v for h, _ in hook.deliveries if (v := environ.get(h, "")).strip()), ""
            )
            _turned_away(
                self.rt,
                source=hook.source,
                event=environ.get(hook.event_header, ""),
                delivery=delivery,
                code=code,
                status=status,
                reason=reason,
                # Refused before its sender was verified (a disabled source, a body too large
                # or cut short): anyone may send it (bridge.store.journal keeps it apart).
                unverified=VERIFIED not in environ,
            )
        return _error_json(exc, code, status=status, reason=reason)


# Set in a webhook's environ once its sender is verified (or the source is run unsigned).
VERIFIED = "bridge.verified"

# The most read at a time: a body over it is read (and held) a chunk at a time.
_READ_SIZE = 64 * 1024


@contextmanager
def read_body(environ: Environ, limit: int, *, pool: InFlight | None = None) -> Iterator[bytes]:
    """The request's whole body, for the block; RequestEntityTooLarge (413) once it passes
    ``limit`` bytes.

    With a ``pool``, room for each read is taken in it first, and Busy (503) raised where the
    process has none left (:class:`InFlight`); every byte taken is given back when the block
    ends. However it is framed: a Content-Length over the limit is refused before anything
    is read, and a chunked body (no Content-Length; the server ends the stream, which
    gunicorn and Werkzeug say with ``wsgi.input_terminated``) is read to at most one byte past
    the limit and refused there (that one byte, read only to tell, is not held: a body at the
    limit fits a process whose room is the limit). Werkzeug's own reading of such a stream
    stops *at* the limit and hands back the cut body as if it were whole. A body is read
    straight from the server's stream (Werkzeug's wrapping of it cost a tenth of answering an
    ignored event); one that ends before its Content-Length is a 400 (``ClientDisconnected``).
    BytesIO hands its buffer over without a copy, so a body costs its size once.
    """
    # Werkzeug's reading of the header: None when chunked or absent, 0 when not a number.
    length = get_content_length(environ)
    if length is not None and length > limit:
        raise RequestEntityTooLarge()
    if length is None and not environ.get("wsgi.input_terminated"):
        yield b""  # no length and no end the server vouches for: nothing can be read safely
        return
    stream = environ["wsgi.input"]
    most, room = (length, length) if length is not None else (limit + 1, limit)
    buffer = io.BytesIO()
    size = held = 0
    try:
        while size < most:
            want = min(_READ_SIZE, most - size)
            more = min(size + want, room) - held
            if pool is not None and more > 0:
                pool.take(more)
                held += more
            chunk = stream.read(want)  # a WSGI stream may hand over less than asked
            if not chunk:
                if length is not None:
                    raise ClientDisconnected()
                break
            size += buffer.write(chunk)
        if size > limit:
            raise RequestEntityTooLarge()
        yield buffer.getvalue()
    finally:
        if pool is not None and held:
            pool.take(-held)


# The longest event name or delivery id a log line carries: both are the sender's to choose.
_LOGGED_ID = 200
# The deepest nesting of objects and arrays a webhook's JSON may have (docs/limits.md): orjson's
# own bound, which it says with this message.
MAX_DEPTH = 1024
_TOO_DEEP = "depth limit exceeded"


def _read_webhook(
    environ: Environ, body: bytes, hook: Hook
) -> tuple[str, Any, str | None, str | None]:
    """What one webhook says: its event's name, its JSON document (plain JSON, or GitHub's
    form encoding, ``payload=``), its delivery id and de-duplication key (None for a sender
    without delivery ids: ingest's key then)."""
    # GitHub's and GitLab's own header exactly: nothing to parse (Werkzeug's parse of it was
    # a twentieth of answering an ignored event). Else its media type, as Werkzeug reads it.
    kind = environ.get("CONTENT_TYPE", "")
    if kind != "application/json":
        kind = parse_options_header(kind)[0].lower()
    form_field = hook.form_field
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
        expected = (
            f"application/json or application/x-www-form-urlencoded (its {form_field!r} field)"
            if form_field
            else "application/json"
        )
        raise BadRequest(415, f"content type {kind or 'none'!r} is not {expected}")
    try:
        # orjson: a third of the stdlib's time on a webhook body, which every delivery pays,
        # ignored or not. It refuses what is not JSON (NaN, lone surrogates, nesting past
        # 1,024 levels) with a ValueError, as the receiver should.
        payload = orjson.loads(text)
    except ValueError as exc:
        if str(exc).startswith(_TOO_DEEP):  # valid JSON, past a bound: say which
            raise BadRequest(400, f"body is JSON nested deeper than {MAX_DEPTH} levels") from None
        raise BadRequest(400, "body is not valid JSON") from None
    if hook.name_event is not None:
        event = hook.name_event(payload)
    else:
        event = (environ.get(hook.event_header) if hook.event_header else hook.event) or ""
    if not event:
        raise BadRequest(400, hook.no_event)
    if not hook.deliveries:
        return event, payload, None, None
    # The first delivery id that is not blank, else the last header as it came.
    named = [(name, environ.get(header)) for header, name in hook.deliveries]
    name, delivery = next((n for n in named if n[1] and n[1].strip()), named[-1])
    scope = None if hook.scope is None else (hook.scope[1], environ.get(hook.scope[0]))
    return (
        event,
        payload,
        delivery,
        dedupe_key(hook.source, (name, delivery), scope=scope, body=body),
    )


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


# -- each source's webhook: a table row, not a handler of its own


@dataclass(frozen=True)
class Hook:
    """One source's webhook: how its sender is checked, and where it names its event and its
    delivery. Headers by their WSGI names (X-Foo is HTTP_X_FOO), with the names they are
    shown by."""

    source: str
    secret: str  # the Runtime's attribute holding the secret or token ("" when none is set)
    proof: str  # the header holding the signature or the token
    # A signature of the whole body (GitHub, Flux): the body is read before anyone knows
    # who sent it, within the process's unverified bytes, and counts until the check is done.
    check_body: Callable[[str, bytes, str | None], None] | None = None
    # A token in a header (GitLab, Argo CD): checked before a byte of the body is read.
    check_token: Callable[[str, str | None], None] | None = None
    form_field: str | None = None  # the form field a form-encoded body holds the JSON in
    # The event's name: this header's, else ``name_event`` of the JSON, else ``event``;
    # ``no_event`` is the 400's reason when none is named.
    event_header: str = ""
    name_event: Callable[[Any], str] | None = None
    event: str = ""
    no_event: str = ""
    # The delivery id: the first of these headers that is not blank, else the last as it
    # came; ``scope``, the header naming the hook that id belongs to (ingest.dedupe_key).
    deliveries: tuple[tuple[str, str], ...] = ()
    scope: tuple[str, str] | None = None


# By path. Flux and Argo CD send no delivery id: a repeat is known by the deploy it reports
# and its status (ingest's key=None), so that a reconcile's new message is still a repeat.
HOOKS: dict[str, Hook] = {
    "/webhooks/github": Hook(
        "github",
        "github_secret",
        "HTTP_X_HUB_SIGNATURE_256",
        check_body=verify_github,
        form_field="payload",
        event_header="HTTP_X_GITHUB_EVENT",
        no_event="missing X-GitHub-Event header",
        deliveries=(("HTTP_X_GITHUB_DELIVERY", "X-GitHub-Delivery"),),
        scope=("HTTP_X_GITHUB_HOOK_ID", "X-GitHub-Hook-ID"),
    ),
    "/webhooks/gitlab": Hook(
        "gitlab",
        "gitlab_token",
        "HTTP_X_GITLAB_TOKEN",
        check_token=verify_gitlab,
        event_header="HTTP_X_GITLAB_EVENT",
        no_event="missing X-Gitlab-Event header",
        # GitLab keeps Idempotency-Key across its retries of one event (webhooks docs);
        # X-Gitlab-Event-UUID is per attempt.
        deliveries=(
            ("HTTP_IDEMPOTENCY_KEY", "Idempotency-Key"),
            ("HTTP_X_GITLAB_EVENT_UUID", "X-Gitlab-Event-UUID"),
        ),
    ),
    "/webhooks/flux": Hook(
        "flux",
        "flux_secret",
        "HTTP_X_SIGNATURE",
        check_body=verify_flux,
        name_event=flux.event_name,
        no_event="Flux event payload has no 'involvedObject.kind'",
    ),
    "/webhooks/argocd": Hook(
        "argocd",
        "argocd_token",
        "HTTP_AUTHORIZATION",
        check_token=verify_bearer,
        event=argocd.EVENT,
    ),
}


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
    """The HTTP status, ``status`` and ``reason`` answering an error; nothing was stored. A
    webhook turned away is counted (bridge_webhooks_total), whatever turned it away."""
    path = environ.get("PATH_INFO", "")
    hook = path.startswith("/webhooks/")
    code, status, reason = _refusal(exc)
    if status != "error":
        if hook:
            metrics.count_webhook(path.rsplit("/", 1)[-1], metrics.NO_EVENT, status)
        return code, status, reason
    # Only a webhook stores an event: a page or an admin request that failed says no more.
    stored = "; the event was not stored" if hook else ""
    if isinstance(exc, (StoreError, SQLAlchemyError)):
        log.error("database unavailable", extra={"error": type(exc).__name__})
        return 503, "error", f"storage unavailable{stored}"
    log.exception("unexpected error", exc_info=exc)
    return 500, "error", f"internal error{stored}"


def _refusal(exc: Exception) -> tuple[int, str, str]:
    """What answers an error that is the request's (or the process's load): its status,
    ``status`` and reason; (500, "error", "") for any other."""
    if isinstance(exc, BadRequest):
        return exc.status, "rejected", exc.reason
    if isinstance(exc, Busy):
        return 503, "busy", exc.reason
    if isinstance(exc, MalformedEvent):
        return 400, "rejected", str(exc)
    if isinstance(exc, SignatureError):
        return 401, "unauthorized", str(exc)
    if isinstance(exc, HTTPException) and (exc.code or 500) != 500:
        status = exc.code or 500
        reason = "body too large" if status == 413 else (exc.description or exc.name)
        return status, "rejected", reason
    return 500, "error", ""


def _json(code: int, *, status: str, reason: str) -> Response:
    body = orjson.dumps({"status": status, "reason": reason})
    return Response(body, status=code, content_type="application/json")
