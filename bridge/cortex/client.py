"""The Cortex Deploys API client: create, update, delete, list, and find by idempotency key.

API: POST/GET /api/v1/catalog/{tagOrId}/deploys, PUT/DELETE .../deploys/{uuid},
GET /api/v1/deploys/search (Cortex OpenAPI, tag "Deploys").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from bridge import __version__
from bridge.cortex import answers
from bridge.cortex.transport import HttpTransport, Response, TransportError
from bridge.errors import CortexRejected, CortexRetryable, CortexTooMany, CortexUnauthorized
from bridge.redact import cut, spellings
from bridge.times import format_timestamp, parse_timestamp

USER_AGENT = (
    f"cortex-deploy-bridge/{__version__} python/{sys.version_info.major}.{sys.version_info.minor}"
)
PAGE_SIZE = 1000  # the API's maximum; fewer requests against the ~1000/min budget
# Pages one listing or search reads at most (docs/limits.md): 10,000 deploys.
MAX_PAGES = 10


class Transport(Protocol):
    """What the client sends requests over (bridge.cortex.transport.HttpTransport)."""

    def request(
        self, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None
    ) -> Response:
        """Send one request; raise TransportError when no answer came."""

    def close(self) -> None:
        """Release the connection."""


# The guard a write runs right before its request leaves (the relay's lease check): it
# raises to stop the write. A budget wrapping the client (bridge.cortex.budget) waits before
# the client runs it, so no wait sits between the check and the request.
Guard = Callable[[], None]
DEPLOYS = "/api/v1/catalog/{}/deploys"  # an entity's deploys, by tag or id (quoted)


class Cortex(Protocol):
    """What the faces call: :class:`CortexClient`, or one wrapping it (BudgetedCortex)."""

    base_url: str

    def create_deploy(
        self, entity: str, body: dict[str, Any], *, guard: Guard | None = None
    ) -> dict[str, Any]:
        """POST a deploy."""

    def update_deploy(
        self, entity: str, uuid: str, body: dict[str, Any], *, guard: Guard | None = None
    ) -> dict[str, Any]:
        """PUT the deploy ``uuid``."""

    def delete_deploy(self, entity: str, uuid: str, *, guard: Guard | None = None) -> None:
        """DELETE the deploy ``uuid``."""

    def check_access(self) -> None:
        """One cheap authenticated read."""

    def iter_deploys(
        self, entity: str, *, max_pages: int = MAX_PAGES, partial: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every deploy Cortex holds for ``entity`` (CortexTooMany past ``max_pages``), or with
        ``partial`` its first ``max_pages`` pages."""

    def search_deploys(
        self, entity: str, *, environment: str | None, after: datetime, before: datetime
    ) -> Iterator[dict[str, Any]]:
        """The deploys of ``entity`` to ``environment`` timed within [after, before]."""

    def close(self) -> None:
        """Release the connection."""


class CortexClient:
    """Talk to Cortex with bearer auth and timeouts: one attempt per call, never a retry.

    Retrying is its callers' business (the relay's outbox; the Action's and ``send``'s loop in
    bridge.record.retrying), and so is deciding whether a deploy must be looked for first; a
    shared request budget wraps the client (bridge.cortex.budget.BudgetedCortex).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        proxy: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._transport: Transport = transport or HttpTransport(
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

    def create_deploy(
        self, entity: str, body: dict[str, Any], *, guard: Guard | None = None
    ) -> dict[str, Any]:
        """POST a deploy (not idempotent: after an unclear failure, look before repeating)."""
        path = DEPLOYS.format(quote(entity, safe=""))
        made: dict[str, Any] = self._send("POST", path, entity=entity, body=body, guard=guard)
        return made

    def update_deploy(
        self, entity: str, uuid: str, body: dict[str, Any], *, guard: Guard | None = None
    ) -> dict[str, Any]:
        """PUT the deploy ``uuid`` (idempotent: safe to repeat)."""
        path = f"{DEPLOYS.format(quote(entity, safe=''))}/{quote(uuid, safe='')}"
        made: dict[str, Any] = self._send("PUT", path, entity=entity, body=body, guard=guard)
        return made

    def delete_deploy(self, entity: str, uuid: str, *, guard: Guard | None = None) -> None:
        """DELETE the deploy ``uuid``; one already gone counts as deleted."""
        path = f"{DEPLOYS.format(quote(entity, safe=''))}/{quote(uuid, safe='')}"
        try:
            self._send("DELETE", path, entity=None, guard=guard)
        except CortexRejected as exc:
            if exc.status != 404:
                raise

    def check_access(self) -> None:
        """One cheap authenticated read (a search page of one deploy), one attempt.

        Raises CortexRejected when Cortex refuses it (401/403: the token), CortexRetryable
        when Cortex could not be asked (unreachable, a timeout, a 5xx).
        """
        self._send("GET", "/api/v1/deploys/search?" + urlencode({"page": 0, "pageSize": 1}))

    def iter_deploys(
        self, entity: str, *, max_pages: int = MAX_PAGES, partial: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every deploy Cortex holds for ``entity``, page by page: CortexTooMany where more
        than ``max_pages`` pages are left (nothing is judged on part of it), or with
        ``partial`` the first ``max_pages`` pages only."""
        path = DEPLOYS.format(quote(entity, safe=""))
        yield from self._paged(path, {}, entity=entity, max_pages=max_pages, partial=partial)

    def search_deploys(
        self,
        entity: str,
        *,
        environment: str | None,
        after: datetime,
        before: datetime,
    ) -> Iterator[dict[str, Any]]:
        """The deploys of ``entity`` to ``environment`` timed within [after, before], page by
        page (one page of 1,000 is the usual whole answer); None: every environment."""
        params = {
            "entityTagOrIds": entity,
            "timestampAfter": format_timestamp(after),
            "timestampBefore": format_timestamp(before),
        }
        if environment is not None:
            params["environments"] = environment
        try:
            found = list(self._paged("/api/v1/deploys/search", params, entity=entity))
        except (CortexUnauthorized, CortexTooMany):
            raise
        except CortexRejected:
            # The search unavailable (an older Cortex): the entity's own listing instead.
            found = [d for d in self.iter_deploys(entity) if _within(d, after, before)]
        for deploy in found:
            if environment is None or deploy.get("environment") == environment:
                yield deploy

    def _paged(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        entity: str | None = None,
        max_pages: int = MAX_PAGES,
        partial: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """The deploys of a listing or a search, a page at a time; CortexTooMany where pages
        are left past ``max_pages``, unless ``partial``."""
        for page in range(max_pages):
            query = urlencode({**params, "page": page, "pageSize": PAGE_SIZE})
            data = self._send("GET", f"{path}?{query}", entity=entity)
            if not isinstance(data, dict) or not isinstance(data.get("deployments"), list):
                raise CortexRejected(
                    "cortex answered a deploy listing that is not a page of deployments"
                )
            deploys = [item for item in data["deployments"] if isinstance(item, dict)]
            yield from deploys
            pages = data.get("totalPages")
            if page + 1 >= (pages if isinstance(pages, int) else 1) or not deploys:
                return
        if not partial:
            # A record past the bound would look missing, and be made a second time.
            raise CortexTooMany(
                f"cortex holds more than {max_pages * PAGE_SIZE:,} deploys of "
                f"{entity or 'this search'} to read here: not read on part of them",
                status=0,
            )

    # -- plumbing ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        entity: str | None = None,
        body: Any = None,
        guard: Guard | None = None,
    ) -> Any:
        """One request; the JSON of a 2xx answer (None when it has none), else the error it
        means (bridge.cortex.answers). A write (one with a ``body``, a create or an update)
        is answered with the deploy record, which must carry a uuid."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if guard is not None:
            guard()
        try:
            response = self._transport.request(method, path, headers=headers, body=data)
        except TransportError as exc:
            raise CortexRetryable(
                f"cortex at {self.base_url} unreachable: {exc}", unclear=exc.unclear
            ) from exc
        if not 200 <= response.status < 300:
            # Cortex's error text may echo what it was sent, the token included.
            raise answers.error_for(response, entity=entity, secrets=(self._token,))
        try:
            data = json.loads(response.body) if response.body else None
        except (ValueError, RecursionError):  # not JSON; nested past what Python parses
            data = None
        if body is not None and not (isinstance(data, dict) and isinstance(data.get("uuid"), str)):
            raise CortexRejected(
                f"cortex answered {response.status} without a deploy uuid",
                status=response.status,
                body=cut(
                    response.body.decode("utf-8", "replace"),
                    answers.MAX_BODY_SHOWN,
                    spellings((self._token,)),
                ),
            )
        return data


def _within(deploy: Mapping[str, Any], after: datetime, before: datetime) -> bool:
    stamp = deploy.get("timestamp")
    try:
        moment = parse_timestamp(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return False
    return moment is not None and after <= moment <= before
