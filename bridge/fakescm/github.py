"""A stand-in GitHub: GraphQL deployments, REST workflow runs, jobs and an org's repositories.

Shapes follow docs.github.com (GraphQL ``Deployment``/``DeploymentStatus``; REST "Workflow
runs", "Workflow jobs", "List organization repositories"). ``enterprise=True`` serves the
GitHub Enterprise Server layout: REST under ``/api/v3``, GraphQL at ``/api/graphql``.
"""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Any

from bridge.fakescm.base import Answer, ApiError, FakeApi, Request, page_of
from bridge.times import parse_timestamp

_CREATED = re.compile(r"([^.]+)\.\.([^.]+)")


class FakeGitHub(FakeApi):
    """The stand-in; fill it with :meth:`add_deployment`, :meth:`add_run`, :meth:`add_repo`
    (and :meth:`delete_run`)."""

    def __init__(
        self,
        *,
        token: str = "ghs-test-token",  # noqa: S107 (a stand-in, never a real secret)
        enterprise: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.rest = "/api/v3" if enterprise else ""
        self.graphql = "/api/graphql" if enterprise else "/graphql"
        self.deployments: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, dict[int, dict[str, Any]]] = {}
        self.attempts: dict[tuple[int, int], dict[str, Any]] = {}
        self.jobs: dict[int, dict[str, Any]] = {}
        self.orgs: dict[str, list[str]] = {}
        self.users: dict[str, list[str]] = {}
        # A full GraphQL page to hold back (its cursor): it waits until ``release`` is set,
        # and ``holding`` tells the test it got there (a process stuck mid-sync, to kill).
        self.hold_after: str | None = None
        self.holding = threading.Event()
        self.release = threading.Event()
        repo = r"/repos/(?P<repo>[^/]+/[^/]+)"
        self.route("POST", re.escape(self.graphql), self._graphql)
        self.route("GET", f"{self.rest}{repo}/actions/runs", self._runs)
        self.route("GET", rf"{self.rest}{repo}/actions/runs/(?P<id>\d+)", self._run)
        self.route(
            "GET", rf"{self.rest}{repo}/actions/runs/(?P<id>\d+)/attempts/(?P<n>\d+)", self._attempt
        )
        self.route("GET", rf"{self.rest}{repo}/actions/jobs/(?P<id>\d+)", self._job)
        self.route("GET", rf"{self.rest}/orgs/(?P<org>[^/]+)/repos", self._org_repos)
        self.route("GET", rf"{self.rest}/users/(?P<user>[^/]+)/repos", self._user_repos)

    @property
    def api_url(self) -> str:
        """What GITHUB_API_URL is set to."""
        return self.url + self.rest

    def authorized(self, request: Request) -> bool:
        """``Authorization: Bearer <token>`` (REST accepts ``token <token>`` too)."""
        given = request.headers.get("authorization", "")
        return given in (f"Bearer {self.token}", f"token {self.token}")

    def credential(self, request: Request) -> str:
        """The ``Authorization`` header's token."""
        return request.headers.get("authorization", "").rpartition(" ")[2]

    # -- filling ----------------------------------------------------------------------------

    def add_repo(self, repository: str, *, org: str | None = None, user: str | None = None) -> None:
        """A repository (with no deploys yet), listed under ``org`` or ``user`` when given."""
        self.deployments.setdefault(repository, [])
        self.runs.setdefault(repository, {})
        if org is not None:
            self.orgs.setdefault(org, []).append(repository)
        if user is not None:
            self.users.setdefault(user, []).append(repository)

    def add_deployment(
        self,
        repository: str,
        id: int,
        *,
        sha: str,
        environment: str,
        created_at: str,
        states: list[tuple[str, str]],  # (STATE, createdAt), oldest first
        log_url: str | None = None,
        creator: str = "octocat",
        description: str = "",
    ) -> None:
        """A deployment and its statuses, as GraphQL gives them."""
        self.add_repo(repository)
        statuses = [
            {
                "state": state,
                "createdAt": at,
                "logUrl": log_url,
                "environmentUrl": None,
                "creator": {"login": creator},
            }
            for state, at in states
        ]
        self.deployments[repository].append(
            {
                "databaseId": id,
                "commitOid": sha,
                "environment": environment,
                "createdAt": created_at,
                "description": description,
                "payload": "{}",
                "ref": {"name": "main"},
                "creator": {"login": creator},
                "latestStatus": statuses[-1] if statuses else None,
                # GitHub lists a deployment's statuses newest first.
                "statuses": {"nodes": list(reversed(statuses))[:10]},
            }
        )
        self.deployments[repository].sort(key=lambda d: d["createdAt"], reverse=True)

    def add_run(
        self,
        repository: str,
        id: int,
        *,
        sha: str,
        name: str,
        path: str,
        created_at: str,
        updated_at: str,
        conclusion: str = "success",
        attempt: int = 1,
        jobs: tuple[int, ...] = (),
    ) -> dict[str, Any]:
        """A completed workflow run (its latest attempt) and its jobs."""
        self.add_repo(repository)
        run = {
            "id": id,
            "name": name,
            "path": path,
            "head_branch": "main",
            "head_sha": sha,
            "run_attempt": attempt,
            "status": "completed",
            "conclusion": conclusion,
            "created_at": created_at,
            "run_started_at": created_at,
            "updated_at": updated_at,
            "html_url": f"https://github.com/{repository}/actions/runs/{id}",
            "head_commit": {"message": f"Deploy {sha[:7]}\n\nbody"},
            "triggering_actor": {"login": "octocat"},
            "actor": {"login": "octocat"},
        }
        self.runs[repository][id] = run
        self.attempts[(id, attempt)] = run
        for job in jobs:
            self.jobs[job] = {"id": job, "run_id": id, "run_attempt": attempt}
        return run

    def delete_run(self, repository: str, id: int) -> None:
        """Delete a workflow run, as REST "Delete a workflow run" does: the run, its attempts
        and its jobs answer 404 from now on; the deployments its jobs made stay."""
        self.runs.get(repository, {}).pop(id, None)
        for attempt in [a for a in self.attempts if a[0] == id]:
            del self.attempts[attempt]
        for job in [j for j, held in self.jobs.items() if held["run_id"] == id]:
            del self.jobs[job]

    # -- GraphQL ----------------------------------------------------------------------------

    def _graphql(self, request: Request, _: re.Match[str]) -> Answer:
        body = request.body if isinstance(request.body, dict) else {}
        query, variables = str(body.get("query", "")), body.get("variables") or {}
        for needed in ("deployments(first: 100", "orderBy: {field: CREATED_AT, direction: DESC}"):
            if needed not in query:
                raise ApiError(400, f"graphql query lacks {needed!r}")
        asked = f"{variables.get('owner')}/{variables.get('name')}"
        # As GitHub: a repository's name is found whatever its letter case, and answered in
        # its own spelling (nameWithOwner, url).
        repository = next((r for r in self.deployments if r.casefold() == asked.casefold()), asked)
        if repository not in self.deployments:
            message = f"Could not resolve to a Repository with the name '{asked}'."
            error = {"type": "NOT_FOUND", "path": ["repository"], "message": message}
            return Answer(200, {"data": {"repository": None}, "errors": [error]})
        nodes = self.deployments[repository]
        after = variables.get("after")
        if after is not None and after == self.hold_after and "latestStatus" in query:
            self.holding.set()
            self.release.wait(30)
        start = int(after) if after is not None else 0
        page = nodes[start : start + 100]
        end = start + len(page)
        if self.endless:  # hostile: always one more page, the cursor moving on
            end = start + 100
        info = {
            "hasNextPage": end < len(nodes) or self.endless,
            "endCursor": str(end) if page or self.endless else None,
        }
        data = {
            "url": f"https://github.com/{repository}",
            "nameWithOwner": repository,
            "deployments": {"pageInfo": info, "nodes": page},
        }
        return Answer(200, {"data": {"repository": data}})

    # -- REST -------------------------------------------------------------------------------

    def _runs(self, request: Request, found: re.Match[str]) -> Answer:
        self.need(request, per_page="100")
        window = _CREATED.fullmatch(request.query.get("created", ""))
        if window is None:
            raise ApiError(422, "created must be a range A..B")
        runs = sorted(
            self.runs.get(found["repo"], {}).values(), key=lambda r: r["created_at"], reverse=True
        )
        total = len(runs)
        if window is not None:
            since, until = (parse_timestamp(t) for t in window.groups())
            runs = [r for r in runs if since <= _at(r["created_at"]) <= until]
            total = len(runs)
            runs = runs[:1000]  # GitHub returns at most 1,000 runs of a filtered search
        items, number, last = page_of(runs, request)
        body = {"total_count": total, "workflow_runs": items}
        return Answer(200, body, self.link(request, number + 1, last))

    def _run(self, request: Request, found: re.Match[str]) -> Answer:
        run = self.runs.get(found["repo"], {}).get(int(found["id"]))
        return Answer(200, run) if run else Answer(404, {"message": "Not Found"})

    def _attempt(self, request: Request, found: re.Match[str]) -> Answer:
        run = self.attempts.get((int(found["id"]), int(found["n"])))
        return Answer(200, run) if run else Answer(404, {"message": "Not Found"})

    def _job(self, request: Request, found: re.Match[str]) -> Answer:
        job = self.jobs.get(int(found["id"]))
        return Answer(200, job) if job else Answer(404, {"message": "Not Found"})

    def _org_repos(self, request: Request, found: re.Match[str]) -> Answer:
        self.need(request, per_page="100", type="all")
        if found["org"] not in self.orgs:
            return Answer(404, {"message": "Not Found"})
        return _listed(self, request, self.orgs[found["org"]])

    def _user_repos(self, request: Request, found: re.Match[str]) -> Answer:
        self.need(request, per_page="100", type="owner")
        if found["user"] not in self.users:
            return Answer(404, {"message": "Not Found"})
        return _listed(self, request, self.users[found["user"]])


def _listed(api: FakeGitHub, request: Request, names: list[str]) -> Answer:
    repos = [{"full_name": name} for name in names]
    items, number, last = page_of(repos, request)
    return Answer(200, items, api.link(request, number + 1, last))


def _at(text: str) -> datetime:
    return parse_timestamp(text)
