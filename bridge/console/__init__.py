"""The operator's web console at /console: deliveries, dead letters, turned-away webhooks.

A Flask blueprint that ``create_app`` registers only when ``BRIDGE_ADMIN_TOKEN`` is set (so
without it every /console path is a 404). Pages are server-rendered HTML (Jinja), readable
without JavaScript; the charts are SVG drawn on the server. Access: bridge/console/access.py;
the pages: bridge/console/pages.py.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from bridge.console.access import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGN_IN_COOKIE,
    SIGN_IN_SECONDS,
    Keys,
    foreign_origin,
    new_nonce,
)
from bridge.webhooks import Environ, InFlight, read_body

if TYPE_CHECKING:
    from bridge.app import Runtime

# No script, no frame, nothing from another origin; styles and images from the console only.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Served without a session: the sign-in form and the style sheet.
_OPEN = {"console.sign_in", "console.static"}
# The most a console form's body may hold (docs/limits.md): the sign-in form (the token and a
# CSRF token) and "Retry selected" (a CSRF token and at most 200 ids) are a few kilobytes.
FORM_BYTES = 64 * 1024


def console_blueprint(rt: Runtime) -> Blueprint:
    """The console's pages, bound to ``rt`` (whose admin token must be set)."""
    assert rt.admin_token, "the console is only served with an admin token"
    keys = Keys(rt.admin_token)
    console = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
    )

    @console.before_request
    def guard() -> Response | None:
        g.csrf = ""
        session = keys.session(request.cookies.get(SESSION_COOKIE), time.time())
        if request.method == "POST":
            _read_form(request.environ, rt.unverified)
            hosts = (request.host, *request.headers.get("X-Forwarded-Host", "").split(","))
            if foreign_origin(
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), hosts
            ):
                return _refuse(403, "This form was sent from another site.")
            if request.endpoint != "console.sign_in":
                given = request.form.get("csrf")
                if session is None:
                    return _refuse(401, "Sign in first.")
                if not keys.csrf_matches(session.nonce, given):
                    return _refuse(403, "The form's CSRF token is missing or wrong.")
        if session is not None:
            g.csrf = keys.csrf(session.nonce)
        elif request.endpoint not in _OPEN:
            if request.method != "GET":
                return _refuse(401, "Sign in first.")
            return redirect(url_for("console.sign_in"), 303)  # type: ignore[return-value]
        return None

    console.after_request(secured)

    @console.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Response | tuple[str, int]:
        nonce = request.cookies.get(SIGN_IN_COOKIE) or ""
        if request.method == "POST":
            if not keys.csrf_matches(nonce, request.form.get("csrf")):
                return _refuse(403, "The sign-in form's CSRF token is missing or wrong.")
            if keys.token_matches(request.form.get("token", "")):
                _, cookie = keys.new_session(time.time())
                response = redirect(url_for("console.deliveries"), 303)
                _set_cookie(response, SESSION_COOKIE, cookie, SESSION_SECONDS)
                _set_cookie(response, SIGN_IN_COOKIE, "", 0)  # gone
                return response  # type: ignore[return-value]
            error, status = "That is not the admin token.", 401
        else:
            error, status = "", 200
        nonce = nonce or new_nonce()
        page = render_template(
            "console/sign_in.html", csrf=keys.csrf(nonce), error=error, signed_in=False
        )
        response = Response(page, status=status, content_type="text/html; charset=utf-8")
        _set_cookie(response, SIGN_IN_COOKIE, nonce, SIGN_IN_SECONDS)
        return response

    @console.post("/sign-out")
    def sign_out() -> Response:
        response = redirect(url_for("console.sign_in"), 303)
        _set_cookie(response, SESSION_COOKIE, "", 0)  # gone
        return response  # type: ignore[return-value]

    @console.errorhandler(404)
    def not_found(exc: Exception) -> Response:
        return _refuse(404, "There is no such page or delivery.")

    @console.errorhandler(400)
    def bad_request(exc: Exception) -> Response:
        # A page's own refusal (a filter that cannot be searched for), as a page.
        return _refuse(400, getattr(exc, "description", None) or "The request was refused.")

    from bridge.console.pages import add_pages

    add_pages(console, rt)
    return console


def _read_form(environ: Environ, pool: InFlight) -> None:
    """Read a POST's body before anything parses it as a form: at most FORM_BYTES (else 413,
    unread), within the process's room for bodies whose sender is not known yet (else 503
    busy), as a webhook's is read (bridge.webhooks.read_body). A sign-in is anyone's to send:
    left to Werkzeug, each one held up to 500 KB of form while it trickled in, outside that
    room, whatever the number of connections."""
    with read_body(environ, FORM_BYTES, pool=pool) as body:
        pass
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


def _set_cookie(response: BaseResponse, name: str, value: str, seconds: int) -> None:
    """HttpOnly, SameSite=Strict, for /console only; Secure over HTTPS (or behind a proxy
    that says the browser used HTTPS)."""
    # The proxy's word for the scheme the browser used: the first of a chain, in any case.
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    secure = request.is_secure or forwarded == "https"
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path="/console",
        secure=secure,
        httponly=True,
        samesite="Strict",
    )


def secured(response: Response) -> Response:
    """``response`` with the console's headers: its CSP, no framing, no sniffing, no store."""
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    # "no-referrer" would make Chrome send "Origin: null" with the console's own forms.
    headers["Referrer-Policy"] = "same-origin"
    headers.setdefault("Cache-Control", "no-store")
    return response


def _refuse(status: int, reason: str) -> Response:
    """A refused request: a small HTML page saying why."""
    page = render_template("console/refused.html", status=status, reason=reason, signed_in=False)
    return Response(page, status=status, content_type="text/html; charset=utf-8")


# What a path under /console that no page answers is told (the router's 404 and 405 come
# before any blueprint's own handler).
_ROUTING = {404: "There is no such page or delivery.", 405: "This page does not take that method."}


def refused_page(code: int) -> Response | None:
    """The console's own page for the router's 404 or 405 under /console; None for another
    code."""
    reason = _ROUTING.get(code)
    return None if reason is None else secured(_refuse(code, reason))
