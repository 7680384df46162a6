"""URLs the bridge is given or assumes: Cortex's default, and the database URL's driver.

Pure: no imports that do I/O, so that ``send``, the config and the store can all share them.
"""

from __future__ import annotations

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
