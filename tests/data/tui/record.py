"""Record the sweep and the training history the TUI snapshot tests replay.

Training numbers differ from one CPU to another (kernel choice by instruction set), so snapshot
tests never train: they replay these recordings through the same messages and widgets, and the
snapshots then look the same on every machine. Re-record (and update the snapshots) only when the
recipe or settings of tests/test_tui.py change:

    python tests/data/tui/record.py && pytest tests/test_tui.py --snapshot-update
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from trickbag.engine.assemble import prepare_run
from trickbag.engine.loop import fit
from trickbag.hookspecs import hookimpl
from trickbag.lr_range.outputs import write_outputs
from trickbag.lr_range.sweep import sweep
from trickbag.recipe import load_recipe
from trickbag.services import bundled_recipes

HERE = Path(__file__).parent
OVERRIDES = ["data.name=digits", "data.val_size=297", "model.name=small_cnn", "model.width=8"]


class Steps:
    def __init__(self):
        self.steps = []

    @hookimpl
    def trickbag_step_end(self, state):
        self.steps.append({"global_step": state.global_step, "progress": state.progress, "step_in_epoch": state.step_in_epoch,
                           "loss": state.loss.item(), "lr": state.lr})


def main() -> None:
    torch.set_num_threads(1)
    recipe = load_recipe(bundled_recipes()["quickstart"], OVERRIDES)
    run = prepare_run(recipe)
    result = sweep(run, start=1e-4, end=10.0, steps=50)
    write_outputs(result, HERE / "sweep", recipe.to_dict())
    (HERE / "sweep" / "lr_find.png").unlink()  # not replayed
    s = result.suggestions
    trained = load_recipe(bundled_recipes()["quickstart"], [*OVERRIDES, "training.epochs=2", f"optimizer.lr={s.recommended:.4g}"])
    steps = Steps()
    summary = fit(trained, None, observers=[steps])
    (HERE / "train.json").write_text(json.dumps({"steps": steps.steps, "rows": summary["history"], "summary": {
        k: summary[k] for k in ("best_val_acc", "final_val_acc", "seconds", "epochs")}}, indent=1))


if __name__ == "__main__":
    main()
