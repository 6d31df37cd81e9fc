"""What a checkpoint holds of a run, and putting it back on ``--resume``."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import nn

from trickbag.context import TrainState
from trickbag.engine.assemble import Run
from trickbag.errors import UserError
from trickbag.runs.checkpoint import checked_state

log = logging.getLogger("trickbag")


def snapshot(run: Run, state: TrainState, epochs_done: int, best: float, elapsed: float, history: list[dict[str, Any]],
             evaluated: nn.Module | None = None) -> dict[str, Any]:
    """The run after ``epochs_done`` epochs: everything ``--resume`` needs to continue bit for bit,
    and the metrics history (the checkpoint is its source of truth, see runs/folder.py). When a
    trick's ``trickbag_eval_model`` answered, ``eval_model`` holds the weights validation scored (an
    EMA or SWA average: what ``load_model`` returns); ``model`` stays the training weights."""
    extra = {"eval_model": evaluated.state_dict()} if evaluated is not None else {}
    return {
        "epoch": epochs_done, "global_step": state.global_step, "samples_seen": state.samples_seen,
        "world_size": run.world_size, "best_val_acc": best, "elapsed": elapsed, "history": list(history),
        "model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "tricks": {name: checked_state(name, obj.state_dict()) for name, obj in run.tricks.items() if hasattr(obj, "state_dict")},
        "recipe": run.recipe.to_dict(),
        "info": dataclasses.asdict(run.train.info),  # rebuilds the model without loading the data (runs/model.py)
        **extra,
    }


def best_weights(run: Run, row: dict[str, Any], evaluated: nn.Module | None = None) -> dict[str, Any]:
    """``best.pt``: the weights of the best epoch by val_acc, with what rebuilds and describes them:
    the weights validation scored, a trick's average (``trickbag_eval_model``) when it answered."""
    scored = evaluated if evaluated is not None else run.raw_model
    return {"epoch": row["epoch"], "val_acc": row["val_acc"], "metrics": dict(row), "model": scored.state_dict(),
            "recipe": run.recipe.to_dict(), "info": dataclasses.asdict(run.train.info)}


def restore(run: Run, saved: dict[str, Any]) -> None:
    started = saved.get("world_size")  # absent in checkpoints written before it was recorded
    if started is not None and started != run.world_size:
        log.warning(f"--resume: the run started on {started} process(es) and continues on {run.world_size}: the global batch "
                    f"(and with linear scaling, the LR) changes from here, so this is no longer the run that started")
    try:
        run.raw_model.load_state_dict(saved["model"])
        run.optimizer.load_state_dict(saved["optimizer"])
    except KeyError as exc:  # torch says only "'step'": say what is missing where
        raise UserError(f"the checkpoint does not fit the recipe's optimizer: its state lacks the entry {exc}") from None
    except (RuntimeError, ValueError, TypeError) as exc:
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        # torch's first line is "Error(s) in loading state_dict for X:"; the next names the tensors
        detail = "; ".join(lines[:2]) if lines else type(exc).__name__
        raise UserError(f"the checkpoint does not fit the recipe's model or optimizer: {detail[:300]}") from None
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    for name, obj in run.tricks.items():
        if not hasattr(obj, "load_state_dict"):
            continue
        if name not in saved.get("tricks", {}):  # resuming without it would silently start it afresh
            raise UserError(f"--resume: the checkpoint holds no state for trick '{name}', which the recipe enables "
                            "(it was added after the run started, or its plugin saved none)")
        obj.load_state_dict(saved["tricks"][name])
    # load_state_dict replaced the optimizer's group dicts: point the LR setter at the new ones
    run.group_scales = [(g, g.get("lr_scale", 1.0)) for g in run.optimizer.param_groups]
