"""What ``sync`` shows: the rows on stdout as they come, progress on stderr. No decisions here.

Everything shown passes :func:`shown` (text) or :func:`json_line` (JSON): the tokens masked,
whatever an SCM sent made unable to act on a CI log. ``sync`` runs in GitHub Actions (the
nightly audit), whose runner reads a line starting ``::`` as a workflow command
(``::error::``, ``::add-mask::``, ``::stop-commands::``) and ``##[command]`` anywhere in a
line (docs.github.com, "Workflow commands for GitHub Actions"; actions/runner
``ActionCommand.TryParse``); Azure Pipelines reads ``##vso[`` anywhere.
"""

from __future__ import annotations

import json as jsonlib
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from bridge.model import escape_controls
from bridge.redact import cut, redact, spellings
from bridge.sync.engine import Row, Tally, Verdict

# The second of two markers (``::``, ``##``): escaped, the runner sees no command.
_MARKER = re.compile(r"(?<=:):|(?<=#)#")
_JSON_ESCAPES = {":": "\\u003a", "#": "\\u0023"}


def shown(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` for a line of sync's text output: secrets masked, control characters escaped
    (``\\n``, ``\\x1b``), and ``::``/``##`` written ``:\\:``/``#\\#``."""
    return _MARKER.sub(lambda m: "\\" + m.group(), escape_controls(redact(text, secrets)))


def json_line(data: Any, secrets: Iterable[str] = ()) -> str:
    """``data`` as one line of JSON, secrets masked and ``::``/``##`` spelled with ``\\u``
    escapes: the same values to a JSON reader, no command to a CI runner."""
    text = redact(jsonlib.dumps(data), secrets).replace("\x7f", "\\u007f")
    return _MARKER.sub(lambda m: _JSON_ESCAPES[m.group()], text)


# The most of one value a row shows (docs/limits.md: a name is at most 512 characters).
MAX_SHOWN = 600


def _bounded(value: Any, spelled: tuple[str, ...]) -> Any:
    """``value``, or a text cut to MAX_SHOWN characters (masked first) saying how long it was."""
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return f"{cut(value, MAX_SHOWN, spelled)}... ({len(value):,} characters)"
    return value


COLUMNS = ("verdict", "repository", "deploy", "environment", "entity", "finished", "detail")
HEADINGS = ("VERDICT", "REPOSITORY", "DEPLOY", "ENV", "ENTITY", "FINISHED", "DETAIL")
WIDTHS = (9, 28, 22, 12, 20, 21, 0)


class Report:
    """An aligned table, or one JSON document (``deploys``, then ``summary``), streamed."""

    def __init__(self, stream: TextIO, *, json: bool, secrets: Iterable[str] = ()) -> None:
        self.stream = stream
        self.json = json
        self.secrets = tuple(secrets)
        self._spelled = spellings(self.secrets)
        self._first = True
        stream.write('{"deploys": [' if json else _line(HEADINGS))

    def row(self, row: Row) -> None:
        """One row, written at once (a long sync shows its findings as it goes); a value
        longer than MAX_SHOWN characters is cut there, saying so (a skipped deploy's
        100,000-character environment is not written whole)."""
        data = {key: _bounded(value, self._spelled) for key, value in row.to_dict().items()}
        if self.json:
            self.stream.write(("\n  " if self._first else ",\n  ") + json_line(data, self.secrets))
        else:
            cells = tuple(shown(str(data[c] or "-"), self.secrets) for c in COLUMNS)
            self.stream.write(_line(cells))
        self._first = False
        self.stream.flush()

    def close(self, tally: Tally, *, dry_run: bool, error: str | None) -> None:
        """The summary: a count per verdict."""
        counts: dict[str, Any] = {v.value: n for v, n in tally.verdicts.items()}
        if self.json:
            summary = {**counts, "dry_run": dry_run, "error": error}
            self.stream.write(f'\n], "summary": {json_line(summary, self.secrets)}}}\n')
        else:
            # "repaired", "retyped" and "finished" only where there were some: the line stays
            # as it was.
            rare = {Verdict.REPAIRED.value, Verdict.RETYPED.value, Verdict.FINISHED.value}
            shown = {v: n for v, n in counts.items() if n or v not in rare}
            self.stream.write("summary: " + ", ".join(f"{n} {v}" for v, n in shown.items()) + "\n")
        self.stream.flush()


def _line(cells: tuple[str, ...]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, WIDTHS, strict=True)).rstrip() + "\n"


class ProgressLine:
    """A redrawn line on a terminal; on anything else (CI logs) one plain line per source."""

    def __init__(
        self,
        stream: TextIO,
        tally: Tally,
        *,
        requests: Callable[[], int],
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        secrets: Iterable[str] = (),
    ) -> None:
        self.stream = stream
        self.secrets = tuple(secrets)
        self.tally = tally
        self.requests = requests
        self.tty = stream.isatty()
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self._drawn = -interval
        self._name, self._number, self._total = "", 0, 0

    def source(self, name: str, number: int, total: int) -> None:
        """Source ``number`` of ``total`` begins."""
        if self._name and not self.tty:
            self._write(self.text() + "\n")
        self._name, self._number, self._total = shown(name, self.secrets), number, total
        self.tick()

    def note(self, text: str) -> None:
        """A line of its own (on a terminal, above the redrawn one)."""
        self._write(("\r\x1b[2K" if self.tty else "") + shown(text, self.secrets) + "\n")

    def tick(self) -> None:
        """Redraw (terminal only), at most every ``interval`` seconds."""
        now = self.clock()
        if self.tty and now - self._drawn >= self.interval:
            self._drawn = now
            self._write("\r\x1b[2K" + self.text())

    def done(self) -> None:
        """The last line."""
        if self._name:
            self._write(("\r\x1b[2K" if self.tty else "") + self.text() + "\n")

    def text(self) -> str:
        """Source n/N, API requests (pages) read, compared, recorded, missing, time, ETA."""
        elapsed = self.clock() - self.started
        finished = self._number - 1
        eta = ""
        if finished > 0 and self._total > finished:
            eta = f" · ETA {elapsed / finished * (self._total - finished):.0f}s"
        verdicts = self.tally.verdicts
        pages = _count(self.requests(), "page")
        return (
            f"sync {self._number}/{self._total} {self._name} · {pages} read · "
            f"{self.tally.deploys} compared · {verdicts[Verdict.RECORDED]} recorded · "
            f"{verdicts[Verdict.MISSING]} missing · {elapsed:.0f}s{eta}"
        )

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _count(number: int, noun: str) -> str:
    """``1 page``, ``2 pages``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
