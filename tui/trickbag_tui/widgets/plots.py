"""Plots on textual-plotext: a line plot for schedules and training curves, and the helpers the
range test's curve shares. Each widget keeps its data; ``redraw()`` is clear -> plot -> refresh."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from rich.align import Align
from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

MARKER = "braille"  # 2x4 dots per cell: the finest curve a terminal shows


def finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    """The points where both coordinates are finite numbers (plotext cannot place the others)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def log_ticks(lo: float, hi: float, most: int = 7) -> tuple[list[float], list[str]]:
    """Ticks at whole decades between log10 values ``lo`` and ``hi``, labelled ``1e-4``; every
    second (third...) decade when there are more than ``most``."""
    first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    decades = list(range(first, last + 1))
    if not decades:
        return [lo, hi], [f"{10 ** lo:.2g}", f"{10 ** hi:.2g}"]
    every = max(1, math.ceil(len(decades) / most))
    decades = [d for d in decades if (d - first) % every == 0]
    return [float(d) for d in decades], [f"1e{d}" for d in decades]


def fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


class Plot(PlotextPlot):
    """A plotext plot that shows a line of text instead of empty axes until it has data."""

    DEFAULT_CSS = """
    Plot { width: 1fr; height: 1fr; }
    """

    def __init__(self, empty: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.empty = empty
        self.has_data = False

    def render(self) -> RenderResult:
        if not self.has_data:
            return Align.center(Text(self.empty, style="dim", justify="center"), vertical="middle")
        return super().render()


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    color: str
    scatter: bool = False  # markers at the points instead of a line (a few epochs' values)


@dataclass
class LineData:
    series: list[Series] = field(default_factory=list)
    xlim: tuple[float, float] | None = None
    ylim: tuple[float, float] | None = None
    vlines: list[tuple[float, str]] = field(default_factory=list)  # (x, color)
    xlabel: str = ""
    title: str = ""
    legend: bool = True


class LinePlot(Plot):
    """Lines (and scatter points) against a shared x axis, with optional vertical marks."""

    def __init__(self, empty: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(empty, id=id, classes=classes)
        self.data = LineData()

    def show(self, data: LineData) -> None:
        self.data = data
        self.redraw()

    def redraw(self) -> None:
        plt, data = self.plt, self.data
        plt.clear_figure()
        self.has_data = any(finite(s.x, s.y)[0] for s in data.series)
        if self.has_data:
            if data.title:
                plt.title(data.title)
            if data.xlabel:
                plt.xlabel(data.xlabel)
            if data.xlim:
                plt.xlim(*data.xlim)
            if data.ylim:
                plt.ylim(*data.ylim)
            for x, color in data.vlines:
                plt.vertical_line(x, color=color)
            for s in data.series:
                x, y = finite(s.x, s.y)
                if not x:
                    continue
                label = s.label if data.legend else None
                if s.scatter or len(x) == 1:
                    plt.scatter(x, y, color=s.color, marker="●", label=label)
                else:
                    plt.plot(x, y, color=s.color, marker=MARKER, label=label)
        self.refresh()
