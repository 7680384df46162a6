"""What to sync, named by flags (``sync``) or by the ``sync:`` config (the relay), as readers.

One place turns names into readers for both faces: repositories, organisations (all their
repositories, or those matching a glob), projects and groups, configured http sources
(``http_sources``), and the API clients with the tokens from the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from bridge.config import Config, SourceSettings, SyncSettings
from bridge.config.values import http_url
from bridge.errors import ConfigError, UsageError
from bridge.secrets import secret_from
from bridge.sync.api import ApiClient
from bridge.sync.argocd import ArgoCDReader, argocd_client
from bridge.sync.github import DEFAULT_API_URL, GitHubReader, github_client, org_repositories
from bridge.sync.gitlab import DEFAULT_URL, GitLabReader, gitlab_client, group_projects
from bridge.sync.http_source import make_http_reader
from bridge.sync.reader import Reader


@dataclass(frozen=True)
class Targets:
    """The sources of one sync."""

    github: tuple[str, ...] = ()  # OWNER/REPO; a glob (OWNER/*) lists the owner's repos
    github_orgs: tuple[str, ...] = ()
    gitlab: tuple[str, ...] = ()  # GROUP/PROJECT
    gitlab_groups: tuple[str, ...] = ()
    http: tuple[str, ...] = ()  # http_sources names
    argocd: tuple[str, ...] = ()  # Argo CD API servers' URLs

    @classmethod
    def from_settings(cls, settings: SyncSettings) -> Targets:
        """The ``sync:`` section: ``GROUP`` or ``GROUP/*`` on GitLab is a group."""
        projects = tuple(p for p in settings.gitlab if "/" in p and not p.endswith("/*"))
        groups = tuple(p.removesuffix("/*") for p in settings.gitlab if p not in projects)
        return cls(
            github=settings.github,
            gitlab=projects,
            gitlab_groups=groups,
            http=settings.http,
            argocd=settings.argocd,
        )


def reading(config: Config, targets: Targets) -> Config:
    """The config a sync of ``targets`` routes with: a source read by name is enabled.

    ``sources.argocd.enabled`` turns the webhook endpoint on or off; naming Argo CD in
    ``--argocd`` or ``sync.argocd`` asks for its history whatever the endpoint does.
    """
    if not targets.argocd or config.sources.enabled("argocd"):
        return config
    sources = replace(config.sources, argocd=SourceSettings(enabled=True))
    return replace(config, sources=sources)


def check(targets: Targets) -> None:
    """UsageError naming the flag of a malformed name."""
    for repo in targets.github:
        parts = repo.split("/")
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"--github: expected OWNER/REPO, got {repo!r}")
    for project in targets.gitlab:
        parts = project.strip("/").split("/")
        if len(parts) < 2 or not all(parts):
            raise UsageError(f"--gitlab: expected GROUP/PROJECT, got {project!r}")


def make_readers(
    targets: Targets, config: Config, environ: Mapping[str, str]
) -> tuple[Callable[[], Iterator[Reader]], list[ApiClient]]:
    """The readers (listed as they are read) and the API clients they use (to close)."""
    check(targets)
    runs = bool(config.workflows)
    clients: list[ApiClient] = []
    github = gitlab = None
    if targets.github or targets.github_orgs:
        token = secret_from(environ, "GITHUB_TOKEN")
        if not token:
            raise UsageError("GITHUB_TOKEN is not set: reading GitHub's deploys needs it")
        github = github_client(environ.get("GITHUB_API_URL") or DEFAULT_API_URL, token)
        clients.append(github)
    if targets.gitlab or targets.gitlab_groups:
        token = secret_from(environ, "GITLAB_API_TOKEN")
        if not token:
            raise UsageError("GITLAB_API_TOKEN is not set: reading GitLab's deploys needs it")
        gitlab = gitlab_client(environ.get("GITLAB_URL") or DEFAULT_URL, token)
        clients.append(gitlab)
    # Made now, so that an unknown name or an unset token variable stops the run before it starts.
    http = [make_http_reader(name, config, environ) for name in dict.fromkeys(targets.http)]
    argocd = _argocd_readers(targets.argocd, environ)
    clients.extend(reader.api for reader in argocd)

    def every() -> Iterator[Reader]:
        if github is not None:
            for repo in targets.github:
                for name in _expand(github, repo):
                    yield GitHubReader(github, name, runs_are_deploys=runs)
            for org in targets.github_orgs:
                for name in org_repositories(github, org):
                    yield GitHubReader(github, name, runs_are_deploys=runs)
        if gitlab is not None:
            for project in targets.gitlab:
                yield GitLabReader(gitlab, project, runs_are_deploys=runs)
            for group in targets.gitlab_groups:
                for project in group_projects(gitlab, group):
                    yield GitLabReader(gitlab, project, runs_are_deploys=runs)
        yield from http
        yield from argocd

    return every, clients


def _argocd_readers(urls: tuple[str, ...], environ: Mapping[str, str]) -> list[ArgoCDReader]:
    """A reader per Argo CD URL, each with ARGOCD_AUTH_TOKEN for that URL's origin only."""
    if not urls:
        return []
    token = secret_from(environ, "ARGOCD_AUTH_TOKEN")
    if not token:
        raise UsageError("ARGOCD_AUTH_TOKEN is not set: reading Argo CD's history needs it")
    readers = []
    for url in dict.fromkeys(urls):
        try:
            checked = http_url(url, "--argocd")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        readers.append(ArgoCDReader(argocd_client(checked, token)))
    return readers


def _expand(api: ApiClient, repo: str) -> Iterator[str]:
    """A repository, or those of its owner a glob matches (case-insensitive, as GitHub)."""
    if not any(c in repo for c in "*?["):
        yield repo
        return
    owner = repo.partition("/")[0]
    for name in org_repositories(api, owner):
        if fnmatchcase(name.casefold(), repo.casefold()):
            yield name
