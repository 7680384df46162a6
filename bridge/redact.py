"""Secrets out of anything shown: logs, errors, step summaries. Pure."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``.

    A secret is also looked for as JSON spells it inside a string (a quote or a backslash
    escaped, anything non-ASCII as ``\\uXXXX`` or as it is), since log lines are JSON.
    Longer secrets go first, so one that contains another is masked whole.
    """
    return mask(text, spellings(secrets))


def spellings(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every way the secrets can appear in text (as given, inside a JSON string, and
    percent-encoded as a form body carries it), longest first: what :func:`mask` looks for.
    Work it out once where many texts are redacted."""
    found = set()
    for secret in secrets:
        if secret:
            found.add(secret)
            found.add(json.dumps(secret)[1:-1])
            # As a JSON writer that keeps non-ASCII as it is spells it (orjson, the logs').
            found.add(json.dumps(secret, ensure_ascii=False)[1:-1])
            # In GitHub's form encoding (payload=...), in a URL's query: as the encoders in
            # use spell it (Python's and Go's escape '*' and keep '~'; Ruby's keep '*' and
            # escape '~'; JavaScript's encodeURIComponent keeps ~*'()!), in either case of hex.
            for encoded in _percent_encodings(secret):
                found.add(encoded)
                found.add(_PERCENT.sub(lambda m: m.group().lower(), encoded))
    return tuple(sorted(found, key=len, reverse=True))


_PERCENT = re.compile(r"%[0-9A-F]{2}")


def _percent_encodings(secret: str) -> set[str]:
    """``secret`` percent-encoded as the common encoders write it, spaces as %20 and as +."""
    found = set()
    for encode in (quote, quote_plus):
        plain = encode(secret, safe="")
        ruby = encode(secret, safe="*").replace("~", "%7E")  # encode_www_form_component
        found |= {plain, plain.replace("~", "%7E"), ruby, encode(secret, safe="~*'()!")}
    return found


# The dict keys JSON writes as they are (the rest are written as their text).
_KEYS = (str, int, float, bool)


def masked(value: Any, spelled: tuple[str, ...]) -> Any:
    """``value`` with each of ``spelled`` and every URL's password masked in its text,
    however deep; a value JSON has no type for is its ``str``, masked: what the logs, the
    admin API, the console and ``deliveries`` show."""
    if isinstance(value, str):
        return mask_userinfo(mask(value, spelled))
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        # A key JSON has no type for (a tuple, say) becomes its text too: never a list.
        return {
            masked(k if isinstance(k, _KEYS) else str(k), spelled): masked(v, spelled)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [masked(item, spelled) for item in value]
    return masked(str(value), spelled)


def cut(text: str, most: int, spelled: tuple[str, ...]) -> str:
    """The first ``most`` characters of ``text`` with each of ``spelled`` masked: a secret
    that runs across the cut is masked whole there (``***`` ends the text), never shown in
    part."""
    head = text[:most]
    if len(text) > most:
        # Found whole only where it runs across the cut: from before it to past it.
        across = [
            found
            for found in (
                text.find(spelling, max(0, most - len(spelling) + 1), most + len(spelling) - 1)
                for spelling in spelled
            )
            if found != -1
        ]
        if across:
            head = text[: min(across)] + MASK
    return mask(head, spelled)


def mask(text: str, spelled: tuple[str, ...]) -> str:
    """``text`` with each of ``spelled`` (from :func:`spellings`) replaced by ``***``."""
    for spelling in spelled:
        if spelling in text:
            text = text.replace(spelling, MASK)
    return text


# "scheme://user:password@host": the user and password, masked. Found by its "://" and
# "@" first, then the scheme (at most 32 characters) looked for just before the "://": a
# pattern that starts with the scheme is tried at every letter of the body, 32 characters
# ahead each time, and cost 220 us of a 3.6 kB webhook's 560 us of CPU (benchmarks/RESULTS.md,
# "Receiver tail ... stored"); unbounded, it was quadratic (24 s for a 2 MB title).
USERINFO = re.compile(r"://([^/\s\"'@]+)@")
_SCHEME = re.compile(r"(?i)[a-z][a-z0-9+.-]{0,31}\Z")
_SCHEME_MOST = 32


def mask_userinfo(text: str) -> str:
    """``text`` with the user and password of each ``scheme://user:password@`` masked.

    What ``(?i)([a-z][a-z0-9+.-]{0,31}://)[^/\\s"'@]+@`` replaced, found from the "://" out.
    """
    kept: list[str] = []
    done = 0
    for found in USERINFO.finditer(text):
        at = found.start()
        if _SCHEME.search(text, max(done, at - _SCHEME_MOST), at) is None:
            continue
        kept += (text[done : found.start(1)], MASK)
        done = found.end(1)
    if not kept:
        return text
    kept.append(text[done:])
    return "".join(kept)


def redact_url(url: str) -> str:
    """The URL with any password (in the user info, a ``password=`` or ``sslpassword=``
    query) masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:  # not a URL as written (a ':' left out): whatever stands before an '@' goes
        _, at, after = url.rpartition("@")
        return f"***@{after}" if at else url
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    tail = re.sub(r"(?i)([?&](?:ssl)?password=)[^&#]*", r"\1***", tail)
    return f"{scheme}{sep}{netloc}{tail}"
