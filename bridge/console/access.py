"""Who may use the console: the session cookie, the CSRF tokens, the Origin check. Pure.

Signing in proves knowledge of ``BRIDGE_ADMIN_TOKEN``. The session cookie never holds the
token: it is ``expiry.nonce.mac``, where the MAC is keyed by a key derived from the token,
so every process and replica checks it without shared state, and a new token ends every
session. Each form carries a CSRF token, a MAC of the session's nonce (or, on the sign-in
form, of a nonce in a cookie of its own), which a page of another site cannot read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

SESSION_COOKIE = "bridge_console"
SIGN_IN_COOKIE = "bridge_console_sign_in"
# How long a session lasts after signing in (docs/console.md).
SESSION_SECONDS = 8 * 3600
SIGN_IN_SECONDS = 3600


@dataclass(frozen=True)
class Session:
    """A signed-in browser: its nonce (which its CSRF token is made from) and expiry."""

    nonce: str
    expires: int


class Keys:
    """The MACs of the console's cookies and tokens, keyed by a key derived from the token."""

    def __init__(self, admin_token: str) -> None:
        self._admin = admin_token.encode("utf-8")
        self._key = hmac.new(
            b"cortex-deploy-bridge console v1", self._admin, hashlib.sha256
        ).digest()

    def token_matches(self, given: str) -> bool:
        """True when ``given`` is the admin token (a constant-time comparison)."""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self._admin)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}.{value}".encode(), hashlib.sha256).hexdigest()

    def new_session(self, now: float) -> tuple[Session, str]:
        """A fresh session and the cookie value that carries it."""
        session = Session(secrets.token_urlsafe(18), int(now) + SESSION_SECONDS)
        body = f"{session.expires}.{session.nonce}"
        return session, f"{body}.{self._mac('session', body)}"

    def session(self, cookie: str | None, now: float) -> Session | None:
        """The session a cookie carries, if its MAC holds and it has not expired."""
        expires, _, rest = (cookie or "").partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expires.isascii() and expires.isdigit() and nonce and mac):
            return None
        # As bytes: a cookie is the browser's to send, and compare_digest refuses str that is
        # not ASCII (a 500 on every console page, for whoever could set a cookie on the host).
        expected = self._mac("session", f"{expires}.{nonce}").encode()
        if not hmac.compare_digest(mac.encode("utf-8", "replace"), expected):
            return None
        if int(expires) <= now:
            return None
        return Session(nonce, int(expires))

    def csrf(self, nonce: str) -> str:
        """The CSRF token of a session's (or the sign-in form's) nonce."""
        return self._mac("csrf", nonce)

    def csrf_matches(self, nonce: str | None, given: str | None) -> bool:
        """True when ``given`` is the CSRF token of ``nonce``."""
        if not nonce or not given:
            return False
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.csrf(nonce).encode())


def new_nonce() -> str:
    """A random nonce for the sign-in form's cookie."""
    return secrets.token_urlsafe(18)


def foreign_origin(origin: str | None, fetch_site: str | None, hosts: tuple[str, ...]) -> bool:
    """True when a POST came from a page of another site (its ``Origin``, or Fetch Metadata).

    ``hosts``: the host (and port) the request was sent to: its ``Host``, and the
    ``X-Forwarded-Host`` a proxy that rewrites ``Host`` adds (a page of another site cannot
    set that header on a form's POST). A browser sends ``Origin`` with every POST (Fetch
    standard); ``null`` (a sandboxed frame, a redirect across sites) is foreign too. Without
    it, ``Sec-Fetch-Site`` decides; a client that sends neither is no browser, and still
    needs the CSRF token.
    """
    if origin is not None:
        if origin == "null":
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:  # no URL at all ("http://["): no page of ours sent it
            return True
        ours = {host.strip().lower() for host in hosts if host.strip()}
        return parts.scheme not in ("http", "https") or parts.netloc.lower() not in ours
    return fetch_site not in (None, "same-origin", "none")
