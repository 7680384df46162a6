"""The one HTTP edge of the SCM readers: a ``requests`` Session with auth, timeouts, rate limits.

GitHub and GitLab both say when to slow down, in headers: :func:`rate_limit_wait` reads them
(the one rule), :class:`ApiClient` waits and tries again. The clock and the sleep are passed in,
so tests wait no real time. The token is only ever in the Session's headers: no error, log or
``repr`` shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import requests

from bridge import __version__
from bridge.cortex.retry import RetryPolicy, parse_retry_after
from bridge.errors import BridgeError

# GitHub: a secondary rate limit without Retry-After means "wait at least one minute"
# (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api, "Exceeding the
# rate limit"). GitLab says the same of a 429 without its headers (docs.gitlab.com,
# "Rate limits": "wait at least a minute").
DEFAULT_WAIT_SECONDS = 60.0
# Longer waits than this (a primary limit reset an hour away) fail the sync instead: better a
# clear error in CI than a job hanging until its own timeout.
MAX_WAIT_SECONDS = 3700.0
# Transient failures (5xx, a dropped connection) are tried this many times in all, waiting
# the project's one backoff (bridge.cortex.retry.RetryPolicy) between tries.
RETRY = RetryPolicy(max_attempts=4, base_delay=2.0)
TIMEOUT = (5.0, 30.0)  # connect, read


class ScmError(BridgeError):
    """An SCM API refused or failed a request; the message names the host and the status."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The headers names of one API's rate limit."""

    remaining: str
    reset: str  # epoch seconds on both GitHub and GitLab


GITHUB_LIMITS = Limits("X-RateLimit-Remaining", "X-RateLimit-Reset")
GITLAB_LIMITS = Limits("RateLimit-Remaining", "RateLimit-Reset")


def rate_limit_wait(
    status: int, headers: Mapping[str, str], now: float, limits: Limits
) -> float | None:
    """Seconds to wait before the next request, or None when the answer says nothing of it.

    A 429, or GitHub's 403 for a limit, waits Retry-After, else until the reset, else a
    minute. A successful answer that spent the last request waits until the reset.
    """
    remaining = headers.get(limits.remaining)
    exhausted = remaining is not None and remaining.strip() == "0"
    limited = status == 429 or (status == 403 and (exhausted or "Retry-After" in headers))
    if not limited and not (exhausted and 200 <= status < 300):
        return None
    moment = datetime.fromtimestamp(now, timezone.utc)
    retry_after = parse_retry_after(headers.get("Retry-After"), now=moment)
    if retry_after is not None and limited:
        return retry_after
    reset = _number(headers.get(limits.reset))
    if reset is not None and exhausted:
        return max(reset - now, 0.0) + 1.0  # the reset second itself may still be spent
    return DEFAULT_WAIT_SECONDS if limited else None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ApiClient:
    """GET and POST against one API root, waiting out rate limits; raises ScmError."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        limits: Limits,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        on_wait: Callable[[float, str], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits
        self.requests = 0  # made so far (for the progress line and the benchmark)
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._session = session or requests.Session()
        self._session.headers.update(
            {"User-Agent": f"cortex-deploy-bridge/{__version__}", **headers}
        )

    def __repr__(self) -> str:  # never show the token
        return f"ApiClient({self.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` under the API root (absolute URLs are kept)."""
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> requests.Response:
        """GET one page."""
        return self._request("GET", self.url(path), params=params)

    def post_json(self, path: str, body: Mapping[str, Any]) -> requests.Response:
        """POST a JSON body (GraphQL)."""
        return self._request("POST", self.url(path), json=body)

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[requests.Response, str | None]]:
        """Each page of a list and the URL of the next (None: last), by ``Link: rel="next"``.

        GitHub and GitLab put every query parameter, keyset cursors included, in the next
        link, so that URL alone is where a later read resumes (pass it as ``path``).
        """
        url: str | None = self.url(path)
        query = params
        while url is not None:
            page = self._request("GET", url, params=query)
            url = page.links.get("next", {}).get("url")
            query = None  # the next link carries the whole query
            yield page, url

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        failures = 0
        while True:
            self.requests += 1
            try:
                response = self._session.request(method, url, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                failures += 1
                if failures >= RETRY.max_attempts:
                    raise ScmError(f"{self._host()} unreachable: {type(exc).__name__}") from exc
                self._sleep(RETRY.delay(failures))
                continue
            wait = rate_limit_wait(
                response.status_code, response.headers, self._clock(), self.limits
            )
            if wait is not None and not response.ok:
                self.wait(wait)
                continue
            if response.status_code >= 500 and failures + 1 < RETRY.max_attempts:
                failures += 1
                self._sleep(RETRY.delay(failures))
                continue
            if not response.ok:
                raise ScmError(self._refusal(response), status=response.status_code)
            if wait is not None:
                self.wait(wait)  # this answer spent the last request: wait before the next
            return response

    def now(self) -> float:
        """The clock rate-limit resets are compared with (epoch seconds)."""
        return self._clock()

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` for a rate limit; ScmError when that is too long to wait."""
        if seconds > MAX_WAIT_SECONDS:
            raise ScmError(
                f"{self._host()} rate limit: next request allowed in {seconds:.0f}s, "
                "too long to wait; run again later"
            )
        if self._on_wait is not None:
            self._on_wait(seconds, self._host())
        self._sleep(seconds)

    def _host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url

    def _refusal(self, response: requests.Response) -> str:
        status = response.status_code
        hint = {
            401: "the token is missing, wrong or expired",
            403: "the token lacks a scope or access to this repository",
            404: "not found, or the token cannot see it",
        }.get(status, "")
        message = _message_of(response)
        detail = "; ".join(part for part in (hint, message) if part)
        path = urlsplit(response.url).path
        return f"{self._host()} answered {status} for {path}" + (f": {detail}" if detail else "")


def _message_of(response: requests.Response) -> str:
    """The API's own ``message`` (GitHub, GitLab), cut short; never the whole body."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return str(message)[:200] if message else ""
