"""The report's workflow graph: no edge runs through a box that is not one of its two ends.

Checked geometrically on the SVG itself: every edge path is flattened into
short segments (its curves sampled), and each segment is clipped against each
box but the edge's source and target.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrate.observe.html_svg import dag
from orchestrate.workflow.loader import load_workflow
from tests import cli
from tests.chromium import Browser, RecordingProxy, chromium_path

ROOT = Path(__file__).resolve().parents[1]
SVG = "{http://www.w3.org/2000/svg}"
Point = tuple[float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def _segments(d: str) -> list[tuple[Point, Point]]:
    """A path's M, L and C commands as straight segments (each curve sampled 48 times)."""
    tokens = re.findall(r"[MLC]|-?\d+(?:\.\d+)?", d)
    segments: list[tuple[Point, Point]] = []
    here: Point = (0.0, 0.0)
    i = 0
    while i < len(tokens):
        command = tokens[i]
        i += 1
        if command == "M":
            here = (float(tokens[i]), float(tokens[i + 1]))
            i += 2
        elif command == "L":
            there = (float(tokens[i]), float(tokens[i + 1]))
            segments.append((here, there))
            here, i = there, i + 2
        elif command == "C":
            c1, c2, end = ((float(tokens[i + k]), float(tokens[i + k + 1])) for k in (0, 2, 4))
            previous = here
            for step in range(1, 49):
                t = step / 48
                u = 1 - t
                point = (
                    u**3 * here[0] + 3 * u * u * t * c1[0] + 3 * u * t * t * c2[0] + t**3 * end[0],
                    u**3 * here[1] + 3 * u * u * t * c1[1] + 3 * u * t * t * c2[1] + t**3 * end[1],
                )
                segments.append((previous, point))
                previous = point
            here, i = end, i + 6
        else:  # pragma: no cover - the tokenizer only yields M, L, C and numbers
            raise AssertionError(command)
    return segments


def _crosses(segment: tuple[Point, Point], box: Box) -> bool:
    """True when the segment has a point inside the box (Liang-Barsky clipping)."""
    (x0, y0), (x1, y1) = segment
    dx, dy = x1 - x0, y1 - y0
    low, high = 0.0, 1.0
    for p, q in ((-dx, x0 - box[0]), (dx, box[2] - x0), (-dy, y0 - box[1]), (dy, box[3] - y0)):
        if p == 0:
            if q < 0:
                return False
            continue
        r = q / p
        if p < 0:
            low = max(low, r)
        else:
            high = min(high, r)
        if low > high:
            return False
    return True


def _through_boxes(svg: str) -> list[str]:
    """Every (edge, box) pair where the edge enters a box not at either of its ends."""
    root = ET.fromstring(svg)
    boxes: dict[str, Box] = {}
    for group in root.iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
        w, h = float(rect.get("width", 0)), float(rect.get("height", 0))
        boxes[str(group.get("data-node"))] = (x - 1, y - 1, x + w + 1, y + h + 1)  # the stroke counts
    found = []
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    for edge in edges:
        ends = {edge.get("data-from"), edge.get("data-to")}
        for segment in _segments(str(edge.get("d"))):
            for name, box in boxes.items():
                if name not in ends and _crosses(segment, box):
                    found.append(f"{edge.get('data-from')}->{edge.get('data-to')} through {name}")
    return sorted(set(found))


def _edge_count(svg: str) -> int:
    return svg.count('class="edge"')


def _chain_with_skips(length: int) -> list[tuple[str, str, Sequence[str]]]:
    """A chain a0 -> a1 -> ... and a second chain beside it, with edges from each early node to the last."""
    nodes: list[tuple[str, str, Sequence[str]]] = []
    for i in range(length):
        nodes.append((f"a{i}", "completed", [f"a{i - 1}"] if i else []))
        nodes.append((f"b{i}", "failed", [f"b{i - 1}"] if i else []))
    nodes.append(("end", "completed", [f"a{length - 1}", "a0", "b0", "b1", "a1"]))
    return nodes


MADE_UP = {
    "one long skip over a column of boxes": [
        ("start", "completed", []),
        *((f"mid{i}", "completed", ["start"]) for i in range(5)),
        ("last", "completed", [f"mid{i}" for i in range(5)] + ["start"]),
    ],
    "skips from every layer to the sink": _chain_with_skips(6),
    "a wide middle layer and a skip from its bottom": [
        ("top", "completed", []),
        ("other_root", "skipped", []),
        *((f"w{i}", "completed", ["top"]) for i in range(7)),
        ("deep", "completed", ["w6"]),
        ("sink", "completed", ["deep", "other_root", "top", "w0", "w3"]),
    ],
    "many edges through one gap": [
        *((f"src{i}", "completed", []) for i in range(6)),
        ("wall", "completed", ["src0"]),
        ("sink", "completed", ["wall", *(f"src{i}" for i in range(6))]),
    ],
}


@pytest.mark.parametrize("name", sorted(MADE_UP))
def test_no_edge_of_a_made_up_graph_runs_through_a_box(name: str) -> None:
    svg = dag(MADE_UP[name])
    assert _edge_count(svg) == sum(len(deps) for _, _, deps in MADE_UP[name])
    assert _through_boxes(svg) == []


@pytest.mark.parametrize("path", sorted(ROOT.glob("workflows/*.yaml")), ids=lambda p: p.stem)
def test_no_edge_of_a_shipped_workflow_runs_through_a_box(path: Path) -> None:
    workflow = load_workflow(path, bind=False)
    nodes = [(a.name, "completed", list(a.dependencies)) for a in workflow.agents]
    svg = dag(nodes)
    assert _edge_count(svg) == sum(len(deps) for _, _, deps in nodes)
    assert _through_boxes(svg) == []


def test_the_checker_sees_an_edge_drawn_straight_through_a_box() -> None:
    """The check itself can fail: a straight line over the middle column is caught."""
    svg = dag(MADE_UP["one long skip over a column of boxes"])
    root = ET.fromstring(svg)
    boxes = {g.get("data-node"): g.find(f"{SVG}rect") for g in root.iter(f"{SVG}g")}
    start, last = boxes["start"], boxes["last"]
    assert start is not None and last is not None
    sx = float(start.get("x", 0)) + float(start.get("width", 0))
    sy = float(start.get("y", 0)) + 20
    ex, ey = float(last.get("x", 0)), float(last.get("y", 0)) + 20
    straight = f'<path d="M{sx} {sy} L{ex} {ey}" class="edge" data-from="start" data-to="last"/>'
    assert _through_boxes(svg.replace("</svg>", straight + "</svg>")) == ["start->last through mid0"]


def test_edges_start_at_the_source_and_end_at_the_target() -> None:
    svg = dag(MADE_UP["skips from every layer to the sink"])
    root = ET.fromstring(svg)
    boxes = {}
    for group in root.iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        assert rect is not None
        boxes[group.get("data-node")] = tuple(float(rect.get(k, 0)) for k in ("x", "y", "width", "height"))
    for edge in (p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"):
        segments = _segments(str(edge.get("d")))
        (fx, fy), (tx, ty) = segments[0][0], segments[-1][1]
        x, y, w, h = boxes[edge.get("data-from")]
        assert (fx, fy) == (x + w, y + h / 2)
        x, y, w, h = boxes[edge.get("data-to")]
        assert (round(tx, 6), round(ty, 6)) == (x, y + h / 2)


def test_every_edge_and_box_lies_inside_the_drawing() -> None:
    """A lane above the first boxes widens the view upwards: nothing is cut off."""
    svg = dag(MADE_UP["a wide middle layer and a skip from its bottom"] + [("z", "completed", ["top", "deep"])])
    root = ET.fromstring(svg)
    left, top, width, height = (float(v) for v in str(root.get("viewBox")).split())
    for edge in (p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"):
        for (ax, ay), (bx, by) in _segments(str(edge.get("d"))):
            assert left <= min(ax, bx) and max(ax, bx) <= left + width
            assert top <= min(ay, by) and max(ay, by) <= top + height


# --- in a real browser: the report of a real run, measured in the page --------------------------

_MEASURE = """
(() => {
  const boxes = [...document.querySelectorAll('svg.dag g[data-node]')].map(g => {
    const r = g.querySelector('rect').getBBox();
    return {name: g.dataset.node, x0: r.x - 1, y0: r.y - 1, x1: r.x + r.width + 1, y1: r.y + r.height + 1};
  });
  const hits = [];
  const edges = [...document.querySelectorAll('svg.dag path.edge')];
  for (const edge of edges) {
    const length = edge.getTotalLength();
    for (let i = 0; i <= 400; i++) {
      const p = edge.getPointAtLength(length * i / 400);
      for (const b of boxes) {
        if (b.name === edge.dataset.from || b.name === edge.dataset.to) continue;
        if (p.x > b.x0 && p.x < b.x1 && p.y > b.y0 && p.y < b.y1) hits.push(edge.dataset.from + '->' + edge.dataset.to + ' through ' + b.name);
      }
    }
  }
  return JSON.stringify({edges: edges.length, boxes: boxes.length, hits: [...new Set(hits)]});
})()
"""


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")
def test_report_graph_in_chromium_renders_without_errors_and_no_edge_crosses_a_box(tmp_path: Path) -> None:
    import json

    done = cli.orchestrate(
        "run", str(ROOT / "workflows" / "finance_month_end_close.yaml"), "--simulate", "--no-progress", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    (report,) = tmp_path.glob("runs/*/report.html")
    proxy = RecordingProxy()
    try:
        with Browser(proxy.port) as browser:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.send(f"{domain}.enable", session=session)
            browser.events.clear()
            browser.send("Page.navigate", {"url": report.resolve().as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            measured = browser.send(
                "Runtime.evaluate", {"expression": _MEASURE, "returnByValue": True}, session=session
            )["result"]["value"]
            errors = [
                json.dumps(event.get("params"))
                for event in browser.events
                if event.get("method") == "Runtime.exceptionThrown"
                or (event.get("method") == "Log.entryAdded" and event["params"]["entry"].get("level") == "error")
                or (event.get("method") == "Runtime.consoleAPICalled" and event["params"].get("type") == "error")
            ]
    finally:
        proxy.close()
    assert errors == []
    found = json.loads(measured)
    workflow = load_workflow(ROOT / "workflows" / "finance_month_end_close.yaml", bind=False)
    assert found["boxes"] == len(workflow.agents)
    assert found["edges"] == sum(len(a.dependencies) for a in workflow.agents)
    assert found["hits"] == []
