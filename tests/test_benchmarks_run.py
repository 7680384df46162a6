"""The benchmarks that measure issue 15's figures still run on today's code, at a small scale.

They are run by hand (benchmarks/RESULTS.md), so nothing else notices when a change to the
code they drive breaks them: benchmarks/faces.py once queued payloads in a shape the outbox
no longer had. Each runs here as a user runs it, with --no-write (RESULTS.md is left alone).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.system


def run(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_faces_counts_requests_per_deploy_with_one_record_each() -> None:
    out = run("faces.py", "--backlog", "150", "--entities", "3", "--steady", "5", "--no-write")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "deploys" not in line]
    assert len(rows) == 3, out
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[8] == "yes", row  # one record each


def test_call_path_counts_one_webhooks_functions() -> None:
    out = run("call_path.py", "--no-write")
    counts = re.findall(r"\| \*\*(\d+) in (\d+)\*\* \|", out)
    assert len(counts) == 4, out  # to Cortex and through the settle, comprehensions in or apart
    folded_way, folded, apart_way, apart = (int(functions) for functions, _ in counts)
    assert 0 < folded_way < folded < apart and folded_way < apart_way < apart
    assert "bridge/webhooks.py" in out and "bridge/worker.py" in out
