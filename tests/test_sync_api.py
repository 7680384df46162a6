"""The SCM client alone, at the requests edge (``responses``): rate limits, retries, pages."""

from __future__ import annotations

from email.utils import formatdate

import pytest
import requests
import responses

from bridge.sync.api import (
    DEFAULT_WAIT_SECONDS,
    GITHUB_LIMITS,
    GITLAB_LIMITS,
    ApiClient,
    ScmError,
    rate_limit_wait,
)
from bridge.sync.github import github_client, graphql_url
from bridge.sync.gitlab import gitlab_client

API = "https://api.github.example"
NOW = 1_800_000_000.0
SECRET = "ghp-very-secret-token"


class Sleeps:
    """An injected sleep that only notes how long it was asked to wait."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(sleeps: Sleeps) -> ApiClient:
    return github_client(API, SECRET, sleep=sleeps, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("status", "headers", "limits", "wait"),
    [
        pytest.param(200, {}, GITHUB_LIMITS, None, id="ok"),
        pytest.param(403, {}, GITHUB_LIMITS, None, id="forbidden-not-a-limit"),
        pytest.param(403, {"Retry-After": "7"}, GITHUB_LIMITS, 7.0, id="github-secondary"),
        pytest.param(
            429,
            {"Retry-After": formatdate(NOW + 30, usegmt=True)},
            GITHUB_LIMITS,
            30.0,
            id="retry-after-as-a-date",
        ),
        pytest.param(
            403,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)},
            GITHUB_LIMITS,
            31.0,
            id="github-primary",
        ),
        pytest.param(429, {}, GITHUB_LIMITS, DEFAULT_WAIT_SECONDS, id="429-no-headers"),
        pytest.param(
            200,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 10)},
            GITHUB_LIMITS,
            11.0,
            id="github-last-request-spent",
        ),
        pytest.param(
            429,
            {"RateLimit-Remaining": "0", "RateLimit-Reset": str(int(NOW) + 5)},
            GITLAB_LIMITS,
            6.0,
            id="gitlab-429",
        ),
        pytest.param(429, {"Retry-After": "3"}, GITLAB_LIMITS, 3.0, id="gitlab-retry-after"),
    ],
)
def test_rate_limit_wait(
    status: int, headers: dict[str, str], limits: object, wait: float | None
) -> None:
    assert rate_limit_wait(status, headers, NOW, limits) == wait  # type: ignore[arg-type]


@responses.activate
def test_a_secondary_limit_is_waited_out_then_the_request_is_repeated() -> None:
    sleeps = Sleeps()
    url = f"{API}/repos/acme/api/actions/runs"
    responses.get(url, status=403, headers={"Retry-After": "12"}, json={"message": "secondary"})
    responses.get(url, json={"workflow_runs": []})
    assert client(sleeps).get("/repos/acme/api/actions/runs").json() == {"workflow_runs": []}
    assert sleeps.waits == [12.0]
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {SECRET}"


@responses.activate
def test_a_spent_primary_limit_waits_for_the_reset_before_the_next_request() -> None:
    sleeps = Sleeps()
    reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 100)}
    responses.get(f"{API}/orgs/acme/repos", json=[], headers=reset)
    assert client(sleeps).get("/orgs/acme/repos").json() == []
    assert sleeps.waits == [101.0]


@responses.activate
def test_a_reset_too_far_off_fails_in_one_line_without_the_token() -> None:
    sleeps = Sleeps()
    reset = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 7200)}
    responses.get(f"{API}/orgs/acme/repos", status=403, headers=reset, json={"message": "limit"})
    with pytest.raises(ScmError, match="too long to wait") as caught:
        client(sleeps).get("/orgs/acme/repos")
    assert SECRET not in str(caught.value) and sleeps.waits == []


@responses.activate
def test_server_errors_and_dropped_connections_are_retried_a_few_times() -> None:
    sleeps = Sleeps()
    url = f"{API}/repos/acme/api/actions/runs/5"
    responses.get(url, status=502)
    responses.get(url, body=requests.ConnectionError("reset"))
    responses.get(url, json={"id": 5})
    assert client(sleeps).get("/repos/acme/api/actions/runs/5").json() == {"id": 5}
    assert len(sleeps.waits) == 2


@responses.activate
def test_a_refusal_names_host_status_and_hint_never_the_token() -> None:
    responses.get(f"{API}/orgs/acme/repos", status=401, json={"message": "Bad credentials"})
    with pytest.raises(ScmError) as caught:
        client(Sleeps()).get("/orgs/acme/repos")
    message = str(caught.value)
    assert "api.github.example answered 401 for /orgs/acme/repos" in message
    assert "Bad credentials" in message and SECRET not in message
    assert caught.value.status == 401
    assert SECRET not in repr(client(Sleeps()))


@responses.activate
def test_pages_follow_the_link_header_and_give_the_next_url_to_resume_from() -> None:
    first = f"{API}/orgs/acme/repos?per_page=100"
    second = f"{API}/orgs/acme/repos?per_page=100&page=2"
    responses.get(
        first, json=[{"full_name": "acme/a"}], headers={"Link": f'<{second}>; rel="next"'}
    )
    responses.get(second, json=[{"full_name": "acme/b"}])
    pages = list(client(Sleeps()).pages("/orgs/acme/repos", {"per_page": 100}))
    assert [p.json() for p, _ in pages] == [[{"full_name": "acme/a"}], [{"full_name": "acme/b"}]]
    assert [n for _, n in pages] == [second, None]


@pytest.mark.parametrize(
    ("api", "graphql"),
    [
        pytest.param("https://api.github.com", "https://api.github.com/graphql", id="github.com"),
        pytest.param(
            "https://ghe.acme.io/api/v3/", "https://ghe.acme.io/api/graphql", id="enterprise-server"
        ),
    ],
)
def test_graphql_url(api: str, graphql: str) -> None:
    assert graphql_url(api) == graphql


@responses.activate
def test_gitlab_sends_its_private_token_header_under_api_v4() -> None:
    responses.get("https://gitlab.acme.io/api/v4/projects/acme%2Fweb", json={"id": 1})
    api = gitlab_client("https://gitlab.acme.io/", "glpat-x", sleep=Sleeps(), clock=lambda: NOW)
    assert api.get("/projects/acme%2Fweb").json() == {"id": 1}
    assert responses.calls[0].request.headers["PRIVATE-TOKEN"] == "glpat-x"


def test_api_filters_take_whole_seconds() -> None:
    from datetime import datetime, timezone

    from bridge.sync.found import whole_seconds

    moment = datetime(2026, 11, 3, 10, 5, 7, 250_000, tzinfo=timezone.utc)
    assert whole_seconds(moment) == "2026-11-03T10:05:07Z"
    assert whole_seconds(moment, up=True) == "2026-11-03T10:05:08Z"
    assert whole_seconds(moment.replace(microsecond=0), up=True) == "2026-11-03T10:05:07Z"


@responses.activate
def test_server_errors_end_after_four_tries_naming_the_bound() -> None:
    sleeps = Sleeps()
    url = f"{API}/repos/acme/api/actions/runs/5"
    responses.get(url, status=502, json={"message": "bad gateway"})
    with pytest.raises(ScmError, match=r"answered 502 for .*: gave up after 4 tries") as caught:
        client(sleeps).get("/repos/acme/api/actions/runs/5")
    assert caught.value.status == 502
    assert len(responses.calls) == 4 and len(sleeps.waits) == 3


@pytest.mark.parametrize("status", [401, 403, 404, 422])
@responses.activate
def test_a_refusal_that_is_not_a_limit_is_one_request_and_no_wait(status: int) -> None:
    sleeps = Sleeps()
    responses.get(f"{API}/orgs/acme/repos", status=status, json={"message": "no"})
    with pytest.raises(ScmError, match=f"answered {status} for /orgs/acme/repos") as caught:
        client(sleeps).get("/orgs/acme/repos")
    assert caught.value.status == status and not caught.value.retryable
    assert len(responses.calls) == 1 and sleeps.waits == []


@responses.activate
def test_rate_limits_and_server_errors_share_the_eight_tries() -> None:
    sleeps = Sleeps()
    url = f"{API}/orgs/acme/repos"
    for _ in range(3):
        responses.get(url, status=429, headers={"Retry-After": "1"})
        responses.get(url, status=503)
    responses.get(url, status=429, headers={"Retry-After": "1"})
    responses.get(url, status=429, headers={"Retry-After": "1"})
    with pytest.raises(ScmError, match="rate limit: gave up after 8 tries"):
        client(sleeps).get("/orgs/acme/repos")
    assert len(responses.calls) == 8 and len(sleeps.waits) == 7


@responses.activate
def test_the_waits_of_one_request_are_bounded_in_all_by_max_wait() -> None:
    sleeps = Sleeps()
    url = f"{API}/orgs/acme/repos"
    responses.get(url, status=429, headers={"Retry-After": "60"})
    api = github_client(API, SECRET, sleep=sleeps, clock=lambda: NOW, max_wait=100)
    with pytest.raises(ScmError, match=r"waiting 60s more would pass 100s .* too long to wait"):
        api.get("/orgs/acme/repos")
    assert sleeps.waits == [60.0] and len(responses.calls) == 2
