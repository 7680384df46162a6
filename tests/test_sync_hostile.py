"""A hostile SCM: every bound of the sync readers (docs/limits.md, "Reading SCMs and http sources").

The stand-ins turn hostile on demand (:mod:`bridge.fakescm`): next links and redirects to
another loopback origin (127.0.0.2, or another port of 127.0.0.1, which a browser counts as
another origin too), pages without end, huge answers, 429 forever, errors that echo the
token, workflow commands in fields. A second stand-in listens at the foreign origin and must
see nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.cli import main
from bridge.config import parse_config
from bridge.cortex import CortexClient
from bridge.fakecortex import FakeCortex
from bridge.fakescm import FakeGitHub, FakeGitLab, Fault, Filler
from bridge.store import Store
from bridge.sync import periodic
from bridge.sync.api import MAX_PAGES, ScmError
from bridge.sync.fetch import Bounds, Fetcher, FetchError, ForeignUrl, origin_of
from bridge.sync.github import GitHubReader, github_client
from bridge.sync.http_source import MAX_CURSOR
from bridge.sync.reader import Window
from tests.conftest import TOKEN
from tests.http_standins import SpiceApi

GH_TOKEN = "ghs-hostile-test-51d0"
GL_TOKEN = "glpat-hostile-test-77b2"
SHA = "a" * 40
WINDOW = ("--since", "2026-11-01", "--until", "2026-12-01")


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=GH_TOKEN) as fake:
        yield fake


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab(token=GL_TOKEN) as fake:
        yield fake


@pytest.fixture(params=["127.0.0.2", "127.0.0.1"], ids=["other-host", "other-port"])
def foreign(request: pytest.FixtureRequest) -> Iterator[FakeGitLab]:
    """A server at another origin that must receive nothing (it would accept either token)."""
    with FakeGitLab(token=GL_TOKEN, host=request.param) as fake:
        yield fake


def environ_for(tmp_path: Path, cortex: FakeCortex, **extra: str) -> dict[str, str]:
    return {
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
        "BRIDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'bridge.db'}",
        "GITHUB_TOKEN": GH_TOKEN,
        "GITLAB_API_TOKEN": GL_TOKEN,
        **extra,
    }


def run(environ: dict[str, str], capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    """``sync ...``: the exit code, stdout and stderr."""
    code = main(["sync", *args], environ)
    out, err = capsys.readouterr()
    return code, out, err


def add_gitlab_deploys(gitlab: FakeGitLab, count: int, *, environment: str = "production") -> None:
    for n in range(count):
        gitlab.add_deployment(
            "acme/web",
            n + 1,
            job=7000 + n,
            sha=f"{n + 1:040x}",
            environment=environment,
            status="success",
            updated_at=f"2026-11-{2 + n // 24:02d}T{n % 24:02d}:00:00Z",
        )


def add_github_deploy(github: FakeGitHub, **kw: Any) -> None:
    github.add_deployment(
        "acme/api",
        101,
        sha=SHA,
        environment=kw.pop("environment", "production"),
        created_at="2026-11-05T10:00:00Z",
        states=[("SUCCESS", "2026-11-05T10:05:00Z")],
        **kw,
    )


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("cortex-deploy-bridge: error")]
    assert len(lines) == 1, err
    return lines[0]


NOVEMBER = Window(
    datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc)
)


def read_github(github: FakeGitHub) -> list[Any]:
    """What a GitHubReader of acme/api finds in November (deployments only)."""
    api = github_client(github.api_url, GH_TOKEN)
    try:
        return list(GitHubReader(api, "acme/api", runs_are_deploys=False).read(NOVEMBER))
    finally:
        api.close()


# -- origins ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "same"),
    [
        pytest.param("https://API.example:443/v3", True, id="case-and-default-port"),
        pytest.param("https://api.example/graphql?x=1", True, id="path-and-query"),
        pytest.param("http://api.example/v3", False, id="other-scheme"),
        pytest.param("https://api.example:8443/v3", False, id="other-port"),
        pytest.param("https://api.example.evil/v3", False, id="other-host"),
        pytest.param("https://api.example@evil.example/v3", False, id="user-info"),
        pytest.param("//evil.example/v3", False, id="no-scheme"),
        pytest.param("ftp://api.example/v3", False, id="ftp"),
        pytest.param("https://api.example:99999/", False, id="bad-port"),
    ],
)
def test_an_origin_is_scheme_host_and_port(url: str, same: bool) -> None:
    fetcher = Fetcher("https://api.example", {"Authorization": "Bearer x"})
    assert (origin_of(url) == fetcher.origin) is same
    if not same:
        with pytest.raises(ForeignUrl, match=r"not https://api\.example:443"):
            fetcher.check(url, "a next-page link")


@pytest.mark.parametrize("variable", ["GITHUB_API_URL", "GITLAB_URL"])
def test_scm_urls_with_user_info_are_refused_naming_the_variable(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str], variable: str
) -> None:
    flag = "--github" if variable == "GITHUB_API_URL" else "--gitlab"
    environ = environ_for(tmp_path, cortex, **{variable: "https://gitlab.com@127.0.0.2:9"})
    code, _, err = run(environ, capsys, flag, "acme/web", *WINDOW)
    assert code == 2
    assert err.strip().startswith(f"cortex-deploy-bridge: error: {variable}: must not hold a user")
    assert len(err.strip().splitlines()) == 1


# -- next links, redirects, resume points ----------------------------------------------------


def test_a_gitlab_next_link_to_another_origin_ends_the_read_and_is_never_saved(
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    foreign: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_gitlab_deploys(gitlab, 150)
    gitlab.next_origin = foreign.url
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW)
    assert code == 1
    line = one_error_line(err)
    assert line.startswith("cortex-deploy-bridge: error: gitlab:acme/web: ")
    assert f"a next-page link leads to {foreign.url}/api/v4/projects" in line
    assert "nothing sent there" in line and GL_TOKEN not in err
    assert foreign.requests == []
    store = Store.from_url(environ["BRIDGE_DATABASE_URL"])
    try:
        progress = store.sync.sync_progress("gitlab:acme/web")
        assert progress is not None and foreign.url not in (progress.resume or "")
    finally:
        store.close()


def test_a_github_next_link_to_another_origin_ends_the_listing(
    tmp_path: Path,
    cortex: FakeCortex,
    github: FakeGitHub,
    foreign: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for n in range(101):
        github.add_repo(f"acme/r{n}", org="acme")
    github.next_origin = foreign.url
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github-org", "acme", *WINDOW)
    assert code == 1
    assert "a next-page link leads to" in one_error_line(err)
    assert foreign.requests == [] and GH_TOKEN not in err


@pytest.mark.parametrize("where", ["next-link", "redirect"])
def test_a_link_that_is_no_url_ends_the_read_in_one_line_naming_the_source(
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    # "http://[::1" is no URL (its host is cut short): joining it against the page's URL
    # raised, and sync ended in an internal error naming no source.
    add_gitlab_deploys(gitlab, 150)
    if where == "next-link":
        gitlab.next_origin = "http://[::1"
    else:
        gitlab.inject(Fault(307, {"Location": "http://[::1/x"}, {}, path="/deployments"))
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    code, out, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW, "--output", "json")
    assert code == 1
    line = one_error_line(err)
    assert line.startswith("cortex-deploy-bridge: error: gitlab:acme/web: ")
    said = "a next-page link" if where == "next-link" else "a 307 redirect"
    assert f"{said} leads to 'http://[" in line and "nothing sent there" in line
    assert "internal error" not in err and GL_TOKEN not in err
    error = json.loads(out)["summary"]["error"]
    assert error.startswith("gitlab:acme/web: ") and f"{said} leads to" in error


def test_a_lone_surrogate_in_an_scm_field_skips_that_deploy_and_records_the_rest(
    tmp_path: Path, cortex: FakeCortex, gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    # JSON's "\ud800" escape, alone, parses to no character UTF-8 can carry: the model refused
    # nothing, its size check raised, and the page's other deploys were lost with it.
    add_gitlab_deploys(gitlab, 2)
    gitlab.add_deployment(
        "acme/web",
        3,
        job=7100,
        sha="c" * 40,
        environment="prod\ud800",
        status="success",
        updated_at="2026-11-03T00:00:00Z",
    )
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    code, out, _ = run(environ, capsys, "--gitlab", "acme/web", *WINDOW, "--output", "json")
    assert code == 0
    rows = json.loads(out)["deploys"]
    assert sorted(row["verdict"] for row in rows) == ["recorded", "recorded", "skipped"]
    (skipped,) = [row for row in rows if row["verdict"] == "skipped"]
    assert "environment" in skipped["detail"]
    assert len(cortex.all_deploys()) == 2


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed_and_sends_no_token(
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    foreign: FakeGitLab,
    *,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    add_gitlab_deploys(gitlab, 1)
    foreign.add_deployment(
        "acme/web", 1, job=1, sha=SHA, environment="x", status="success", updated_at="2026-11-02"
    )
    location = f"{foreign.url}/api/v4/projects/acme%2Fweb/deployments"
    gitlab.inject(Fault(status, {"Location": location}, {}, path="/deployments"))
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW)
    assert code == 1
    assert f"a {status} redirect leads to {foreign.url}/api/v4/projects" in one_error_line(err)
    assert foreign.requests == []
    assert cortex.all_deploys() == []


def test_a_github_redirect_to_another_origin_is_not_followed(
    github: FakeGitHub, foreign: FakeGitLab
) -> None:
    github.inject(Fault(307, {"Location": f"{foreign.url}/graphql"}, {}))
    api = github_client(github.api_url, GH_TOKEN)
    with pytest.raises(ScmError, match="a 307 redirect leads to"):
        api.post_json("/graphql", {"query": "{}"})
    api.close()
    assert foreign.requests == []


def test_same_origin_redirects_are_followed_with_the_token_at_most_five(
    github: FakeGitHub,
) -> None:
    # GitHub answers 301 for a renamed repository (REST "API Versions", "Redirects").
    run_ = github.add_run(
        "acme/api",
        5,
        sha=SHA,
        name="deploy",
        path="d.yml",
        created_at="2026-11-02T10:00:00Z",
        updated_at="2026-11-02T10:05:00Z",
    )
    moved = {"Location": f"{github.url}/repos/acme/api/actions/runs/5"}
    github.inject(Fault(301, moved, {}, path="/repos/acme/old/actions/runs/5"))
    api = github_client(github.api_url, GH_TOKEN)
    assert api.get("/repos/acme/old/actions/runs/5").json()["id"] == run_["id"]
    assert [r.headers["authorization"] for r in github.requests] == [f"Bearer {GH_TOKEN}"] * 2
    loop = {"Location": f"{github.url}/repos/acme/api/actions/runs/6"}
    github.inject(Fault(302, loop, {}), times=None)
    with pytest.raises(ScmError, match="more than 5 redirects"):
        api.get("/repos/acme/api/actions/runs/6")
    api.close()
    assert len(github.requests) == 2 + 6


def _saved_gitlab_resume(db_url: str, url: str) -> None:
    """An interrupted sync of gitlab:acme/web whose saved resume point is ``url``."""
    since = datetime(2026, 11, 1, tzinfo=timezone.utc)
    store = Store.from_url(db_url)
    try:
        store.sync.start_sync(
            "gitlab:acme/web", since=since, until=since + timedelta(days=30), now=since
        )
        point = {"phase": "deployments", "url": url}
        store.sync.save_resume("gitlab:acme/web", json.dumps(point), now=since)
    finally:
        store.close()


def test_a_saved_resume_point_at_another_origin_is_never_used(
    db_url: str,
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    foreign: FakeGitLab,
    *,
    capsys: pytest.CaptureFixture[str],
) -> None:
    add_gitlab_deploys(gitlab, 3)
    add_gitlab_deploys(foreign, 3)
    _saved_gitlab_resume(db_url, f"{foreign.url}/api/v4/projects/acme%2Fweb/deployments?page=2")
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url, BRIDGE_DATABASE_URL=db_url)
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW)
    assert code == 1
    line = one_error_line(err)
    assert "gitlab:acme/web: the saved resume point leads to" in line
    assert "--restart starts over" in line
    assert foreign.requests == [] and gitlab.requests == []
    # --restart reads the configured origin from the start.
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", "--restart", *WINDOW)
    assert code == 0, err
    assert len(cortex.all_deploys()) == 3 and foreign.requests == []


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/api/v4/projects/other%2Fsecret/deployments?page=1", id="other-project"),
        pytest.param("/../../evil", id="dot-dot"),
        pytest.param("/api/v4/projects/acme%2Fweb/deployments/../../1/deployments", id="dots-in"),
        pytest.param("/api/v4/projects/acme%2Fweb/pipelines?page=2", id="the-other-list"),
    ],
)
def test_a_saved_resume_point_off_the_project_list_is_never_used(
    db_url: str,
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    *,
    capsys: pytest.CaptureFixture[str],
    path: str,
) -> None:
    # Followed with the token once: another project's deploys recorded as acme/web's.
    add_gitlab_deploys(gitlab, 3)
    for n in range(4):
        gitlab.add_deployment(
            "other/secret",
            100 + n,
            job=9000 + n,
            sha=f"{n + 1:040x}",
            environment="production",
            status="success",
            updated_at=f"2026-11-03T{n:02d}:00:00Z",
        )
    _saved_gitlab_resume(db_url, gitlab.url + path)
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url, BRIDGE_DATABASE_URL=db_url)
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW)
    assert code == 1
    line = one_error_line(err)
    assert "gitlab:acme/web: the saved resume point leads to" in line
    assert "'/api/v4/projects/acme%2Fweb/deployments'" in line
    assert "--restart starts over" in line
    assert gitlab.requests == [] and cortex.all_deploys() == []
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", "--restart", *WINDOW)
    assert code == 0, err
    assert len(cortex.all_deploys()) == 3


# -- bounded reads ---------------------------------------------------------------------------


@pytest.mark.system  # a thousand pages over loopback
def test_endless_github_pages_end_at_the_page_bound(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_github_deploy(github)
    github.endless = True  # hasNextPage always true, the cursor moving on
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 1
    assert f"github:acme/api: more than {MAX_PAGES} pages in one read" in one_error_line(err)
    assert len(github.requests) == MAX_PAGES


def test_a_graphql_cursor_that_does_not_move_is_an_error(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    stuck = {"pageInfo": {"hasNextPage": True, "endCursor": "same"}, "nodes": []}
    body = {"data": {"repository": {"url": "https://github.com/acme/api", "deployments": stuck}}}
    github.add_repo("acme/api")
    github.inject(Fault(200, {}, body, path="/graphql"), times=None)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 1
    assert "the page cursor did not move past 'same'" in one_error_line(err)
    assert len(github.requests) == 2


def test_a_graphql_cursor_past_its_bound_ends_the_read_and_is_never_sent(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    # Cursors of 1 MB were each sent, kept, and saved with every one before them at each
    # resume point: the memory and the database grew without bound.
    long = "c" * (MAX_CURSOR + 1)
    page = {"pageInfo": {"hasNextPage": True, "endCursor": long}, "nodes": []}
    body = {"data": {"repository": {"url": "https://github.com/acme/api", "deployments": page}}}
    github.add_repo("acme/api")
    github.inject(Fault(200, {}, body, path="/graphql"), times=None)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 1
    said = f"github:acme/api: github graphql: a cursor of {MAX_CURSOR + 1:,} characters: at most"
    assert said in one_error_line(err)
    assert len(github.requests) == 1


def test_a_saved_graphql_cursor_past_its_bound_is_not_a_resume_point(github: FakeGitHub) -> None:
    add_github_deploy(github)
    pages = [["c" * (MAX_CURSOR + 1), None]]
    resume = json.dumps({"phase": "deployments", "pages": pages, "index": 0})
    api = github_client(github.api_url, GH_TOKEN)
    reader = GitHubReader(api, "acme/api", runs_are_deploys=False)
    with pytest.raises(ScmError, match="not a resume point of this reader"):
        list(reader.read(NOVEMBER, resume=resume))
    api.close()
    assert github.requests == []


WRONG_SHAPES = {
    "repository.deployments": "lol",
    "deployments.pageInfo": {"pageInfo": "zz", "nodes": []},
}


@pytest.mark.parametrize("where", sorted(WRONG_SHAPES))
def test_a_graphql_answer_of_the_wrong_shape_is_one_line(
    tmp_path: Path,
    cortex: FakeCortex,
    github: FakeGitHub,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    # AttributeError: 'str' object has no attribute 'get', in a traceback.
    repository = {"url": "https://github.com/acme/api", "deployments": WRONG_SHAPES[where]}
    github.add_repo("acme/api")
    github.inject(Fault(200, {}, {"data": {"repository": repository}}, path="/graphql"), times=None)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 1
    assert f"the answer's {where} is not an object" in one_error_line(err)


@pytest.mark.parametrize(
    ("statuses", "said"),
    [
        pytest.param([1], "'statuses': [1]", id="statuses-a-list"),
        pytest.param({"nodes": 5}, "'statuses.nodes': 5", id="nodes-not-a-list"),
    ],
)
def test_a_deployment_whose_statuses_are_of_the_wrong_type_is_skipped_saying_so(
    github: FakeGitHub, statuses: Any, said: str
) -> None:
    # AttributeError or TypeError once ("internal error"), and the other deployments unread.
    add_github_deploy(github)
    github.add_deployment(
        "acme/api",
        102,
        sha=SHA,
        environment="staging",
        created_at="2026-11-06T10:00:00Z",
        states=[("SUCCESS", "2026-11-06T10:05:00Z"), ("INACTIVE", "2026-11-07T10:00:00Z")],
    )
    [odd] = [node for node in github.deployments["acme/api"] if node["databaseId"] == 102]
    odd["statuses"] = statuses  # read only for an inactive deployment
    found = read_github(github)
    assert [f.event.ref.id for f in found if f.event is not None] == ["101"]
    assert [f.skipped for f in found if f.skipped] == [f"deployment 102 payload has a bad {said}"]


RUNS = "https://github.com/acme/api/actions/runs"


@pytest.mark.parametrize(
    "log_url",
    [
        pytest.param(f"{RUNS}/{'9' * 5000}", id="run-id-of-5000-digits"),
        pytest.param(f"{RUNS}/{'9' * 21}", id="run-id-of-21-digits"),
        pytest.param(f"{RUNS}/1/job/{'9' * 21}", id="job-id-of-21-digits"),
        pytest.param("https://[x/actions/runs/1", id="not-a-url"),
    ],
)
def test_a_log_url_that_names_no_run_keys_the_deployment_by_itself(
    github: FakeGitHub, log_url: Any
) -> None:
    # int() of 5,000 digits raised ValueError ("internal error") once, ending the read.
    add_github_deploy(github)
    github.deployments["acme/api"][0]["latestStatus"]["logUrl"] = log_url
    [found] = read_github(github)
    assert found.event is not None
    assert (found.event.ref.kind, found.event.ref.id) == ("deployment", "101")
    assert [r.path for r in github.requests if "/actions/" in r.path] == []


def test_a_log_url_that_is_not_text_skips_the_deployment_naming_it(github: FakeGitHub) -> None:
    # A text field of another type is refused as the webhook's parser refuses it (limits.md):
    # skipped with its reason, the rest of the page read.
    add_github_deploy(github)
    github.deployments["acme/api"][0]["latestStatus"]["logUrl"] = 5
    [found] = read_github(github)
    assert found.event is None
    assert found.skipped == "deployment_status payload has a bad 'deployment_status.log_url': 5"
    assert [r.path for r in github.requests if "/actions/" in r.path] == []


@pytest.mark.system  # a thousand pages over loopback
def test_endless_gitlab_pages_end_at_the_page_bound(
    tmp_path: Path, cortex: FakeCortex, gitlab: FakeGitLab, capsys: pytest.CaptureFixture[str]
) -> None:
    add_gitlab_deploys(gitlab, 1)
    gitlab.endless = True
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    code, _, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW)
    assert code == 1
    assert f"more than {MAX_PAGES} pages in one read" in one_error_line(err)
    # The deployments list, then the project itself once (for its web URL).
    assert len(gitlab.requests) == MAX_PAGES + 1
    assert len(cortex.all_deploys()) == 1  # what was found is recorded


@pytest.mark.parametrize(
    ("body", "words"),
    [
        pytest.param(Filler(200 * 1024 * 1024), "an answer larger than 16777216 bytes", id="200MB"),
        pytest.param(
            Filler(15 * 1024 * 1024, b"{},"), "more than 50000 objects or arrays", id="objects"
        ),
        pytest.param(Filler(15 * 1024 * 1024), "more than 500000 values", id="values"),
        pytest.param(Filler(40_000, b"["), "the answer is not JSON", id="deep"),
    ],
)
def test_huge_answers_are_refused_in_bounded_memory(
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    *,
    capsys: pytest.CaptureFixture[str],
    body: Any,
    words: str,
) -> None:
    add_gitlab_deploys(gitlab, 1)
    gitlab.inject(Fault(200, {}, body, path="/deployments"))
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    tracemalloc.start()
    try:
        code, _, err = run(environ, capsys, "--gitlab", "acme/web", *WINDOW)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 1
    assert words in one_error_line(err)
    assert peak < 64 * 1024 * 1024


def test_more_items_than_asked_for_is_an_error(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    github.orgs["acme"] = [f"acme/r{n}" for n in range(101)]
    github.inject(Fault(200, {}, [{"full_name": f"acme/r{n}"} for n in range(101)]))
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github-org", "acme", *WINDOW)
    assert code == 1
    assert "answered 101 items where at most 100 were asked for" in one_error_line(err)


def test_429_forever_ends_after_a_bounded_number_of_tries(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_github_deploy(github)
    github.inject(Fault(429, {"Retry-After": "0"}, {"message": "slow"}), times=None)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github", "acme/api", *WINDOW)
    assert code == 1
    assert "rate limit: gave up after 8 tries" in one_error_line(err)
    assert len(github.requests) == 8


def test_graphql_rate_limited_forever_ends_after_the_same_eight_tries(github: FakeGitHub) -> None:
    add_github_deploy(github)
    limited = {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded"}]}
    github.inject(Fault(200, {}, limited, path="/graphql"), times=None)
    waits: list[float] = []
    api = github_client(github.api_url, GH_TOKEN, sleep=waits.append)
    window = Window(
        datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc)
    )
    with pytest.raises(ScmError, match="github graphql rate limit: gave up after 8 tries"):
        list(GitHubReader(api, "acme/api", runs_are_deploys=False).read(window))
    api.close()
    # GraphQL's limit answers 200 with headers that say nothing of when: a minute each time.
    assert waits == [60.0] * 7
    assert len(github.requests) == 8


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        pytest.param("0", 0.0, id="zero"),
        pytest.param("-5", 0.0, id="negative"),
        pytest.param("nan", 60.0, id="nan"),
        pytest.param("inf", 60.0, id="inf"),
        pytest.param("1e400", 60.0, id="overflow"),
    ],
)
def test_retry_after_that_is_no_number_of_seconds_waits_a_minute_within_the_bounds(
    github: FakeGitHub, retry_after: str, wait: float
) -> None:
    waits: list[float] = []
    github.inject(Fault(429, {"Retry-After": retry_after}, {"message": "slow"}), times=None)
    api = github_client(github.api_url, GH_TOKEN, sleep=waits.append)
    with pytest.raises(ScmError, match=r"gave up after 8 tries|too long to wait"):
        api.get("/repos/acme/api/actions/runs/5")
    api.close()
    assert waits == [wait] * 7
    assert len(github.requests) == 8


@pytest.mark.system  # a deadline, timed over loopback
def test_an_answer_that_drips_ends_at_its_deadline(github: FakeGitHub) -> None:
    github.inject(Fault(200, {}, {"id": 5, "padding": "x" * 200}, drip=0.02), times=None)
    sleeps: list[float] = []
    bounds = Bounds(answer_seconds=0.3)
    api = github_client(github.api_url, GH_TOKEN, bounds=bounds, sleep=sleeps.append)
    started = time.monotonic()
    with pytest.raises(ScmError, match="took more than 0s to answer"):
        api.get("/repos/acme/api/actions/runs/5")
    api.close()
    # Tried as a lost connection would be (4 times), each cut at its deadline.
    assert len(github.requests) == 4 and len(sleeps) == 3
    assert time.monotonic() - started < 4 * (0.3 + 0.1)


@pytest.mark.system  # a server of its own on loopback, and half a second of it dripping
def test_headers_that_drip_end_at_the_answers_deadline_too() -> None:
    # One header byte at a time, each within the per-read timeout: the deadline covered the
    # body alone, and such a server held a read (and the reconcile's thread) for good.
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        connection, _ = server.accept()
        with connection:
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.wait(0.05):
                try:
                    connection.sendall(b"X")
                except OSError:
                    return

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    base = f"http://127.0.0.1:{server.getsockname()[1]}"
    fetcher = Fetcher(base, {"Authorization": "Bearer x"}, bounds=Bounds(answer_seconds=0.5))
    started = time.monotonic()
    try:
        with pytest.raises(FetchError, match="took more than 0s to answer") as raised:
            fetcher.send("GET", f"{base}/x")
    finally:
        stop.set()
        fetcher.close()
        server.close()
    assert raised.value.retryable
    assert time.monotonic() - started < 5  # not the 30 s read timeout, nor forever


# -- output ----------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["table", "json"])
def test_an_error_that_echoes_the_token_is_shown_masked(
    tmp_path: Path,
    cortex: FakeCortex,
    gitlab: FakeGitLab,
    capsys: pytest.CaptureFixture[str],
    output: str,
) -> None:
    gitlab.inject(Fault(401, {}, "invalid token", path="/deployments", echo=True))
    gitlab.add_project("acme/web")
    environ = environ_for(tmp_path, cortex, GITLAB_URL=gitlab.url)
    code, out, err = run(environ, capsys, "--gitlab", "acme/web", "--output", output, *WINDOW)
    assert code == 1
    assert "invalid token: ***" in one_error_line(err)
    assert GL_TOKEN not in out + err


def test_workflow_commands_and_control_characters_in_scm_fields_are_escaped(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = "::error::pwned ##[add-mask]x"
    add_github_deploy(github, environment=environment)
    github.add_deployment(
        "acme/api",
        102,
        sha=SHA,
        environment="prod\n::stop-commands::abc",
        created_at="2026-11-06T10:00:00Z",
        states=[("SUCCESS", "2026-11-06T10:05:00Z")],
    )
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, out, err = run(environ, capsys, "--github", "acme/api", "--dry-run", *WINDOW)
    assert code == 3
    for line in (out + err).splitlines():
        assert not line.lstrip().startswith("::") and "::" not in line and "##" not in line
    assert ":\\:error:\\:pwned #\\#[add-mask]x" in out
    code, out, _ = run(
        environ, capsys, "--github", "acme/api", "--dry-run", "--output", "json", *WINDOW
    )
    assert "::" not in out and "##" not in out
    report = json.loads(out)
    assert environment in [row["environment"] for row in report["deploys"]]


# -- the reconcile inside serve / worker ----------------------------------------------------


def test_a_hostile_source_does_not_stop_the_reconcile_of_the_others(
    db_url: str, cortex: FakeCortex, github: FakeGitHub, foreign: FakeGitLab
) -> None:
    now = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    github.add_repo("acme/api")
    github.next_origin = foreign.url
    github.endless = True
    github.orgs["acme"] = ["acme/api"]
    token = "pat-ships-81c3"
    with SpiceApi(token=token) as ships:
        ships.add(7, "succeeded", now - timedelta(hours=3), sha=SHA)
        config = parse_config(
            {
                "database": db_url,
                "sync": {"github": ["acme/*"], "http": ["ships"]},
                "http_sources": {
                    "ships": {
                        "preset": "spice",
                        "url": ships.url,
                        "token_env": "SHIPS_TOKEN",
                        "repository": "acme/ships-web",
                    }
                },
            },
            environ={"CORTEX_API_URL": cortex.url},
        )
        environ = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": github.api_url, "SHIPS_TOKEN": token}
        store = Store.from_url(db_url)
        client = CortexClient(cortex.url, TOKEN)
        try:
            one = periodic.Reconcile(config, store, client, environ, owner="r1", clock=lambda: now)
            assert one.run_once() is True
        finally:
            store.close()
            client.close()
    [stored] = cortex.all_deploys()
    assert stored["sha"] == SHA
    assert foreign.requests == []


def test_the_relay_refuses_to_start_with_user_info_in_gitlab_url(
    tmp_path: Path, cortex: FakeCortex, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text(f"database: sqlite:///{tmp_path / 'b.db'}\nsync: {{gitlab: [acme/web]}}\n")
    environ = {
        "CORTEX_API_TOKEN": TOKEN,
        "CORTEX_API_URL": cortex.url,
        "GITLAB_API_TOKEN": GL_TOKEN,
        "GITLAB_URL": "https://gitlab.com@127.0.0.2",
    }
    assert main(["worker", "--config", str(config)], environ) == 2
    err = capsys.readouterr().err.strip()
    assert "GITLAB_URL: must not hold a user or password" in err
    assert len(err.splitlines()) == 1


def test_a_read_that_goes_on_past_its_time_bound_stops(github: FakeGitHub) -> None:
    """The reconcile bounds each source's read to half its interval (inside its lease)."""
    add_github_deploy(github)
    github.endless = True
    ticks = iter(range(10**6))
    api = github_client(github.api_url, GH_TOKEN, read_seconds=30, clock=lambda: float(next(ticks)))
    reader = GitHubReader(api, "acme/api", runs_are_deploys=False)
    window = Window(
        datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc)
    )
    with pytest.raises(ScmError, match="still reading after 30s"):
        list(reader.read(window))
    api.close()
    assert len(github.requests) < 40


def test_the_reconcile_bounds_each_read_to_half_its_interval(
    db_url: str, cortex: FakeCortex, github: FakeGitHub
) -> None:
    config = parse_config(
        {"database": db_url, "sync": {"github": ["acme/api"], "interval_minutes": 10}},
        environ={"CORTEX_API_URL": cortex.url},
    )
    seen: list[tuple[float, float | None]] = []

    def readers(targets: Any, config: Any, environ: Any, **bounds: Any) -> Any:
        seen.append((bounds["max_wait"], bounds["read_seconds"]))
        return (lambda: iter(())), []

    store = Store.from_url(db_url)
    client = CortexClient(cortex.url, TOKEN)
    try:
        one = periodic.Reconcile(
            config,
            store,
            client,
            {"GITHUB_TOKEN": GH_TOKEN},
            owner="r1",
            clock=lambda: datetime(2026, 11, 20, tzinfo=timezone.utc),
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(periodic, "make_readers", readers)
            assert one.run_once() is True
    finally:
        store.close()
        client.close()
    assert seen == [(300.0, 300.0)]


@pytest.mark.parametrize(
    ("text", "table"),
    [
        pytest.param("::error::x", ":\\:error:\\:x", id="command"),
        pytest.param(":::", ":\\:\\:", id="three-colons"),
        pytest.param("##[add-mask]x ##vso[task]", "#\\#[add-mask]x #\\#vso[task]", id="v1"),
        pytest.param(
            "a\nb\rc\x1b[2Kd\x85e\u2028", "a\\nb\\rc\\x1b[2Kd\\x85e\\u2028", id="controls"
        ),
        pytest.param(f"token {GH_TOKEN}!", "token ***!", id="token"),
        pytest.param("std: :x # 1", "std: :x # 1", id="single-markers-kept"),
    ],
)
def test_what_sync_shows_is_masked_and_escaped(text: str, table: str) -> None:
    from bridge.sync.report import json_line, shown

    assert shown(text, [GH_TOKEN]) == table
    line = json_line({"detail": text}, [GH_TOKEN])
    assert "::" not in line and "##" not in line and "\n" not in line and GH_TOKEN not in line
    assert json.loads(line)["detail"] == text.replace(GH_TOKEN, "***")


def test_a_failed_listing_is_one_failing_source_and_leaves_no_run_to_continue(
    tmp_path: Path, cortex: FakeCortex, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    add_github_deploy(github)
    environ = environ_for(tmp_path, cortex, GITHUB_API_URL=github.api_url)
    code, _, err = run(environ, capsys, "--github", "acme/api", "--github-org", "nobody", *WINDOW)
    assert code == 1
    assert "github:nobody: 127.0.0.1:" in one_error_line(err)
    assert len(cortex.all_deploys()) == 1  # the source before it was read and recorded
    store = Store.from_url(environ["BRIDGE_DATABASE_URL"])
    try:
        assert store.sync.sync_progress("github:nobody") is None
    finally:
        store.close()


def test_an_answer_cut_short_is_a_lost_connection_tried_again(github: FakeGitHub) -> None:
    # The stand-in says 10 MB and sends a few bytes: the body ends early, as a cut connection.
    github.inject(Fault(200, {"Content-Length": "10000000"}, {"id": 5}), times=None)
    sleeps: list[float] = []
    api = github_client(github.api_url, GH_TOKEN, sleep=sleeps.append)
    with pytest.raises(ScmError, match="unreachable: ProtocolError"):
        api.get("/repos/acme/api/actions/runs/5")
    api.close()
    assert len(github.requests) == 4 and len(sleeps) == 3
