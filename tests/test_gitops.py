"""Flux and Argo CD: their events parsed, routed and received; one record per deploy.

Payloads are the samples under tests/samples/flux (notification-controller's Event, as the
generic-hmac Provider posts it) and tests/samples/argocd (the body the template published in
docs/gitops.md renders).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import parse_config, route
from bridge.cortex import CortexClient
from bridge.errors import MalformedEvent, SignatureError, UnsupportedEvent
from bridge.fakecortex import FakeCortex
from bridge.model import DeployEvent, DeployType, Status, bounded
from bridge.relay import missing_secrets
from bridge.sources import parse_event
from bridge.sources.flux import event_name
from bridge.sources.gitops import git_sha
from bridge.store.schema import records
from bridge.webhooks import verify_bearer, verify_flux
from bridge.worker import Deliverer, Worker
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import (
    ARGOCD_TOKEN,
    FLUX_SECRET,
    argocd_post,
    client_for,
    flux_post,
    runtime_on,
    sign,
)

SHA = "7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f809"
GITOPS_ON = {"sources": {"flux": {"enabled": True}, "argocd": {"enabled": True}}}


def flux(name: str, **changes: Any) -> DeployEvent:
    payload = load_sample(f"flux/{name}.json")
    payload.update(changes)
    return bounded(parse_event("flux", event_name(payload), payload))


def argocd(name: str) -> DeployEvent:
    return bounded(parse_event("argocd", "sync", load_sample(f"argocd/{name}.json")))


# -- parsing: Flux -------------------------------------------------------------------------


def test_kustomization_applied_revision() -> None:
    event = flux("kustomization.succeeded")
    assert (event.source, event.repository, event.event) == (
        "flux",
        "apps/payments-api",
        "kustomization",
    )
    assert event.status is Status.SUCCEEDED
    assert event.sha == SHA
    assert event.timestamp == datetime(2026, 11, 23, 10, 15, 42, tzinfo=timezone.utc)
    assert event.ref.id == f"5f2b8c1e-3d4a-4b6c-9e8f-0a1b2c3d4e5f/main@sha1:{SHA}"
    assert event.title == "Kustomization apps/payments-api main@sha1:7c8d9e0f1a2b"
    assert event.details["revision"] == f"main@sha1:{SHA}"
    assert event.deployer_name == "kustomize-controller"
    assert event.url is None and event.environment is None and event.type is None


def test_a_reconcile_of_the_same_revision_is_the_same_deploy() -> None:
    first, again = flux("kustomization.succeeded"), flux("kustomization.succeeded.again")
    assert first.ref == again.ref and first.timestamp < again.timestamp


@pytest.mark.parametrize(
    ("revision", "sha"),
    [
        pytest.param(f"main@sha1:{SHA}", SHA, id="v1"),
        pytest.param(f"main/{SHA}", SHA, id="before-v1"),
        pytest.param(f"sha1:{SHA.upper()}", SHA, id="commit-no-ref"),
        pytest.param(f"refs/tags/v1.2@sha1:{SHA}", SHA, id="tag"),
        pytest.param("latest@sha256:" + "ab" * 32, None, id="oci-digest"),
        pytest.param("sha256:" + "ab" * 32, None, id="bucket"),
        pytest.param("ab" * 32, None, id="old-bucket-64-hex"),
        pytest.param("6.5.4", None, id="chart-version"),
        pytest.param(SHA, None, id="bare-sha-is-not-flux-form"),
    ],
)
def test_revision_formats(revision: str, sha: str | None) -> None:
    assert git_sha(revision) == sha


def test_metadata_keys_with_the_group_prefix_are_read() -> None:
    event = flux("kustomization.legacy")
    assert event.sha == "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
    assert event.details["revision"] == "main/731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"


def test_oci_source_takes_the_sha_of_its_origin() -> None:
    event = flux("kustomization.oci")
    assert event.sha == "9a8b7c6d5e4f30211203a4b5c6d7e8f9a0b1c2d3"
    assert event.details["revision"].startswith("latest@sha256:")
    payload = load_sample("flux/kustomization.oci.json")
    del payload["metadata"]["originRevision"]
    bare = bounded(parse_event("flux", "Kustomization", payload))
    assert bare.sha is None and bare.details["revision"].startswith("latest@sha256:")


def test_helmrelease_upgrade_has_no_sha_and_is_named_by_chart_and_values() -> None:
    event = flux("helmrelease.upgraded")
    assert event.sha is None and event.status is Status.SUCCEEDED
    assert event.details["revision"] == "6.5.4"
    payload = load_sample("flux/helmrelease.upgraded.json")
    payload["metadata"]["token"] = "sha256:" + "0" * 64  # the same chart, new values
    other = parse_event("flux", "HelmRelease", payload)
    assert other.ref != event.ref


@pytest.mark.parametrize(
    ("reason", "severity", "status"),
    [
        ("InstallFailed", "error", Status.FAILED),
        ("UpgradeFailed", "error", Status.FAILED),
        ("InstallSucceeded", "info", Status.SUCCEEDED),
        ("TestFailed", "error", None),
        ("UninstallSucceeded", "info", None),
        ("ArtifactFailed", "error", None),
    ],
)
def test_helmrelease_reasons(reason: str, severity: str, status: Status | None) -> None:
    payload = load_sample("flux/helmrelease.upgraded.json")
    payload.update(reason=reason, severity=severity)
    if status is None:
        with pytest.raises(UnsupportedEvent, match="is not a deploy"):
            parse_event("flux", "HelmRelease", payload)
    else:
        assert parse_event("flux", "HelmRelease", payload).status is status


def test_helm_rollback_is_a_rollback() -> None:
    payload = load_sample("flux/helmrelease.upgraded.json")
    payload["reason"] = "RollbackSucceeded"
    event = parse_event("flux", "HelmRelease", payload)
    assert event.type is DeployType.ROLLBACK and event.ref.kind == "rollback"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("kustomization.progressing", Status.IN_PROGRESS),
        ("kustomization.failed", Status.FAILED),
    ],
)
def test_kustomization_lifecycle(name: str, status: Status) -> None:
    assert flux(name).status is status


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"reason": "DependencyNotReady"}, "is not a deploy", id="waiting"),
        pytest.param({"severity": "trace", "reason": "Progressing"}, "not a deploy", id="trace"),
        pytest.param({"metadata": {}}, "carries no revision", id="no-revision"),
        # Its severity is no reason: "Flux reason 'info'" had said it was.
        pytest.param({"reason": ""}, "a Flux info event with no reason is not", id="no-reason"),
    ],
)
def test_flux_events_that_are_not_deploys(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(UnsupportedEvent, match=reason):
        flux("kustomization.succeeded", **changes)


def test_other_kinds_are_not_deploys() -> None:
    payload = load_sample("flux/gitrepository.artifact.json")
    with pytest.raises(UnsupportedEvent, match="GitRepository events are not recorded"):
        parse_event("flux", event_name(payload), payload)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(lambda p: p["involvedObject"].pop("uid"), "'involvedObject.uid'", id="uid"),
        pytest.param(lambda p: p.update(timestamp="yesterday"), "'timestamp'", id="time"),
        pytest.param(lambda p: p.pop("timestamp"), "no 'timestamp'", id="no-time"),
        pytest.param(lambda p: p.update(severity="loud"), "'severity'", id="severity"),
        pytest.param(lambda p: p["metadata"].update({"cortex-tag": 7}), "non-string", id="meta"),
    ],
)
def test_malformed_flux_events(change: Any, message: str) -> None:
    payload = load_sample("flux/kustomization.succeeded.json")
    change(payload)
    with pytest.raises(MalformedEvent, match=message):
        parse_event("flux", "Kustomization", payload)


def test_flux_tag_and_environment_from_event_metadata() -> None:
    payload = load_sample("flux/kustomization.succeeded.json")
    payload["metadata"].update(
        {"cortex-tag": "payments-api, payments-db", "cortex-environment": "prod"}
    )
    event = parse_event("flux", "Kustomization", payload)
    assert event.entities == ("payments-api", "payments-db")
    assert event.environment == "prod"


def test_a_huge_message_is_cut_not_refused() -> None:
    payload = load_sample("flux/kustomization.failed.json")
    payload["message"] = "x" * 39_000  # Flux's own bound on a message
    event = bounded(parse_event("flux", "Kustomization", payload))
    assert len(event.details["message"]) == 255


# -- parsing: Argo CD ----------------------------------------------------------------------


def test_argocd_sync_succeeded() -> None:
    event = argocd("sync.succeeded")
    assert (event.source, event.repository, event.event) == (
        "argocd",
        "argocd/payments-api",
        "sync",
    )
    assert event.status is Status.SUCCEEDED
    assert event.sha == "3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f"
    assert event.timestamp == datetime(2026, 11, 23, 14, 3, 1, tzinfo=timezone.utc)
    assert event.started_at == datetime(2026, 11, 23, 14, 2, 10, tzinfo=timezone.utc)
    assert event.ref.kind == "operation"
    assert event.ref.id == "9c1f3a52-8b7d-4e21-a6c4-3d2e1f0b9a87/2026-11-23T14:02:10Z"
    assert event.url == "https://argocd.example.com/applications/argocd/payments-api"
    assert event.deployer_name == "automated" and event.deployer_email is None
    assert event.environment == "production"  # the cortex.io/environment label
    assert event.details["project"] == "payments"
    assert event.details["destination"] == "https://kubernetes.default.svc payments"


def test_argocd_operation_is_one_deploy_from_start_to_end() -> None:
    assert argocd("sync.running").ref == argocd("sync.succeeded").ref
    assert argocd("sync.running").status is Status.IN_PROGRESS


def test_argocd_failure_names_the_user() -> None:
    event = argocd("sync.failed")
    assert event.status is Status.FAILED
    assert (event.deployer_name, event.deployer_email) == ("ada@acme.example", "ada@acme.example")
    assert event.details["message"].startswith("one or more objects failed to apply")


def test_argocd_multi_source_keeps_each_revision() -> None:
    event = argocd("sync.multisource")
    assert event.sha == "8f9e0d1c2b3a49586776a5b4c3d2e1f0a9b8c7d6"
    assert event.details["revisions"] == [
        {"revision": "2.3.1", "repoURL": "https://charts.example.com", "chart": "checkout"},
        {
            "revision": "8f9e0d1c2b3a49586776a5b4c3d2e1f0a9b8c7d6",
            "repoURL": "https://github.com/acme/checkout-values.git",
        },
    ]
    assert event.entities == ("checkout-service",) and event.environment == "staging"
    assert event.deployer_name == "grace" and event.deployer_email is None


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        pytest.param(
            lambda p: p["operation"].update(phase="Terminating"),
            UnsupportedEvent,
            "sync phase 'terminating' is not recorded",
            id="terminating",
        ),
        pytest.param(lambda p: p.pop("operation"), MalformedEvent, "no 'operation'", id="no-op"),
        pytest.param(
            lambda p: p["operation"].pop("startedAt"), MalformedEvent, "startedAt", id="no-start"
        ),
        pytest.param(
            lambda p: p["operation"].update(finishedAt=None), MalformedEvent, "finishedAt", id="end"
        ),
        pytest.param(lambda p: p["app"].pop("uid"), MalformedEvent, "'app.uid'", id="no-uid"),
        pytest.param(
            lambda p: p["operation"].update(revisions=["x"] * 21),
            MalformedEvent,
            "at most 20",
            id="too-many-sources",
        ),
        pytest.param(
            lambda p: p["app"]["labels"].update({"cortex.io/tag": ["a"]}),
            MalformedEvent,
            "cortex.io/tag",
            id="tag-not-text",
        ),
    ],
)
def test_argocd_bad_or_ignored(change: Any, error: type[Exception], message: str) -> None:
    payload = load_sample("argocd/sync.succeeded.json")
    change(payload)
    with pytest.raises(error, match=message):
        parse_event("argocd", "sync", payload)


# -- signatures ------------------------------------------------------------------------------


def test_flux_signature() -> None:
    body = b'{"a": 1}'
    verify_flux("k", body, sign(body, "k"))
    verify_flux("k", body, sign(body, "k").upper().replace("SHA256=", "sha256="))
    for bad, reason in [
        (None, "missing X-Signature"),
        ("sha1=00", "not a sha256="),
        ("00", "not a sha256="),
        (sign(body, "other"), "does not match"),
        (sign(body + b" ", "k"), "does not match"),
    ]:
        with pytest.raises(SignatureError, match=reason):
            verify_flux("k", body, bad)
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_flux("", body, sign(body, ""))


def test_argocd_bearer() -> None:
    verify_bearer("t0k", "Bearer t0k")
    verify_bearer("t0k", "bearer  t0k ")
    for bad, reason in [
        (None, "missing Authorization"),
        ("Basic dDBr", "not a Bearer"),
        ("Bearer t0", "does not match"),
        ("Bearer t0k\u00e9", "does not match"),
    ]:
        with pytest.raises(SignatureError, match=reason):
            verify_bearer("t0k", bad)


# -- routing ---------------------------------------------------------------------------------


def test_routes_match_objects_and_projects() -> None:
    config = parse_config(
        {
            **GITOPS_ON,
            "routes": [
                {"match": {"source": "argocd", "project": "shop"}, "entities": ["shop-{name}"]},
                {
                    "match": {"source": "flux", "object": "apps/payments-*"},
                    "entities": ["{name}"],
                    "environment": "production",
                },
                {"match": {"repository": "apps/*"}, "entities": ["never"]},
                {"match": {}, "entities": ["{namespace}-{name}"]},
            ],
        }
    )
    found = route(config, flux("kustomization.succeeded"))
    assert (found.entities, found.environment, found.rule) == (
        ("payments-api",),
        "production",
        "routes[1]",
    )
    # A repository glob never matches a GitOps object, even one spelled like it.
    legacy = route(config, flux("kustomization.legacy"))
    assert (legacy.entities, legacy.environment) == (("apps-webapp",), None)
    # Argo CD: the project glob; the label's environment is the event's own.
    other = route(config, argocd("sync.succeeded"))
    assert (other.entities, other.environment) == (("argocd-payments-api",), "production")


def test_a_label_environment_wins_over_the_route_and_is_renamed() -> None:
    config = parse_config(
        {
            **GITOPS_ON,
            "routes": [
                {"match": {"source": "argocd"}, "entities": ["{name}"], "environment": "dev"}
            ],
            "environments": {"rename": {"production": "prod"}},
        }
    )
    assert route(config, argocd("sync.succeeded")).environment == "prod"


def test_route_environment_is_judged_by_environments() -> None:
    config = parse_config(
        {
            **GITOPS_ON,
            "routes": [{"match": {"source": "flux"}, "entities": ["{name}"], "environment": "qa"}],
            "environments": {"exclude": ["qa"]},
        }
    )
    with pytest.raises(UnsupportedEvent, match="environment 'qa' is excluded"):
        route(config, flux("kustomization.succeeded"))


def test_annotation_entities_need_the_route_to_allow_them() -> None:
    event = argocd("sync.multisource")
    closed = parse_config({**GITOPS_ON, "routes": [{"match": {}, "entities": ["{name}"]}]})
    with pytest.raises(
        UnsupportedEvent, match=r"annotation or label cortex\.io/tag names entities"
    ):
        route(closed, event)
    open_ = parse_config(
        {
            **GITOPS_ON,
            "routes": [{"match": {}, "entities": ["{name}"], "payload_entities": ["checkout-*"]}],
        }
    )
    assert route(open_, event).entities == ("checkout-service",)


def test_gitops_sources_are_off_by_default() -> None:
    with pytest.raises(UnsupportedEvent, match=r"disabled by sources\.flux\.enabled"):
        route(parse_config({}), flux("kustomization.succeeded"))


def test_serve_needs_the_secret_of_an_enabled_gitops_source() -> None:
    config = parse_config(GITOPS_ON)
    secrets = {"GITHUB_WEBHOOK_SECRET": "a", "GITLAB_WEBHOOK_TOKEN": "b"}
    assert missing_secrets(config, secrets) == ["FLUX_WEBHOOK_SECRET", "ARGOCD_WEBHOOK_TOKEN"]
    assert missing_secrets(parse_config({}), secrets) == []


def test_serve_refuses_to_start_naming_the_variable(tmp_path: Path) -> None:
    # A process of its own: serve makes its process cooperative (gevent) before it checks.
    path = tmp_path / "bridge.yaml"
    path.write_text("sources: {flux: {enabled: true}}\n")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GITHUB_WEBHOOK_SECRET": "a",
        "GITLAB_WEBHOOK_TOKEN": "b",
        "CORTEX_API_TOKEN": "c",
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
    }
    script = str(Path(sys.executable).with_name("cortex-deploy-bridge"))
    done = subprocess.run(
        [script, "serve", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "cortex-deploy-bridge: error: FLUX_WEBHOOK_SECRET is not set: webhooks could not be "
        "verified (set it, disable the source in the config, or pass --allow-unsigned)\n"
    )


def test_check_config_explains_a_gitops_decision(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "sources: {argocd: {enabled: true}}\n"
        "routes:\n"
        "  - match: {source: argocd, project: payments}\n"
        "    entities: ['{name}']\n"
        "    environment: production\n"
    )
    code = main(
        [
            "check-config",
            str(path),
            "--source",
            "argocd",
            "--project",
            "payments",
            "--try",
            "argocd/payments-api",
            "--try",
            "argocd/other:staging",
        ],
        {},
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert (
        "try argocd object argocd/payments-api, no environment, project 'payments': -> "
        "payments-api (routes[0]), recorded as environment 'production'"
    ) in out
    assert (
        "try argocd object argocd/other, environment 'staging', project 'payments': -> other "
        "(routes[0])"
    ) in out
    capsys.readouterr()
    assert main(["check-config", str(path), "--project", "x", "--try", "a/b"], {}) == 2
    refused = capsys.readouterr()
    assert (refused.out, refused.err) == (
        "",
        "cortex-deploy-bridge: error: --project is for --source argocd (an Application's "
        "project)\n",
    )
    code = main(["check-config", str(path), "--source", "flux", "--try", "apps/web"], {})
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "try flux object apps/web, no environment: ignored: source 'flux' is disabled by "
        "sources.flux.enabled"
    )


# -- the receiver ----------------------------------------------------------------------------


@pytest.fixture
def http(new_runtime: Any) -> Any:
    return client_for(new_runtime(GITOPS_ON))


def stored(client: Any) -> int:
    runtime = client.application.extensions["bridge"]
    return int(sum(runtime.store.counts().values()))


def test_flux_event_is_queued_once(http: Any) -> None:
    first = flux_post(http, "kustomization.succeeded")
    assert (first.status_code, first.json["status"]) == (202, "queued")
    # notification-controller retries identical bodies ...
    assert flux_post(http, "kustomization.succeeded").json == {
        "status": "duplicate",
        "id": first.json["id"],
    }
    # ... and kustomize-controller reports the revision again on every reconcile.
    again = flux_post(http, "kustomization.succeeded.again")
    assert (again.status_code, again.json["status"]) == (200, "duplicate")
    assert stored(http) == 1


def test_argocd_notification_is_queued_once(http: Any) -> None:
    first = argocd_post(http, "sync.succeeded")
    assert (first.status_code, first.json["status"]) == (202, "queued")
    assert argocd_post(http, "sync.succeeded").json["status"] == "duplicate"
    assert stored(http) == 1


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({"X-Signature": ""}, "missing X-Signature", id="none"),
        pytest.param({"X-Signature": "sha256=" + "0" * 64}, "does not match", id="forged"),
        pytest.param({"X-Signature": "md5=00"}, "not a sha256=", id="scheme"),
    ],
)
def test_flux_bad_signature_is_401_and_stores_nothing(
    http: Any, headers: dict[str, str], reason: str
) -> None:
    answer = flux_post(http, "kustomization.succeeded", headers=headers)
    assert answer.status_code == 401 and reason in answer.json["reason"]
    assert stored(http) == 0


def test_flux_wrong_secret_is_401(http: Any) -> None:
    answer = flux_post(http, "kustomization.succeeded", secret="not-" + FLUX_SECRET)
    assert answer.status_code == 401
    assert FLUX_SECRET not in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": ""}, id="none"),
        pytest.param({"Authorization": f"Basic {ARGOCD_TOKEN}"}, id="basic"),
        pytest.param({"Authorization": "Bearer nope"}, id="wrong"),
    ],
)
def test_argocd_bad_token_is_401_and_stores_nothing(http: Any, headers: dict[str, str]) -> None:
    answer = argocd_post(http, "sync.succeeded", headers=headers)
    assert answer.status_code == 401
    assert ARGOCD_TOKEN not in answer.get_data(as_text=True)
    assert stored(http) == 0


def test_malformed_gitops_bodies_are_400_and_store_nothing(http: Any) -> None:
    body = b"not json"
    answer = http.post(
        "/webhooks/flux",
        data=body,
        headers={"Content-Type": "application/json", "X-Signature": sign(body, FLUX_SECRET)},
    )
    assert (answer.status_code, answer.json["reason"]) == (400, "body is not valid JSON")
    no_kind = load_sample("flux/kustomization.succeeded.json")
    del no_kind["involvedObject"]["kind"]
    answer = flux_post(http, no_kind)
    assert answer.status_code == 400 and "involvedObject.kind" in answer.json["reason"]
    no_uid = load_sample("flux/kustomization.succeeded.json")
    del no_uid["involvedObject"]["uid"]
    assert flux_post(http, no_uid).status_code == 400
    bad = load_sample("argocd/sync.succeeded.json")
    bad["operation"]["startedAt"] = "soon"
    answer = argocd_post(http, bad)
    assert answer.status_code == 400 and "operation.startedAt" in answer.json["reason"]
    long_name = load_sample("argocd/sync.succeeded.json")
    long_name["app"]["name"] = "a" * 300
    assert argocd_post(http, long_name).status_code == 400
    assert stored(http) == 0


def test_gitops_body_over_the_limit_is_413(new_runtime: Any) -> None:
    http = client_for(new_runtime({**GITOPS_ON, "server": {"max_body_bytes": 512}}))
    assert flux_post(http, "kustomization.succeeded").status_code == 413
    assert argocd_post(http, "sync.succeeded").status_code == 413
    assert stored(http) == 0


def test_ignored_gitops_events_are_answered_why(http: Any) -> None:
    answer = flux_post(http, "gitrepository.artifact")
    assert answer.json == {"status": "ignored", "reason": "GitRepository events are not recorded"}
    running = argocd_post(http, "sync.running")
    assert running.json["status"] == "ignored" and "only finished" in running.json["reason"]
    assert stored(http) == 0


def test_disabled_gitops_source_is_ignored(new_runtime: Any) -> None:
    http = client_for(new_runtime())
    answer = flux_post(http, "kustomization.succeeded")
    assert answer.json["reason"] == "source flux is disabled (sources.flux.enabled)"
    # With no secret set (the default for a source that is off), the answer said "no webhook
    # secret to verify against" (401), which sent operators looking for a secret.
    http = client_for(new_runtime(flux_secret="", argocd_token=""))
    for post, source in ((flux_post, "flux"), (argocd_post, "argocd")):
        answer = post(http, "kustomization.succeeded" if source == "flux" else "sync.succeeded")
        assert answer.status_code == 404
        assert answer.json == {
            "status": "rejected",
            "reason": f"source {source} is disabled (sources.{source}.enabled)",
        }
    assert stored(http) == 0


def test_unsigned_only_with_allow_unsigned(new_runtime: Any) -> None:
    http = client_for(new_runtime(GITOPS_ON, flux_secret="", argocd_token=""))
    assert flux_post(http, "kustomization.succeeded").status_code == 401
    assert argocd_post(http, "sync.succeeded").status_code == 401
    http = client_for(new_runtime(GITOPS_ON, flux_secret="", argocd_token="", allow_unsigned=True))
    assert (
        flux_post(http, "kustomization.succeeded", headers={"X-Signature": ""}).status_code == 202
    )
    assert argocd_post(http, "sync.succeeded", headers={"Authorization": ""}).status_code == 202


# -- to Cortex: one record per deploy --------------------------------------------------------


class Relay:
    """The receiver and one worker on one database, delivering to the stand-in Cortex."""

    def __init__(self, db_url: str, cortex: FakeCortex, config: dict[str, Any]) -> None:
        self.now = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc)
        full = {**GITOPS_ON, "cortex": {"url": cortex.url, "timeout_seconds": 2}, **config}
        self.runtime = runtime_on(db_url, full, clock=lambda: self.now)
        self.http = client_for(self.runtime)
        self.client = CortexClient(cortex.url, TOKEN, timeout=2)
        deliverer = Deliverer(
            self.runtime.store, self.client, self.runtime.config, clock=self.clock
        )
        self.worker = Worker(
            self.runtime.store, deliverer, self.runtime.config.delivery, owner="t", clock=self.clock
        )

    def clock(self) -> datetime:
        return self.now

    def drain(self) -> None:
        for _ in range(20):
            if self.worker.run_once() == 0:
                return

    def close(self) -> None:
        self.client.close()
        self.runtime.store.close()


ROUTES = [{"match": {}, "entities": ["{name}"], "payload_entities": ["*"]}]


@pytest.fixture
def relay(db_url: str, cortex: FakeCortex) -> Iterator[Relay]:
    made = Relay(db_url, cortex, {"routes": ROUTES})
    yield made
    made.close()


def test_flux_deploy_becomes_one_record_at_its_first_report(
    relay: Relay, cortex: FakeCortex
) -> None:
    assert flux_post(relay.http, "kustomization.succeeded").status_code == 202
    relay.drain()
    later = load_sample("flux/kustomization.succeeded.again.json")
    later["metadata"]["cortex-environment"] = None  # a new body, the same deploy
    later["timestamp"] = "2026-11-23T11:25:44Z"
    for payload in ("kustomization.succeeded", "kustomization.succeeded.again", later):
        assert flux_post(relay.http, payload).status_code in (200, 202)
        relay.drain()
    (deploy,) = cortex.all_deploys()
    assert deploy["entity"] == "payments-api"
    assert deploy["sha"] == SHA
    assert deploy["timestamp"] == "2026-11-23T10:15:42Z"
    assert deploy["type"] == "DEPLOY"
    custom = deploy["customData"]
    assert custom["source"] == "flux" and custom["repository"] == "apps/payments-api"
    assert custom["revision"] == f"main@sha1:{SHA}"
    assert custom["bridge"]["idempotencyKey"] == (
        f"flux:apps/payments-api:revision:5f2b8c1e-3d4a-4b6c-9e8f-0a1b2c3d4e5f/main@sha1:{SHA}"
        ":-:payments-api"
    )


def test_a_repeat_the_outbox_lets_through_makes_no_second_record(
    db_url: str, cortex: FakeCortex, tmp_path: Path
) -> None:
    # Two relays on two databases (as after a lost database): the second's outbox has never
    # seen the deploy, and Cortex's own record is found by its key.
    first = Relay(db_url, cortex, {"routes": ROUTES})
    flux_post(first.http, "kustomization.succeeded")
    first.drain()
    first.close()
    second = Relay(f"sqlite:///{tmp_path / 'second.db'}", cortex, {"routes": ROUTES})
    assert flux_post(second.http, "kustomization.succeeded.again").status_code == 202
    second.drain()
    second.close()
    (deploy,) = cortex.all_deploys()
    assert deploy["timestamp"] == "2026-11-23T10:15:42Z"


def test_the_longest_kubernetes_names_are_recorded(relay: Relay, cortex: FakeCortex) -> None:
    # A namespace is a DNS label (63), an object's name a DNS subdomain (253).
    payload = load_sample("flux/kustomization.succeeded.json")
    namespace, name = "n" * 63, "m" * 253
    payload["involvedObject"].update(namespace=namespace, name=name)
    assert flux_post(relay.http, payload).status_code == 202
    relay.drain()
    (deploy,) = cortex.all_deploys()
    assert deploy["customData"]["repository"] == f"{namespace}/{name}"


def test_helm_upgrade_recorded_without_sha(relay: Relay, cortex: FakeCortex) -> None:
    flux_post(relay.http, "helmrelease.upgraded")
    relay.drain()
    (deploy,) = cortex.all_deploys()
    assert "sha" not in deploy and deploy["entity"] == "podinfo"
    assert deploy["customData"]["revision"] == "6.5.4"
    assert deploy["customData"]["token"].startswith("sha256:")


def helm_event(reason: str, chart: str, release: int | None, when: str) -> dict[str, Any]:
    """A HelmRelease event as helm-controller words it; the values (``token``) unchanged."""
    payload = load_sample("flux/helmrelease.upgraded.json")
    verb = {"InstallSucceeded": "install", "UpgradeSucceeded": "upgrade"}.get(reason)
    full = f"apps/podinfo.v{release}"
    payload.update(
        reason=reason,
        timestamp=when,
        severity="error" if reason.endswith("Failed") else "info",
        message=(
            f"Helm {verb} succeeded for release {full} with chart podinfo@{chart}"
            if verb
            else f"Helm rollback to previous release {full} with chart podinfo@{chart} succeeded"
            if reason == "RollbackSucceeded"
            else f"Helm upgrade failed for release apps/podinfo with chart podinfo@{chart}: boom"
        ),
    )
    payload["metadata"]["revision"] = chart
    return payload


def test_each_helm_release_revision_is_a_deploy_though_its_chart_and_values_came_before(
    relay: Relay, cortex: FakeCortex
) -> None:
    # A return to a chart version and values released before (a rollback, a second one, a
    # downgrade in Git) was answered "duplicate" of the first release of them, and lost.
    sent = [
        helm_event("InstallSucceeded", "6.5.3", 1, "2026-11-20T09:00:00Z"),
        helm_event("UpgradeSucceeded", "6.5.4", 2, "2026-11-21T09:00:00Z"),
        helm_event("UpgradeFailed", "6.6.0", None, "2026-11-22T09:00:00Z"),
        helm_event("RollbackSucceeded", "6.5.4", 2, "2026-11-22T09:01:00Z"),
        helm_event("UpgradeFailed", "6.6.1", None, "2026-11-23T09:00:00Z"),
        helm_event("RollbackSucceeded", "6.5.4", 4, "2026-11-23T09:01:00Z"),
        helm_event("UpgradeSucceeded", "6.5.3", 7, "2026-11-24T09:00:00Z"),  # a downgrade
    ]
    answers = [flux_post(relay.http, doc).json["status"] for doc in sent]
    # notification-controller retries an identical body: a repeat.
    assert flux_post(relay.http, sent[-1]).json["status"] == "duplicate"
    relay.drain()
    assert answers == ["queued", "queued", "ignored", "queued", "ignored", "queued", "queued"]
    made = [(d["customData"]["revision"], d["type"]) for d in cortex.all_deploys()]
    assert made == [
        ("6.5.3", "DEPLOY"),
        ("6.5.4", "DEPLOY"),
        ("6.5.4", "ROLLBACK"),
        ("6.5.4", "ROLLBACK"),
        ("6.5.3", "DEPLOY"),
    ]


def flux_revision(revision: str, when: str) -> dict[str, Any]:
    payload = load_sample("flux/kustomization.succeeded.json")
    payload["metadata"]["revision"] = revision
    payload["timestamp"] = when
    return payload


def test_flux_rollback_detected(relay: Relay, cortex: FakeCortex) -> None:
    a, b = "a" * 40, "b" * 40
    for revision, when in [
        (f"main@sha1:{a}", "2026-11-23T10:00:00Z"),
        (f"main@sha1:{b}", "2026-11-23T11:00:00Z"),
        (f"sha1:{a}", "2026-11-23T12:00:00Z"),  # the GitRepository pinned to the old commit
    ]:
        assert flux_post(relay.http, flux_revision(revision, when)).status_code == 202
        relay.drain()
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY", "DEPLOY", "ROLLBACK"]


@pytest.mark.parametrize(("failures", "records"), [(True, 1), (False, 0)])
def test_flux_failures_follow_record_failures(
    db_url: str, cortex: FakeCortex, failures: bool, records: int
) -> None:
    relay = Relay(db_url, cortex, {"routes": ROUTES, "record": {"failures": failures}})
    answer = flux_post(relay.http, "kustomization.failed")
    relay.drain()
    relay.close()
    assert len(cortex.all_deploys()) == records
    if failures:
        assert cortex.all_deploys()[0]["customData"]["status"] == "failed"
    else:
        assert answer.json["status"] == "ignored"


def test_argocd_lifecycle_updates_the_record_it_started(db_url: str, cortex: FakeCortex) -> None:
    relay = Relay(db_url, cortex, {"routes": ROUTES, "record": {"mode": "lifecycle"}})
    assert argocd_post(relay.http, "sync.running").status_code == 202
    relay.drain()
    (started,) = cortex.all_deploys()
    assert started["customData"]["status"] == "in_progress"
    assert argocd_post(relay.http, "sync.succeeded").status_code == 202
    relay.drain()
    (ended,) = cortex.all_deploys()
    assert ended["uuid"] == started["uuid"] and ended["customData"]["status"] == "succeeded"
    assert ended["timestamp"] == "2026-11-23T14:03:01Z"
    assert ended["customData"]["durationSeconds"] == 51
    assert ended["url"] == "https://argocd.example.com/applications/argocd/payments-api"
    relay.close()


def test_argocd_lifecycle_failure_deletes_the_start(db_url: str, cortex: FakeCortex) -> None:
    relay = Relay(db_url, cortex, {"routes": ROUTES, "record": {"mode": "lifecycle"}})
    running = load_sample("argocd/sync.failed.json")
    running["operation"].update(phase="Running", finishedAt=None)
    argocd_post(relay.http, running)
    relay.drain()
    assert len(cortex.all_deploys()) == 1
    argocd_post(relay.http, "sync.failed")
    relay.drain()
    assert cortex.all_deploys() == []
    relay.close()


def test_lifecycle_the_end_keeps_when_the_revision_started(db_url: str, cortex: FakeCortex) -> None:
    # Flux's success does not say when the revision began applying; its Progressing did.
    relay = Relay(db_url, cortex, {"routes": ROUTES, "record": {"mode": "lifecycle"}})
    progressing = load_sample("flux/kustomization.progressing.json")
    progressing["timestamp"] = "2026-11-23T10:13:12Z"
    for sample in (progressing, "kustomization.succeeded"):
        assert flux_post(relay.http, sample).status_code == 202
        relay.drain()
    relay.close()
    (deploy,) = cortex.all_deploys()
    assert deploy["customData"]["status"] == "succeeded"
    assert deploy["customData"]["startedAt"] == "2026-11-23T10:13:12Z"
    assert deploy["customData"]["durationSeconds"] == 150
    assert deploy["timestamp"] == "2026-11-23T10:15:42Z"


def test_lifecycle_a_start_stored_before_the_upgrade_keeps_its_time(
    db_url: str, cortex: FakeCortex
) -> None:
    # A start the relay stored before schema 5 (no started_at kept), ended by a new process:
    # the start is read from Cortex's record, with its stamp.
    config = {"routes": ROUTES, "record": {"mode": "lifecycle"}}
    progressing = load_sample("flux/kustomization.progressing.json")
    progressing["timestamp"] = "2026-11-23T10:13:12Z"
    first = Relay(db_url, cortex, config)
    assert flux_post(first.http, progressing).status_code == 202
    first.drain()
    with first.runtime.store.db.transaction(write=True) as conn:
        conn.execute(records.update().values(started_at=None))
    first.close()
    second = Relay(db_url, cortex, config)
    assert flux_post(second.http, "kustomization.succeeded").status_code == 202
    second.drain()
    second.close()
    (deploy,) = cortex.all_deploys()
    assert deploy["customData"]["startedAt"] == "2026-11-23T10:13:12Z"
    assert deploy["customData"]["durationSeconds"] == 150


@pytest.mark.parametrize(("failures", "state"), [(False, "succeeded"), (True, "failed")])
def test_lifecycle_a_failure_after_the_success_never_deletes_the_record(
    db_url: str, cortex: FakeCortex, failures: bool, state: str
) -> None:
    # A health check failing at a later reconcile of a revision that succeeded: the deploy
    # happened. Without record.failures the record stays as it is; with it, it turns failed.
    config = {"routes": ROUTES, "record": {"mode": "lifecycle", "failures": failures}}
    relay = Relay(db_url, cortex, config)
    succeeded = load_sample("flux/kustomization.succeeded.json")
    failed = load_sample("flux/kustomization.failed.json")
    failed["metadata"]["revision"] = succeeded["metadata"]["revision"]
    failed["timestamp"] = "2026-11-23T10:30:00Z"
    for payload in (succeeded, failed):
        assert flux_post(relay.http, payload).status_code == 202
        relay.drain()
    relay.close()
    (deploy,) = cortex.all_deploys()
    assert deploy["customData"]["status"] == state
    assert cortex.requests_to("DELETE") == []


def test_argocd_rollback_detected(relay: Relay, cortex: FakeCortex) -> None:
    start = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
    for n, sha in enumerate(["1" * 40, "2" * 40, "1" * 40]):
        payload = copy.deepcopy(load_sample("argocd/sync.succeeded.json"))
        begun = start + timedelta(hours=n)
        payload["operation"].update(
            revision=sha,
            startedAt=begun.strftime("%Y-%m-%dT%H:%M:%SZ"),
            finishedAt=(begun + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        assert argocd_post(relay.http, payload).status_code == 202
        relay.drain()
    assert [d["type"] for d in cortex.all_deploys()] == ["DEPLOY", "DEPLOY", "ROLLBACK"]
    assert [d["environment"] for d in cortex.all_deploys()] == ["production"] * 3
