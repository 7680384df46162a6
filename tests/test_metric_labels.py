"""Metric label values come from closed lists: no sender can make series at will.

A series lives for the life of the process (and, under ``serve``, as a file per process), so a
label value taken from a request (X-GitHub-Event, signed or not) or from an SCM's listing would
let anyone grow the server's memory and the scrape. Anything off the list counts as ``other``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bridge import metrics
from bridge.app import Runtime
from bridge.config import SyncSettings
from bridge.sources import PARSERS
from bridge.sync.periodic import source_label
from tests.conftest import load_sample
from tests.receiver_kit import client_for, github_post, make_runtime, sign


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A receiver on a fresh SQLite database."""
    rt = make_runtime(tmp_path)
    yield rt
    rt.store.close()


def series(name: str) -> list[dict[str, str]]:
    """The label sets of every sample of counter ``name`` in this process's registry."""
    return [
        sample.labels
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == f"{name}_total"
    ]


def test_invented_event_names_make_no_series(runtime: Runtime) -> None:
    client = client_for(runtime)
    body = json.dumps(load_sample("github/deployment_status.in_progress.json")).encode()
    for n in range(3000):
        signed = n % 2 == 0
        headers = {
            "X-GitHub-Event": f"invented-{n}",
            "X-GitHub-Delivery": f"labels-{n}",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body) if signed else "sha256=" + "0" * 64,
        }
        answer = client.post("/webhooks/github", data=body, headers=headers)
        assert answer.status_code == (200 if signed else 401)
    labels = series("bridge_webhooks_total")
    events = {label["event"] for label in labels}
    assert not any(event.startswith("invented") for event in events)
    known = {event for _, event in PARSERS} | {metrics.NO_EVENT, metrics.OTHER}
    assert events <= known
    # Counted all the same: as "other", answered ignored.
    other = [
        s
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "bridge_webhooks_total"
        and s.labels == {"source": "github", "event": "other", "answer": "ignored"}
    ]
    assert other and other[0].value >= 1500


def test_every_label_value_is_on_its_list(runtime: Runtime) -> None:
    client = client_for(runtime)
    github_post(client, "deployment_status", "deployment_status.success")
    github_post(client, "push", "deployment_status.success")
    for labels in series("bridge_webhooks_total"):
        assert labels["source"] in metrics.WEBHOOK_SOURCES | {metrics.OTHER}
        assert labels["answer"] in metrics.WEBHOOK_ANSWERS | {metrics.OTHER}
    for labels in series("bridge_deliveries_total"):
        assert labels["outcome"] in metrics.OUTCOMES | {metrics.OTHER}


@pytest.mark.parametrize(
    ("source", "event", "answer", "counted"),
    [
        pytest.param("github", "deployment_status", "queued", ("github", "deployment_status",
                     "queued"), id="known"),
        pytest.param("github", "Deployment Hook", "ignored", ("github", "other", "ignored"),
                     id="gitlab-event-on-github"),
        pytest.param("github", "x" * 1000, "ignored", ("github", "other", "ignored"), id="long"),
        pytest.param("gitlab", "Pipeline Hook", "duplicate", ("gitlab", "Pipeline Hook",
                     "duplicate"), id="gitlab"),
        pytest.param("nope", "-", "unauthorized", ("other", "other", "unauthorized"),
                     id="unknown-source"),
        pytest.param("github", "-", "made-up", ("github", "-", "other"), id="unknown-answer"),
    ],
)  # fmt: skip
def test_count_webhook_closes_each_label(
    source: str, event: str, answer: str, counted: tuple[str, str, str]
) -> None:
    child = metrics.WEBHOOKS.labels(*counted)
    before = child._value.get()
    metrics.count_webhook(source, event, answer)
    assert child._value.get() == before + 1


def test_a_settled_outcome_off_the_list_is_other() -> None:
    child = metrics.DELIVERIES.labels("other")
    before = child._value.get()
    metrics.count_settled("exploded", 1.0)
    assert child._value.get() == before + 1


SYNC = SyncSettings(
    github=("acme/api", "acme/web-*"),
    gitlab=("acme-group", "tools/*", "other-group/cli"),
    http=("spice",),
)


@pytest.mark.parametrize(
    ("reader", "label"),
    [
        pytest.param("github:acme/api", "github:acme/api", id="repo"),
        pytest.param("github:ACME/Api", "github:acme/api", id="repo-case"),
        pytest.param("github:acme/web-shop", "github:acme/web-*", id="glob"),
        pytest.param("github:acme/payments", "other", id="unlisted-repo"),
        pytest.param("gitlab:acme-group/sub/project", "gitlab:acme-group", id="group"),
        pytest.param("gitlab:tools/lint", "gitlab:tools", id="group-star"),
        pytest.param("gitlab:other-group/cli", "gitlab:other-group/cli", id="project"),
        pytest.param("gitlab:other-group/web", "other", id="unlisted-project"),
        pytest.param("gitlab:acme-groupie/x", "other", id="prefix-is-not-a-group"),
        pytest.param("http:spice", "http:spice", id="http"),
        pytest.param("http:salt", "other", id="unknown-http"),
        pytest.param("argocd:whatever", "other", id="unknown-kind"),
    ],
)
def test_reconcile_source_label_is_the_configured_entry(reader: str, label: str) -> None:
    assert source_label(reader, SYNC) == label


def test_a_group_listing_thousands_of_projects_makes_one_series() -> None:
    labels = {source_label(f"gitlab:acme-group/p{n}", SYNC) for n in range(3000)}
    assert labels == {"gitlab:acme-group"}


def counted(source: str, answer: str) -> float:
    """bridge_webhooks_total of ``source`` answered ``answer``, every event summed."""
    return sum(
        s.value
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "bridge_webhooks_total"
        and s.labels["source"] == source
        and s.labels["answer"] == answer
    )


@pytest.mark.parametrize(
    ("body", "headers", "code"),
    [
        pytest.param(b"not json", {"Content-Type": "application/json"}, 400, id="not-json"),
        pytest.param(b"{}", {"Content-Type": "text/plain"}, 415, id="media-type"),
        pytest.param(b"x" * 26_214_401, {"Content-Type": "application/json"}, 413, id="too-large"),
    ],
)
def test_every_webhook_turned_away_is_counted(
    tmp_path: Path, body: bytes, headers: dict[str, str], code: int
) -> None:
    rt = make_runtime(tmp_path)
    signed = {"X-GitHub-Event": "deployment_status", "X-Hub-Signature-256": sign(body)}
    try:
        before = counted("github", "rejected")
        answer = client_for(rt).post("/webhooks/github", data=body, headers={**headers, **signed})
        assert answer.status_code == code
        assert counted("github", "rejected") == before + 1
    finally:
        rt.store.close()


def test_a_disabled_source_turned_away_is_counted(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, flux_secret="")
    try:
        before = counted("flux", "rejected")
        answer = client_for(rt).post("/webhooks/flux", data=b"{}")
        assert answer.status_code == 404
        assert counted("flux", "rejected") == before + 1
    finally:
        rt.store.close()
