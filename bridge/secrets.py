"""Secrets from the environment: ``NAME``, or the file named by ``NAME_FILE``.

Every face reads its secrets here (the Action and ``send``, ``serve``, ``worker``, ``sync``,
``check-config``), so the rule for ``*_FILE`` variables is one.
"""

from __future__ import annotations

from collections.abc import Mapping


def secret_from(environ: Mapping[str, str], name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE``."""
    value = environ.get(name, "").strip()
    if value:
        return value
    path = environ.get(f"{name}_FILE", "").strip()
    if not path:
        return ""
    # Imported here: the config package loads PyYAML, which the Action's start need not pay.
    from bridge.config.environ import read_file_variable

    return read_file_variable(f"{name}_FILE", path)
