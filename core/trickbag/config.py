"""The recipe's built-in sections as pydantic models: types, defaults and ranges in one place.

Every section forbids unknown keys so a typo is reported (with the closest valid name, see
``recipe.py``) instead of being silently ignored. Types are strict where a lax conversion would
hide a mistake (``batch_size = true`` is not 1, ``flip = "no"`` is not false), numbers are finite,
and sizes have upper bounds, so an absurd value is one line, not an allocation error later.
Units are given in comments, as in airbench.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

#: an option that follows the device (see ``engine/speed.py``) unless set to true or false
Auto = Literal["auto"]


class Section(BaseModel):
    # allow_inf_nan=False: inf, 1e400 (which TOML reads as inf) and nan are refused everywhere
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


BIG = 1 << 24  # a bound no real batch, width or sample count reaches, far below what overflows


class DataConfig(Section):
    """``[data]``: which data set, where validation comes from, and augmentation."""

    name: str = Field(
        "mnist5k", description="mnist5k, digits, mnist, fashion_mnist, cifar10, cifar100, imagefolder, or synthetic_cifar10 (random CIFAR-shaped images for benchmarks)"
    )
    root: str | None = Field(None, description="folder holding the torchvision files or the ImageFolder tree")
    download: StrictBool = Field(False, description="let torchvision download the data set into root (off: never download)")
    val: Literal["holdout", "test"] = Field("holdout", description="holdout: split off the training set; test: the official test split")
    val_size: StrictInt = Field(1000, ge=1, le=BIG, description="samples held out of the training set when val = 'holdout'")
    split_seed: StrictInt = Field(0, ge=0, le=2**63 - 1, description="seed of the holdout split (independent of training.seed)")
    crop_padding: StrictInt = Field(0, ge=0, le=256, description="random crop after zero padding by this many pixels (0: off)")
    flip: StrictBool = Field(False, description="random horizontal flip (off for digits: a flipped 3 is not a 3)")
    image_size: StrictInt | None = Field(None, ge=8, le=4096, description="imagefolder only: resize images to this square size")
    on_device: Literal["auto", "always", "never"] = Field(
        "auto", description="hold the data set as tensors on the training device (auto: when it fits)"
    )
    num_workers: StrictInt = Field(2, ge=0, le=256, description="DataLoader workers for data sets not held on the device")
    subset: StrictInt | None = Field(None, ge=1, le=BIG, description="train on a random subset of this many training samples (quick trials; seeded by split_seed)")


class ModelConfig(BaseModel):
    """``[model]``: a registered model name plus that builder's keyword options.

    Extra keys are allowed here and checked against the builder's signature at build time.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field("small_cnn", description="small_cnn, mlp, resnet20, resnet56, resnet18, resnet50, airbench94, or a plugin's model")

    def builder_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OptimizerConfig(Section):
    """``[optimizer]``: the torch optimizer and its base hyper-parameters."""

    name: str = Field("sgd", description="sgd, adam, adamw, rmsprop, or one a plugin provides (e.g. sgdw)")
    lr: StrictFloat = Field(0.1, gt=0, le=1e6, description="base learning rate (peak for schedules that take it as such)")
    momentum: StrictFloat = Field(0.9, ge=0, lt=1, description="SGD/RMSprop momentum; Adam's beta1 is betas[0]")
    nesterov: StrictBool = Field(False, description="Nesterov momentum (SGD; needs momentum > 0)")
    betas: tuple[StrictFloat, StrictFloat] = Field((0.9, 0.999), description="Adam-family betas, each in [0, 1)")
    eps: StrictFloat = Field(1e-8, gt=0, le=1, description="Adam-family / RMSprop epsilon")
    weight_decay: StrictFloat = Field(0.0, ge=0, le=1e3, description="weight decay (coupled L2 for sgd/adam, decoupled for adamw)")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        for i, beta in enumerate(betas):
            if not 0 <= beta < 1:
                raise ValueError(f"betas[{i}] = {beta:g} must be in [0, 1)")
        return betas

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> "OptimizerConfig":
        if self.nesterov and self.momentum == 0:  # torch refuses it only when the optimizer is built
            raise ValueError("nesterov = true needs momentum > 0")
        return self


class TrainingConfig(Section):
    """``[training]``: budget, batch size, precision and reproducibility."""

    epochs: StrictFloat = Field(10, gt=0, le=1e5, description="run length in epochs (may be fractional)")
    batch_size: StrictInt = Field(128, ge=1, le=BIG, description="samples per optimizer step per device")
    eval_batch_size: StrictInt = Field(1000, ge=1, le=BIG, description="samples per forward pass during evaluation")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast dtype; fp16 adds a grad scaler")
    grad_clip: StrictFloat | None = Field(None, gt=0, description="clip the global gradient norm to this value")
    seed: StrictInt = Field(0, ge=0, le=2**63 - 1, description="seed of weights, data order, augmentation and tricks' randomness")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N or mps")
    deterministic: StrictBool = Field(False, description="ask torch for deterministic kernels (slower on GPU)")
    checkpoint: StrictBool = Field(True, description="write checkpoint.pt (atomically) at the end of every epoch")
    threads: StrictInt | None = Field(None, ge=1, le=1024, description="torch CPU threads (default: torch's choice)")
    # -- speed: "auto" turns on what helps on the device the run lands on; an explicit true on a
    # device where the option does nothing is ignored with one info line, never an error
    channels_last: Auto | StrictBool = Field("auto", description="channels_last memory format for model and batches (auto: on CUDA, for models with 2-d convolutions)")
    compile: StrictBool = Field(False, description="wrap the model in torch.compile (the first steps pay the compilation)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode"
    )
    cudnn_benchmark: Auto | StrictBool = Field("auto", description="let cuDNN time its convolution algorithms and keep the fastest (auto: on CUDA unless deterministic)")
    tf32: Auto | StrictBool = Field("auto", description="TF32 tensor cores for float32 matmuls and convolutions (auto: on CUDA)")
    fused_optimizer: Auto | StrictBool = Field("auto", description="torch's fused SGD/Adam/AdamW kernels (auto: on CUDA); no device sync under fp16's grad scaler")
