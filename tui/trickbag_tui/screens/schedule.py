"""Tab 2, the schedule preview: LR, momentum, batch size and the noise scale g = lr (N/B - 1) over
the whole run as the recipe's tricks define them (one-cycle, warmup, batch-size milestones...), with
the chosen bounds; redrawn when they change. The same curves as ``trickbag schedule``."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from trickbag.errors import PluginError, UserError

from trickbag_tui.session import Preview, Session
from trickbag_tui.widgets.plots import LineData, LinePlot, Series, fmt

LR_COLOR, MOMENTUM_COLOR, MILESTONE_COLOR, BATCH_COLOR, NOISE_COLOR = "cyan", "magenta", "yellow", "green", "orange"


def _span(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.01
    return (max(0.0, low - pad) if low >= 0 else low - pad), high + pad


class SchedulePanel(Vertical):
    """Computed on the UI thread: a fresh plugin manager answering the schedule hooks at most
    ``PREVIEW_POINTS`` times, milliseconds (no data, no model)."""

    can_focus = True  # holds the focus on this tab, so no other tab's keys stay live

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.preview: Preview | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="schedule-row"):
            yield LinePlot("waiting for the prepared run...", id="schedule-lr")
            yield LinePlot("", id="schedule-momentum")
        with Horizontal(classes="schedule-row"):
            yield LinePlot("", id="schedule-batch")
            yield LinePlot("", id="schedule-noise")
        yield Static(id="schedule-info")

    def on_mount(self) -> None:
        self.redraw()

    def unavailable(self, why: str) -> None:
        self.query_one("#schedule-lr", LinePlot).empty = "no preview without the prepared run"
        self.query_one("#schedule-lr", LinePlot).refresh()
        self.query_one("#schedule-info", Static).update(Text(why, style="red"))

    def redraw(self) -> None:
        """Recompute the preview from the session (bounds, recipe) and draw it."""
        info = self.query_one("#schedule-info", Static)
        if self.session.run is None:
            return
        try:
            self.preview = p = self.session.preview()
        except (UserError, PluginError, ValueError) as exc:
            info.update(Text(f"no preview: {exc}", style="red"))
            return
        marks = [(float(epoch), MILESTONE_COLOR) for epoch, _ in p.batch_sizes[1:]]
        xlim = (0.0, float(p.epochs))
        self.query_one("#schedule-lr", LinePlot).show(LineData(
            [Series("lr", p.progress, p.lr, LR_COLOR)], xlim=xlim, ylim=_span(p.lr), vlines=marks, legend=False,
            title="learning rate",
        ))
        momentum = self.query_one("#schedule-momentum", LinePlot)
        if p.momentum is None:
            momentum.empty = "this optimizer has no momentum"
            momentum.show(LineData())
        else:
            momentum.show(LineData(
                [Series("momentum", p.progress, p.momentum, MOMENTUM_COLOR)], xlim=xlim, ylim=_span(p.momentum), vlines=marks,
                title="momentum", legend=False,
            ))
        sizes = [float(b) for b in p.batch_size]
        self.query_one("#schedule-batch", LinePlot).show(LineData(
            [Series("batch", p.progress, sizes, BATCH_COLOR)], xlim=xlim, ylim=(0.0, max(sizes) * 1.15), vlines=marks,
            title="global batch size", xlabel="epochs", legend=False,
        ))
        self.query_one("#schedule-noise", LinePlot).show(LineData(
            [Series("g", p.progress, p.noise, NOISE_COLOR)], xlim=xlim, ylim=_span(p.noise), vlines=marks,
            title=f"noise g = lr(N/B-1), N={p.train_size}", xlabel="epochs", legend=False,
        ))
        info.update(self.describe(p))

    def describe(self, p: Preview) -> Text:
        """Three lines: the LR's start, peak and end and momentum's range; steps and batch sizes; how the bounds were applied."""
        peak = max(range(len(p.lr)), key=p.lr.__getitem__)
        first = Text.assemble(
            ("lr ", LR_COLOR), f"{fmt(p.lr[0])} -> {fmt(p.lr[peak])} (epoch {p.progress[peak]:.2f}) -> {fmt(p.lr[-1])}",
            *(("   ", ("momentum ", MOMENTUM_COLOR), f"{fmt(min(p.momentum))} .. {fmt(max(p.momentum))}") if p.momentum else ()),
        )
        second = Text(f"{p.steps} steps, {p.steps_per_epoch} per epoch", style="dim")
        if len(p.batch_sizes) > 1:  # in the colour of the milestone lines
            sizes = ", ".join(f"{size} from epoch {epoch}" if epoch else str(size) for epoch, size in p.batch_sizes)
            second.append(f"; batch {sizes}", style=MILESTONE_COLOR)
        third = Text("; ".join(p.notes) if p.notes else "the recipe as written (no bounds chosen)", style="dim italic")
        return Text.assemble(first, "\n", second, "\n", third)
