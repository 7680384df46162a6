"""A reader that goes away (`... | head`) ends any command quietly: no traceback, exit 141."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.store import Store

SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))


def closed_pipe(args: list[str], **env: str) -> tuple[int, str]:
    """Run the command with stdout a pipe whose reader is already gone; (exit code, stderr)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [SCRIPT, *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **env},
            check=False,
        )
    finally:
        os.close(write)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["sync", "--help"], id="help"),
        pytest.param(["check-config"], id="check-config"),
        pytest.param(["send", "--dry-run", "--entity-tag", "api", "--deploy-id", "r1"], id="send"),
        pytest.param(  # more than stdout's buffer: written while the command runs
            ["send", "--dry-run", "--entity-tag", ",".join(f"svc-{n}" for n in range(20))],
            id="send-many",
        ),
    ],
)
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
def test_a_closed_pipe_ends_the_command_quietly(args: list[str], unbuffered: str) -> None:
    # PYTHONUNBUFFERED=1 (as container images set it): each line written as the command runs.
    code, err = closed_pipe(args, PYTHONUNBUFFERED=unbuffered)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    # argparse's help ignores a failed write of its own, and exits 0: quiet all the same.
    assert code == 141 or (args[-1] == "--help" and code == 0), err


def test_deliveries_list_into_a_closed_pipe(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    store = Store.from_url(url)
    try:
        for n in range(3):
            store.enqueue(
                dedupe_key=f"github:1:d{n}",
                source="github",
                event_name="deployment_status",
                payload={"event": {"repository": "acme/api"}, "entities": ["api"]},
                now=datetime.now(timezone.utc),
                group_key=f"g{n}",
            )
    finally:
        store.close()
    code, err = closed_pipe(["deliveries", "list"], BRIDGE_DATABASE_URL=url)
    assert (code, err) == (141, "")
