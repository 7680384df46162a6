"""What the log line of an ignored (or refused) webhook costs the receiver (issue 18).

Every webhook the receiver ignores or refuses now leaves one JSON log line; ignored events are
most of a busy hook's traffic, so the line must stay cheap. This measures, in-process, the
WSGI cost of answering one ignored ``deployment_status`` (and one with a bad signature)
through ``create_app`` (WebhookDispatch, as served), logs configured as ``serve`` configures
them (``bridge.logs.configure``, JSON lines on stderr, here a file):

- ``line``: this tree at level info: the line is written;
- ``quiet``: this tree at level warning: the ignored event's line is skipped (a 401's is not);
- ``baseline``: another tree (``--baseline DIR``, e.g. ``git archive main``) at level info,
  which wrote no line for an ignored event.

Each configuration runs in its own process, the three alternating, ``--runs`` times; the
table gives medians of the per-request time and the ratios against ``baseline``.

    git archive main | tar -x -C /tmp/main-tree
    python benchmarks/refusal_log.py --baseline /tmp/main-tree
    python benchmarks/refusal_log.py --baseline /tmp/main-tree --runs 3 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from procs import machine, write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
HEADING = "## Log line of ignored and refused webhooks (issue 18)"

# Run in a child process with PYTHONPATH at the tree measured: prints {kind: us per request}.
CHILD = r"""
import io, json, os, sys, tempfile, time, hashlib, hmac
from pathlib import Path
from bridge import logs
from bridge.app import Runtime, create_app
from bridge.config import parse_config
from bridge.store import Store

level, count, sample = sys.argv[1], int(sys.argv[2]), sys.argv[3]
work = Path(tempfile.mkdtemp())
runtime = Runtime(config=parse_config({}), store=Store.from_url(f"sqlite:///{work}/b.db"),
                  github_secret="bench-secret", gitlab_token="t")
app = create_app(runtime)
doc = json.loads(Path(sample).read_text())
doc["deployment"]["payload"] = {}
doc["deployment_status"]["state"] = "in_progress"
body = json.dumps(doc).encode()
good = "sha256=" + hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()
bad = "sha256=" + "0" * 64

def environ(signature, n):
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhooks/github",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "HTTP_X_GITHUB_EVENT": "deployment_status",
            "HTTP_X_GITHUB_DELIVERY": f"bench-{n}", "HTTP_X_HUB_SIGNATURE_256": signature,
            "wsgi.url_scheme": "http", "SERVER_NAME": "bench", "SERVER_PORT": "80"}

def start_response(status, headers, exc_info=None):
    return None

sys.stderr = open(work / "serve.log", "w")  # where serve's lines go: a file, as in the benchmark
logs.configure(secrets=["bench-secret", "t"], level=level)
out = {}
for kind, signature, want in (("ignored", good, b'"ignored"'), ("refused", bad, b'"unauthorized"')):
    for n in range(300):  # warm-up
        b"".join(app(environ(signature, n), start_response))
    started = time.perf_counter()
    for n in range(count):
        answer = b"".join(app(environ(signature, n), start_response))
    out[kind] = (time.perf_counter() - started) / count * 1e6
    assert want in answer, answer
sys.stderr.flush()
out["lines"] = sum(1 for _ in open(work / "serve.log"))
print(json.dumps(out))
"""


def measure(tree: Path, level: str, count: int) -> dict[str, float]:
    """One child process's medians: microseconds per request, by kind."""
    sample = ROOT / "tests" / "samples" / "github" / "deployment_status.success.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, level, str(count), str(sample)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return dict(json.loads(done.stdout))


def main(argv: list[str] | None = None) -> int:
    """Measure, print the section, and write it into RESULTS.md unless --no-write."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a tree to compare with")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=5000, help="requests per kind per run")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    configs = {
        "baseline": (args.baseline, "info"),
        "line": (ROOT, "info"),
        "quiet": (ROOT, "warning"),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for _ in range(args.runs):
        for name, (tree, level) in configs.items():
            runs[name].append(measure(tree, level, args.count))
    section = report(runs, args)
    print(section)
    if not args.no_write:
        write_section(RESULTS, HEADING, section)
    return 0


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    """The Markdown section."""

    def median(name: str, kind: str) -> float:
        return statistics.median(run[kind] for run in runs[name])

    rows = []
    for kind in ("ignored", "refused"):
        base = median("baseline", kind)
        for name in ("baseline", "line", "quiet"):
            value = median(name, kind)
            least = min(run[kind] for run in runs[name])
            lines = int(runs[name][0]["lines"])
            rows.append(
                f"| {kind} | {name} | {value:.1f} | {value / base:.0%} | {least:.1f} | {lines} |"
            )
    return "\n".join(
        [
            HEADING,
            "",
            f"Machine: {machine()}. Baseline: `{args.baseline}`. {args.runs} runs of "
            f"{args.count} requests per kind per configuration, each configuration in its own "
            "process, alternating; `python benchmarks/refusal_log.py`.",
            "",
            "| webhook | configuration | us per request (median) | vs baseline | fastest run "
            "| log lines (first run) |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
