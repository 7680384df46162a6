"""`sync` over an organisation from the stand-in GitHub: requests, CPU and memory per deploy.

Fills the stand-in GitHub with REPOS repositories of DEPLOYS deployments each, then runs
`cortex-deploy-bridge sync --github-org bench` as a child process three times: a small
organisation (a tenth of the repositories, for the marginal costs), the whole one (records
everything), and the whole one again (must write nothing). Each child's own CPU time comes
from ``os.wait4``, its peak memory from its own VmHWM; the stand-ins run in this process, not
the child's. Run by hand:

    python benchmarks/sync.py --repos 100 --deploys 100

and copy the table it prints into benchmarks/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bridge.fakecortex import FakeCortex
from bridge.fakescm import FakeGitHub

TOKEN, GH_TOKEN = "bench-token", "bench-gh-token"
# The child notes its own peak memory (VmHWM) at exit: wait4's ru_maxrss would also count the
# pages of this process, copied at the fork before the exec (the stand-ins' data).
CHILD = """
import atexit, os
def note_peak():
    with open("/proc/self/status") as status, open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM")).split()[1])
atexit.register(note_peak)
from bridge.cli import run
run()
"""


@dataclass
class Run:
    """One child sync: what it cost and what it did."""

    deploys: int
    github_requests: int
    cortex_writes: int
    cpu_seconds: float
    max_rss_mb: float
    wall_seconds: float


def fill(github: FakeGitHub, org: str, repos: int, deploys: int) -> None:
    """``repos`` repositories of ``deploys`` successful deployments each, in 2026."""
    for r in range(repos):
        repo = f"{org}/svc-{r:03d}"
        github.add_repo(repo, org=org)
        for d in range(deploys):
            day, minute = 1 + d % 28, d // 28
            month = 1 + (d * 11) // deploys
            at = f"2026-{month:02d}-{day:02d}T10:{minute:02d}"
            github.add_deployment(
                repo,
                r * 100_000 + d,
                sha=f"{r:08x}{d:032x}",
                environment="production",
                created_at=f"{at}:00Z",
                states=[("SUCCESS", f"{at}:30Z")],
            )


def run_sync(org: str, env: dict[str, str], github: FakeGitHub, cortex: FakeCortex) -> Run:
    """One child ``sync --github-org``; its CPU from wait4, its peak memory from itself."""
    argv = [sys.executable, "-c", CHILD, "sync"]
    argv += ["--github-org", org, "--since", "2026-01-01", "--until", "2026-12-31"]
    argv += ["--output", "json"]
    requests_before = len(github.requests)
    writes_before = len(cortex.requests_to("POST"))
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        compared = out.read().count(b'"verdict"')
    if child.returncode != 0:
        raise SystemExit(f"sync exited {child.returncode}")
    return Run(
        deploys=compared,
        github_requests=len(github.requests) - requests_before,
        cortex_writes=len(cortex.requests_to("POST")) - writes_before,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        max_rss_mb=int(Path(env["BENCH_PEAK_FILE"]).read_text()) / 1024,
        wall_seconds=time.perf_counter() - started,
    )


def main() -> int:
    """Measure, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--deploys", type=int, default=100, help="per repository")
    args = parser.parse_args()
    small_repos = max(args.repos // 10, 1)
    with (
        FakeGitHub(token=GH_TOKEN) as github,
        FakeCortex(token=TOKEN) as cortex,
        tempfile.TemporaryDirectory() as tmp,
    ):
        fill(github, "small", small_repos, args.deploys)
        fill(github, "bench", args.repos, args.deploys)
        config = Path(tmp) / "bridge.yaml"
        # The stand-in has no rate limit: measure the sync, not the budget's pacing.
        config.write_text("cortex: {requests_per_minute: 0}\n")
        env = {
            **os.environ,
            "CORTEX_API_TOKEN": TOKEN,
            "CORTEX_API_URL": cortex.url,
            "GITHUB_TOKEN": GH_TOKEN,
            "GITHUB_API_URL": github.api_url,
            "BRIDGE_DATABASE_URL": f"sqlite:///{Path(tmp) / 'bridge.db'}",
            "BRIDGE_CONFIG": str(config),
            "BENCH_PEAK_FILE": str(Path(tmp) / "peak"),
        }
        small = run_sync("small", env, github, cortex)
        small_again = run_sync("small", env, github, cortex)
        first = run_sync("bench", env, github, cortex)
        second = run_sync("bench", env, github, cortex)
    more = max(first.deploys - small.deploys, 1)
    record_ms = 1000 * (first.cpu_seconds - small.cpu_seconds) / more
    compare_ms = 1000 * (second.cpu_seconds - small_again.cpu_seconds) / more
    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    print()
    print(
        "| run | deploys | GitHub requests | requests/deploy | Cortex writes | CPU s | "
        "CPU ms/deploy | peak RSS MB | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, run in (
        (f"{small_repos} repos, records all", small),
        (f"{small_repos} repos, again", small_again),
        (f"{args.repos} repos, records all", first),
        (f"{args.repos} repos, again", second),
    ):
        print(
            f"| {name} | {run.deploys:,} | {run.github_requests} | "
            f"{run.github_requests / max(run.deploys, 1):.3f} | {run.cortex_writes:,} | "
            f"{run.cpu_seconds:.2f} | {1000 * run.cpu_seconds / max(run.deploys, 1):.3f} | "
            f"{run.max_rss_mb:.0f} | {run.wall_seconds:.1f} |"
        )
    print()
    print(
        f"marginal CPU per deploy (large minus small org): compared {compare_ms:.3f} ms, "
        f"compared and recorded {record_ms:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
