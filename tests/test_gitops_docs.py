"""docs/gitops.md: its manifests are valid YAML of the right kinds, and the Argo CD template
renders what the parser reads.

The samples ``tests/samples/argocd/rendered.*.json`` are that template rendered by Go's
text/template with Sprig 3.2.3 (what Argo CD's notifications engine runs) against
Applications as the Kubernetes API serves them: a multi-source one started by a user whose
name holds quotes, a running one with no syncResult yet, a failed one whose message holds
quotes and a line break.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.model import Status, bounded
from bridge.sources import parse_event
from tests.conftest import SAMPLES, load_sample

DOC = Path(__file__).parent.parent / "docs" / "gitops.md"


def manifests() -> list[dict[str, Any]]:
    """Every YAML document of the doc's yaml blocks that is a Kubernetes object."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    found = []
    for block in blocks:
        for document in yaml.safe_load_all(block):
            if isinstance(document, dict) and "kind" in document:
                found.append(document)
    return found


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] == kind]


def test_flux_provider_and_alert_are_ready_to_apply() -> None:
    (provider,) = by_kind("Provider")
    assert provider["apiVersion"] == "notification.toolkit.fluxcd.io/v1beta3"
    assert provider["spec"]["type"] == "generic-hmac"
    assert provider["spec"]["address"].endswith("/webhooks/flux")
    (alert,) = by_kind("Alert")
    assert alert["spec"]["providerRef"]["name"] == provider["metadata"]["name"]
    assert {s["kind"] for s in alert["spec"]["eventSources"]} == {"Kustomization", "HelmRelease"}
    assert alert["spec"]["eventSeverity"] == "info"


def test_argocd_configmap_has_service_template_and_triggers() -> None:
    (configmap,) = by_kind("ConfigMap")
    data = configmap["data"]
    service = yaml.safe_load(data["service.webhook.cortex-bridge"])
    assert service["url"].endswith("/webhooks/argocd")
    headers = {h["name"]: h["value"] for h in service["headers"]}
    assert headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer $cortex-bridge-token",
    }
    template = yaml.safe_load(data["template.cortex-deploy"])["webhook"]["cortex-bridge"]
    assert template["method"] == "POST"
    triggers = yaml.safe_load(data["trigger.on-cortex-deploy"])
    phases = [re.findall(r"'(\w+)'", t["when"]) for t in triggers]
    assert phases == [["Running"], ["Succeeded"], ["Error", "Failed"]]
    assert all(t["send"] == ["cortex-deploy"] for t in triggers)
    secrets = by_kind("Secret")
    assert any("cortex-bridge-token" in s.get("stringData", {}) for s in secrets)


def test_the_template_carries_every_field_the_parser_reads() -> None:
    (configmap,) = by_kind("ConfigMap")
    body = yaml.safe_load(configmap["data"]["template.cortex-deploy"])["webhook"]["cortex-bridge"][
        "body"
    ]
    for key in (
        '"app"', '"uid"', '"name"', '"namespace"', '"project"', '"labels"', '"annotations"',
        '"cortex.io/tag"', '"cortex.io/environment"', '"destination"', '"sources"',
        '"operation"', '"phase"', '"startedAt"', '"finishedAt"', '"message"', '"initiatedBy"',
        '"revision"', '"revisions"', '"url"',
    ):  # fmt: skip
        assert key in body, key
    rendered = load_sample("argocd/rendered.multisource-user.json")
    assert set(rendered) == {"app", "operation", "url"}


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("rendered.multisource-user", Status.SUCCEEDED),
        ("rendered.running-no-syncresult", Status.IN_PROGRESS),
        ("rendered.failed-quoted-message", Status.FAILED),
        ("sync.succeeded", Status.SUCCEEDED),
        ("sync.running", Status.IN_PROGRESS),
        ("sync.failed", Status.FAILED),
        ("sync.multisource", Status.SUCCEEDED),
    ],
)
def test_every_argocd_sample_parses(name: str, status: Status) -> None:
    event = bounded(parse_event("argocd", "sync", load_sample(f"argocd/{name}.json")))
    assert event.status is status
    assert event.sha is not None and event.url is not None


def test_rendered_bodies_keep_quotes_and_names() -> None:
    user = bounded(
        parse_event("argocd", "sync", load_sample("argocd/rendered.multisource-user.json"))
    )
    assert user.deployer_name == 'grace "the admin"'
    assert user.entities == ("checkout-service",)
    failed = parse_event(
        "argocd", "sync", load_sample("argocd/rendered.failed-quoted-message.json")
    )
    assert failed.details["message"] == (
        'one or more objects failed to apply, reason: Deployment.apps "web" is invalid:'
    )
    running = parse_event(
        "argocd", "sync", load_sample("argocd/rendered.running-no-syncresult.json")
    )
    assert running.sha == "1234567890abcdef1234567890abcdef12345678"  # the requested revision
    assert running.repository == "team-web/web"


def test_samples_exist_for_both_sources() -> None:
    assert len(list((SAMPLES / "flux").glob("*.json"))) >= 8
    assert len(list((SAMPLES / "argocd").glob("*.json"))) >= 7
