"""One validation of a deploy (bridge.model.check_deploy), called by every face.

What the webhook refuses with a 400 is refused by ``send`` and the Action with one line naming
the flag, and skipped by ``sync`` (and so the periodic reconcile and http sources, which go
through its engine) with the reason, the rest of the page still recorded. Nothing is shortened
without a word.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.errors import InvalidDeploy
from bridge.fakecortex import FakeCortex
from bridge.model import (
    MAX_TITLE,
    DeployEvent,
    DeployRef,
    Status,
    check_deploy,
)
from bridge.store import Store
from bridge.sync.engine import Options, Reconciler, Verdict
from bridge.sync.reader import Found, Window
from tests.conftest import TOKEN, load_sample
from tests.receiver_kit import client_for, github_post, make_runtime

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


def event(n: int, **changes: object) -> DeployEvent:
    made = DeployEvent(
        source="github",
        repository="acme/api",
        event="deployment_status",
        ref=DeployRef("deployment", str(n)),
        status=Status.SUCCEEDED,
        timestamp=NOW - timedelta(minutes=n),
        title=f"Deploy {n}",
        sha=f"{n:040x}",
        environment="production",
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "entities", "field"),
    [
        pytest.param({"environment": "prod\x00"}, ["api"], "environment", id="nul"),
        pytest.param({"environment": "prod\r\nX: y"}, ["api"], "environment", id="crlf"),
        pytest.param({"environment": "\x1b[31mprod"}, ["api"], "environment", id="esc"),
        pytest.param({"environment": "e" * 20_000}, ["api"], "environment", id="20k-env"),
        pytest.param({}, [f"svc-{n}" for n in range(302)], "entity", id="302-entities"),
        pytest.param({}, [".."], "entity", id="dot-dot"),
        pytest.param({}, ["t" * 300], "entity", id="300-char-tag"),
        pytest.param(
            {"timestamp": datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)},
            ["api"],
            "timestamp",
            id="year-9999",
        ),
        pytest.param(
            {"timestamp": datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc)},
            ["api"],
            "timestamp",
            id="before-1970",
        ),
        pytest.param(
            {"started_at": datetime(9999, 1, 1, tzinfo=timezone.utc)},
            ["api"],
            "started at",
            id="started-9999",
        ),
        pytest.param(
            {"finished_at": datetime(2026, 11, 23)},  # no zone
            ["api"],
            "finished at",
            id="naive-finish",
        ),
    ],
)
def test_the_model_refuses_and_names_the_field(
    changes: dict[str, object], entities: list[str], field: str
) -> None:
    with pytest.raises(InvalidDeploy) as caught:
        check_deploy(event(1, **changes), entities, max_entities=300)
    assert caught.value.field == field


def test_bidirectional_overrides_are_mended_in_free_text_and_refused_in_names() -> None:
    # "null\u202eevil" was recorded as the deployer, shown in Cortex as other text than it is.
    checked = check_deploy(event(1, deployer_name="null\u202eevil", title="a\u2066b"), ["api"])
    assert (checked.event.deployer_name, checked.event.title) == ("null evil", "a b")
    with pytest.raises(InvalidDeploy) as caught:
        check_deploy(event(1, environment="prod\u202e"), ["api"])
    assert caught.value.field == "environment"


def test_a_long_title_is_shortened_and_said_so() -> None:
    checked = check_deploy(event(1, title="t" * 100_000), ["api"])
    assert len(checked.event.title) == MAX_TITLE
    assert checked.notes == (
        ("title", f"the title is 100000 characters long; recorded as its first {MAX_TITLE}"),
    )


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        pytest.param(["--entity-tag", ".."], "--entity-tag", id="dot-dot"),
        pytest.param(["--entity-tag", "t" * 300], "--entity-tag", id="300-chars"),
        pytest.param(
            ["--entity-tag", "api", "--environment", "e" * 300], "--environment", id="env"
        ),
        # Past what a window around the time can reach: the record was once made, then the
        # look after it crashed (OverflowError), in a traceback.
        pytest.param(
            ["--entity-tag", "api", "--timestamp", "9999-12-31T23:59:59Z"],
            "--timestamp",
            id="year-9999",
        ),
        pytest.param(
            ["--entity-tag", "api", "--timestamp", "0001-01-01T00:00:00+01:00"],
            "--timestamp",
            id="before-year-1",
        ),
        pytest.param(
            ["--entity-tag", "api", "--timestamp", "1969-07-20T20:17:40Z"],
            "--timestamp",
            id="before-1970",
        ),
        # The bridge reads these back from Cortex's record: "bridge" was dropped without a
        # word, and "status" made a succeeded deploy's record read as another state.
        pytest.param(
            ["--entity-tag", "api", "--custom-data", '{"bridge": 1}'],
            "--custom-data",
            id="custom-bridge",
        ),
        pytest.param(
            ["--entity-tag", "api", "--custom-data", "status: in_progress"],
            "--custom-data",
            id="custom-status",
        ),
    ],
)
def test_send_refuses_what_the_webhook_refuses_in_one_line(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str], argv: list[str], flag: str
) -> None:
    environ = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    assert main(["send", *argv], environ) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag}:"), err
    assert cortex.received == []


def test_send_says_when_it_shortens_a_title(
    cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"CORTEX_API_TOKEN": TOKEN, "CORTEX_API_URL": cortex.url}
    argv = ["send", "--entity-tag", "api", "--deploy-id", "b-1", "--title", "t" * 100_000]
    assert main(argv, environ) == 0
    err = capsys.readouterr().err
    assert "the title is 100000 characters long; recorded as its first 255: set --title" in err
    (stored,) = cortex.all_deploys()
    assert len(stored["title"]) == MAX_TITLE


class Page:
    """One page of an SCM's answer, some of it unusable."""

    name = "github:acme/api"

    def __init__(self, events: list[DeployEvent]) -> None:
        self.events = events

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        for found in self.events:
            yield Found(found)
        yield Found(None, skipped="", resume="page-2")


def test_sync_skips_what_the_model_refuses_and_records_the_rest_of_the_page(
    db_url: str, cortex: FakeCortex
) -> None:
    # On PostgreSQL a NUL or an oversized environment used to fail its item after Cortex had
    # accepted it, and hold up the rest of the page on every run.
    bad = [
        event(1, environment="prod\x00"),
        event(2, environment="prod\r\n"),
        event(3, environment="e" * 20_000),
        event(4, entities=tuple(f"svc-{n}" for n in range(302))),
    ]
    good = [event(5), event(6)]
    config = parse_config({"cortex": {"url": cortex.url}})
    store = Store.from_url(db_url)
    try:
        with CortexClient(cortex.url, TOKEN) as client:
            reconciler = Reconciler(
                config, client, store=store, clock=lambda: NOW, options=Options()
            )
            rows = list(reconciler.sync(Page([*bad, *good]), Window(NOW - timedelta(days=1), NOW)))
    finally:
        store.close()
    skipped = [row for row in rows if row.verdict is Verdict.SKIPPED and row.detail]
    assert len(skipped) == 4
    assert "control character" in skipped[0].detail
    assert "20000 characters long" in skipped[2].detail
    assert "302 entities" in skipped[3].detail
    assert [row.verdict for row in rows if row.verdict is Verdict.RECORDED] == [
        Verdict.RECORDED
    ] * 2
    assert len(cortex.all_deploys()) == 2


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"])
def test_the_webhook_refuses_a_time_out_of_range_and_stores_nothing(
    tmp_path: Path, when: str
) -> None:
    # A year-9999 deploy was once stored (202), then crashed the worker on every claim.
    runtime = make_runtime(tmp_path)
    try:
        doc = load_sample("github/deployment_status.success.json")
        doc["deployment_status"]["updated_at"] = doc["deployment_status"]["created_at"] = when
        answer = github_post(client_for(runtime), "deployment_status", doc)
        assert answer.status_code == 400, answer.json
        assert answer.json["reason"].startswith("the event's timestamp ")
        assert "1970-01-01T00:00:00Z" in answer.json["reason"]
        assert sum(runtime.store.counts().values()) == 0
    finally:
        runtime.store.close()


def test_the_webhook_says_when_it_shortens_a_title(tmp_path: Path) -> None:
    runtime = make_runtime(tmp_path)
    try:
        doc = load_sample("github/deployment_status.success.json")
        doc.pop("workflow_run", None)
        doc["deployment"]["description"] = "d" * 400
        answer = github_post(client_for(runtime), "deployment_status", doc)
    finally:
        runtime.store.close()
    assert answer.status_code == 202
    notes = answer.json.get("notes", [])
    assert notes == [f"title: the title is 400 characters long; recorded as its first {MAX_TITLE}"]


# A webhook's event is checked once, as routed: the reasons still come in the order of the
# two checks it replaced (what the payload named, the event as it came, the routed entities).
ROUTE_PAYLOAD = {"routes": [{"match": {}, "entities": ["{repo}"], "payload_entities": ["*"]}]}
LONG_ENV = "e" * 300


@pytest.mark.parametrize(
    ("config", "change", "reason"),
    [
        pytest.param(
            {},
            {"repository": {"full_name": "acme/pay\x07ments"}},
            "the event's repository holds a control character",
            id="a bad repository before the entity rendered from it",
        ),
        pytest.param(
            {},
            {"repository": {"full_name": "acme/" + "p" * 600}},
            "the event's repository is 605 characters long; at most 512",
            id="a long repository before the entity rendered from it",
        ),
        pytest.param(
            ROUTE_PAYLOAD,
            {
                "deployment": {"payload": {"cortex": {"entities": ["a\x00b"]}}},
                "repository": {"full_name": "acme/p\x07"},
            },
            "entity 'a\\x00b' holds a control character",
            id="an entity the payload named before the event's fields",
        ),
        pytest.param(
            {"environments": {"rename": {LONG_ENV: "prod"}}},
            {"deployment": {"environment": LONG_ENV}},
            "the event's environment is 300 characters long; at most 255",
            id="the event's own environment even when renamed",
        ),
        pytest.param(
            {"routes": [{"match": {"repository": "nobody/*"}, "entities": ["x"]}]},
            {"repository": {"full_name": "acme/pay\x07ments"}},
            "the event's repository holds a control character",
            id="refused before ignored when no route matches",
        ),
    ],
)
def test_a_webhook_event_is_refused_for_the_first_reason(
    tmp_path: Path, config: dict[str, object], change: dict[str, dict[str, object]], reason: str
) -> None:
    runtime = make_runtime(tmp_path, config)
    doc = load_sample("github/deployment_status.success.json")
    for part, fields in change.items():
        doc[part].update(fields)
    answer = github_post(client_for(runtime), "deployment_status", doc)
    assert (answer.status_code, answer.json["reason"]) == (400, reason)
    assert sum(runtime.store.counts().values()) == 0
