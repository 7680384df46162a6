"""The console's pages: thin views over the store's reads (bridge/store/browse.py, journal.py).

Each view reads its query string, asks the store, and renders a template; the two that write
(retry one, retry several) call the same ``store.retry`` as the admin API and wake the worker.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from bridge import views
from bridge.console import charts
from bridge.mapping import build_deploy_request
from bridge.model import DeployType, escape_controls, event_from_dict, has_control
from bridge.redact import masked
from bridge.store import DEAD, STATUSES
from bridge.store.browse import Filters

if TYPE_CHECKING:
    from bridge.app import Runtime
    from bridge.store import Delivery

PAGE = 50
# Answers the turned-away page can be narrowed to.
ANSWERS = ("ignored", "rejected", "unauthorized", "unverified")
FILTERS = ("status", "source", "repository", "entity", "environment", "q")


def when(moment: datetime | str | None) -> str:
    """A time as the console shows it: UTC, to the second (a dash for none)."""
    if not moment:
        return "\u2013"  # an en dash, as the pages show for none
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def add_pages(console: Blueprint, rt: Runtime) -> None:
    """Add every page of the console to ``console``."""
    console.add_app_template_filter(when, "when")

    # "/console" too, answered here: the redirect Werkzeug adds a slash with names the
    # request's Host header, which a shared cache could then keep for everyone.
    @console.get("/", strict_slashes=False)
    def home() -> Response:
        return redirect(url_for("console.deliveries"), 303)  # type: ignore[return-value]

    @console.get("/deliveries")
    def deliveries() -> str:
        chosen = {name: _filter(name) for name in FILTERS}
        if chosen["status"] and chosen["status"] not in STATUSES:
            chosen["status"] = ""
        filters = Filters(
            status=chosen["status"],
            source=chosen["source"],
            repository=chosen["repository"],
            entity=chosen["entity"],
            environment=chosen["environment"],
            search=chosen["q"],
        )
        after = views.delivery_id(request.args.get("after", ""))
        rows, cursor = rt.store.browse.deliveries(filters, limit=PAGE, after=after)
        kept = {k: v for k, v in chosen.items() if v}
        return render_template(
            "console/deliveries.html",
            page="deliveries",
            rows=[_row(d, rt.spelled) for d in rows],
            chosen=chosen,
            statuses=STATUSES,
            sources=_sources(rt),
            next_url=(
                url_for("console.deliveries") + "?" + urlencode({**kept, "after": cursor})
                if cursor is not None
                else None
            ),
            first_url=(
                url_for("console.deliveries") + "?" + urlencode(kept) if after is not None else None
            ),
        )

    spelled = rt.spelled

    @console.get("/deliveries/<raw_id>")
    def delivery(raw_id: str) -> str:
        found = _find(rt, raw_id)
        return render_template(
            "console/delivery.html",
            page="deliveries",
            d=_row(found, spelled),
            **_shown(found, spelled),
            attempts=_plain(rt.store.browse.attempts(found.id), spelled),
            retryable=found.status in (DEAD, "queued", "retrying"),
            retried=request.args.get("retried") == "1",
            not_retried=request.args.get("retried") == "0",
        )

    @console.post("/deliveries/<raw_id>/retry")
    def retry(raw_id: str) -> Response:
        found = _find(rt, raw_id)
        done = rt.store.retry(found.id, now=rt.clock())
        if done:
            rt.wake.set()
        target = url_for("console.delivery", raw_id=found.id) + f"?retried={int(done)}"
        return redirect(target, 303)  # type: ignore[return-value]

    @console.get("/dead")
    def dead() -> str:
        after = views.delivery_id(request.args.get("after", ""))
        rows, cursor = rt.store.browse.deliveries(Filters(status=DEAD), limit=PAGE, after=after)
        return render_template(
            "console/dead.html",
            page="dead",
            rows=[_row(d, rt.spelled) for d in rows],
            retried=_count("retried"),
            skipped=_count("skipped"),
            next_url=url_for("console.dead", after=cursor) if cursor is not None else None,
        )

    @console.post("/dead/retry")
    def retry_dead() -> Response:
        only = request.form.get("only")
        raw = [only] if only else request.form.getlist("id")
        ids = {n for n in (views.delivery_id(r) for r in raw[: views.MAX_PAGE]) if n is not None}
        retried = sum(1 for n in sorted(ids) if rt.store.retry(n, now=rt.clock()))
        if retried:
            rt.wake.set()
        query = urlencode({"retried": retried, "skipped": len(ids) - retried})
        return redirect(url_for("console.dead") + "?" + query, 303)  # type: ignore[return-value]

    @console.get("/turned-away")
    def turned_away() -> str:
        rt.turned_away.flush()  # this process's newest notes, before reading
        answer = request.args.get("answer", "")
        answer = answer if answer in ANSWERS else ""
        source = _filter("source")
        delivery = _filter("delivery")
        rows = rt.store.journal.turned_away(
            limit=200, answer=answer or None, source=source or None, delivery=delivery or None
        )
        return render_template(
            "console/turned_away.html",
            page="turned_away",
            rows=_plain(rows, rt.spelled),
            answers=ANSWERS,
            chosen={"answer": answer, "source": source, "delivery": delivery},
            sources=_sources(rt),
        )

    @console.get("/entities")
    def entities() -> str:
        groups: dict[tuple[str, str], list[Any]] = {}
        for deploy in _plain(rt.store.browse.last_deploys(), rt.spelled):
            groups.setdefault((deploy.entity, deploy.environment), []).append(deploy)
        return render_template(
            "console/entities.html",
            page="entities",
            groups=groups,
            link=_deliveries_link,
        )

    @console.get("/charts")
    def chart_page() -> str:
        now = rt.clock()
        start = now - timedelta(hours=charts.HOURS)
        data = charts.hours(rt.store.browse.received_since(start), now, STATUSES)
        return render_template(
            "console/charts.html",
            page="charts",
            hours=data,
            outcomes=STATUSES,
            colours=charts.COLOURS,
            deliveries_svg=charts.deliveries_chart(data, STATUSES),
            latency_svg=charts.latency_chart(data),
        )

    @console.get("/reconcile")
    def reconcile() -> str:
        return render_template(
            "console/reconcile.html",
            page="reconcile",
            runs=_plain(rt.store.journal.reconcile_runs(limit=50), rt.spelled),
            enabled=rt.config.sync.enabled,
        )


def _find(rt: Runtime, raw: str) -> Delivery:
    number = views.delivery_id(raw)
    found = rt.store.get(number) if number is not None else None
    if found is None:
        abort(404)
    return found


def _sources(rt: Runtime) -> list[str]:
    from bridge.sources import SOURCES

    return sorted(SOURCES)


def _deliveries_link(**filters: str) -> str:
    return url_for("console.deliveries") + "?" + urlencode(filters)


def _row(d: Delivery, spelled: tuple[str, ...]) -> dict[str, Any]:
    shown = views.show_delivery(d, full=True, spelled=spelled)
    shown["sha_short"] = (shown["sha"] or "")[:12]
    return shown


def _shown(d: Delivery, spelled: tuple[str, ...]) -> dict[str, Any]:
    """What a delivery's page shows of its webhook, masked as its stored copy is once decoded
    and written again: the body pretty-printed (where a secret, or a URL's password, spelled
    with JSON escapes would read in clear), the event as read, the requests sent."""
    received = _received(d)
    if received is not None:
        received["pretty"] = masked(received["pretty"], spelled)
    event_json = json.dumps(d.payload.get("event", {}), indent=2, sort_keys=True)
    return {
        "received": received,
        "event_json": masked(event_json, spelled),
        # Its entities, results, paths and bodies (JSON: no control character shows raw).
        "sent": masked(_sent(d), spelled),
    }


def _received(d: Delivery) -> dict[str, Any] | None:
    """The webhook as received (kept redacted since schema 4), its body pretty when JSON."""
    if not d.received:
        return None
    kept: dict[str, Any] = json.loads(d.received)
    try:
        kept["pretty"] = json.dumps(json.loads(kept["body"]), indent=2, sort_keys=True)
    except (ValueError, RecursionError):  # not JSON, cut, or nested past what json takes
        kept["pretty"] = kept["body"]
    return kept


def _sent(d: Delivery) -> list[dict[str, Any]]:
    """Per entity: what the bridge did in Cortex, and the request body it sent.

    The body is built again from the stored event by the same mapping the worker used
    (bridge/mapping.py), with the deploy type the result kept.
    """
    event = event_from_dict(d.payload["event"])
    sent = []
    for entity in d.payload.get("entities", []):
        result = d.results.get(entity, {}) if isinstance(d.results, dict) else {}
        line: dict[str, Any] = {"entity": entity, "result": result, "request": None}
        kind = result.get("type") if isinstance(result, dict) else None
        action = result.get("action") if isinstance(result, dict) else None
        if kind in DeployType._value2member_map_ and action in ("created", "updated"):
            path = f"/api/v1/catalog/{quote(entity, safe='')}/deploys"
            method = "POST" if action == "created" else "PUT"
            if method == "PUT":
                path += f"/{quote(str(result.get('uuid', '')), safe='')}"
            body = build_deploy_request(event, entity, DeployType(kind))
            line["request"] = {
                "method": method,
                "path": path,
                "body": json.dumps(body, indent=2, sort_keys=True),
            }
        sent.append(line)
    return sent


Row = TypeVar("Row")


def _plain(rows: list[Row], spelled: tuple[str, ...]) -> list[Row]:
    """Rows read from the store (dataclasses) as a page shows them: every text in them
    (:func:`_text`)."""
    return [
        dataclasses.replace(
            row,  # type: ignore[type-var]
            **{
                f.name: _text(getattr(row, f.name), spelled)
                for f in dataclasses.fields(row)  # type: ignore[arg-type]
                if isinstance(getattr(row, f.name), (str, dict, list))
            },
        )
        for row in rows
    ]


def _text(value: Any, spelled: tuple[str, ...]) -> Any:
    """``value`` masked as the admin API masks it (the secrets held, a URL's password), its
    control characters spelled as escapes: a sender's or an SCM's text (a delivery id, an
    entity, an error) can neither show a secret nor turn the page's text around (U+202E)."""
    value = masked(value, spelled)
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {k: _text(v, ()) for k, v in value.items()}
    if isinstance(value, list):
        return [_text(item, ()) for item in value]
    return value


def _count(name: str) -> int | None:
    """A count the page was sent back with (``retried``, ``skipped``): a number, or none."""
    value = request.args.get(name, "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 9 else None


def _filter(name: str) -> str:
    """A filter's text from the query: stripped, its first 200 characters; a control
    character (a NUL no database keeps) is a 400 naming the filter."""
    value = request.args.get(name, "").strip()[:200]
    if has_control(value):
        abort(400, description=f"the {name} filter holds a control character")
    return value
