"""Run ``send`` or ``action``: gather the deploy, record it per entity, report the outcome."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, TextIO

from bridge import workflow_commands as wc
from bridge.ci import detect
from bridge.cortex import CortexClient
from bridge.cortex.client import DEFAULT_URL
from bridge.cortex.transport import proxy_for
from bridge.errors import CortexError, InputError, UsageError
from bridge.model import DeployEvent, DeployRef
from bridge.recorder import Outcome, record
from bridge.redact import redact
from bridge.send import (
    Inputs,
    Notice,
    build_event,
    context_sha,
    parse_url,
    read_event_file,
    resolve_entities,
    resolve_ref,
    resolve_sha,
    resolve_title,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def secret_from(environ: Mapping[str, str], name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE``."""
    value = environ.get(name, "").strip()
    if value:
        return value
    path = environ.get(f"{name}_FILE", "").strip()
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"{name}_FILE: cannot read {path!r} ({exc.strerror})") from None


def prepare(
    inputs: Inputs, environ: Mapping[str, str], *, now: datetime
) -> tuple[DeployEvent, tuple[str, ...], list[Notice]]:
    """The deploy event, its entities, and notices about what could not be known."""
    payload = {}
    if environ.get("GITHUB_ACTIONS") == "true":
        payload = read_event_file(environ.get("GITHUB_EVENT_PATH"))
    ctx = detect(environ, payload)
    entities = resolve_entities(inputs, ctx)
    sha = resolve_sha(inputs, ctx)
    notices = []
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
    if ctx.sha and not inputs.sha.strip() and context_sha(ctx) is None:
        notices.append(Notice("sha", f"the CI's commit {ctx.sha!r} is not a hex sha; not used"))
    if not event.environment:
        notices.append(Notice("environment", "no environment recorded"))
    if not sha:
        notices.append(Notice("sha", "no commit sha recorded"))
    elif len(sha) < 40:
        notices.append(Notice("sha", f"{sha!r} is abbreviated and git could not expand it"))
    return event, entities, notices


class Reporter:
    """Plain output for ``send``: uuids on stdout, one-line messages on stderr."""

    # Inputs that ``send`` takes from the environment only, never from a flag.
    ENVIRONMENT_ONLY: ClassVar[Mapping[str, str]] = {"cortex-api-token": "CORTEX_API_TOKEN"}

    def __init__(
        self, secrets: tuple[str, ...], *, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.secrets = tuple(s for s in secrets if s)
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def add_secret(self, secret: str) -> None:
        """Never print ``secret`` from now on."""
        if secret and secret not in self.secrets:
            self.secrets = (*self.secrets, secret)

    def redact(self, text: str) -> str:
        """The text with every secret replaced by ***."""
        return redact(text, self.secrets)

    def spell(self, name: str) -> str:
        """How this face names an input: ``send``'s flag (or environment variable)."""
        return self.ENVIRONMENT_ONLY.get(name, f"--{name}")

    def describe(self, exc: UsageError) -> str:
        """The error's message, naming the input as this face does."""
        if isinstance(exc, InputError):
            return f"{self.spell(exc.name)}: {exc.problem}"
        return str(exc)

    def notice(self, notice: Notice) -> None:
        """A warning that says which input would fix it (where this face has that input)."""
        fix = f": set {self.spell(notice.name)}" if self.takes(notice.name) else ""
        self.warning(f"{notice.text}{fix}")

    def takes(self, name: str) -> bool:
        """Whether this face has the input ``name`` (``send`` has them all)."""
        return True

    def error(self, message: str) -> None:
        """A failure that decides the exit code."""
        self.line(f"error: {message}")

    def warning(self, message: str) -> None:
        """Something the user should fix, or a failure that was told not to fail the step."""
        self.line(f"warning: {message}")

    def info(self, message: str) -> None:
        """Progress."""
        self.line(message)

    def line(self, text: str) -> None:
        """One log line on stderr, secrets redacted, kept on one line: a CI that reads
        commands from the log (GitHub's runner does, for `send` in a run step too) sees no
        command start inside a value (Cortex's error text included)."""
        print(wc.plain_line(self.redact(text)), file=self.err)

    def finish(self, outcomes: list[Outcome], *, dry_run: bool) -> None:
        """The result: uuids (or, in a dry run, the payloads) on stdout."""
        for outcome in outcomes:
            if dry_run:
                print(self.redact(json.dumps(outcome.payload, indent=2)), file=self.out)
            elif outcome.uuid:
                print(outcome.uuid, file=self.out)


class ActionReporter(Reporter):
    """GitHub Actions output: annotations, masked token, step outputs and summary."""

    def __init__(
        self, secrets: tuple[str, ...], environ: Mapping[str, str], *, out: TextIO | None = None
    ) -> None:
        out = out or sys.stdout
        super().__init__((), out=out, err=out)
        self.environ = environ
        for secret in secrets:
            self.add_secret(secret)

    def spell(self, name: str) -> str:
        """How the Action names an input."""
        return f"the {name} input"

    def takes(self, name: str) -> bool:
        """The Action has no deploy-id input: its run (or deployment) names the deploy."""
        return name != "deploy-id"

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` in the runner's log too (``::add-mask::``)."""
        if secret and secret not in self.secrets:
            print(wc.add_mask(secret), file=self.out)
        super().add_secret(secret)

    def error(self, message: str) -> None:
        """An ``::error::`` annotation."""
        print(wc.annotation("error", self.redact(message), title="Cortex deploy"), file=self.out)

    def warning(self, message: str) -> None:
        """A ``::warning::`` annotation."""
        print(wc.annotation("warning", self.redact(message), title="Cortex deploy"), file=self.out)

    def finish(self, outcomes: list[Outcome], *, dry_run: bool) -> None:
        """Write ``deploy-uuid`` and ``payload`` outputs and the step summary table."""
        payloads = [o.payload for o in outcomes]
        payload = payloads[0] if len(payloads) == 1 else payloads
        outputs = {
            "deploy-uuid": ",".join(o.uuid for o in outcomes if o.uuid),
            "payload": self.redact(json.dumps(payload)),
        }
        if dry_run:
            print(self.redact(json.dumps(payload, indent=2)), file=self.out)
        if self.environ.get("GITHUB_OUTPUT"):
            wc.write_outputs(self.environ["GITHUB_OUTPUT"], outputs)
        if self.environ.get("GITHUB_STEP_SUMMARY"):
            wc.append_summary(
                self.environ["GITHUB_STEP_SUMMARY"], self.redact(summary(outcomes, dry_run=dry_run))
            )


def summary(outcomes: list[Outcome], *, dry_run: bool) -> str:
    """The step summary: one row per entity."""
    rows = []
    for o in outcomes:
        if o.error is not None:
            result = f"failed: {o.error}"
        elif dry_run:
            result = "dry run: not sent"
        else:
            result = f"{'already recorded' if o.existing else 'recorded'} `{o.uuid}`"
        sha = o.payload.get("sha", "")
        rows.append(
            [
                o.entity,
                o.payload.get("environment", ""),
                o.type.value,
                f"`{sha[:12]}`" if sha else "",
                result,
            ]
        )
    table = wc.markdown_table(["Entity", "Environment", "Type", "Commit", "Cortex"], rows)
    title = outcomes[0].payload.get("title", "") if outcomes else ""
    return f"### Cortex deploy{'s' if len(outcomes) > 1 else ''}: {title}\n\n{table}"


def run_step(
    inputs: Inputs,
    environ: Mapping[str, str],
    reporter: Reporter,
    *,
    now: datetime | None = None,
    timeout: float = 10.0,
) -> int:
    """Record the deploy for every entity; the exit code says how it went."""
    try:
        event, entities, notices = prepare(inputs, environ, now=now or datetime.now(timezone.utc))
        token = inputs.token or secret_from(environ, "CORTEX_API_TOKEN")
        reporter.add_secret(token)
        if not token and not inputs.dry_run:
            raise InputError("cortex-api-token", "no Cortex API token given")
        api_url = cortex_url(inputs, environ)
    except UsageError as exc:
        return _fail(reporter, reporter.describe(exc), EXIT_USAGE, fail=inputs.fail_on_error)
    for notice in notices:
        reporter.notice(notice)
    client = None
    if token:
        client = CortexClient(
            api_url,
            token,
            timeout=timeout,
            proxy=proxy_for(api_url, environ),
            on_retry=lambda exc, delay: reporter.info(f"retrying in {delay:.1f}s: {exc}"),
        )
    try:
        outcomes = [record(client, event, entity, dry_run=inputs.dry_run) for entity in entities]
    finally:
        if client is not None:
            client.close()
    return _report(reporter, outcomes, inputs)


def cortex_url(inputs: Inputs, environ: Mapping[str, str]) -> str:
    """Cortex's base URL: the cortex-api-url input, else CORTEX_API_URL, else the default."""
    if inputs.api_url.strip():
        return parse_url("cortex-api-url", inputs.api_url)
    try:
        return parse_url("CORTEX_API_URL", environ.get("CORTEX_API_URL", "") or DEFAULT_URL)
    except InputError as exc:
        raise UsageError(str(exc)) from None


def _report(reporter: Reporter, outcomes: list[Outcome], inputs: Inputs) -> int:
    for o in outcomes:
        if o.ok:
            verb = (
                "would record"
                if inputs.dry_run
                else ("already recorded" if o.existing else "recorded")
            )
            where = f" in {o.payload['environment']}" if o.payload.get("environment") else ""
            done = f" as {o.uuid}" if o.uuid else ""
            reporter.info(f"{verb} {o.type.value} of {o.entity}{where}{done}")
    reporter.finish(outcomes, dry_run=inputs.dry_run)
    failed = [o for o in outcomes if o.error is not None]
    code = EXIT_OK
    for o in failed:
        code = _fail(reporter, f"{o.entity}: {o.error}", EXIT_FAILED, fail=inputs.fail_on_error)
    return code


def _fail(reporter: Reporter, message: str, code: int, *, fail: bool) -> int:
    if fail:
        reporter.error(message)
        return code
    reporter.warning(f"{message} (not failing: fail-on-error is off)")
    return EXIT_OK


__all__ = ["ActionReporter", "CortexError", "Reporter", "run_step"]
