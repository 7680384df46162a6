"""What the step says: ``send``'s plain lines, or the Action's workflow commands and files.

The Action speaks in annotations and masks, ``$GITHUB_OUTPUT`` heredocs and the step
summary (Reporter for ``send``, ActionReporter for the Action, both secrets-redacted).
Docs: docs.github.com "Workflow commands for GitHub Actions" (escaping as in
@actions/core's command.ts: '%', CR and LF in data; also ':' and ',' in properties).
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

from bridge.action.inputs import INPUT_BY_NAME, Notice, action_takes, spell_flag
from bridge.errors import InputError, UsageError
from bridge.record.retrying import Outcome
from bridge.redact import redact


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
    """Append step outputs to the file named by ``GITHUB_OUTPUT``.

    Written with ``\n`` on every OS (``newline="\n"``): the runner reads ``\n`` everywhere,
    but on Windows it would keep a text-mode ``\r\n`` inside a multi-line value (its
    FileCommandManager cuts the value out of the file as is), so the ``payload`` output would
    differ from Linux's by a ``\r`` on each line.
    """
    with Path(path).open("a", encoding="utf-8", newline="\n") as handle:
        for name, value in outputs.items():
            handle.write(output_block(name, value))


def append_summary(path: str, markdown: str) -> None:
    """Append Markdown to the job summary file named by ``GITHUB_STEP_SUMMARY`` (``\n`` only,
    as :func:`write_outputs`)."""
    with Path(path).open("a", encoding="utf-8", newline="\n") as handle:
        handle.write(markdown if markdown.endswith("\n") else markdown + "\n")


def markdown_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A GitHub-flavoured Markdown table, cells escaped."""

    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    head = list(header)
    lines = ["| " + " | ".join(cell(h) for h in head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Reporter:
    """Plain output for ``send``: uuids on stdout, one-line messages on stderr."""

    def __init__(
        self, secrets: tuple[str, ...], *, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.secrets = tuple(s for s in secrets if s)
        # The environment's secrets (bridge.secrets.held): masked in what is printed, with no
        # command to the runner (the token's is sent once it is read: add_secret).
        self.held: tuple[str, ...] = ()
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def add_secret(self, secret: str) -> None:
        """Never print ``secret`` from now on."""
        if secret and secret not in self.secrets:
            self.secrets = (*self.secrets, secret)

    def hold(self, secrets: Iterable[str]) -> None:
        """Never print any of ``secrets`` (the environment's) from now on."""
        self.held = (*self.held, *(s for s in secrets if s))

    def redact(self, text: str) -> str:
        """The text with every secret replaced by ***."""
        return redact(text, (*self.secrets, *self.held))

    def spell(self, name: str) -> str:
        """How this face names an input: ``send``'s flag (or environment variable)."""
        return spell_flag(name)

    def describe(self, exc: UsageError) -> str:
        """The error's message, naming the input as this face does."""
        if isinstance(exc, InputError):
            return f"{self.spell(exc.name)}: {exc.problem}"
        return str(exc)

    def notice(self, notice: Notice) -> None:
        """A warning that says which input would fix it (where this face has that input)."""
        fix = f": set {self.spell(notice.name)}" if self.takes(notice.name) else ""
        self.warning(f"{notice.text}{fix}")

    def takes(self, name: str) -> bool:
        """Whether this face has the input ``name`` (``send`` has them all)."""
        return name in INPUT_BY_NAME

    def error(self, message: str) -> None:
        """A failure that decides the exit code."""
        self.line(f"error: {message}")

    def warning(self, message: str) -> None:
        """Something the user should fix, or a failure that was told not to fail the step."""
        self.line(f"warning: {message}")

    def info(self, message: str) -> None:
        """Progress."""
        self.line(message)

    def line(self, text: str) -> None:
        """One log line on stderr, secrets redacted, kept on one line: a CI that reads
        commands from the log (GitHub's runner does, for `send` in a run step too) sees no
        command start inside a value (Cortex's error text included)."""
        print(plain_line(self.redact(text)), file=self.err)

    def not_recorded(self, reason: str) -> None:
        """Nothing is recorded, and why: nothing on stdout."""
        self.info(f"not recorded: {reason}")

    def finish(self, outcomes: list[Outcome], *, dry_run: bool) -> None:
        """The result on stdout: one uuid per entity, in the order given, a line left empty
        for one that failed; in a dry run, the body (a JSON array of them for several)."""
        if dry_run:
            payloads = [o.payload for o in outcomes]
            shown = payloads[0] if len(payloads) == 1 else payloads
            print(self.redact(json.dumps(shown, indent=2)), file=self.out)
            return
        for outcome in outcomes:
            print(outcome.uuid or "", file=self.out)


class ActionReporter(Reporter):
    """GitHub Actions output: annotations, masked token, step outputs and summary."""

    def __init__(
        self, secrets: tuple[str, ...], environ: Mapping[str, str], *, out: TextIO | None = None
    ) -> None:
        out = out or sys.stdout
        super().__init__((), out=out, err=out)
        self.environ = environ
        for secret in secrets:
            self.add_secret(secret)

    def spell(self, name: str) -> str:
        """How the Action names an input."""
        return f"the {name} input"

    def takes(self, name: str) -> bool:
        """Whether the Action has the input (deploy-id is ``send``'s only)."""
        return action_takes(name)

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` in the runner's log too (``::add-mask::``)."""
        if secret and secret not in self.secrets:
            print(add_mask(secret), file=self.out)
        super().add_secret(secret)

    def error(self, message: str) -> None:
        """An ``::error::`` annotation."""
        print(annotation("error", self.redact(message), title="Cortex deploy"), file=self.out)

    def warning(self, message: str) -> None:
        """A ``::warning::`` annotation."""
        print(annotation("warning", self.redact(message), title="Cortex deploy"), file=self.out)

    def not_recorded(self, reason: str) -> None:
        """A ``::notice::``, empty outputs, and the reason in the step summary."""
        message = self.redact(f"not recorded: {reason}")
        print(annotation("notice", message, title="Cortex deploy"), file=self.out)
        if self.environ.get("GITHUB_OUTPUT"):
            write_outputs(self.environ["GITHUB_OUTPUT"], {"deploy-uuid": "", "payload": ""})
        if self.environ.get("GITHUB_STEP_SUMMARY"):
            append_summary(self.environ["GITHUB_STEP_SUMMARY"], f"### Cortex deploy\n\n{message}")

    def finish(self, outcomes: list[Outcome], *, dry_run: bool) -> None:
        """Write ``deploy-uuid`` and ``payload`` outputs and the step summary table."""
        payloads = [o.payload for o in outcomes]
        payload = payloads[0] if len(payloads) == 1 else payloads
        # In the order of entity-tag, an entity that failed keeping its place empty; empty
        # when nothing was recorded (a dry run).
        uuids = [o.uuid or "" for o in outcomes]
        outputs = {
            "deploy-uuid": ",".join(uuids) if any(uuids) else "",
            "payload": self.redact(json.dumps(payload)),
        }
        if dry_run:
            print(self.redact(json.dumps(payload, indent=2)), file=self.out)
        if self.environ.get("GITHUB_OUTPUT"):
            write_outputs(self.environ["GITHUB_OUTPUT"], outputs)
        if self.environ.get("GITHUB_STEP_SUMMARY"):
            append_summary(
                self.environ["GITHUB_STEP_SUMMARY"], self.redact(summary(outcomes, dry_run=dry_run))
            )


def summary(outcomes: list[Outcome], *, dry_run: bool) -> str:
    """The step summary: one row per entity."""
    rows = []
    for o in outcomes:
        if o.error is not None:
            result = f"failed: {o.error}"
        elif dry_run and not o.existing:
            result = "dry run: not sent"
        else:
            result = f"{'already recorded' if o.existing else 'recorded'} `{o.uuid}`"
        sha = o.payload.get("sha", "")
        rows.append(
            [
                o.entity,
                o.payload.get("environment", ""),
                o.type.value,
                f"`{sha[:12]}`" if sha else "",
                result,
            ]
        )
    table = markdown_table(["Entity", "Environment", "Type", "Commit", "Cortex"], rows)
    title = outcomes[0].payload.get("title", "") if outcomes else ""
    return f"### Cortex deploy{'s' if len(outcomes) > 1 else ''}: {title}\n\n{table}"
