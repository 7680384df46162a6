"""`cortex-deploy-bridge send` in GitLab CI and any CI, and the console script itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.fakecortex import FakeCortex
from tests.conftest import TOKEN

JOB_SHA = "279484c09fbe69ededfced8c1bb6e6d24616b468"


@pytest.fixture
def gitlab(cortex: FakeCortex, tmp_path: Path) -> dict[str, str]:
    """Predefined variables of a GitLab deploy job (docs: predefined CI/CD variables)."""
    return {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PROJECT_PATH": "acme/backend/payments-api",
        "CI_PROJECT_DIR": str(tmp_path),
        "CI_COMMIT_SHA": JOB_SHA,
        "CI_COMMIT_TITLE": "Add retry to settlement client",
        "CI_COMMIT_REF_NAME": "main",
        "CI_JOB_ID": "9912345",
        "CI_JOB_NAME": "deploy-production",
        "CI_JOB_URL": "https://gitlab.example.com/acme/backend/payments-api/-/jobs/9912345",
        "CI_JOB_STARTED_AT": "2026-11-20T09:14:30Z",
        "CI_PIPELINE_ID": "1187345",
        "CI_ENVIRONMENT_NAME": "production",
        "CI_ENVIRONMENT_URL": "https://payments.example.com",
        "GITLAB_USER_NAME": "Jane Doe",
        "GITLAB_USER_EMAIL": "jane.doe@example.com",
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
    }


def test_gitlab_job_records_deploy_and_prints_uuid(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["send", "--entity-tag", "payments-api", "--timestamp", "2026-11-20T09:16:00Z"], gitlab
    )
    out = capsys.readouterr().out
    assert code == 0
    (deploy,) = cortex.all_deploys()
    assert out.split() == [deploy["uuid"]]
    assert deploy["url"] == gitlab["CI_JOB_URL"]
    assert deploy["deployer"] == {"name": "Jane Doe", "email": "jane.doe@example.com"}
    assert deploy["sha"] == JOB_SHA
    assert deploy["environment"] == "production"
    assert deploy["title"] == "Add retry to settlement client"
    custom = deploy["customData"]
    assert custom["durationSeconds"] == 90
    assert custom["jobId"] == "9912345"
    # The Deployment Hook's deployable_id is this job's id: both paths name one deploy.
    assert custom["bridge"]["idempotencyKey"] == (
        "gitlab:acme/backend/payments-api:job:9912345:production:payments-api"
    )


def test_flags_override_context(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "send",
            "--entity-tag",
            "a,b",
            "--environment",
            "prod-eu",
            "--type",
            "restart",
            "--title",
            "Restart pods",
            "--deployer-name",
            "ops",
            "--custom-data",
            '{"ticket": "OPS-1"}',
        ],
        gitlab,
    )
    assert code == 0
    capsys.readouterr()
    stored = cortex.all_deploys()
    assert {d["entity"] for d in stored} == {"a", "b"}
    assert {d["type"] for d in stored} == {"RESTART"}
    assert {d["environment"] for d in stored} == {"prod-eu"}
    assert stored[0]["customData"]["ticket"] == "OPS-1"


def test_token_from_file(
    gitlab: dict[str, str], cortex: FakeCortex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    del gitlab["CORTEX_API_TOKEN"]
    gitlab["CORTEX_API_TOKEN_FILE"] = str(secret)
    assert main(["send", "--entity-tag", "payments-api"], gitlab) == 0
    assert len(cortex.all_deploys()) == 1


def test_outside_ci_needs_an_entity(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["send", "--dry-run"], {})
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --entity-tag: none given")


def test_dry_run_prints_payload_without_token(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "send",
            "--dry-run",
            "--entity-tag",
            "svc",
            "--sha",
            "a" * 40,
            "--environment",
            "production",
            "--timestamp",
            "2026-11-20T10:00:00+01:00",
        ],
        {},
    )
    out = capsys.readouterr().out
    assert code == 0
    payload = json.loads(out)
    assert payload["timestamp"] == "2026-11-20T09:00:00Z"
    assert payload["type"] == "DEPLOY"
    assert payload["title"] == f"Deploy {'a' * 12} to production"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["send", "--bogus"],
            # Named as the command's, as its other flags' errors are: its --help has the flags.
            "cortex-deploy-bridge send: error: unrecognized arguments: --bogus (see --help)",
            id="unknown-flag",
        ),
        pytest.param(
            ["send", "--timeout", "soon"], "--timeout: must be a number of seconds", id="float"
        ),
        pytest.param(["nope"], "invalid choice: 'nope'", id="unknown-command"),
    ],
)
def test_bad_usage_is_one_line_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv, {})
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


def test_send_failure_exits_1(gitlab: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    with FakeCortex(token=TOKEN, entities=set()) as fake:
        gitlab["CORTEX_API_URL"] = fake.url
        code = main(["send", "--entity-tag", "no-such-svc"], gitlab)
    err = capsys.readouterr().err
    assert code == 1
    assert "entity 'no-such-svc' not found in cortex (404)" in err
    assert TOKEN not in err


def test_a_token_cortex_refuses_is_named(
    gitlab: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A 401 names CORTEX_API_TOKEN, as `serve` and `sync` do: the one thing to fix."""
    with FakeCortex(token="another-token-0123456789") as fake:
        gitlab["CORTEX_API_URL"] = fake.url
        code = main(["send", "--entity-tag", "svc"], gitlab)
    [line] = capsys.readouterr().err.splitlines()
    assert code == 1
    assert line.startswith("error: svc: CORTEX_API_TOKEN: cortex refused the API token (401)")
    assert TOKEN not in line


def _console(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("cortex-deploy-bridge")
    return subprocess.run(
        [str(script), *args],
        env={**env, "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_console_script_runs_the_image_entrypoint(cortex: FakeCortex, tmp_path: Path) -> None:
    """The image's ENTRYPOINT is `cortex-deploy-bridge action`: run exactly that."""
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": "b" * 40,
        "GITHUB_RUN_ID": "77",
        "GITHUB_OUTPUT": str(tmp_path / "o"),
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex.url,
        "INPUT_ENVIRONMENT": "production",
    }
    done = _console(env, "action")
    assert done.returncode == 0, done.stdout + done.stderr
    (deploy,) = cortex.all_deploys()
    assert deploy["uuid"] in (tmp_path / "o").read_text()


def test_send_path_loads_no_server_dependencies() -> None:
    code = (
        "import sys; from bridge.cli import main; import bridge.action.run, bridge.action.inputs, "
        "bridge.ci.github, bridge.ci.gitlab; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('flask', 'sqlalchemy', 'gunicorn', 'psycopg', 'prometheus_client', 'yaml')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_help_explains_every_flag() -> None:
    done = _console({}, "send", "--help")
    assert done.returncode == 0
    for flag in (
        "--entity-tag",
        "--environment",
        "--type",
        "--title",
        "--sha",
        "--url",
        "--deployer-name",
        "--deployer-email",
        "--timestamp",
        "--custom-data",
        "--dry-run",
        "--fail-on-error",
    ):
        assert flag in done.stdout


def _deploy_job_variables(gitlab: dict[str, str]) -> dict[str, str]:
    """A recording job that `needs:` the deploy job and got its CORTEX_DEPLOY_* dotenv."""
    return {
        **gitlab,
        "CI_PROJECT_URL": "https://gitlab.acme.example/acme/backend/payments-api",
        "CI_PROJECT_PATH": "acme/backend/payments-api",
        "CI_COMMIT_SHA": "ac3022a71d605aefb55d6726fb45d30663ed789c",
        "CI_JOB_ID": "48213390",  # the recording job itself
        "CI_JOB_URL": "https://gitlab.acme.example/acme/backend/payments-api/-/jobs/48213390",
        "CI_JOB_STARTED_AT": "2026-06-18T12:06:00Z",
        "CI_ENVIRONMENT_NAME": "",
        "CORTEX_DEPLOY_JOB_ID": "48213377",
        "CORTEX_DEPLOY_JOB_STARTED_AT": "2026-06-18T12:03:01Z",
        "CORTEX_DEPLOY_JOB_FINISHED_AT": "2026-06-18T12:05:31Z",
        "CORTEX_DEPLOY_ENVIRONMENT": "production",
        "CORTEX_DEPLOY_ENVIRONMENT_URL": "https://payments.acme.example",
        # The recording job's GITLAB_USER_* name who started the pipeline; these, who
        # played the manual deploy job.
        "GITLAB_USER_NAME": "Pipeline Starter",
        "CORTEX_DEPLOY_USER_NAME": "Deploy Player",
        "CORTEX_DEPLOY_USER_EMAIL": "player@acme.example",
    }


def test_recording_job_records_the_deploy_job_as_its_deployment_hook_does(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.mapping import idempotency_key
    from bridge.sources.gitlab import parse_deployment
    from tests.conftest import load_sample

    env = _deploy_job_variables(gitlab)
    assert main(["send", "--entity-tag", "payments-api"], env) == 0
    capsys.readouterr()
    (deploy,) = cortex.all_deploys()
    assert deploy["url"] == "https://gitlab.acme.example/acme/backend/payments-api/-/jobs/48213377"
    assert deploy["environment"] == "production"
    assert deploy["timestamp"] == "2026-06-18T12:05:31Z"
    custom = deploy["customData"]
    assert custom["startedAt"] == "2026-06-18T12:03:01Z"
    assert custom["durationSeconds"] == 150
    assert custom["jobId"] == "48213377"
    assert custom["environmentUrl"] == "https://payments.acme.example"
    assert deploy["deployer"] == {"name": "Deploy Player", "email": "player@acme.example"}
    hook = parse_deployment(load_sample("gitlab/deployment.success.json"))
    assert custom["bridge"]["idempotencyKey"] == idempotency_key(hook, "payments-api")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CORTEX_DEPLOY_JOB_ID", "48213377; rm -rf"),
        ("CORTEX_DEPLOY_JOB_FINISHED_AT", "later"),
        ("CI_JOB_URL", "https://bot:s3cret@gitlab.example.com/-/jobs/1"),
        ("CI_JOB_URL", "javascript:alert(1)"),
    ],
)
def test_bad_deploy_job_variable_is_one_line_naming_it(
    gitlab: dict[str, str],
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    env = {**_deploy_job_variables(gitlab), variable: value}
    assert main(["send", "--entity-tag", "payments-api"], env) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: {variable}: "), err
    assert cortex.received == []


def _outside_ci(cortex: FakeCortex) -> dict[str, str]:
    return {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}


def test_deploy_id_makes_a_rerun_find_the_record(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", "--entity-tag", "svc", "--environment", "prod", "--deploy-id", "rel-2026.11.3"]
    assert main([*argv, "--sha", "a" * 40], _outside_ci(cortex)) == 0
    first = capsys.readouterr()
    assert "warning" not in first.err
    assert main([*argv, "--sha", "a" * 40], _outside_ci(cortex)) == 0
    (deploy,) = cortex.all_deploys()
    assert capsys.readouterr().out.split() == [deploy["uuid"]]
    assert deploy["customData"]["bridge"]["idempotencyKey"] == "cli::id:rel-2026.11.3:prod:svc"


def test_a_late_deploy_says_which_later_records_it_typed_again(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # A deploy sent late, dated before a return to its predecessor's sha: that later record
    # becomes a ROLLBACK, and send says so (a type changing in Cortex is never silent).
    argv = ["send", "--entity-tag", "svc", "--environment", "prod"]
    for n, sha, day in ((0, "a", "01"), (2, "a", "03"), (1, "b", "02")):
        when = f"2026-12-{day}T10:00:00Z"
        shown = [*argv, "--deploy-id", f"rel-{n}", "--sha", sha * 40, "--timestamp", when]
        assert main(shown, _outside_ci(cortex)) == 0
    (later,) = [d for d in cortex.all_deploys() if d["type"] == "ROLLBACK"]
    assert later["timestamp"] == "2026-12-03T10:00:00Z"
    said = capsys.readouterr().err
    assert f"typed again, as this deploy came before them: {later['uuid']}" in said
    assert said.count("typed again") == 1


@pytest.mark.parametrize("deploy_type", ["DEPLOY", "ROLLBACK", "auto"])
def test_a_rerun_with_any_type_finds_the_record(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str], deploy_type: str
) -> None:
    argv = ["send", "--entity-tag", "svc", "--environment", "prod", "--deploy-id", "rel-7"]
    argv += ["--sha", "c" * 40, "--type", deploy_type]
    assert main(argv, _outside_ci(cortex)) == 0
    assert main(argv, _outside_ci(cortex)) == 0
    (deploy,) = cortex.all_deploys()
    assert capsys.readouterr().out.split() == [deploy["uuid"], deploy["uuid"]]


@pytest.mark.parametrize("deploy_type", ["DEPLOY", "auto"])
def test_a_rerun_days_later_finds_the_record(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str], deploy_type: str
) -> None:
    # Run again days later, dated anew: its record is still found by its key.
    argv = ["send", "--entity-tag", "svc", "--environment", "prod", "--deploy-id", "rel-8"]
    argv += ["--sha", "d" * 40, "--type", deploy_type]
    for when in ("2026-12-01T10:00:00Z", "2026-12-03T22:00:00Z"):
        assert main([*argv, "--timestamp", when], _outside_ci(cortex)) == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["timestamp"] == "2026-12-01T10:00:00Z"
    assert capsys.readouterr().out.split() == [deploy["uuid"], deploy["uuid"]]


def test_without_any_id_send_warns_once_and_does_not_key_by_time(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["send", "--entity-tag", "svc", "--environment", "prod", "--sha", "b" * 40]
    argv += ["--timestamp", "2026-11-20T10:00:00Z"]
    assert main(argv, _outside_ci(cortex)) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [
        "warning: no build id here, so running this again records the deploy again: set --deploy-id"
    ]
    assert main(argv, _outside_ci(cortex)) == 0
    keys = [d["customData"]["bridge"]["idempotencyKey"] for d in cortex.all_deploys()]
    assert len(keys) == 2 and keys[0] != keys[1]  # what the warning said
    assert not any("2026" in key for key in keys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--deploy-id", "a\nb"], "error: --deploy-id: 'a\\nb' contains a control character"),
        (
            ["--environment", "prod\u2028x"],
            "error: --environment: 'prod\\u2028x' contains a control",
        ),
        (["--deploy-id", "a\x85b"], "error: --deploy-id: 'a\\x85b' contains a control character"),
        # A byte that is no UTF-8 (Python hands it over as a lone surrogate), not "control".
        (
            ["--environment", "prod\udce9"],
            "error: --environment: 'prod\\udce9' contains a byte or escape that is no text",
        ),
        (["--deploy-id", "x" * 256], "error: --deploy-id: longer than 255 characters"),
        (["--environment", "prod\r\n::error::x"], "error: --environment: 'prod\\r\\n::error::x'"),
        (["--timestamp", "2026-11-20T10:00:00"], "error: --timestamp: "),
        (["--custom-data", "[1]"], "error: --custom-data: expected a mapping"),
        (["--type", "redeploy"], "error: --type: 'redeploy' is not one of"),
        (["--sha=--output=/tmp/x"], "error: --sha: '--output=/tmp/x' is not a commit sha"),
        (["--url", "ftp://x"], "error: --url: 'ftp://x' is not an http(s) URL"),
        (["--cortex-api-url", "x"], "error: --cortex-api-url: must be an http(s) url, got 'x'"),
        pytest.param(
            ["--cortex-api-url", "https://api.getcortexapp.com:hunter2@evil.example"],
            "error: --cortex-api-url: must not hold a user or password ('...@'): its host "
            "would be 'evil.example'",
            id="user-info-would-send-the-token-elsewhere",
        ),
        pytest.param(
            ["--cortex-api-url", "https://api.getcortexapp.com:99999"],
            "error: --cortex-api-url: port must be a number from 1 to 65535, got '99999'",
            id="port-out-of-range",
        ),
    ],
)
def test_send_errors_name_the_flag_never_an_input(
    argv: list[str], message: str, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["send", "--entity-tag", "svc", *argv], _outside_ci(cortex))
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith(message), err
    assert "input" not in err
    assert "hunter2" not in err
    assert cortex.received == []


def test_missing_token_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "--entity-tag", "svc"], {}) == 2
    err = capsys.readouterr().err
    assert err == "error: CORTEX_API_TOKEN: no Cortex API token given\n"


@pytest.mark.parametrize(
    "url",
    [
        "api.example",
        # Each was an internal error (send's check was looser than the config's).
        "http://[::1",
        "http://exa mple.com",
        "http://:80",
        "http://[zz]:1",
        "http://a..b",
        "http://" + "a" * 300 + ".example",
        # Accepted, and the fragment swallowed the API's path.
        "http://127.0.0.1:1?x#y",
    ],
)
def test_bad_cortex_api_url_variable_is_named(capsys: pytest.CaptureFixture[str], url: str) -> None:
    from bridge.config import load_config
    from bridge.errors import ConfigError

    env = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": url}
    assert main(["send", "--entity-tag", "svc", "--type", "DEPLOY"], env) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CORTEX_API_URL: ") and err.count("\n") == 1, err
    with pytest.raises(ConfigError, match="CORTEX_API_URL"):  # the config's one rule, the same
        load_config(None, env)


def _git_repo(path: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return done.stdout.strip()

    git("init", "-q")
    (path / "app.txt").write_text("v1\n")
    git("add", "app.txt")
    git("commit", "-q", "-m", "Ship the ledger v2\n\nbody")
    return git("rev-parse", "HEAD")


def test_git_expands_a_short_sha_and_reads_the_title(
    gitlab: dict[str, str], cortex: FakeCortex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = _git_repo(tmp_path)
    del gitlab["CI_COMMIT_TITLE"]
    assert main(["send", "--entity-tag", "svc", "--sha", head[:8]], gitlab) == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == head
    assert deploy["title"] == "Ship the ledger v2"


def test_a_short_sha_git_cannot_expand_is_refused_naming_the_flag(
    gitlab: dict[str, str], cortex: FakeCortex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _git_repo(tmp_path)  # the job's checkout, without that commit
    assert main(["send", "--entity-tag", "svc", "--sha", "c0ffee1"], gitlab) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --sha: 'c0ffee1' is abbreviated, and no git repository at ")
    assert "git rev-parse c0ffee1" in line
    assert cortex.received == []  # nothing recorded short


def test_outside_a_ci_a_short_sha_is_expanded_in_the_current_directory(
    cortex: FakeCortex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    head = _git_repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    env = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    argv = ["send", "--entity-tag", "svc", "--sha", head[:7], "--deploy-id", "r-1"]
    assert main(argv, env) == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == head
    assert deploy["title"] == "Ship the ledger v2"
    monkeypatch.chdir(tmp_path.parent)  # no repository here: refused, not recorded short
    assert main(argv, env) == 2
    assert "'" + head[:7] + "' is abbreviated" in capsys.readouterr().err
    assert len(cortex.all_deploys()) == 1


def test_outside_a_ci_a_short_sha_is_expanded_from_a_subdirectory_of_the_checkout(
    cortex: FakeCortex,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`cd deploy && cortex-deploy-bridge send --sha abc1234`: the checkout is the one the
    current directory is in, as git itself finds it, not only one rooted right there."""
    head = _git_repo(tmp_path)
    (tmp_path / "deploy" / "k8s").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deploy" / "k8s")
    env = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    argv = ["send", "--entity-tag", "svc", "--sha", head[:7], "--deploy-id", "r-1"]
    assert main(argv, env) == 0, capsys.readouterr().err
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == head
    assert deploy["title"] == "Ship the ledger v2"


def test_a_context_sha_that_is_not_hex_never_reaches_git(
    gitlab: dict[str, str], cortex: FakeCortex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _git_repo(tmp_path)
    target = tmp_path / "written-by-git"
    gitlab["CI_COMMIT_SHA"] = f"--output={target}"
    del gitlab["CI_COMMIT_TITLE"]
    assert main(["send", "--entity-tag", "svc"], gitlab) == 0
    err = capsys.readouterr().err
    assert not target.exists()
    assert f"warning: the CI's commit '--output={target}' is not a hex sha; not used" in err
    (deploy,) = cortex.all_deploys()
    assert "sha" not in deploy


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("send", ["CORTEX_API_TOKEN", "CORTEX_API_URL", "CORTEX_DEPLOY_JOB_ID", "--deploy-id"]),
        ("action", ["INPUT_*", "GITHUB_OUTPUT", "CORTEX_API_TOKEN"]),
        ("check-config", ["BRIDGE_CONFIG", "BRIDGE_DATABASE_URL", "GITHUB_WEBHOOK_SECRET"]),
        ("deliveries", ["BRIDGE_DATABASE_URL", "deliveries retry --all-dead"]),
        ("demo", ["demo --json"]),
    ],
)
def test_help_has_description_environment_examples_and_exit_codes(
    command: str, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"], {})
    out = capsys.readouterr().out
    assert stopped.value.code == 0
    _usage, description = out.split("\n\n", 2)[:2]
    assert len(description.split()) > 20, description
    environment = out.split("\nenvironment:\n")[1].split("\n\n")[0]
    examples = out.split("\nexamples:\n")[1].split("\nexit codes:\n")[0]
    exit_codes = out.split("\nexit codes:\n")[1].split("\n\n")[0].splitlines()
    assert environment.strip() and "cortex-deploy-bridge" in examples
    assert exit_codes[0].startswith("  0  ") and len(exit_codes) >= 2
    for name in names:
        assert name in out


def test_every_command_and_subcommand_help_has_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from bridge.cli import COMMANDS, build_parser

    def helps(parser: argparse.ArgumentParser, path: list[str]) -> list[list[str]]:
        found = [path]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found += helps(child, [*path, name])
        return found

    commands = [[]] + [
        found
        for name in COMMANDS
        for found in helps(build_parser(name), [])[1:]
        if found[0] == name
    ]
    assert ["deliveries", "retry"] in commands and ["sync"] in commands
    for argv in commands:
        with pytest.raises(SystemExit):
            main([*argv, "--help"], {})
        out = capsys.readouterr().out
        assert "\nexamples:\n" in out, argv
        examples = out.split("\nexamples:\n")[1].split("\nexit codes:\n")[0]
        assert f"cortex-deploy-bridge {' '.join(argv)}".strip() in examples, argv


def test_cortex_error_text_stays_on_one_line(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send` in a GitHub run step: the runner reads commands from the log, so no value may
    start a line of its own."""
    from bridge.fakecortex import Fault

    echo = {"type": "BAD_REQUEST", "message": "bad\n::error::injected\r\n::add-mask::x"}
    cortex.inject(Fault("status", status=400, body=echo, method="POST"))
    assert main(["send", "--entity-tag", "payments-api", "--type", "DEPLOY"], gitlab) == 1
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert line.startswith("error: payments-api: ") and "bad%0A::error::injected%0D%0A" in line


@pytest.mark.parametrize(
    ("sha", "said"),
    [
        ("abc123", "'abc123' is not a commit sha: 7 to 64 hex digits"),  # six digits
        ("a" * 41, "is 41 hex digits: a full sha has 40 (or 64)"),  # was "is abbreviated"
        ("a" * 50, "is 50 hex digits: a full sha has 40 (or 64)"),
    ],
)
def test_a_sha_of_the_wrong_length_says_how_long_one_is(
    capsys: pytest.CaptureFixture[str], sha: str, said: str
) -> None:
    assert main(["send", "--dry-run", "--entity-tag", "x", "--sha", sha], {}) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --sha: ") and said in line, line


def test_the_top_level_help_shows_every_face_and_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"], {})
    out = capsys.readouterr().out
    assert stopped.value.code == 0
    assert "Flux and Argo CD" in out
    lines = out.split("\nexamples:\n")[1].splitlines()
    for command in ("demo", "send", "serve", "sync"):
        assert any(line.split()[:2] == ["cortex-deploy-bridge", command] for line in lines)


def test_several_entities_keep_their_places_on_stdout(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    cortex.entities = {"svc-b"}  # svc-a is not in Cortex: 404
    argv = ["send", "--entity-tag", "svc-a,svc-b", "--sha", "e" * 40, "--deploy-id", "r-9"]
    assert main(argv, _outside_ci(cortex)) == 1
    (deploy,) = cortex.all_deploys()
    assert capsys.readouterr().out == f"\n{deploy['uuid']}\n"  # svc-a's line left empty
    assert main([*argv, "--dry-run"], {}) == 0  # no token: nothing read
    bodies = json.loads(capsys.readouterr().out)  # one JSON document: an array
    assert [b["customData"]["bridge"]["idempotencyKey"].rsplit(":", 1)[1] for b in bodies] == [
        "svc-a",
        "svc-b",
    ]


def test_an_entity_with_more_deploys_than_a_listing_reads_is_still_typed_and_found(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past the listing's bound (10,000 records), type auto failed every run ("cortex holds
    # more than 10,000 deploys"): it reads the environment's deploys around the deploy instead.
    from bridge.cortex import CortexClient
    from bridge.cortex import client as cortex_client

    with CortexClient(cortex.url, TOKEN) as seeding:
        for n in range(12):  # another environment's, enough to pass the bound below
            seeding.create_deploy(
                "svc",
                {
                    "title": f"s{n}",
                    "timestamp": "2026-11-01T10:00:00Z",
                    "type": "DEPLOY",
                    "environment": "staging",
                    "sha": "e" * 40,
                },
            )
        for day, sha in ((2, "a" * 40), (3, "b" * 40)):
            seeding.create_deploy(
                "svc",
                {
                    "title": sha[:3],
                    "timestamp": f"2026-11-0{day}T10:00:00Z",
                    "type": "DEPLOY",
                    "environment": "prod",
                    "sha": sha,
                },
            )
    monkeypatch.setattr(cortex_client, "PAGE_SIZE", 1)  # a listing reads 10 records at most
    argv = ["send", "--entity-tag", "svc", "--environment", "prod", "--deploy-id", "big-1"]
    argv += ["--sha", "a" * 40, "--timestamp", "2026-11-04T10:00:00Z"]
    for _ in range(2):  # the second run finds the record the first made
        assert main(argv, _outside_ci(cortex)) == 0, capsys.readouterr().err
    made = [d for d in cortex.all_deploys() if d.get("customData")]
    assert [d["type"] for d in made] == ["ROLLBACK"]
    assert capsys.readouterr().out.split() == [made[0]["uuid"]] * 2


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        # GitLab makes no deployment of these jobs (environment:action); `stop` tears down.
        ("CI_ENVIRONMENT_ACTION", "stop"),
        ("CI_ENVIRONMENT_ACTION", "prepare"),
        ("CI_ENVIRONMENT_ACTION", "verify"),
        ("CI_ENVIRONMENT_ACTION", "access"),
        # `send` in after_script, which runs after a script that failed too.
        ("CI_JOB_STATUS", "failed"),
        ("CI_JOB_STATUS", "canceled"),
    ],
)
def test_a_gitlab_job_that_is_no_deploy_records_nothing_and_says_why(
    gitlab: dict[str, str],
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    env = {**gitlab, variable: value}
    assert main(["send", "--entity-tag", "payments-api"], env) == 0
    said = capsys.readouterr()
    assert said.out == "" and f"not recorded: {variable} is {value}" in said.err
    assert cortex.all_deploys() == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CI_ENVIRONMENT_ACTION", "start"),
        ("CI_JOB_STATUS", "running"),
        ("CI_JOB_STATUS", "success"),
    ],
)
def test_a_gitlab_deploy_job_records_whatever_else_it_says(
    gitlab: dict[str, str],
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    assert main(["send", "--entity-tag", "payments-api"], {**gitlab, variable: value}) == 0
    capsys.readouterr()
    assert len(cortex.all_deploys()) == 1


def test_a_deployer_name_given_never_takes_the_contexts_email(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # The record named the release bot with the pipeline starter's email.
    assert main(["send", "--entity-tag", "a", "--deployer-name", "Release Bot"], gitlab) == 0
    given = ["--deployer-name", "Release Bot", "--deployer-email", "bot@acme.example"]
    assert main(["send", "--entity-tag", "b", *given], gitlab) == 0
    handed = {**_deploy_job_variables(gitlab), "GITLAB_USER_EMAIL": "starter@acme.example"}
    del handed["CORTEX_DEPLOY_USER_EMAIL"]
    assert main(["send", "--entity-tag", "c"], handed) == 0
    capsys.readouterr()
    deployers = {d["entity"]: d["deployer"] for d in cortex.all_deploys()}
    assert deployers == {
        "a": {"name": "Release Bot"},
        "b": {"name": "Release Bot", "email": "bot@acme.example"},
        "c": {"name": "Deploy Player"},
    }


@pytest.mark.parametrize("depth", [40, 978])
def test_custom_data_nested_too_deep_is_refused_naming_the_flag(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    # 978 levels passed the parse, made the record, then broke every later read of the
    # entity (RecursionError), from every face.
    nested = '{"a": ' + "[" * depth + "]" * depth + "}"
    code = main(["send", "--entity-tag", "payments-api", "--custom-data", nested], gitlab)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --custom-data: ") and "nest" in err, err
    assert cortex.all_deploys() == []


def test_a_token_outside_ascii_is_refused_naming_it(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # It was "internal error (UnicodeEncodeError ...)": a header carries latin-1 at most.
    env = {**gitlab, "CORTEX_API_TOKEN": "abc\u20ac"}
    assert main(["send", "--entity-tag", "payments-api"], env) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: CORTEX_API_TOKEN: ") and "abc" not in err, err
    assert cortex.all_deploys() == []


def test_a_token_file_that_is_a_pipe_is_refused_not_waited_on(
    gitlab: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    pipe = tmp_path / "token"
    os.mkfifo(pipe)
    env = {**gitlab, "CORTEX_API_TOKEN_FILE": str(pipe)}
    del env["CORTEX_API_TOKEN"]
    assert main(["send", "--entity-tag", "payments-api"], env) == 2  # it hung for good
    assert "CORTEX_API_TOKEN_FILE: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("true: 1\n'true': a", "two keys are both 'true'"),  # was {"True": ...}, one lost
        ("a: {1: x, '1': y}", "two keys are both '1'"),
        ("a: !!binary aGVsbG8=", "holds a bytes"),  # was "b'hello'"
        ("a: !!set {x}", "holds a set"),
    ],
)
def test_custom_data_json_cannot_carry_as_given_is_refused_naming_the_flag(
    capsys: pytest.CaptureFixture[str], value: str, said: str
) -> None:
    code = main(["send", "--dry-run", "--entity-tag", "x", "--custom-data", value], {})
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --custom-data: ") and said in err, err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://exa mple.com/x", "holds a space"),
        ("https://h:99999/x", "has a port"),
        ("https://h:0/x", "has a port"),
    ],
)
def test_a_url_no_browser_could_open_is_refused(
    capsys: pytest.CaptureFixture[str], url: str, said: str
) -> None:
    code = main(["send", "--dry-run", "--entity-tag", "x", "--url", url], {})
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --url: ") and said in err, err


def test_custom_data_is_what_json_makes_of_it(capsys: pytest.CaptureFixture[str]) -> None:
    # A date inside was an internal error; keys YAML reads as numbers, booleans or null are
    # the text JSON makes of them.
    given = "a: 2024-01-01\nports: {80: http, 443: https}\nflags: {true: on, null: none}\n"
    given += "when: {2024-01-01: x}"
    argv = ["send", "--dry-run", "--entity-tag", "x", "--custom-data", given]
    assert main(argv, {}) == 0
    custom = json.loads(capsys.readouterr().out)["customData"]
    assert custom["a"] == "2024-01-01" and custom["ports"] == {"80": "http", "443": "https"}
    assert custom["flags"] == {"true": True, "null": "none"}
    assert custom["when"] == {"2024-01-01": "x"}


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("GITLAB_USER_EMAIL", "e" * 300 + "@acme.example", "deployer email"),
        ("CI_PROJECT_PATH", "acme/" + "p" * 600, "repository"),
        ("CORTEX_DEPLOY_JOB_STARTED_AT", "0001-01-01T00:00:00Z", "started at"),
    ],
)
def test_a_value_the_ci_gave_is_named_as_the_cis_never_as_a_flag_not_given(
    gitlab: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    field: str,
) -> None:
    # "--deployer-email", "--repository" (no such flag) and "--started at" were named.
    env = {**gitlab, variable: value}
    if variable.startswith("CORTEX_DEPLOY_"):
        env["CORTEX_DEPLOY_JOB_ID"] = "48213377"
    code = main(["send", "--entity-tag", "payments-api", "--dry-run"], env)
    err = capsys.readouterr().err
    assert code == 2 and f"the event's {field}" in err and "(as the CI's environment" in err, err
    assert "error: --" not in err, err


def test_a_token_echoed_into_the_title_reaches_cortex_masked_and_is_said(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # A job that echoed its environment into the commit title would have put the Cortex
    # token in the catalog's record, for everyone who reads it.
    gitlab["CI_COMMIT_TITLE"] = f"deploy {TOKEN} now"
    assert main(["send", "--entity-tag", "svc"], gitlab) == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["title"] == "deploy *** now"
    err = capsys.readouterr().err
    assert "title" in err and "recorded with it masked" in err and TOKEN not in err


def test_a_token_in_the_environment_is_refused_naming_the_flag(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["send", "--entity-tag", "svc", "--environment", f"prod-{TOKEN}"], gitlab)
    err = capsys.readouterr().err
    assert code == 2 and cortex.all_deploys() == []
    assert "--environment" in err and "holds a secret the bridge was given" in err
    assert TOKEN not in err and len(err.strip().splitlines()) == 1


def test_a_token_in_the_entity_tag_is_refused_naming_the_flag(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tags given apart from the event were never looked in: the Cortex token reached
    # Cortex in the record's idempotency key and in the request's URL (its output masked it).
    code = main(["send", "--entity-tag", f"svc-{TOKEN}"], gitlab)
    err = capsys.readouterr().err
    assert code == 2 and cortex.all_deploys() == []
    assert not any(TOKEN in r.path for r in cortex.received)
    assert "--entity-tag" in err and "holds a secret the bridge was given" in err
    assert TOKEN not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "flags",
    [
        ["--url", f"x{TOKEN}"],
        ["--sha", TOKEN],
        ["--timestamp", TOKEN],
        ["--environment", f"{TOKEN}\x01"],
    ],
)
def test_a_refused_value_holding_a_token_of_the_environment_is_shown_masked(
    gitlab: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str], flags: list[str]
) -> None:
    # A value refused before the token was read (a CI variable that expanded to the token in
    # the wrong flag) was shown as it was: send's output masked no secret of the environment
    # until its token was in hand.
    code = main(["send", "--entity-tag", "svc", *flags], gitlab)
    captured = capsys.readouterr()
    assert code == 2 and cortex.all_deploys() == []
    assert TOKEN not in captured.err + captured.out and "***" in captured.err
