"""What the stand-in accepts and how it answers: SaveDeployRequest and the answer shapes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

DEPLOY_TYPES = ("DEPLOY", "SCALE", "ROLLBACK", "RESTART")
# SaveDeployRequest's properties. The OpenAPI document types customData's values as
# "object", but Cortex's own CLI tests post strings there (Java's Map<String, Object>), so
# any JSON value is accepted inside customData.
_STRING_FIELDS = ("environment", "sha", "timestamp", "title", "type", "url")
_KNOWN_FIELDS = {*_STRING_FIELDS, "customData", "deployer"}
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def validate_save_deploy_request(body: Any) -> list[str]:
    """Every way ``body`` breaks SaveDeployRequest; unknown fields count too (strict)."""
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    problems = [
        f"missing required {name!r}" for name in ("timestamp", "title", "type") if name not in body
    ]
    problems += [f"unknown field {name!r}" for name in body if name not in _KNOWN_FIELDS]
    problems += [
        f"{name!r} is not a string"
        for name in _STRING_FIELDS
        if name in body and not isinstance(body[name], str)
    ]
    if isinstance(body.get("type"), str) and body["type"] not in DEPLOY_TYPES:
        problems.append(f"type {body['type']!r} is not one of {', '.join(DEPLOY_TYPES)}")
    if isinstance(body.get("timestamp"), str) and not _RFC3339.match(body["timestamp"]):
        problems.append(f"timestamp {body['timestamp']!r} is not an RFC 3339 date-time")
    if "customData" in body and not isinstance(body["customData"], dict):
        problems.append("'customData' is not an object")
    deployer = body.get("deployer")
    if deployer is not None:
        if not isinstance(deployer, dict):
            problems.append("'deployer' is not an object")
        else:
            problems += [
                f"deployer.{k} is not a string"
                for k, v in deployer.items()
                if k in ("name", "email") and not isinstance(v, str)
            ]
            problems += [
                f"unknown field deployer.{k}" for k in deployer if k not in ("name", "email")
            ]
    return problems


def within(moment: datetime | None, after: datetime | None, before: datetime | None) -> bool:
    """Whether ``moment`` is known and between ``after`` and ``before`` (either may be open)."""
    if moment is None:
        return False
    return (after is None or moment >= after) and (before is None or moment <= before)


def when(text: str | None) -> datetime | None:
    """An RFC 3339 date-time parsed, or None for None; ValueError if it is not one."""
    if text is None:
        return None
    if not _RFC3339.match(text):
        raise ValueError(f"{text!r} is not an ISO date-time")
    return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))


def custom_deploy(record: dict[str, Any]) -> dict[str, Any]:
    """A CustomDeploy answer: the deployer flattened, ids added."""
    out = {k: v for k, v in record.items() if k != "deployer"}
    deployer = record.get("deployer") or {}
    if deployer.get("name"):
        out["deployerName"] = deployer["name"]
    if deployer.get("email"):
        out["deployerEmail"] = deployer["email"]
    out.update(serviceId=1, id=abs(hash(record["uuid"])) % 10**9)
    return out


def listed(record: dict[str, Any]) -> dict[str, Any]:
    """A CustomDeploy1 list item."""
    return dict(record)


def error(status: int, kind: str, message: str) -> tuple[int, dict[str, str], Any]:
    """An error answer: (status, headers, Cortex-shaped body)."""
    return status, {}, {"type": kind, "message": message, "httpStatus": status}
