"""What to sync, named by flags (``sync``) or by the ``sync:`` config (the relay), as readers.

One place turns names into readers for both faces: repositories, organisations (all their
repositories, or those matching a glob), projects and groups, configured http sources
(``http_sources``), and the API clients with the tokens from the environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from functools import partial
from typing import Protocol

from bridge.config import Config, SourceSettings, SyncSettings
from bridge.config.values import http_url
from bridge.errors import BridgeError, ConfigError, UsageError
from bridge.secrets import secret_from
from bridge.sources.fields import shorten
from bridge.sync.api import MAX_WAIT_SECONDS, ApiClient
from bridge.sync.argocd import ArgoCDReader, argocd_client
from bridge.sync.github import DEFAULT_API_URL, GitHubReader, github_client, org_repositories
from bridge.sync.gitlab import DEFAULT_URL, GitLabReader, gitlab_client, group_projects
from bridge.sync.http_source import make_http_reader
from bridge.sync.reader import Found, Reader, Window
from bridge.urls import scm_name_problem


class Client(Protocol):
    """What sync keeps of each client a read uses: its requests so far, and closing it."""

    requests: int

    def close(self) -> None:
        """Release its connections."""


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
    """UsageError naming the flag of a malformed name (:func:`bridge.urls.scm_name_problem`:
    a name becomes part of an API path)."""
    for flag, kind, names in (
        ("--github", "github-repository", targets.github),
        ("--github-org", "github-owner", targets.github_orgs),
        ("--gitlab", "gitlab-project", targets.gitlab),
        ("--gitlab-group", "gitlab-group", targets.gitlab_groups),
    ):
        for name in names:
            problem = scm_name_problem(name, kind)
            if problem is not None:
                raise UsageError(f"{flag}: {problem}")


def make_readers(
    targets: Targets,
    config: Config,
    environ: Mapping[str, str],
    *,
    max_wait: float = MAX_WAIT_SECONDS,
    read_seconds: float | None = None,
) -> tuple[Callable[[], Iterator[Reader]], list[Client]]:
    """The readers (listed as they are read) and the API clients they use (to close).

    ``max_wait``: the most one SCM request may wait for rate limits in all; ``read_seconds``:
    how long one source's read may go on (checked before each page). A listing that
    fails (an organisation's repositories) comes as a reader that raises its error when
    read, so the sources after it are still read.
    """
    check(targets)
    runs = bool(config.workflows)
    clients: list[Client] = []
    github = gitlab = None
    if targets.github or targets.github_orgs:
        token = secret_from(environ, "GITHUB_TOKEN")
        if not token:
            raise UsageError("GITHUB_TOKEN is not set: reading GitHub's deploys needs it")
        url = _api_url(environ, "GITHUB_API_URL", DEFAULT_API_URL)
        github = github_client(url, token, max_wait=max_wait, read_seconds=read_seconds)
        clients.append(github)
    if targets.gitlab or targets.gitlab_groups:
        token = secret_from(environ, "GITLAB_API_TOKEN")
        if not token:
            raise UsageError("GITLAB_API_TOKEN is not set: reading GitLab's deploys needs it")
        gitlab = gitlab_client(
            _api_url(environ, "GITLAB_URL", DEFAULT_URL),
            token,
            max_wait=max_wait,
            read_seconds=read_seconds,
        )
        clients.append(gitlab)
    # Made now, so that an unknown name or an unset token variable stops the run before it starts.
    http = [
        make_http_reader(name, config, environ, read_seconds=read_seconds)
        for name in dict.fromkeys(targets.http)
    ]
    argocd = _argocd_readers(targets.argocd, environ, max_wait=max_wait, read_seconds=read_seconds)
    clients.extend(reader.api for reader in argocd)
    clients.extend(http)  # their requests counted too, and closed alike

    def every() -> Iterator[Reader]:
        if github is not None:
            on_github = partial(GitHubReader, github, runs_are_deploys=runs)
            for repo in targets.github:
                yield from _listed(f"github:{repo}", _expand(github, repo), on_github)
            for org in targets.github_orgs:
                listing = org_repositories(github, org)
                yield from _listed(f"github:{org}", listing, on_github, owner=org)
        if gitlab is not None:
            on_gitlab = partial(GitLabReader, gitlab, runs_are_deploys=runs)
            for project in targets.gitlab:
                yield on_gitlab(project)
            for group in targets.gitlab_groups:
                # A group lists the projects shared with it too (GitLab's with_shared), and
                # may be named by its id: its names are not all under its path.
                listing = group_projects(gitlab, group)
                yield from _listed(f"gitlab:{group}", listing, on_gitlab)
        yield from http
        yield from argocd

    return every, clients


def _api_url(environ: Mapping[str, str], variable: str, default: str) -> str:
    """An SCM's API URL from ``variable``: an http(s) URL with no user info (the check the
    Cortex URL gets: in ``https://gitlab.com@evil.example`` the token would go to the
    host after the ``@``); ConfigError naming the variable otherwise."""
    given = environ.get(variable, "").strip()
    return http_url(given, variable) if given else default


@dataclass(frozen=True)
class Unlisted:
    """What a listing (an organisation's repositories) gave that is not read as a source, as
    a reader: the listing's ``error`` (it failed), raised when read; or a name it listed that
    cannot be read (not a repository of the owner listed, not a full name), one skipped row
    saying ``why``, and the listing goes on."""

    name: str  # the listing: ``github:acme``
    error: BridgeError | None = None
    why: str = ""

    def read(self, window: Window, *, resume: str | None = None) -> Iterator[Found]:
        """Raise the listing's error (at once, not when iterated: a source that fails at once
        leaves no run to continue), or give the one skipped row."""
        if self.error is not None:
            raise self.error
        return iter([Found(None, skipped=self.why)])


def _listed(
    name: str, names: Iterator[str], reader: Callable[[str], Reader], *, owner: str | None = None
) -> Iterator[Reader]:
    """A reader per listed name (of ``owner``'s, where a listing is of an owner's, a group's
    repositories); a name that cannot be read as a skipped row; the listing's error (if any)
    as a last, failing reader."""
    try:
        for each in names:
            if owner is not None and not each.casefold().startswith(owner.casefold() + "/"):
                yield Unlisted(
                    name, why=f"{name} listed {shorten(each)}, not one of its own: not read"
                )
                continue
            try:
                made = reader(each)
            except BridgeError:
                yield Unlisted(
                    name, why=f"{name} listed {shorten(each)}, not a full name: not read"
                )
                continue
            yield made
    except BridgeError as exc:
        yield Unlisted(name, exc)


def _argocd_readers(
    urls: tuple[str, ...],
    environ: Mapping[str, str],
    *,
    max_wait: float = MAX_WAIT_SECONDS,
    read_seconds: float | None = None,
) -> list[ArgoCDReader]:
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
        api = argocd_client(checked, token, max_wait=max_wait, read_seconds=read_seconds)
        readers.append(ArgoCDReader(api))
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
