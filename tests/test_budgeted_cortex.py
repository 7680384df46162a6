"""The budget wraps the client (bridge.cortex.budget.BudgetedCortex): the same interface, each
call drawn from the bucket before the client runs a write's guard, and a 429 pausing it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.cortex import CortexClient
from bridge.cortex.budget import BudgetedCortex
from bridge.errors import CortexRetryable
from bridge.fakecortex import FakeCortex, Fault
from tests.conftest import TOKEN

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
BODY = {"title": "Deploy", "timestamp": "2026-11-23T10:00:00Z", "type": "DEPLOY", "sha": "a" * 40}


class Bucket:
    """A bucket that notes what it was asked, in order."""

    def __init__(self) -> None:
        self.heard: list[Any] = []

    def before_request(self) -> None:
        self.heard.append("turn")

    def rate_limited(self, retry_after: float | None) -> None:
        self.heard.append(("paused", retry_after))


def test_each_call_takes_its_turn_before_the_guard_and_the_request(cortex: FakeCortex) -> None:
    bucket = Bucket()
    with CortexClient(cortex.url, TOKEN) as client:
        budgeted = BudgetedCortex(client, bucket)
        made = budgeted.create_deploy("svc", BODY, guard=lambda: bucket.heard.append("guard"))
        listed = list(
            budgeted.search_deploys(
                "svc", environment=None, after=T0 - timedelta(hours=1), before=T0
            )
        )
        budgeted.update_deploy("svc", made["uuid"], BODY)
        budgeted.delete_deploy("svc", made["uuid"])
    assert [d["uuid"] for d in listed] == [made["uuid"]]
    assert bucket.heard == ["turn", "guard", "turn", "turn", "turn"]
    assert len(cortex.received) == 4


def test_a_429_pauses_the_bucket_and_is_raised(cortex: FakeCortex) -> None:
    bucket = Bucket()
    cortex.inject(Fault.rate_limited(7, method="GET"), Fault.rate_limited(3, method="POST"))
    with CortexClient(cortex.url, TOKEN) as client:
        budgeted = BudgetedCortex(client, bucket)
        with pytest.raises(CortexRetryable):
            budgeted.search_deploys("svc", environment="production", after=T0, before=T0)
        with pytest.raises(CortexRetryable):
            budgeted.create_deploy("svc", BODY, guard=lambda: bucket.heard.append("guard"))
    assert bucket.heard == ["turn", ("paused", 7.0), "turn", "guard", ("paused", 3.0)]
    assert cortex.all_deploys() == []
