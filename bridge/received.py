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
# "scheme://user:password@host": the user and password, masked. Found by its "://" and
# "@" first, then the scheme (at most 32 characters) looked for just before the "://": a
# pattern that starts with the scheme is tried at every letter of the body, 32 characters
# ahead each time, and cost 220 us of a 3.6 kB webhook's 560 us of CPU (benchmarks/RESULTS.md,
# "Receiver tail ... stored"); unbounded, it was quadratic (24 s for a 2 MB title).
_USERINFO = re.compile(r"://([^/\s\"'@]+)@")
_SCHEME = re.compile(r"(?i)[a-z][a-z0-9+.-]{0,31}\Z")
_SCHEME_MOST = 32


def received_copy(environ: Mapping[str, Any], body: bytes, secrets: Iterable[str]) -> str:
    """The JSON text kept for one webhook: ``{"headers": {...}, "body": "...", ...}``."""
    headers = {name: str(environ[key])[:200] for key, name in _KEPT.items() if environ.get(key)}
    cut = body[:MAX_RECEIVED_BYTES]
    text = cut.decode("utf-8", "replace")
    text = mask_userinfo(redact(text, secrets))
    kept: dict[str, Any] = {"headers": headers, "body": text, "bytes": len(body)}
    if len(body) > MAX_RECEIVED_BYTES:
        kept["truncated"] = True
    return json.dumps(kept, separators=(",", ":"))


def mask_userinfo(text: str) -> str:
    """``text`` with the user and password of each ``scheme://user:password@`` masked.

    What ``(?i)([a-z][a-z0-9+.-]{0,31}://)[^/\\s"'@]+@`` replaced, found from the "://" out.
    """
    kept: list[str] = []
    done = 0
    for found in _USERINFO.finditer(text):
        at = found.start()
        if _SCHEME.search(text, max(done, at - _SCHEME_MOST), at) is None:
            continue
        kept += (text[done : found.start(1)], MASK)
        done = found.end(1)
    if not kept:
        return text
    kept.append(text[done:])
    return "".join(kept)
