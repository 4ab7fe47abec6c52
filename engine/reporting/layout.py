"""The drawing of a flow: boxes with their lines of text, and their layered layout.

The steps of a rule form a series-parallel graph: a list runs top to bottom; a branch or a split
fans out into side-by-side columns that join again below it (a holdout column ends there). So the
layout is exact and needs no general graph library: each block (a box, a list of blocks, or a fork:
a head box and its columns) is measured, then placed, recursively; lines run down, across and down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: box width, line height and gaps, in SVG user units (pixels at 100%)
BOX_W = 232
LINE_H = 16
PAD = 8
V_GAP = 34
H_GAP = 22
#: characters of a 12-pixel sans-serif line that fit in a box
LINE_CHARS = 34


def wrap(text: str, width: int = LINE_CHARS, most: int = 3) -> list[str]:
    """Text cut into lines of at most `width` characters (at spaces where it can), at most `most`."""
    words, lines, line = text.split(" "), [], ""
    for word in words:
        while len(word) > width:
            if line:
                lines.append(line)
                line = ""
            lines.append(word[: width - 1] + "-")
            word = word[width - 1 :]
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    if len(lines) > most:
        lines = lines[:most]
        lines[-1] = lines[-1][: width - 1].rstrip() + "…"
    return lines


@dataclass
class Node:
    id: str
    #: trigger, send, wait, branch, split, update, holdout, end
    kind: str
    title: str
    #: what the step says: conditions, subject override, weights
    detail: list[str] = field(default_factory=list)
    #: the counts, as lines
    figures: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    x: float = 0.0
    y: float = 0.0

    def rows(self) -> list[tuple[str, str]]:
        """The box's lines, each with its style (title, detail or figure), cut to the box's width."""
        out = [(line, "title") for line in wrap(self.title, most=4)]
        out += [(line, "detail") for text in self.detail for line in wrap(text)]
        out += [(line, "figure") for text in self.figures for line in wrap(text)]
        return out

    @property
    def w(self) -> float:
        return BOX_W

    @property
    def h(self) -> float:
        return 2 * PAD + LINE_H * len(self.rows())

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "title": self.title, "detail": self.detail}
        if self.variant is not None:
            out["variant"] = self.variant
        out["counts"] = self.counts
        return out


@dataclass
class Edge:
    source: str
    target: str
    label: str | None = None
    #: the polyline, once laid out
    points: list[tuple[float, float]] = field(default_factory=list)


#: a loose end: where a line leaves (x, y), and the steps (with the label of the way) it comes from
End = tuple[float, float, tuple[tuple[str, str | None], ...]]


def _measure(block: Any) -> tuple[float, float]:
    """(width, height) of a block: a Node, a list (a sequence) or a fork."""
    if isinstance(block, Node):
        return block.w, block.h
    if isinstance(block, list):
        sizes = [_measure(b) for b in block]
        return max(w for w, _ in sizes), sum(h for _, h in sizes) + V_GAP * (len(sizes) - 1)
    _, head, arms = block
    arm_sizes = [_measure(arm) if arm is not None else (EMPTY_ARM, 0.0) for _, arm, _ in arms]
    width = max(head.w, sum(w for w, _ in arm_sizes) + H_GAP * (len(arms) - 1))
    return width, head.h + V_GAP + max(h for _, h in arm_sizes) + V_GAP


class _Layout:
    def __init__(self) -> None:
        self.edges: list[Edge] = []
        self.links: list[tuple[str, str, str | None]] = []
        self.joins: list[tuple[float, float]] = []

    def place(self, block: Any, cx: float, y: float, incoming: list[End]) -> list[End]:
        """Place a block with its top centre at (cx, y), draw the `incoming` lines to its entry, and
        return its own loose ends for what follows."""
        if isinstance(block, Node):
            block.x, block.y = cx - block.w / 2, y
            for x0, y0, sources in incoming:
                label = sources[0][1] if len(sources) == 1 else None
                self.edges.append(Edge("", block.id, label, _route(x0, y0, cx, y)))
                self.links += [(source, block.id, way) for source, way in sources]
            return [(cx, y + block.h, ((block.id, None),))]
        if isinstance(block, list):
            ends = incoming
            for item in block:
                ends = self.place(item, cx, y, ends)
                y += _measure(item)[1] + V_GAP
            return ends
        _, head, arms = block
        ((hx, hy, _),) = self.place(head, cx, y, incoming)
        top = y + head.h + V_GAP
        sizes = [_measure(arm) if arm is not None else (EMPTY_ARM, 0.0) for _, arm, _ in arms]
        left = cx - (sum(w for w, _ in sizes) + H_GAP * (len(arms) - 1)) / 2
        join_y = top + max(h for _, h in sizes) + V_GAP / 2
        loose: list[End] = []
        for (label, arm, goes_on), (w, _) in zip(arms, sizes, strict=True):
            ax = left + w / 2
            left += w + H_GAP
            if arm is None:  # an empty arm: straight on to the join
                self.edges.append(Edge(head.id, "", label, _route(hx, hy, ax, top) + [(ax, join_y)]))
                loose.append((ax, join_y, ((head.id, label),)))
                continue
            ends = self.place(arm, ax, top, [(hx, hy, ((head.id, label),))])
            if goes_on:
                loose += ends
        if not loose:
            return []
        self.joins.append((cx, join_y))
        for x0, y0, _ in loose:
            if (x0, y0) != (cx, join_y):
                self.edges.append(Edge("", "", None, [(x0, y0), (x0, join_y), (cx, join_y)]))
        return [(cx, join_y, tuple(source for *_, sources in loose for source in sources))]


#: width of a branch arm without steps
EMPTY_ARM = 60.0


def _route(x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    """Down, across and down: an orthogonal polyline from (x0, y0) to (x1, y1)."""
    if abs(x0 - x1) < 0.5:
        return [(x0, y0), (x1, y1)]
    mid = y0 + min(V_GAP / 2, (y1 - y0) / 2)
    return [(x0, y0), (x0, mid), (x1, mid), (x1, y1)]


def lay_out(blocks: list[Any], margin: float = 16) -> tuple[_Layout, float, float]:
    """Place a sequence of blocks (Nodes and forks); the placed lines, the width and the height."""
    w, h = _measure(blocks)
    lay = _Layout()
    lay.place(blocks, margin + w / 2, margin, [])
    return lay, w + 2 * margin, h + 2 * margin
