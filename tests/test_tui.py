"""The terminal UI, headless: a Pilot drives a real, small, seeded range test on ``digits`` (keys
move the cursor, bounds land in the saved recipe, Escape restores the model), launches and stops a
run, resizes; snapshot tests (pytest-textual-snapshot) pin the look of every screen.

Snapshots never train: trained numbers differ from one CPU to another, so they replay a recorded
sweep and training history (tests/data/tui, made by its record.py) through the same messages and
widgets, and look the same on every machine. Update them only deliberately:
``pytest tests/test_tui.py --snapshot-update``.
"""
from __future__ import annotations

import asyncio
import copy
import shutil
import threading
import time
from pathlib import Path

import pytest
import tomllib
import torch
from trickbag.engine.assemble import prepare_run
from trickbag.hookspecs import hookimpl
from trickbag.recipe import load_recipe
from trickbag.services import bundled_recipes
from trickbag_tui.app import TrickbagApp
from trickbag_tui.screens.lr_find import LRFindPanel
from trickbag_tui.screens.main import MainScreen
from trickbag_tui.screens.picker import bundled
from trickbag_tui.screens.schedule import SchedulePanel
from trickbag_tui.screens.train import TrainPanel
from trickbag_tui.session import SweepSettings
from trickbag_tui.widgets.lr_curve import LRCurve

# the bundled quickstart on scikit-learn's digits: a real run, a few hundred milliseconds a sweep
OVERRIDES = ["data.name=digits", "data.val_size=297", "model.name=small_cnn", "model.width=8"]
SWEEP = SweepSettings(start=1e-4, end=10.0, steps=50)


@pytest.fixture
def recipe_file(tmp_path, monkeypatch) -> Path:
    """A copy of quickstart.toml in a temporary current folder (tuned copies and runs land there)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "quickstart.toml"
    shutil.copy(bundled_recipes()["quickstart"], path)
    return path


@pytest.fixture(scope="module")
def shared_run():
    """One prepared run for the module: every sweep restores it bit-for-bit, so apps share it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = prepare_run(load_recipe(bundled_recipes()["quickstart"], OVERRIDES))
    torch.set_num_threads(threads)
    return run


def make_app(path: Path, run=None, *, overrides=OVERRIDES, sweep=SWEEP, **options) -> TrickbagApp:
    return TrickbagApp(path, load_recipe(path, overrides), overrides, sweep=sweep, run=run, **options)


async def until(pilot, condition, timeout: float = 120.0) -> None:
    """Let the app work until ``condition()`` holds (workers post messages; handlers update state)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


async def swept(pilot) -> LRFindPanel:
    panel = pilot.app.screen.query_one(LRFindPanel)
    await pilot.press("r")
    await until(pilot, lambda: panel.state == "done")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    return panel


def state_of(run) -> dict:
    return {
        "model": {k: v.clone() for k, v in run.raw_model.state_dict().items()},
        "optimizer": copy.deepcopy(run.optimizer.state_dict()),
        "rng": torch.get_rng_state(),
    }


def assert_same(a, b) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][name]) if torch.is_tensor(value) else value == b["optimizer"]["state"][key][name]
    assert torch.equal(a["rng"], b["rng"])


# ------------------------------------------------------------------------------------------------
# the flow, driven by keys


def test_range_test_cursor_bounds_and_save(recipe_file, monkeypatch):
    """r runs a live sweep; arrows move the cursor; b and m set the bounds there; s saves them."""
    original = recipe_file.read_text(encoding="utf-8")
    steps_seen, bounds_messages = [], []
    extend, bounds_changed = LRCurve.extend, MainScreen.on_bounds_changed
    monkeypatch.setattr(LRCurve, "extend", lambda self, steps: (steps_seen.extend(s[1] for s in steps), extend(self, steps)))
    monkeypatch.setattr(MainScreen, "on_bounds_changed", lambda self, m: (bounds_messages.append((m.base_lr, m.max_lr)), bounds_changed(self, m)))

    async def flow():
        app = make_app(recipe_file)  # prepares its own run, in a worker, as `trickbag tui` does
        async with app.run_test(size=(80, 24)) as pilot:
            panel = await swept(pilot)
            session, curve = app.session, panel.curve
            result = session.result
            assert result.stopped == "end" and len(result.lrs) == 50
            assert steps_seen == result.lrs  # drawn live, batch by batch, before the end
            assert curve.lrs == result.lrs and curve.smoothed == result.smoothed
            s = result.suggestions
            assert session.max_lr == s.recommended and curve.lrs[curve.cursor] == pytest.approx(s.recommended, rel=0.2)

            # base_lr: five points left of the recommendation; max_lr: two right of it
            start = curve.cursor
            await pilot.press(*["left"] * 5, "b")
            assert curve.cursor == start - 5 and session.base_lr == result.lrs[start - 5]
            await pilot.press(*["right"] * 7, "m")
            assert curve.cursor == start + 2 and session.max_lr == result.lrs[start + 2]
            base, peak = session.base_lr, session.max_lr
            # the messages the previews redraw on: the suggestion, then each key
            assert bounds_messages == [(s.base_lr, s.recommended), (base, s.recommended), (base, peak)]
            await pilot.press("shift+left", "end", "home")
            assert curve.cursor == 0
            await pilot.press("s")
            await pilot.pause()

            tuned = recipe_file.with_name("quickstart.tuned.toml")
            assert session.tuned == tuned and tuned.exists()
            assert recipe_file.read_text(encoding="utf-8") == original  # never over the original
            saved = tomllib.loads(tuned.read_text(encoding="utf-8"))
            assert saved["optimizer"]["lr"] == float(f"{peak:.4g}") == pytest.approx(peak, rel=1e-3)
            assert saved["tricks"]["one_cycle"]["max_lr"] == float(f"{peak:.4g}")
            assert saved["tricks"]["one_cycle"]["div_factor"] == float(f"{peak / base:.4g}")
            assert saved["data"]["name"] == "digits"  # the --set overrides are in it
            text = tuned.read_text(encoding="utf-8")
            assert "# cycled 0.95 -> 0.85 -> 0.95 by one_cycle" in text  # comments kept...
            assert "# peak LR of the cycle" not in text  # ...but not those the new values make false
            assert 'name = "digits" # from --set' in text and "lr = " + f"{peak:.4g}" + " # chosen with the LR range test" in text
            # the header says where the numbers came from, and the range test left its files
            (record,) = (recipe_file.parent / "runs").glob("quickstart-lr-find-*")
            assert {"lr_find.csv", "lr_find.json", "lr_find.png"} <= {f.name for f in record.iterdir()}
            assert text.startswith(f"# tuned copy of {recipe_file} with --set data.name=digits")
            assert f"# trickbag tui, bounds picked on the curve: range test of 50 steps from 0.0001 to 10, files in {record}" in text

            # the schedule preview follows the bounds: starts at base, peaks at max
            await pilot.press("2")
            preview = app.screen.query_one(SchedulePanel).preview
            assert max(preview.lr) == pytest.approx(float(f"{peak:.4g}"), rel=1e-3)
            assert preview.lr[0] == pytest.approx(base, rel=2e-3)
            assert len(preview.lr) == preview.steps == 110  # 11 steps an epoch, 10 epochs

            # a second save never overwrites the first
            await pilot.press("1", "s")
            assert session.tuned == recipe_file.with_name("quickstart.tuned-2.toml")

    asyncio.run(flow())


def test_bounds_must_be_ordered(recipe_file, shared_run):
    """b above max (or m below base) is refused with a notice and changes nothing, so the curve, the
    preview and the launch always agree; b during a sweep says to wait for its end."""

    async def flow():
        app = make_app(recipe_file, shared_run, sweep=SweepSettings(start=1e-5, end=1e-4, steps=5000))
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.screen.query_one(LRFindPanel)
            await until(pilot, lambda: panel.ready)
            await pilot.press("r")
            await until(pilot, lambda: len(panel.curve.lrs) >= 3)
            await pilot.press("b")
            await until(pilot, lambda: any("range test is running" in n.message for n in app._notifications))
            await pilot.press("escape")
            await until(pilot, lambda: panel.state == "done")
            await app.workers.wait_for_complete()

            app.session.settings = SWEEP
            panel = await swept(pilot)
            session, curve = app.session, panel.curve
            base, peak = session.base_lr, session.max_lr
            await pilot.press("end", "b")  # base at the largest LR: above max, refused
            assert (session.base_lr, session.max_lr) == (base, peak) and curve.base_lr == base
            assert any("must be below max_lr" in n.message for n in app._notifications)
            await pilot.press("home", "m")  # max at the smallest LR: below base, refused
            assert (session.base_lr, session.max_lr) == (base, peak) and curve.max_lr == peak
            assert session.bounds_problem() is None and session.bounded_recipe().optimizer.lr == float(f"{peak:.4g}")
            await pilot.press("home", "b", "s")
            assert session.base_lr == curve.lrs[0] and app.session.tuned is not None

    asyncio.run(flow())


def test_escape_cancels_and_restores_the_model(recipe_file, shared_run):
    """A long sweep, cancelled after its first steps: weights, optimizer state and RNG as before."""

    async def flow():
        app = make_app(recipe_file, shared_run, sweep=SweepSettings(start=1e-5, end=1e-4, steps=5000))
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.screen.query_one(LRFindPanel)
            await until(pilot, lambda: panel.ready)
            before = state_of(shared_run)
            await pilot.press("r")
            await until(pilot, lambda: len(panel.curve.lrs) >= 3)  # it really trained some steps
            await pilot.press("escape")
            await until(pilot, lambda: panel.state == "done")
            await app.workers.wait_for_complete()
            result = app.session.result
            assert result.stopped == "cancelled" and 3 <= len(result.lrs) < 5000
            assert app.session.max_lr is None  # a cancelled sweep suggests no bounds
            assert_same(before, state_of(shared_run))
            # and a rerun from the form starts from the same weights: the same first losses
            await pilot.press("f")
            form = app.screen
            form.query_one("#steps").value = "8"
            form.query_one("#end").value = "1e-4"
            await pilot.press("enter")
            await until(pilot, lambda: panel.state == "done")
            await app.workers.wait_for_complete()
            assert app.session.settings.steps == 8 and len(app.session.result.lrs) == 8
            assert app.session.result.losses[:2] == result.losses[:2]  # same start LR: same first two steps

    asyncio.run(flow())


class Gate:
    """A training observer that holds the run at the end of its first epoch until released."""

    def __init__(self) -> None:
        self.reached, self.release = threading.Event(), threading.Event()

    @hookimpl
    def trickbag_epoch_end(self, state, metrics):
        if metrics["epoch"] == 1:
            self.reached.set()
            assert self.release.wait(60)


def test_launch_watch_and_stop(recipe_file, shared_run):
    """l trains the saved tuned recipe; the plots and progress follow; x stops it; the finished
    epoch's checkpoint stays in the run folder."""
    gate = Gate()

    async def flow():
        app = make_app(recipe_file, shared_run, overrides=[*OVERRIDES, "training.epochs=3"], out_dir=Path("run-a"), observers=[gate])
        async with app.run_test(size=(80, 24)) as pilot:
            await swept(pilot)
            await pilot.press("s", "4")
            train = app.screen.query_one(TrainPanel)
            assert "quickstart.tuned.toml" in str(train.query_one("#train-plan").render())
            await pilot.press("l")
            await until(pilot, lambda: gate.reached.is_set() and len(train.steps) >= 11)
            assert train.training and train.query_one("#train-progress").percentage > 0.25
            assert train.query_one("#train-loss").has_data and train.query_one("#train-lr").has_data
            await pilot.press("1", "r")  # no range test while training: one at a time
            assert app.screen.query_one(LRFindPanel).state == "done"
            await pilot.press("4", "x")
            assert train.stopping
            gate.release.set()
            await until(pilot, lambda: not train.training)
            await app.workers.wait_for_complete()
            assert len(train.rows) == 1 and train.query_one("#train-acc").has_data
            status = str(train.query_one("#train-status").render())
            assert "stopped: 1 finished epoch kept in run-a" in status and "continue: trickbag run --resume run-a" in status
            assert app.session.launched == [{"out_dir": Path("run-a"), "status": "stopped", "epochs": 1, "val_acc": train.rows[-1]["val_acc"]}]
            saved = torch.load(recipe_file.parent / "run-a" / "checkpoint.pt", weights_only=True)
            assert saved["epoch"] == 1
            assert saved["recipe"]["optimizer"]["lr"] == tomllib.loads(recipe_file.with_name("quickstart.tuned.toml").read_text())["optimizer"]["lr"]

    asyncio.run(flow())


def test_resize_help_and_tabs(recipe_file, shared_run):
    async def flow():
        app = make_app(recipe_file, shared_run)
        async with app.run_test(size=(80, 24)) as pilot:
            panel = await swept(pilot)
            small = panel.curve.size
            await pilot.resize_terminal(120, 40)
            await pilot.pause()
            assert panel.curve.size.width > small.width and panel.curve.size.height > small.height
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            assert panel.curve.size == small
            for key, tab in (("2", "schedule"), ("3", "momentum"), ("4", "train"), ("5", "tricks"), ("1", "lr")):
                await pilot.press(key)
                assert app.screen.query_one("TabbedContent").active == tab
            keys = set(app.screen.active_bindings)
            assert {"left", "b", "m", "s", "r", "question_mark", "q"} <= keys  # the footer's keys
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            await pilot.press("escape")
            assert isinstance(app.screen, MainScreen)
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(flow())


def test_without_a_recipe_pick_a_bundled_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def flow():
        app = TrickbagApp(None, None, OVERRIDES)
        async with app.run_test(size=(80, 24)) as pilot:
            assert type(app.screen).__name__ == "RecipePicker"
            names = list(bundled())
            await pilot.press(*["down"] * names.index("quickstart"), "enter")
            await until(pilot, lambda: isinstance(app.screen, MainScreen))
            assert app.session.recipe.name == "quickstart" and app.session.recipe.data.name == "digits"
            assert app.sub_title == "quickstart.toml"
            await until(pilot, lambda: app.screen.query_one(LRFindPanel).ready)
            assert app.session.tuned_target() == tmp_path / "quickstart.tuned.toml"  # a bundled recipe's copy: here

    asyncio.run(flow())


# ------------------------------------------------------------------------------------------------
# snapshots: a deterministic (seeded, single-thread) sweep, nothing timed on screen


RECORDED = Path(__file__).parent / "data" / "tui"


def replayed_sweep(run, start, end, steps, mode, diverge, smooth, on_step=None, should_stop=None):
    """The range test as recorded: the same per-step messages, the same result, nothing trained."""
    from trickbag.lr_range.outputs import read_outputs

    result = read_outputs(RECORDED / "sweep")
    for i, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed)):
        if on_step is not None:
            on_step(i, lr, loss, smoothed)
    return result


def replayed_fit(recipe, out_dir, observers=()):
    """A training run as recorded, told to the observers through the hooks the loop calls."""
    import json
    from types import SimpleNamespace

    recorded = json.loads((RECORDED / "train.json").read_text())

    def call(name, **kwargs):
        for observer in observers:
            if hasattr(observer, name):
                getattr(observer, name)(**kwargs)

    per_epoch = sum(1 for s in recorded["steps"] if s["progress"] < 1)
    call("trickbag_fit_start", context=SimpleNamespace(recipe=recipe, epochs=recipe.training.epochs, steps_per_epoch=per_epoch))
    for row in recorded["rows"]:
        for step in (s for s in recorded["steps"] if int(s["progress"]) == row["epoch"] - 1):
            call("trickbag_step_end", state=SimpleNamespace(**{**step, "loss": torch.tensor(step["loss"])}))
        call("trickbag_epoch_end", state=SimpleNamespace(epoch=row["epoch"] - 1), metrics=row)
    return {**recorded["summary"], "history": recorded["rows"]}


def snapshot_app(recipe_file, shared_run, **options) -> TrickbagApp:
    app = make_app(recipe_file, shared_run, out_dir=Path("run-snap"), **options)
    app.session.sweep_with, app.session.fit_with = replayed_sweep, replayed_fit
    return app


async def after_sweep(pilot, *keys: str) -> None:
    await swept(pilot)
    await pilot.press("left", "left", "left", "b", *keys)
    pilot.app.clear_notifications()
    await pilot.pause()


def test_snapshot_lr_find(snap_compare, recipe_file, shared_run):
    assert snap_compare(snapshot_app(recipe_file, shared_run), run_before=after_sweep)


def test_snapshot_lr_find_before_a_sweep(snap_compare, recipe_file, shared_run):
    async def ready(pilot):
        panel = pilot.app.screen.query_one(LRFindPanel)
        await until(pilot, lambda: panel.ready)

    assert snap_compare(snapshot_app(recipe_file, shared_run), run_before=ready)


def test_snapshot_schedule(snap_compare, recipe_file, shared_run):
    assert snap_compare(snapshot_app(recipe_file, shared_run), run_before=lambda pilot: after_sweep(pilot, "2"))


def test_snapshot_schedule_batch_size_milestones(snap_compare, recipe_file, shared_run):
    overrides = [*OVERRIDES, "tricks.batch_size_schedule.milestones=[4, 7]", "tricks.batch_size_schedule.factor=2"]
    app = make_app(recipe_file, shared_run, overrides=overrides)

    async def tab(pilot):
        await until(pilot, lambda: pilot.app.screen.query_one(SchedulePanel).preview is not None)
        await pilot.press("2")

    assert snap_compare(app, run_before=tab)


def test_snapshot_momentum(snap_compare, recipe_file, shared_run):
    assert snap_compare(snapshot_app(recipe_file, shared_run), run_before=lambda pilot: after_sweep(pilot, "3"))


def test_snapshot_train(snap_compare, recipe_file, shared_run):
    app = snapshot_app(recipe_file, shared_run, overrides=[*OVERRIDES, "training.epochs=2"])

    async def trained(pilot):
        await after_sweep(pilot, "s", "4", "l")
        train = pilot.app.screen.query_one(TrainPanel)
        await until(pilot, lambda: train.last != "")
        await pilot.app.workers.wait_for_complete()
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, run_before=trained)


def test_snapshot_tricks(snap_compare, recipe_file, shared_run):
    assert snap_compare(snapshot_app(recipe_file, shared_run), press=["5", "down", "down", "down", "down"])


def test_snapshot_help(snap_compare, recipe_file, shared_run):
    assert snap_compare(snapshot_app(recipe_file, shared_run), press=["question_mark"])


def test_snapshot_sweep_form(snap_compare, recipe_file, shared_run):
    async def form(pilot):
        await pilot.press("f")
        for field in pilot.app.screen.query("Input"):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(snapshot_app(recipe_file, shared_run), run_before=form)


def test_snapshot_recipe_picker(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert snap_compare(TrickbagApp(None, None, OVERRIDES))


def test_a_recipe_whose_data_is_missing_says_so(recipe_file):
    """The run cannot be prepared (CIFAR-10 files absent): one line on each tab, no crash."""

    async def flow():
        app = make_app(recipe_file, overrides=["data.name=cifar10", f"data.root={recipe_file.parent / 'nowhere'}"])
        async with app.run_test(size=(80, 24)) as pilot:
            panel = app.screen.query_one(LRFindPanel)
            await until(pilot, lambda: panel.error is not None)
            assert "error:" in str(panel.query_one("#lr-status").render())
            await pilot.press("r")
            await until(pilot, lambda: panel.state == "idle" and not app.session.sweeping)
            await app.workers.wait_for_complete()
            assert app.session.result is None
            await pilot.press("2")
            assert "does not exist" in str(app.screen.query_one("#schedule-info").render())

    asyncio.run(flow())


def test_a_burst_of_tab_keys_lands_on_the_last_and_stays(recipe_file, shared_run):
    """3 5 1 within a few milliseconds (key repeat, a fast hand): the app ends on tab 1, stays there,
    and keys still work (before the fix it cycled 1 -> 3 -> 5 and only q got through)."""
    from textual import events
    from textual.widgets import TabbedContent
    from trickbag_tui.screens.help import HelpScreen

    async def flow():
        app = make_app(recipe_file, shared_run)
        async with app.run_test(size=(80, 24)) as pilot:
            tabs = app.screen.query_one(TabbedContent)
            await until(pilot, lambda: app.screen.query_one(LRFindPanel).ready)
            for key in "351":  # queued at once, as a burst arrives
                app.post_message(events.Key(key, key))
            seen = []
            for _ in range(30):
                await pilot.pause(0.05)
                seen.append(tabs.active)
            assert set(seen[5:]) == {"lr"}, seen
            assert isinstance(app.focused, LRCurve)  # the tab's keys reach it
            await pilot.press("2")
            assert tabs.active == "schedule"
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)

    asyncio.run(flow())


def test_sweep_steps_reach_the_ui_in_batches(recipe_file, shared_run, monkeypatch):
    """Hundreds of fast steps arrive as a few messages (at most one per 0.1 s), so the UI thread
    is never flooded and keys stay answered during a sweep."""
    batches = []
    extend = LRCurve.extend
    monkeypatch.setattr(LRCurve, "extend", lambda self, steps: (batches.append(len(steps)), extend(self, steps)))

    took = []

    def slow_sweep(run, *args, on_step=None, should_stop=None, **kwargs):
        result = replayed_sweep(run, *args, **kwargs)  # the recorded curve, 50 points...
        t0 = time.monotonic()
        for i in range(400):  # ...told as 400 steps over about 0.4 s
            on_step(i, result.lrs[i % 50], result.losses[i % 50], result.smoothed[i % 50])
            time.sleep(0.001)
        took.append(time.monotonic() - t0)
        return result

    async def flow():
        app = make_app(recipe_file, shared_run)
        app.session.sweep_with = slow_sweep
        async with app.run_test(size=(80, 24)) as pilot:
            await swept(pilot)
            assert sum(batches) == 400 and 1 <= len(batches) <= took[0] / 0.1 + 2  # one per 0.1 s, plus the last

    asyncio.run(flow())


def test_runs_launched_from_the_tui_are_listed_on_exit(capsys):
    """The screen is gone after q: where the runs went, and the command that continues a stopped one."""
    from types import SimpleNamespace

    from trickbag_tui.app import print_launched

    print_launched(SimpleNamespace(launched=[
        {"out_dir": Path("runs/a"), "status": "done", "epochs": 10, "val_acc": 0.98},
        {"out_dir": Path("runs/b"), "status": "stopped", "epochs": 2, "val_acc": 0.9},
    ]))
    err = capsys.readouterr().err
    assert "run runs/a: done, 10 epoch(s) finished, val_acc 0.9800\n" in err
    assert "run runs/b: stopped, 2 epoch(s) finished, val_acc 0.9000; continue with  trickbag run --resume runs/b" in err


def test_the_curve_keeps_its_window_zooms_and_resweeps_between_the_bounds(recipe_file, shared_run, monkeypatch):
    """The window never narrows onto noise; raw losses outside it are left out (not pinned to an
    edge); z narrows the x axis to the chosen bounds; R runs the range test again between them."""
    dots = []

    async def flow():
        app = snapshot_app(recipe_file, shared_run)
        async with app.run_test(size=(80, 24)) as pilot:
            panel = await swept(pilot)
            curve, session = panel.curve, app.session
            low, high = curve.y_range()
            first = curve.smoothed[0]
            assert high - low >= 0.2 * first  # at least a fifth of the first loss, whatever the curve
            scatter = curve.plt.scatter
            monkeypatch.setattr(curve.plt, "scatter", lambda x, y, **kw: (dots.append((kw.get("marker"), list(y))), scatter(x, y, **kw)))
            curve.redraw()
            raw = [ys for marker, ys in dots if marker == "dot"]
            assert raw and all(low <= v <= high for v in raw[0])
            assert len(raw[0]) == sum(1 for v in curve.losses if low <= v <= high)  # the others are left out
            await pilot.press("left", "left", "left", "b", "z")
            assert curve.view == (session.base_lr / 2, session.max_lr * 2)
            await pilot.press("z")
            assert curve.view is None
            base, peak = session.base_lr, session.max_lr
            await pilot.press("R")
            await until(pilot, lambda: panel.state == "done")
            await app.workers.wait_for_complete()
            assert (session.settings.start, session.settings.end) == (base, peak) and curve.span == (base, peak)

    asyncio.run(flow())


def test_v_verifies_the_chosen_max_and_marks_the_winner(recipe_file, shared_run):
    """v runs lr-find --verify's training on the chosen max_lr (here a recorded one, not trained):
    the winner gets a ✓ on the curve and a line under it."""
    from trickbag.lr_range.verify import Candidate, Verification

    asked = []

    def fake_verify(recipe, lr, on_epoch=lambda: None, **kwargs):
        asked.append(lr)
        for _ in range(3):
            on_epoch()
        return Verification(lr, [Candidate(lr, 1.0, [0.9]), Candidate(lr / 2, 0.5, [0.8]), Candidate(2 * lr, 2.0, [0.95])], [0], 10, 3.0)

    async def flow():
        app = snapshot_app(recipe_file, shared_run)
        app.session.verify_with = fake_verify
        async with app.run_test(size=(80, 24)) as pilot:
            panel = await swept(pilot)
            await pilot.press("v")
            await until(pilot, lambda: panel.state == "done" and app.session.verification is not None)
            assert asked == [app.session.max_lr]
            assert panel.curve.verified == pytest.approx(2 * asked[0])
            assert "won by 5.00 points (3 LRs trained)" in str(panel.query_one("#lr-status").render())

    asyncio.run(flow())


def test_a_run_folder_opens_on_its_curves(tmp_path, monkeypatch, shared_run):
    """`trickbag tui RUN_FOLDER` (an ablation's run, a killed run): the Train tab shows its epochs,
    how far it got and how to continue it."""
    from trickbag.cli.app import app as cli
    from trickbag.engine.loop import fit
    from trickbag.runs.folder import read_metrics
    from typer.testing import CliRunner

    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(bundled_recipes()["quickstart"], [*OVERRIDES, "training.epochs=3"])

    class StopInEpoch3:
        @hookimpl
        def trickbag_step_end(self, state):
            if state.epoch == 2 and state.step_in_epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(recipe, tmp_path / "run", observers=[StopInEpoch3()])
    rows = read_metrics(tmp_path / "run")

    async def flow():
        app = TrickbagApp(tmp_path / "run" / "recipe.toml", load_recipe(tmp_path / "run" / "recipe.toml"), run=shared_run,
                          opened=tmp_path / "run")
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert app.screen.query_one("TabbedContent").active == "train"
            panel = app.screen.query_one(TrainPanel)
            assert panel.rows == rows and len(rows) == 2 and panel.epochs == 3
            status = str(app.screen.query_one("#train-status").render())
            assert "interrupted, 2/3 epochs" in status and "trickbag run --resume run" in status
            assert f"best val_acc {max(r['val_acc'] for r in rows):.4f}" in status
            await pilot.press("q")

    asyncio.run(flow())
    bad = CliRunner().invoke(cli, ["tui", str(tmp_path / "run"), "--set", "training.epochs=9"])
    assert bad.exit_code == 2 and "is a run folder" in bad.output
    (tmp_path / "empty").mkdir()
    assert CliRunner().invoke(cli, ["tui", str(tmp_path / "empty")]).exit_code == 2
