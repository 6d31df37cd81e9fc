"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
2015): train the student on a mixture of its own loss and the teacher's softened predictions,

    loss = (1 - alpha) * inner + alpha * T^2 * KL(softmax(r / T) || softmax(z / T)),

with ``r`` the teacher's logits and ``z`` the student's on the same batch, ``inner`` whatever the
inner ``trickbag_loss`` implementations returned (plain or label-smoothed cross-entropy against
the possibly mixed targets), and the KL divergence averaged over the batch. The factor ``T^2``
keeps the soft term's gradient comparable across temperatures: its gradient with respect to ``z``
is ``(softmax(z / T) - softmax(r / T)) / T``, which shrinks as ``1 / T^2`` for large ``T`` (the
difference of the softmaxes is itself ``O(1 / T)``), so ``T^2`` brings it back to ``O(1)``
(paper, section 2.1).

The teacher is an earlier trickbag run folder: its checkpoint (``checkpoint.pt``, the final
weights, or ``best.pt``, those of the best epoch by validation accuracy) is read with
``weights_only=True`` and the model rebuilt from the recipe stored inside it, through the engine's
own loaders (``trickbag.runs``). It is loaded in ``trickbag_fit_start`` (so a resumed run and an LR
range test load it too), in eval mode, without gradients, on the run's device (channels_last when
the run uses it), and run inside the loss hook, so under the run's autocast and on ``batch.inputs``,
the batch the student sees after every transform (mixup, cutmix, cutout). When the teacher's data
were normalised with other statistics than the student's (another split or subset of the same
images), its inputs are re-normalised so it sees the pixels its own pipeline would have given it.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictFloat, StrictStr
from trickbag import TrickOptions, TrickSpec, UserError, hookimpl
from trickbag.data import DataInfo
from trickbag.recipe import build_recipe
from trickbag.runs.checkpoint import BEST, CHECKPOINT, load_checkpoint
from trickbag.runs.model import LoadedModel, build_model, load_model

log = logging.getLogger("trickbag")

WEIGHTS = {"final": CHECKPOINT, "best": BEST}
BEST_SCHEMA: dict[str, tuple[type, ...]] = {"epoch": (int,), "model": (dict,), "recipe": (dict,), "info": (dict,)}  # what best.pt holds


class DistillationOptions(TrickOptions):
    teacher: StrictStr = Field(description="the teacher's run folder (a trickbag run; relative paths are from the working directory)")
    weights: Literal["final", "best"] = Field("final", description="final: the folder's checkpoint.pt; best: its best.pt (best epoch by val_acc)")
    alpha: StrictFloat = Field(0.5, ge=0, le=1, description="weight of the soft term: (1 - alpha) inner + alpha T^2 KL")
    temperature: StrictFloat = Field(4.0, gt=0, description="T: both softmaxes are taken of logits / T")


def distillation_loss(inner: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, alpha: float, temperature: float) -> torch.Tensor:
    """``(1 - alpha) inner + alpha T^2 KL(softmax(teacher / T) || softmax(student / T))``, the KL
    summed over classes and averaged over the batch, in float32 whatever the autocast."""
    t = temperature
    log_p_student = F.log_softmax(_at_least_float32(student) / t, dim=1)
    log_p_teacher = F.log_softmax(_at_least_float32(teacher) / t, dim=1)
    # kl_div(input, target) = sum target * (log target - input): KL(teacher || student)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return (1.0 - alpha) * inner + (alpha * t * t) * kl


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def load_teacher(folder: Path, weights: str, device: torch.device | str = "cpu") -> LoadedModel:
    """The teacher of ``folder`` (eval mode, on ``device``): ``checkpoint.pt`` through
    ``trickbag.load_model``; ``best.pt`` through the same pieces (``load_model`` reads only
    ``checkpoint.pt``). Errors are the engine's one-line ``UserError``s."""
    if weights == "final":
        return load_model(folder, device)
    path = folder / BEST
    saved = load_checkpoint(path, schema=BEST_SCHEMA)
    recipe = build_recipe(saved["recipe"], where=str(path), name=folder.name)
    raw = saved["info"]
    info = DataInfo(**{**raw, "image_size": tuple(raw["image_size"]), "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})
    model = build_model(recipe, info)
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: the weights do not fit the recipe's model ({str(exc).strip().splitlines()[0]})") from None
    return LoadedModel(model.to(device).eval(), recipe, info, int(saved["epoch"]))


class Distillation:
    def __init__(self, options: DistillationOptions) -> None:
        self.folder = options.teacher
        self.weights = options.weights
        self.alpha, self.temperature = options.alpha, options.temperature
        self.teacher: torch.nn.Module | None = None  # loaded in fit_start
        self.teacher_info: DataInfo | None = None
        self._renorm: tuple[torch.Tensor, torch.Tensor] | None = None  # (scale, shift) into the teacher's normalisation
        self._checked: LoadedModel | None = None  # what trickbag_check loaded, until fit_start takes it

    # -- setup ------------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"tricks.distillation.teacher '{self.folder}'"

    def _path(self) -> Path:
        return Path(self.folder).expanduser()

    def _load(self, device) -> LoadedModel:
        """The teacher, every problem a one-line error naming the option and the folder."""
        path, name = self._path(), WEIGHTS[self.weights]
        if not path.exists():
            raise UserError(f"{self._where()} does not exist")
        if not path.is_dir():
            raise UserError(f"{self._where()} is not a run folder")
        if not (path / name).is_file():
            raise UserError(f"{self._where()} holds no {name} (tricks.distillation.weights = \"{self.weights}\")")
        try:
            # building the teacher initialises its weights from torch's global RNG before loading
            # them: fork it, so that the student (built after trickbag_check) starts from the very
            # weights it would have without distillation
            with torch.random.fork_rng(devices=[]):
                return load_teacher(path, self.weights, device)
        except UserError as exc:
            raise UserError(f"{self._where()}: {exc}") from None

    def _fits(self, teacher: DataInfo, student: DataInfo) -> None:
        ours = (student.num_classes, student.in_channels, tuple(student.image_size))
        theirs = (teacher.num_classes, teacher.in_channels, tuple(teacher.image_size))
        if ours != theirs:
            def shape(classes, channels, size):
                return f"{classes} classes of {channels}x{size[0]}x{size[1]} images"
            raise UserError(f"{self._where()} was trained on {teacher.name}, {shape(*theirs)}; "
                            f"the student trains on {student.name}, {shape(*ours)}")

    @hookimpl
    def trickbag_check(self, context):
        # the whole load, on the CPU, so that every teacher problem is one line before any work;
        # fit_start moves this very teacher to the run's device (no second read of the checkpoint)
        loaded = self._load("cpu")
        self._fits(loaded.info, context.info)
        self._checked = loaded

    @hookimpl
    def trickbag_fit_start(self, context):
        loaded, self._checked = self._checked, None
        if loaded is None:  # a caller that skipped trickbag_check
            loaded = self._load(context.device)
            self._fits(loaded.info, context.info)
        teacher = loaded.model.to(context.device)
        if context.speed.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)  # batches arrive channels_last
        teacher.eval().requires_grad_(False)
        self.teacher, self.teacher_info = teacher, loaded.info
        self._renorm = renormalisation(context.info, loaded.info, context.device)
        if self._renorm is not None and context.rank == 0:
            log.info(f"distillation: the teacher's data were normalised with other statistics than {context.info.name}'s; "
                     "its inputs are re-normalised to them")

    # -- every step -------------------------------------------------------------------------------

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            raise RuntimeError("the teacher is not loaded: trickbag_fit_start was not called")
        if self._renorm is not None:
            scale, shift = self._renorm
            inputs = inputs * scale + shift
        with torch.no_grad():
            return self.teacher(inputs)

    @hookimpl(wrapper=True)
    def trickbag_loss(self, outputs, batch, model, state):
        inner = yield
        return distillation_loss(inner, outputs, self.teacher_logits(batch.inputs), self.alpha, self.temperature)


def renormalisation(student: DataInfo, teacher: DataInfo, device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(scale, shift)``, per channel, taking inputs normalised with the student's mean/std to the
    teacher's: ``((x s_s + m_s) - m_t) / s_t``; ``None`` when the statistics are the same."""
    if tuple(student.mean) == tuple(teacher.mean) and tuple(student.std) == tuple(teacher.std):
        return None
    m_s, s_s, m_t, s_t = (torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)
                          for v in (student.mean, student.std, teacher.mean, teacher.std))
    return s_s / s_t, (m_s - m_t) / s_t


@hookimpl
def trickbag_declare_tricks():
    return TrickSpec("distillation", DistillationOptions, Distillation, "match a trained teacher's softened predictions (teacher: a run folder)")
