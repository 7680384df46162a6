"""The one retry driver (``bridge.retry.drive``) and its policy, alone: no HTTP, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from bridge.retry import Again, RetryPolicy, drive


class Failure(Exception):
    """A failure the test classifies: ``after`` None is "no word of when", else a wait."""

    def __init__(self, after: float | None = None, *, retryable: bool = True) -> None:
        super().__init__(f"failed (after={after})")
        self.after = after
        self.retryable = retryable


class GaveUp(Exception):
    pass


def classify(exc: Exception) -> Again | None:
    if isinstance(exc, Failure) and exc.retryable:
        return Again(exc.after)
    return None


def failing(*failures: Failure, result: str = "ok") -> tuple[list[int], Callable[[int], str]]:
    """An attempt that raises ``failures`` in turn, then returns ``result``; the numbers seen."""
    seen: list[int] = []

    def attempt(number: int) -> str:
        seen.append(number)
        if number <= len(failures):
            raise failures[number - 1]
        return result

    return seen, attempt


def run(
    attempt: Callable[[int], str], policy: RetryPolicy, sleeps: list[float], **options: Any
) -> str:
    return drive(
        attempt, policy=policy, classify=classify, sleep=sleeps.append, clock=lambda: 0.0, **options
    )


def test_a_success_after_failures_is_returned_and_each_wait_is_heard() -> None:
    sleeps: list[float] = []
    heard: list[tuple[str, float]] = []
    seen, attempt = failing(Failure(3.0), Failure(None))
    policy = RetryPolicy(base_delay=1.0, max_delay=1.0)
    result = run(attempt, policy, sleeps, on_retry=lambda exc, s: heard.append((str(exc), s)))
    assert (result, seen) == ("ok", [1, 2, 3])
    assert sleeps[0] == 3.0 and 0.5 <= sleeps[1] <= 1.0  # asked for, then jittered backoff
    assert [s for _, s in heard] == sleeps


def test_a_failure_that_will_not_pass_is_raised_as_it_is_at_once() -> None:
    sleeps: list[float] = []
    final = Failure(retryable=False)
    seen, attempt = failing(final)
    with pytest.raises(Failure) as caught:
        run(attempt, RetryPolicy(), sleeps, gave_up=lambda exc, why: GaveUp(why))
    assert caught.value is final and seen == [1] and sleeps == []


def test_tries_end_at_max_attempts_with_the_reason() -> None:
    sleeps: list[float] = []
    seen, attempt = failing(*[Failure(0.0)] * 20)
    with pytest.raises(GaveUp, match=r"^failed \(after=0.0\): gave up after 5 tries$"):
        run(
            attempt,
            RetryPolicy(max_attempts=5),
            sleeps,
            gave_up=lambda e, why: GaveUp(f"{e}: {why}"),
        )
    assert seen == [1, 2, 3, 4, 5] and sleeps == [0.0] * 4


def test_without_gave_up_the_last_failure_is_raised_as_it_is() -> None:
    last = Failure(0.0)
    seen, attempt = failing(Failure(0.0), last)
    with pytest.raises(Failure) as caught:
        run(attempt, RetryPolicy(max_attempts=2), [])
    assert caught.value is last and seen == [1, 2]


def test_max_failures_bounds_only_the_failures_with_no_word_of_when() -> None:
    sleeps: list[float] = []
    # Rate limits (a wait given) do not count against max_failures; the third 5xx ends it.
    failures = [Failure(1.0), Failure(None), Failure(1.0), Failure(None), Failure(None)]
    seen, attempt = failing(*failures)
    policy = RetryPolicy(max_attempts=10, max_failures=3, base_delay=0.01, max_delay=0.01)
    with pytest.raises(GaveUp, match="gave up after 5 tries"):
        run(attempt, policy, sleeps, gave_up=lambda e, why: GaveUp(why))
    assert seen == [1, 2, 3, 4, 5] and len(sleeps) == 4


def test_the_total_wait_counts_the_waits_slept_even_when_the_clock_stands_still() -> None:
    sleeps: list[float] = []
    seen, attempt = failing(*[Failure(60.0)] * 5)
    policy = RetryPolicy(max_attempts=10, max_elapsed=150.0)
    with pytest.raises(GaveUp, match="waiting 60s more would pass 150s for this request"):
        run(attempt, policy, sleeps, gave_up=lambda e, why: GaveUp(why))
    assert sleeps == [60.0, 60.0] and seen == [1, 2, 3]


def test_the_clock_counts_too() -> None:
    ticks = iter([0.0, 100.0, 100.0])
    sleeps: list[float] = []
    seen, attempt = failing(*[Failure(10.0)] * 5)
    with pytest.raises(Failure):
        drive(
            attempt,
            policy=RetryPolicy(max_elapsed=105.0),
            classify=classify,
            sleep=sleeps.append,
            clock=lambda: next(ticks),
        )
    assert sleeps == [] and seen == [1]


def test_a_wait_past_the_cap_is_shortened_or_refused_as_the_policy_says() -> None:
    capped: list[float] = []
    _, attempt = failing(Failure(3600.0))
    assert run(attempt, RetryPolicy(max_retry_after=5.0), capped) == "ok"
    assert capped == [5.0]
    # Never shortened (an SCM's reset): a wait longer than the time left ends the request.
    refused: list[float] = []
    _, attempt = failing(Failure(3600.0))
    policy = RetryPolicy(max_retry_after=math.inf, max_elapsed=3000.0)
    with pytest.raises(GaveUp, match="waiting 3600s more would pass 3000s"):
        run(attempt, policy, refused, gave_up=lambda e, why: GaveUp(why))
    assert refused == []
