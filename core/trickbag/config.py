"""The recipe's built-in sections as pydantic models: types, defaults and ranges in one place.

Every section forbids unknown keys so a typo is reported (with the closest valid name, see
``recipe.py``) instead of being silently ignored. Units are given in comments, as in airbench.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: an option that follows the device (see ``engine/speed.py``) unless set to true or false
Auto = Literal["auto"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    """``[data]``: which data set, where validation comes from, and augmentation."""

    name: str = Field(
        "mnist5k", description="mnist5k, digits, mnist, fashion_mnist, cifar10, cifar100, imagefolder, or synthetic_cifar10 (random CIFAR-shaped images for benchmarks)"
    )
    root: str | None = Field(None, description="folder holding the torchvision files or the ImageFolder tree")
    download: bool = Field(False, description="let torchvision download the data set into root (off: never download)")
    val: Literal["holdout", "test"] = Field("holdout", description="holdout: split off the training set; test: the official test split")
    val_size: int = Field(1000, ge=1, description="samples held out of the training set when val = 'holdout'")
    split_seed: int = Field(0, description="seed of the holdout split (independent of training.seed)")
    crop_padding: int = Field(0, ge=0, description="random crop after zero padding by this many pixels (0: off)")
    flip: bool = Field(False, description="random horizontal flip (off for digits: a flipped 3 is not a 3)")
    image_size: int | None = Field(None, ge=8, description="imagefolder only: resize images to this square size")
    on_device: Literal["auto", "always", "never"] = Field(
        "auto", description="hold the data set as tensors on the training device (auto: when it fits)"
    )
    num_workers: int = Field(2, ge=0, description="DataLoader workers for data sets not held on the device")
    subset: int | None = Field(None, ge=1, description="train on a random subset of this many training samples (quick trials; seeded by split_seed)")


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
    lr: float = Field(0.1, gt=0, description="base learning rate (peak for schedules that take it as such)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD/RMSprop momentum; Adam's beta1 is betas[0]")
    nesterov: bool = Field(False, description="Nesterov momentum (SGD)")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam-family betas")
    eps: float = Field(1e-8, gt=0, description="Adam-family / RMSprop epsilon")
    weight_decay: float = Field(0.0, ge=0, description="weight decay (coupled L2 for sgd/adam, decoupled for adamw)")


class TrainingConfig(Section):
    """``[training]``: budget, batch size, precision and reproducibility."""

    epochs: float = Field(10, gt=0, description="run length in epochs (may be fractional)")
    batch_size: int = Field(128, ge=1, description="samples per optimizer step per device")
    eval_batch_size: int = Field(1000, ge=1, description="samples per forward pass during evaluation")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast dtype; fp16 adds a grad scaler")
    grad_clip: float | None = Field(None, gt=0, description="clip the global gradient norm to this value")
    seed: int = Field(0, description="seed of weights, data order, augmentation and tricks' randomness")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto, cpu, cuda, cuda:N or mps")
    deterministic: bool = Field(False, description="ask torch for deterministic kernels (slower on GPU)")
    checkpoint: bool = Field(True, description="write checkpoint.pt (atomically) at the end of every epoch")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    # -- speed: "auto" turns on what helps on the device the run lands on; an explicit true on a
    # device where the option does nothing is ignored with one info line, never an error
    channels_last: Auto | bool = Field("auto", description="channels_last memory format for model and batches (auto: on CUDA, for models with 2-d convolutions)")
    compile: bool = Field(False, description="wrap the model in torch.compile (the first steps pay the compilation)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode"
    )
    cudnn_benchmark: Auto | bool = Field("auto", description="let cuDNN time its convolution algorithms and keep the fastest (auto: on CUDA unless deterministic)")
    tf32: Auto | bool = Field("auto", description="TF32 tensor cores for float32 matmuls and convolutions (auto: on CUDA)")
    fused_optimizer: Auto | bool = Field("auto", description="torch's fused SGD/Adam/AdamW kernels (auto: on CUDA); no device sync under fp16's grad scaler")
