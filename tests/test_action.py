"""`cortex-deploy-bridge action` under the environment GitHub's runner gives an Action's step.

The variables here are spelled as a Docker step gets them (INPUT_ with hyphens kept), which
`action` still reads; the composite step's underscored spelling is used by
tests/test_action_runner.py and tests/test_action_act.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex, Fault
from tests.conftest import SAMPLES, TOKEN

PUSH_SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
UUID = re.compile(r"^[0-9a-f-]{36}$")


@pytest.fixture
def runner(tmp_path: Path, cortex: FakeCortex) -> dict[str, str]:
    """The variables an Action's step sees for a push to main (see actions-env docs)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    event = tmp_path / "event.json"
    shutil.copy(SAMPLES / "actions" / "push.json", event)
    return {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_REPOSITORY": "acme/payments-api",
        "GITHUB_SHA": PUSH_SHA,
        "GITHUB_REF_NAME": "main",
        "GITHUB_RUN_ID": "9876543210",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_RUN_NUMBER": "42",
        "GITHUB_WORKFLOW": "Deploy",
        "GITHUB_JOB": "deploy",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_ACTOR": "mona",
        "GITHUB_TRIGGERING_ACTOR": "mona",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "INPUT_CORTEX-API-TOKEN": TOKEN,
        "INPUT_CORTEX-API-URL": cortex.url,
        "INPUT_ENTITY-TAG": "",
        "INPUT_ENVIRONMENT": "production",
        "INPUT_TYPE": "auto",
        "INPUT_FAIL-ON-ERROR": "true",
        "INPUT_DRY-RUN": "false",
    }


def use_event(env: dict[str, str], name: str, event_name: str) -> None:
    shutil.copy(SAMPLES / "actions" / f"{name}.json", env["GITHUB_EVENT_PATH"])
    env["GITHUB_EVENT_NAME"] = event_name


def outputs(env: dict[str, str]) -> dict[str, str]:
    """Parse the heredoc blocks of $GITHUB_OUTPUT."""
    text = Path(env["GITHUB_OUTPUT"]).read_text()
    found = {}
    for match in re.finditer(r"^(\S+)<<(\S+)\n(.*?)\n\2\n", text, re.S | re.M):
        found[match[1]] = match[3]
    return found


def run(env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["action"], env)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_push_records_one_complete_deploy(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(runner, capsys)
    assert code == 0, out
    (deploy,) = cortex.all_deploys()
    assert deploy["entity"] == "payments-api"  # no input, no cortex.yaml: the repo's name
    assert deploy["sha"] == PUSH_SHA
    assert deploy["environment"] == "production"
    assert deploy["url"] == "https://github.com/acme/payments-api/actions/runs/9876543210"
    assert deploy["deployer"] == {"name": "mona", "email": "mona@acme.example"}
    assert deploy["title"] == "Retry settlement calls on 5xx"
    assert deploy["type"] == "DEPLOY"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", deploy["timestamp"])
    assert deploy["customData"]["bridge"]["idempotencyKey"] == (
        "github:acme/payments-api:run:9876543210/1:production:payments-api"
    )
    got = outputs(runner)
    assert got["deploy-uuid"] == deploy["uuid"]
    assert json.loads(got["payload"])["sha"] == PUSH_SHA
    # The payload output is the body Cortex got, its stamp (recordedAt) included.
    sent = {k: v for k, v in deploy.items() if k not in ("uuid", "entity")}
    assert json.loads(got["payload"]) == sent
    # To the millisecond always: stamps of one width order as text as they do in time.
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", sent["customData"]["bridge"]["recordedAt"]
    )
    summary = Path(runner["GITHUB_STEP_SUMMARY"]).read_text()
    assert "| payments-api | production | DEPLOY |" in summary
    assert deploy["uuid"] in summary


def test_deployment_status_event_gives_sha_and_environment(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    use_event(runner, "deployment_status", "deployment_status")
    runner["INPUT_ENVIRONMENT"] = ""
    assert run(runner, capsys)[0] == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == "7c5d3b3bd2b9d6cc4d9a3bfe0c4b27a1e6e0f8d2"
    assert deploy["environment"] == "staging"
    assert deploy["customData"]["bridge"]["idempotencyKey"].startswith(
        "github:acme/payments-api:deployment:88120045:staging:"
    )


def test_workflow_run_event_gives_head_sha_and_title(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    use_event(runner, "workflow_run", "workflow_run")
    assert run(runner, capsys)[0] == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == "e3f1c0a4b5d6e7f8091a2b3c4d5e6f708192a3b4"
    assert deploy["title"] == "Bump ledger client to 4.2"


@pytest.mark.parametrize("event_name", ["pull_request", "pull_request_target"])
def test_a_pull_request_job_records_the_commit_it_checked_out(
    runner: dict[str, str],
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    event_name: str,
) -> None:
    # A preview deploy: the job checks out GITHUB_SHA (the merge commit GitHub made for a
    # pull_request, the base's for pull_request_target), not the branch's head.
    event = tmp_path / "pull_request.json"
    head = "a" * 40
    event.write_text(json.dumps({"pull_request": {"head": {"sha": head}, "title": "Preview"}}))
    runner.update(GITHUB_EVENT_NAME=event_name, GITHUB_EVENT_PATH=str(event))
    assert run(runner, capsys)[0] == 0
    (deploy,) = cortex.all_deploys()
    assert deploy["sha"] == runner["GITHUB_SHA"] != head


@pytest.mark.parametrize("name", ["cortex.yaml", "cortex.yml"])
def test_entity_from_descriptor(
    runner: dict[str, str], cortex: FakeCortex, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(runner["GITHUB_WORKSPACE"], name).write_text(
        "openapi: 3.0.1\ninfo:\n  title: Payments\n  x-cortex-tag: payments-svc\n"
    )
    assert run(runner, capsys)[0] == 0
    assert [d["entity"] for d in cortex.all_deploys()] == ["payments-svc"]


def test_several_entities(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    runner["INPUT_ENTITY-TAG"] = "payments-api, ledger\nledger\nnotifier"
    assert run(runner, capsys)[0] == 0
    stored = cortex.all_deploys()
    assert sorted(d["entity"] for d in stored) == ["ledger", "notifier", "payments-api"]
    uuids = outputs(runner)["deploy-uuid"].split(",")
    assert sorted(uuids) == sorted(d["uuid"] for d in stored)
    assert len(json.loads(outputs(runner)["payload"])) == 3


def test_a_failed_entity_keeps_its_place_in_deploy_uuid(
    runner: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The uuids closed up, so the first one was the second entity's.
    with FakeCortex(token=TOKEN, entities={"ledger", "notifier"}) as fake:
        runner["INPUT_CORTEX-API-URL"] = fake.url
        runner["INPUT_ENTITY-TAG"] = "no-such-svc, ledger, notifier"
        runner["INPUT_FAIL-ON-ERROR"] = "false"
        assert run(runner, capsys)[0] == 0
        by_entity = {d["entity"]: d["uuid"] for d in fake.all_deploys()}
    assert outputs(runner)["deploy-uuid"] == f",{by_entity['ledger']},{by_entity['notifier']}"


def test_underscore_input_spelling(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in [k for k in runner if k.startswith("INPUT_")]:
        runner[key.replace("-", "_")] = runner.pop(key)
    runner["INPUT_ENTITY_TAG"] = "ledger"
    assert run(runner, capsys)[0] == 0
    assert [d["entity"] for d in cortex.all_deploys()] == ["ledger"]


def test_rate_limit_and_5xx_still_one_deploy_and_waits_honoured(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    runner["INPUT_TYPE"] = "DEPLOY"
    cortex.inject(
        Fault.rate_limited(1, method="POST"),
        Fault("status", status=503, method="POST"),
        Fault.rate_limited(1, method="POST"),
        Fault("status", status=503, method="POST"),
    )
    assert run(runner, capsys)[0] == 0
    posts = cortex.requests_to("POST")
    assert len(posts) == 5
    # With the type given no history is listed: a search around the deploy's time looks for
    # its record before the first POST, again after each try that may have reached Cortex
    # (the 503s), and once after the create (another face may have recorded it meanwhile).
    searches = cortex.requests_to("GET")
    assert {r.path for r in searches} == {"/api/v1/deploys/search"}
    assert searches[0].at < posts[0].at
    assert searches[-1].at > posts[-1].at
    assert posts[1].at - posts[0].at >= 0.95
    assert posts[3].at - posts[2].at >= 0.95
    assert len(cortex.all_deploys()) == 1


def test_connection_dropped_after_store_still_one(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    cortex.inject(Fault("drop_after", method="POST"))
    code, out, _ = run(runner, capsys)
    assert code == 0, out
    (deploy,) = cortex.all_deploys()
    assert outputs(runner)["deploy-uuid"] == deploy["uuid"]


def test_repeated_step_answers_the_existing_record(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(runner, capsys)[0] == 0
    code, out, _ = run(runner, capsys)
    assert code == 0
    assert "already recorded" in out
    assert len(cortex.all_deploys()) == 1


def test_a_repeated_step_reports_the_type_its_record_holds(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run 1 deployed S, its attempt 2 S again, run 2 T; run 1's first step, repeated later,
    # said "already recorded ROLLBACK" (S judged against now, after T) of a record of DEPLOY.
    first, second = "1" * 40, "2" * 40
    runner.update(INPUT_SHA=first, INPUT_TIMESTAMP="2026-11-01T10:00:00Z", GITHUB_RUN_ID="1")
    assert run(runner, capsys)[0] == 0
    runner.update(INPUT_TIMESTAMP="2026-11-01T11:00:00Z", GITHUB_RUN_ATTEMPT="2")
    assert run(runner, capsys)[0] == 0
    runner.update(INPUT_SHA=second, INPUT_TIMESTAMP="2026-11-02T10:00:00Z", GITHUB_RUN_ID="2")
    assert run(runner, capsys)[0] == 0
    runner.update(
        INPUT_SHA=first,
        INPUT_TIMESTAMP="2026-11-03T10:00:00Z",
        GITHUB_RUN_ID="1",
        GITHUB_RUN_ATTEMPT="1",
    )
    code, out, _ = run(runner, capsys)
    assert code == 0 and "already recorded" in out
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY"] * 3
    summary = Path(runner["GITHUB_STEP_SUMMARY"]).read_text().split("### Cortex deploy")[-1]
    assert "| DEPLOY |" in summary and "ROLLBACK" not in summary + out


def test_auto_type_detects_rollback(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    older, newer = "1" * 40, "2" * 40
    for n, (sha, when) in enumerate(
        [(older, "2026-11-01T10:00:00Z"), (newer, "2026-11-02T10:00:00Z")]
    ):
        runner.update(INPUT_SHA=sha, INPUT_TIMESTAMP=when, GITHUB_RUN_ID=str(n))
        assert run(runner, capsys)[0] == 0
    runner.update(INPUT_SHA=older, INPUT_TIMESTAMP="2026-11-03T10:00:00Z", GITHUB_RUN_ID="3")
    assert run(runner, capsys)[0] == 0
    types = [d["type"] for d in cortex.all_deploys()]
    assert types == ["DEPLOY", "DEPLOY", "ROLLBACK"]


def test_a_deploy_that_failed_is_no_history_for_a_rollback(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # The relay's history holds only deploys that succeeded; the step read every record of
    # Cortex's listing, so after A, then B failed, A again was a ROLLBACK here and a DEPLOY
    # there (the environment still ran A).
    first, failed = "1" * 40, "2" * 40
    runner.update(INPUT_SHA=first, INPUT_TIMESTAMP="2026-11-01T10:00:00Z", GITHUB_RUN_ID="1")
    assert run(runner, capsys)[0] == 0
    runner.update(
        INPUT_SHA=failed,
        INPUT_TIMESTAMP="2026-11-02T10:00:00Z",
        GITHUB_RUN_ID="2",
    )
    assert run(runner, capsys)[0] == 0
    (second,) = [d for d in cortex.all_deploys() if d["sha"] == failed]
    body = {k: v for k, v in second.items() if k not in ("uuid", "entity")}
    body["customData"] = {**body["customData"], "status": "failed"}
    with CortexClient(cortex.url, TOKEN) as client:  # as the relay records a failed deploy
        client.update_deploy(second["entity"], second["uuid"], body)
    runner.update(INPUT_SHA=first, INPUT_TIMESTAMP="2026-11-03T10:00:00Z", GITHUB_RUN_ID="3")
    assert run(runner, capsys)[0] == 0
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY", "DEPLOY", "DEPLOY"]


def test_a_refused_token_from_the_variable_is_named_as_the_variable(
    runner: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """With the input empty the token is CORTEX_API_TOKEN's: that is what to fix."""
    with FakeCortex(token=TOKEN) as fake:
        runner.pop("INPUT_CORTEX-API-TOKEN", None)
        runner.update({"INPUT_CORTEX-API-URL": fake.url, "CORTEX_API_TOKEN": "wrong-token-0xbeef"})
        code, out, _ = run(runner, capsys)
    assert code == 1
    assert "::payments-api: CORTEX_API_TOKEN: cortex refused the API token (401)" in out, out


@pytest.mark.parametrize(
    ("entities", "token", "expected"),
    [
        pytest.param(
            None,
            "wrong-token-0xdead",
            "no-such-svc: the cortex-api-token input: cortex refused the API token (401)",
            id="401",
        ),
        pytest.param({"payments-api"}, TOKEN, "entity 'no-such-svc' not found", id="404"),
    ],
)
def test_rejections_fail_with_error_annotation(
    runner: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    entities: set[str] | None,
    token: str,
    expected: str,
) -> None:
    with FakeCortex(token=TOKEN, entities=entities) as fake:
        runner.update(
            {
                "INPUT_CORTEX-API-URL": fake.url,
                "INPUT_CORTEX-API-TOKEN": token,
                "INPUT_ENTITY-TAG": "no-such-svc",
            }
        )
        code, out, _ = run(runner, capsys)
        assert code == 1
        assert re.search(rf"^::error[^:]*::.*{re.escape(expected)}", out, re.M), out
        runner["INPUT_FAIL-ON-ERROR"] = "false"
        code, out, _ = run(runner, capsys)
        assert code == 0
        assert re.search(rf"^::warning[^:]*::.*{re.escape(expected)}", out, re.M), out
        assert fake.all_deploys() == []


def test_token_never_printed_even_when_cortex_echoes_it(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = {"type": "BAD_REQUEST", "message": f"bad header Authorization: Bearer {TOKEN}"}
    cortex.inject(Fault("status", status=400, body=echo))
    code, out, err = run(runner, capsys)
    assert code == 1
    shown = [line for line in out.splitlines() if not line.startswith("::add-mask::")]
    assert TOKEN not in "\n".join(shown) + err
    assert f"::add-mask::{TOKEN}" in out.splitlines()
    assert TOKEN not in Path(runner["GITHUB_OUTPUT"]).read_text()
    assert TOKEN not in Path(runner["GITHUB_STEP_SUMMARY"]).read_text()
    assert "Bearer ***" in out


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param(
            {"INPUT_TYPE": "REDEPLOY"}, "the type input: 'REDEPLOY' is not one of", id="type"
        ),
        pytest.param({"INPUT_TIMESTAMP": "last tuesday"}, "the timestamp input:", id="timestamp"),
        pytest.param({"INPUT_TIMESTAMP": "2026-11-20T10:00:00"}, "no UTC offset", id="naive-time"),
        pytest.param(
            {"INPUT_CUSTOM-DATA": "[1, 2]"}, "the custom-data input: expected a mapping", id="list"
        ),
        pytest.param(
            {"INPUT_CUSTOM-DATA": "a: [b"},
            "the custom-data input: neither JSON nor YAML",
            id="bad-yaml",
        ),
        pytest.param(
            {"INPUT_CUSTOM-DATA": '{"ratio": NaN}'},
            "the custom-data input: NaN is not a number JSON can carry",
            id="json-nan",
        ),
        pytest.param(
            {"INPUT_CUSTOM-DATA": "limit: .inf"},
            "the custom-data input: NaN or an infinity is not a number JSON can carry",
            id="yaml-infinity",
        ),
        pytest.param(
            {"INPUT_CUSTOM-DATA": '{"a": ' + "[" * 3000 + "]" * 3000 + "}"},
            "the custom-data input: nested too deeply",
            id="deep",
        ),
        pytest.param(
            {"INPUT_CORTEX-API-TOKEN": ""},
            "the cortex-api-token input: no Cortex API token",
            id="no-token",
        ),
        pytest.param(
            {"INPUT_SHA": "main"},
            "the sha input: 'main' is not a commit sha: 7 to 64 hex digits",
            id="sha",
        ),
        pytest.param(
            {"INPUT_SHA": "c0ffee1"},
            "the sha input: 'c0ffee1' is abbreviated, and no git repository at",
            id="short-sha-without-checkout",
        ),
        pytest.param(
            {"INPUT_URL": "ftp://x"}, "the url input: 'ftp://x' is not an http(s) URL", id="url"
        ),
        pytest.param(
            {"INPUT_CORTEX-API-URL": "https://api.getcortexapp.com@evil.example"},
            "the cortex-api-url input: must not hold a user or password",
            id="api-url-user-info",
        ),
        pytest.param(
            {"INPUT_CORTEX-API-URL": "https://api.getcortexapp.com:0"},
            "the cortex-api-url input: port must be a number from 1 to 65535, got '0'",
            id="api-url-port",
        ),
        pytest.param(
            {"INPUT_DRY-RUN": "maybe"}, "the dry-run input: expected true or false", id="bool"
        ),
    ],
)
def test_bad_input_one_line_nothing_sent(
    runner: dict[str, str],
    cortex: FakeCortex,
    capsys: pytest.CaptureFixture[str],
    inputs: dict[str, str],
    message: str,
) -> None:
    runner.update(inputs)
    code, out, err = run(runner, capsys)
    assert code == 2
    errors = [line for line in out.splitlines() if line.startswith("::error")]
    assert len(errors) == 1 and message in errors[0], out
    assert "Traceback" not in out + err
    assert cortex.received == []


def test_dry_run_sends_nothing_and_shows_payload(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    runner["INPUT_DRY-RUN"] = "true"
    runner["INPUT_CUSTOM-DATA"] = "team: payments\ntier: 1"
    code, _, _ = run(runner, capsys)
    assert code == 0
    assert cortex.requests_to("POST") == []
    payload = json.loads(outputs(runner)["payload"])
    assert payload["customData"]["team"] == "payments"
    assert outputs(runner)["deploy-uuid"] == ""
    assert "dry run" in Path(runner["GITHUB_STEP_SUMMARY"]).read_text()


def test_a_dry_run_of_a_deploy_already_recorded_says_so_and_gives_its_uuid(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(runner, capsys)[0] == 0
    (deploy,) = cortex.all_deploys()
    runner["INPUT_DRY-RUN"] = "true"
    code, out, _ = run(runner, capsys)
    assert code == 0
    assert f"already recorded DEPLOY of payments-api in production as {deploy['uuid']}" in out
    assert "would record" not in out
    assert outputs(runner)["deploy-uuid"] == deploy["uuid"]
    assert f"already recorded `{deploy['uuid']}`" in Path(runner["GITHUB_STEP_SUMMARY"]).read_text()


def test_a_dry_run_with_type_auto_needs_no_token(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    # What action.yml's dry-run input says: no real token needed; auto is shown as DEPLOY.
    runner.update({"INPUT_DRY-RUN": "true", "INPUT_TYPE": "auto", "INPUT_CORTEX-API-TOKEN": ""})
    code, out, _ = run(runner, capsys)
    assert code == 0, out
    assert cortex.received == []
    assert json.loads(outputs(runner)["payload"])["type"] == "DEPLOY"
    described = " ".join((SAMPLES.parents[1] / "action.yml").read_text().split())
    assert "records nothing, and needs no real token" in described


# Workflow commands the Action itself writes; any other line starting with "::" was injected.
OWN_COMMANDS = re.compile(r"^::(add-mask|error title=Cortex deploy|warning title=Cortex deploy)::")


def assert_no_injected_command(out: str) -> None:
    for line in out.splitlines():
        if line.lstrip().startswith("::"):
            assert OWN_COMMANDS.match(line), f"injected workflow command: {line!r}"
        assert "\r" not in line


def test_hostile_environment_input_is_refused_and_injects_nothing(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    runner["INPUT_ENVIRONMENT"] = "prod\n::error::injected\r\n::set-output name=x::y"
    code, out, err = run(runner, capsys)
    assert code == 2
    assert_no_injected_command(out + err)
    (error,) = [line for line in out.splitlines() if line.startswith("::error")]
    assert "the environment input: " in error and "contains a control character" in error
    assert cortex.received == []


def test_hostile_environment_from_the_event_file_is_refused(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    use_event(runner, "deployment_status", "deployment_status")
    event = json.loads(Path(runner["GITHUB_EVENT_PATH"]).read_text())
    event["deployment"]["environment"] = "staging\n::error::injected"
    Path(runner["GITHUB_EVENT_PATH"]).write_text(json.dumps(event))
    runner["INPUT_ENVIRONMENT"] = ""
    code, out, err = run(runner, capsys)
    assert code == 2
    assert_no_injected_command(out + err)
    assert cortex.received == []


def test_hostile_tag_in_cortex_yaml_is_refused(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(runner["GITHUB_WORKSPACE"], "cortex.yaml").write_text(
        'info:\n  x-cortex-tag: "svc\\n::error::injected"\n'
    )
    code, out, err = run(runner, capsys)
    assert code == 2
    assert_no_injected_command(out + err)
    assert "cortex.yaml: info.x-cortex-tag contains a control character" in out
    assert cortex.received == []


def test_cortex_yaml_that_is_not_yaml_is_refused_naming_its_line_and_problem(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(runner["GITHUB_WORKSPACE"], "cortex.yaml").write_text(
        "openapi: 3.0.1\ninfo:\n  title: Payments\n  x-cortex-tag: [payments-api\n"
    )
    code, out, _ = run(runner, capsys)
    assert code == 2
    [error] = [line for line in out.splitlines() if line.startswith("::error")]
    assert error.endswith(
        "::cortex.yaml:5: invalid YAML: expected ',' or ']', but got '<stream end>'"
    )
    assert cortex.received == []


def test_values_that_pass_are_printed_escaped(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    """Percent, colon and comma survive as text; Cortex's own text cannot break a line."""
    runner["INPUT_ENVIRONMENT"] = "prod%0A::error::x,eu:1"
    echo = {"type": "BAD_REQUEST", "message": "no\n::error::from-cortex%0D::warning::y"}
    cortex.inject(Fault("status", status=400, body=echo))
    code, out, err = run(runner, capsys)
    assert code == 1
    assert_no_injected_command(out + err)
    (error,) = [line for line in out.splitlines() if line.startswith("::error")]
    assert "no%0A::error::from-cortex%250D::warning::y" in error
    runner["INPUT_FAIL-ON-ERROR"] = "false"
    code, out, err = run(runner, capsys)
    assert code == 0
    assert_no_injected_command(out + err)
    (deploy,) = cortex.all_deploys()
    assert deploy["environment"] == "prod%0A::error::x,eu:1"


def test_output_heredoc_delimiter_never_occurs_in_the_value() -> None:
    from bridge.action.output import output_block

    value = "line one\nghadelimiter_\nEOF\n::error::x"
    block = output_block("payload", value)
    name, rest = block.split("<<", 1)
    delimiter, body = rest.split("\n", 1)
    assert name == "payload" and delimiter not in value
    assert body == f"{value}\n{delimiter}\n"


def test_annotation_properties_escape_colon_and_comma() -> None:
    from bridge.action.output import annotation

    line = annotation("error", "50%\r\ndone", title="a:b,c%")
    assert line == "::error title=a%3Ab%2Cc%25::50%25%0D%0Adone"


def test_a_context_sha_like_an_option_never_reaches_git(
    runner: dict[str, str], cortex: FakeCortex, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace = Path(runner["GITHUB_WORKSPACE"])
    git = ["git", "-C", str(workspace), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=30)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True, timeout=30)
    target = tmp_path / "written-by-git"
    runner["GITHUB_SHA"] = f"--output={target}"
    Path(runner["GITHUB_EVENT_PATH"]).write_text("{}")
    code, out, _ = run(runner, capsys)
    assert code == 0, out
    assert not target.exists()
    assert_no_injected_command(out)
    assert "is not a hex sha; not used" in out


def test_warnings_name_the_input_to_set(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    runner["INPUT_ENVIRONMENT"] = ""
    code, out, _ = run(runner, capsys)
    assert code == 0
    assert (
        "::warning title=Cortex deploy::no environment recorded: set the environment input"
        in out.splitlines()
    )
    assert "--environment" not in out


def test_without_a_run_id_nothing_is_keyed_by_a_made_up_run(
    runner: dict[str, str], cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two try-outs with no GITHUB_RUN_ID are two deploys, never one "run 0" found twice."""
    del runner["GITHUB_RUN_ID"]
    for _ in range(2):
        code, out, _ = run(runner, capsys)
        assert code == 0
        assert "no build id here" in out and "set the deploy-id input" not in out
    keys = {d["customData"]["bridge"]["idempotencyKey"] for d in cortex.all_deploys()}
    assert len(keys) == 2
