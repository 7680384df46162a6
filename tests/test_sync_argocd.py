"""`sync --argocd URL`: Applications' history from the stand-in Argo CD, the stand-in Cortex.

The history an operation leaves and the notification it sent name one deploy: whichever
arrives first makes the record, the other finds it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex
from bridge.fakescm import FakeArgoCD, Fault
from bridge.mapping import key_of
from bridge.store import Store
from bridge.sync import periodic
from bridge.sync.argocd import NAMES, ArgoCDReader, argocd_client
from bridge.sync.reader import Window
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import argocd_post
from tests.test_gitops import ROUTES, Relay

ARGO_TOKEN = "argocd-api-token-41ab"
SHA_1, SHA_2 = "1" * 40, "2" * 40


@pytest.fixture
def argo() -> Iterator[FakeArgoCD]:
    """A stand-in Argo CD; fails the test if it saw a request it does not expect."""
    with FakeArgoCD(token=ARGO_TOKEN) as fake:
        yield fake
        assert fake.violations == []


def write_config(tmp_path: Path, **extra: Any) -> str:
    path = tmp_path / "bridge.yaml"
    path.write_text(json.dumps({"routes": ROUTES, **extra}))
    return str(path)


def sync(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], *args: str
) -> tuple[int, dict[str, Any], str]:
    code = main(["sync", *args, "--output", "json"], environ)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out else {}), captured.err


def environ_for(db_url: str, cortex: FakeCortex, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
        "BRIDGE_DATABASE_URL": db_url,
        "BRIDGE_CONFIG": write_config(tmp_path),
        "ARGOCD_AUTH_TOKEN": ARGO_TOKEN,
        **extra,
    }


def rows(report: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["verdict"], r["entity"]) for r in report["deploys"] if r["deploy"]]


def test_history_is_recorded_once(
    db_url: str, cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    api = argo.add_application(
        "api", labels={"cortex.io/environment": "production"}, annotations={"team": "core"}
    )
    argo.add_history(
        api, revision=SHA_1, started="2026-11-20T10:00:00Z", deployed="2026-11-20T10:01:30Z"
    )
    argo.add_history(
        api,
        revision=SHA_2,
        started="2026-11-21T10:00:00Z",
        deployed="2026-11-21T10:00:40Z",
        username="ada@acme.example",
    )
    argo.add_history(
        api, revision=SHA_1, started="2026-11-22T10:00:00Z", deployed="2026-11-22T10:00:50Z"
    )
    web = argo.add_application("web", namespace="team-web")
    argo.add_history(web, revision=SHA_2, started=None, deployed="2026-11-21T12:00:00Z")
    env = environ_for(db_url, cortex, tmp_path)
    args = ("--argocd", argo.url, "--since", "2026-11-01", "--until", "2026-12-01")
    code, report, _ = sync(capsys, env, *args)
    assert code == 0
    assert rows(report) == [("recorded", "api")] * 3
    skipped = [r["detail"] for r in report["deploys"] if r["verdict"] == "skipped"]
    assert skipped == ["history entry 0 has no deployStartedAt"]
    stored = cortex.all_deploys()
    assert [d["type"] for d in stored] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
    assert [d["environment"] for d in stored] == ["production"] * 3
    assert stored[1]["deployer"] == {"name": "ada@acme.example", "email": "ada@acme.example"}
    assert stored[0]["deployer"] == {"name": "automated"}
    assert stored[0]["url"] == f"{argo.url}/applications/argocd/api"
    assert stored[0]["timestamp"] == "2026-11-20T10:01:30Z"
    assert stored[0]["customData"]["startedAt"] == "2026-11-20T10:00:00Z"
    uid = api["metadata"]["uid"]
    assert (
        key_of(stored[0])
        == f"argocd:argocd/api:operation:{uid}/2026-11-20T10:00:00Z:production:api"
    )
    # Run again: everything is present, nothing is written.
    code, report, _ = sync(capsys, env, *args, "--restart")
    assert code == 0 and rows(report) == [("present", "api")] * 3
    assert len(cortex.all_deploys()) == 3
    assert all(r.headers["authorization"] == f"Bearer {ARGO_TOKEN}" for r in argo.requests)
    # The list names them, then each is read whole on its own (the list's ``fields`` hold no
    # history), in its namespace.
    asked = {(r.method, r.path, tuple(sorted(r.query.items()))) for r in argo.requests}
    assert asked == {
        ("GET", "/api/v1/applications", (("fields", NAMES["fields"]),)),
        ("GET", "/api/v1/applications/api", (("appNamespace", "argocd"),)),
        ("GET", "/api/v1/applications/web", (("appNamespace", "team-web"),)),
    }


def test_webhook_and_history_of_one_operation_are_one_record(
    db_url: str, cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    notification = load_sample("argocd/sync.succeeded.json")
    relay = Relay(db_url, cortex, {"routes": ROUTES})
    assert argocd_post(relay.http, notification).status_code == 202
    relay.drain()
    relay.close()
    (recorded,) = cortex.all_deploys()
    # The same Application and operation, as Argo CD's API shows it afterwards.
    app = argo.add_application(
        "payments-api",
        project="payments",
        labels={"cortex.io/environment": "production"},
    )
    app["metadata"]["uid"] = notification["app"]["uid"]
    argo.add_history(
        app,
        revision=notification["operation"]["revision"],
        started=notification["operation"]["startedAt"],
        deployed="2026-11-23T14:03:02Z",  # persisted a second after the phase changed
    )
    code, report, _ = sync(
        capsys, environ_for(db_url, cortex, tmp_path), "--argocd", argo.url, "--since", "30d"
    )
    assert code == 0
    assert rows(report) == [("present", "payments-api")]
    assert cortex.all_deploys() == [recorded]


def test_history_first_then_webhook_is_one_record(
    db_url: str, cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    notification = load_sample("argocd/sync.succeeded.json")
    app = argo.add_application(
        "payments-api", project="payments", labels={"cortex.io/environment": "production"}
    )
    app["metadata"]["uid"] = notification["app"]["uid"]
    argo.add_history(
        app,
        revision=notification["operation"]["revision"],
        started=notification["operation"]["startedAt"],
        deployed=notification["operation"]["finishedAt"],
    )
    env = environ_for(db_url, cortex, tmp_path)
    assert sync(capsys, env, "--argocd", argo.url, "--since", "30d")[0] == 0
    # The relay's outbox has never seen it; the worker finds Cortex's record by its key.
    relay = Relay(f"sqlite:///{tmp_path / 'relay.db'}", cortex, {"routes": ROUTES})
    assert argocd_post(relay.http, notification).status_code == 202
    relay.drain()
    relay.close()
    assert len(cortex.all_deploys()) == 1


def test_needs_its_token(cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any) -> None:
    env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path, ARGOCD_AUTH_TOKEN="")
    code, _, err = sync(capsys, env, "--argocd", argo.url)
    assert code == 2
    assert err == (
        "cortex-deploy-bridge: error: ARGOCD_AUTH_TOKEN is not set: reading Argo CD's history "
        "needs it\n"
    )
    assert argo.requests == []


def test_a_refused_token_fails_the_sync(
    cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path, ARGOCD_AUTH_TOKEN="no")
    code, _, err = sync(capsys, env, "--argocd", argo.url)
    assert code == 1
    assert "answered 401 for /api/v1/applications" in err
    assert "ARGOCD_AUTH_TOKEN is missing, wrong or expired" in err
    assert "no" not in err.split("ARGOCD_AUTH_TOKEN")[-1]


def test_bad_url_is_a_usage_error(cortex: FakeCortex, tmp_path: Path, capsys: Any) -> None:
    env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path)
    code, _, err = sync(capsys, env, "--argocd", "https://user@argocd.example.com")
    assert code == 2 and "--argocd" in err


def test_a_redirect_to_another_origin_is_refused(
    cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    with FakeArgoCD(token=ARGO_TOKEN) as elsewhere:
        argo.inject(Fault(302, {"Location": f"{elsewhere.url}/api/v1/applications"}, {}))
        env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path)
        code, _, err = sync(capsys, env, "--argocd", argo.url)
        assert elsewhere.requests == []  # the token never went there
    assert code == 1
    assert f"a 302 redirect leads to {elsewhere.url}/api/v1/applications" in err
    assert "not followed, nothing sent there" in err
    assert ARGO_TOKEN not in err


@pytest.mark.system  # 61 requests and 3 MiB over loopback: a few seconds
def test_an_installation_past_one_answers_bounds_is_read_one_application_at_a_time(
    cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    # Read as one list, 60 Applications of 450 resources each (400 of 30 resources and ten
    # history entries, an ordinary installation, are as many) passed the JSON caps of one
    # SCM answer: the whole sync failed ("more than 50000 objects or arrays").
    for n in range(60):
        app = argo.add_application(f"app-{n:02d}")
        app["status"]["resources"] = [{"kind": "Deployment", "health": {}} for _ in range(450)]
        argo.add_history(
            app,
            revision=f"{n:02d}".ljust(40, "a"),
            started="2026-11-10T10:00:00Z",
            deployed="2026-11-10T10:01:00Z",
        )
    env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path)
    args = ("--argocd", argo.url, "--since", "2026-11-01", "--until", "2026-12-01", "--dry-run")
    code, report, err = sync(capsys, env, *args)
    assert code == 3, err  # a dry run that found deploys missing
    assert len([r for r in report["deploys"] if r["verdict"] == "missing"]) == 60
    assert len(argo.requests) == 61  # the names, then each Application


def test_a_listed_name_that_is_no_kubernetes_name_or_gone_is_a_skipped_row(
    cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    # A hostile or broken server names an Application "../../settings?x=" : never a path.
    for name in ("gone", "ok", "../../settings?x=", "UPPER"):
        app = argo.add_application(name)
        argo.add_history(
            app, revision=SHA_1, started="2026-11-10T09:00:00Z", deployed="2026-11-10T09:01:00Z"
        )
    argo.inject(Fault(404, {}, {"error": "not found", "code": 5}, path="/gone"))
    env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path)
    args = ("--argocd", argo.url, "--since", "2026-11-01", "--until", "2026-12-01")
    code, report, err = sync(capsys, env, *args)
    assert code == 0, err
    assert rows(report) == [("recorded", "ok")]
    skipped = sorted(r["detail"] for r in report["deploys"] if r["verdict"] == "skipped")
    assert skipped == [
        "application argocd/gone: gone since listed (404)",
        "application name '../../settings?x=' is not a Kubernetes name: not read",
        "application name 'UPPER' is not a Kubernetes name: not read",
    ]
    assert {r.path for r in argo.requests} == {
        "/api/v1/applications",
        "/api/v1/applications/gone",
        "/api/v1/applications/ok",
    }


def test_a_listed_name_that_is_not_text_is_a_skipped_row_said_once(
    cortex: FakeCortex, argo: FakeArgoCD, tmp_path: Path, capsys: Any
) -> None:
    # Names 5, ["x"], {"a": 1} (and namespace 7) were dropped without a word.
    odd: list[Any] = [5, None, ["x"], {"a": 1}, "bad-namespace"]
    for name in ["ok", *odd]:
        app = argo.add_application(name)
        argo.add_history(
            app, revision=SHA_1, started="2026-11-10T09:00:00Z", deployed="2026-11-10T09:01:00Z"
        )
    argo.applications[-1]["metadata"]["namespace"] = 7
    env = environ_for(f"sqlite:///{tmp_path / 'b.db'}", cortex, tmp_path)
    args = ("--argocd", argo.url, "--since", "2026-11-01", "--until", "2026-12-01")
    code, report, err = sync(capsys, env, *args)
    assert code == 0, err
    assert rows(report) == [("recorded", "ok")]
    skipped = [r["detail"] for r in report["deploys"] if r["verdict"] == "skipped"]
    assert sorted(skipped) == [
        "application name '' is not a Kubernetes name: not read",  # null: no name
        "application name 5 is not a Kubernetes name: not read",
        "application name ['x'] is not a Kubernetes name: not read",
        "application name {'a': 1} is not a Kubernetes name: not read",
        "application namespace 7 is not a Kubernetes name: not read",
    ]
    assert {r.path for r in argo.requests} == {"/api/v1/applications", "/api/v1/applications/ok"}
    # A read resumed after the first Application does not say them again.
    window = Window(
        datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc)
    )
    api = argocd_client(argo.url, ARGO_TOKEN)
    try:
        again = list(ArgoCDReader(api).read(window, resume=json.dumps({"after": "argocd/"})))
    finally:
        api.close()
    assert [f.skipped for f in again if f.skipped] == []
    assert len([f for f in again if f.event is not None]) == 1  # ok's


def test_the_reconcile_reads_argocd(db_url: str, cortex: FakeCortex, argo: FakeArgoCD) -> None:
    app = argo.add_application("api")
    argo.add_history(
        app, revision=SHA_1, started="2026-11-10T09:00:00Z", deployed="2026-11-10T09:01:00Z"
    )
    config = parse_config(
        {"database": db_url, "routes": ROUTES, "sync": {"argocd": [argo.url]}},
        environ={"CORTEX_API_URL": cortex.url},
    )
    assert not config.sources.enabled("argocd")  # the webhook is off; the history is read
    store = Store.from_url(db_url)
    client = CortexClient(cortex.url, TOKEN)
    now = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)
    reconcile = periodic.Reconcile(
        config, store, client, {"ARGOCD_AUTH_TOKEN": ARGO_TOKEN}, owner="r", clock=lambda: now
    )
    try:
        assert reconcile.run_once() is True
    finally:
        client.close()
        store.close()
    [stored] = cortex.all_deploys()
    assert (stored["entity"], stored["sha"]) == ("api", SHA_1)


@pytest.mark.parametrize("resume", ["garbage", "{}", '"x"', '{"after": 5}', "[1]", '{"a": "b"}'])
def test_a_saved_resume_point_it_cannot_have_given_is_a_clear_error(resume: str) -> None:
    # It was "internal error (KeyError: 'after')" and the like.
    from bridge.sync.api import ScmError
    from bridge.sync.argocd import ArgoCDReader

    reader = ArgoCDReader(api=None)  # type: ignore[arg-type]  # never reached
    with pytest.raises(ScmError, match="not a resume point of this reader"):
        next(iter(reader.read(None, resume=resume)))  # type: ignore[arg-type]
