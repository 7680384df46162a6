"""A minimal HTTP/1.1 transport on the standard library (the Action must start fast).

It keeps one connection alive, separates connect and read timeouts, tunnels through an
HTTPS proxy when given one, and tells whether a failed request may have reached the server.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, lower-cased headers, raw body."""

    status: int
    headers: dict[str, str]
    body: bytes


class TransportError(Exception):
    """No answer came. ``unclear`` is True when the request may have been received."""

    def __init__(self, message: str, *, unclear: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.unclear = unclear
        self.timeout = timeout


class HttpTransport:
    """Send requests to one origin over a kept-alive connection."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        proxy: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.proxy = urlsplit(proxy) if proxy else None
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self.host, self.port
        if self.proxy is not None and self.proxy.hostname:
            host, port = self.proxy.hostname, self.proxy.port or 8080
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=context
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        if self.proxy is not None and self.proxy.hostname:
            headers = {}
            if self.proxy.username:
                login = f"{unquote(self.proxy.username)}:{unquote(self.proxy.password or '')}"
                headers["Proxy-Authorization"] = (
                    "Basic " + base64.b64encode(login.encode()).decode()
                )
            conn.set_tunnel(self.host, self.port, headers=headers)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportError(
                f"could not connect to {self.host}:{self.port}: {_describe(exc)}",
                unclear=False,
                timeout=isinstance(exc, socket.timeout),
            ) from exc
        if conn.sock is not None:
            conn.sock.settimeout(self.read_timeout)
        self._conn = conn
        return conn

    def request(
        self, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None
    ) -> Response:
        """Send one request and read the whole answer."""
        conn = self._conn or self._connect()
        try:
            conn.request(method, self.base_path + path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            timeout = isinstance(exc, socket.timeout)
            what = (
                f"no answer within {self.read_timeout:g}s"
                if timeout
                else f"connection lost: {_describe(exc)}"
            )
            # The request was (at least partly) written: the server may have acted on it.
            raise TransportError(what, unclear=True, timeout=timeout) from exc
        if answer.will_close:
            self.close()
        return Response(
            status=answer.status,
            headers={k.lower(): v for k, v in answer.getheaders()},
            body=data,
        )

    def close(self) -> None:
        """Drop the kept-alive connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


def proxy_for(url: str) -> str | None:
    """The proxy this process's environment names for ``url``, None for a direct connection.

    Read as the standard library reads it (``urllib.request.getproxies`` and
    ``proxy_bypass``): ``https_proxy``/``http_proxy`` in either case, ``no_proxy`` with its
    suffixes, ports and ``*``, and on macOS and Windows the system's own settings.
    """
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme, "").strip()
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"
