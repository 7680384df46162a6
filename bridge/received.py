"""The copy of a webhook kept with its delivery, for the console: headers and body, redacted.

Pure. Only headers that say what the webhook was are kept (never a signature, a token, a
cookie); the body is cut to MAX_RECEIVED_BYTES, and every known secret and any password in
a URL is masked, so what the console shows is safe to show.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.redact import MASK, redact

# The most of a webhook's body kept with its delivery (docs/limits.md).
MAX_RECEIVED_BYTES = 64 * 1024

# Headers kept, by their WSGI names; values cut to 200 characters.
_KEPT = {
    "CONTENT_TYPE": "Content-Type",
    "HTTP_USER_AGENT": "User-Agent",
    "HTTP_X_GITHUB_EVENT": "X-GitHub-Event",
    "HTTP_X_GITHUB_DELIVERY": "X-GitHub-Delivery",
    "HTTP_X_GITHUB_HOOK_ID": "X-GitHub-Hook-ID",
    "HTTP_X_GITLAB_EVENT": "X-Gitlab-Event",
    "HTTP_X_GITLAB_EVENT_UUID": "X-Gitlab-Event-UUID",
    "HTTP_X_GITLAB_INSTANCE": "X-Gitlab-Instance",
    "HTTP_IDEMPOTENCY_KEY": "Idempotency-Key",
}
# "scheme://user:password@host": the user and password, masked. The scheme's length is
# bounded: unbounded, a long run of letters without "://" after it (a 2 MB title) made the
# search quadratic, 24 s of the receiver's CPU for one webhook.
_USERINFO = re.compile(r"(?i)([a-z][a-z0-9+.-]{0,31}://)[^/\s\"'@]+@")


def received_copy(environ: Mapping[str, Any], body: bytes, secrets: Iterable[str]) -> str:
    """The JSON text kept for one webhook: ``{"headers": {...}, "body": "...", ...}``."""
    headers = {name: str(environ[key])[:200] for key, name in _KEPT.items() if environ.get(key)}
    cut = body[:MAX_RECEIVED_BYTES]
    text = cut.decode("utf-8", "replace")
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", redact(text, secrets))
    kept: dict[str, Any] = {"headers": headers, "body": text, "bytes": len(body)}
    if len(body) > MAX_RECEIVED_BYTES:
        kept["truncated"] = True
    return json.dumps(kept, separators=(",", ":"))
