"""Secrets out of anything shown: logs, errors, step summaries. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable

MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``.

    A secret is also looked for as JSON spells it inside a string (a quote or a backslash
    escaped, anything non-ASCII as ``\\uXXXX`` or as it is), since log lines are JSON.
    Longer secrets go first, so one that contains another is masked whole.
    """
    return mask(text, spellings(secrets))


def spellings(secrets: Iterable[str]) -> tuple[str, ...]:
    """Every way the secrets can appear in text (as given, and inside a JSON string), longest
    first: what :func:`mask` looks for. Work it out once where many texts are redacted."""
    found = set()
    for secret in secrets:
        if secret:
            found.add(secret)
            found.add(json.dumps(secret)[1:-1])
            # As a JSON writer that keeps non-ASCII as it is spells it (orjson, the logs').
            found.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return tuple(sorted(found, key=len, reverse=True))


def mask(text: str, spelled: tuple[str, ...]) -> str:
    """``text`` with each of ``spelled`` (from :func:`spellings`) replaced by ``***``."""
    for spelling in spelled:
        if spelling in text:
            text = text.replace(spelling, MASK)
    return text
