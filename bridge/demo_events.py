"""The story ``cortex-deploy-bridge demo`` tells: invented, small, real-shaped webhooks. Pure.

Every payload is the project's own invention, cut down to the fields a real delivery carries
and the bridge reads (GitHub: docs.github.com/en/webhooks/webhook-events-and-payloads;
GitLab: docs.gitlab.com/ee/user/project/integrations/webhook_events.html; Flux:
notification-controller's Event, docs/spec/v1beta3/events.md). Each step says what
the receiver must answer, and the story ends with exactly the deploys Cortex must hold, so the
demo doubles as a smoke test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The demo's commits. payments-api goes RELEASE -> REFUNDS, then back to RELEASE.
RELEASE = "e6b75d517738f0e810ae2ee7cdc8fd62d012a016"
REFUNDS = "73b61b7c6a7e4aeaefce665aa64804d992d0e687"
CHECKOUT = "bf3451f053bde3dcd8549f54e44ce522fe1909b9"
FORGED = "2499214608ef1e4fafd047e5b23d48899d3b2902"
INVENTORY = "4c2e9a7b1d3f5e6a8b0c2d4e6f8a1b3c5d7e9f0a"

GITHUB = "https://github.com"
GITLAB = "https://gitlab.acme.example"

# The config the demo runs with (cortex.url and database are added at start-up).
STORY_CONFIG: Mapping[str, Any] = {
    "sources": {"flux": {"enabled": True}},
    "routes": [
        {"match": {"repository": "acme/*"}, "entities": ["{repo}"]},
        {
            "match": {"source": "flux", "object": "apps/*"},
            "entities": ["{name}"],
            "environment": "production",
        },
    ],
    "workflows": [
        {"match": {"repository": "acme/*", "workflow": "Deploy*"}, "environment": "production"}
    ],
    "rollback": {"detect": True},
}


@dataclass(frozen=True)
class Step:
    """One webhook delivery of the story, and the answer the receiver must give."""

    says: str  # what is sent, in one short line
    source: str  # "github", "gitlab" or "flux"
    event: str  # X-GitHub-Event or X-Gitlab-Event (Flux: the object's kind)
    delivery: str  # X-GitHub-Delivery or X-Gitlab-Event-UUID ("" for Flux: it sends none)
    payload: Mapping[str, Any] = field(hash=False)
    status: int  # the expected HTTP status
    answer: str  # the expected "status" word of the JSON answer
    note: str = ""  # what to notice, when the answer alone does not say it
    forged: bool = False  # signed with a wrong secret


@dataclass(frozen=True)
class Expected:
    """One deploy Cortex must hold at the end of the story."""

    entity: str
    environment: str
    type: str
    sha: str
    timestamp: str


EXPECTED_DEPLOYS = (
    Expected("payments-api", "production", "DEPLOY", RELEASE, "2026-03-10T10:01:44Z"),
    Expected("checkout-web", "production", "DEPLOY", CHECKOUT, "2026-03-10T10:16:30Z"),
    Expected("payments-api", "production", "DEPLOY", REFUNDS, "2026-03-10T10:40:05Z"),
    Expected("payments-api", "production", "ROLLBACK", RELEASE, "2026-03-10T11:05:51Z"),
    Expected("inventory-api", "production", "DEPLOY", INVENTORY, "2026-03-10T11:30:12Z"),
)


# --- GitHub ------------------------------------------------------------------------------


def _github_user(login: str, user_id: int) -> dict[str, Any]:
    return {
        "login": login,
        "id": user_id,
        "type": "User",
        "url": f"https://api.github.com/users/{login}",
        "html_url": f"{GITHUB}/{login}",
    }


def _github_repository(name: str, repo_id: int) -> dict[str, Any]:
    return {
        "id": repo_id,
        "name": name,
        "full_name": f"acme/{name}",
        "private": True,
        "owner": {"login": "acme", "id": 7340211, "type": "Organization"},
        "html_url": f"{GITHUB}/acme/{name}",
        "url": f"https://api.github.com/repos/acme/{name}",
        "default_branch": "main",
    }


def _payments_deployment(deployment_id: int, sha: str, created_at: str) -> dict[str, Any]:
    api = "https://api.github.com/repos/acme/payments-api"
    return {
        "url": f"{api}/deployments/{deployment_id}",
        "id": deployment_id,
        "sha": sha,
        "ref": "main",
        "task": "deploy",
        "payload": {},
        "environment": "production",
        "description": "Release 2026.03.1",
        "creator": _github_user("jonas-weber", 4481920),
        "created_at": created_at,
        "updated_at": created_at,
        "statuses_url": f"{api}/deployments/{deployment_id}/statuses",
        "production_environment": True,
    }


def _payments_status(
    state: str,
    at: str,
    *,
    status_id: int,
    deployment_id: int = 2210457,
    sha: str = RELEASE,
) -> dict[str, Any]:
    api = "https://api.github.com/repos/acme/payments-api"
    return {
        "action": "created",
        "deployment_status": {
            "url": f"{api}/deployments/{deployment_id}/statuses/{status_id}",
            "id": status_id,
            "state": state,
            "creator": _github_user("jonas-weber", 4481920),
            "description": f"Rollout {state.replace('_', ' ')}",
            "environment": "production",
            "target_url": f"https://deploy.acme.example/payments-api/releases/{deployment_id}",
            "environment_url": "https://payments.acme.example",
            "created_at": at,
            "updated_at": at,
        },
        "deployment": _payments_deployment(deployment_id, sha, "2026-03-10T09:57:40Z"),
        "repository": _github_repository("payments-api", 601233410),
        "sender": _github_user("jonas-weber", 4481920),
    }


def _forged() -> dict[str, Any]:
    return _payments_status(
        "success", "2026-03-10T11:30:00Z", status_id=51009, deployment_id=2210999, sha=FORGED
    )


def _checkout_run() -> dict[str, Any]:
    run_id = 13822460117
    html = f"{GITHUB}/acme/checkout-web/actions/runs/{run_id}"
    author = {"name": "Ana Lima", "email": "ana.lima@acme.example"}
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": "Deploy production",
            "path": ".github/workflows/deploy.yml",
            "display_title": "Show delivery slots at checkout (#412)",
            "head_branch": "main",
            "head_sha": CHECKOUT,
            "run_number": 318,
            "run_attempt": 1,
            "event": "push",
            "status": "completed",
            "conclusion": "success",
            "html_url": html,
            "created_at": "2026-03-10T10:11:58Z",
            "run_started_at": "2026-03-10T10:12:03Z",
            "updated_at": "2026-03-10T10:16:30Z",
            "actor": _github_user("ana-lima", 5120377),
            "triggering_actor": _github_user("ana-lima", 5120377),
            "head_commit": {
                "id": CHECKOUT,
                "message": "Show delivery slots at checkout (#412)\n\nBehind flag slots-v2.",
                "timestamp": "2026-03-10T10:11:41Z",
                "author": author,
                "committer": author,
            },
        },
        "workflow": {
            "id": 90211734,
            "name": "Deploy production",
            "path": ".github/workflows/deploy.yml",
        },
        "repository": _github_repository("checkout-web", 601233877),
        "sender": _github_user("ana-lima", 5120377),
    }


# --- GitLab ------------------------------------------------------------------------------


def _gitlab_deployment(
    *, deployment_id: int, job_id: int, sha: str, at: str, title: str, user: dict[str, Any]
) -> dict[str, Any]:
    project = f"{GITLAB}/acme/payments-api"
    return {
        "object_kind": "deployment",
        "status": "success",
        "status_changed_at": at,
        "deployment_id": deployment_id,
        "deployable_id": job_id,
        "deployable_url": f"{project}/-/jobs/{job_id}",
        "environment": "production",
        "environment_tier": "production",
        "environment_slug": "production",
        "environment_external_url": "https://payments.acme.example",
        "project": {
            "id": 2204,
            "name": "payments-api",
            "web_url": project,
            "path_with_namespace": "acme/payments-api",
            "default_branch": "main",
            "ci_config_path": "",
        },
        "short_sha": sha[:8],
        "user": user,
        "user_url": f"{GITLAB}/{user['username']}",
        "commit_url": f"{project}/-/commit/{sha}",
        "commit_title": title,
        "ref": "main",
    }


def _refunds() -> dict[str, Any]:
    user = {"id": 87, "name": "Priya Raman", "username": "praman", "email": "priya@acme.example"}
    return _gitlab_deployment(
        deployment_id=30417,
        job_id=9920114,
        sha=REFUNDS,
        at="2026-03-10 12:40:05 +0200",
        title="Fix rounding of refunds in EUR",
        user=user,
    )


def _rollback() -> dict[str, Any]:
    # GitLab shows a user's email only when it is public; otherwise "[REDACTED]".
    user = {"id": 112, "name": "Tomas Ibarra", "username": "tibarra", "email": "[REDACTED]"}
    return _gitlab_deployment(
        deployment_id=30421,
        job_id=9920388,
        sha=RELEASE,
        at="2026-03-10 13:05:51 +0200",
        title="Bump version to 2026.03.1",
        user=user,
    )


# --- Flux --------------------------------------------------------------------------------


def _flux_applied(at: str, message: str) -> dict[str, Any]:
    """kustomize-controller's report that a Kustomization applied a revision (again)."""
    return {
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": "apps",
            "name": "inventory-api",
            "uid": "3b9d2f61-7c4e-4a18-9e05-d2c8a1f4b7e3",
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        },
        "severity": "info",
        "timestamp": at,
        "message": message,
        "reason": "ReconciliationSucceeded",
        "metadata": {"commit_status": "update", "revision": f"main@sha1:{INVENTORY}"},
        "reportingController": "kustomize-controller",
        "reportingInstance": "kustomize-controller-6f9c8d7b5-x2lqp",
    }


# --- The story ---------------------------------------------------------------------------

_STARTED = _payments_status("in_progress", "2026-03-10T09:58:12Z", status_id=51001)
_FINISHED = _payments_status("success", "2026-03-10T10:01:44Z", status_id=51002)

STORY = (
    Step(
        says='GitHub deployment_status "in_progress": acme/payments-api to production',
        source="github",
        event="deployment_status",
        delivery="7d6a8f10-1c2b-11f1-8e3a-5b9d4c0e2a11",
        payload=_STARTED,
        status=200,
        answer="ignored",
    ),
    Step(
        says='GitHub deployment_status "success": the same deployment finished',
        source="github",
        event="deployment_status",
        delivery="9a1f3e20-1c2b-11f1-9c47-0f3e6d2b8c55",
        payload=_FINISHED,
        status=202,
        answer="queued",
    ),
    Step(
        says="GitHub redelivers that success (same X-GitHub-Delivery)",
        source="github",
        event="deployment_status",
        delivery="9a1f3e20-1c2b-11f1-9c47-0f3e6d2b8c55",
        payload=_FINISHED,
        status=200,
        answer="duplicate",
        note="one deploy, however often GitHub sends it",
    ),
    Step(
        says='GitHub workflow_run completed "success": acme/checkout-web, "Deploy production"',
        source="github",
        event="workflow_run",
        delivery="c3e5b7a0-1c2d-11f1-8f0b-6a2c9e4d1b77",
        payload=_checkout_run(),
        status=202,
        answer="queued",
        note='the workflow matches the rule "Deploy*": a production deploy',
    ),
    Step(
        says="GitLab Deployment Hook success: acme/payments-api, short sha 73b61b7c, +0200",
        source="gitlab",
        event="Deployment Hook",
        delivery="5f0e2d4c-8a6b-4c1d-9e3f-2b7a1c0d4e61",
        payload=_refunds(),
        status=202,
        answer="queued",
        note="full sha taken from commit_url; 12:40:05 +0200 recorded as 10:40:05Z",
    ),
    Step(
        says="GitLab Deployment Hook success: acme/payments-api back to e6b75d51 (older sha)",
        source="gitlab",
        event="Deployment Hook",
        delivery="a2c4e6f8-0b1d-4f3a-8c5e-7d9b1f2a3c40",
        payload=_rollback(),
        status=202,
        answer="queued",
        note="e6b75d51 was deployed before and is not the latest: ROLLBACK",
    ),
    Step(
        says="GitHub deployment_status signed with the wrong secret",
        source="github",
        event="deployment_status",
        delivery="e8b0d2f4-1c31-11f1-a6c8-3e5f7a9b1d22",
        payload=_forged(),
        status=401,
        answer="unauthorized",
        note="refused: nothing stored",
        forged=True,
    ),
    Step(
        says="Flux Kustomization apps/inventory-api applied main@sha1:4c2e9a7b (X-Signature)",
        source="flux",
        event="Kustomization",
        delivery="",
        payload=_flux_applied("2026-03-10T11:30:12Z", "Reconciliation finished in 2.1s"),
        status=202,
        answer="queued",
        note="a GitOps deploy: the object apps/inventory-api routed to its entity",
    ),
    Step(
        says="Flux reports the same revision again at its next reconcile (a new message)",
        source="flux",
        event="Kustomization",
        delivery="",
        payload=_flux_applied("2026-03-10T11:40:13Z", "Reconciliation finished in 0.9s"),
        status=200,
        answer="duplicate",
        note="one record per object and revision, at the time of the first report",
    ),
)


# --- One more deploy, for `python -m bridge.fakescm post` --------------------------------


def sample_webhook(
    source: str, number: int, *, at: str, repository: str, environment: str
) -> tuple[str, dict[str, Any]]:
    """A finished deploy's webhook as ``source`` sends it: (event name, payload).

    GitHub: a ``deployment_status`` "success"; GitLab: a Deployment Hook "success". ``number``
    makes its ids (deployment, status, job) its own, so that each is a new deploy; ``at`` is
    when it finished (GitHub's form, ``2026-03-10T10:01:44Z``).
    """
    owner, _, name = repository.rpartition("/")
    if source == "github":
        doc = _payments_status("success", at, status_id=70_000_000 + number)
        deployment = _payments_deployment(60_000_000 + number, RELEASE, at)
        deployment["environment"] = doc["deployment_status"]["environment"] = environment
        doc["deployment"] = deployment
        doc["repository"] = {**doc["repository"], "name": name, "full_name": repository}
        doc["repository"]["owner"] = {**doc["repository"]["owner"], "login": owner}
        return "deployment_status", doc
    if source == "gitlab":
        user = {
            "id": 87,
            "name": "Priya Raman",
            "username": "praman",
            "email": "priya@acme.example",
        }
        doc = _gitlab_deployment(
            deployment_id=50_000_000 + number,
            job_id=80_000_000 + number,
            sha=REFUNDS,
            at=at.replace("T", " ").replace("Z", " +0000"),  # GitLab's own form
            title="Fix rounding of refunds in EUR",
            user=user,
        )
        doc["environment"] = doc["environment_slug"] = environment
        project = f"{GITLAB}/{repository}"
        doc["project"] = {
            **doc["project"],
            "name": name,
            "path_with_namespace": repository,
            "web_url": project,
        }
        doc["deployable_url"] = f"{project}/-/jobs/{doc['deployable_id']}"
        doc["commit_url"] = f"{project}/-/commit/{REFUNDS}"
        return "Deployment Hook", doc
    raise ValueError(f"no sample webhook for source {source!r}")
