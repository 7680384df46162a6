"""What Cortex's unsuccessful answers mean: the error classes, classified once. Pure: no I/O.

A 2xx answer's JSON is the client's to read (bridge/cortex/client.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bridge.errors import CortexError, CortexRejected, CortexRetryable, CortexUnauthorized
from bridge.redact import cut, spellings
from bridge.retry import parse_retry_after

if TYPE_CHECKING:  # a type only: this room does no I/O
    from bridge.cortex.transport import Response

MAX_MESSAGE = 300
# What an error keeps of the answer's body.
MAX_BODY_SHOWN = 2000
# Cortex's answers that refuse the API token: the one place that says so.
UNAUTHORIZED = (401, 403)


def decode_json(response: Response) -> Any:
    """The JSON body of an answer, or None when there is none."""
    if not response.body:
        return None
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):  # not JSON; nested past what Python parses
        return None


def cortex_message(response: Response, spelled: tuple[str, ...] = ()) -> str:
    """Cortex's own words from an error body (ErrorResponse or a problem detail), with
    ``spelled`` (:func:`bridge.redact.spellings`) masked before the words are cut: a token
    echoed across the cut is never shown in part."""
    data = decode_json(response)
    if isinstance(data, dict):
        parts = [
            str(data[key])
            for key in ("message", "title", "detail", "details")
            if isinstance(data.get(key), str) and data[key]
        ]
        if parts:
            return cut(": ".join(dict.fromkeys(parts)), MAX_MESSAGE, spelled)
    return cut(response.body.decode("utf-8", "replace").strip(), MAX_MESSAGE, spelled)


def retry_after_of(response: Response) -> float | None:
    """Seconds Cortex asked us to wait: the header first, then the body's ``retryAfter``."""
    seconds = parse_retry_after(response.headers.get("retry-after"))
    if seconds is not None:
        return seconds
    data = decode_json(response)
    if isinstance(data, dict) and isinstance(data.get("retryAfter"), (int, float)):
        return max(float(data["retryAfter"]), 0.0)
    return None


def error_for(
    response: Response, *, entity: str | None = None, secrets: Iterable[str] = ()
) -> CortexError:
    """The error an unsuccessful answer means, with a message a user can act on.

    Cortex's own words are redacted of ``secrets`` (an error body may echo the token), so the
    error is safe to log, store and show wherever it goes.
    """
    spelled = spellings(secrets)
    status = response.status
    said = cortex_message(response, spelled)
    suffix = f": {said}" if said else ""
    body = cut(response.body.decode("utf-8", "replace"), MAX_BODY_SHOWN, spelled)
    if status == 429:
        wait = retry_after_of(response)
        hint = f", asked to retry after {wait:g}s" if wait is not None else ""
        return CortexRetryable(
            f"rate limited by cortex (429{hint})", status=status, body=body, retry_after=wait
        )
    if status >= 500 or status in (408, 425):
        return CortexRetryable(
            f"cortex answered {status}{suffix}",
            status=status,
            body=body,
            retry_after=retry_after_of(response),
            # A server error may come after the write was done (a gateway timing out on a
            # slow backend): the deploy may exist. 408/425 mean it was never taken up.
            unclear=status >= 500,
        )
    if status == 401:
        message = f"cortex refused the API token (401){suffix}"
    elif status == 403:
        message = f"the API token may not edit entities (403; it needs 'Edit entities'){suffix}"
    elif status == 404 and entity is not None:
        message = f"entity {entity!r} not found in cortex (404){suffix}"
    elif status == 413:
        message = f"cortex refused the request as too large (413){suffix}"
    else:
        message = f"cortex rejected the request ({status}){suffix}"
    if status in UNAUTHORIZED:
        return CortexUnauthorized(message, status=status, body=body)
    return CortexRejected(message, status=status, body=body)
