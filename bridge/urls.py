"""URLs the bridge is given or assumes: Cortex's default, and the database URL's driver.

Pure: no imports that do I/O, so that ``send``, the config and the store can all share them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# PRODUCT.md: CORTEX_API_URL, the config's cortex.url and the Action's cortex-api-url input
# all default to Cortex's SaaS API.
CORTEX_URL = "https://api.getcortexapp.com"

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
PSYCOPG_SCHEME = "postgresql+psycopg://"


def psycopg_url(url: str) -> str:
    """``url`` with ``postgresql://`` (or ``postgres://``) spelled ``postgresql+psycopg://``.

    PRODUCT.md: ``postgresql://`` means psycopg 3, which is what the image ships, while
    SQLAlchemy's own default driver for it is psycopg2. Any other URL comes back unchanged.
    """
    for scheme in _POSTGRES_SCHEMES:
        if url.startswith(scheme):
            return PSYCOPG_SCHEME + url.removeprefix(scheme)
    return url


def port_problem(netloc: str) -> str | None:
    """What is wrong with the port of ``netloc``, when it has one: not a number from 1 to
    65535; None when it is fine (or absent)."""
    try:
        port = urlsplit(f"//{netloc}").port
    except ValueError:
        port = 0
    if port == 0:
        given = netloc.rpartition("@")[2].rpartition(":")[2]
        return f"port must be a number from 1 to 65535, got {given[:20]!r}"
    return None


def api_authority_problem(netloc: str) -> str | None:
    """What makes ``netloc`` unfit for a URL a token is sent to, or None.

    User info is refused, not ignored: in ``https://api.getcortexapp.com@evil.example`` the
    host is ``evil.example``, and the token would be sent there.
    """
    if "@" in netloc:
        host = netloc.rpartition("@")[2]
        return (
            f"must not hold a user or password ('...@'): its host would be {host!r} "
            "(credentials come only from the environment, e.g. CORTEX_API_TOKEN)"
        )
    return port_problem(netloc)
