"""docs/try-it.md works as written: the stand-ins' commands, their defaults, a signed webhook
sent with `python -m bridge.fakescm post` or with the doc's `curl`, and `sync` against the
stand-in GitHub and GitLab APIs.

The doc uses the default ports; here each server takes a free one (tests run side by side).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from bridge.app import Runtime, create_app
from bridge.config import parse_config
from bridge.fakecortex import FakeCortex
from bridge.fakescm import FakeGitHub, FakeGitLab
from bridge.fakescm import cli as fakescm
from bridge.store import Store
from tests.conftest import SAMPLES, TOKEN, bridge_logs_to

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "try-it.md"
SCRIPT = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
GH_SECRET = "try-it-github-secret"
GL_TOKEN = "try-it-gitlab-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def help_of(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *argv, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},  # no line broken inside a value
    )
    return " ".join(done.stdout.split())


# --- the stand-ins' defaults ---------------------------------------------------------------


def test_the_stand_ins_defaults_are_in_their_help_and_in_the_doc() -> None:
    doc = DOC.read_text()
    cortex = help_of("bridge.fakecortex")
    for default in ("127.0.0.1", "8787", "test-token", "/_stand-in/deploys", "/_stand-in/stats"):
        assert default in cortex, default
        assert default in doc, default
    with FakeCortex() as stand_in:  # the class's default is the command's
        assert stand_in.token == "test-token"
    scm = help_of("bridge.fakescm", "serve")
    for default in ("8788", "8789", "ghs-test-token", "glpat-test-token"):
        assert default in scm, default
        assert default in doc, default
    assert (fakescm.GITHUB_PORT, fakescm.GITLAB_PORT) == (8788, 8789)
    with FakeGitHub() as github, FakeGitLab() as gitlab:
        assert (github.token, gitlab.token) == (fakescm.GITHUB_TOKEN, fakescm.GITLAB_TOKEN)
    post = help_of("bridge.fakescm", "post")
    for default in ("http://127.0.0.1:8080", "GITHUB_WEBHOOK_SECRET", "GITLAB_WEBHOOK_TOKEN"):
        assert default in post, default
    assert "serve" in help_of("bridge.fakescm") and "post" in help_of("bridge.fakescm")


def test_the_stand_ins_say_what_they_hold_on_both_apis() -> None:
    """The banner counts the GitLab deployments too, as the doc's table does: sync then
    lists six deploys, not the four the GitHub count alone said."""
    with FakeGitHub() as github, FakeGitLab() as gitlab:
        fakescm.fill(github, gitlab, now=datetime.now(timezone.utc))
        [held] = [line for line in fakescm._running_lines(github, gitlab) if "with:" in line]
    assert held == "with: acme/payments-api (4 GitHub deployments, 2 GitLab ones)"
    assert "four GitHub deployments of the last week" in DOC.read_text()
    assert "and two GitLab ones" in DOC.read_text()


def test_the_docs_link_the_try_it_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/try-it.md" in readme


# --- post: a signed webhook, as serve expects it ------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Runtime]]:
    """The receiver under the default config (no config file), on a free port."""
    store = Store.from_url(f"sqlite:///{tmp_path / 'bridge.db'}")
    runtime = Runtime(
        config=parse_config({}), store=store, github_secret=GH_SECRET, gitlab_token=GL_TOKEN
    )
    server = make_server("127.0.0.1", 0, create_app(runtime), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", runtime
    finally:
        server.shutdown()
        store.close()


SECRETS = {"GITHUB_WEBHOOK_SECRET": GH_SECRET, "GITLAB_WEBHOOK_TOKEN": GL_TOKEN}


def post(
    url: str, capsys: pytest.CaptureFixture[str], *argv: str, **env: str
) -> tuple[int, str, str]:
    code = fakescm.main(["post", *argv, "--url", url], {**SECRETS, **env})
    out, err = capsys.readouterr()
    return code, out, err


def test_post_sends_samples_the_receiver_stores(
    receiver: tuple[str, Runtime], capsys: pytest.CaptureFixture[str]
) -> None:
    url, runtime = receiver
    for source in ("github", "gitlab"):
        code, out, err = post(url, capsys, source)
        assert code == 0, err
        assert out.startswith('202 {"id":') and '"status":"queued"' in out
    # Two runs: two deploys (new ids each time), each routed to the repository's entity.
    code, _, _ = post(url, capsys, "github", "--repository", "acme/ledger", "--environment", "qa")
    assert code == 0
    rows, _ = runtime.store.list_deliveries(limit=10)
    assert sorted(d.payload["entities"][0] for d in rows) == [
        "ledger",
        "payments-api",
        "payments-api",
    ]
    assert {d.payload["event"]["environment"] for d in rows} == {"production", "qa"}
    assert len({d.payload["event"]["ref"]["id"] for d in rows}) == 3


def test_the_repositorys_sample_is_recorded_under_the_default_config(
    receiver: tuple[str, Runtime], capsys: pytest.CaptureFixture[str]
) -> None:
    url, runtime = receiver
    sample = SAMPLES / "github" / "deployment_status.success.json"
    code, out, err = post(url, capsys, "github", str(sample))
    assert code == 0, out
    assert out.startswith("202 ")
    assert "X-GitHub-Event: deployment_status" in err  # told from the payload
    [delivery] = runtime.store.list_deliveries(limit=10)[0]
    assert delivery.payload["entities"] == ["payments-api"]


def test_post_sends_a_files_exact_bytes(
    receiver: tuple[str, Runtime], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url, _ = receiver
    doc = json.loads((SAMPLES / "github" / "deployment_status.success.json").read_text())
    # Tabs, CRLF and a trailing newline: re-serializing would change the signed bytes.
    odd = tmp_path / "odd.json"
    odd.write_bytes(json.dumps(doc, indent="\t").replace("\n", "\r\n").encode() + b"\r\n\r\n")
    code, out, _ = post(url, capsys, "github", str(odd))
    assert (code, out[:3]) == (0, "202")
    code, out, _ = post(url, capsys, "gitlab", str(SAMPLES / "gitlab" / "deployment.success.json"))
    assert (code, out[:3]) == (0, "202")


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            (
                ["github", str(SAMPLES / "github/deployment_status.in_progress.json")],
                {},
                0,
                '200 {"status":"ignored"',
            ),
            id="ignored-is-an-answer",
        ),
        pytest.param(
            (["github"], {"GITHUB_WEBHOOK_SECRET": "wrong"}, 1, "401 "), id="wrong-secret"
        ),
        pytest.param((["gitlab"], {"GITLAB_WEBHOOK_TOKEN": "wrong"}, 1, "401 "), id="wrong-token"),
        pytest.param(
            (["github"], {"GITHUB_WEBHOOK_SECRET": ""}, 2, "GITHUB_WEBHOOK_SECRET is not set"),
            id="no-secret",
        ),
        pytest.param(
            (["github", str(SAMPLES / "gitlab/deployment.success.json")], {}, 2, "give --event"),
            id="event-not-told",
        ),
        pytest.param((["github", "/nonexistent.json"], {}, 2, "nonexistent"), id="no-file"),
    ],
)
def test_post_answers(
    receiver: tuple[str, Runtime],
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], dict[str, str], int, str],
) -> None:
    argv, env, code, said = case
    got, out, err = post(receiver[0], capsys, *argv, **env)
    assert got == code, out + err
    assert said in out + err
    assert "Traceback" not in err


def test_post_reads_the_secret_from_its_file_as_serve_does(
    receiver: tuple[str, Runtime], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = tmp_path / "github-secret.txt"
    secret.write_text(GH_SECRET + "\n")
    code = fakescm.main(
        ["post", "github", "--url", receiver[0]], {"GITHUB_WEBHOOK_SECRET_FILE": str(secret)}
    )
    assert code == 0, capsys.readouterr()


def test_the_docs_wrong_secret_try_is_refused_in_the_terminal_step_4_set_up(
    receiver: tuple[str, Runtime], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The doc's `GITHUB_WEBHOOK_SECRET=wrong ... post github`, run where step 4 exported the
    secrets' *_FILE variables: a 401 from the receiver, not post refusing the two set."""
    tried = "python -m bridge.fakescm post github`"
    [line] = [line for line in DOC.read_text().splitlines() if tried in line]
    command = line.split("Try `", 1)[1].split("`", 1)[0].split()
    assigned = {}
    while "=" in command[0]:
        name, value = command.pop(0).split("=", 1)
        assigned[name] = value
    assert command[:3] == ["python", "-m", "bridge.fakescm"], command
    files = {}
    for name, value in SECRETS.items():  # step 4's exports
        (tmp_path / name).write_text(value + "\n")
        files[f"{name}_FILE"] = str(tmp_path / name)
    code = fakescm.main([*command[3:], "--url", receiver[0]], {**files, **assigned})
    out, err = capsys.readouterr()
    assert (code, out[:4]) == (1, "401 "), out + err


def test_the_docs_log_line_of_an_ignored_webhook_is_as_serve_writes_it(
    receiver: tuple[str, Runtime], capsys: pytest.CaptureFixture[str]
) -> None:
    """The line the doc shows is one `serve` writes (its fields, their order, its spacing),
    so a `grep` copied from it finds the real ones; only the time and the id differ."""
    [shown] = [line for line in DOC.read_text().splitlines() if '"webhook ignored"' in line]
    stream = io.StringIO()
    with bridge_logs_to(stream, [GH_SECRET, GL_TOKEN]):
        code, out, _ = post(
            receiver[0],
            capsys,
            "github",
            str(SAMPLES / "github/deployment_status.in_progress.json"),
        )
    assert (code, out[:4]) == (0, "200 "), out
    [written] = [line for line in stream.getvalue().splitlines() if "webhook ignored" in line]

    def same(line: str) -> str:
        return re.sub(r'"(time|delivery_id)":"[^"]*"', r'"\1":"..."', line)

    assert same(shown) == same(written)


@pytest.mark.system  # a process of its own
def test_the_docs_curl_recipes_are_accepted(receiver: tuple[str, Runtime], tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("openssl") and shutil.which("bash")):
        pytest.skip("curl, openssl and bash are needed to run the doc's recipe")
    url, runtime = receiver
    (tmp_path / "github-secret.txt").write_text(GH_SECRET + "\n")
    (tmp_path / "gitlab-token.txt").write_text(GL_TOKEN + "\n")
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.DOTALL)
    recipes = [block for block in blocks if "/webhooks/" in block]
    assert len(recipes) == 2
    for recipe in recipes:
        script = recipe.replace("http://127.0.0.1:8080", url).replace(
            "tests/samples/", f"{SAMPLES}/"
        )
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "queued", done.stdout
    assert sum(runtime.store.counts().values()) == 2


# --- the commands as a user runs them ------------------------------------------------------------


def wait_listening(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out


def run_sync(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "sync", "--github", "acme/payments-api", "--gitlab", "acme/payments-api", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verdicts(table: str) -> list[str]:
    return sorted(line.split()[0] for line in table.splitlines()[1:] if line and " " in line)


@pytest.mark.system  # a process of its own
def test_sync_against_the_stand_in_apis(tmp_path: Path) -> None:
    github, gitlab = free_port(), free_port()
    scm = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge.fakescm",
            "--github-port",
            str(github),
            "--gitlab-port",
            str(gitlab),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(gitlab, scm)
        with FakeCortex(token=TOKEN) as cortex:
            env = {
                "PATH": os.environ["PATH"],
                "HOME": str(tmp_path),
                "CORTEX_API_URL": cortex.url,
                "CORTEX_API_TOKEN": TOKEN,
                "GITHUB_API_URL": f"http://127.0.0.1:{github}",
                "GITHUB_TOKEN": fakescm.GITHUB_TOKEN,
                "GITLAB_URL": f"http://127.0.0.1:{gitlab}",
                "GITLAB_API_TOKEN": fakescm.GITLAB_TOKEN,
                "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
            }
            audit = run_sync(env, "--dry-run")
            assert audit.returncode == 3, audit.stderr
            assert verdicts(audit.stdout.split("summary:")[0]) == ["missing"] * 5 + ["skipped"]
            recorded = run_sync(env)
            assert recorded.returncode == 0, recorded.stderr
            assert verdicts(recorded.stdout.split("summary:")[0]) == ["recorded"] * 5 + ["skipped"]
            assert len(cortex.all_deploys()) == 5
            again = run_sync(env, "--dry-run")
            assert again.returncode == 0, again.stdout
            assert "0 missing" in again.stdout and "0 recorded" in again.stdout
    finally:
        out = stop(scm)
    assert f"stand-in GitHub listening on http://127.0.0.1:{github}" in out
    assert "refused" not in out  # sync asked only what the real APIs answer


@pytest.mark.system  # a process of its own
def test_the_stand_in_cortex_command_serves_send(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.fakecortex", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "CORTEX_API_URL": url,
            "CORTEX_API_TOKEN": "test-token",
        }
        argv = ["send", "--entity-tag", "payments-api", "--environment", "production"]
        argv += ["--sha", "a" * 40, "--deploy-id", "try-1"]
        uuids = [
            subprocess.run(
                [SCRIPT, *argv], env=env, capture_output=True, text=True, timeout=60, check=True
            ).stdout.strip()
            for _ in range(2)
        ]
        assert uuids[0] and uuids[0] == uuids[1]  # run again: the same record
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/_stand-in/deploys", headers={"Authorization": "Bearer test-token"})
        held: Any = json.loads(conn.getresponse().read())
        conn.close()
        assert [d["sha"] for d in held["deploys"]] == ["a" * 40]
    finally:
        out = stop(proc)
    assert f"stand-in cortex listening on http://127.0.0.1:{port}" in out


@pytest.mark.parametrize(
    ("sample", "event"),
    [
        ("deployment.created", "deployment"),  # carries its Actions run: once told workflow_run
        ("deployment_status.success.actions", "deployment_status"),
        ("workflow_run.completed.success", "workflow_run"),
        ("ping", "ping"),
    ],
)
def test_post_tells_each_github_sample_by_its_payload(sample: str, event: str) -> None:
    from bridge.fakescm.hooks import _github_event

    doc = json.loads((SAMPLES / "github" / f"{sample}.json").read_text())
    assert _github_event(doc) == event


def test_the_stand_in_cortex_on_a_taken_port_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bridge.fakecortex.cli import main as fakecortex_main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert fakecortex_main(["--host", "127.0.0.1", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err == f"fakecortex: cannot listen on 127.0.0.1:{port}: address already in use\n"


@pytest.mark.system  # a process of its own
def test_the_stand_in_cortex_can_be_slow(tmp_path: Path) -> None:
    # Two faces recording one deploy at once, by hand, need a Cortex that answers slowly;
    # only the Python API (FakeCortex(latency=...)) had it.
    import time

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.fakecortex", "--port", str(port), "--latency", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(port, proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.monotonic()
        conn.request(
            "GET",
            "/api/v1/catalog/svc/deploys?page=0&pageSize=50",
            headers={"Authorization": "Bearer test-token"},
        )
        assert conn.getresponse().status == 200
        assert time.monotonic() - started >= 0.3  # at least the latency asked for
        conn.close()
    finally:
        stop(proc)
