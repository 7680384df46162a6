"""The ``http`` sync source: a configured deployment-list API, read page by page.

``make_http_reader(name, config, environ)`` builds the :class:`~bridge.sync.reader.Reader`
for ``http_sources.<name>`` (see :mod:`bridge.config.http_sources` for the keys and
docs/http-sources.md for the user's page). It yields every deploy of the window as the one
``DeployEvent`` that webhooks produce (source = the entry's name, event and DeployRef kind
``deployment``), and every item that is not one as skipped with the reason.

Paging, by ``pagination.style``:

- ``page``: ``page=1, 2, ...`` until a page comes back empty. A short page does not end the
  read: an API that caps the page size below what was asked would otherwise lose the rest.
- ``cursor``: the answer's ``next_cursor`` goes back as ``cursor_param`` while ``has_more``
  is true; a missing or repeated cursor is an error, not the end.
- ``newest-first``: one request for the ``limit`` newest. When all of them are inside the
  window, older ones in it are out of reach, and the read says so (skipped, with the reason).

With ``newest_first_by`` (page and cursor), reading stops after the page that reaches items
older than the window's start by more than OVERLAP: a deploy listed by its creation may finish
inside the window though it began before it.

Resume points (``Found.resume``) are JSON: ``{"page": n}`` or ``{"cursor": c}`` at the last
item of each page, ``{"after": id}`` at each item of a newest-first list, ``{"done": true}``
after the last page. A read from a resume point asks only for what comes after it.

Every request goes through a :class:`~bridge.sync.fetch.Fetcher` for the entry's ``url``: the
token goes to that origin only (a redirect elsewhere is refused, nothing sent), answers are
streamed and refused past MAX_BODY_BYTES. Bounds: at most ``max_pages`` requests a read (the
read fails past it, naming the key, rather than silently stop), pages of at most
MAX_PAGE_SIZE items (a longer page is refused), and per request the policy's attempts and
total wait (``max_elapsed``) for retries.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

import requests

from bridge.config.http_sources import MAX_PAGE_SIZE, NEWEST_FIRST, PAGE, HttpSourceSpec
from bridge.errors import BridgeError, ConfigError, UsageError
from bridge.model import EARLIEST
from bridge.redact import cut, redact, spellings
from bridge.retry import Again, RetryPolicy, drive, parse_retry_after
from bridge.secrets import secret_from
from bridge.sources.fields import shorten
from bridge.sync.fetch import ANSWER_SECONDS, Bounds, Fetcher, FetchError, Session
from bridge.sync.http_items import item_id, item_time, moment, to_event
from bridge.sync.reader import Found, Window

MAX_BODY_BYTES = Bounds().max_bytes
# The longest cursor followed, an http source's and GitHub's GraphQL endCursor (docs/limits.md):
# it is sent in a query and saved to resume from.
MAX_CURSOR = 2048
# One request's retries: 180 s in all (docs/limits.md). A wait is never shortened, Retry-After's
# included (a request sent before it is only refused again): one that would pass 180 s ends
# the request, "too long to wait".
RETRY = RetryPolicy(max_retry_after=math.inf, max_elapsed=180.0)
OVERLAP = timedelta(days=1)
CONNECT_TIMEOUT = 5.0
# 429 and 503 say "later" (with Retry-After, RFC 9110 10.2.3, honoured up to the policy's
# max_retry_after); 502 and 504 are a proxy's hiccup. Other answers will not change.
RETRYABLE = frozenset({429, 502, 503, 504})

Position = dict[str, Any]
Pages = Iterator[tuple[list[Any], Position]]


class HttpSourceError(BridgeError):
    """A deployment-list API answered with an error, or could not be reached or read."""

    def __init__(self, message: str, *, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = status in RETRYABLE or status == 0


class _HasHttpSources(Protocol):
    @property
    def http_sources(self) -> Mapping[str, HttpSourceSpec]: ...


def make_http_reader(
    name: str,
    config: Mapping[str, HttpSourceSpec] | _HasHttpSources,
    environ: Mapping[str, str],
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    policy: RetryPolicy | None = None,
    read_seconds: float | None = None,
) -> HttpReader:
    """The reader of ``http_sources.<name>``; its token from ``token_env`` (or ``*_FILE``)."""
    specs = config if isinstance(config, Mapping) else config.http_sources
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        raise UsageError(f"--source {name!r}: no such entry in http_sources (configured: {known})")
    token = secret_from(environ, spec.token_env)
    if not token:
        raise ConfigError(
            spec.token_env, f"is not set: it holds the bearer token of http_sources.{name}"
        )
    return HttpReader(
        spec,
        token,
        session=session,
        sleep=sleep,
        now=now,
        policy=policy,
        read_seconds=read_seconds,
    )


class HttpReader:
    """Reads one configured deployment-list API (see the module's docstring)."""

    def __init__(
        self,
        spec: HttpSourceSpec,
        token: str,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        policy: RetryPolicy | None = None,
        read_seconds: float | None = None,
    ) -> None:
        self.spec = spec
        self.read_seconds = read_seconds  # how long one read may go on (None: no bound)
        self.requests = 0  # made so far, retries included (sync's progress line counts them)
        self._started = now()
        self._token = token
        self._spelled = spellings([token])
        self._owns_session = session is None
        self._session = session or Session()
        self._sleep = sleep
        self._now = now
        self._policy = policy or RETRY
        # A slow answer may take its read timeout several times over, not forever.
        seconds = max(ANSWER_SECONDS, 4 * spec.timeout_seconds)
        self._fetcher = Fetcher(
            spec.url,
            {"Authorization": f"Bearer {token}", "Accept": "application/json"},
            session=self._session,
            timeout=(CONNECT_TIMEOUT, spec.timeout_seconds),
            bounds=Bounds(answer_seconds=seconds),
        )

    def close(self) -> None:
        """Release the connection pool (a read releases it too, when it ends)."""
        if self._owns_session:
            self._session.close()

    @property
    def name(self) -> str:
        """``http:<name>``."""
        return f"http:{self.spec.name}"

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        """Every deploy in ``window``, from ``resume`` on when given; raises BridgeError."""
        position = self._position(resume)
        self._started = self._now()
        try:
            yield from self._read(window, position)
        finally:
            self.close()  # its pool is made again on the next read

    def _read(self, window: Window, position: Position) -> Iterator[Found]:
        if position.get("done"):
            return
        style = self.spec.pagination.style
        if style == NEWEST_FIRST:
            yield from self._read_newest(window, position.get("after"))
            return
        pages = self._pages(position.get("page")) if style == PAGE else self._cursors(position)
        seen: set[str] = set()
        for items, after in pages:
            founds, stop = self._page(items, window, seen)
            if founds:
                founds[-1] = replace(founds[-1], resume=json.dumps(after))
            yield from founds
            if stop:
                return

    # -- paging -------------------------------------------------------------------------

    def _pages(self, start: int | None) -> Pages:
        """``page`` style: numbered pages until an empty one."""
        paging = self.spec.pagination
        number = paging.first_page if start is None else start
        for _ in range(paging.max_pages):
            items = self._items(
                self._get({paging.page_param: str(number), paging.size_param: str(paging.size)})
            )
            if not items:
                return
            number += 1
            yield items, {"page": number}
        self._too_many_pages()

    def _cursors(self, position: Position) -> Pages:
        """``cursor`` style: follow ``next_cursor`` while ``has_more``."""
        paging = self.spec.pagination
        cursor: str | None = position.get("cursor")
        for _ in range(paging.max_pages):
            params = {paging.size_param: str(paging.size)}
            if cursor is not None:
                params[paging.cursor_param] = cursor
            answer = self._get(params)
            items = self._items(answer)
            more = paging.has_more.get(answer)
            if not isinstance(more, bool):
                raise self._error(f"the answer has no true/false at {paging.has_more.text!r}")
            if not more:
                yield items, {"done": True}
                return
            following = paging.next_cursor.get(answer)
            if isinstance(following, bool) or not isinstance(following, (str, int)):
                raise self._error(
                    f"{paging.has_more.text!r} is true but {paging.next_cursor.text!r} "
                    f"holds no cursor: {shorten(following)}"
                )
            if str(following) == cursor:
                raise self._error(f"the cursor did not move past {shorten(cursor)}")
            if len(str(following)) > MAX_CURSOR:  # sent as a query, saved as a resume point
                raise self._error(
                    f"a cursor of {len(str(following)):,} characters: at most {MAX_CURSOR:,}"
                )
            cursor = str(following)
            yield items, {"cursor": cursor}
        self._too_many_pages()

    def _too_many_pages(self) -> None:
        limit = self.spec.pagination.max_pages
        raise self._error(
            f"more than {limit} pages: raise http_sources.{self.spec.name}.pagination.max_pages "
            "or narrow the list with params"
        )

    def _read_newest(self, window: Window, after: str | None) -> Iterator[Found]:
        """``newest-first`` style: one list of the newest, yielded oldest first (as every
        reader yields, so that rollback detection reads each deploy after those before it);
        resume after an item id."""
        size = self.spec.pagination.size
        items = self._items(self._get({self.spec.pagination.size_param: str(size)}))
        events = [to_event(self.spec, item) for item in items]
        times = [event.timestamp for event in events if not isinstance(event, str)]
        founds, _ = self._page(items, window, set())
        founds.sort(key=lambda found: found.event.timestamp if found.event else EARLIEST)
        ids = [found.event.ref.id if found.event else None for found in founds]
        if after is not None and after in ids:
            founds = founds[ids.index(after) + 1 :]
        for found in founds:
            ident = found.event.ref.id if found.event else None
            yield replace(found, resume=json.dumps({"after": ident}) if ident else None)
        if len(events) >= size and times and min(times) >= window.since:
            yield Found(
                None,
                skipped=(
                    f"{self.name} lists only the {size} newest deploys: any older than "
                    f"{min(times).isoformat()} in the window are out of reach "
                    f"(raise http_sources.{self.spec.name}.pagination.limit)"
                ),
            )

    def _page(self, items: list[Any], window: Window, seen: set[str]) -> tuple[list[Found], bool]:
        """The page's items inside the window (each once per read), and whether to stop."""
        founds, stop = [], False
        sorted_by = self.spec.pagination.newest_first_by
        for item in items:
            ident = item_id(self.spec, item)
            if ident is not None:
                if ident in seen:
                    continue  # moved to a later page while we read: already yielded
                seen.add(ident)
            if sorted_by is not None:
                listed = moment((sorted_by,), item)
                stop = stop or (isinstance(listed, datetime) and listed < window.since - OVERLAP)
            when = item_time(self.spec, item)
            if when is not None and not window.since <= when < window.until:
                continue  # outside the window, even if it could not be recorded
            event = to_event(self.spec, item)
            founds.append(Found(None, skipped=event) if isinstance(event, str) else Found(event))
        return founds, stop

    def _position(self, resume: str | None) -> Position:
        """A resume point read back; one this reader cannot have given is an error."""
        if resume is None:
            return {}
        try:
            position = json.loads(resume)
        except ValueError:
            position = None
        kinds = {"page": int, "cursor": str, "after": str, "done": bool}
        if not (
            isinstance(position, dict)
            and len(position) == 1
            and all(isinstance(v, kinds.get(k, type(None))) for k, v in position.items())
            and len(position.get("cursor", "")) <= MAX_CURSOR  # as _cursors lets through
        ):
            raise self._error(f"not a resume point of this reader: {shorten(resume)}")
        return position

    # -- HTTP ---------------------------------------------------------------------------

    def _items(self, answer: Any) -> list[Any]:
        items = self.spec.items.get(answer)
        if not isinstance(items, list):
            where = repr(self.spec.items.text) if self.spec.items.text else "its top level"
            raise self._error(f"the answer has no list at {where}: {shorten(answer)}")
        if len(items) > MAX_PAGE_SIZE:
            raise self._error(
                f"a page of {len(items)} items: at most {MAX_PAGE_SIZE} a page are read"
            )
        return items

    def _get(self, params: Mapping[str, str]) -> Any:
        """One page's JSON, retried on 429/5xx and lost connections as the policy allows:
        at most ``max_attempts`` tries, ``max_elapsed`` seconds in all (the one driver)."""
        if self.read_seconds is not None:
            elapsed = (self._now() - self._started).total_seconds()
            if elapsed > self.read_seconds:
                raise self._error(
                    f"still reading after {self.read_seconds:.0f}s (the bound of one read); stopped"
                )
        query = {**self.spec.params, **params}
        return drive(
            lambda _: self._get_once(query),
            policy=self._policy,
            classify=_again,
            sleep=self._sleep,
            gave_up=_gave_up,
        )

    def _get_once(self, params: Mapping[str, str]) -> Any:
        self.requests += 1
        try:
            answer = self._fetcher.send("GET", self.spec.url, params=params)
        except FetchError as exc:
            raise self._error(str(exc), status=0 if exc.retryable else None) from None
        if answer.status != 200:
            retry_after = parse_retry_after(answer.headers.get("Retry-After"), now=self._now())
            raise self._answered(answer.status, answer.body, retry_after)
        try:
            return answer.json()
        except FetchError as exc:
            said = cut(answer.body[:4096].decode("utf-8", "replace"), 200, self._spelled)
            raise self._error(f"{exc}: {shorten(said)}") from None

    def _answered(self, status: int, body: bytes, retry_after: float | None) -> HttpSourceError:
        """The error for a non-200 answer; the token is named by its variable, never shown."""
        # The body as one line, cut: an error page must not flood the log.
        text = " ".join(body.decode("utf-8", "replace").split())
        if len(text) > 200:  # masked before the cut: a token across it is never shown in part
            text = cut(text, 197, self._spelled) + "..."
        why = {
            401: f"the token in {self.spec.token_env} was refused",
            403: f"the token in {self.spec.token_env} may not read this list",
            404: f"no such list: check http_sources.{self.spec.name}.url",
        }.get(status, text)
        return self._error(
            f"answered {status}" + (f": {why}" if why else ""),
            status=status,
            retry_after=retry_after,
        )

    def _error(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> HttpSourceError:
        text = redact(f"http source {self.spec.name!r} ({self.spec.url}): {message}", [self._token])
        # Errors that are not answers (bad JSON, a broken cursor) are not worth a retry.
        return HttpSourceError(
            text, status=-1 if status is None else status, retry_after=retry_after
        )


def _again(exc: Exception) -> Again | None:
    """A 429, a 5xx or a lost connection may pass on another attempt."""
    if isinstance(exc, HttpSourceError) and exc.retryable:
        return Again(exc.retry_after)
    return None


def _gave_up(exc: Exception, why: str) -> HttpSourceError:
    """The last answer's error, saying why no try follows ("too long to wait", "gave up
    after 6 tries")."""
    status = exc.status if isinstance(exc, HttpSourceError) else 0
    return HttpSourceError(f"{exc}; {why}", status=status)
