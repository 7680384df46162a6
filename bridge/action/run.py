"""Run ``send`` or ``action``: gather the deploy, record it per entity, report the outcome."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from bridge.action.inputs import (
    TOKEN_VARIABLE,
    URL_VARIABLE,
    Inputs,
    Notice,
    inputs_from_action,
    parse_api_url,
)
from bridge.action.output import ActionReporter, Reporter
from bridge.action.resolve import (
    build_event,
    context_sha,
    read_event_file,
    resolve_entities,
    resolve_ref,
    resolve_sha,
    resolve_title,
)
from bridge.ci import detect
from bridge.ci.github import DEPLOY_EVENTS
from bridge.cortex import CortexClient
from bridge.cortex.transport import proxy_for
from bridge.errors import CortexError, CortexUnauthorized, InputError, InvalidDeploy, UsageError
from bridge.model import DeployEvent, DeployRef, check_deploy
from bridge.record.retrying import Outcome, record
from bridge.redact import spellings
from bridge.secrets import held, secret_from, secret_problem
from bridge.urls import CORTEX_URL

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# The input (``--flag`` / ``INPUT_*``) each field of the model's validation comes from.
INPUT_OF_FIELD = {
    "entity": "entity-tag",
    "repository": "repository",
    "deploy id": "deploy-id",
    "deployer name": "deployer-name",
    "deployer email": "deployer-email",
    "custom": "custom-data",
    "details": "custom-data",
}


class NotRecorded(Exception):
    """The step records nothing, and why: the event that started it says the deploy did not
    succeed. Not a failure: the step succeeds and says so."""


def prepare(
    inputs: Inputs, environ: Mapping[str, str], *, now: datetime
) -> tuple[DeployEvent, tuple[str, ...], list[Notice]]:
    """The deploy event, its entities, and notices about what could not be known; raises
    NotRecorded when the event that started the step is of a deploy that did not succeed."""
    payload: dict[str, Any] = {}
    notices = []
    if environ.get("GITHUB_ACTIONS") == "true":
        payload, unread = read_event_file(environ.get("GITHUB_EVENT_PATH"))
        if unread is not None and environ.get("GITHUB_EVENT_NAME") in DEPLOY_EVENTS:
            # The deploy to record is the event's: never the step's own run in its place.
            raise UsageError(f"GITHUB_EVENT_PATH: {unread}")
        if unread is not None:
            notices.append(Notice("GITHUB_EVENT_PATH", f"{unread}; the event's details unused"))
    ctx = detect(environ, payload)
    if ctx.not_recorded is not None:  # before anything else is read or judged: nothing to record
        raise NotRecorded(ctx.not_recorded)
    entities = resolve_entities(inputs, ctx)
    sha = resolve_sha(inputs, ctx)
    ref = resolve_ref(inputs, ctx)
    if ref is None:
        # Not the time: a key that changes on every run would find nothing either.
        notices.append(
            Notice("deploy-id", "no build id here, so running this again records the deploy again")
        )
        ref = DeployRef("once", uuid.uuid4().hex)
    event = build_event(
        inputs, ctx, now=now, ref=ref, sha=sha, title=resolve_title(inputs, ctx, sha)
    )
    try:
        # The model's one validation, as every face: no field may hold a token this step has.
        held_here = (*inputs.secrets(), *held(environ, lenient=True))
        checked = check_deploy(event, entities, spelled=spellings(held_here))
    except InvalidDeploy as exc:
        raise _named(exc, inputs) from None
    event = checked.event
    notices.extend(Notice(INPUT_OF_FIELD.get(f, f), text) for f, text in checked.notes)
    if ctx.sha and not inputs.sha.strip() and context_sha(ctx) is None:
        notices.append(Notice("sha", f"the CI's commit {ctx.sha!r} is not a hex sha; not used"))
    if not event.environment:
        notices.append(Notice("environment", "no environment recorded"))
    if not sha:
        notices.append(Notice("sha", "no commit sha recorded"))
    elif len(sha) < 40:
        notices.append(Notice("sha", f"{sha!r} is abbreviated and git could not expand it"))
    return event, entities, notices


def _named(exc: InvalidDeploy, inputs: Inputs) -> UsageError:
    """The model's refusal, naming the input that gave the value; a value the CI's environment
    gave (no input of it, or none given) is said to be the CI's, never a flag not given."""
    name = INPUT_OF_FIELD.get(exc.field, exc.field)
    given = getattr(inputs, name.replace("-", "_"), "")
    if name == "entity-tag" or (isinstance(given, str) and given.strip()):
        return InputError(name, str(exc))
    return UsageError(f"{exc} (as the CI's environment gives it)")


def run_step(
    inputs: Inputs,
    environ: Mapping[str, str],
    reporter: Reporter,
    *,
    now: datetime | None = None,
    timeout: float = 10.0,
) -> int:
    """Record the deploy for every entity; the exit code says how it went."""
    # Whatever is refused below shows no secret of the environment (a CI variable that held
    # the token, given to the wrong flag), the token's own read or not.
    reporter.hold(held(environ, lenient=True))
    try:
        event, entities, notices = prepare(inputs, environ, now=now or datetime.now(timezone.utc))
        token = inputs.cortex_api_token or secret_from(environ, TOKEN_VARIABLE)
        problem = secret_problem(token)  # the input's (the variable's was refused, naming it)
        if problem is not None:
            raise InputError("cortex-api-token", problem)
        reporter.add_secret(token)
        if not token and not inputs.dry_run:
            raise InputError("cortex-api-token", "no Cortex API token given")
        api_url = cortex_url(inputs, environ)
    except UsageError as exc:
        return _fail(reporter, reporter.describe(exc), EXIT_USAGE, fail=inputs.fail_on_error)
    except NotRecorded as exc:
        reporter.not_recorded(str(exc))
        return EXIT_OK
    for notice in notices:
        reporter.notice(notice)
    client = None
    if token:
        client = CortexClient(
            api_url,
            token,
            timeout=timeout,
            proxy=proxy_for(api_url),
        )

    def retrying(exc: CortexError, delay: float) -> None:
        reporter.info(f"{exc}; retrying in {delay:.1f}s")

    try:
        outcomes = [
            record(client, event, entity, dry_run=inputs.dry_run, on_retry=retrying)
            for entity in entities
        ]
    finally:
        if client is not None:
            client.close()
    # A token Cortex refuses is named where it came from: the input, else the variable.
    token_name = reporter.spell("cortex-api-token") if inputs.cortex_api_token else TOKEN_VARIABLE
    return _report(reporter, outcomes, inputs, token_name=token_name)


def run_action(environ: Mapping[str, str]) -> int:
    """The Action: its inputs from ``INPUT_*``, then the step, reported as workflow commands."""
    try:
        inputs = inputs_from_action(environ)
    except UsageError as exc:
        reporter = ActionReporter((), environ)
        reporter.error(reporter.describe(exc))
        return EXIT_USAGE
    return run_step(inputs, environ, ActionReporter(inputs.secrets(), environ))


def cortex_url(inputs: Inputs, environ: Mapping[str, str]) -> str:
    """Cortex's base URL: the cortex-api-url input, else CORTEX_API_URL, else the default."""
    if inputs.cortex_api_url.strip():
        return parse_api_url("cortex-api-url", inputs.cortex_api_url)
    try:
        return parse_api_url(URL_VARIABLE, environ.get(URL_VARIABLE, "") or CORTEX_URL)
    except InputError as exc:
        raise UsageError(str(exc)) from None


def _report(reporter: Reporter, outcomes: list[Outcome], inputs: Inputs, *, token_name: str) -> int:
    for o in outcomes:
        if o.ok:
            verb = (
                "already recorded"
                if o.existing
                else ("would record" if inputs.dry_run else "recorded")
            )
            where = f" in {o.payload['environment']}" if o.payload.get("environment") else ""
            done = f" as {o.uuid}" if o.uuid else ""
            reporter.info(f"{verb} {o.type.value} of {o.entity}{where}{done}")
            if o.retyped:  # a type changing in Cortex is never silent (docs/delivery.md)
                later = ", ".join(o.retyped)
                reporter.info(f"typed again, as this deploy came before them: {later}")
    reporter.finish(outcomes, dry_run=inputs.dry_run)
    failed = [o for o in outcomes if o.error is not None]
    code = EXIT_OK
    for o in failed:
        named = f"{token_name}: " if isinstance(o.error, CortexUnauthorized) else ""
        message = f"{o.entity}: {named}{o.error}"
        code = _fail(reporter, message, EXIT_FAILED, fail=inputs.fail_on_error)
    return code


def _fail(reporter: Reporter, message: str, code: int, *, fail: bool) -> int:
    if fail:
        reporter.error(message)
        return code
    reporter.warning(f"{message} (not failing: fail-on-error is off)")
    return EXIT_OK


__all__ = ["prepare", "run_action", "run_step"]
