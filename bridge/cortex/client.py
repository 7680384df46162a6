"""The Cortex Deploys API client: create, update, delete, list, and find by idempotency key.

API: POST/GET /api/v1/catalog/{tagOrId}/deploys, PUT/DELETE .../deploys/{uuid},
GET /api/v1/deploys/search (Cortex OpenAPI, tag "Deploys").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from bridge import __version__
from bridge.cortex import answers
from bridge.cortex.retry import RetryPolicy
from bridge.cortex.transport import HttpTransport, Response, TransportError
from bridge.errors import CortexError, CortexRejected, CortexRetryable
from bridge.mapping import key_of
from bridge.times import format_timestamp, parse_timestamp

DEFAULT_URL = "https://api.getcortexapp.com"
USER_AGENT = (
    f"cortex-deploy-bridge/{__version__} python/{sys.version_info.major}.{sys.version_info.minor}"
)
PAGE_SIZE = 1000  # the API's maximum; fewer requests against the ~1000/min budget

T = TypeVar("T")


class CortexClient:
    """Talk to Cortex with bearer auth, timeouts and retries; never make a deploy twice."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        retry: RetryPolicy | None = None,
        proxy: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_retry: Callable[[CortexError, float], None] | None = None,
        before_request: Callable[[], None] | None = None,
        on_rate_limited: Callable[[float | None], None] | None = None,
        transport: HttpTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._on_retry = on_retry
        # Hooks of the relay's shared rate budget (bridge.worker.SharedBudget), so every
        # replica together stays under Cortex's limit: called before each HTTP request (it
        # may wait, or raise CortexRetryable to give the attempt up), and with Retry-After's
        # seconds (None: not given) on each 429. `send` and the Action set neither.
        self.before_request = before_request
        self.on_rate_limited = on_rate_limited
        # ``transport``: one made by the caller (the relay's notes every answer's status).
        self._transport = transport or HttpTransport(
            self.base_url, connect_timeout=connect_timeout, read_timeout=timeout, proxy=proxy
        )

    def __repr__(self) -> str:  # never show the token
        return f"CortexClient({self.base_url!r})"

    def close(self) -> None:
        """Close the kept-alive connection."""
        self._transport.close()

    def __enter__(self) -> CortexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations -------------------------------------------------------------------------

    def create_deploy(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a deploy; after an unclear failure, find the record it made before retrying."""
        key = key_of(body)
        near = parse_timestamp(body["timestamp"])
        unclear = False

        def attempt() -> dict[str, Any]:
            nonlocal unclear
            if unclear and key:
                found = self.find_deploy(entity, key, near=near)
                if found is not None:
                    return found
            try:
                response = self._send("POST", _deploys_path(entity), entity=entity, body=body)
            except CortexRetryable as exc:
                unclear = unclear or exc.unclear
                raise
            return answers.deploy_of(response)

        return self._retrying(attempt)

    def update_deploy(self, entity: str, uuid: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT the deploy ``uuid`` (idempotent: safe to repeat)."""
        path = f"{_deploys_path(entity)}/{quote(uuid, safe='')}"
        return self._retrying(
            lambda: answers.deploy_of(self._send("PUT", path, entity=entity, body=body))
        )

    def delete_deploy(self, entity: str, uuid: str) -> None:
        """DELETE the deploy ``uuid``; one already gone counts as deleted."""
        path = f"{_deploys_path(entity)}/{quote(uuid, safe='')}"

        def attempt() -> None:
            try:
                self._send("DELETE", path, entity=None)
            except CortexRejected as exc:
                if exc.status != 404:
                    raise

        self._retrying(attempt)

    def check_access(self) -> None:
        """One cheap authenticated read (a search page of one deploy), one attempt.

        Raises CortexRejected when Cortex refuses it (401/403: the token), CortexRetryable
        when Cortex could not be asked (unreachable, a timeout, a 5xx).
        """
        self._send("GET", "/api/v1/deploys/search?" + urlencode({"page": 0, "pageSize": 1}))

    def iter_deploys(self, entity: str, *, max_pages: int = 10) -> Iterator[dict[str, Any]]:
        """Every deploy Cortex holds for ``entity``, page by page (at most ``max_pages``)."""
        yield from self._paged(_deploys_path(entity), {}, entity=entity, max_pages=max_pages)

    def find_deploy(
        self,
        entity: str,
        key: str,
        *,
        near: datetime | None = None,
        window: timedelta = timedelta(seconds=2),
    ) -> dict[str, Any] | None:
        """The deploy of ``entity`` whose customData carries idempotency ``key``, if any.

        Searches a narrow time window around ``near`` first (one small request); where the
        search is unavailable, scans the entity's deploys.
        """
        if near is not None:
            try:
                return self._search_near(entity, key, near, window)
            except CortexRejected as exc:
                if exc.status in (401, 403):
                    raise
        for deploy in self.iter_deploys(entity):
            if key_of(deploy) == key:
                return deploy
        return None

    def _search_near(
        self, entity: str, key: str, near: datetime, window: timedelta
    ) -> dict[str, Any] | None:
        """Search the window, page by page (one page of 1,000 is the usual whole answer)."""
        params = {
            "entityTagOrIds": entity,
            "timestampAfter": format_timestamp(near - window),
            "timestampBefore": format_timestamp(near + window),
        }
        found = self._paged("/api/v1/deploys/search", params)
        return next((deploy for deploy in found if key_of(deploy) == key), None)

    def _paged(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        entity: str | None = None,
        max_pages: int = 10,
    ) -> Iterator[dict[str, Any]]:
        """The deploys of a listing or a search, a page at a time, each page retried alone."""
        for page in range(max_pages):
            query = urlencode({**params, "page": page, "pageSize": PAGE_SIZE})
            deploys, pages = self._retrying(
                lambda q=query: answers.page_of(self._send("GET", f"{path}?{q}", entity=entity))  # type: ignore[misc]
            )
            yield from deploys
            if page + 1 >= pages or not deploys:
                return

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self, method: str, path: str, *, entity: str | None = None, body: Any = None
    ) -> Response:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if self.before_request is not None:
            self.before_request()
        try:
            response = self._transport.request(method, path, headers=headers, body=data)
        except TransportError as exc:
            raise CortexRetryable(
                f"cortex at {self.base_url} unreachable: {exc}", unclear=exc.unclear
            ) from exc
        if 200 <= response.status < 300:
            return response
        error = answers.error_for(response, entity=entity)
        if response.status == 429 and self.on_rate_limited is not None:
            self.on_rate_limited(error.retry_after)
        raise error

    def _retrying(self, attempt: Callable[[], T]) -> T:
        started = self._clock()
        number = 1
        while True:
            try:
                return attempt()
            except CortexRetryable as exc:
                delay = self.retry.delay(number, exc.retry_after)
                elapsed = self._clock() - started
                if number >= self.retry.max_attempts or elapsed + delay > self.retry.max_elapsed:
                    raise
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
                self._sleep(delay)
                number += 1


def _deploys_path(entity: str) -> str:
    return f"/api/v1/catalog/{quote(entity, safe='')}/deploys"
