"""A stand-in GitLab API v4: a project's deployments and pipelines, a group's projects.

Shapes follow docs.gitlab.com (api/deployments.md, api/pipelines.md, api/groups.md "List a
group's projects"); the token is the ``PRIVATE-TOKEN`` header.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from bridge.fakescm.base import Answer, ApiError, FakeApi, Request, page_of
from bridge.times import parse_timestamp

_PROJECT = r"/api/v4/projects/(?P<project>[^/]+)"


class FakeGitLab(FakeApi):
    """The stand-in; fill it with :meth:`add_project`, :meth:`add_deployment`, ...."""

    def __init__(
        self,
        *,
        token: str = "glpat-test-token",  # noqa: S107 (a stand-in, never a real secret)
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.token = token
        self.projects: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, list[str]] = {}
        self.route("GET", _PROJECT, self._project)
        self.route("GET", f"{_PROJECT}/deployments", self._listing("deployments"))
        self.route("GET", f"{_PROJECT}/pipelines", self._listing("pipelines"))
        self.route("GET", r"/api/v4/groups/(?P<group>[^/]+)/projects", self._group_projects)

    def authorized(self, request: Request) -> bool:
        """The ``PRIVATE-TOKEN`` header."""
        return request.headers.get("private-token") == self.token

    def credential(self, request: Request) -> str:
        """The ``PRIVATE-TOKEN`` header."""
        return request.headers.get("private-token", "")

    def add_project(self, path: str, *, group: str | None = None) -> dict[str, Any]:
        """A project (with no deploys yet), in ``group`` when given."""
        if path not in self.projects:
            self.projects[path] = {
                "id": len(self.projects) + 1,
                "path_with_namespace": path,
                "web_url": f"https://gitlab.example.com/{path}",
                "ci_config_path": "",
                "deployments": [],
                "pipelines": [],
            }
            if group is not None:
                self.groups.setdefault(group, []).append(path)
        return self.projects[path]

    def add_deployment(
        self,
        path: str,
        id: int,
        *,
        job: int,
        sha: str,
        environment: str,
        status: str,
        updated_at: str,
        title: str = "Deploy",
    ) -> None:
        """A deployment with its job, as the Deployments API lists it."""
        project = self.add_project(path)
        project["deployments"].append(
            {
                "id": id,
                "iid": id,
                "ref": "main",
                "sha": sha,
                "status": status,
                "created_at": updated_at,
                "updated_at": updated_at,
                "user": {"id": 1, "name": "Ada Lovelace", "username": "ada"},
                "environment": {"id": 7, "name": environment, "external_url": None},
                "deployable": {
                    "id": job,
                    "status": status,
                    "finished_at": updated_at,
                    "web_url": f"{project['web_url']}/-/jobs/{job}",
                    "commit": {"id": sha, "title": title},
                },
            }
        )

    def add_pipeline(
        self, path: str, id: int, *, sha: str, status: str, updated_at: str, name: str = "deploy"
    ) -> None:
        """A pipeline, as the Pipelines API lists it."""
        project = self.add_project(path)
        project["pipelines"].append(
            {
                "id": id,
                "iid": id,
                "sha": sha,
                "ref": "main",
                "status": status,
                "name": name,
                "created_at": updated_at,
                "updated_at": updated_at,
                "web_url": f"{project['web_url']}/-/pipelines/{id}",
            }
        )

    def _find(self, key: str) -> dict[str, Any]:
        name = unquote(key)
        for project in self.projects.values():
            if name in (project["path_with_namespace"], str(project["id"])):
                return project
        raise ApiError(404, "404 Project Not Found")

    def _project(self, request: Request, found: re.Match[str]) -> Answer:
        project = self._find(found["project"])
        about = {k: v for k, v in project.items() if k not in ("deployments", "pipelines")}
        return Answer(200, about)

    def _listing(self, kind: str) -> Any:
        def answer(request: Request, found: re.Match[str]) -> Answer:
            project = self._find(found["project"])
            # The updated_* filters need order_by=updated_at (api/deployments.md).
            self.need(request, order_by="updated_at", sort="asc", per_page="100")
            since = parse_timestamp(request.query["updated_after"])
            until = parse_timestamp(request.query["updated_before"])
            items = sorted(
                (
                    item
                    for item in project[kind]
                    if since <= parse_timestamp(item["updated_at"]) <= until
                ),
                key=lambda item: item["updated_at"],
            )
            page, number, last = page_of(items, request)
            return Answer(200, page, self.link(request, number + 1, last))

        return answer

    def _group_projects(self, request: Request, found: re.Match[str]) -> Answer:
        self.need(request, include_subgroups="true", per_page="100")
        group = unquote(found["group"])
        if group not in self.groups:
            return Answer(404, {"message": "404 Group Not Found"})
        projects = [
            {"id": self.projects[p]["id"], "path_with_namespace": p} for p in self.groups[group]
        ]
        page, number, last = page_of(projects, request)
        return Answer(200, page, self.link(request, number + 1, last))
