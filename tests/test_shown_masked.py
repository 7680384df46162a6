"""Secrets stay out of what the admin API, ``deliveries``, the console, stored errors and the
kept copy of a webhook show, wherever a text is cut; and the admin API and console answer as
HTTP says (an attacker and on-call pass over the console and admin API)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.cortex import answers
from bridge.cortex.transport import Response
from bridge.ingest import MAX_RECEIVED_BYTES, ingest, prepare_intake, received_copy
from bridge.redact import MASK, cut, spellings
from bridge.secrets import url_passwords
from bridge.store.browse import Filters
from tests.conftest import load_sample
from tests.receiver_kit import (
    ADMIN_TOKEN,
    GITHUB_SECRET,
    client_for,
    github_post,
    make_runtime,
)

CORTEX_TOKEN = "Zq7-Tok3n/with+odd=chars&more"


def test_a_cut_never_shows_part_of_a_secret() -> None:
    spelled = spellings(["SECRETTOKEN1234567890"])
    text = "A" * 290 + "SECRETTOKEN1234567890" + "B" * 50
    assert cut(text, 300, spelled) == "A" * 290 + MASK
    # One masked before the cut draws no text from past the cut into view.
    text = "A" * 250 + "SECRETTOKEN1234567890" + "C" * 20 + "SECRETTOKEN1234567890" + "D" * 50
    assert cut(text, 300, spelled) == "A" * 250 + MASK + "C" * 20 + MASK
    text = "SECRETTOKEN1234567890" + "E" * 300
    assert cut(text, 300, spelled) == MASK + "E" * 279
    assert cut("short SECRETTOKEN1234567890", 300, spelled) == "short " + MASK
    assert cut("x" * 400, 300, ()) == "x" * 300


def test_cortex_words_are_masked_before_they_are_cut() -> None:
    body = json.dumps({"message": "A" * 290 + CORTEX_TOKEN}).encode()
    error = answers.error_for(Response(400, {}, body), secrets=[CORTEX_TOKEN])
    for text in (str(error), error.body or ""):
        assert CORTEX_TOKEN[:6] not in text
    long_body = ("x" * 1990 + CORTEX_TOKEN).encode()
    error = answers.error_for(Response(500, {}, long_body), secrets=[CORTEX_TOKEN])
    assert CORTEX_TOKEN[:6] not in (error.body or "") and CORTEX_TOKEN[:6] not in str(error)


def test_the_kept_copy_masks_headers_the_cut_and_form_encoding() -> None:
    secret = "Adm/n+T0ken=xyz&q"
    spelled = spellings([secret])
    environ = {"HTTP_USER_AGENT": f"ci-bot token={secret}", "HTTP_X_GITHUB_EVENT": "ping"}
    # A secret across the cut at MAX_RECEIVED_BYTES.
    body = b"a" * (MAX_RECEIVED_BYTES - 5) + secret.encode() + b"b" * 100
    kept = json.loads(received_copy(environ, body, spelled))
    assert secret[:5] not in kept["body"] and kept["truncated"] is True
    assert kept["body"].startswith("a" * 1000)
    assert secret not in json.dumps(kept["headers"]) and MASK in kept["headers"]["User-Agent"]
    # GitHub's form encoding carries it percent-encoded.
    from urllib.parse import quote_plus

    form = ("payload=" + quote_plus(json.dumps({"title": secret}))).encode()
    kept = json.loads(received_copy({}, form, spelled))
    assert quote_plus(secret) not in kept["body"] and MASK in kept["body"]


def test_a_password_in_the_query_is_a_secret_held() -> None:
    assert url_passwords("postgresql+psycopg://bob@db/x?sslmode=require&password=pw%26") == ("pw&",)
    assert url_passwords("postgresql://bob:inline@db/x?password=other") == ("inline", "other")
    assert url_passwords("postgresql://bob@db/x?sslpassword=key1&x=1") == ("key1",)
    assert url_passwords("sqlite:///bridge.db") == ()


def _with_secrets_in_title(tmp_path: Path) -> tuple[Any, Any, int]:
    rt = make_runtime(
        tmp_path,
        held=(CORTEX_TOKEN,),
    )
    doc: dict[str, Any] = copy.deepcopy(load_sample("github/deployment_status.success.json"))
    doc["deployment_status"]["description"] = (
        f"cortex={CORTEX_TOKEN} admin={ADMIN_TOKEN} gh={GITHUB_SECRET} url=https://bob:hunter2@db/x"
    )
    doc["deployment"]["description"] = doc["deployment_status"]["description"]
    # Shown in a list's row too: a list is masked as a delivery's page is.
    doc["deployment"]["environment"] = "prod https://bob:hunter2@db.example/x"
    client = client_for(rt)
    # Stored as a bridge that did not hold these secrets yet stored it (an older version, or
    # a token set since): the receiver now masks them on the way in (test below).
    answer = ingest(
        "github",
        "deployment_status",
        doc,
        key="d-1",
        delivery_id="d-1",
        intake=prepare_intake(rt.config, ()),
        store=rt.store,
        clock=lambda: datetime.now(timezone.utc),
    )
    assert answer.status == 202, answer.body
    return rt, client, answer.body["id"]


def test_the_receiver_masks_a_secret_it_holds_before_it_stores_the_event(
    tmp_path: Path,
) -> None:
    # A CI echoing its environment into a deployment's description put the Cortex token in
    # the stored event, and from there in Cortex's record, for everyone who reads the catalog.
    rt = make_runtime(tmp_path, held=(CORTEX_TOKEN,))
    try:
        doc: dict[str, Any] = copy.deepcopy(load_sample("github/deployment_status.success.json"))
        doc["deployment"]["description"] = f"ship cortex={CORTEX_TOKEN} gh={GITHUB_SECRET}"
        doc["deployment_status"]["target_url"] = f"https://ci.example/x?t={CORTEX_TOKEN}"
        doc["deployment_status"]["log_url"] = doc["deployment_status"]["target_url"]
        answer = github_post(client_for(rt), "deployment_status", doc)
        assert answer.status_code == 202, answer.json
        stored = json.dumps(rt.store.get(answer.json["id"]).payload)
        assert CORTEX_TOKEN not in stored and GITHUB_SECRET not in stored
        event = rt.store.get(answer.json["id"]).payload["event"]
        assert event["title"] == f"ship cortex={MASK} gh={MASK}"
        assert event["url"] == f"https://ci.example/x?t={MASK}"
        assert [note.partition(":")[0] for note in answer.json["notes"]] == ["title", "url"]
        assert all("recorded with it masked" in note for note in answer.json["notes"])
        # A secret in what names the deploy (its key, its entity) is refused, never stored.
        doc["repository"]["full_name"] = f"acme/r-{CORTEX_TOKEN}"
        refused = github_post(client_for(rt), "deployment_status", doc, delivery="d-2")
        assert refused.status_code == 400
        assert refused.json["reason"].startswith("the event's repository holds a secret")
        assert CORTEX_TOKEN not in refused.get_data(as_text=True)
        # Nothing of it stored: the outbox holds the first delivery alone.
        stored_now, _ = rt.store.browse.deliveries(Filters(), limit=5)
        assert [d.id for d in stored_now] == [answer.json["id"]]
    finally:
        rt.store.close()


def test_the_admin_api_masks_what_the_console_masks(tmp_path: Path) -> None:
    rt, client, id = _with_secrets_in_title(tmp_path)
    try:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        stored = json.dumps(rt.store.get(id).payload)
        shown = client.get(f"/api/deliveries/{id}", headers=auth)
        page = client.get("/api/deliveries", headers=auth)
        assert CORTEX_TOKEN in stored and "hunter2" in stored, "the sample must carry them"
        for answer in (shown, page):
            text = answer.get_data(as_text=True)
            for secret in (CORTEX_TOKEN, ADMIN_TOKEN, GITHUB_SECRET, "hunter2"):
                assert secret not in text
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        rt.store.close()


def test_deliveries_show_and_list_mask_the_environments_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rt, _, id = _with_secrets_in_title(tmp_path)
    rt.store.close()
    environ = {
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "CORTEX_API_TOKEN": CORTEX_TOKEN,
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }
    for argv in (["show", str(id), "--json"], ["show", str(id)], ["list", "--json"], ["list"]):
        assert main(["deliveries", *argv], environ) == 0
        out = capsys.readouterr().out
        for secret in (CORTEX_TOKEN, ADMIN_TOKEN, GITHUB_SECRET, "hunter2"):
            assert secret not in out, argv


def test_the_admin_token_scheme_is_any_case_and_a_refusal_says_how(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path)
    try:
        client = client_for(rt)
        for scheme in ("Bearer", "bearer", "BEARER"):
            given = {"Authorization": f"{scheme} {ADMIN_TOKEN}"}
            assert client.get("/api/deliveries", headers=given).status_code == 200
        for wrong in (f"Basic {ADMIN_TOKEN}", "Bearer nope", "", ADMIN_TOKEN):
            answer = client.get("/api/deliveries", headers={"Authorization": wrong})
            assert answer.status_code == 401
            assert answer.headers["WWW-Authenticate"].startswith("Bearer ")
        assert client.get(f"/api/deliveries?token={ADMIN_TOKEN}").status_code == 401
    finally:
        rt.store.close()


def test_a_405_says_what_is_allowed_and_the_console_answers_its_own_paths(
    tmp_path: Path,
) -> None:
    rt = make_runtime(tmp_path)
    try:
        client = client_for(rt)
        answer = client.get("/webhooks/github")
        assert answer.status_code == 405 and "POST" in answer.headers["Allow"]
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answer = client.delete("/api/deliveries", headers=auth)
        assert answer.status_code == 405 and "GET" in answer.headers["Allow"]
        for method, path, code in (("PUT", "/console/deliveries", 405), ("GET", "/console/x", 404)):
            answer = client.open(path, method=method)
            assert answer.status_code == code
            assert answer.content_type.startswith("text/html")
            assert answer.headers["X-Frame-Options"] == "DENY"
            assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
            if code == 405:
                assert "GET" in answer.headers["Allow"]
        # The Host header never names where /console sends a browser.
        answer = client.get("/console", headers={"Host": "evil.example"})
        assert answer.status_code == 303 and "evil" not in answer.headers["Location"]
    finally:
        rt.store.close()


def test_a_url_password_the_64_kib_cut_splits_is_masked() -> None:
    body = b"a" * (MAX_RECEIVED_BYTES - 30) + b" https://deploybot:SuperSecretPassw0rd@db.example/x"
    kept = json.loads(received_copy({}, body, ()))
    assert "Super" not in kept["body"] and kept["body"].endswith("https://***")


@pytest.mark.parametrize(
    "spelled_as",
    [
        "s3cr%7Et*tok",  # Ruby's encode_www_form_component
        "s3cr%7et%2atok",  # lower-case hex
        "s3cr~t*tok",  # JavaScript's encodeURIComponent
        "s3cr~t%2Atok",  # Python's, Go's
    ],
)
def test_a_secret_is_masked_however_a_form_encoder_spelled_it(spelled_as: str) -> None:
    from bridge.redact import mask

    assert mask(f"payload={spelled_as}&x", spellings(["s3cr~t*tok"])) == "payload=***&x"


def test_deliveries_needs_no_secret_it_only_masks_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unreadable webhook secret file made `deliveries list` exit 2.
    rt = make_runtime(tmp_path)
    rt.store.close()
    environ = {
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "GITHUB_WEBHOOK_SECRET_FILE": str(tmp_path / "nowhere"),
        "GITHUB_TOKEN": "a",
        "GITHUB_TOKEN_FILE": str(tmp_path / "also-nowhere"),
    }
    assert main(["deliveries", "list"], environ) == 0
    assert "no deliveries" in capsys.readouterr().out


@pytest.mark.parametrize(
    "url", ["postgresql+psycopg://u:secretpart?ss@h/db", "postgresql+psycopg://u:pa/ss@h/db"]
)
def test_a_database_password_holding_a_delimiter_is_never_shown_in_part(url: str) -> None:
    from bridge.config.values import as_database_url
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError, match="percent-encode them") as caught:
        as_database_url(url, "database")
    assert "secret" not in str(caught.value) and "ss@" not in str(caught.value)


def test_the_routers_own_answers_under_api_are_not_kept_either(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path)
    try:
        client = client_for(rt)
        for answer in (client.get("/api/nope"), client.put("/api/deliveries")):
            assert answer.status_code in (404, 405)
            assert answer.headers["Cache-Control"] == "no-store"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        rt.store.close()


def test_a_secret_an_entity_template_routes_into_the_key_is_refused(tmp_path: Path) -> None:
    # A route's template ({project}) made an entity of the Application's project, which the
    # check never looked in: the token went to Cortex in the key and the request's URL, and
    # was masked only in the details it came from.
    from tests.receiver_kit import argocd_post

    routes = [{"match": {"source": "argocd"}, "entities": ["{project}-svc"]}]
    config = {"sources": {"argocd": {"enabled": True}}, "routes": routes}
    rt = make_runtime(tmp_path, config, held=(CORTEX_TOKEN,))
    try:
        doc: dict[str, Any] = copy.deepcopy(load_sample("argocd/sync.succeeded.json"))
        doc["app"]["project"] = f"p-{CORTEX_TOKEN}"
        refused = argocd_post(client_for(rt), doc)
        assert refused.status_code == 400, refused.json
        assert refused.json["reason"].startswith("the event's entity holds a secret")
        assert CORTEX_TOKEN not in refused.get_data(as_text=True)
        assert sum(rt.store.counts().values()) == 0  # nothing stored, nothing to send
    finally:
        rt.store.close()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("deployment", "sha"), CORTEX_TOKEN, id="a-sha-that-is-the-token"),
        pytest.param(("deployment", "sha"), f"{CORTEX_TOKEN}-{'x' * 60}", id="cut-at-60"),
        pytest.param(("deployment", "sha"), f"{'x' * 40}{CORTEX_TOKEN}", id="cut-across-it"),
        # The cut leaves fewer than 12 of its characters (MIN_SECRET): none of them shows.
        pytest.param(("deployment", "sha"), f"{'x' * 50}{CORTEX_TOKEN}", id="cut-at-its-start"),
        pytest.param(("deployment", "sha"), f"{'x' * 52}{CORTEX_TOKEN}", id="cut-at-4-of-it"),
        pytest.param(("deployment_status", "updated_at"), ADMIN_TOKEN * 2, id="a-time"),
    ],
)
def test_a_refusal_showing_a_payloads_value_never_shows_a_secret(
    tmp_path: Path, path: tuple[str, str], value: str
) -> None:
    # The model refuses a secret in what names a deploy without showing it (limits.md), but
    # a parser's refusal came first and showed the value: a sha holding the Cortex token was
    # answered "bad 'deployment.sha': 'Zq7-Tok3n/...'", which GitHub's Recent Deliveries
    # shows to the repository's admins, and the log and the journal kept.
    rt = make_runtime(tmp_path, held=(CORTEX_TOKEN,))
    try:
        doc: dict[str, Any] = copy.deepcopy(load_sample("github/deployment_status.success.json"))
        doc[path[0]][path[1]] = value
        answer = github_post(client_for(rt), "deployment_status", doc)
        assert answer.status_code == 400, answer.json
        reason = answer.json["reason"]
        assert MASK in reason and f"bad {'.'.join(path)!r}" in reason
        for secret in (CORTEX_TOKEN, ADMIN_TOKEN):
            assert secret[: len(secret) // 2] not in reason, reason
        assert CORTEX_TOKEN[:4] not in reason, reason
        rt.turned_away.flush()
        kept = rt.store.journal.turned_away(limit=5)
        assert [row.reason for row in kept] == [reason]
        assert sum(rt.store.counts().values()) == 0
    finally:
        rt.store.close()
