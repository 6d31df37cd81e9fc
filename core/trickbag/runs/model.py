"""Rebuilding a run's model: for a distillation teacher, an evaluation script, an export.

``load_model(run_dir)`` reads the run's ``checkpoint.pt`` (with ``weights_only=True``), rebuilds
the architecture from the recipe stored inside it, through the same hooks a run uses (a trick
that brings or rewrites the architecture, such as ResNet-D or Fixup, must be installed), and
loads the weights: those the run's last validation scored, which are a trick's weight average
(``eval_model``, from EMA or SWA) when one answered ``trickbag_eval_model``, else the training
weights (``weights="trained"`` always gives the training weights). ``build_model(recipe)`` does the
same without weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from trickbag.context import RunContext
from trickbag.data import DataInfo, load_data
from trickbag.errors import UserError
from trickbag.plugins import Catalog, blamed, load_plugins, run_manager
from trickbag.recipe import Recipe, build_recipe
from trickbag.runs.checkpoint import CHECKPOINT, load_checkpoint


@dataclass
class LoadedModel:
    model: nn.Module  # in eval mode, on the device asked for
    recipe: Recipe  # the run's resolved recipe (from inside the checkpoint)
    info: DataInfo  # the data it was trained on: classes, channels, size, normalisation
    epoch: int  # epochs the weights were trained for


def build_model(recipe: Recipe, info: DataInfo | None = None, catalog: Catalog | None = None) -> nn.Module:
    """The recipe's model, freshly initialised exactly as a run builds it (``build_model`` and
    ``configure_model`` hooks of the recipe's tricks), on the CPU. Without ``info`` the data set is
    loaded to learn its shape."""
    if info is None:
        info = load_data(recipe.data, torch.device("cpu"))[0].info
    pm, tricks = run_manager(recipe.tricks, catalog or load_plugins())
    steps = max(1, info.train_size // recipe.training.batch_size)
    context = RunContext(recipe=recipe, info=info, device=torch.device("cpu"), steps_per_epoch=steps, tricks=tricks)
    with blamed(pm):
        model = pm.hook.trickbag_build_model(config=recipe.model, info=info)
        pm.hook.trickbag_configure_model(model=model, info=info, context=context)
    return model


def load_model(run_dir: str | Path, device: str | torch.device = "cpu", catalog: Catalog | None = None, *,
               weights: Literal["evaluated", "trained"] = "evaluated") -> LoadedModel:
    """The trained model of the run folder ``run_dir`` (its last checkpoint), in eval mode.

    ``weights="evaluated"``: the weights the last epoch's validation scored (an EMA or SWA average
    when the run had one, see ``trickbag_eval_model``), so the model scores the last ``val_acc``;
    ``"trained"``: the training weights the optimizer moved (what ``--resume`` continues)."""
    if weights not in ("evaluated", "trained"):
        raise UserError(f"weights '{weights}': 'evaluated' or 'trained'")
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run folder '{path}' does not exist")
    saved = load_checkpoint(path / CHECKPOINT)
    if "recipe" not in saved:
        raise UserError(f"{path / CHECKPOINT} holds no recipe: it is not a trickbag run checkpoint")
    recipe = build_recipe(saved["recipe"], where=str(path / CHECKPOINT), name=path.name, catalog=catalog)
    info = DataInfo(**{**saved["info"], "image_size": tuple(saved["info"]["image_size"]),
                       "mean": tuple(saved["info"]["mean"]), "std": tuple(saved["info"]["std"])}) if "info" in saved else None
    # the fresh initialisation is overwritten by the checkpoint: draw it from a forked RNG, so loading
    # a model (a distillation teacher in a trick's check) never moves the caller's random stream
    with torch.random.fork_rng(devices=[]):
        model = build_model(recipe, info, catalog)
    try:
        model.load_state_dict(saved["eval_model"] if weights == "evaluated" and "eval_model" in saved else saved["model"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"{path / CHECKPOINT}: the weights do not fit the recipe's model ({str(exc).strip().splitlines()[0]})") from None
    info = info or load_data(recipe.data, torch.device("cpu"))[0].info
    return LoadedModel(model.to(device).eval(), recipe, info, int(saved["epoch"]))
