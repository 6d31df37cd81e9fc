"""The range test's curve: loss (raw and smoothed) against the LR on a log axis, drawn as steps
arrive, with the suggestions, the chosen bounds and a cursor that moves along the curve.

The two losses differ by mark, not only by colour: the raw loss is dots (a raw loss outside the
window is left out, never pinned to the edge, which would look like a floor), the smoothed loss a
line (a diverging tail runs along the top edge). The window never narrows onto the noise of a
loss that has not started to fall yet. ``zoom`` narrows the x axis to the chosen bounds."""
from __future__ import annotations

import math

from textual.reactive import reactive

from trickbag_tui.widgets.plots import MARKER, Plot, finite, log_ticks

# colours shared with the legend under the plot (plotext and rich both know these names)
RAW, SMOOTH, BASE, MAX, SUGGESTED, RECOMMENDED, CURSOR, VERIFIED = "gray", "cyan", "green", "red", "yellow", "magenta", "white", "green"


def style(color: str) -> str:
    """The rich style of a plotext colour name (plotext's gray is the terminal's colour 8)."""
    return "bright_black" if color == "gray" else color


class LRCurve(Plot):
    """Holds the curve; ``cursor`` is an index into it (None before the first step)."""

    can_focus = True
    cursor: reactive[int | None] = reactive(None, always_update=True)

    def __init__(self, empty: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(empty, id=id, classes=classes)
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.span = (1e-7, 10.0)  # the sweep's start and end: the x axis is fixed while it draws
        self.suggested: dict[str, float] = {}  # "base", "max", "recommended" -> lr
        # LRs likely within 0.5 accuracy points of the best (Suggestions.interval): a bar along the bottom
        self.interval: tuple[float, float] | None = None
        self.base_lr: float | None = None
        self.max_lr: float | None = None
        self.view: tuple[float, float] | None = None  # a zoomed x range (LRs), None: the sweep's span
        self.verified: float | None = None  # the LR that won the verification runs (v), marked ✓

    # -- data --------------------------------------------------------------------------------

    def start(self, start: float, end: float) -> None:
        self.lrs, self.losses, self.smoothed, self.suggested, self.interval = [], [], [], {}, None
        self.span, self.view, self.verified = (start, end), None, None
        self.empty = "range test starting (the first one prepares the run: data, model)..."
        self.set_reactive(LRCurve.cursor, None)
        self.redraw()

    def extend(self, steps: list[tuple[int, float, float, float]]) -> None:
        """Add a batch of sweep steps ``(index, lr, loss, smoothed)`` and redraw once."""
        for _, lr, loss, smoothed in steps:
            self.lrs.append(lr)
            self.losses.append(loss)
            self.smoothed.append(smoothed)
        self.redraw()

    def finish(self, lrs: list[float], losses: list[float], smoothed: list[float], suggested: dict[str, float], cursor: int | None) -> None:
        """The sweep's own arrays replace what arrived step by step (the same, unless messages were dropped)."""
        self.lrs, self.losses, self.smoothed, self.suggested = list(lrs), list(losses), list(smoothed), suggested
        self.cursor = cursor  # redraws

    def set_verified(self, lr: float | None) -> None:
        self.verified = lr
        self.redraw()

    def set_bounds(self, base_lr: float | None, max_lr: float | None) -> None:
        self.base_lr, self.max_lr = base_lr, max_lr
        self.redraw()

    def nearest(self, lr: float) -> int | None:
        """Index of the point whose LR is closest to ``lr`` on the log axis."""
        if not self.lrs or lr <= 0:
            return None
        target = math.log10(lr)
        return min(range(len(self.lrs)), key=lambda i: abs(math.log10(self.lrs[i]) - target))

    def move(self, delta: int) -> None:
        if not self.lrs:
            return
        here = self.cursor if self.cursor is not None else 0
        self.cursor = max(0, min(len(self.lrs) - 1, here + delta))

    def watch_cursor(self) -> None:
        self.redraw()

    # -- drawing -----------------------------------------------------------------------------

    def zoom(self) -> bool:
        """Narrow the x axis to the chosen bounds (a third of a decade of margin), or back to the
        whole sweep. Returns whether it is zoomed now."""
        if self.view is not None or not (self.base_lr and self.max_lr):
            self.view = None
        else:
            self.view = (self.base_lr / 2, self.max_lr * 2)
        self.redraw()
        return self.view is not None

    def y_range(self) -> tuple[float, float] | None:
        """As lr_find.png: from a little under the lowest smoothed loss to well above the first,
        so a divergence at the end does not flatten the interesting part. The span is at least a
        fifth of the first loss: before the loss falls, the window must not zoom onto its noise."""
        values = [v for v in self.smoothed if math.isfinite(v)]
        if not values:
            return None
        low, first = min(values), values[0]
        span = max(abs(first - low), 0.2 * abs(first), 1e-3)
        return low - 0.1 * span, max(first, low) + 0.6 * span

    def _y_at(self, lr: float) -> float | None:
        xs, ys = finite([math.log10(v) for v in self.lrs], self.smoothed)
        if not xs:
            return None
        x = math.log10(lr)
        if x <= xs[0]:
            return ys[0]
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if x0 <= x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0 or 1)
        return ys[-1]

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        self.has_data = bool(self.lrs)
        if self.has_data:
            lo, hi = (math.log10(v) for v in (self.view or self.span))
            plt.xlim(lo, hi)
            plt.xticks(*log_ticks(lo, hi))
            y_range = self.y_range()
            if y_range:
                plt.ylim(*y_range)
            xs = [math.log10(v) for v in self.lrs]
            inside = (lambda v: y_range[0] <= v <= y_range[1]) if y_range else (lambda v: True)
            # raw loss: dots, and only those inside the window
            x, y = finite(xs, self.losses)
            kept = [(a, b) for a, b in zip(x, y) if inside(b) and lo <= a <= hi]
            if kept:
                plt.scatter([a for a, _ in kept], [b for _, b in kept], color=RAW, marker="dot")
            # smoothed loss: a line; a diverging tail runs along the top edge instead of off the frame
            x, y = finite(xs, self.smoothed)
            if y_range:
                y = [min(max(v, y_range[0]), y_range[1]) for v in y]
            if x:
                plt.plot(x, y, color=SMOOTH, marker=MARKER)
            if self.interval and y_range:
                a, b = (min(max(math.log10(v), lo), hi) for v in self.interval)
                plt.plot([a, b], [y_range[0], y_range[0]], color=RECOMMENDED, marker="━")
            # drawn in this order so that the later ones stay visible on top: bounds, cursor, then
            # the suggestions (the recommendation's star is never hidden under the cursor)
            for value, color in ((self.base_lr, BASE), (self.max_lr, MAX)):
                if value:
                    plt.vertical_line(math.log10(value), color=color)
            if self.cursor is not None and self.cursor < len(self.lrs):
                x = xs[self.cursor]
                plt.vertical_line(x, color=CURSOR)
                y = self.smoothed[self.cursor]
                if math.isfinite(y):
                    if y_range:
                        y = min(max(y, y_range[0]), y_range[1])
                    plt.scatter([x], [y], marker="●", color=CURSOR)
            marks = {**self.suggested, **({"verified": self.verified} if self.verified else {})}
            for key, marker, color in (("base", "▲", SUGGESTED), ("max", "▲", SUGGESTED), ("recommended", "★", RECOMMENDED),
                                       ("verified", "✓", VERIFIED)):
                lr = marks.get(key)
                y = self._y_at(lr) if lr else None
                if y is not None:
                    plt.scatter([math.log10(lr)], [y], marker=marker, color=color)
        self.refresh()
