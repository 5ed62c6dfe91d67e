"""Bar charts as SVG geometry, computed in Python and drawn by a template.

Server-side SVG keeps the public report readable without JavaScript, printable, and
archivable as one file; the geometry is plain data so it can be tested.
"""

from __future__ import annotations

from dataclasses import dataclass

SERIES = (
    ("refused", "Refused", "#d4351c"),
    ("no_disclosure", "Approved, nothing disclosed", "#b1b4b6"),
    ("disclosed_known", "Disclosed, already known", "#1d70b8"),
    ("disclosed_new", "Disclosed, new information", "#003078"),
    ("pending", "Pending", "#f47738"),
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    label: str
    value: int


@dataclass(frozen=True)
class Marker:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bars: list[Bar]
    markers: list[Marker]
    x_labels: list[tuple[float, str]]
    y_ticks: list[tuple[float, int]]
    legend: list[tuple[str, str]]
    title: str


def stacked_bars(
    periods: list[str],
    values: dict[str, dict[str, int]],
    markers: list[tuple[str, str]],
    *,
    title: str,
    width: int = 860,
    height: int = 320,
) -> Chart:
    """``values[period][series]`` counts; ``markers`` are (period, label) status changes."""
    left, right, top, bottom = 56, 16, 30, height - 56
    n = max(len(periods), 1)
    step = (width - left - right) / n
    peak = max((sum(values.get(p, {}).values()) for p in periods), default=0) or 1
    scale = (bottom - top) / peak
    bars: list[Bar] = []
    for i, p in enumerate(periods):
        y = float(bottom)
        for key, label, colour in SERIES:
            v = values.get(p, {}).get(key, 0)
            if v <= 0:
                continue
            h = v * scale
            y -= h
            bars.append(Bar(left + i * step + step * 0.1, y, step * 0.8, h, colour, label, v))
    index = {p: i for i, p in enumerate(periods)}
    drawn = [Marker(left + index[p] * step, label) for p, label in markers if p in index]
    every = max(1, n // 12)
    x_labels = [(left + i * step + step / 2, p) for i, p in enumerate(periods) if i % every == 0]
    ticks = [(bottom - t * peak / 4 * scale, round(t * peak / 4)) for t in range(5)]
    return Chart(
        width,
        height,
        top,
        bottom,
        bars,
        drawn,
        x_labels,
        ticks,
        [(label, colour) for _, label, colour in SERIES],
        title,
    )
