"""Presets for ``http_sources``: the deployment-list APIs the bridge knows. Pure data.

Each preset is an ``http_sources`` entry without ``url``, ``token_env`` and ``repository``
(those are the user's), in the very shape the config file takes, so that what a preset says
can be read, copied and overridden key by key (docs/http-sources.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A platform whose deployments run through named phases (orchestrate, download, infra,
# build, package, migrate, service_deploy, cache_invalidation), listed at
# ``GET /api/deploys`` with ``page``/``pageSize`` (default 20) and filtered by
# ``productionAppId``. Its document gives the lifecycle (pending -> in_progress ->
# completed | failed | cancelled) and the phases with their own status, not the list's JSON:
# this preset reads the items under ``deploys``, the start from the first phase's
# ``startedAt`` (the pipeline began; the record was made earlier, at ``createdAt``) and the end
# from ``completedAt``. Override ``items`` and ``fields`` where an installation differs.
PHASED: Mapping[str, Any] = {
    "pagination": {"style": "page", "page_param": "page", "size_param": "pageSize", "size": 100},
    "items": "deploys",
    "fields": {
        "id": "id",
        "status": "status",
        "finished_at": ["completedAt", "phases[name=cache_invalidation].completedAt"],
        "started_at": ["phases[name=orchestrate].startedAt", "createdAt"],
        "sha": None,
        "environment": None,
        "title": None,
        "url": None,
        "deployer": None,
    },
    "status": {
        "pending": "pending",
        "in_progress": "in_progress",
        "completed": "succeeded",
        "failed": "failed",
        "cancelled": "cancelled",
    },
}

# Qoder's ``GET /v1/deployments`` (the example calls it at
# https://api.qoder.com/api/v1/cloud/deployments): cursor pages of up to 1000 (``limit``),
# ``after_id`` = the previous answer's ``next_page`` while ``has_more``, newest first by
# ``created_at``. Its deployments are agent configurations that are ``active`` or ``paused``:
# either one was deployed when it was created, so both count as succeeded deploys at
# ``created_at`` (``updated_at`` moves on a pause). Archived ones are left out by default;
# they were deployed too, so the preset asks for them (``include_archived``).
QODER: Mapping[str, Any] = {
    "pagination": {
        "style": "cursor",
        "cursor_param": "after_id",
        "limit_param": "limit",
        "limit": 100,
        "has_more": "has_more",
        "next_cursor": "next_page",
        "newest_first_by": "created_at",
    },
    "items": "data",
    "params": {"include_archived": True},
    "fields": {
        "id": "id",
        "status": "status",
        "finished_at": "created_at",
        "started_at": None,
        "sha": None,
        "environment": None,
        "title": ["name", "description"],
        "url": None,
        "deployer": None,
    },
    "status": {"active": "succeeded", "paused": "succeeded"},
}

# Spice Cloud's ``GET /v1/apps/{appId}/deployments``: the ``limit`` most recent (default 20;
# there is no page or cursor), items under ``deployments``. Statuses: created and queued
# (not started yet), in_progress, succeeded, failed; ``updated_at`` is when it last moved,
# the finish for a deploy that ended.
SPICE: Mapping[str, Any] = {
    "pagination": {"style": "newest-first", "limit_param": "limit", "limit": 100},
    "items": "deployments",
    "fields": {
        "id": "id",
        "status": "status",
        "finished_at": "updated_at",
        "started_at": "started_at",
        "sha": "commit_sha",
        "environment": None,
        "title": "commit_message",
        "url": None,
        "deployer": "created_by",
    },
    "status": {
        "created": "pending",
        "queued": "pending",
        "in_progress": "in_progress",
        "succeeded": "succeeded",
        "failed": "failed",
    },
}

PRESETS: Mapping[str, Mapping[str, Any]] = {"phased": PHASED, "qoder": QODER, "spice": SPICE}
