"""One bounded, origin-checked HTTP request: how every sync reader sends its token.

A reader that holds a token (GitHub, GitLab, an ``http_sources`` entry; Argo CD likewise)
sends every request through a :class:`Fetcher` made for the one base URL that token was
configured for. The fetcher:

- checks each URL's origin (scheme, host and port, RFC 6454 section 4) against the base's
  before anything is sent: a next link, a cursor URL or a saved resume point that leads
  elsewhere ends the request with :class:`ForeignUrl`, and nothing is sent there;
- never lets ``requests`` follow a redirect (it would keep a custom header such as GitLab's
  ``PRIVATE-TOKEN`` across hosts): a redirect to the same origin is followed here, at most
  ``Bounds.redirects`` times, and one to another origin is :class:`ForeignUrl`;
- streams the body and refuses it past ``Bounds.max_bytes`` (counted after decompression),
  and an answer that takes longer than ``Bounds.answer_seconds`` to arrive;
- refuses a JSON body with more containers or values than a real page holds
  (:meth:`Answer.json`), so that what is parsed stays a bounded multiple of the bytes.

Retries are the caller's (GitHub's rate-limit headers, an http source's ``Retry-After``),
through the one retry driver (:func:`bridge.retry.drive`) with the caller's policy: tries and
total wait per request. Every bound is in docs/limits.md. Errors are :class:`FetchError` (a
``BridgeError``): the message names the origin, never the token; ``retryable`` says whether
another try may go better.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
from requests.structures import CaseInsensitiveDict
from requests.utils import parse_header_links

from bridge.errors import BridgeError

MAX_BYTES = 16 * 1024 * 1024
# A JSON answer holds at most this many ``{``/``[`` and ``,`` bytes (counted in the raw body,
# so those inside strings count too: an over-count, never an under-count). A real page (100
# workflow runs, 1000 http-source items) holds a few thousand containers and a few tens of
# thousands of values; a hostile 16 MiB of ``[{},{},...]`` would otherwise parse into some
# 400 MiB of objects. At these bounds what a body parses into stays under 50 MiB.
MAX_CONTAINERS = 50_000
MAX_VALUES = 500_000
MAX_REDIRECTS = 5
ANSWER_SECONDS = 120.0  # headers and body of one answer, after the connection is made
CHUNK = 65536
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchError(BridgeError):
    """A request that was not sent, or whose answer was refused or never came."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ForeignUrl(FetchError):
    """A URL (next link, redirect, resume point) outside the configured origin: not sent."""


class Origin(NamedTuple):
    """Where a token may go: scheme, host (lower case) and port (the scheme's by default)."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def origin_of(url: str) -> Origin | None:
    """The origin of an absolute http(s) URL; None for anything else (no host, user info,
    another scheme, a bad port): such a URL is never sent a token."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class Bounds:
    """The bounds of one request (docs/limits.md, "Reading SCMs and http sources")."""

    max_bytes: int = MAX_BYTES
    redirects: int = MAX_REDIRECTS
    answer_seconds: float = ANSWER_SECONDS
    max_containers: int = MAX_CONTAINERS
    max_values: int = MAX_VALUES


DEFAULT_BOUNDS = Bounds()


@dataclass(frozen=True)
class Answer:
    """A whole answer: status, headers, body (at most ``Bounds.max_bytes``) and final URL."""

    status: int
    headers: CaseInsensitiveDict[str]
    body: bytes
    url: str
    bounds: Bounds = field(default=DEFAULT_BOUNDS, repr=False)

    @property
    def status_code(self) -> int:
        """``status``, by ``requests``' name."""
        return self.status

    @property
    def ok(self) -> bool:
        """A 1xx-3xx answer, as ``requests`` says."""
        return self.status < 400

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The ``Link`` header by ``rel``, each URL made absolute against this answer's URL."""
        header = self.headers.get("Link")
        found: dict[str, dict[str, str]] = {}
        for link in parse_header_links(header) if header else ():
            key = link.get("rel") or link.get("url")
            if key:
                found[key] = {**link, "url": joined(self.url, link.get("url", ""))}
        return found

    def json(self) -> Any:
        """The body as JSON; FetchError when it is not JSON or holds too many values."""
        if self.body.count(b"{") + self.body.count(b"[") > self.bounds.max_containers:
            raise FetchError(
                f"{_where(self.url)} answered JSON with more than "
                f"{self.bounds.max_containers} objects or arrays"
            )
        if self.body.count(b",") > self.bounds.max_values:
            raise FetchError(
                f"{_where(self.url)} answered JSON with more than {self.bounds.max_values} values"
            )
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise FetchError(f"the answer is not JSON ({_where(self.url)})") from None


# The time left for the answer the thread waits on now (a Fetcher sets it for each request):
# the headers are read within it too, not only the body.
_answering = threading.local()


def _cut_at_deadline(connection: Any, getresponse: Callable[[], Any]) -> Any:
    """``getresponse()`` (the status line and headers), the connection's socket shut where
    they have not all come by the answer's deadline: a server that drips its headers a byte
    at a time never trips the per-read timeout, and http.client reads up to 100 lines of
    64 KiB each."""
    deadline = getattr(_answering, "deadline", None)
    if deadline is None:
        return getresponse()

    cut = threading.Event()

    def shut() -> None:
        cut.set()
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), shut)
    timer.daemon = True
    timer.start()
    try:
        response = getresponse()
    finally:
        timer.cancel()
    if cut.is_set():  # what came before the cut may parse as a whole (headers cut short)
        response.close()
        connection.close()
        raise TimeoutError("the answer's headers did not come by its deadline")
    return response


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        return _cut_at_deadline(
            self, lambda: super(_HTTPConnection, self).getresponse(*args, **kwargs)
        )


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        return _cut_at_deadline(
            self, lambda: super(_HTTPSConnection, self).getresponse(*args, **kwargs)
        )


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter, its connections' headers read within the answer's deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager


class Session(requests.Session):
    """A ``requests`` session for a Fetcher.

    It never works out where a redirect leads: the Fetcher follows a same-origin redirect
    itself. ``requests`` looks at a redirect's ``Location`` even with
    ``allow_redirects=False`` (for ``Response.next``), and raised on one that is no URL
    (``http://[::1``) before the Fetcher could refuse it. And its connections read an
    answer's headers within the Fetcher's deadline (:func:`_cut_at_deadline`)."""

    def __init__(self) -> None:
        super().__init__()
        for scheme in ("https://", "http://"):
            self.mount(scheme, _Adapter())

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """Nothing: see the class."""
        return iter(())


class Fetcher:
    """Requests to one origin with one set of headers (the token's); see the module's doc."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        bounds: Bounds = DEFAULT_BOUNDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        origin = origin_of(base_url)
        if origin is None:
            raise BridgeError(f"not an http(s) URL a token may be sent to: {_where(base_url)}")
        self.base_url = base_url
        self.origin = origin
        self.bounds = bounds
        self._headers = dict(headers)
        self._session = session or Session()
        self._timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:  # never the headers: they hold the token
        return f"Fetcher({str(self.origin)!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def check(self, url: str, what: str) -> str:
        """``url`` when it is on the configured origin; ForeignUrl naming ``what`` if not."""
        if origin_of(url) != self.origin:
            raise ForeignUrl(
                f"{what} leads to {_where(url)}, not {self.origin} where the token was "
                "configured to go: not followed, nothing sent there"
            )
        return url

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Answer:
        """One request and its whole answer, same-origin redirects followed (any status)."""
        self.check(url, "a request URL")
        for _ in range(self.bounds.redirects + 1):
            answer = self._once(method, url, params=params, json=json)
            location = answer.headers.get("Location")
            if answer.status not in REDIRECTS or not location:
                return answer
            url = self.check(joined(answer.url, location), f"a {answer.status} redirect")
            params = None  # the Location is the whole target
            if answer.status in (301, 302, 303) and method != "GET":
                method, json = "GET", None  # as browsers and requests do
        raise FetchError(f"{_where(url)}: more than {self.bounds.redirects} redirects")

    def _once(self, method: str, url: str, *, params: Any, json: Any) -> Answer:
        deadline = self._clock() + self.bounds.answer_seconds
        _answering.deadline = time.monotonic() + self.bounds.answer_seconds
        try:
            with self._session.request(
                method,
                url,
                params=params,
                json=json,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                body = self._body(response, deadline)
                return Answer(
                    response.status_code,
                    CaseInsensitiveDict(response.headers),
                    body,
                    response.url or url,
                    self.bounds,
                )
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # The body is read from urllib3 itself: a connection cut mid-body, a read timeout
            # or a bad gzip stream come as urllib3's errors, not requests'.
            if time.monotonic() >= _answering.deadline:  # cut: its headers came too slowly
                raise FetchError(
                    f"{_where(url)} took more than {self.bounds.answer_seconds:.0f}s to answer",
                    retryable=True,
                ) from None
            raise FetchError(
                f"{_where(url)} unreachable: {type(exc).__name__}", retryable=True
            ) from None
        finally:
            _answering.deadline = None

    def _body(self, response: requests.Response, deadline: float) -> bytes:
        """The body, decompressed, refused past ``max_bytes`` or past the deadline.

        ``read1`` returns what one socket read brings, so the deadline is looked at every few
        seconds at worst (the read timeout) even when a server sends a byte at a time.
        """
        raw = response.raw
        read = getattr(raw, "read1", None) or raw.read
        body = bytearray()
        while True:
            chunk = read(CHUNK, decode_content=True)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.bounds.max_bytes:
                raise FetchError(
                    f"an answer larger than {self.bounds.max_bytes} bytes ({_where(response.url)})"
                )
            if self._clock() > deadline:
                raise FetchError(
                    f"{_where(response.url)} took more than {self.bounds.answer_seconds:.0f}s "
                    "to answer",
                    retryable=True,
                )


def joined(base: str, reference: str) -> str:
    """``reference`` made absolute against ``base``; as it came where it is no URL at all (a
    host such as ``[::1``): :func:`origin_of` refuses it then, and nothing is sent."""
    try:
        return urljoin(base, reference)
    except ValueError:
        return reference


def _where(url: str) -> str:
    """A URL as shown in an error: scheme, host, port and path; never user info or a query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return repr(url[:80])
    return f"{parts.scheme}://{host}{port}{parts.path[:200]}"
