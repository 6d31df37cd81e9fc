"""TensorBoard logs of a run, through ``torch.utils.tensorboard``, in ``<run folder>/tensorboard``
(so ``tensorboard --logdir runs`` shows every run, each under its folder's name).

Logged, with the global optimizer step on the x axis:

* ``train/loss``: the training loss of every ``every``-th step. The loss is a tensor still on the
  device; reading it each step would synchronise the device each step, so the sampled losses are
  kept as tensors and read together at the end of the epoch (one synchronisation per epoch).
* ``train/lr``, ``train/momentum``, ``train/batch_size`` (global), ``train/noise_scale``: at the
  same steps, from host values. The noise scale is Smith & Le's g = lr (N / B - 1), N the training
  samples and B the global batch (what ``trickbag schedule`` draws).
* ``epoch/<metric>``: every value of the epoch's metrics row (``val_acc``, ``val_loss``,
  ``train_loss``...), at the epoch's last step.
* the resolved recipe as TOML text (``recipe``), and at the end of the run as hparams (every scalar
  recipe value, flattened to ``section.key``) with ``best_val_acc`` and ``final_val_acc``.

Only rank 0 writes (under ``torchrun`` the others would log the same numbers); an LR range test
logs nothing (its steps are undone). A resumed run reopens the same folder and drops the events of
steps it is about to redo (``purge_step``), so no curve doubles back.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from pydantic import Field, StrictInt
from trickbag import TrickOptions, TrickSpec, hookimpl

log = logging.getLogger("trickbag")

#: the folder inside the run folder
SUBDIR = "tensorboard"


class TensorBoardOptions(TrickOptions):
    every: StrictInt = Field(10, ge=1, le=10**6, description="log the step scalars every this many optimizer steps")


def flat_scalars(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``: the values hparams can show
    (numbers, strings, booleans); lists become their string."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_scalars(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif value is not None:
            out[name] = str(value)
    return out


class TensorBoard:
    def __init__(self, options: TensorBoardOptions) -> None:
        self.every = options.every
        self.context = None
        self.writer = None
        self.losses: list[tuple[int, torch.Tensor]] = []  # (step, loss on the device) until the epoch ends

    @hookimpl
    def trickbag_fit_start(self, context):
        self.context = context
        if context.rank != 0:
            return
        if context.out_dir is None:
            log.info("tensorboard: this run has no run folder; nothing is logged")

    def _open(self, state) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on resume, the steps after the checkpoint's last one (global_step; logged as the
        # step count after each step) were written by the interrupted process and are about to be
        # logged again; the checkpoint's own last step and its epoch metrics stay
        self.writer = SummaryWriter(log_dir=str(self.context.out_dir / SUBDIR), purge_step=state.global_step + 1 if state.global_step else None)
        if state.global_step == 0:
            self.writer.add_text("recipe", "```toml\n" + self.context.recipe.to_toml() + "\n```", 0)

    def _active(self, state) -> bool:
        return self.context is not None and self.context.rank == 0 and self.context.out_dir is not None and not state.sweep

    @hookimpl
    def trickbag_epoch_start(self, state):
        if self._active(state) and self.writer is None:
            self._open(state)

    @hookimpl
    def trickbag_step_end(self, state):
        if not self._active(state) or state.global_step % self.every:
            return
        step = state.global_step
        self.losses.append((step, state.loss))  # no .item(): that would wait for the device every step
        batch = state.batch_size * state.world_size
        w = self.writer
        w.add_scalar("train/lr", state.lr, step)
        if state.momentum is not None:
            w.add_scalar("train/momentum", state.momentum, step)
        w.add_scalar("train/batch_size", batch, step)
        w.add_scalar("train/noise_scale", state.lr * (self.context.info.train_size / batch - 1), step)

    @hookimpl
    def trickbag_epoch_end(self, state, metrics):
        if not self._active(state):
            return
        if self.losses:
            values = torch.stack([loss.float() for _, loss in self.losses]).cpu().tolist()  # the epoch's one sync
            for (step, _), value in zip(self.losses, values):
                self.writer.add_scalar("train/loss", value, step)
            self.losses.clear()
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch",):
                self.writer.add_scalar(f"epoch/{key}", value, state.global_step)
        self.writer.flush()

    @hookimpl
    def trickbag_fit_end(self, state, summary):
        if self.writer is None:
            return
        final = state.metrics.get("val_acc", float("nan"))
        self.writer.add_hparams(flat_scalars(self.context.recipe.to_dict()),
                                {"hparam/best_val_acc": summary.get("best_val_acc", float("nan")), "hparam/final_val_acc": final},
                                run_name=".")
        self.writer.close()
        self.writer = None


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("tensorboard", TensorBoardOptions, TensorBoard,
                     "TensorBoard logs in the run folder: step loss (sampled, no per-step sync), LR, momentum, batch size, noise scale, epoch metrics, recipe hparams")
