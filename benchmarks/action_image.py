"""What the Action image installs, and how long its command takes from start to exit.

No Docker engine needed, and none used: this installs what the Dockerfile installs (the
pinned requirements/action.txt, then the project with --no-deps from the files .dockerignore
lets in, then pip removed) into a fresh virtual environment of this Python, measures it, and
runs the image's exact command, `cortex-deploy-bridge action` with INPUT_* set as GitHub sets
them, against the stand-in Cortex (`python -m bridge.fakecortex`) on loopback. It also
estimates, from Debian's package metadata, what `apt-get install --no-install-recommends git`
adds. Run by hand, with the dev environment active (for bridge.fakecortex):

    python benchmarks/action_image.py --runs 30

and copy what it prints into benchmarks/RESULTS.md with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
# What .dockerignore lets into the build context (besides requirements/).
CONTEXT = ["pyproject.toml", "README.md", "LICENSE", "bridge"]


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def run(*argv: str | Path, **kwargs: object) -> None:
    """A setup command that must succeed, quietly."""
    subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def install_like_the_image(venv: Path) -> dict[str, int]:
    """Install what the Dockerfile installs; bytes of site-packages at each step."""
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    (site,) = (venv / "lib").glob("python3*/site-packages")
    sizes = {"fresh venv (what ensurepip installs)": tree_bytes(site)}
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    reqs = ROOT / "requirements" / "action.txt"
    run(python, "-m", "pip", "install", "--no-cache-dir", "--requirement", reqs, env=env)
    sizes["+ requirements/action.txt"] = tree_bytes(site)
    with tempfile.TemporaryDirectory() as context:
        for name in CONTEXT:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(
                    source, Path(context, name), ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(source, context)
        run(python, "-m", "pip", "install", "--no-deps", "--no-cache-dir", context, env=env)
    sizes["+ the project (--no-deps)"] = tree_bytes(site)
    run(python, "-m", "pip", "uninstall", "--yes", "pip", env=env)
    sizes["- pip (as the Dockerfile removes it)"] = tree_bytes(site)
    return sizes


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_fake_cortex(port: int) -> subprocess.Popen[bytes]:
    """``python -m bridge.fakecortex`` on ``port``, once it accepts connections."""
    server = subprocess.Popen(
        [sys.executable, "-m", "bridge.fakecortex", "--port", str(port), "--token", TOKEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the stand-in Cortex did not start")


def action_env(workdir: Path, cortex_url: str, entity: str, kind: str) -> dict[str, str]:
    """What GitHub gives a Docker action's container: GITHUB_* and INPUT_* (hyphens kept)."""
    event = workdir / "event.json"
    event.write_text(json.dumps({"head_commit": {"message": "Bench deploy"}}))
    return {
        "PATH": os.environ["PATH"],
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "acme/bench",
        "GITHUB_SHA": "a" * 40,
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_RUN_ID": "1",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_WORKSPACE": str(workdir),
        "GITHUB_OUTPUT": str(workdir / "output"),
        "GITHUB_STEP_SUMMARY": str(workdir / "summary"),
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex_url,
        "INPUT_ENTITY-TAG": entity,
        "INPUT_ENVIRONMENT": "production",
        "INPUT_TYPE": kind,
        "INPUT_FAIL-ON-ERROR": "true",
        "INPUT_DRY-RUN": "false",
    }


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds from process start to exit; the command must succeed."""
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - started


# What python:3.12-slim-bookworm adds to Debian's minimal base: the three its Dockerfile
# installs and the libraries its Python links to (docker-library/python, 3.12/slim-bookworm).
PYTHON_SLIM_EXTRAS = [
    "ca-certificates", "netbase", "tzdata", "libbz2-1.0", "libffi8", "libgdbm6", "liblzma5",
    "libncursesw6", "libreadline8", "libsqlite3-0", "libssl3", "libuuid1", "zlib1g",
]  # fmt: skip


def first_choices(name: str, prefer: set[str]) -> list[str]:
    """What apt installs for ``name``'s Depends and Pre-Depends: in each group of
    alternatives, one in ``prefer`` (apt keeps what is installed), else the first."""
    out = subprocess.run(
        ["apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", name],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    groups: list[list[str]] = []
    open_group = False
    for line in out.splitlines()[1:]:
        kind, _, target = line.strip().partition(": ")
        if not target:  # a provider of the virtual package above it: one more choice
            groups[-1].append(line.strip())
            continue
        if not open_group:
            groups.append([])
        if not target.startswith("<"):
            groups[-1].append(target)
        open_group = kind.startswith("|")
    chosen = []
    for choices in groups:
        if choices:
            chosen.append(next((c for c in choices if c in prefer), choices[0]))
    return chosen


def closure(names: list[str], prefer: set[str]) -> set[str]:
    """``names`` and what apt installs for them, recursively."""
    seen: set[str] = set()
    todo = [n.split(":")[0] for n in names]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [n.split(":")[0] for n in first_choices(name, prefer)]
    return seen


def git_estimate() -> str:
    """What `apt-get install --no-install-recommends git` adds to python:3.12-slim-bookworm."""
    if not shutil.which("apt-cache") or not shutil.which("dpkg-query"):
        return "apt-cache not found: no estimate"
    # Debian slim images are debootstrap's minbase: the Essential packages and apt.
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Essential}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    essential = [line.split()[0] for line in listed.splitlines() if line.endswith(" yes")]
    installed = {line.split()[0] for line in listed.splitlines()}
    base = closure([*essential, "apt", *PYTHON_SLIM_EXTRAS], installed)
    extra = sorted(closure(["git"], base) - base)
    total = 0
    for name in extra:
        show = subprocess.run(
            ["apt-cache", "show", "--no-all-versions", name],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        sizes = [
            line.split(": ", 1)[1]
            for line in show.splitlines()
            if line.startswith("Installed-Size: ")
        ]
        total += int(sizes[0]) if sizes else 0
    return f"{total / 1024:.1f} MB in {len(extra)} packages: " + ", ".join(extra)


def main() -> int:
    """Measure, print Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    print(
        f"{platform.node()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {time.strftime('%Y-%m-%d')} · "
        f"{args.runs} runs each\n"
    )
    with tempfile.TemporaryDirectory() as scratch:
        venv = Path(scratch, "venv")
        sizes = install_like_the_image(venv)
        print("| site-packages of a fresh venv | MB | change (MB) |\n| --- | --- | --- |")
        previous = None
        for step, size in sizes.items():
            change = "" if previous is None else f"{(size - previous) / 1e6:+.2f}"
            print(f"| {step} | {size / 1e6:.2f} | {change} |")
            previous = size
        print(f"\ngit: {git_estimate()}\n")
        port = free_port()
        server = start_fake_cortex(port)
        try:
            url = f"http://127.0.0.1:{port}"
            script = str(venv / "bin" / "cortex-deploy-bridge")
            cases = {
                "action, type DEPLOY (one POST)": ("bench-deploy", "DEPLOY"),
                "action, type auto (reads history, then POST)": ("bench-auto", "auto"),
            }
            samples: dict[str, list[float]] = {name: [] for name in cases}
            samples["python -c pass (interpreter start)"] = []
            for run_index in range(args.runs):
                for name, (entity, kind) in cases.items():
                    workdir = Path(scratch, f"ws-{run_index}-{kind}")
                    workdir.mkdir()
                    env = action_env(workdir, url, entity, kind)
                    samples[name].append(timed([script, "action"], env, workdir))
                python = str(venv / "bin" / "python")
                samples["python -c pass (interpreter start)"].append(
                    timed([python, "-c", "pass"], {"PATH": os.environ["PATH"]}, Path(scratch))
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
    print("| command, start to exit | median (s) | p90 (s) |\n| --- | --- | --- |")
    for name, values in samples.items():
        values.sort()
        p90 = values[max(int(len(values) * 0.9) - 1, 0)]
        print(f"| {name} | {statistics.median(values):.3f} | {p90:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
