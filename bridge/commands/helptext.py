"""The shape every command's --help shares: what it does, what it reads, examples, exit codes.

Pure text; imported by the command modules' ``add_arguments`` (no dependencies).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def describe(
    parser: argparse.ArgumentParser,
    about: str,
    *,
    environment: Sequence[tuple[str, str]],
    examples: Sequence[str],
    exit_codes: Sequence[tuple[int, str]],
    notes: str = "",
) -> None:
    """Give ``parser`` its description and an epilog laid out as written (not re-wrapped)."""
    width = max((len(name) for name, _ in environment), default=0) + 2
    parts = [
        "environment:\n" + "\n".join(f"  {name:<{width}}{what}" for name, what in environment),
        "examples:\n" + "\n".join(f"  {line}" if line else "" for line in examples),
        "exit codes:\n" + "\n".join(f"  {code}  {what}" for code, what in exit_codes),
    ]
    parser.description = about
    parser.epilog = "\n\n".join([*parts, *([notes] if notes else [])])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
