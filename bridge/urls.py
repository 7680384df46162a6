"""URLs the bridge is given or assumes: Cortex's default, the database URL's driver, and what
makes a deploy's page URL (the one rule every face's deploy is checked by).

Pure: no imports that do I/O, so that ``send``, the config and the store can all share them.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bridge.redact import redact_url

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


def port_problem(netloc: str, *, show: bool = True) -> str | None:
    """What is wrong with the port of ``netloc``, when it has one: not a number from 1 to
    65535; None when it is fine (or absent). ``show``: the port as given is named (not in
    a database URL: with its '@' left out, a password stands where the port would)."""
    try:
        port = urlsplit(f"//{netloc}").port
    except ValueError:
        port = 0
    if port == 0:
        if not show:
            return "port must be a number from 1 to 65535 (no '@' before the host?)"
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


def base_url_problem(url: str, *, query: bool = False) -> str | None:
    """What keeps ``url`` from being an http(s) base URL a token may be sent to, or None: a
    host (a DNS name or an IP address) and no user info; a port from 1 to 65535; no query or
    fragment unless ``query`` (an http source's list URL may carry one: a base URL that did
    would send its requests elsewhere than said). The config, ``send`` and the Action check
    CORTEX_API_URL by this one rule.

    User info is refused, not ignored: in ``https://api.getcortexapp.com@evil.example`` the
    host is ``evil.example``, and the Cortex token would be sent there.
    """
    shown = redact_url(url)
    bad = f"must be an http(s) url, got {shown[:200]!r}"
    if not re.fullmatch(r"https?://[^/\s?#]+([/?#]\S*)?", url, flags=re.IGNORECASE):
        return bad
    try:  # the port is port_problem's to judge, below
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # "[::1" and the like
        return bad
    bracketed = "[" in parts.netloc or "]" in parts.netloc
    if bracketed and not re.fullmatch(r"(?:[^@]*@)?\[[0-9A-Fa-f:.]+\](?::\d*)?", parts.netloc):
        # "[::1]x:5": http.client would refuse it on every try, as a connection failure.
        return bad
    if not query and (parts.query or "?" in url):
        return f"must be a base url with no '?' or '#', got {shown[:200]!r}"
    if parts.fragment or "#" in url:  # never sent: a url that has one is not what it says
        return f"must be a url with no '#', got {shown[:200]!r}"
    problem = api_authority_problem(parts.netloc)
    if problem:
        return problem
    if not host:
        return f"must name a host, got {shown[:200]!r}"
    if not bracketed:
        try:  # "a..b", a label past 63 characters: no name a connection could be made to
            host.encode("idna")
        except UnicodeError:
            return f"must name a host that is a DNS name or an IP address, got {shown[:200]!r}"
    return None


# GitHub's account names (letters, digits, hyphens; an Enterprise Managed User's an underscore
# too: at most 39) and repository names (letters, digits, '.', '-', '_', at most 100); GitLab's
# group and project path segments (letters, digits, '_', '-', '.', not starting with '-' or
# '.'). A name becomes part of an API path as it is: one that is none of these (a space, a
# '/', '..', an escape) is refused.
_GITHUB_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,37}[A-Za-z0-9])?", re.ASCII)
_GITHUB_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}", re.ASCII)
# A glob over an owner's repositories (acme/*, acme/api-*, acme/svc-[ab]?): listed, then each
# name matched; never part of a path itself.
_GITHUB_GLOB = re.compile(r"[A-Za-z0-9._*?\[\]!-]{1,100}", re.ASCII)
_GITLAB_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}", re.ASCII)


def scm_name_problem(name: str, kind: str) -> str | None:
    """What keeps ``name`` from being an SCM's name of ``kind`` (``github-owner``,
    ``github-repository`` OWNER/REPO or OWNER/*, ``gitlab-group`` GROUP[/SUBGROUP...],
    ``gitlab-project`` GROUP/.../PROJECT), or None."""
    if kind == "github-owner":
        ok = _GITHUB_OWNER.fullmatch(name) is not None
    elif kind == "github-repository":
        owner, _, repo = name.partition("/")
        ok = (
            _GITHUB_OWNER.fullmatch(owner) is not None
            and (
                _GITHUB_REPO.fullmatch(repo) is not None
                or (any(c in repo for c in "*?[") and _GITHUB_GLOB.fullmatch(repo) is not None)
            )
            and repo not in (".", "..")
        )
    else:
        parts = name.strip("/").split("/")
        enough = len(parts) >= (2 if kind == "gitlab-project" else 1)
        ok = enough and all(_GITLAB_SEGMENT.fullmatch(part) for part in parts)
    if ok:
        return None
    expected = {
        "github-owner": "a GitHub account name",
        "github-repository": "OWNER/REPO or OWNER/<glob>",
        "gitlab-group": "GROUP (or GROUP/SUBGROUP)",
        "gitlab-project": "GROUP/PROJECT",
    }[kind]
    return f"expected {expected}, got {name[:100]!r}"


# REST API URLs, not pages: api.github.com (api.<name>.ghe.com on GHE.com), GHES "/api/v3/"
# and GitLab "/api/v4/" (docs.github.com/en/rest, docs.gitlab.com/ee/api/rest/).
_API_PATH = re.compile(r"/api/v\d+(/|$)")


def page_problem(url: str, *, api: bool = True) -> str | None:
    """What keeps ``url`` from being a deploy's page, as Cortex shows it to people: not an
    absolute http(s) URL with a host, or user info in it (``user:password@``: a credential
    that would be shown to everyone); None when it is one. The model refuses a deploy for it.

    ``api=False``: an SCM's REST API URL is no page either; a source picks its deploy's page
    among the URLs it is sent as the first with no problem so.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not an absolute http(s) URL"
    if parts.scheme.lower() not in ("http", "https") or not host:
        return "is not an absolute http(s) URL"
    if " " in url:  # "http://exa mple.com": no link a browser follows (a control character:
        return "holds a space"  # the model's own rule refuses it, naming the field)
    if port_problem(parts.netloc) is not None:
        return "has a port that is not a number from 1 to 65535"
    if "@" in parts.netloc:
        return "holds user info (user:password@), which would be shown to everyone"
    if not api and (
        host == "api.github.com"
        or (host.startswith("api.") and host.endswith(".ghe.com"))
        or _API_PATH.search(parts.path)
    ):
        return "is an API URL, not a page"
    return None
