"""The http source reader at the requests edge (``responses``): paging, items, errors, bounds."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from responses import matchers

from bridge.config.http_sources import HttpSourceSpec, parse_http_sources
from bridge.errors import ConfigError, UsageError
from bridge.model import DeployRef, Status
from bridge.sync.http_source import (
    MAX_BODY_BYTES,
    MAX_CURSOR,
    HttpReader,
    HttpSourceError,
    make_http_reader,
)
from bridge.sync.reader import Found, Window

URL = "https://deploys.example.com/v1/deployments"
TOKEN = "tok-9f8e7d6c5b4a"
T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
WINDOW = Window(T0 - timedelta(days=30), T0)
SHA = "0123456789abcdef0123456789abcdef01234567"


def spec_of(**entry: Any) -> HttpSourceSpec:
    """An entry named ``api`` with generic fields; keys of ``entry`` override."""
    data: dict[str, Any] = {
        "url": URL,
        "token_env": "API_TOKEN",
        "repository": "acme/app",
        "pagination": {"style": "page", "size": 2},
        "items": "items",
        "fields": {
            "id": "id",
            "status": "state",
            "finished_at": "ended",
            "started_at": "began",
            "sha": "sha",
            "url": "link",
            "environment": "env",
            "title": "message",
            "deployer": "who.name",
            "deployer_email": "who.email",
        },
        "status": {"ok": "succeeded", "bad": "failed", "wip": "in_progress", "gone": "skip"},
    }
    data.update(entry)
    return parse_http_sources({"api": data})["api"]


def item(ident: int, *, days: float = 1, state: str = "ok", **extra: Any) -> dict[str, Any]:
    """A deploy that ended ``days`` before T0, ten minutes after it began."""
    ended = T0 - timedelta(days=days)
    data = {
        "id": ident,
        "state": state,
        "began": (ended - timedelta(minutes=10)).isoformat(),
        "ended": ended.isoformat(),
    }
    data.update(extra)
    return data


class Sleeps(list[float]):
    """An injected sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def api() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def reader_of(spec: HttpSourceSpec, sleeps: Sleeps | None = None) -> HttpReader:
    return HttpReader(spec, TOKEN, sleep=sleeps if sleeps is not None else Sleeps())


def serve_pages(api: responses.RequestsMock, pages: list[list[dict[str, Any]]]) -> None:
    """Page n (1-based) of ``pages``; an empty list after the last."""
    for number, rows in enumerate([*pages, []], start=1):
        api.get(
            URL,
            json={"items": rows},
            match=[
                matchers.query_param_matcher({"page": str(number), "pageSize": "2"}),
                matchers.header_matcher({"Authorization": f"Bearer {TOKEN}"}),
            ],
        )


def ids(founds: list[Found]) -> list[str]:
    return [f.event.ref.id for f in founds if f.event is not None]


def test_an_item_becomes_the_one_deploy_event(api: responses.RequestsMock) -> None:
    row = item(
        7,
        sha=SHA.upper(),
        link="https://deploys.example.com/app/runs/7",
        env="prod",
        message="Ship it\n\nbody",
        who={"name": "Dana", "email": "dana@example.com"},
    )
    serve_pages(api, [[row]])
    [found] = list(reader_of(spec_of()).read(WINDOW))
    event = found.event
    assert event is not None
    assert (event.source, event.repository, event.event) == ("api", "acme/app", "deployment")
    assert event.ref == DeployRef("deployment", "7")
    assert event.status is Status.SUCCEEDED
    assert event.timestamp == T0 - timedelta(days=1)
    assert event.finished_at == event.timestamp
    assert event.started_at == event.timestamp - timedelta(minutes=10)
    assert event.sha == SHA
    assert event.url == "https://deploys.example.com/app/runs/7"
    assert event.environment == "prod"
    assert event.title == "Ship it"
    assert (event.deployer_name, event.deployer_email) == ("Dana", "dana@example.com")
    assert event.details == {"deploymentId": "7", "sourceStatus": "ok"}
    assert found.resume == json.dumps({"page": 2})


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        pytest.param({"sha": "0123456"}, "sha", None, id="short-sha"),
        pytest.param({"sha": "z" * 40}, "sha", None, id="not-hex"),
        pytest.param({"link": "ftp://x/y"}, "url", None, id="not-http"),
        pytest.param({"link": "https://x.example/api/v4/deploys/1"}, "url", None, id="api-url"),
        pytest.param({"link": "javascript:alert(1)"}, "url", None, id="script-url"),
        pytest.param({"who": {"email": "not an email"}}, "deployer_email", None, id="bad-email"),
        pytest.param({}, "environment", "staging", id="environment-constant"),
        pytest.param({"env": "prod"}, "environment", "prod", id="environment-field-wins"),
        pytest.param({"message": ""}, "title", "", id="no-title"),
    ],
)
def test_values_that_cannot_be_used_are_not_known(
    api: responses.RequestsMock, extra: dict[str, Any], field: str, expected: Any
) -> None:
    serve_pages(api, [[item(1, **extra)]])
    [found] = list(reader_of(spec_of(environment="staging")).read(WINDOW))
    assert found.event is not None
    assert getattr(found.event, field) == expected


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        pytest.param(
            item(1, state="rolled"),
            "deployment 1: status 'rolled' is not mapped in http_sources.api.status",
            id="unmapped",
        ),
        pytest.param(
            item(1, state="gone"), "deployment 1: status 'gone' is mapped to skip", id="skip"
        ),
        pytest.param({"state": "ok"}, "an item with no id at 'id'", id="no-id"),
        pytest.param({"id": True, "state": "ok"}, "an item with no id", id="bool-id"),
        pytest.param({"id": 1}, "deployment 1: no status at 'state'", id="no-status"),
        pytest.param(
            item(1, ended="yesterday"), "deployment 1: bad time at 'ended'", id="bad-time"
        ),
        pytest.param(item(1, ended="2026-10-01T10:00:00"), "has no UTC offset", id="no-zone"),
        pytest.param(
            item(1, ended=None),
            "deployment 1: status 'ok' but no time at 'ended'",
            id="final-no-end",
        ),
        pytest.param("a string", "an item that is not an object", id="not-object"),
        # Recorded with no environment once (a key of its own, beside the real one's).
        pytest.param(
            {**item(1), "env": {"name": "production"}},
            "deployment 1: the environment at 'env' is not text: {'name': 'production'}",
            id="env-object",
        ),
        pytest.param(
            {**item(1), "env": ["a"]}, "the environment at 'env' is not text", id="env-list"
        ),
    ],
)
def test_items_that_are_no_deploy_are_skipped_with_the_reason(
    api: responses.RequestsMock, row: Any, reason: str
) -> None:
    serve_pages(api, [[row, item(2)]])
    founds = list(reader_of(spec_of()).read(WINDOW))
    assert founds[0].event is None
    assert reason in founds[0].skipped
    assert ids(founds) == ["2"]  # the rest of the list is read on


def test_an_unfinished_deploy_is_placed_at_its_start(api: responses.RequestsMock) -> None:
    serve_pages(api, [[item(1, state="wip", ended=None)]])
    [found] = list(reader_of(spec_of()).read(WINDOW))
    assert found.event is not None
    assert found.event.status is Status.IN_PROGRESS
    assert found.event.finished_at is None
    assert found.event.timestamp == T0 - timedelta(days=1, minutes=10)


def test_pages_are_read_until_an_empty_one_not_a_short_one(api: responses.RequestsMock) -> None:
    # The API gives one item where two were asked: a cap below pageSize must not end the read.
    serve_pages(api, [[item(1)], [item(2), item(3)], [item(4)]])
    founds = list(reader_of(spec_of()).read(WINDOW))
    assert ids(founds) == ["1", "2", "3", "4"]
    assert [f.resume for f in founds] == ['{"page": 2}', None, '{"page": 3}', '{"page": 4}']
    assert len(api.calls) == 4


def test_the_window_is_since_inclusive_until_exclusive(api: responses.RequestsMock) -> None:
    rows = [item(1, days=0), item(2, days=0.5), item(3, days=30), item(4, days=30.01)]
    serve_pages(api, [rows[:2], rows[2:]])
    assert ids(list(reader_of(spec_of()).read(WINDOW))) == ["2", "3"]


def test_an_item_seen_on_an_earlier_page_is_not_yielded_again(
    api: responses.RequestsMock,
) -> None:
    # A deploy added at the top while paging pushes item 2 onto page 2 as well.
    serve_pages(api, [[item(1), item(2)], [item(2), item(3)]])
    assert ids(list(reader_of(spec_of()).read(WINDOW))) == ["1", "2", "3"]


def test_resume_from_a_page_asks_for_that_page_first(api: responses.RequestsMock) -> None:
    serve_pages(api, [[item(1), item(2)], [item(3), item(4)], [item(5)]])
    founds = list(reader_of(spec_of()).read(WINDOW, resume='{"page": 2}'))
    assert ids(founds) == ["3", "4", "5"]
    assert [c.request.params["page"] for c in api.calls] == ["2", "3", "4"]


def test_newest_first_by_stops_a_day_past_the_windows_start(api: responses.RequestsMock) -> None:
    spec = spec_of(pagination={"style": "page", "size": 2, "newest_first_by": "ended"})
    serve_pages(api, [[item(1), item(2, days=29)], [item(3, days=30.5), item(4, days=31.5)]])
    api.get(URL, body="page 3 must not be asked for", status=500)
    founds = list(reader_of(spec).read(WINDOW))
    assert ids(founds) == ["1", "2"]
    assert len(api.calls) == 2


def cursor_spec(**pagination: Any) -> HttpSourceSpec:
    return spec_of(pagination={"style": "cursor", "limit": 2, **pagination}, items="data")


def serve_cursor(api: responses.RequestsMock, after: str | None, answer: dict[str, Any]) -> None:
    query = {"limit": "2"} | ({"after_id": after} if after is not None else {})
    api.get(URL, json=answer, match=[matchers.query_param_matcher(query)])


def test_cursor_pages_follow_next_page_while_has_more(api: responses.RequestsMock) -> None:
    serve_cursor(api, None, {"data": [item(1), item(2)], "has_more": True, "next_page": "c2"})
    serve_cursor(api, "c2", {"data": [item(3)], "has_more": False, "next_page": None})
    founds = list(reader_of(cursor_spec()).read(WINDOW))
    assert ids(founds) == ["1", "2", "3"]
    assert [f.resume for f in founds] == [None, '{"cursor": "c2"}', '{"done": true}']
    assert list(reader_of(cursor_spec()).read(WINDOW, resume='{"done": true}')) == []


def test_a_resumed_cursor_read_starts_after_the_cursor(api: responses.RequestsMock) -> None:
    serve_cursor(api, "c2", {"data": [item(3)], "has_more": False, "next_page": None})
    founds = list(reader_of(cursor_spec()).read(WINDOW, resume='{"cursor": "c2"}'))
    assert ids(founds) == ["3"]


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        pytest.param(
            {"data": [], "next_page": "c2"}, "no true/false at 'has_more'", id="no-has-more"
        ),
        pytest.param(
            {"data": [], "has_more": True, "next_page": None}, "holds no cursor", id="no-cursor"
        ),
        pytest.param({"data": [], "has_more": True, "next_page": "c1"}, "did not move", id="stuck"),
        pytest.param({"items": [], "has_more": False}, "no list at 'data'", id="no-items"),
    ],
)
def test_a_broken_cursor_is_an_error_not_the_end(
    api: responses.RequestsMock, answer: dict[str, Any], words: str
) -> None:
    serve_cursor(api, "c1", answer)
    with pytest.raises(HttpSourceError, match=words):
        list(reader_of(cursor_spec()).read(WINDOW, resume='{"cursor": "c1"}'))


def test_more_pages_than_max_pages_fail_naming_the_key(api: responses.RequestsMock) -> None:
    spec = spec_of(pagination={"style": "page", "size": 2, "max_pages": 2})
    serve_pages(api, [[item(1)], [item(2)], [item(3)]])
    found: list[Found] = []
    with pytest.raises(
        HttpSourceError, match=r"more than 2 pages: raise .*api\.pagination\.max_pages"
    ):
        found.extend(reader_of(spec).read(WINDOW))
    assert ids(found) == ["1", "2"]
    assert len(api.calls) == 2


def newest_spec(limit: int = 3) -> HttpSourceSpec:
    return spec_of(pagination={"style": "newest-first", "limit": limit})


def test_newest_first_reads_one_list_and_resumes_after_an_id(
    api: responses.RequestsMock,
) -> None:
    api.get(
        URL,
        json={"items": [item(3), item(2, days=2), item(1, days=40)]},
        match=[matchers.query_param_matcher({"limit": "3"})],
    )
    founds = list(reader_of(newest_spec()).read(WINDOW))
    # Oldest first, as every reader yields: a rollback is judged after what came before it.
    assert ids(founds) == ["2", "3"]
    assert [f.resume for f in founds] == ['{"after": "2"}', '{"after": "3"}']
    assert ids(list(reader_of(newest_spec()).read(WINDOW, resume='{"after": "2"}'))) == ["3"]
    # An id no longer listed: nothing is left out.
    assert ids(list(reader_of(newest_spec()).read(WINDOW, resume='{"after": "9"}'))) == ["2", "3"]


def test_newest_first_says_when_the_window_reaches_past_the_limit(
    api: responses.RequestsMock,
) -> None:
    api.get(URL, json={"items": [item(3), item(2, days=2), item(1, days=3)]})
    founds = list(reader_of(newest_spec()).read(WINDOW))
    assert ids(founds) == ["1", "2", "3"]
    assert founds[-1].event is None
    assert "lists only the 3 newest" in founds[-1].skipped
    assert "pagination.limit" in founds[-1].skipped


def test_429_waits_as_long_as_retry_after_says(api: responses.RequestsMock) -> None:
    api.get(URL, json={"message": "slow down"}, status=429, headers={"Retry-After": "7"})
    api.get(URL, json={"message": "busy"}, status=503, headers={"Retry-After": "3"})
    serve_pages(api, [[item(1)]])
    sleeps = Sleeps()
    assert ids(list(reader_of(spec_of(), sleeps).read(WINDOW))) == ["1"]
    assert sleeps == [7.0, 3.0]


def test_a_retry_after_date_is_read_against_the_injected_clock(
    api: responses.RequestsMock,
) -> None:
    api.get(URL, status=429, json={}, headers={"Retry-After": "Sun, 01 Nov 2026 00:00:30 GMT"})
    serve_pages(api, [[item(1)]])
    sleeps = Sleeps()
    reader = HttpReader(spec_of(), TOKEN, sleep=sleeps, now=lambda: T0)
    assert ids(list(reader.read(WINDOW))) == ["1"]
    assert sleeps == [30.0]


def test_retries_stop_after_the_policys_attempts(api: responses.RequestsMock) -> None:
    api.get(URL, status=502, body="bad gateway")
    sleeps = Sleeps()
    with pytest.raises(HttpSourceError, match="answered 502: bad gateway") as caught:
        list(reader_of(spec_of(), sleeps).read(WINDOW))
    assert caught.value.retryable
    assert len(api.calls) == 6
    assert len(sleeps) == 5


def test_a_lost_connection_is_retried(api: responses.RequestsMock) -> None:
    api.get(URL, body=requests.ConnectionError("reset"))
    serve_pages(api, [[item(1)]])
    sleeps = Sleeps()
    assert ids(list(reader_of(spec_of(), sleeps).read(WINDOW))) == ["1"]
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("status", "words"),
    [
        pytest.param(401, "answered 401: the token in API_TOKEN was refused", id="401"),
        pytest.param(403, "answered 403: the token in API_TOKEN may not read", id="403"),
        pytest.param(404, "answered 404: no such list: check http_sources.api.url", id="404"),
        pytest.param(400, 'answered 400: {"error": "bad token ***"}', id="400-echo"),
    ],
)
def test_refusals_fail_at_once_and_never_show_the_token(
    api: responses.RequestsMock, status: int, words: str
) -> None:
    api.get(URL, status=status, json={"error": f"bad token {TOKEN}"})
    sleeps = Sleeps()
    with pytest.raises(HttpSourceError) as caught:
        list(reader_of(spec_of(), sleeps).read(WINDOW))
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert not caught.value.retryable
    assert (len(api.calls), sleeps) == (1, [])


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(b"<html>", "the answer is not JSON", id="not-json"),
        pytest.param(b'{"items": {"a": 1}}', "no list at 'items'", id="items-not-list"),
        pytest.param(b"x" * (MAX_BODY_BYTES + 1), f"larger than {MAX_BODY_BYTES}", id="too-big"),
    ],
)
def test_unreadable_answers_are_errors(
    api: responses.RequestsMock, body: bytes, words: str
) -> None:
    api.get(URL, body=body)
    with pytest.raises(HttpSourceError, match=words):
        list(reader_of(spec_of()).read(WINDOW))


@pytest.mark.parametrize(
    "resume", ["nonsense", '{"page": "2"}', '{"cursor": 3}', '{"page": 2, "cursor": "x"}', "[]"]
)
def test_a_resume_point_this_reader_cannot_have_given_is_an_error(resume: str) -> None:
    with pytest.raises(HttpSourceError, match="not a resume point"):
        list(reader_of(spec_of()).read(WINDOW, resume=resume))


def test_make_http_reader_takes_the_token_from_its_variable(
    api: responses.RequestsMock, tmp_path: Path
) -> None:
    specs = {"api": spec_of()}
    serve_pages(api, [[item(1)]])
    reader = make_http_reader("api", specs, {"API_TOKEN": TOKEN})
    assert reader.name == "http:api"
    assert ids(list(reader.read(WINDOW))) == ["1"]
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    from_file = make_http_reader("api", specs, {"API_TOKEN_FILE": str(secret)})
    assert ids(list(from_file.read(WINDOW))) == ["1"]


def test_make_http_reader_names_what_is_missing() -> None:
    specs = {"api": spec_of()}
    with pytest.raises(ConfigError, match="API_TOKEN: is not set") as caught:
        make_http_reader("api", specs, {})
    assert caught.value.key == "API_TOKEN"
    with pytest.raises(UsageError, match=r"--source 'nope': .*\(configured: api\)"):
        make_http_reader("nope", specs, {"API_TOKEN": TOKEN})


def test_items_outside_the_window_are_not_reported_even_when_unusable(
    api: responses.RequestsMock,
) -> None:
    rows = [item(1, state="rolled", days=40), item(2, state="rolled"), item(3, days=45)]
    serve_pages(api, [rows[:2], rows[2:]])
    founds = list(reader_of(spec_of()).read(WINDOW))
    assert [f.skipped.split(":")[0] for f in founds] == ["deployment 2"]


# -- a hostile list (docs/limits.md, "Reading SCMs and http sources") ------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize(
    "location",
    [
        pytest.param("https://evil.example/v1/deployments", id="other-host"),
        pytest.param("https://deploys.example.com:8443/v1/deployments", id="other-port"),
        pytest.param("http://deploys.example.com/v1/deployments", id="other-scheme"),
    ],
)
def test_a_redirect_to_another_origin_is_not_followed(
    api: responses.RequestsMock, status: int, location: str
) -> None:
    api.get(URL, status=status, headers={"Location": location})
    api.get(location, json={"items": []})
    with pytest.raises(HttpSourceError, match=f"a {status} redirect leads to") as caught:
        list(reader_of(spec_of()).read(WINDOW))
    assert not caught.value.retryable
    assert [call.request.url.split("?")[0] for call in api.calls] == [URL]


def test_a_redirect_on_the_same_origin_is_followed_with_the_token(
    api: responses.RequestsMock,
) -> None:
    moved = "https://deploys.example.com/v2/deployments"
    api.get(URL, status=308, headers={"Location": moved})
    api.get(moved, json={"items": [item(1)]})
    api.get(moved, json={"items": []})
    assert ids(list(reader_of(spec_of()).read(WINDOW))) == ["1"]
    assert api.calls[1].request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_page_of_more_than_1000_items_is_refused(api: responses.RequestsMock) -> None:
    api.get(URL, json={"items": [item(n) for n in range(1001)]})
    with pytest.raises(HttpSourceError, match="a page of 1001 items: at most 1000 a page"):
        list(reader_of(spec_of()).read(WINDOW))


def test_a_page_of_16_mib_of_numbers_is_refused_before_it_is_parsed(
    api: responses.RequestsMock,
) -> None:
    ones = b'{"items": [' + b"1," * (MAX_BODY_BYTES // 2 - 10) + b"1]}"
    api.get(URL, body=ones)
    tracemalloc.start()
    try:
        with pytest.raises(HttpSourceError, match="more than 500000 values"):
            list(reader_of(spec_of()).read(WINDOW))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024


def test_429_forever_ends_within_the_policys_attempts(api: responses.RequestsMock) -> None:
    api.get(URL, status=429, json={}, headers={"Retry-After": "0"})
    sleeps = Sleeps()
    with pytest.raises(HttpSourceError, match="answered 429"):
        list(reader_of(spec_of(), sleeps).read(WINDOW))
    assert (len(api.calls), sleeps) == (6, [0.0] * 5)


def test_a_compressed_answer_is_bounded_after_decompression(api: responses.RequestsMock) -> None:
    bomb = gzip.compress(b'{"items": [' + b"1," * (MAX_BODY_BYTES // 2) + b"1]}", 9)
    assert len(bomb) < 100_000
    api.get(URL, body=bomb, headers={"Content-Encoding": "gzip"})
    with pytest.raises(HttpSourceError, match=f"an answer larger than {MAX_BODY_BYTES} bytes"):
        list(reader_of(spec_of()).read(WINDOW))


def test_a_retry_after_past_the_bound_ends_the_request_without_asking_again(
    api: responses.RequestsMock,
) -> None:
    # It waited 120 s, asked again (to be refused again), then failed "answered 429".
    api.get(URL, json={"m": 1}, status=429, headers={"Retry-After": "100000"})
    sleeps = Sleeps()
    with pytest.raises(HttpSourceError, match="too long to wait"):
        list(reader_of(spec_of(), sleeps).read(WINDOW))
    assert sleeps == [] and len(api.calls) == 1


def test_a_cursor_past_its_bound_ends_the_read(api: responses.RequestsMock) -> None:
    # A 5 MB cursor was sent (the server answered 414) and would have been saved to resume.
    long = "c" * (MAX_CURSOR + 1)
    serve_cursor(api, None, {"data": [item(1)], "has_more": True, "next_page": long})
    with pytest.raises(HttpSourceError, match=f"a cursor of {MAX_CURSOR + 1:,} characters"):
        list(reader_of(cursor_spec()).read(WINDOW))
    assert len(api.calls) == 1


def test_a_saved_cursor_past_its_bound_is_not_a_resume_point(api: responses.RequestsMock) -> None:
    # A database written by hand (or by an earlier version) held one: it was sent.
    longest = "c" * MAX_CURSOR
    resume = json.dumps({"cursor": longest + "c"})
    with pytest.raises(HttpSourceError, match="not a resume point of this reader"):
        list(reader_of(cursor_spec()).read(WINDOW, resume=resume))
    assert len(api.calls) == 0
    serve_cursor(api, longest, {"data": [item(3)], "has_more": False, "next_page": None})
    founds = list(reader_of(cursor_spec()).read(WINDOW, resume=json.dumps({"cursor": longest})))
    assert ids(founds) == ["3"]
