"""Inline SVG for the HTML run report: the timeline, the graph, bars and histograms.

Every function returns a string of SVG markup; every piece of text in it
(agent names, statuses, errors) is escaped here, so a name like
``<script>`` is drawn, never run. Colours come from the status, and an
unknown status (one a newer engine adds) gets a neutral colour and its own
name as label, so the report never needs to know every status in advance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from orchestrate.observe.summary import status_text

__all__ = ["Lane", "Segment", "bars", "dag", "gantt", "histogram", "meter", "status_colour"]

_STATUS_COLOURS = {
    "completed": "#2e7d32",
    "failed": "#c62828",
    "budget_exceeded": "#8e24aa",
    "cancelled": "#757575",
    "skipped": "#90a4ae",
    "waiting_approval": "#f9a825",
    "waiting": "#f9a825",
    "rejected": "#d84315",
    "running": "#1565c0",
    "pending": "#bdbdbd",
    "rate_limited": "#ef6c00",
    "partially_completed": "#f57f17",
    "invalid": "#6d4c41",
}
_SEGMENT_COLOURS = {
    "attempt": "#64b5f6",
    "call": "#1565c0",
    "tool": "#00897b",
    "wait": "#ef6c00",
    "backoff": "#e0e0e0",
    "approval": "#f9a825",
}


def status_colour(status: str | None) -> str:
    """The colour of a status; a neutral grey for one we do not know."""
    return _STATUS_COLOURS.get(status or "", "#607d8b")


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Segment:
    """A stretch of an agent's time: an attempt, a call, a wait, a back-off."""

    kind: str
    start: float
    end: float
    label: str = ""
    status: str | None = None  # an attempt's outcome


@dataclass
class Lane:
    """One agent's row in the timeline."""

    name: str
    status: str
    segments: list[Segment] = field(default_factory=list)
    markers: list[tuple[float, str, str]] = field(default_factory=list)  # (time, kind, label)


def _nice_step(span: float, target: int = 8) -> float:
    raw = span / target if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= mult * power:
            return mult * power
    return 10 * power


def _fmt_seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f}m"
    if value >= 1 or value == 0:
        return f"{value:g}s"
    return f"{value * 1000:.0f}ms"


def gantt(lanes: Sequence[Lane], total: float) -> str:
    """The timeline: a row per agent, attempts as bars, calls, waits and back-offs inside them."""
    label_w, width, row_h, top = 210, 1000, 24, 28
    plot_w = width - label_w - 20
    total = total if total > 0 else 1.0
    height = top + row_h * len(lanes) + 10
    scale = plot_w / total

    def x(t: float) -> float:
        return label_w + max(0.0, min(t, total)) * scale

    out = [
        f'<svg class="gantt" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="timeline of agents" xmlns="http://www.w3.org/2000/svg">'
    ]
    step = _nice_step(total)
    tick = 0.0
    while tick <= total + 1e-9:
        tx = x(tick)
        out.append(
            f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 8}" class="grid"/>'
            f'<text x="{tx:.1f}" y="{top - 10}" class="tick">{_e(_fmt_seconds(round(tick, 6)))}</text>'
        )
        tick += step
    for row, lane in enumerate(lanes):
        y = top + row * row_h
        out.append(
            f'<text x="{label_w - 8}" y="{y + 16}" class="lane-label" '
            f'fill="{status_colour(lane.status)}">{_e(_short(lane.name, 28))}'
            f"<title>{_e(lane.name)}: {_e(status_text(lane.status))}</title></text>"
        )
        for seg in lane.segments:
            x0, x1 = x(seg.start), x(seg.end)
            w = max(x1 - x0, 1.5)
            colour = _SEGMENT_COLOURS.get(seg.kind, "#9e9e9e")
            if seg.kind == "attempt" and seg.status:
                colour = status_colour(seg.status) if seg.status != "completed" else colour
            inset = {
                "attempt": (4, 16),
                "call": (8, 8),
                "tool": (8, 8),
                "wait": (6, 12),
                "backoff": (9, 6),
                "approval": (6, 12),
            }.get(seg.kind, (6, 12))
            out.append(
                f'<rect x="{x0:.1f}" y="{y + inset[0]}" width="{w:.1f}" height="{inset[1]}" '
                f'rx="2" fill="{colour}" class="seg seg-{_e(seg.kind)}">'
                f"<title>{_e(seg.label or seg.kind)} ({_e(_fmt_seconds(round(seg.end - seg.start, 4)))})"
                f"</title></rect>"
            )
        for when, kind, label in lane.markers:
            mx, my = x(when), y + 12
            colour = status_colour(kind) if kind in _STATUS_COLOURS else "#f9a825"
            out.append(
                f'<path d="M{mx:.1f} {my - 6} L{mx + 6:.1f} {my} L{mx:.1f} {my + 6} '
                f'L{mx - 6:.1f} {my} Z" fill="{colour}" stroke="#333" stroke-width="0.6">'
                f"<title>{_e(label)}</title></path>"
            )
    out.append("</svg>")
    return "".join(out)


_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _PAD = 200, 40, 50, 16, 10
_LANE_SPACING = 5  # pixels between two edges passing through one gap


def _depths(names: Sequence[str], deps: dict[str, list[str]]) -> dict[str, int]:
    """Each node's column: the length of the longest chain of dependencies above it."""
    depth: dict[str, int] = {}
    for name in names:  # iterative longest-path depth; the loader refused cycles
        stack = [name]
        while stack:
            top = stack[-1]
            if top in depth:
                stack.pop()
                continue
            pending = [d for d in deps[top] if d not in depth and d not in stack]
            if pending:
                stack.extend(pending)
                continue
            depth[top] = 1 + max((depth.get(d, 0) for d in deps[top]), default=-1)
            stack.pop()
    return depth


def _gap_choices(
    edges: Sequence[tuple[str, str]], depth: dict[str, int], row: dict[str, int], columns: dict[int, list[str]]
) -> dict[tuple[str, str], list[int]]:
    """For an edge that skips columns, the gap it passes through in each column it crosses.

    Gap g of a column lies above its box g (gap 0 above the first box, gap n below
    the last): a line through a gap meets no box of that column. The gap chosen is
    the one nearest the straight line from the edge's source to its target,
    counted in rows, so a long edge runs as straight as the boxes let it.
    """
    chosen: dict[tuple[str, str], list[int]] = {}
    for source, target in edges:
        c1, c2 = depth[source], depth[target]
        gaps = []
        for col in range(c1 + 1, c2):
            share = (col - c1) / (c2 - c1)
            ideal = row[source] + (row[target] - row[source]) * share + 0.5  # centre of a box, in rows
            gaps.append(min(range(len(columns[col]) + 1), key=lambda g: (abs(g - ideal), g)))
        chosen[(source, target)] = gaps
    return chosen


def dag(nodes: Sequence[tuple[str, str, Sequence[str]]]) -> str:
    """The workflow graph, left to right by depth, each node coloured by its status.

    `nodes` holds (name, status, dependencies) in file order. An edge between
    neighbouring columns is a curve in the channel between them; an edge that
    skips columns runs through a gap between the boxes of each column it
    crosses (a horizontal line) and curves in the channels, so no edge runs
    through a box. Gaps widen to hold the edges passing through them.
    """
    names = [n[0] for n in nodes]
    known = set(names)
    deps = {name: [d for d in ds if d in known] for name, _, ds in nodes}
    depth = _depths(names, deps)
    columns: dict[int, list[str]] = {}
    for name in names:
        columns.setdefault(depth[name], []).append(name)
    row = {name: i for members in columns.values() for i, name in enumerate(members)}
    edges = [(dep, name) for name in names for dep in deps[name]]
    chosen = _gap_choices(edges, depth, row, columns)
    lanes: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for (source, target), gaps in chosen.items():
        for col, gap in zip(range(depth[source] + 1, depth[target]), gaps, strict=True):
            lanes.setdefault((col, gap), []).append((source, target))
    crowd = max((len(v) for v in lanes.values()), default=0)
    gap_y = max(_GAP_Y, (crowd + 1) * _LANE_SPACING)

    def box_top(col: int, index: int) -> float:
        return _PAD + index * (_NODE_H + gap_y)

    def gap_lane(col: int, gap: int, index: int, count: int) -> float:
        above = box_top(col, gap) - gap_y  # the gap's top edge (above the first box for gap 0)
        return above + gap_y * (index + 1) / (count + 1)

    where = {name: (_PAD + depth[name] * (_NODE_W + _GAP_X), box_top(depth[name], row[name])) for name in names}
    lane_y: dict[tuple[str, str, int], float] = {}
    for (col, gap), through in lanes.items():
        # edges in one gap, ordered by where they come from then go to, so they cross as little as can be
        ordered = sorted(through, key=lambda e: (where[e[0]][1] + where[e[1]][1], where[e[0]][1]))
        for index, (source, target) in enumerate(ordered):
            lane_y[(source, target, col)] = gap_lane(col, gap, index, len(ordered))
    low = min([0.0, *(y - _PAD for y in lane_y.values())])  # a lane above the first boxes draws above 0
    high = max([y + _NODE_H + _PAD for _, y in where.values()] + [y + _PAD for y in lane_y.values()], default=100.0)
    width = _PAD * 2 + (max(columns) + 1) * (_NODE_W + _GAP_X) - _GAP_X if columns else 100
    height = high - low
    out = [
        f'<svg class="dag" viewBox="0 {low:.0f} {width} {height:.0f}" width="{min(width, 1000)}" role="img" '
        f'aria-label="workflow graph" xmlns="http://www.w3.org/2000/svg">'
    ]
    for source, target in edges:
        x1, y1 = where[source]
        x2, y2 = where[target]
        points = [(x1 + _NODE_W, y1 + _NODE_H / 2)]
        for col in range(depth[source] + 1, depth[target]):
            left = _PAD + col * (_NODE_W + _GAP_X)
            y = lane_y[(source, target, col)]
            points += [(left, y), (left + _NODE_W, y)]
        points.append((x2, y2 + _NODE_H / 2))
        d = [f"M{points[0][0]:.1f} {points[0][1]:.1f}"]
        for (ax, ay), (bx, by) in zip(points[::2], points[1::2], strict=True):
            mid = (ax + bx) / 2  # a curve inside the channel between two columns, then along a gap
            if d[-1][0] != "M":
                d.append(f"L{ax:.1f} {ay:.1f}")
            d.append(f"C{mid:.1f} {ay:.1f} {mid:.1f} {by:.1f} {bx:.1f} {by:.1f}")
        out.append(f'<path d="{" ".join(d)}" class="edge" data-from="{_e(source)}" data-to="{_e(target)}"/>')
    status_of = {name: status for name, status, _ in nodes}
    for name in names:
        nx, ny = where[name]
        colour = status_colour(status_of[name])
        out.append(
            f'<g data-node="{_e(name)}"><rect x="{nx}" y="{ny}" width="{_NODE_W}" height="{_NODE_H}" rx="6" '
            f'fill="{colour}" fill-opacity="0.15" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{nx + 8}" y="{ny + 17}" class="node-name">{_e(_short(name, 25))}</text>'
            f'<text x="{nx + 8}" y="{ny + 32}" class="node-status" fill="{colour}">'
            f"{_e(status_text(status_of[name]))}</text><title>{_e(name)}: {_e(status_text(status_of[name]))}</title></g>"
        )
    out.append("</svg>")
    return "".join(out)


def bars(rows: Sequence[tuple[str, float, str]]) -> str:
    """Horizontal bars: (label, value, shown value), scaled to the largest."""
    if not rows:
        return ""
    label_w, width, row_h, bar_w = 220, 900, 22, 400
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    height = row_h * len(rows) + 8
    out = [
        f'<svg class="bars" viewBox="0 0 {width} {height}" width="{width}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value, shown) in enumerate(rows):
        y = 4 + i * row_h
        w = max(value / top * bar_w, 1.0 if value > 0 else 0.0)
        out.append(
            f'<text x="{label_w - 8}" y="{y + 14}" class="bar-label">{_e(_short(label, 30))}'
            f"<title>{_e(label)}</title></text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="14" rx="2" class="bar"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" class="bar-value">{_e(shown)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def meter(value: float, limit: float | None, label: str) -> str:
    """One bar of `value` against `limit` (a budget), red past 90%."""
    width = 400
    share = min(value / limit, 1.0) if limit else 0.0
    colour = "#c62828" if share >= 0.9 else "#2e7d32"
    return (
        f'<svg class="meter" viewBox="0 0 {width} 18" width="{width}" role="img" '
        f'aria-label="{_e(label)}" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="2" width="{width}" height="14" rx="3" fill="#eeeeee"/>'
        f'<rect x="0" y="2" width="{share * width:.1f}" height="14" rx="3" fill="{colour}"/>'
        f"<title>{_e(label)}</title></svg>"
    )


def histogram(values: Sequence[float], *, bins: int = 20, fmt: Callable[[float], str] = str) -> str:
    """A histogram of `values` (cost or seconds per row), its axis labelled by `fmt`."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / span * bins), bins - 1)] += 1
    width, height, pad = 600, 140, 24
    bar_w = (width - 2 * pad) / bins
    peak = max(counts) or 1
    out = [
        f'<svg class="histogram" viewBox="0 0 {width} {height}" width="{width}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, count in enumerate(counts):
        h = count / peak * (height - 2 * pad)
        lo = low + span * i / bins
        out.append(
            f'<rect x="{pad + i * bar_w:.1f}" y="{height - pad - h:.1f}" width="{bar_w - 1:.1f}" '
            f'height="{h:.1f}" class="bar"><title>{count} rows from {_e(fmt(lo))}'
            f"</title></rect>"
        )
    out.append(
        f'<text x="{pad}" y="{height - 6}" class="tick" text-anchor="start">{_e(fmt(low))}</text>'
        f'<text x="{width - pad}" y="{height - 6}" class="tick" text-anchor="end">'
        f'{_e(fmt(high))}</text><text x="{pad}" y="14" class="tick" text-anchor="start">{peak} rows</text></svg>'
    )
    return "".join(out)
