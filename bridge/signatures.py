"""Check that a webhook came from the SCM: GitHub's HMAC signature, GitLab's secret token.

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
