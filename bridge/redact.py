"""Secrets out of anything shown: logs, errors, step summaries. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable

MASK = "***"


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``.

    A secret is also looked for as JSON spells it inside a string (a quote or a backslash
    escaped, anything non-ASCII as ``\\uXXXX``), since log lines are JSON. Longer secrets go
    first, so one that contains another is masked whole.
    """
    spellings = set()
    for secret in secrets:
        if secret:
            spellings.add(secret)
            spellings.add(json.dumps(secret)[1:-1])
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, MASK)
    return text
