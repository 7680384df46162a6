"""GitHub Actions workflow commands and files: outputs, step summary, annotations, masks.

Docs: docs.github.com "Workflow commands for GitHub Actions" (escaping as in
@actions/core's command.ts: '%', CR and LF in data; also ':' and ',' in properties).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path


def escape_data(text: str) -> str:
    """Escape a command's message."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a command property's value."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def plain_line(text: str) -> str:
    """A log line that stays one line: CR and LF escaped as in command data.

    The runner reads a workflow command only at the start of a line, so a value inside a
    line that cannot break cannot start one.
    """
    return text.replace("\r", "%0D").replace("\n", "%0A")


def annotation(level: str, message: str, *, title: str | None = None) -> str:
    """An ``::error::``/``::warning::``/``::notice::`` line."""
    props = f" title={escape_property(title)}" if title else ""
    return f"::{level}{props}::{escape_data(message)}"


def add_mask(value: str) -> str:
    """The command that makes the runner mask ``value`` in every later log line."""
    return f"::add-mask::{escape_data(value)}"


def output_block(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` entry, multi-line safe (heredoc with a random delimiter)."""
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def write_outputs(path: str, outputs: Mapping[str, str]) -> None:
    """Append step outputs to the file named by ``GITHUB_OUTPUT``."""
    with Path(path).open("a", encoding="utf-8") as handle:
        for name, value in outputs.items():
            handle.write(output_block(name, value))


def append_summary(path: str, markdown: str) -> None:
    """Append Markdown to the job summary file named by ``GITHUB_STEP_SUMMARY``."""
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(markdown if markdown.endswith("\n") else markdown + "\n")


def markdown_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A GitHub-flavoured Markdown table, cells escaped."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    head = list(header)
    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
