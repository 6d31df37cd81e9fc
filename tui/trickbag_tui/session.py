"""What the terminal UI works on, apart from any widget: the recipe, its prepared run, the last
range test, the chosen LR bounds, the saved tuned recipe. Plain Python (no Textual), shared by the
screens, safe to call from worker threads where it says so."""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trickbag.engine.assemble import Run
    from trickbag.lr_range.sweep import LRFindResult
    from trickbag.recipe import Recipe

#: the schedule preview evaluates the schedules at most at this many optimizer steps
PREVIEW_POINTS = 800


@dataclass
class SweepSettings:
    """The range test's settings, as ``trickbag lr-find`` takes them."""

    start: float = 1e-7
    end: float = 10.0
    steps: int = 100
    mode: str = "exp"
    diverge: float = 4.0
    smooth: float = 0.98

    def check(self) -> None:
        from trickbag.lr_range.sweep import check_settings

        check_settings(self.start, self.end, self.steps, self.mode, self.diverge, self.smooth)


@dataclass
class Preview:
    """LR, momentum, batch size and noise scale over the whole run, sampled at optimizer steps (as the
    loop evaluates them): ``trickbag.engine.timeline``, as ``trickbag schedule`` shows it."""

    progress: list[float]  # epochs (float) at the sampled steps
    lr: list[float]
    momentum: list[float] | None  # None: the optimizer has no momentum
    batch_sizes: list[tuple[int, int]]  # (epoch, batch size) wherever the batch size changes, epoch 0 first
    steps: int  # optimizer steps in the run
    steps_per_epoch: int  # at the recipe's batch size
    epochs: float
    notes: list[str] = field(default_factory=list)  # how the bounds were applied
    batch_size: list[int] = field(default_factory=list)  # global batch at the sampled steps
    noise: list[float] = field(default_factory=list)  # g = lr (N/B - 1) at the sampled steps
    train_size: int = 0  # N


def shown_path(path: Path) -> str:
    """A path as the user should read it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class Session:
    """One recipe in the TUI. The prepared run is built once (:meth:`ensure_run`, from a worker)
    and shared by the range test and the previews; a sweep restores it bit-for-bit."""

    def __init__(
        self,
        path: Path | None,
        recipe: Recipe,
        overrides: list[str] | tuple[str, ...] = (),
        *,
        runs_root: Path = Path("runs"),
        out_dir: Path | None = None,
        sweep: SweepSettings | None = None,
        run: Run | None = None,
        observers: list[object] | None = None,
        opened: Path | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.opened = opened  # a run folder opened with `trickbag tui RUN_FOLDER`: its curves show in the Train tab
        self.recipe = recipe
        self.overrides = list(overrides)
        self.runs_root = runs_root
        self.out_dir = out_dir  # a fixed run folder (tests); default runs/<name>-<time>
        self.settings = sweep or SweepSettings()
        self.observers = observers or []  # extra training observers (tests gate the run with one)
        self.run: Run | None = run
        self.base_momentum: float | None = None
        self.result: LRFindResult | None = None
        self.sweep_dir: Path | None = None  # where the last range test's csv/json/png were written
        self.base_lr: float | None = None  # chosen bounds
        self.max_lr: float | None = None
        self._edits: tuple[tuple[float | None, float | None], tuple[dict[str, Any], list[str]]] | None = None
        self.tuned: Path | None = None  # last saved tuned recipe
        self.launched: list[dict[str, Any]] = []  # runs started from the Train tab: out_dir, status, epochs
        self.sweeping = False  # a range test or a training run holds the CPU/GPU (and the RNG):
        self.training = False  # one at a time
        self.sweep_cancel = threading.Event()
        self.train_stop = threading.Event()
        self._lock = threading.Lock()
        # what does the work: the engine's range test and training. Screens call these, never the
        # engine directly, so a test can replay a recorded sweep or history through the same widgets
        from trickbag.engine.loop import fit
        from trickbag.lr_range.sweep import sweep as range_test
        from trickbag.lr_range.verify import verify

        self.sweep_with, self.fit_with, self.verify_with = range_test, fit, verify
        self.verification = None  # the last lr-find --verify result, in the TUI
        if run is not None:
            self._adopt(run)

    # -- the prepared run ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else f"{self.recipe.name}.toml"

    def ensure_run(self) -> Run:
        """Prepare the recipe's run once (data, model, optimizer, tricks). Call from a worker."""
        with self._lock:
            if self.run is None:
                from trickbag.engine.assemble import prepare_run

                self._adopt(prepare_run(self.recipe))
            return self.run

    def _adopt(self, run: Run) -> None:
        from trickbag.engine.assemble import base_momentum

        self.run = run
        self.base_momentum = base_momentum(run.optimizer)

    def stop_all(self) -> None:
        """Ask every worker to stop at its next step (quitting, tests tearing down)."""
        self.sweep_cancel.set()
        self.train_stop.set()

    # -- bounds ----------------------------------------------------------------------------

    def set_bounds(self, base_lr: float | None, max_lr: float | None) -> None:
        self.base_lr, self.max_lr = base_lr, max_lr

    def bounds_problem(self) -> str | None:
        """Why the chosen bounds cannot be saved, or None."""
        if self.max_lr is None:
            return "no max_lr chosen: run the range test (r), move the cursor, press m"
        if self.base_lr is not None and self.base_lr >= self.max_lr:
            return f"base_lr {self.base_lr:.3g} must be below max_lr {self.max_lr:.3g}"
        return None

    def bound_edits(self) -> tuple[dict[str, Any], list[str]]:
        """What the chosen bounds change in the recipe, as the enabled schedule trick places them
        (``trickbag_lr_bounds``), and the notes of any conversion (linear scaling); cached."""
        key = (self.max_lr, self.base_lr)
        if self._edits is None or self._edits[0] != key:
            from trickbag.lr_range.bounds import bound_edits, recipe_edits

            assert self.max_lr is not None
            if self.run is not None:
                answer = bound_edits(self.run.pm, self.run.context, self.max_lr, self.base_lr)
            else:
                answer = recipe_edits(self.recipe, self.max_lr, self.base_lr)
            self._edits = (key, answer)
        return self._edits[1]

    def bounds_line(self) -> str:
        """The chosen bounds as the recipe receives them: ``one_cycle max_lr 0.4, div_factor 40``."""
        edits = self.bound_edits()[0]
        if len(edits) > 1:  # optimizer.lr repeats the schedule trick's peak: keep the line short
            edits = {k: v for k, v in edits.items() if k != "optimizer.lr"}
        parts, table = [], None
        for key, value in edits.items():  # one_cycle max_lr 0.4, div_factor 40: each table named once
            where, _, name = key.removeprefix("tricks.").rpartition(".")
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            parts.append(f"{where} {name} {shown}" if where != table else f"{name} {shown}")
            table = where
        line = ", ".join(parts)
        if self.base_lr and list(edits) == ["optimizer.lr"]:
            line += " (no schedule trick takes base_lr)"
        return line

    def bounded_recipe(self) -> Recipe:
        """The recipe with the chosen bounds applied (the recipe itself when none are chosen)."""
        if self.max_lr is None or self.bounds_problem():
            return self.recipe
        from trickbag.lr_range.bounds import apply_edits
        from trickbag.recipe import build_recipe

        raw = self.recipe.to_dict()
        apply_edits(raw, self.bound_edits()[0])
        return build_recipe(raw, where=self.name, name=self.recipe.name)

    def tuned_target(self) -> Path:
        """Where :meth:`save` writes: next to the recipe, or in the current folder for a bundled one
        (it lives inside the package), never over an existing file."""
        from trickbag.lr_range.outputs import tuned_path
        from trickbag.services import bundled_recipes

        assert self.path is not None
        bundled = {p.resolve() for p in bundled_recipes().values()}
        if self.path.resolve() in bundled:
            return tuned_path(Path.cwd() / self.path.name)
        return tuned_path(self.path)

    def save(self) -> Path:
        """Write ``<name>.tuned.toml`` with the chosen bounds (comments and layout of the original kept)."""
        from trickbag.errors import UserError
        from trickbag.lr_range.outputs import apply_bounds, provenance

        problem = self.bounds_problem()
        if problem:
            raise UserError(problem)
        if self.path is None:
            raise UserError("this recipe has no file to copy")
        source = ""
        if self.result is not None:
            source = provenance(self.result, self.sweep_dir, self.max_lr, self.base_lr, "trickbag tui, bounds picked on the curve")
        self.tuned = apply_bounds(self.path, self.bound_edits()[0], self.overrides, self.tuned_target(), source)
        return self.tuned

    def record_sweep(self, result: LRFindResult) -> Path:
        """Write the range test's lr_find.csv/.json/.png, as ``trickbag lr-find`` does. From a worker."""
        from trickbag.lr_range.outputs import write_outputs
        from trickbag.runs.folder import default_out_dir

        folder = default_out_dir(f"{self.recipe.name}-lr-find", self.runs_root)
        write_outputs(result, folder, self.recipe.to_dict())
        self.sweep_dir = folder.resolve()  # absolute: a tuned recipe's header must point there from anywhere
        return self.sweep_dir

    def launch_recipe(self) -> tuple[Recipe, str]:
        """What the Train tab launches, and a line saying so: the saved tuned recipe if the bounds
        have not changed since, else the recipe with the chosen bounds."""
        from trickbag.recipe import load_recipe

        if self.tuned is not None and self.tuned.exists():
            from trickbag.lr_range.bounds import lookup

            loaded = load_recipe(self.tuned)
            if self.max_lr is None or all(lookup(loaded.to_dict(), k) == v for k, v in self.bound_edits()[0].items()):
                return loaded, shown_path(self.tuned)
        recipe = self.bounded_recipe()
        return recipe, self.name + (" + chosen bounds" if recipe is not self.recipe else "")

    def run_folder(self, name: str) -> Path:
        from trickbag.runs.folder import default_out_dir

        return self.out_dir or default_out_dir(name, self.runs_root)

    # -- previews --------------------------------------------------------------------------

    def preview(self, points: int = PREVIEW_POINTS) -> Preview:
        """LR and momentum over the run as the tricks define them, with the chosen bounds.

        Cheap (no data, no model): the prepared run lends its data size and context; a fresh plugin
        manager builds the tricks from the bounded recipe and answers the schedule hooks."""
        from trickbag.engine.timeline import timeline
        from trickbag.plugins import load_plugins, run_manager

        run = self.run
        assert run is not None, "preview needs the prepared run"
        recipe = self.bounded_recipe()
        pm, _ = run_manager(recipe.tricks, load_plugins())
        context = dataclasses.replace(run.context, recipe=recipe)
        # every epoch at the batch size the tricks give it, steps as the loop counts them
        t = timeline(pm, context, run.train.num_batches, run.train.info.train_size, self.base_momentum, points)
        notes = []
        if self.max_lr is not None and recipe is not self.recipe:
            notes.extend(self.bound_edits()[1])
            notes.append(self.bounds_line())
        return Preview(t.progress, t.lr, t.momentum, t.batch_size_changes, t.total_steps, t.steps_per_epoch, t.epochs, notes,
                       t.batch_size, t.noise, t.train_size)
