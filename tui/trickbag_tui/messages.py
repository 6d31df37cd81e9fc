"""Messages of the terminal UI, as dataclasses (Textual's ``Message`` supports them).

Workers post them from their threads (``post_message`` is thread-safe); only their handlers, on
the UI thread, touch widgets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from trickbag.lr_range.sweep import LRFindResult
    from trickbag.recipe import Recipe

    from trickbag_tui.session import SweepSettings

# -- the recipe and its prepared run ---------------------------------------------------------


@dataclass
class RecipePicked(Message):
    """The recipe picker's choice, loaded (``recipe``) or not (``error``)."""

    path: Path
    recipe: Recipe | None
    error: str | None = None


@dataclass
class RunReady(Message):
    """The recipe's run is prepared (data, model, optimizer), or could not be (``error``)."""

    error: str | None = None


# -- the LR range test -----------------------------------------------------------------------


@dataclass
class SweepStarted(Message):
    settings: SweepSettings


@dataclass
class SweepSteps(Message):
    """The range test's steps since the last message, ``(index, lr, loss, smoothed)`` each. A sweep
    on a small model takes hundreds of steps a second: one message (and one redraw) per step would
    starve the UI of the keys it must answer, so the worker sends them in batches."""

    steps: list[tuple[int, float, float, float]]


@dataclass
class SweepFinished(Message):
    """The sweep ended, diverged or was cancelled (``result.stopped``); the run is restored."""

    result: LRFindResult


@dataclass
class SweepFailed(Message):
    error: str


@dataclass
class VerifyProgress(Message):
    """One more epoch of the verification runs (``done`` of at most ``total``)."""

    done: int
    total: int


@dataclass
class VerifyFinished(Message):
    """The verification runs ended: ``result`` is a :class:`trickbag.lr_range.verify.Verification`,
    or ``error`` says why there is none."""

    result: object | None
    error: str | None = None


@dataclass
class BoundsChanged(Message):
    """The chosen ``base_lr`` / ``max_lr`` changed: previews redraw."""

    base_lr: float | None
    max_lr: float | None


@dataclass
class TunedSaved(Message):
    path: Path


# -- training --------------------------------------------------------------------------------


@dataclass
class TrainStarted(Message):
    out_dir: Path
    recipe: Recipe
    epochs: float
    steps_per_epoch: int


@dataclass
class TrainStep(Message):
    step: int  # optimizer steps taken so far
    progress: float  # epochs, float
    loss: float
    lr: float


@dataclass
class TrainEpoch(Message):
    """An epoch's metrics row (the one written to ``metrics.jsonl``), after its checkpoint."""

    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainFinished(Message):
    """The run ended: finished (``summary``), stopped by the user, or failed (``error``)."""

    out_dir: Path
    stopped: bool = False
    summary: dict[str, Any] | None = None
    error: str | None = None
