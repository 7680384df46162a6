"""What the GitOps sources (Flux, Argo CD) share: revisions, the object's own tags, ids.

Pure. A GitOps deploy is of a cluster object (a Kustomization, a HelmRelease, an Argo CD
Application), named ``namespace/name``: that path is the event's ``repository``, so routes,
keys and reports treat it as they treat a repository (docs/gitops.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

# A Flux source revision: "<ref>@sha1:<40 hex>" (source-controller v1), "<ref>/<40 hex>"
# (before v1, fluxcd/source-controller RFC-0005), or "sha1:<40 hex>" for a commit with no ref.
# OCI artifacts ("<tag>@sha256:<64 hex>") and buckets carry digests, not commits, and a
# chart version ("6.5.4") carries neither: those have no git sha.
_GIT_REVISION = re.compile(r"(?:.*@)?sha1:([0-9a-fA-F]{40})|.*/([0-9a-fA-F]{40})")
# A bare commit sha, as Argo CD records a git source's revision.
_BARE_SHA = re.compile(r"[0-9a-fA-F]{40}")

# Where a GitOps object names its Cortex entity and environment (docs/gitops.md): an Argo CD
# Application's annotation or label; a Flux object's event metadata (its annotation
# event.toolkit.fluxcd.io/cortex-tag, or the Alert's spec.eventMetadata).
TAG_KEYS = ("cortex.io/tag", "cortex-tag")
ENVIRONMENT_KEYS = ("cortex.io/environment", "cortex-environment")

# The part of a deploy id a revision may take before it is replaced by its digest: keys stay
# within MAX_NAME whatever a branch is called.
_MAX_ID_PART = 160


def git_sha(revision: str | None, *, bare: bool = False) -> str | None:
    """The commit sha a revision names, lower-cased; None for digests, versions and the like.

    ``bare``: a revision that is only 40 hex digits counts too (Argo CD's form).
    """
    if not revision:
        return None
    text = revision.strip()
    found = _GIT_REVISION.fullmatch(text)
    if found:
        return (found[1] or found[2]).lower()
    if bare and _BARE_SHA.fullmatch(text):
        return text.lower()
    return None


def short_revision(revision: str) -> str:
    """A revision for a title: its commit sha cut to 12 digits, the rest kept."""
    return re.sub(r"([0-9a-fA-F]{12})[0-9a-fA-F]{28,52}", r"\1", revision)


def id_part(text: str) -> str:
    """``text`` as part of a deploy id: itself, or its digest when it is too long to fit."""
    if len(text) <= _MAX_ID_PART:
        return text
    return "sha256-" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def tags(values: Iterable[str | None]) -> tuple[str, ...]:
    """The entity tags of a comma-separated annotation value (the first one given)."""
    for value in values:
        if value and value.strip():
            found = (tag.strip() for tag in value.split(","))
            return tuple(dict.fromkeys(tag for tag in found if tag))
    return ()


def object_path(namespace: str, name: str) -> str:
    """``namespace/name``, what routes' ``object`` globs match."""
    return f"{namespace}/{name}"


__all__ = [
    "ENVIRONMENT_KEYS",
    "TAG_KEYS",
    "git_sha",
    "id_part",
    "object_path",
    "short_revision",
    "tags",
]
