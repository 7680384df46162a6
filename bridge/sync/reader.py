"""What every sync source is to the reconcile engine: an iterator of deploys in a time window.

A reader pages through one source (a GitHub repository, a GitLab project, a configured HTTP
deployment API) and yields each deploy it finds as the one normalized ``DeployEvent`` that
webhooks and the Action produce, so routing, keys and recording are the same for all paths.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bridge.model import DeployEvent


@dataclass(frozen=True)
class Window:
    """The deploys wanted: those that finished (or were last updated) in [since, until)."""

    since: datetime  # aware, UTC
    until: datetime  # aware, UTC


@dataclass(frozen=True)
class Found:
    """One item a reader met: a deploy, or why the item is not one.

    ``resume`` is an opaque point to pass back to ``Reader.read`` so that a sync interrupted
    after this item continues with the item after it (None: no resume point here; a reader
    gives one at least at every page boundary).
    """

    event: DeployEvent | None
    skipped: str = ""  # why, when event is None (e.g. "status failure: not recorded")
    resume: str | None = None


class Reader(Protocol):
    """One source of historical deploys."""

    @property
    def name(self) -> str:
        """Stable name for progress and reports: ``github:acme/api``, ``http:spice``."""
        ...

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        """Every deploy in ``window``, from ``resume`` on when given; raises BridgeError."""
        ...
