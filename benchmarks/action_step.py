"""The composite Action's step, start to exit, beside a bare Python importing what it needs.

What a runner runs: action.yml's POSIX step (`sh -e`, the script read from action.yml) from
the release's tree (`release.py action-tree`), a bare Python (no packages) first on PATH,
recording one deploy (type auto: one history read, one create) against a stand-in Cortex
on loopback, a new run id each time so that every run records. The baseline, measured in
the same run and alternating with it, is a step that only starts that Python and imports
what any HTTPS client needs:

    python3 -c "import ssl, json, urllib.request"

Two cases for the step: "cold", a fresh copy of the tree each run (no __pycache__: a hosted
runner downloads the tree for every job), and "warm" (the same tree again: a self-hosted
runner's second use, or a second step in one job). The copy is not timed. Target: the cold
step's median within 0.5 s of the baseline's. Run by hand:

    python benchmarks/action_step.py --runs 20

and copy the table it prints into benchmarks/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

import yaml

from bridge.fakecortex import FakeCortex

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
TARGET_SECONDS = 0.5


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from process start to exit; the command must succeed."""
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


def step_script() -> str:
    """The POSIX step's script, as action.yml holds it."""
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    (posix,) = [s for s in action["runs"]["steps"] if s["id"] == "posix"]
    return str(posix["run"])


def main() -> int:
    """Measure, print a Markdown table; exit 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-action-step-"))
    try:
        tree = work / "tree"
        subprocess.run(
            [sys.executable, str(ROOT / ".github/scripts/release.py"), "action-tree", str(tree)],
            check=True,
            capture_output=True,
        )
        venv.create(work / "python", with_pip=False, symlinks=True)
        bare = work / "python" / "bin"
        script = work / "step.sh"
        script.write_text(step_script(), encoding="utf-8")
        (work / "ws").mkdir()
        rows = measure(args.runs, work, tree, bare, script)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(rows, args.runs)


def measure(runs: int, work: Path, tree: Path, bare: Path, script: Path) -> dict[str, list[float]]:
    """The three commands' times, alternating, one warm-up round first."""
    times: dict[str, list[float]] = {"baseline": [], "step, cold": [], "step, warm": []}
    path = os.pathsep.join([str(bare), "/usr/bin", "/bin"])
    baseline = ["sh", "-e", "-c", 'python3 -c "import ssl, json, urllib.request"']
    with FakeCortex(token=TOKEN) as cortex:
        for run in range(runs + 1):
            fresh = work / f"cold-{run}"
            shutil.copytree(tree, fresh)
            env = {
                "PATH": path,
                "GITHUB_ACTIONS": "true",
                "GITHUB_REPOSITORY": "acme/payments-api",
                "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
                "GITHUB_RUN_ATTEMPT": "1",
                "GITHUB_WORKSPACE": str(work / "ws"),
                "GITHUB_OUTPUT": str(work / "output"),
                "GITHUB_STEP_SUMMARY": str(work / "summary.md"),
                "INPUT_CORTEX_API_TOKEN": TOKEN,
                "INPUT_CORTEX_API_URL": cortex.url,
                "INPUT_ENTITY_TAG": "payments-api",
                "INPUT_ENVIRONMENT": "production",
                "INPUT_TYPE": "auto",
                "INPUT_FAIL_ON_ERROR": "true",
                "INPUT_DRY_RUN": "false",
            }
            step = ["sh", "-e", str(script)]
            measured = {
                "baseline": timed(baseline, {"PATH": path}, work),
                "step, cold": timed(
                    step,
                    {**env, "GITHUB_ACTION_PATH": str(fresh), "GITHUB_RUN_ID": f"{run}1"},
                    work,
                ),
                "step, warm": timed(
                    step,
                    {**env, "GITHUB_ACTION_PATH": str(tree), "GITHUB_RUN_ID": f"{run}2"},
                    work,
                ),
            }
            shutil.rmtree(fresh)
            if run:  # the first round warms the disk cache and the tree's own bytecode
                for name, seconds in measured.items():
                    times[name].append(seconds)
        recorded = len(cortex.all_deploys())
    assert recorded == 2 * (runs + 1), f"{recorded} deploys recorded"
    return times


def report(times: dict[str, list[float]], runs: int) -> int:
    """The table; 0 when the cold step is within the target of the baseline."""
    base = statistics.median(times["baseline"])
    print(
        f"{platform.node()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} cores · Python {platform.python_version()} · {runs} runs each"
    )
    print()
    print("| command | median s | p90 s | median minus baseline s | target |")
    print("| --- | --- | --- | --- | --- |")
    met = True
    for name, values in times.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
        extra = median - base
        target = "" if name == "baseline" else f"<= {TARGET_SECONDS}"
        if name == "step, cold":
            met = extra <= TARGET_SECONDS
        print(f"| {name} | {median:.3f} | {p90:.3f} | {extra:+.3f} | {target} |")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
