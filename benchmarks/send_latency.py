"""How long `cortex-deploy-bridge send` takes, process start to exit, beside `curl`.

Both post the same deploy to a local stand-in Cortex in the same run, alternating, so the
machine's drift affects both alike. Run by hand:

    python benchmarks/send_latency.py --runs 30

and copy the table it prints into benchmarks/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bridge.fakecortex import FakeCortex

TOKEN = "bench-token"


def timed(command: list[str], env: dict[str, str]) -> float:
    """Seconds from process start to exit; the command must succeed."""
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def main() -> int:
    """Measure, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    script = shutil.which("cortex-deploy-bridge") or str(
        Path(sys.executable).with_name("cortex-deploy-bridge")
    )
    curl = shutil.which("curl")
    with FakeCortex(token=TOKEN) as cortex:
        env = {"PATH": os.environ["PATH"], "CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
        body = json.dumps(
            {
                "title": "bench",
                "timestamp": "2026-11-23T10:00:00Z",
                "type": "DEPLOY",
                "sha": "a" * 40,
                "environment": "production",
            }
        )
        bridge_cmd = {
            "send --type DEPLOY": [
                script,
                "send",
                "--entity-tag",
                "bench",
                "--type",
                "DEPLOY",
                "--sha",
                "a" * 40,
                "--environment",
                "production",
            ],
            "send (type auto: reads history)": [
                script,
                "send",
                "--entity-tag",
                "bench-auto",
                "--sha",
                "a" * 40,
                "--environment",
                "production",
            ],
        }
        commands = dict(bridge_cmd)
        commands["python -c pass (interpreter start)"] = [sys.executable, "-c", "pass"]
        if curl:
            commands["curl (baseline)"] = [
                curl,
                "--fail",
                "--silent",
                "-X",
                "POST",
                "-H",
                f"Authorization: Bearer {TOKEN}",
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
                f"{cortex.url}/api/v1/catalog/bench-curl/deploys",
            ]
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                samples[name].append(timed(command, env))
    base = statistics.median(samples["curl (baseline)"]) if curl else None
    print(
        f"{platform.node()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()} · "
        f"{time.strftime('%Y-%m-%d')} · {args.runs} runs each\n"
    )
    print("| command | median (s) | p90 (s) | vs curl |")
    print("| --- | --- | --- | --- |")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        p90 = values[int(len(values) * 0.9) - 1]
        ratio = f"{median / base:.1f}x" if base else "n/a"
        print(f"| {name} | {median:.3f} | {p90:.3f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
