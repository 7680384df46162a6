"""The console's charts, drawn on the server as SVG from rows the store read. Pure.

Deliveries per hour by outcome (stacked bars), and delivery latency per hour (p50 and p99,
two lines), over the last 24 hours. Each chart comes with the table of its numbers, which
the page shows beside it, for screen readers and for reading exact values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape

HOURS = 24
# Outcome colours, darker than the page so each keeps 3:1 contrast against it (WCAG 1.4.11).
COLOURS = {
    "delivered": "#1a7f37",
    "queued": "#0550ae",
    "delivering": "#6639ba",
    "retrying": "#9a6700",
    "dead": "#cf222e",
}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 240, 48, 28, 12


@dataclass(frozen=True)
class Hour:
    """One hour of the chart: deliveries received per outcome, and latency percentiles."""

    start: datetime
    counts: dict[str, int]
    p50: float | None  # seconds from received to delivered, of those delivered
    p99: float | None

    @property
    def total(self) -> int:
        """Deliveries received in the hour."""
        return sum(self.counts.values())


def hours(
    rows: Sequence[tuple[datetime, str, datetime | None]], now: datetime, outcomes: Sequence[str]
) -> list[Hour]:
    """The last HOURS hours (oldest first) from (received_at, status, delivered_at) rows."""
    last = now.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    starts = [last - timedelta(hours=n) for n in range(HOURS - 1, -1, -1)]
    counts = {start: dict.fromkeys(outcomes, 0) for start in starts}
    waits: dict[datetime, list[float]] = {start: [] for start in starts}
    for received, status, delivered in rows:
        start = received.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        if start not in counts:
            continue
        counts[start][status] = counts[start].get(status, 0) + 1
        if delivered is not None:
            waits[start].append((delivered - received).total_seconds())
    return [Hour(s, counts[s], percentile(waits[s], 50), percentile(waits[s], 99)) for s in starts]


def percentile(values: list[float], p: float) -> float | None:
    """The ``p``th percentile (nearest rank) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _label(hour: Hour) -> str:
    return hour.start.strftime("%H:00")


def _axis(top: float, unit: str) -> list[str]:
    """The y axis: four grid lines with their values."""
    parts = []
    for n in range(5):
        value = top * n / 4
        y = HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * n / 4
        shown = f"{value:.0f}" if top >= 4 or value == 0 else f"{value:.2f}"
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{shown}{unit}</text>'
        )
    return parts


def _svg(title: str, parts: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg" class="chart"><title>{escape(title)}</title>'
        + "".join(parts)
        + "</svg>"
    )


def _hour_labels(data: Sequence[Hour], step: float) -> list[str]:
    return [
        f'<text x="{LEFT + step * (i + 0.5):.1f}" y="{HEIGHT - 8}" '
        f'text-anchor="middle">{_label(hour)}</text>'
        for i, hour in enumerate(data)
        if i % 3 == 0
    ]


def deliveries_chart(data: Sequence[Hour], outcomes: Sequence[str]) -> str:
    """Stacked bars: deliveries received per hour, by their outcome now."""
    top = max([hour.total for hour in data] + [4])
    step = (WIDTH - LEFT) / max(len(data), 1)
    scale = (HEIGHT - BOTTOM - TOP) / top
    parts = _axis(top, "")
    for i, hour in enumerate(data):
        y = float(HEIGHT - BOTTOM)
        for outcome in outcomes:
            n = hour.counts.get(outcome, 0)
            if not n:
                continue
            height = n * scale
            y -= height
            parts.append(
                f'<rect x="{LEFT + step * i + 2:.1f}" y="{y:.1f}" width="{step - 4:.1f}" '
                f'height="{height:.1f}" fill="{COLOURS.get(outcome, "#57606a")}">'
                f"<title>{_label(hour)}: {n} {escape(outcome)}</title></rect>"
            )
    parts += _hour_labels(data, step)
    return _svg("Deliveries per hour by outcome, last 24 hours", parts)


def latency_chart(data: Sequence[Hour]) -> str:
    """Two lines: p50 and p99 of the seconds from received to delivered, per hour."""
    values = [v for hour in data for v in (hour.p50, hour.p99) if v is not None]
    top = max([*values, 1.0])
    step = (WIDTH - LEFT) / max(len(data), 1)
    scale = (HEIGHT - BOTTOM - TOP) / top
    parts = _axis(top, "s")
    for name, colour, dash in (
        ("p50", "#0550ae", ""),
        ("p99", "#cf222e", ' stroke-dasharray="6 4"'),
    ):
        points = [
            f"{LEFT + step * (i + 0.5):.1f},{HEIGHT - BOTTOM - value * scale:.1f}"
            for i, hour in enumerate(data)
            if (value := getattr(hour, name)) is not None
        ]
        if points:
            parts.append(
                f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                f'stroke-width="2"{dash}><title>{name}</title></polyline>'
            )
            parts += [
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{colour}"/>'
                for p in points
            ]
    parts += _hour_labels(data, step)
    return _svg("Delivery latency per hour, p50 and p99, last 24 hours", parts)
