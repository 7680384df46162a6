"""What noting a turned-away webhook (for the console) costs an ignored event, in-process.

The receiver notes every webhook it rejects or ignores (bridge/turned_away.py): a tuple in a
bounded in-memory buffer, written to the database once a second by a thread. Ignored events
are most of a busy hook's traffic, so the note must cost them nothing measurable. Here one
receiver answers signed, ignored GitHub ``deployment_status`` webhooks (in_progress, mode
final) straight through its WSGI app, alternately with the note and with it replaced by a
no-op, and the CPU time per event of each is compared (median of the slices).

    python benchmarks/turned_away.py [--slices 15] [--per-slice 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bridge.app import create_app
from tests.conftest import load_sample
from tests.receiver_kit import GITHUB_SECRET, runtime_on


def main(argv: list[str] | None = None) -> int:
    """Measure, print one line per variant and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=15)
    parser.add_argument("--per-slice", type=int, default=2000)
    args = parser.parse_args(argv)
    body = json.dumps(load_sample("github/deployment_status.in_progress.json")).encode()
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha256).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        runtime = runtime_on(f"sqlite:///{tmp}/bench.db")
        app = create_app(runtime)

        def answer(status: str, headers: Any) -> None:
            assert status.startswith("200"), status

        def one_slice(n: int) -> float:
            started = time.process_time()
            for i in range(n):
                environ = {
                    "REQUEST_METHOD": "POST",
                    "PATH_INFO": "/webhooks/github",
                    "CONTENT_TYPE": "application/json",
                    "CONTENT_LENGTH": str(len(body)),
                    "wsgi.input": io.BytesIO(body),
                    "HTTP_X_GITHUB_EVENT": "deployment_status",
                    "HTTP_X_GITHUB_DELIVERY": f"d{i}",
                    "HTTP_X_GITHUB_HOOK_ID": "1",
                    "HTTP_X_HUB_SIGNATURE_256": signature,
                }
                b"".join(app.wsgi_app(environ, answer))
            return (time.process_time() - started) / n * 1e6

        note = runtime.turned_away.note
        timings: dict[str, list[float]] = {"noted": [], "not noted": []}
        for _ in range(args.slices):
            runtime.turned_away.note = note  # type: ignore[method-assign]
            timings["noted"].append(one_slice(args.per_slice))
            runtime.turned_away.flush()
            runtime.turned_away.note = lambda **_: None  # type: ignore[method-assign]
            timings["not noted"].append(one_slice(args.per_slice))
        runtime.store.close()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, value in medians.items():
        print(f"{name}: {value:.1f} us CPU per ignored event (median of {args.slices} slices)")
    print(f"noted / not noted: {medians['noted'] / medians['not noted']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
