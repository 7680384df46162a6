"""``python -m bridge.fakescm``: the GitHub and GitLab stand-ins as commands.

- ``serve`` (the default): the stand-in GitHub and GitLab APIs on loopback, filled with a few
  recent deploys, for ``cortex-deploy-bridge sync`` to read; it prints the variables to set.
- ``post``: send one webhook to a receiver as GitHub or GitLab would, signed with the secret
  ``serve`` was started with: a JSON file's exact bytes, or a built-in sample deploy.

Everything here is for trying the bridge out and for tests; nothing talks to a real SCM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from bridge.fakescm.github import FakeGitHub
from bridge.fakescm.gitlab import FakeGitLab
from bridge.fakescm.hooks import SOURCES

GITHUB_PORT, GITLAB_PORT = 8788, 8789
GITHUB_TOKEN, GITLAB_TOKEN = "ghs-test-token", "glpat-test-token"  # stand-ins' own
RECEIVER = "http://127.0.0.1:8080"
REPOSITORY = "acme/payments-api"
EXIT_FAILED, EXIT_USAGE = 1, 2

DESCRIPTION = """\
Stand-ins for GitHub and GitLab, to try the bridge without an account (docs/try-it.md).

  serve   the GitHub (REST and GraphQL) and GitLab (API v4) APIs that `sync` reads, on
          loopback, with a few recent deploys of acme/payments-api (the default command)
  post    send one webhook to a receiver as GitHub or GitLab sends it, signed"""

EPILOG = f"""\
examples:
  python -m bridge.fakescm                      # serve, on ports {GITHUB_PORT} and {GITLAB_PORT}
  python -m bridge.fakescm post github          # a sample deploy to {RECEIVER}
  python -m bridge.fakescm post gitlab --url http://127.0.0.1:9000
  python -m bridge.fakescm post github tests/samples/github/deployment_status.success.json
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line, without the usage block."""

    def error(self, message: str) -> Any:
        """One line naming the problem, then exit 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> Parser:
    """Both subcommands' flags, every default shown in --help."""
    parser = Parser(
        prog="python -m bridge.fakescm",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    serve = sub.add_parser(
        "serve",
        help="run the GitHub and GitLab API stand-ins (the default)",
        description="Run the GitHub and GitLab API stand-ins until Ctrl-C. They are strict "
        "(paths, query parameters, page sizes, tokens): a request they do not expect is "
        "answered 4xx and printed.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--github-port",
        type=int,
        default=GITHUB_PORT,
        metavar="PORT",
        help=f"the GitHub stand-in's port: GITHUB_API_URL (default: {GITHUB_PORT})",
    )
    serve.add_argument(
        "--gitlab-port",
        type=int,
        default=GITLAB_PORT,
        metavar="PORT",
        help=f"the GitLab stand-in's port: GITLAB_URL (default: {GITLAB_PORT})",
    )
    serve.add_argument(
        "--github-token",
        default=GITHUB_TOKEN,
        metavar="TOKEN",
        help=f"the GITHUB_TOKEN it accepts (default: {GITHUB_TOKEN})",
    )
    serve.add_argument(
        "--gitlab-token",
        default=GITLAB_TOKEN,
        metavar="TOKEN",
        help=f"the GITLAB_API_TOKEN it accepts (default: {GITLAB_TOKEN})",
    )
    serve.add_argument(
        "--empty", action="store_true", help="start with no repositories and no deploys"
    )
    post = sub.add_parser(
        "post",
        help="send one signed webhook to a receiver",
        description="Send one webhook to a receiver as GitHub or GitLab sends it: the body "
        "is FILE's exact bytes (or a built-in sample deploy), signed with the secret from "
        "GITHUB_WEBHOOK_SECRET (X-Hub-Signature-256, HMAC-SHA256 of those bytes) or sent as "
        "GITLAB_WEBHOOK_TOKEN (X-Gitlab-Token), the same variables `serve` reads (or their "
        "*_FILE). Prints the answer; exit 0 on a 2xx, 1 otherwise, 2 on bad usage.",
    )
    post.add_argument("source", choices=sorted(SOURCES), help="who sends it")
    post.add_argument(
        "file",
        nargs="?",
        default=None,
        metavar="FILE",
        help="a JSON payload, sent byte for byte ('-': stdin); none: a sample successful "
        "deploy with new ids",
    )
    post.add_argument(
        "--url",
        default=RECEIVER,
        help=f"the receiver; /webhooks/SOURCE is added to a bare host (default: {RECEIVER})",
    )
    post.add_argument(
        "--event",
        default=None,
        help="X-GitHub-Event / X-Gitlab-Event (default: told from the payload)",
    )
    post.add_argument(
        "--delivery",
        default=None,
        metavar="ID",
        help="X-GitHub-Delivery / X-Gitlab-Event-UUID (default: a new UUID)",
    )
    post.add_argument(
        "--repository",
        default=REPOSITORY,
        metavar="OWNER/NAME",
        help=f"the sample's repository, without FILE (default: {REPOSITORY})",
    )
    post.add_argument(
        "--environment",
        default="production",
        help="the sample's environment, without FILE (default: production)",
    )
    post.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the answer (default: 10)",
    )
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``serve`` (the default) or ``post``; the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in ("serve", "post", "-h", "--help"):
        args_list.insert(0, "serve")
    args = build_parser().parse_args(args_list)
    env = os.environ if environ is None else environ
    try:
        if args.command == "post":
            return post(args, env)
        return serve(args)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 141


# --- serve -----------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """Run both stand-ins until interrupted, printing how to point `sync` at them."""
    try:
        github = FakeGitHub(token=args.github_token, host=args.host, port=args.github_port)
        gitlab = FakeGitLab(token=args.gitlab_token, host=args.host, port=args.gitlab_port)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}: {(exc.strerror or str(exc)).lower()}")
    if not args.empty:
        fill(github, gitlab, now=datetime.now(timezone.utc))
    with github, gitlab:
        for line in _running_lines(github, gitlab):
            print(line, flush=True)
        reported = {id(github): 0, id(gitlab): 0}
        while True:
            time.sleep(0.5)
            for name, api in (("github", github), ("gitlab", gitlab)):
                for violation in api.violations[reported[id(api)] :]:
                    print(f"stand-in {name}: refused: {violation}", file=sys.stderr, flush=True)
                reported[id(api)] = len(api.violations)


def _running_lines(github: FakeGitHub, gitlab: FakeGitLab) -> list[str]:
    return [
        f"stand-in GitHub listening on {github.api_url}  (token {github.token})",
        f"stand-in GitLab listening on {gitlab.url}  (token {gitlab.token})",
        "with: " + ", ".join(_held(github, gitlab)),
        "point sync at them (and at a Cortex: python -m bridge.fakecortex):",
        f"  export GITHUB_API_URL={github.api_url} GITHUB_TOKEN={github.token}",
        f"  export GITLAB_URL={gitlab.url} GITLAB_API_TOKEN={gitlab.token}",
        f"  cortex-deploy-bridge sync --github {REPOSITORY} --gitlab {REPOSITORY} --dry-run",
        "Ctrl-C stops them.",
    ]


def _held(github: FakeGitHub, gitlab: FakeGitLab) -> list[str]:
    """Each repository the stand-ins hold deploys of, with how many on each API."""
    on_github = {repo: len(found) for repo, found in github.deployments.items() if found}
    on_gitlab = {
        path: len(project["deployments"])
        for path, project in gitlab.projects.items()
        if project["deployments"]
    }
    repos = sorted(on_github.keys() | on_gitlab.keys())
    return [
        f"{repo} ({on_github.get(repo, 0)} GitHub deployments, "
        f"{on_gitlab.get(repo, 0)} GitLab ones)"
        for repo in repos
    ] or ["no deploys (--empty)"]


# (days ago, sha, environment, states) of acme/payments-api's GitHub deployments
_GITHUB_DEPLOYS = (
    (6, "4f1c2b7d9e0a3c5b8d6e1f2a9b0c7d3e4f5a6b7c", "production", ("SUCCESS",)),
    (4, "8c2e5a1f7b3d9c0e6a4b2d8f1c5e7a9b3d0f2c4e", "staging", ("SUCCESS",)),
    (3, "8c2e5a1f7b3d9c0e6a4b2d8f1c5e7a9b3d0f2c4e", "production", ("FAILURE",)),
    (2, "d9a3f6c0b2e8a5d1c7f4b0e3a6d9c2f5b8e1a4d7", "production", ("IN_PROGRESS", "SUCCESS")),
)
# (days ago, sha, status) of its GitLab deployments (to production)
_GITLAB_DEPLOYS = (
    (5, "1b4e7a0d3c6f9b2e5a8d1c4f7b0e3a6d9c2f5b8e", "success"),
    (1, "6e9c2f5b8e1a4d7c0f3b6e9a2d5c8f1b4e7a0d3c", "success"),
)


def fill(github: FakeGitHub, gitlab: FakeGitLab, *, now: datetime) -> None:
    """A few deploys of acme/payments-api in the last week (inside sync's default --since),
    on both stand-ins; the repository is also listed under the org / group ``acme``."""

    def at(days: int, minutes: int = 0) -> str:
        moment = now - timedelta(days=days) + timedelta(minutes=minutes)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    github.add_repo(REPOSITORY, org="acme")
    for n, (days, sha, environment, states) in enumerate(_GITHUB_DEPLOYS, start=1):
        github.add_deployment(
            REPOSITORY,
            9_100 + n,
            sha=sha,
            environment=environment,
            created_at=at(days),
            states=[(state, at(days, 2 + 3 * i)) for i, state in enumerate(states)],
            description=f"Release 2026.{n}",
        )
    gitlab.add_project(REPOSITORY, group="acme")
    for n, (days, sha, status) in enumerate(_GITLAB_DEPLOYS, start=1):
        gitlab.add_deployment(
            REPOSITORY,
            4_400 + n,
            job=77_000 + n,
            sha=sha,
            environment="production",
            status=status,
            updated_at=at(days),
            title=f"Release 2026.{n}",
        )


# --- post ------------------------------------------------------------------------------------


def post(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Send one webhook; print the receiver's answer."""
    from bridge.secrets import secret_from

    source = SOURCES[args.source]
    try:
        secret = secret_from(environ, source.secret_variable)
    except Exception as exc:  # a *_FILE that cannot be read: one line, as serve says it
        return _fail(str(exc))
    if not secret:
        return _fail(
            f"{source.secret_variable} is not set: set it to the secret the receiver was "
            "started with"
        )
    try:
        event, body = _payload(args, source.event_of)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    url = _target(args.url, source.path)
    if url is None:
        return _fail(f"--url {args.url!r} is not an http(s) URL")
    delivery = args.delivery or str(uuid.uuid4())
    headers = source.headers(body, secret, event, delivery)
    print(
        f"POST {url}  {source.event_header}: {event}  delivery {delivery}  ({len(body)} bytes)",
        file=sys.stderr,
        flush=True,
    )
    try:
        status, answer = _send(url, body, headers, timeout=args.timeout)
    except OSError as exc:
        return _fail(f"no answer from {url}: {exc}", EXIT_FAILED)
    print(f"{status} {answer}", flush=True)
    return 0 if 200 <= status < 300 else EXIT_FAILED


def _payload(args: argparse.Namespace, event_of: Any) -> tuple[str, bytes]:
    """(event, the exact bytes to send): FILE's, or a sample deploy's."""
    if args.file is None:
        from bridge.demo_events import sample_webhook

        now = datetime.now(timezone.utc)
        event, doc = sample_webhook(
            args.source,
            int(now.timestamp() * 1000) % 1_000_000_000,
            at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            repository=args.repository,
            environment=args.environment,
        )
        return args.event or event, json.dumps(doc, indent=2).encode()
    if args.file == "-":
        body = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as file:
            body = file.read()
    if args.event:
        return args.event, body
    try:
        told = event_of(json.loads(body))
    except ValueError:
        raise ValueError(f"{args.file} is not JSON: give --event to send it anyway") from None
    if told is None:
        raise ValueError(f"cannot tell which event {args.file} is: give --event")
    return told, body


def _target(url: str, path: str) -> str | None:
    """``url``, with the source's webhook path added when it names only a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url.rstrip("/") + path if parts.path in ("", "/") else url


def _send(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> tuple[int, str]:
    """POST ``body`` as it is; (status, the answer's body as text)."""
    import http.client

    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.netloc, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", target, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode("utf-8", "replace").strip()
    finally:
        conn.close()


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"python -m bridge.fakescm: error: {message}", file=sys.stderr)
    return code
