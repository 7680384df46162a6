"""GitHub as a sync source: deployments (GraphQL) and workflow runs (REST) of one repository.

Each item is rebuilt into the webhook payload GitHub would have sent for it and handed to the
webhook parser itself (:mod:`bridge.sources.github`), so a deploy read here is the very
DeployEvent its webhook makes: same ref, same idempotency key, one mapping.

- Deployments: GraphQL ``repository.deployments`` newest first, 100 a page with each one's
  ``latestStatus`` (docs.github.com/en/graphql/reference/objects#deployment): one request per
  100 deploys, where REST needs a statuses call per deployment. Paging stops once a page
  reaches deployments created before the window.
- Workflow runs: REST ``GET /repos/{owner}/{repo}/actions/runs?created=A..B`` (they carry their
  conclusion). They are deploys only where the config's ``workflows`` rules say so, and they
  name the run a deployment made by an Actions job belongs to: its webhook carries that
  ``workflow_run`` and is keyed by it (run id and attempt), and so is the event here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from bridge.errors import BridgeError, MalformedEvent
from bridge.redact import cut, spellings
from bridge.secrets import VARIABLE
from bridge.sources import github as hooks
from bridge.sources.fields import Fields, shorten
from bridge.sync.api import (
    DEFAULT_WAIT_SECONDS,
    GITHUB_LIMITS,
    ApiClient,
    ReadApi,
    ScmError,
    rate_limit_wait,
)
from bridge.sync.found import json_list, parsed, whole_seconds
from bridge.sync.http_source import MAX_CURSOR
from bridge.sync.reader import Found, Window
from bridge.times import parse_timestamp

DEFAULT_API_URL = "https://api.github.com"
PAGE = 100  # the most GraphQL connections and REST lists give at once
# GitHub's cap on the runs one ``created`` search returns.
MAX_RUNS = 1000
# Both lists go by creation, the window by the finish: a deploy begun up to this long before
# the window that finished inside it is still read.
OVERLAP = timedelta(days=1)

DEPLOYMENTS_QUERY = """
query($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    url nameWithOwner
    deployments(first: 100, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        databaseId commitOid environment createdAt description payload
        ref { name }
        creator { login }
        latestStatus { state createdAt logUrl environmentUrl creator { login } }
        statuses(first: 10) { nodes { state createdAt logUrl environmentUrl creator { login } } }
      }
    }
  }
}
"""

# The first pass: where each page starts and ends, and how old it reaches (one point a page).
CURSORS_QUERY = """
query($owner: String!, $name: String!, $after: String) {
  repository(owner: $owner, name: $name) {
    url nameWithOwner
    deployments(first: 100, after: $after, orderBy: {field: CREATED_AT, direction: DESC}) {
      pageInfo { hasNextPage endCursor }
      nodes { databaseId createdAt }
    }
  }
}
"""

# A deployment made by an Actions job logs to the job's page (".../actions/runs/<run>/job/<job>").
_RUN_PAGE = re.compile(r"/actions/runs/(?P<run>[0-9]+)(?:/job/(?P<job>[0-9]+))?")
# GitHub's ids are 64-bit, at most 20 digits (docs/limits.md): a longer number names no run
# (and int() refuses one of more than 4,300 digits).
MAX_ID_DIGITS = 20


def graphql_url(api_url: str) -> str:
    """GraphQL's endpoint: ``<api>/graphql``; GitHub Enterprise Server's ``<host>/api/graphql``."""
    api = api_url.rstrip("/")
    # GHES serves REST at <host>/api/v3 and GraphQL at <host>/api/graphql
    # (docs.github.com/en/enterprise-server@latest/graphql/guides/forming-calls-with-graphql).
    if api.endswith("/api/v3"):
        return api[: -len("/v3")] + "/graphql"
    return f"{api}/graphql"


def github_client(api_url: str, token: str, **options: Any) -> ApiClient:
    """A client for GitHub's REST and GraphQL APIs with ``token`` (GITHUB_TOKEN)."""
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Authorization": f"Bearer {token}",
    }
    return ApiClient(
        api_url,
        headers,
        limits=GITHUB_LIMITS,
        secrets=(token,),
        token_name=VARIABLE["github-api"],
        **options,
    )


def org_repositories(api: ApiClient, owner: str) -> Iterator[str]:
    """Every repository of an organisation, or of a user account, as ``owner/name``."""
    read = ReadApi(api)
    try:
        yield from _repositories(read, f"/orgs/{owner}/repos", {"type": "all"})
    except ScmError as exc:
        if exc.status != 404:
            raise
        # Not an organisation: a user's own repositories ("List repositories for a user").
        yield from _repositories(read, f"/users/{owner}/repos", {"type": "owner"})


def _repositories(api: ReadApi, path: str, params: Mapping[str, str]) -> Iterator[str]:
    for page, _ in api.pages(path, {"per_page": PAGE, **params}):
        for repo in json_list(page.json(), path, most=PAGE):
            name = repo.get("full_name") if isinstance(repo, Mapping) else None
            if isinstance(name, str):
                yield name


class GitHubReader:
    """The deploys of one GitHub repository (see the module's docstring)."""

    def __init__(self, api: ApiClient, repository: str, *, runs_are_deploys: bool) -> None:
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise BridgeError(f"--github: expected OWNER/REPO, got {repository!r}")
        self.api = api
        self._api = ReadApi(api)
        self.repository = repository
        self._full_name = repository  # GitHub's spelling once an answer gives it
        self.runs_are_deploys = runs_are_deploys
        self._runs: dict[int, Mapping[str, Any]] = {}
        self._runs_listed: Window | None = None  # the window the runs were listed for
        self._html_url = f"https://github.com/{repository}"

    @property
    def name(self) -> str:
        """``github:owner/repo``."""
        return f"github:{self.repository}"

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        """Workflow runs first, where they count as deploys; then deployments.

        The runs are also listed (once) when a deployment made by an Actions job needs its
        run. Only the deployments' progress is a resume point: runs are few pages, read again
        on a resume, and their deploys then found present.
        """
        point = _resume_point(resume)
        self._api = ReadApi(self.api)  # each read has its own page bound
        if self.runs_are_deploys and not point:
            yield from self._runs_in(window)
            yield Found(None, "", json.dumps({"phase": "deployments"}))
        yield from self._deployments(window, point)

    # -- workflow runs ----------------------------------------------------------------------

    def _runs_in(self, window: Window) -> Iterator[Found]:
        """The window's runs as deploys (or not), each kept (slim) for the deployments."""
        self._runs_listed = window
        for run in self._runs_created(window.since - OVERLAP, window.until):
            if not isinstance(run, Mapping) or not isinstance(run.get("id"), int):
                continue
            if run["id"] in self._runs:
                continue  # on the boundary of two split ranges
            self._runs[run["id"]] = _slim_run(run)
            if self.runs_are_deploys:
                yield self._run_found(run, window)

    def _runs_created(self, since: datetime, until: datetime) -> Iterator[Any]:
        """The runs created in [since, until], the range split while GitHub would cut it.

        With ``created``, GitHub returns at most 1,000 runs of a search ("List workflow runs
        for a repository"): a range holding more is halved, each half read on its own.
        """
        path = f"/repos/{self.repository}/actions/runs"
        created = f"{whole_seconds(since)}..{whole_seconds(until, up=True)}"
        pages = self._api.pages(path, {"created": created, "per_page": PAGE})
        for number, (page, _) in enumerate(pages):
            answer = page.json()
            body = answer if isinstance(answer, dict) else {}
            total = body.get("total_count")
            cut = number == 0 and isinstance(total, int) and total > MAX_RUNS
            if cut and until - since > timedelta(seconds=2):
                middle = since + (until - since) / 2
                yield from self._runs_created(middle, until)
                yield from self._runs_created(since, middle)
                return
            yield from json_list(body.get("workflow_runs"), path, most=PAGE)

    def _run_found(self, run: Mapping[str, Any], window: Window) -> Found:
        listed = run.get("repository")
        self._canonical(listed.get("full_name") if isinstance(listed, Mapping) else None)
        payload = {"action": "completed", "workflow_run": run, "repository": self._repo()}
        return parsed(hooks.parse_workflow_run, payload, window)

    def _run_for(self, log_url: object, window: Window) -> Mapping[str, Any] | None:
        """The workflow run (and attempt) whose job made a deployment, from its log page.

        The window's runs are listed on the first need (a page per 100 runs); a run not in
        that list (created long before) is read alone.
        """
        page = _run_page(log_url)
        if page is None:
            return None
        if self._runs_listed != window:
            for _ in self._runs_in(window):
                pass
        run_id, job_id = page
        run = self._runs.get(run_id)
        if run is None:
            run = _object(self._api.get(f"/repos/{self.repository}/actions/runs/{run_id}"))
            self._runs[run_id] = _slim_run(run)
        attempt = run.get("run_attempt")
        if job_id is not None and isinstance(attempt, int) and attempt > 1:
            # A re-run: the job names its own attempt (REST "Get a job for a workflow run").
            job = _object(self._api.get(f"/repos/{self.repository}/actions/jobs/{job_id}"))
            if isinstance(job.get("run_attempt"), int) and job["run_attempt"] != attempt:
                path = f"/repos/{self.repository}/actions/runs/{run_id}/attempts"
                run = _object(self._api.get(f"{path}/{job['run_attempt']}"))
        return run if isinstance(run, Mapping) else None

    # -- deployments ------------------------------------------------------------------------

    def _deployments(self, window: Window, point: Mapping[str, Any]) -> Iterator[Found]:
        """The window's deployments, oldest page first.

        GraphQL lists deployments newest first; recording goes oldest first, so that a
        redeploy of an older sha finds its earlier deploy already in Cortex (rollback
        detection). So a slim first pass pages through creation times only, noting where
        each page starts (its cursor) and ends (its last deployment), and the full pages are
        then read from the oldest back. The pages are part of each resume point.
        """
        pages = point.get("pages") or self._pages(window)
        for index in range(point.get("index", len(pages) - 1), -1, -1):
            after, last = pages[index]
            yield from self._page(window, after, last)
            if index > 0:
                resume = {"phase": "deployments", "pages": pages, "index": index - 1}
                yield Found(None, "", json.dumps(resume))

    def _page(self, window: Window, after: str | None, last: int | None) -> Iterator[Found]:
        """One page of the first pass, in full: from ``after`` down to deployment ``last``.

        Deployments created since the first pass push the newest page's end further down:
        it is read on until its last deployment shows up (None: the oldest page, one read).
        """
        while True:
            repository = self._repository(DEPLOYMENTS_QUERY, after)
            deployments = _part(repository.get("deployments"), "repository.deployments")
            for node in _nodes(deployments):
                if not isinstance(node, Mapping):
                    continue
                if not _before(node, window):
                    yield self._deployment_found(node, window)
                if last is not None and node.get("databaseId") == last:
                    return
            info = _part(deployments.get("pageInfo"), "deployments.pageInfo")
            after = _moved(after, info.get("endCursor"))
            if last is None or not info.get("hasNextPage") or not after:
                return

    def _pages(self, window: Window) -> list[tuple[str | None, int | None]]:
        """Each page reaching into the window, newest first: its cursor and last deployment."""
        pages: list[tuple[str | None, int | None]] = []
        after: str | None = None
        while True:
            repository = self._repository(CURSORS_QUERY, after)
            deployments = _part(repository.get("deployments"), "repository.deployments")
            info = _part(deployments.get("pageInfo"), "deployments.pageInfo")
            nodes = [n for n in _nodes(deployments) if isinstance(n, Mapping)]
            last = nodes[-1].get("databaseId") if nodes else None
            if any(_before(n, window) for n in nodes) or not info.get("hasNextPage"):
                return [*pages, (after, None)]
            pages.append((after, last))
            after = _moved(after, info.get("endCursor"))
            if not after:
                return [*pages, (after, None)]

    def _repository(self, query: str, after: str | None) -> Mapping[str, Any]:
        owner, _, name = self.repository.partition("/")
        data = self._graphql(query, {"owner": owner, "name": name, "after": after})
        repository = data.get("repository")
        if not isinstance(repository, Mapping):
            raise ScmError(f"github: repository {self.repository!r} not found", status=404)
        if isinstance(repository.get("url"), str):
            self._html_url = repository["url"]
        self._canonical(repository.get("nameWithOwner"))
        return repository

    def _canonical(self, name: object) -> None:
        """Take GitHub's own spelling of the repository (its names ignore letter case): the
        webhook's ``full_name``, so that ``--github ACME/Api`` keys its deploys as the relay
        and the Action do, not a second time."""
        if isinstance(name, str) and name.casefold() == self.repository.casefold():
            self._full_name = name

    def _deployment_found(self, node: Mapping[str, Any], window: Window) -> Found:
        try:
            status = _recorded_status(node)
        except MalformedEvent as exc:
            return Found(None, str(exc))
        if status is None:
            return Found(None, f"deployment {node.get('databaseId')} has no status yet")
        payload: dict[str, Any] = {
            "action": "created",
            "deployment": _deployment(node),
            "deployment_status": _status(status),
            "repository": self._repo(),
        }
        gone: str | None = None
        try:
            run = self._run_for(status.get("logUrl"), window)
        except ScmError as exc:
            if exc.status != 404:
                raise
            # The run was deleted: keyed by the deployment, as its webhook without the run
            # would be, the event naming the run its log page gives (not the attempt), so that
            # a record made under that run is found (bridge.record.core.as_held).
            run, page = None, _run_page(status.get("logUrl"))
            gone = str(page[0]) if page is not None else None
        if run is not None:
            payload["workflow_run"] = run
        found = parsed(hooks.parse_deployment_status, payload, window)
        if gone is None or found.event is None:
            return found
        return replace(found, event=replace(found.event, run=gone))

    def _graphql(self, query: str, variables: Mapping[str, Any]) -> Mapping[str, Any]:
        """The query's ``data``; its primary rate limit waited out as any other request's."""
        body = {"query": query, "variables": variables}
        url = graphql_url(self.api.base_url)
        return self.api.retried(lambda: self._graphql_once(url, body))

    def _graphql_once(self, url: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        response = self._api.post_json(url, body)
        answer = response.json()
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if not errors:
            data = answer.get("data") if isinstance(answer, dict) else None
            return data if isinstance(data, Mapping) else {}
        first = errors[0] if isinstance(errors, list) and errors else {}
        if isinstance(first, Mapping) and first.get("type") == "RATE_LIMITED":
            # GraphQL answers its primary limit with 200, this error and the REST headers
            # (GitHub docs, "Rate limits and query limits for the GraphQL API").
            wait = rate_limit_wait(429, response.headers, self.api.now(), GITHUB_LIMITS)
            raise ScmError(
                "github graphql rate limit",
                retryable=True,
                retry_after=DEFAULT_WAIT_SECONDS if wait is None else wait,
            )
        message = first.get("message") if isinstance(first, Mapping) else None
        status = 404 if isinstance(first, Mapping) and first.get("type") == "NOT_FOUND" else 0
        said = cut(str(message or errors), 200, spellings(self.api.secrets))
        text = f"github graphql: {said}"
        raise ScmError(text, status=status)

    def _repo(self) -> dict[str, Any]:
        return {"full_name": self._full_name, "html_url": self._html_url}


def _resume_point(resume: str | None) -> Mapping[str, Any]:
    """A saved resume point read back; one this reader cannot have given is an error."""
    if resume is None:
        return {}
    try:
        point = json.loads(resume)
    except ValueError:
        point = None
    pages = point.get("pages") if isinstance(point, dict) else None
    index = point.get("index") if isinstance(point, dict) else None
    well_formed = isinstance(point, dict) and point.get("phase") == "deployments"
    if well_formed and pages is not None:
        well_formed = (
            isinstance(pages, list)
            and isinstance(index, int)
            and 0 <= index < len(pages)
            and all(_page_mark(page) for page in pages)
        )
    if not well_formed:
        raise ScmError(f"not a resume point of this reader: {resume[:80]!r}")
    return dict(point)


def _page_mark(page: object) -> bool:
    """Whether a saved page is ``[cursor or null, last deployment id or null]``, its cursor
    one that :func:`_moved` lets through."""
    return (
        isinstance(page, list)
        and len(page) == 2
        and isinstance(page[0], (str, type(None)))
        and len(page[0] or "") <= MAX_CURSOR
        and isinstance(page[1], (int, type(None)))
    )


def _part(value: Any, where: str) -> Mapping[str, Any]:
    """``value``, a JSON object of GitHub's answer (None: an empty one); else ScmError."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ScmError(f"github: the answer's {where} is not an object: {type(value).__name__}")
    return value


def _nodes(deployments: Mapping[str, Any]) -> list[Any]:
    """A GraphQL page's nodes: at most the 100 asked for (``first: 100``)."""
    nodes = deployments.get("nodes") or []
    if not isinstance(nodes, list) or len(nodes) > PAGE:
        raise ScmError(f"github graphql: a page of deployments not a list of at most {PAGE}")
    return nodes


def _moved(before: str | None, after: object) -> str | None:
    """The next page's cursor; ScmError when it is not a cursor, does not move or is longer
    than MAX_CURSOR: it is sent with the next query and kept, with every cursor before it,
    in each resume point (docs/limits.md)."""
    if after is None:
        return None
    if not isinstance(after, str) or after == before:
        raise ScmError(f"github graphql: the page cursor did not move past {before!r}")
    if len(after) > MAX_CURSOR:
        raise ScmError(
            f"github graphql: a cursor of {len(after):,} characters: at most {MAX_CURSOR:,}"
        )
    return after


def _run_page(log_url: object) -> tuple[int, int | None] | None:
    """The run and job (None: no job) whose page ``log_url`` is; None when it is no run's
    page: not a URL, another page, or an id longer than any of GitHub's."""
    if not isinstance(log_url, str):
        return None
    try:
        path = urlsplit(log_url).path
    except ValueError:  # not a URL ("https://[x")
        return None
    found = _RUN_PAGE.search(path)
    if found is None:
        return None
    run, job = found["run"], found["job"] or ""
    if len(run) > MAX_ID_DIGITS or len(job) > MAX_ID_DIGITS:
        return None
    return int(run), int(job) if job else None


def _recorded_status(node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The status that says how the deploy went: the latest, unless it went inactive.

    GitHub marks a successful deployment ``inactive`` once a newer one succeeds in the same
    environment (REST "Create a deployment status", ``auto_inactive``): the deploy happened,
    so its last status before that is the one recorded. Statuses of the wrong type are a
    MalformedEvent, as a wrong type the webhook parser reads is: the deployment is skipped.
    """
    fields = Fields(node, f"deployment {shorten(node.get('databaseId'))}")
    latest = fields.mapping("latestStatus")
    if latest is None:
        return None
    if str(latest.get("state", "")).lower() != "inactive":
        return latest
    statuses = fields.get("statuses")
    if statuses is not None and not isinstance(statuses, Mapping):
        raise fields.bad("statuses", statuses)
    nodes = fields.get("statuses.nodes")
    if nodes is not None and not isinstance(nodes, list):
        raise fields.bad("statuses.nodes", nodes)
    earlier = [
        s
        for s in nodes or ()
        if isinstance(s, Mapping) and str(s.get("state", "")).lower() not in ("inactive", "")
    ]
    return max(earlier, key=lambda s: str(s.get("createdAt", "")), default=latest)


def _deployment(node: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook's ``deployment`` object, from the GraphQL node."""
    ref = node.get("ref")
    return {
        "id": node.get("databaseId"),
        "sha": node.get("commitOid"),
        "environment": node.get("environment"),
        "created_at": node.get("createdAt"),
        "description": node.get("description"),
        "ref": ref.get("name") if isinstance(ref, Mapping) else None,
        "creator": node.get("creator"),
        "payload": node.get("payload"),
    }


def _status(status: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook's ``deployment_status`` object, from a GraphQL DeploymentStatus."""
    return {
        "state": str(status.get("state", "")).lower(),
        "created_at": status.get("createdAt"),
        "updated_at": status.get("createdAt"),
        "log_url": status.get("logUrl"),
        "environment_url": status.get("environmentUrl"),
        "creator": status.get("creator"),
    }


# What the webhook parser reads of a run (bridge/sources/github.py): kept per run instead of
# the whole object (its repository, head_repository, ... come to some 6 kB a run).
_RUN_FIELDS = (
    "id",
    "run_attempt",
    "name",
    "path",
    "display_title",
    "head_branch",
    "head_sha",
    "status",
    "conclusion",
    "created_at",
    "run_started_at",
    "updated_at",
    "html_url",
)


def _slim_run(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run as the parser needs it."""
    slim = {key: run.get(key) for key in _RUN_FIELDS}
    commit, actor = run.get("head_commit"), run.get("triggering_actor")
    if isinstance(commit, Mapping):
        slim["head_commit"] = {"message": commit.get("message")}
    if isinstance(actor, Mapping):
        slim["triggering_actor"] = {"login": actor.get("login")}
    if isinstance(run.get("actor"), Mapping):
        slim["actor"] = {"login": run["actor"].get("login")}
    return slim


def _object(response: Any) -> Mapping[str, Any]:
    """A JSON object answer; ScmError when it is something else."""
    body = response.json()
    if not isinstance(body, Mapping):
        raise ScmError(f"github: {response.url} did not answer an object")
    return body


def _before(node: Mapping[str, Any], window: Window) -> bool:
    """True for a deployment created before the window (and its overlap)."""
    created = _moment(node.get("createdAt"))
    return created is not None and created < window.since - OVERLAP


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None
