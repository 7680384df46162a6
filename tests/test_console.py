"""The console at /console: who gets in, CSRF and Origin, its pages, on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.app import Runtime, create_app
from bridge.console import FORM_BYTES
from bridge.console.access import SESSION_COOKIE, Keys, foreign_origin
from bridge.ingest import MAX_RECEIVED_BYTES, ingest, prepare_intake, received_copy
from bridge.redact import spellings
from bridge.store.browse import Filters
from bridge.store.journal import ReconcileRun, TurnedAway
from tests.conftest import load_sample
from tests.console_kit import ORIGIN, csrf_of, page_csrf, sign_in
from tests.receiver_kit import (
    ADMIN_TOKEN,
    GITHUB_SECRET,
    GITLAB_TOKEN,
    client_for,
    github_post,
    gitlab_post,
    sign,
)

PAGES = [
    "/console/deliveries",
    "/console/dead",
    "/console/turned-away",
    "/console/entities",
    "/console/charts",
    "/console/reconcile",
]
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def runtime(new_runtime: Callable[..., Runtime]) -> Runtime:
    return new_runtime(clock=lambda: T0)


def signed_in(runtime: Runtime) -> Any:
    client = client_for(runtime)
    assert sign_in(client).status_code == 303
    return client


# -- access ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [*PAGES, "/console", "/console/", "/console/sign-in", "/console/static/console.css"]
)
def test_without_an_admin_token_every_console_path_is_404(
    new_runtime: Callable[..., Runtime], path: str
) -> None:
    client = client_for(new_runtime(admin_token=""))
    assert client.get(path).status_code == 404
    assert client.post(path, data={"token": ""}).status_code in (404, 405)


def test_pages_redirect_to_sign_in_and_posts_are_refused(runtime: Runtime) -> None:
    client = client_for(runtime)
    for path in PAGES:
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["Location"].endswith("/console/sign-in")
    assert client.post("/console/dead/retry", headers={"Origin": ORIGIN}).status_code == 401
    with client.get("/console/static/console.css") as css:
        assert css.status_code == 200
        assert css.mimetype == "text/css"


def test_sign_in_gives_a_strict_http_only_cookie_without_the_token(runtime: Runtime) -> None:
    client = client_for(runtime)
    answer = sign_in(client)
    assert answer.status_code == 303
    assert answer.headers["Location"].endswith("/console/deliveries")
    cookie = next(
        v for v in answer.headers.getlist("Set-Cookie") if v.startswith(SESSION_COOKIE + "=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http, no proxy said otherwise
    assert ADMIN_TOKEN not in cookie
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, path
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
        # Every page is linked from the navigation.
        for other in PAGES:
            assert f'href="{other}"'.encode() in page.data, (path, other)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param({"base_url": "https://localhost"}, id="https"),
        pytest.param({"headers": {"X-Forwarded-Proto": "https"}}, id="behind-a-proxy"),
        pytest.param({"headers": {"X-Forwarded-Proto": "HTTPS"}}, id="proxy-upper-case"),
        pytest.param({"headers": {"X-Forwarded-Proto": "https, http"}}, id="proxy-chain"),
    ],
)
def test_the_cookie_is_secure_over_https(runtime: Runtime, how: dict[str, Any]) -> None:
    client = client_for(runtime)
    headers = {"Origin": how.get("base_url", ORIGIN), **how.get("headers", {})}
    form = client.get("/console/sign-in", **{k: v for k, v in how.items() if k == "base_url"})
    answer = client.post(
        "/console/sign-in",
        data={"token": ADMIN_TOKEN, "csrf": csrf_of(form.data)},
        headers=headers,
        base_url=how.get("base_url", "http://localhost"),
    )
    assert answer.status_code == 303
    assert all("Secure" in v for v in answer.headers.getlist("Set-Cookie"))


def test_a_wrong_token_signs_nobody_in(runtime: Runtime) -> None:
    client = client_for(runtime)
    answer = sign_in(client, token=ADMIN_TOKEN + "x")
    assert answer.status_code == 401
    assert b"not the admin token" in answer.data
    assert not any(v.startswith(SESSION_COOKIE + "=") for v in answer.headers.getlist("Set-Cookie"))
    assert client.get("/console/deliveries").status_code == 303


@pytest.mark.parametrize(
    ("form", "origin", "status"),
    [
        pytest.param({}, ORIGIN, 403, id="no-csrf"),
        pytest.param({"csrf": "0" * 64}, ORIGIN, 403, id="wrong-csrf"),
        pytest.param(None, "https://evil.example", 403, id="foreign-origin"),
        pytest.param(None, "null", 403, id="null-origin"),
    ],
)
def test_sign_in_needs_its_csrf_token_and_our_origin(
    runtime: Runtime, form: dict[str, str] | None, origin: str, status: int
) -> None:
    client = client_for(runtime)
    token = csrf_of(client.get("/console/sign-in").data)
    data = {"token": ADMIN_TOKEN, **(form if form is not None else {"csrf": token})}
    answer = client.post("/console/sign-in", data=data, headers={"Origin": origin})
    assert answer.status_code == status
    assert client.get("/console/deliveries").status_code == 303


def queued(runtime: Runtime, client: Any, delivery: str = "d1") -> int:
    answer = github_post(
        client, "deployment_status", "deployment_status.success", delivery=delivery
    )
    assert answer.status_code == 202, answer.json
    return int(answer.json["id"])


def kill(runtime: Runtime, id: int) -> None:
    """Claim the delivery and dead-letter it, as the worker would."""
    (claimed,) = runtime.store.claim(owner="w", now=T0, lease_seconds=30)
    assert claimed.id == id
    runtime.store.settle(
        id, "dead", owner="w", error="cortex answered 400: entity not found", results={}, now=T0
    )


@pytest.mark.parametrize(
    ("csrf", "headers", "status"),
    [
        pytest.param(None, {"Origin": ORIGIN}, 403, id="no-csrf"),
        pytest.param("f" * 64, {"Origin": ORIGIN}, 403, id="wrong-csrf"),
        pytest.param("page", {"Origin": "http://localhost.evil.example"}, 403, id="foreign"),
        pytest.param("page", {"Sec-Fetch-Site": "cross-site"}, 403, id="cross-site-fetch"),
        pytest.param("page", {"Origin": ORIGIN}, 303, id="good"),
        pytest.param("page", {}, 303, id="no-origin-not-a-browser"),
        pytest.param(
            "page",
            {"Origin": "https://bridge.example", "X-Forwarded-Host": "bridge.example"},
            303,
            id="behind-a-proxy",
        ),
    ],
)
def test_a_retry_needs_the_csrf_token_and_our_origin(
    runtime: Runtime, csrf: str | None, headers: dict[str, str], status: int
) -> None:
    client = signed_in(runtime)
    id = queued(runtime, client)
    kill(runtime, id)
    form = {"csrf": page_csrf(client) if csrf == "page" else csrf} if csrf else {}
    answer = client.post(f"/console/deliveries/{id}/retry", data=form, headers=headers)
    assert answer.status_code == status
    found = runtime.store.get(id)
    assert found is not None
    assert found.status == ("queued" if status == 303 else "dead")


def test_another_sessions_csrf_token_is_refused(runtime: Runtime) -> None:
    one, other = signed_in(runtime), signed_in(runtime)
    id = queued(runtime, one)
    kill(runtime, id)
    answer = one.post(
        f"/console/deliveries/{id}/retry",
        data={"csrf": page_csrf(other)},
        headers={"Origin": ORIGIN},
    )
    assert answer.status_code == 403


def test_sign_out_ends_the_session(runtime: Runtime) -> None:
    client = signed_in(runtime)
    forged = client.post("/console/sign-out", headers={"Origin": ORIGIN})
    assert forged.status_code == 403  # without its CSRF token
    assert client.get("/console/deliveries").status_code == 200
    answer = client.post(
        "/console/sign-out", data={"csrf": page_csrf(client)}, headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 303
    assert client.get("/console/deliveries").status_code == 303


def test_a_form_is_read_within_its_bound_and_the_room_for_unverified_bodies(
    runtime: Runtime,
) -> None:
    # A sign-in is anyone's to send: its body is read before its sender is known, so it is
    # bounded and counted as a signed webhook's is (docs/limits.md), not left to Werkzeug's
    # 500 KB a form, outside the process's room, on every connection at once.
    client = client_for(runtime)
    form = {"token": ADMIN_TOKEN, "csrf": csrf_of(client.get("/console/sign-in").data)}
    big = client.post(
        "/console/sign-in",
        data={**form, "pad": "x" * FORM_BYTES},
        headers={"Origin": ORIGIN},
    )
    assert big.status_code == 413
    assert big.json == {"status": "rejected", "reason": "body too large"}
    held = runtime.unverified
    held.take(held.limit)  # others' bodies fill the room
    busy = client.post("/console/sign-in", data=form, headers={"Origin": ORIGIN})
    assert busy.status_code == 503 and busy.json["status"] == "busy"
    assert busy.headers["Retry-After"] == "5"
    held.take(-held.limit)
    assert client.post("/console/sign-in", data=form, headers={"Origin": ORIGIN}).status_code == 303
    assert held.held == 0 and held.peak > held.limit - FORM_BYTES
    # The largest form the console makes, "Retry selected" with 200 ids, fits.
    ids = [str(2**63 - 1 - n) for n in range(200)]
    retried = client.post(
        "/console/dead/retry",
        data={"csrf": page_csrf(client, "/console/dead"), "id": ids},
        headers={"Origin": ORIGIN},
    )
    assert retried.status_code == 303


def test_sessions_expire_and_a_new_token_ends_them() -> None:
    keys = Keys("one")
    _, cookie = keys.new_session(1000.0)
    assert keys.session(cookie, 1001.0) is not None
    assert keys.session(cookie, 1000.0 + 8 * 3600) is None
    assert Keys("two").session(cookie, 1001.0) is None
    assert keys.session(cookie.replace(".", "x", 1), 1001.0) is None
    assert "one" not in cookie


@pytest.mark.parametrize(
    ("origin", "site", "foreign"),
    [
        ("http://relay:8080", None, False),
        ("https://relay:8080", None, False),
        ("http://relay:8081", None, True),
        ("http://relay:8080.evil", None, True),
        ("null", None, True),
        ("file://", None, True),
        ("http://[", None, True),  # no URL at all: it had been a 500
        ("http://[::1", None, True),
        (None, "same-origin", False),
        (None, "same-site", True),
        (None, None, False),
    ],
)
def test_foreign_origin(origin: str | None, site: str | None, foreign: bool) -> None:
    assert foreign_origin(origin, site, ("relay:8080",)) is foreign


@pytest.mark.parametrize("cookie", ["1.a.\u00e9", "9" * 3000 + ".a.b", "\u0661.a.b"])
def test_a_cookie_of_any_text_is_no_session_never_a_500(runtime: Runtime, cookie: str) -> None:
    # Another app on the host (another port) may set it: compare_digest refused str that is
    # not ASCII, and every console page answered 500 to the operator.
    client = client_for(runtime)
    client.set_cookie(SESSION_COOKIE, cookie, path="/console")
    assert client.get("/console/sign-in").status_code == 200
    assert client.get("/console/deliveries").status_code == 303


def test_a_post_whose_origin_is_no_url_is_refused_as_foreign(runtime: Runtime) -> None:
    client = signed_in(runtime)
    answer = client.post("/console/sign-out", headers={"Origin": "http://["})
    assert answer.status_code == 403


def test_behind_a_proxy_that_rewrites_host_the_forwarded_host_is_ours() -> None:
    assert not foreign_origin("https://bridge.example", None, ("upstream:8080", "bridge.example"))
    assert foreign_origin("https://evil.example", None, ("upstream:8080", "bridge.example"))


# -- pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "deliveries?q=%00",
        "deliveries?repository=a%00b",
        "deliveries?entity=%1b[2J",
        "deliveries?environment=a%0ab",
        "deliveries?source=%00",
        "turned-away?source=%00",
        "turned-away?delivery=x%00",
    ],
)
def test_a_filter_with_a_control_character_is_a_400_naming_it(runtime: Runtime, query: str) -> None:
    page = signed_in(runtime).get("/console/" + query)
    assert page.status_code == 400
    assert page.content_type.startswith("text/html")  # the console's page, not the API's JSON
    name = query.split("?")[1].split("=", maxsplit=1)[0]
    assert f"the {name} filter holds a control character".encode() in page.data


def test_deliveries_filter_search_and_page(runtime: Runtime) -> None:
    client = signed_in(runtime)
    github = [queued(runtime, client, f"d{n}") for n in range(3)]
    gitlab = gitlab_post(client, "Deployment Hook", "deployment.success")
    assert gitlab.status_code == 202
    one = runtime.store.get(github[0])
    assert one is not None
    event = one.payload["event"]

    def ids(query: str) -> list[int]:
        page = client.get("/console/deliveries?" + query)
        assert page.status_code == 200
        return [
            d.id
            for d in runtime.store.browse.deliveries(_filters(query), limit=50, after=None)[0]
            if f'href="/console/deliveries/{d.id}"'.encode() in page.data
        ]

    everything = [gitlab.json["id"], *reversed(github)]
    assert ids("") == everything
    assert ids("source=github") == list(reversed(github))
    assert ids("source=gitlab") == [gitlab.json["id"]]
    assert ids(f"repository={event['repository']}") == list(reversed(github))
    assert ids(f"environment={event['environment']}&source=github") == list(reversed(github))
    entity = one.payload["entities"][0]
    assert ids(f"entity={entity}&source=github") == list(reversed(github))
    assert set(github) <= set(ids(f"entity={entity}"))
    assert ids("entity=nobody") == []
    assert ids(f"q={event['sha'][:10]}") == list(reversed(github))
    assert ids(f"q={github[1]}") == [github[1]]
    assert ids("q=d2") == [github[2]]  # the GitHub delivery id, in the dedupe key
    assert ids("status=dead") == []
    rows, cursor = runtime.store.browse.deliveries(_filters(""), limit=2)
    assert [d.id for d in rows] == everything[:2]
    assert cursor is not None
    older = client.get(f"/console/deliveries?after={cursor}")
    assert f'href="/console/deliveries/{everything[2]}"'.encode() in older.data
    assert f'href="/console/deliveries/{everything[0]}"'.encode() not in older.data


def _filters(query: str) -> Any:
    from urllib.parse import parse_qs

    from bridge.store.browse import Filters

    args = {k: v[0] for k, v in parse_qs(query).items()}
    return Filters(
        status=args.get("status", ""),
        source=args.get("source", ""),
        repository=args.get("repository", ""),
        entity=args.get("entity", ""),
        environment=args.get("environment", ""),
        search=args.get("q", ""),
    )


def test_one_delivery_shows_received_sent_attempts_and_uuid(runtime: Runtime) -> None:
    client = signed_in(runtime)
    id = queued(runtime, client)
    found = runtime.store.get(id)
    assert found is not None
    entity = found.payload["entities"][0]
    runtime.store.claim(owner="w", now=T0, lease_seconds=30)
    runtime.store.settle(
        id,
        "retrying",
        owner="w",
        error="cortex answered 503",
        next_attempt_at=T0,
        results={},
        now=T0,
    )
    runtime.store.claim(owner="w", now=T0, lease_seconds=30)
    result = {"action": "created", "uuid": "rec-uuid-1234", "type": "DEPLOY"}
    runtime.store.settle(
        id, "delivered", owner="w", results={entity: result}, now=T0 + timedelta(seconds=2)
    )
    page = client.get(f"/console/deliveries/{id}")
    assert page.status_code == 200
    text = page.data.decode()
    assert "rec-uuid-1234" in text
    assert "cortex answered 503" in text  # attempt 1's answer
    assert f"POST /api/v1/catalog/{entity}/deploys" in text
    assert "X-GitHub-Delivery" in text
    assert "X-Hub-Signature-256" not in text
    assert GITHUB_SECRET not in text
    assert [a.outcome for a in runtime.store.browse.attempts(id)] == ["retrying", "delivered"]
    missing = client.get("/console/deliveries/999999")
    assert missing.status_code == 404
    assert b"Not found (404)" in missing.data
    assert client.get("/console/deliveries/abc").status_code == 404


def post_bytes(client: Any, body: bytes, delivery: str) -> Any:
    """A deployment_status of exactly these bytes, signed; stored (202)."""
    headers = {
        "X-GitHub-Event": "deployment_status",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, GITHUB_SECRET),
        "Content-Type": "application/json",
    }
    answer = client.post("/webhooks/github", data=body, headers=headers)
    assert answer.status_code == 202, answer.json
    return answer


def test_a_body_nested_deeper_than_json_reads_is_shown_as_it_came(runtime: Runtime) -> None:
    # orjson takes 1,024 levels and stores the event; the page's json.loads raised
    # RecursionError, and the page was a 500 saying "the event was not stored".
    from tests.conftest import load_sample

    client = signed_in(runtime)
    doc = load_sample("github/deployment_status.success.json")
    doc["deployment"]["payload"] = {}
    doc["junk"] = "@@"
    body = json.dumps(doc).replace('"@@"', "[" * 1000 + "]" * 1000).encode()
    answer = post_bytes(client, body, "deep-1")
    page = client.get(f"/console/deliveries/{answer.json['id']}")
    assert page.status_code == 200
    assert "[[[[" in page.data.decode()


def test_dead_letters_retry_one_or_several(runtime: Runtime) -> None:
    client = signed_in(runtime)
    ids = [queued(runtime, client, f"d{n}") for n in range(3)]
    for id in ids:
        kill(runtime, id)
    page = client.get("/console/dead")
    assert all(f'value="{id}"'.encode() in page.data for id in ids)
    csrf = csrf_of(page.data)
    several = client.post(
        "/console/dead/retry",
        data={"csrf": csrf, "id": [str(ids[0]), str(ids[1])], "selected": "1"},
        headers={"Origin": ORIGIN},
    )
    assert several.status_code == 303
    assert "retried=2" in several.headers["Location"]
    one = client.post(
        "/console/dead/retry",
        data={"csrf": csrf, "only": str(ids[2]), "id": [str(ids[0])]},
        headers={"Origin": ORIGIN},
    )
    assert "retried=1" in one.headers["Location"]
    assert {runtime.store.get(id).status for id in ids} == {"queued"}  # type: ignore[union-attr]
    assert runtime.wake.is_set()


def test_turned_away_webhooks_are_listed_with_their_reasons(runtime: Runtime) -> None:
    client = signed_in(runtime)
    github_post(client, "deployment_status", "deployment_status.in_progress", delivery="ign-1")
    github_post(client, "deployment_status", "deployment_status.success", secret="wrong")
    gitlab_post(client, "Deployment Hook", "deployment.success", token="no")
    page = client.get("/console/turned-away")
    text = page.data.decode()
    assert "ign-1" in text
    assert "200 ignored" in text
    assert "401 unauthorized" in text
    assert GITLAB_TOKEN not in text
    found = client.get("/console/turned-away?delivery=ign-1").data.decode()
    assert "ign-1" in found
    assert "401 unauthorized" not in found
    missing = client.get("/console/deliveries?q=ign-1").data.decode()
    assert "/console/turned-away?delivery=ign-1" in missing  # "not stored? look there"
    only = client.get("/console/turned-away?answer=unauthorized&source=gitlab").data.decode()
    assert "ign-1" not in only
    assert "401 unauthorized" in only


def test_the_turned_away_journal_keeps_only_the_newest(runtime: Runtime) -> None:
    journal = runtime.store.journal
    rows = [TurnedAway(T0, "github", "push", f"d{n}", 200, "ignored", "why") for n in range(12)]
    journal.add_turned_away(rows[:7], keep=5)
    journal.add_turned_away(rows[7:], keep=5)
    assert [r.delivery for r in journal.turned_away(limit=100)] == [
        f"d{n}" for n in range(11, 6, -1)
    ]
    long = TurnedAway(T0, "github", "x" * 900, "d\x00", 400, "rejected", "r" * 900)
    journal.add_turned_away([long], keep=5)
    newest = journal.turned_away(limit=1)[0]
    assert len(newest.event) == len(newest.reason) == 500
    assert "\x00" not in newest.delivery


def test_the_turned_away_buffer_is_bounded(runtime: Runtime) -> None:
    from bridge.store.journal import MAX_TURNED_AWAY

    log = runtime.turned_away
    for n in range(MAX_TURNED_AWAY + 5):
        log.note(
            source="github", event="push", delivery=f"d{n}", code=200, answer="ignored", reason=""
        )
    log.flush()
    kept = runtime.store.journal.turned_away(limit=MAX_TURNED_AWAY + 10)
    assert len(kept) == MAX_TURNED_AWAY
    assert kept[0].delivery == f"d{MAX_TURNED_AWAY + 4}"


def test_reconcile_runs_are_shown_and_bounded(runtime: Runtime) -> None:
    journal = runtime.store.journal
    for n in range(4):
        journal.add_reconcile_run(
            ReconcileRun(
                started_at=T0 + timedelta(minutes=n),
                finished_at=T0 + timedelta(minutes=n, seconds=5),
                owner="host:1",
                since=T0 - timedelta(hours=24),
                until=T0,
                sources=[
                    {"source": f"github:acme/api{n}", "counts": {"present": 3, "recorded": 1}},
                    {"source": "gitlab:acme/web", "counts": {}, "error": "gitlab answered 503"},
                ],
            ),
            keep=3,
        )
    runs = journal.reconcile_runs()
    assert [r.started_at for r in runs] == [T0 + timedelta(minutes=n) for n in (3, 2, 1)]
    text = signed_in(runtime).get("/console/reconcile").data.decode()
    assert "github:acme/api3" in text
    assert "gitlab answered 503" in text
    assert "github:acme/api0" not in text


def test_entities_and_charts(runtime: Runtime) -> None:
    client = signed_in(runtime)
    runtime.store.records.add_history(
        entity="payments-api",
        environment="production",
        sha="a" * 40,
        deployed_at=T0 - timedelta(hours=1),
        key="k1",
    )
    text = client.get("/console/entities").data.decode()
    assert "payments-api" in text
    assert "production" in text
    assert "aaaaaaaaaaaa" in text
    id = queued(runtime, client)
    runtime.store.claim(owner="w", now=T0, lease_seconds=30)
    runtime.store.settle(id, "delivered", owner="w", results={}, now=T0 + timedelta(seconds=3))
    charts = client.get("/console/charts").data.decode()
    assert charts.count("<svg") == 2
    assert "3.00" in charts  # the hour's p50 and p99 latency, in the table of numbers


def test_received_copy_is_redacted_and_bounded() -> None:
    environ = {
        "CONTENT_TYPE": "application/json",
        "HTTP_X_GITHUB_DELIVERY": "d1",
        "HTTP_X_HUB_SIGNATURE_256": "sha256=abc",
        "HTTP_X_GITLAB_TOKEN": "tok",
        "HTTP_AUTHORIZATION": "Bearer x",
    }
    body = json.dumps({"url": "https://bot:p4ss@git.example/x", "note": "s3cret here"}).encode()
    kept = json.loads(received_copy(environ, body, spellings(["s3cret"])))
    assert kept["headers"] == {"Content-Type": "application/json", "X-GitHub-Delivery": "d1"}
    assert "p4ss" not in kept["body"]
    assert "s3cret" not in kept["body"]
    assert "https://***@git.example/x" in kept["body"]
    big = json.loads(received_copy({}, b"x" * (MAX_RECEIVED_BYTES + 10), ()))
    assert big["truncated"] is True
    assert big["bytes"] == MAX_RECEIVED_BYTES + 10
    assert len(big["body"]) == MAX_RECEIVED_BYTES


def test_the_admin_api_still_answers_beside_the_console(runtime: Runtime) -> None:
    app = create_app(runtime)
    client = app.test_client()
    answer = client.get("/api/deliveries", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.status_code == 200


def test_the_wheel_ships_every_template_and_style_sheet() -> None:
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"]["package-data"]["bridge"]
    console = root / "bridge" / "console"
    shipped = [p for p in console.rglob("*") if p.is_file() and p.suffix in (".html", ".css")]
    assert len(shipped) >= 10
    for path in shipped:
        name = path.relative_to(root / "bridge").as_posix()
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_an_unexpected_error_says_an_event_was_not_stored_only_for_a_webhook() -> None:
    from bridge.webhooks import error_answer

    failure = RuntimeError("boom")
    hook = error_answer(failure, {"PATH_INFO": "/webhooks/github", "REQUEST_METHOD": "POST"})
    page = error_answer(failure, {"PATH_INFO": "/console/deliveries/1", "REQUEST_METHOD": "GET"})
    assert hook == (500, "error", "internal error; the event was not stored")
    assert page == (500, "error", "internal error")


def test_a_deliverys_page_masks_what_json_escapes_hid_from_the_stored_copy(
    runtime: Runtime,
) -> None:
    # The stored copy masks the secrets and URL passwords as they are spelled in the body;
    # spelled with JSON escapes they passed, and the page (which decodes the body, and shows
    # the event as read and the request sent) showed them in clear.
    from tests.conftest import load_sample

    client = signed_in(runtime)
    doc = load_sample("github/deployment_status.success.json")
    doc["deployment"]["payload"] = {}
    doc["deployment"]["description"] = "@@title@@"
    doc["repository"]["description"] = "@@about@@"
    escaped = "".join(f"\\u{ord(c):04x}" for c in ADMIN_TOKEN)
    body = (
        json.dumps(doc)
        .replace("@@title@@", f"ship {escaped}")
        .replace("@@about@@", "see https:\\/\\/u2:pw2-secret@h.example\\/x")
        .encode()
    )
    answer = post_bytes(client, body, "escaped-1")
    page = client.get(f"/console/deliveries/{answer.json['id']}").data.decode()
    assert ADMIN_TOKEN not in page and "pw2-secret" not in page
    assert "ship ***" in page  # the title, as read and as it would be sent


def test_the_cortex_and_scm_tokens_are_masked_as_the_webhook_secrets_are(tmp_path: Any) -> None:
    # The receiver's copy and the console masked its own secrets only: a webhook carrying the
    # Cortex token (a CI that echoed its environment into a description) showed it.
    from bridge.config import parse_config
    from bridge.relay import make_runtime
    from bridge.store import Store
    from tests.conftest import load_sample

    secrets = {
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        "BRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
        "CORTEX_API_TOKEN": "cortex-tok-7e3d",
        "GITHUB_TOKEN": "ghp-tok-41a0",
    }
    config = parse_config({"database": f"sqlite:///{tmp_path / 'b.db'}"})
    runtime = make_runtime(config, secrets, store=Store.from_url(config.database))
    try:
        client = signed_in(runtime)
        doc = load_sample("github/deployment_status.success.json")
        doc["deployment"]["payload"] = {}
        doc["deployment"]["description"] = "env: cortex-tok-7e3d ghp-tok-41a0"
        answer = post_bytes(client, json.dumps(doc).encode(), "held-1")
        page = client.get(f"/console/deliveries/{answer.json['id']}").data.decode()
        stored = runtime.store.get(int(answer.json["id"]))
    finally:
        runtime.store.close()
    assert stored is not None and stored.received is not None
    for token in ("cortex-tok-7e3d", "ghp-tok-41a0"):
        assert token not in stored.received and token not in page


def test_the_database_password_is_masked_in_what_a_worker_stores(
    tmp_path: Any, cortex: Any
) -> None:
    # Cortex echoing a text that holds the database's password (it cannot know it, but an
    # error is text): the stored error masks it, as the logs do.
    from bridge.config import parse_config
    from bridge.cortex import CortexClient
    from bridge.fakecortex import Fault
    from bridge.relay import make_runtime, make_worker
    from bridge.store import Store
    from tests.conftest import TOKEN

    config = parse_config(
        {
            "database": "postgresql://bridge:pw-db-9f3e@db.example/bridge",
            "cortex": {"url": cortex.url, "requests_per_minute": 0},
        }
    )
    store = Store.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    runtime = make_runtime(config, {"GITHUB_WEBHOOK_SECRET": GITHUB_SECRET}, store=store)
    client = CortexClient(cortex.url, TOKEN)
    try:
        assert "pw-db-9f3e" in runtime.secrets
        worker = make_worker(runtime, client, owner="w")
        doc = load_sample_doc()
        answer = github_post(client_for(runtime), "deployment_status", doc)
        cortex.inject(
            Fault("status", status=400, method="POST", body={"message": "no pw-db-9f3e here"})
        )
        worker.run_once()
        stored = store.get(int(answer.json["id"]))
    finally:
        client.close()
        store.close()
    assert stored is not None and stored.status == "dead"
    assert "pw-db-9f3e" not in (stored.last_error or "") and "***" in (stored.last_error or "")


def load_sample_doc() -> Any:
    from tests.conftest import load_sample

    doc = load_sample("github/deployment_status.success.json")
    doc["deployment"]["payload"] = {}
    return doc


def test_what_anyone_can_send_is_kept_apart_and_pushes_out_nothing(
    new_runtime: Callable[..., Runtime],
) -> None:
    # A disabled source's 404 and a body over the limit's 413 are answered before the sender
    # is known, as a bad signature's 401 is: a flood of them pushed every ignored and rejected
    # webhook out of the console's journal. On both databases.
    from bridge.store.journal import MAX_UNAUTHORIZED

    runtime = new_runtime({"server": {"max_body_bytes": 4096}}, flux_secret="", clock=lambda: T0)
    client = client_for(runtime)
    github_post(client, "push", "deployment_status.success", delivery="kept-1")
    runtime.turned_away.flush()
    for n in range(MAX_UNAUTHORIZED + 20):
        assert client.post("/webhooks/flux", data=b"{}").status_code == 404
        big = b"{" + b" " * 5000 + b"}"
        sent = client.post(
            "/webhooks/github",
            data=big,
            headers={"X-GitHub-Event": "deployment_status", "X-GitHub-Delivery": f"b{n}"},
        )
        assert sent.status_code == 413
        github_post(client, "deployment_status", "deployment_status.success", secret="wrong")
        if n % 50 == 0:
            runtime.turned_away.flush()
    runtime.turned_away.flush()
    kept = runtime.store.journal.turned_away(limit=2000)
    assert [r.delivery for r in kept if r.answer == "ignored"] == ["kept-1"]
    apart = [r for r in kept if r.answer in ("unauthorized", "unverified")]
    assert len(apart) == MAX_UNAUTHORIZED == len(kept) - 1
    assert {r.code for r in apart} == {401, 404, 413}
    # What its sender was known for stays as it was answered: a verified body's 400.
    sent = client.post(
        "/webhooks/github",
        data=b"not json",
        headers={
            "X-GitHub-Event": "deployment_status",
            "X-Hub-Signature-256": sign(b"not json"),
            "Content-Type": "application/json",
        },
    )
    assert sent.status_code == 400
    runtime.turned_away.flush()
    assert runtime.store.journal.turned_away(limit=1)[0].answer == "rejected"


def test_every_page_masks_and_escapes_a_senders_text_as_the_admin_api_does(
    runtime: Runtime,
) -> None:
    # A repository (so an entity) holding a secret, a delivery id holding another and a URL
    # password, an SCM error turning the text around (U+202E): the API masked them, the
    # delivery, turned-away, entities and reconcile pages showed them as stored.
    # The receiver now refuses a deploy named by a secret: these rows are stored as a bridge
    # that did not hold those secrets yet stored them (an older version, or a token set since).
    client = signed_in(runtime)
    doc = load_sample("github/deployment_status.success.json")
    doc["repository"]["full_name"] = f"acme/r-{GITLAB_TOKEN}"
    doc["repository"]["name"] = f"r-{GITLAB_TOKEN}"
    unaware = prepare_intake(runtime.config, ())
    for payload, delivery in (
        (doc, "d-1"),
        (load_sample("github/deployment_status.success.json"), f"d-{ADMIN_TOKEN}"),
    ):
        answer = ingest(
            "github",
            "deployment_status",
            payload,
            key=delivery,
            delivery_id=delivery,
            intake=unaware,
            store=runtime.store,
            clock=lambda: T0,
        )
        assert answer.status == 202, answer.body
    stored = runtime.store.browse.deliveries(Filters(), limit=5)[0][-1]
    runtime.store.records.add_history(
        entity=f"r-{GITLAB_TOKEN}", environment="production", sha="a" * 40, deployed_at=T0, key="k"
    )
    github_post(
        client,
        "deployment_status",
        "deployment_status.success",
        secret="wrong",
        delivery="https://bob:hunter2pw@git.example/x",
    )
    runtime.store.journal.add_reconcile_run(
        ReconcileRun(
            started_at=T0,
            finished_at=T0,
            owner="host:1",
            since=T0,
            until=T0,
            sources=[{"source": "github:acme/api", "counts": {}, "error": "bad \u202egnp.exe"}],
        )
    )
    pages = [
        f"/console/deliveries/{stored.id}",
        "/console/turned-away",
        "/console/entities",
        "/console/reconcile",
    ]
    for path in pages:
        text = client.get(path).data.decode()
        for secret in (GITLAB_TOKEN, ADMIN_TOKEN, "hunter2pw", "\u202e"):
            assert secret not in text, (path, secret)
    assert "bad \\u202egnp.exe" in client.get("/console/reconcile").data.decode()


def test_the_counts_a_retry_sends_back_are_numbers_or_nothing(runtime: Runtime) -> None:
    client = signed_in(runtime)
    spoof = client.get("/console/dead?retried=All%20dead%20letters%20were%20purged&skipped=x")
    assert b"purged" not in spoof.data and b"queued again" not in spoof.data
    assert b"3 queued again, 2 not" in client.get("/console/dead?retried=3&skipped=2").data
