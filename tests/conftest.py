"""Shared fixtures: a strict stand-in Cortex on loopback, sample payloads, a fresh database."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge import logs
from bridge.fakecortex import FakeCortex
from tests.databases import BACKENDS, database_url

if TYPE_CHECKING:
    from bridge.app import Runtime

SAMPLES = Path(__file__).parent / "samples"

# The system tests: processes (serve, worker, the demo, the wheel, the image's entrypoint),
# real HTTP servers standing in for a deploy, fuzzing, waits measured in seconds, and the
# PostgreSQL variants (a real server). Marked `system` here, in one place; the default
# `pytest` leaves them out (pyproject's addopts) and `bash .ci/run` runs everything, both
# databases. The default run is the core and each face against the stand-ins on SQLite, in
# under a minute.
SYSTEM_MODULES = {
    "test_batching.py",
    "test_cli_server_commands.py",
    "test_config_input.py",
    "test_demo.py",
    "test_deploy_artifacts.py",
    "test_faults.py",
    "test_fuzz.py",
    "test_http_sources_e2e.py",
    "test_packaging.py",
    "test_serve.py",
    "test_worker_metrics.py",
    "test_worker_scaleout.py",
}
SYSTEM_TESTS = {
    "test_300_entities_two_workers_each_recorded_once",
    "test_a_worker_stopped_past_its_lease_records_nothing_twice",
    "test_pages_are_recorded_oldest_first_so_a_rollback_across_pages_is_detected",
    "test_github_rate_limits_are_waited_out",
    "test_rate_limit_and_5xx_still_one_deploy_and_waits_honoured",
    "test_chunked_over_the_limit_is_413_under_serve",
    "test_chunked_over_the_limit_is_413_on_a_real_server",
    "test_chunked_within_the_limit_is_queued_on_a_real_server",
    "test_a_running_relay_reconciles_a_deploy_whose_webhook_never_came",
    "test_a_sync_killed_mid_run_continues_where_it_stopped_and_records_nothing_twice",
    "test_the_relay_refuses_to_start_when_the_sync_section_lacks_its_token",
    "test_the_relay_refuses_to_start_when_an_http_source_lacks_its_token",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the system tests (SYSTEM_MODULES, SYSTEM_TESTS, PostgreSQL's, the browser's)."""
    for item in items:
        name = getattr(item, "originalname", item.name)
        on_server = any(item.get_closest_marker(m) for m in ("postgres", "browser"))
        if item.path.name in SYSTEM_MODULES or name in SYSTEM_TESTS or on_server:
            item.add_marker(pytest.mark.system)


TOKEN = "ctx-test-token-5f1e9a"
# .ci/run sets it: the property tests try every example they name there, a tenth of them in
# the default run (which stays within a minute on a small machine).
THOROUGH = os.environ.get("BRIDGE_TEST_THOROUGH") == "1"


def examples(thorough: int) -> int:
    """How many examples a property test tries: ``thorough`` in CI, a tenth of it else."""
    return thorough if THOROUGH else max(thorough // 10, 50)


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


@contextmanager
def bridge_logs_to(stream: Any, secrets: Sequence[str]) -> Iterator[None]:
    """``bridge``'s logs as ``serve`` configures them (logs.configure), written to ``stream``
    for the block; the logger's handlers, level and propagation put back after."""
    root = logging.getLogger("bridge")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        logs.configure(secrets=secrets, level="info")
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        yield
    finally:
        root.handlers[:], root.level, root.propagate = saved
