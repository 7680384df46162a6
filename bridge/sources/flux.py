"""Flux notification-controller events as DeployEvents: Kustomizations and HelmReleases.

The body is Flux's Event (fluxcd/pkg apis/event, docs/spec/v1beta3/events.md in
notification-controller): ``involvedObject`` {apiVersion, kind, namespace, name, uid},
``severity`` (info, error), ``timestamp``, ``message``, ``reason``, ``metadata`` (strings),
``reportingController``, ``reportingInstance``. The Provider type ``generic-hmac`` posts it as
it is. The receiver hands over ``involvedObject.kind`` as the event name.

- A Kustomization reports ``ReconciliationSucceeded`` once it has applied a revision, and
  again on every later reconcile of the same revision (its commit-status event), each with a
  new message; its server-side apply reports the change set with reason ``Progressing``;
  an ``error`` event with a revision is a failed reconcile of it (kustomize-controller,
  internal/controller/kustomization_controller.go: the event's reason is the Ready
  condition's).
- A HelmRelease reports ``InstallSucceeded``/``UpgradeSucceeded`` and ``InstallFailed``/
  ``UpgradeFailed`` (helm-controller v2, internal/reconcile); its revision is the chart
  version and its ``token`` the digest of the values, so an upgrade that changes only values
  is a deploy of its own. ``RollbackSucceeded`` is recorded as a ROLLBACK. A success is
  reported once per Helm release revision, which its message names ("Helm upgrade succeeded
  for release apps/podinfo.v7 with chart podinfo@6.5.4"; a rollback's, the release it went
  back to: "Helm rollback to previous release apps/podinfo.v5 ..."): that revision is part of
  the deploy's name, so a return to a chart version and values released before (a second
  rollback, a downgrade) is a deploy of its own. A failure's message names none.

The revision is in ``metadata.revision`` (notification-controller strips the controller's
group from the keys) or, from older versions, ``<group>/revision``
(``kustomize.toolkit.fluxcd.io/revision``); ``originRevision`` likewise. One deploy is one
object (its uid) and revision: every report of it shares the idempotency key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bridge.errors import MalformedEvent, UnsupportedEvent
from bridge.model import MAX_TITLE, DeployEvent, DeployRef, DeployType, Status, first_line
from bridge.sources.fields import Fields, Parser, Screen, compact, keep_all, shorten
from bridge.sources.gitops import (
    ENVIRONMENT_KEYS,
    TAG_KEYS,
    git_sha,
    id_part,
    object_path,
    short_revision,
    tags,
)

# The API group of each kind: the prefix of its controller's metadata keys before v1.5.
GROUPS: Mapping[str, str] = MappingProxyType(
    {"Kustomization": "kustomize.toolkit.fluxcd.io", "HelmRelease": "helm.toolkit.fluxcd.io"}
)

# helm-controller's reasons that end an install or upgrade (api/v2 condition_types.go).
HELM_REASONS: Mapping[str, Status] = MappingProxyType(
    {
        "installsucceeded": Status.SUCCEEDED,
        "upgradesucceeded": Status.SUCCEEDED,
        "rollbacksucceeded": Status.SUCCEEDED,
        "installfailed": Status.FAILED,
        "upgradefailed": Status.FAILED,
    }
)
# kustomize-controller's: Ready's reason once applied, and while applying (fluxcd/pkg meta).
KUSTOMIZE_REASONS: Mapping[str, Status] = MappingProxyType(
    {"reconciliationsucceeded": Status.SUCCEEDED, "progressing": Status.IN_PROGRESS}
)
SEVERITIES = frozenset({"info", "error", "trace"})
# The Helm release revision a success's message names (helm-controller internal/reconcile:
# install.go, upgrade.go, rollback_remediation.go, "... release <namespace>/<name>.v<N> ...").
_RELEASED = re.compile(r"\brelease \S+\.v(\d{1,9}) with chart\b")


def parse_kustomization(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A Kustomization's event: a revision applied, being applied, or failed."""
    fields = Fields(payload, "Flux Kustomization event")
    # Any error of a reconcile that names a revision is that revision failing to apply.
    status = _status(fields, KUSTOMIZE_REASONS, errors_fail=True)
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    revision = _revision(fields, "Kustomization")
    return _event(fields, "Kustomization", status, revision, ref_id=revision)


def parse_helmrelease(payload: Mapping[str, Any], screen: Screen = keep_all) -> DeployEvent:
    """A HelmRelease's event: a release installed, upgraded or rolled back, or failing to."""
    fields = Fields(payload, "Flux HelmRelease event")
    # Only a failed install or upgrade is a failed deploy: a test, an uninstall or a fetch
    # that fails is not (a test failing after an upgrade leaves that upgrade succeeded).
    status = _status(fields, HELM_REASONS, errors_fail=False)
    if status in screen:  # an event of this status records nothing
        raise UnsupportedEvent(screen[status])
    revision = _revision(fields, "HelmRelease")
    token = _meta(fields, "HelmRelease", "token")
    rollback = (fields.text("reason") or "").lower() == "rollbacksucceeded"
    ref_id = revision + (f"+{token}" if token else "")
    message = fields.text("message") or ""
    released = _RELEASED.search(message) if status is Status.SUCCEEDED else None
    if released is not None:
        ref_id += f"/v{int(released[1])}"
    return _event(
        fields,
        "HelmRelease",
        status,
        revision,
        ref_id=ref_id,
        ref_kind="rollback" if rollback else "release",
        deploy_type=DeployType.ROLLBACK if rollback else None,
    )


# Keyed by involvedObject.kind; other kinds (sources, image automation) are not deploys.
PARSERS: Mapping[str, Parser] = MappingProxyType(
    {"Kustomization": parse_kustomization, "HelmRelease": parse_helmrelease}
)


def event_name(payload: Any) -> str:
    """The event name the receiver routes on: the involved object's kind ("" when none)."""
    involved = payload.get("involvedObject") if isinstance(payload, Mapping) else None
    kind = involved.get("kind") if isinstance(involved, Mapping) else None
    return kind.strip() if isinstance(kind, str) else ""


def _status(fields: Fields, reasons: Mapping[str, Status], *, errors_fail: bool) -> Status:
    severity = fields.text("severity", required=True).lower()
    if severity not in SEVERITIES:
        raise fields.bad("severity", severity)
    reason = fields.text("reason") or ""
    if errors_fail and severity == "error" and reason.lower() not in reasons:
        return Status.FAILED  # a failed reconcile: its reason is the Ready condition's
    status = reasons.get(reason.lower())
    if status is None or severity == "trace":
        if not reason:
            raise UnsupportedEvent(f"a Flux {severity} event with no reason is not a deploy")
        raise UnsupportedEvent(f"Flux reason {shorten(reason)} is not a deploy")
    return status


def _meta(fields: Fields, kind: str, key: str) -> str | None:
    """A metadata value: ``key`` (v1.5+: the group stripped) or ``<group>/key`` (older)."""
    return fields.text(f"metadata.{key}") or _prefixed(fields, f"{GROUPS[kind]}/{key}")


def _prefixed(fields: Fields, key: str) -> str | None:
    # A key with dots and a slash: read from the mapping itself, not as a dotted path.
    metadata = fields.mapping("metadata") or {}
    value = metadata.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _revision(fields: Fields, kind: str) -> str:
    revision = _meta(fields, kind, "revision")
    if revision is None:
        raise UnsupportedEvent(f"the Flux {kind} event carries no revision: not a deploy")
    return revision


def _event(
    fields: Fields,
    kind: str,
    status: Status,
    revision: str,
    *,
    ref_id: str,
    ref_kind: str = "revision",
    deploy_type: DeployType | None = None,
) -> DeployEvent:
    namespace = fields.text("involvedObject.namespace", required=True)
    name = fields.text("involvedObject.name", required=True)
    uid = fields.text("involvedObject.uid", required=True)
    found_kind = fields.text("involvedObject.kind", required=True)
    if found_kind != kind:
        raise fields.bad("involvedObject.kind", found_kind)
    timestamp = fields.moment("timestamp", required=True)
    origin = _meta(fields, kind, "originRevision")
    metadata = fields.mapping("metadata") or {}
    entities = tags(_text(metadata.get(key)) for key in TAG_KEYS)
    environment = next(
        (value for value in (_text(metadata.get(k)) for k in ENVIRONMENT_KEYS) if value), None
    )
    path = object_path(namespace, name)
    return DeployEvent(
        source="flux",
        repository=path,
        event=kind.lower(),
        ref=DeployRef(ref_kind, f"{uid}/{id_part(ref_id)}"),
        status=status,
        timestamp=timestamp,
        title=f"{kind} {path} {short_revision(revision)}"[:MAX_TITLE],
        sha=git_sha(origin) or git_sha(revision),
        environment=environment,
        deployer_name=fields.text("reportingController"),
        started_at=timestamp if status is Status.IN_PROGRESS else None,
        finished_at=timestamp if status.is_final else None,
        details=compact(
            {
                "object": path,
                "kind": kind,
                "uid": uid,
                "revision": revision,
                "originRevision": origin,
                "token": _meta(fields, kind, "token") if kind == "HelmRelease" else None,
                "appVersion": _meta(fields, kind, "app-version"),
                "ociDigest": _meta(fields, kind, "oci-digest"),
                "reason": fields.text("reason"),
                "message": first_line(fields.text("message"))[:MAX_TITLE] or None,
                "controller": fields.text("reportingController"),
                "entitiesFrom": "metadata key cortex.io/tag or cortex-tag" if entities else None,
            }
        ),
        entities=entities,
        type=deploy_type,
    )


def _text(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"Flux event metadata holds a non-string value: {shorten(value)}")
    return value.strip() or None
