"""The SCM readers' client: GitHub's and GitLab's APIs with auth, rate limits and bounds.

Every request goes through :class:`bridge.sync.fetch.Fetcher` (the token to its configured
origin only, answers bounded). GitHub and GitLab both say when to slow down, in headers:
:func:`rate_limit_wait` reads them (the one rule). :class:`ApiClient` tries a request again
through the project's one retry driver (:func:`bridge.retry.drive`) with its own policy,
:data:`RETRY`: 429s and rate-limit 403s waited out as the headers say, 5xx and lost
connections with backoff, within MAX_TRIES tries and ``max_wait`` seconds a request; 401 and
any other 4xx end the request at once, with the reason. :class:`ReadApi` bounds the pages of
one read. The clock and the sleep are passed in, so tests wait no real time. The token is
only ever in the fetcher's headers: no error, log or ``repr`` shows it, and an API's message
that echoes it is masked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from bridge import __version__
from bridge.errors import BridgeError
from bridge.redact import cut, redact, spellings
from bridge.retry import Again, RetryPolicy, drive, parse_retry_after
from bridge.sync.fetch import DEFAULT_BOUNDS, Answer, Bounds, Fetcher, FetchError

T = TypeVar("T")

# GitHub: a secondary rate limit without Retry-After means "wait at least one minute"
# (docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api, "Exceeding the
# rate limit"). GitLab says the same of a 429 without its headers (docs.gitlab.com,
# "Rate limits": "wait at least a minute").
DEFAULT_WAIT_SECONDS = 60.0
# Longer waits than this (a primary limit reset an hour away) fail the sync instead: better a
# clear error in CI than a job hanging until its own timeout.
MAX_WAIT_SECONDS = 3700.0
# Tries of one request in all (rate-limit waits included): a 429 with ``Retry-After: 0``
# forever ends here. Real limits need one wait, two at most.
MAX_TRIES = 8
# Of those, tries that fail without a word of when to come back (5xx, a dropped connection).
MAX_FAILURES = 4
# The policy of one request (each client's ``max_wait`` replaces ``max_elapsed``). A rate
# limit's wait is never shortened (a request sent before the reset is only refused again): one
# longer than the time left ends the request instead.
RETRY = RetryPolicy(
    max_attempts=MAX_TRIES,
    max_failures=MAX_FAILURES,
    base_delay=2.0,
    max_retry_after=math.inf,
    max_elapsed=MAX_WAIT_SECONDS,
)
TIMEOUT = (5.0, 30.0)  # connect, read
# List pages one read (a repository, a project, an organisation's listing) asks for: 100,000
# items at 100 a page. An endless next link or ``hasNextPage`` ends here.
MAX_PAGES = 1000


class ScmError(BridgeError):
    """An SCM API refused or failed a request; the message names the host and the status.

    ``retryable``: another try may go better (a rate limit, a 5xx, a lost connection), after
    ``retry_after`` seconds when the API said how long.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


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
    """A finite number from a header; None for anything else ("nan" and "inf" included)."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


class ApiClient:
    """GET and POST against one API root, waiting out rate limits; raises ScmError.

    Every request goes through a :class:`~bridge.sync.fetch.Fetcher` for the root's origin
    (the token goes nowhere else; answers are bounded), and each is tried as :data:`RETRY`
    allows: MAX_FAILURES times for server errors, MAX_TRIES times in all, waiting at most
    ``max_wait`` seconds in all (MAX_WAIT_SECONDS by default).
    """

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        limits: Limits,
        secrets: tuple[str, ...] = (),
        token_name: str = "the token",  # noqa: S107 (a name for messages, not a token)
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
        max_wait: float = MAX_WAIT_SECONDS,
        read_seconds: float | None = None,
        bounds: Bounds = DEFAULT_BOUNDS,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits
        self.secrets = secrets
        self.token_name = token_name  # where the token came from, as a refusal names it
        self.max_wait = max_wait
        self.policy = replace(RETRY, max_elapsed=max_wait)
        self.read_seconds = read_seconds  # how long one read may go on (None: no bound)
        self.requests = 0  # made so far (for the progress line and the benchmark)
        self._sleep = sleep
        self._clock = clock
        headers = {"User-Agent": f"cortex-deploy-bridge/{__version__}", **headers}
        self._fetcher = Fetcher(
            self.base_url, headers, session=session, timeout=TIMEOUT, bounds=bounds
        )

    def __repr__(self) -> str:  # never show the token
        return f"ApiClient({self.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._fetcher.close()

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` under the API root (absolute URLs are kept)."""
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def check(self, url: str, what: str) -> str:
        """``url`` when it is on the API root's origin; ForeignUrl naming ``what`` if not."""
        return self._fetcher.check(url, what)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Answer:
        """GET one page."""
        return self._request("GET", self.url(path), params=params)

    def post_json(self, path: str, body: Mapping[str, Any]) -> Answer:
        """POST a JSON body (GraphQL)."""
        return self._request("POST", self.url(path), json=body)

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Answer, str | None]]:
        """Each page of a list and the URL of the next (None: last), by ``Link: rel="next"``.

        GitHub and GitLab put every query parameter, keyset cursors included, in the next
        link, so that URL alone is where a later read resumes (pass it as ``path``). A next
        link to another origin ends the list (ForeignUrl) before the page is given, so it is
        never kept as a resume point either.
        """
        url: str | None = self.url(path)
        query = params
        while url is not None:
            page = self._request("GET", url, params=query)
            url = page.links.get("next", {}).get("url")
            if url is not None:
                self.check(url, "a next-page link")
            query = None  # the next link carries the whole query
            yield page, url

    def retried(self, attempt: Callable[[], T]) -> T:
        """``attempt()`` tried again while it raises a retryable ScmError, as the policy allows;
        past its bounds, ScmError saying which ("gave up after 8 tries", "too long to wait")."""
        return drive(
            lambda _: attempt(),
            policy=self.policy,
            classify=_again,
            sleep=self._sleep,
            clock=self._clock,
            gave_up=self._gave_up,
        )

    def _request(self, method: str, url: str, **kwargs: Any) -> Answer:
        return self.retried(lambda: self._once(method, url, **kwargs))

    def _once(self, method: str, url: str, **kwargs: Any) -> Answer:
        """One try: the answer, or ScmError saying whether another try may go better."""
        self.requests += 1
        try:
            response = self._fetcher.send(method, url, **kwargs)
        except FetchError as exc:
            raise ScmError(self._shown(f"{self._host()}: {exc}"), retryable=exc.retryable) from None
        wait = rate_limit_wait(response.status_code, response.headers, self._clock(), self.limits)
        if wait is not None and not response.ok:
            raise ScmError(
                f"{self._host()} rate limit",
                status=response.status_code,
                retryable=True,
                retry_after=wait,
            )
        if not response.ok:  # 401, 403 and 404 end here with their hint; 5xx may pass
            status = response.status_code
            raise ScmError(self._refusal(response), status=status, retryable=status >= 500)
        if wait is not None:
            self._pace(wait)  # this answer spent the last request: wait before the next
        return response

    def _gave_up(self, exc: Exception, reason: str) -> ScmError:
        status = exc.status if isinstance(exc, ScmError) else 0
        return ScmError(self._shown(f"{exc}: {reason}"), status=status)

    def now(self) -> float:
        """The clock rate-limit resets are compared with (epoch seconds)."""
        return self._clock()

    def _pace(self, seconds: float) -> None:
        """Sleep ``seconds`` until the limit resets; ScmError when that is too long to wait."""
        if seconds > self.max_wait:
            raise ScmError(
                f"{self._host()} rate limit: next request allowed in {seconds:.0f}s, "
                "too long to wait; run again later"
            )
        self._sleep(seconds)

    def _host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url

    def _shown(self, text: str) -> str:
        """``text`` with this client's token masked (an API may echo it back)."""
        return redact(text, self.secrets)

    def _refusal(self, response: Answer) -> str:
        status = response.status_code
        hint = {
            401: f"{self.token_name} is missing, wrong or expired",
            403: f"{self.token_name} lacks a scope or access to this repository",
            404: f"not found, or {self.token_name} cannot see it",
        }.get(status, "")
        message = _message_of(response, spellings(self.secrets))
        detail = "; ".join(part for part in (hint, message) if part)
        path = urlsplit(response.url).path
        text = f"{self._host()} answered {status} for {path}" + (f": {detail}" if detail else "")
        return self._shown(text)


class ReadApi:
    """An :class:`ApiClient` as one read sees it: at most ``pages`` list pages.

    A list page is a REST page or a GraphQL query; objects read one by one (a run, a job)
    are not, since a read asks for at most a few per item it found. Past the bound the read
    fails (the caller names the source), rather than loop on an endless next link or
    ``hasNextPage``.
    """

    def __init__(self, api: ApiClient, *, pages: int = MAX_PAGES) -> None:
        self.api = api
        self.limit = pages
        self.spent = 0
        self.started = api.now()

    @property
    def base_url(self) -> str:
        """The API root."""
        return self.api.base_url

    def spend(self) -> None:
        """Count one list page; ScmError once the read has asked for ``pages`` of them, or has
        gone on longer than the client's ``read_seconds``."""
        if self.spent >= self.limit:
            raise ScmError(
                f"more than {self.limit} pages in one read; "
                "narrow the window (--since, sync.look_back_hours) or the source"
            )
        limit = self.api.read_seconds
        if limit is not None and self.api.now() - self.started > limit:
            raise ScmError(f"still reading after {limit:.0f}s (the bound of one read); stopped")
        self.spent += 1

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Answer:
        """GET one object (not counted as a page)."""
        return self.api.get(path, params)

    def post_json(self, path: str, body: Mapping[str, Any]) -> Answer:
        """POST one GraphQL query (a page)."""
        self.spend()
        return self.api.post_json(path, body)

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[Answer, str | None]]:
        """:meth:`ApiClient.pages`, each page counted before it is asked for."""
        self.spend()
        for page, following in self.api.pages(path, params):
            yield page, following
            if following is not None:
                self.spend()

    def check(self, url: str, what: str) -> str:
        """:meth:`ApiClient.check`."""
        return self.api.check(url, what)


def _again(exc: Exception) -> Again | None:
    """A rate limit, a 5xx or a lost connection may pass on another try."""
    if isinstance(exc, ScmError) and exc.retryable:
        return Again(exc.retry_after)
    return None


def _message_of(response: Answer, spelled: tuple[str, ...]) -> str:
    """The API's own ``message`` (GitHub, GitLab), masked and cut short; never the whole
    body."""
    try:
        body = response.json()
    except FetchError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return cut(str(message), 200, spelled) if message else ""
