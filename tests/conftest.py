"""Shared fixtures: a strict stand-in Cortex on loopback, sample payloads, a fresh database."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge.fakecortex import FakeCortex
from tests.databases import BACKENDS, database_url

if TYPE_CHECKING:
    from bridge.app import Runtime

SAMPLES = Path(__file__).parent / "samples"
TOKEN = "ctx-test-token-5f1e9a"


def load_sample(name: str) -> Any:
    """A sample payload under tests/samples/, parsed."""
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture
def cortex() -> Iterator[FakeCortex]:
    """A stand-in Cortex that accepts TOKEN; fails the test if it saw an invalid body."""
    with FakeCortex(token=TOKEN) as fake:
        yield fake
        assert fake.violations == [], f"cortex received invalid requests: {fake.violations}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL no other test sees, once per backend: ``[sqlite]``, ``[postgresql]``."""
    with database_url(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def new_runtime(db_url: str) -> Iterator[Callable[..., Runtime]]:
    """Makes receiver runtimes on this test's database (``runtime_on``'s arguments).

    They are closed after the test.
    """
    from tests.receiver_kit import runtime_on  # it imports this module

    made: list[Runtime] = []

    def new(config: dict[str, Any] | None = None, **kw: Any) -> Runtime:
        made.append(runtime_on(db_url, config, **kw))
        return made[-1]

    yield new
    for rt in made:
        rt.store.close()


def wait_until(condition: Any, *, timeout: float = 5.0) -> None:
    """Wait for ``condition()`` to hold; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
