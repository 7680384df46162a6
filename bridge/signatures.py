"""Check that a webhook came from its sender: GitHub's and Flux's HMAC signatures, GitLab's secret
token, Argo CD's bearer token.

Pure: both checks take the secret and the header values and raise
:class:`~bridge.errors.SignatureError`, whose message never holds the secret.
"""

from __future__ import annotations

import hmac

from bridge.errors import SignatureError

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
