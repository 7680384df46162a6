"""Processes for the benchmarks: servers in their own process group, and what /proc says.

A server is started in its own session (so one signal stops the master and its workers),
its workers found as the master's children; CPU time and memory come from /proc, and
``wait_for_quiet`` holds a measurement back while other processes keep the machine busy.
"""

from __future__ import annotations

import http.client
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One gunicorn master and its workers, in their own process group."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], log: Path, *, workers: int
    ) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.command = [c.replace("{port}", str(self.port)) for c in command]
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str) -> Server:
        """Start, and wait (30 s at most) until it answers and every worker is up."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if _get(self.port, ready_path) == 200 and len(self.worker_pids()) == self.workers:
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{self.name} did not start: {self.log.read_text()[-2000:]}")

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (the master's children)."""
        assert self.proc is not None
        pid = self.proc.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
            return sorted(int(p) for p in text.split())
        except OSError:
            return sorted(p for p in _all_pids() if _ppid(p) == pid)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the workers so far."""
        return sum(_cpu_seconds(p) for p in self.worker_pids())

    def rss_mib(self) -> list[float]:
        """VmRSS of each worker, MiB."""
        return [_status_kib(p, "VmRSS") / 1024 for p in self.worker_pids()]

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the fields after "pid (comm)"


def _ppid(pid: int) -> int:
    try:
        return int(_stat_fields(pid)[1])
    except OSError:
        return -1


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (stat fields 14, 15)


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process so far; None once it is gone."""
    try:
        return _cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return None


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLK_TCK  # all but idle and iowait


def own_cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def wait_for_quiet(*, max_seconds: float, below_cores: float = 0.3) -> float:
    """Wait (bounded) until the machine is nearly idle; the last busy reading, in cores."""
    deadline = time.monotonic() + max_seconds
    while True:
        before = busy_seconds()
        time.sleep(0.5)
        busy = (busy_seconds() - before) / 0.5
        if busy < below_cores or time.monotonic() >= deadline:
            return busy
        print(f"  waiting: the machine is busy ({busy:.1f} cores)", file=sys.stderr, flush=True)


def machine() -> str:
    """Host, CPU model, cores, Python, date."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (
        f"{platform.node()} · {model} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {time.strftime('%Y-%m-%d')}"
    )


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace (or add) the section under ``heading`` in a Markdown file, keeping the rest."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    after = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + section + ("\n" + after if after else ""))
