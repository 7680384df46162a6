"""GitLab as a sync source: the deployments and pipelines of one project (REST API v4).

As for GitHub, each item is rebuilt into the webhook payload GitLab sends for it (Deployment
Hook, Pipeline Hook) and handed to the webhook parser (:mod:`bridge.sources.gitlab`): the
same DeployEvent, ref and idempotency key as the webhook, from one mapping.

- Deployments: ``GET /projects/:id/deployments?updated_after=&updated_before=
  &order_by=updated_at&sort=asc`` (docs.gitlab.com/ee/api/deployments.html: the
  ``updated_*`` filters need ``order_by=updated_at``); each carries its status and its job.
- Pipelines (only where the config's ``workflows`` rules make runs deploys):
  ``GET /projects/:id/pipelines`` with the same window and order (doc/api/pipelines.md).

Lists are followed by their ``Link: rel="next"`` header, which GitLab sends for offset and
keyset pagination alike (docs.gitlab.com/ee/api/rest/#pagination-link-header).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from bridge.errors import BridgeError
from bridge.model import Status
from bridge.secrets import VARIABLE
from bridge.sources import gitlab as hooks
from bridge.sources.fields import shorten
from bridge.sync.api import GITLAB_LIMITS, ApiClient, ReadApi, ScmError
from bridge.sync.fetch import ForeignUrl
from bridge.sync.found import json_list, parsed, whole_seconds
from bridge.sync.reader import Found, Window

DEFAULT_URL = "https://gitlab.com"
PAGE = 100  # GitLab's largest per_page


def gitlab_client(gitlab_url: str, token: str, **options: Any) -> ApiClient:
    """A client for ``<GITLAB_URL>/api/v4`` with ``token`` (GITLAB_API_TOKEN, scope read_api)."""
    root = gitlab_url.rstrip("/")
    api = root if root.endswith("/api/v4") else f"{root}/api/v4"
    return ApiClient(
        api,
        {"PRIVATE-TOKEN": token},
        limits=GITLAB_LIMITS,
        secrets=(token,),
        token_name=VARIABLE["gitlab-api"],
        **options,
    )


def group_projects(api: ApiClient, group: str) -> Iterator[str]:
    """Every project of a group and its subgroups, as its full path."""
    path = f"/groups/{quote(group, safe='')}/projects"
    params = {"include_subgroups": "true", "per_page": PAGE, "order_by": "id", "sort": "asc"}
    read = ReadApi(api)
    for page, _ in read.pages(path, params):
        for project in json_list(page.json(), path, most=PAGE):
            name = project.get("path_with_namespace") if isinstance(project, Mapping) else None
            if isinstance(name, str):
                yield name


class GitLabReader:
    """The deploys of one GitLab project (see the module's docstring)."""

    def __init__(self, api: ApiClient, project: str, *, runs_are_deploys: bool) -> None:
        if "/" not in project.strip("/"):
            raise BridgeError(f"--gitlab: expected GROUP/PROJECT, got {project!r}")
        self.api = api
        self.project = project.strip("/")
        self._api = ReadApi(api)
        self.runs_are_deploys = runs_are_deploys
        self._about: Mapping[str, Any] | None = None

    @property
    def name(self) -> str:
        """``gitlab:group/project``."""
        return f"gitlab:{self.project}"

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        """Deployments, then (when runs count as deploys) pipelines, oldest update first."""
        point = self._resume_point(resume)
        self._api = ReadApi(self.api)  # each read has its own page bound
        if point["phase"] == "deployments":
            yield from self._list(window, "deployments", point.get("url"), self._deployment)
            point = {"phase": "pipelines", "url": None}
            yield Found(None, "", json.dumps(point))
        if self.runs_are_deploys:
            yield from self._list(window, "pipelines", point.get("url"), self._pipeline)

    def _path(self, kind: str) -> str:
        """The API path of the project's ``deployments`` or ``pipelines`` list."""
        return f"/projects/{quote(self.project, safe='')}/{kind}"

    def _list(self, window: Window, kind: str, start: str | None, found: Any) -> Iterator[Found]:
        path = self._path(kind)
        params = {
            "updated_after": whole_seconds(window.since),
            "updated_before": whole_seconds(window.until, up=True),
            "order_by": "updated_at",
            "sort": "asc",
            "per_page": PAGE,
        }
        for page, next_url in self._api.pages(start or path, None if start else params):
            for item in json_list(page.json(), path, most=PAGE):
                if isinstance(item, Mapping):
                    yield found(item, window)
            if next_url:
                yield Found(None, "", json.dumps({"phase": kind, "url": next_url}))

    def _resume_point(self, resume: str | None) -> Mapping[str, Any]:
        """A saved resume point read back: a phase and a next-page link of this project's
        list of that phase, on the configured origin; anything else is an error, and nothing
        is sent (a database written by an earlier version, or by hand, may hold a link to
        anywhere, another project's list on the same server too).

        GitLab's next link is the URL asked for, its query changed (lib/gitlab/pagination,
        ``request.url``): its path is the list's, spelled as this reader spells it.
        """
        if resume is None:
            return {"phase": "deployments", "url": None}
        try:
            point = json.loads(resume)
        except ValueError:
            point = None
        phase = point.get("phase") if isinstance(point, dict) else None
        url = point.get("url") if isinstance(point, dict) else None
        if phase not in ("deployments", "pipelines") or not isinstance(url, (str, type(None))):
            raise ScmError(f"not a resume point of this reader: {resume[:80]!r}")
        if url is not None:
            try:
                self.api.check(url, "the saved resume point")
            except ForeignUrl as exc:
                raise ScmError(f"{exc} (--restart starts over)") from None
            path, listed = urlsplit(url).path, urlsplit(self.api.url(self._path(phase))).path
            if path != listed:
                raise ScmError(
                    f"the saved resume point leads to {shorten(path, 120)}, not {listed!r}: "
                    "not followed, nothing sent there (--restart starts over)"
                )
        return {"phase": phase, "url": url}

    def _project(self) -> Mapping[str, Any]:
        """The project itself (its web URL and CI config path), read once."""
        if self._about is None:
            about = self._api.get(f"/projects/{quote(self.project, safe='')}").json()
            self._about = about if isinstance(about, Mapping) else {}
        return self._about

    def _hook_project(self) -> dict[str, Any]:
        about = self._project()
        return {
            "path_with_namespace": about.get("path_with_namespace") or self.project,
            "web_url": about.get("web_url"),
            "ci_config_path": about.get("ci_config_path"),
        }

    def _deployment(self, item: Mapping[str, Any], window: Window) -> Found:
        job = _object(item, "deployable")
        environment = _object(item, "environment")
        commit = _object(job, "commit")
        sha = item.get("sha") if isinstance(item.get("sha"), str) else None
        project = self._hook_project()
        status = str(item.get("status") or "")
        final = _is_final(hooks.DEPLOYMENT_STATUSES, status)
        payload = {
            "object_kind": "deployment",
            "status": status,
            # The hook's status_changed_at: the job's end for a finished deploy.
            "status_changed_at": (job.get("finished_at") if final else None)
            or item.get("updated_at"),
            "deployment_id": item.get("id"),
            "deployable_id": job.get("id"),
            "deployable_url": job.get("web_url"),
            "environment": environment.get("name"),
            "environment_external_url": environment.get("external_url"),
            "project": project,
            "short_sha": sha or None,  # the full sha, where the hook's is short
            "commit_url": f"{project['web_url']}/-/commit/{sha}"
            if sha and project["web_url"]
            else None,
            "commit_title": commit.get("title"),
            "user": item.get("user"),
            "ref": item.get("ref"),
        }
        return parsed(hooks.parse_deployment, payload, window)

    def _pipeline(self, item: Mapping[str, Any], window: Window) -> Found:
        status = str(item.get("status") or "")
        final = _is_final(hooks.PIPELINE_STATUSES, status)
        payload = {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": item.get("id"),
                "status": status,
                "sha": item.get("sha"),
                "ref": item.get("ref"),
                "name": item.get("name"),
                "created_at": item.get("created_at"),
                # The list has no finished_at: a finished pipeline was last updated then.
                "finished_at": item.get("updated_at") if final else None,
                "url": item.get("web_url"),
            },
            "project": self._hook_project(),
            "user": item.get("user"),
        }
        return parsed(hooks.parse_pipeline, payload, window)


def _object(item: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = item.get(key)
    return value if isinstance(value, Mapping) else {}


def _is_final(table: Mapping[str, Status], word: str) -> bool:
    """Whether the hook's parser reads ``word`` as a finished state."""
    status = table.get(word.lower())
    return status is not None and status.is_final
